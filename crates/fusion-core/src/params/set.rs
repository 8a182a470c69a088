use std::collections::HashMap;

use super::{ParamTensor, ParamsError};

/// A tensor that is not floating point (say, BatchNorm's
/// `num_batches_tracked`). It cannot be averaged or permuted, so it is carried
/// through a merge unchanged, from the first model.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    /// The safetensors dtype name, such as `I64`.
    pub dtype: safetensors::Dtype,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// Little-endian bytes exactly as read.
    pub bytes: Vec<u8>,
}

/// A model's parameters: named `f32` tensors in a fixed order, plus any
/// non-float tensors carried through.
///
/// This is the engine's one currency: files, burn modules and network
/// messages all convert to and from it, so matching and merging never depend
/// on where a model came from.
///
/// Two sets are equal when they hold the same names with equal tensors,
/// whatever their order: a file read back is the same model as the set
/// written, though files store tensors sorted by name.
#[derive(Clone, Debug, Default)]
pub struct ParamSet {
    names: Vec<String>,
    tensors: Vec<ParamTensor>,
    index: HashMap<String, usize>,
    passthrough: Vec<(String, RawTensor)>,
}

impl PartialEq for ParamSet {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self.iter().all(|(name, t)| other.get(name) == Some(t))
            && self.passthrough.len() == other.passthrough.len()
            && self
                .passthrough
                .iter()
                .all(|p| other.passthrough.contains(p))
    }
}

impl ParamSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a tensor; a second tensor of the same name is an error.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        tensor: ParamTensor,
    ) -> Result<(), ParamsError> {
        let name = self.new_name(name.into())?;
        self.index.insert(name.clone(), self.tensors.len());
        self.names.push(name);
        self.tensors.push(tensor);
        Ok(())
    }

    /// Appends a non-float tensor to carry through unchanged.
    pub fn insert_passthrough(
        &mut self,
        name: impl Into<String>,
        raw: RawTensor,
    ) -> Result<(), ParamsError> {
        let name = self.new_name(name.into())?;
        self.passthrough.push((name, raw));
        Ok(())
    }

    /// `name`, if no tensor of the set (float or carried) has it yet.
    fn new_name(&self, name: String) -> Result<String, ParamsError> {
        if self.index.contains_key(&name) || self.passthrough.iter().any(|(n, _)| *n == name) {
            return Err(ParamsError::Duplicate(name));
        }
        Ok(name)
    }

    /// The set without its non-float tensors: what the federation protocol
    /// carries (F32 tensors only), for a built-in model whose files keep
    /// BatchNorm's integer `num_batches_tracked` for PyTorch.
    pub fn without_passthrough(mut self) -> Self {
        self.passthrough.clear();
        self
    }

    /// The tensor called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&ParamTensor> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// Position of `name` in the set's order.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The tensor at `position` in the set's order.
    ///
    /// # Panics
    /// If `position >= self.len()`.
    pub fn at(&self, position: usize) -> &ParamTensor {
        &self.tensors[position]
    }

    /// Mutable access to the tensor at `position`.
    ///
    /// # Panics
    /// If `position >= self.len()`.
    pub fn at_mut(&mut self, position: usize) -> &mut ParamTensor {
        &mut self.tensors[position]
    }

    /// Replaces the tensor at `position`, keeping its name.
    ///
    /// # Panics
    /// If `position >= self.len()`.
    pub(crate) fn replace(&mut self, position: usize, tensor: ParamTensor) {
        self.tensors[position] = tensor;
    }

    /// Names and tensors in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &ParamTensor)> {
        self.names.iter().map(String::as_str).zip(&self.tensors)
    }

    /// Tensor names in order.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// Number of float tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the set has no float tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Total number of float values.
    pub fn numel(&self) -> usize {
        self.tensors.iter().map(ParamTensor::numel).sum()
    }

    /// The non-float tensors carried through.
    pub fn passthrough(&self) -> &[(String, RawTensor)] {
        &self.passthrough
    }

    /// Fails on the first NaN or infinity, naming the tensor.
    pub fn check_finite(&self) -> Result<(), ParamsError> {
        for (name, t) in self.iter() {
            if let Some((index, value)) = t.first_non_finite() {
                return Err(ParamsError::NonFinite {
                    name: name.to_owned(),
                    index,
                    value,
                });
            }
        }
        Ok(())
    }

    /// Checks that `other` has exactly the same tensor names and shapes, so
    /// that the two can be averaged. `self_id` and `other_id` label the
    /// models in the error (their positions in the user's list).
    pub fn check_same_layout(
        &self,
        other: &ParamSet,
        self_id: usize,
        other_id: usize,
    ) -> Result<(), ParamsError> {
        for (name, t) in self.iter() {
            let Some(o) = other.get(name) else {
                return Err(ParamsError::MissingTensor {
                    name: name.to_owned(),
                    present: self_id,
                    missing: other_id,
                });
            };
            if o.shape() != t.shape() {
                return Err(ParamsError::LayoutMismatch {
                    name: name.to_owned(),
                    left_model: self_id,
                    left: t.shape().to_vec(),
                    right_model: other_id,
                    right: o.shape().to_vec(),
                });
            }
        }
        if let Some(name) = other.names().find(|n| self.get(n).is_none()) {
            return Err(ParamsError::MissingTensor {
                name: name.to_owned(),
                present: other_id,
                missing: self_id,
            });
        }
        Ok(())
    }

    /// A set with the same names and shapes, all zeros.
    pub fn zeros_like(&self) -> ParamSet {
        ParamSet {
            names: self.names.clone(),
            tensors: self
                .tensors
                .iter()
                .map(|t| ParamTensor::zeros(t.shape().to_vec()))
                .collect(),
            index: self.index.clone(),
            passthrough: self.passthrough.clone(),
        }
    }

    /// Dot product over every value of every tensor, in `f64`.
    /// Layouts must match (checked by the caller).
    pub fn dot(&self, other: &ParamSet) -> f64 {
        self.iter()
            .filter_map(|(name, t)| other.get(name).map(|o| super::dot_f64(t.data(), o.data())))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(entries: &[(&str, Vec<usize>)]) -> ParamSet {
        let mut s = ParamSet::new();
        for (name, shape) in entries {
            let n = shape.iter().product();
            s.insert(
                *name,
                ParamTensor::new(name, shape.clone(), vec![1.0; n]).expect("ok"),
            )
            .expect("unique");
        }
        s
    }

    #[test]
    fn equality_ignores_order_but_not_values() {
        let a = set(&[("w", vec![2]), ("b", vec![1])]);
        let b = set(&[("b", vec![1]), ("w", vec![2])]);
        assert_eq!(a, b);
        let mut c = b.clone();
        c.at_mut(0).data_mut()[0] = 2.0;
        assert_ne!(a, c);
        assert_ne!(a, set(&[("w", vec![2])]));
    }

    #[test]
    fn duplicate_names_are_refused() {
        let mut s = set(&[("a", vec![2])]);
        let err = s
            .insert("a", ParamTensor::zeros(vec![2]))
            .expect_err("duplicate");
        assert_eq!(err.to_string(), "tensor 'a' appears twice");
    }

    #[test]
    fn layout_check_names_the_tensor_and_models() {
        let a = set(&[("w", vec![2, 3]), ("b", vec![2])]);
        let b = set(&[("w", vec![3, 2]), ("b", vec![2])]);
        let c = set(&[("w", vec![2, 3])]);
        assert_eq!(
            a.check_same_layout(&b, 0, 1)
                .expect_err("shape")
                .to_string(),
            "tensor 'w' has shape [2, 3] in model 0 but [3, 2] in model 1"
        );
        assert_eq!(
            a.check_same_layout(&c, 0, 2)
                .expect_err("missing")
                .to_string(),
            "tensor 'b' is in model 0 but missing from model 2"
        );
        assert_eq!(
            c.check_same_layout(&a, 2, 0)
                .expect_err("extra")
                .to_string(),
            "tensor 'b' is in model 0 but missing from model 2"
        );
        a.check_same_layout(&a.clone(), 0, 1).expect("same layout");
    }

    #[test]
    fn non_finite_values_are_found() {
        let mut s = set(&[("w", vec![3])]);
        s.at_mut(0).data_mut()[2] = f32::NAN;
        let err = s.check_finite().expect_err("nan");
        assert_eq!(
            err.to_string(),
            "tensor 'w' holds a non-finite value (NaN) at flat index 2"
        );
    }
}
