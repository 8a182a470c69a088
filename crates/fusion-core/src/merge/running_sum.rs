use super::MergeError;
use crate::params::{ParamSet, ParamTensor, ParamsError};

/// A weighted running sum of models in `f64`.
///
/// Memory is one model's worth (in `f64`) however many models are added:
/// the federated server folds each update in as it arrives instead of
/// keeping all of them.
#[derive(Clone, Debug)]
pub struct RunningSum {
    /// The first model's layout: names, shapes and carried tensors. Its
    /// values are zeros never written or read (`vec![0.0; n]` is
    /// allocated zeroed, so the pages stay unmapped): the layout costs
    /// kilobytes, not a copy of the first model.
    template: Option<ParamSet>,
    sums: Vec<Vec<f64>>,
    total_weight: f64,
    count: usize,
}

impl Default for RunningSum {
    fn default() -> Self {
        Self::new()
    }
}

impl RunningSum {
    /// An empty sum; the first model added fixes the layout.
    pub fn new() -> Self {
        Self {
            template: None,
            sums: Vec::new(),
            total_weight: 0.0,
            count: 0,
        }
    }

    /// Number of models added.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Sum of the weights added.
    pub fn total_weight(&self) -> f64 {
        self.total_weight
    }

    /// Checks a weight: finite and not negative.
    pub fn check_weight(model: usize, weight: f64) -> Result<(), MergeError> {
        if weight.is_finite() && weight >= 0.0 {
            Ok(())
        } else {
            Err(MergeError::BadWeight { model, weight })
        }
    }

    /// Adds `weight * model`. The model must have the layout of the first
    /// one and hold only finite values; if not, the sum is left unchanged.
    pub fn add(&mut self, model: &ParamSet, weight: f64) -> Result<(), MergeError> {
        let index = self.count;
        Self::check_weight(index, weight)?;
        model.check_finite()?;
        match &self.template {
            Some(t) => t.check_same_layout(model, 0, index)?,
            None => {
                self.sums = model.iter().map(|(_, t)| vec![0.0; t.numel()]).collect();
                self.template = Some(model.zeros_like());
            }
        }
        let template = self.template.as_ref().ok_or(MergeError::NoModels)?;
        for (sum, name) in self.sums.iter_mut().zip(template.names()) {
            let t = model.get(name).ok_or_else(|| ParamsError::MissingTensor {
                name: name.to_owned(),
                present: 0,
                missing: index,
            })?;
            for (s, &x) in sum.iter_mut().zip(t.data()) {
                *s += weight * f64::from(x);
            }
        }
        self.total_weight += weight;
        self.count += 1;
        Ok(())
    }

    /// Replaces a model added earlier with `new` at the same weight (used
    /// by MergeMany when a model's alignment changes). Layouts were checked
    /// when `old` was added.
    pub(crate) fn swap(&mut self, old: &ParamSet, new: &ParamSet, weight: f64) {
        if let Some(template) = &self.template {
            for (sum, name) in self.sums.iter_mut().zip(template.names()) {
                if let (Some(o), Some(n)) = (old.get(name), new.get(name)) {
                    for ((s, &x), &y) in sum.iter_mut().zip(o.data()).zip(n.data()) {
                        *s += weight * (f64::from(y) - f64::from(x));
                    }
                }
            }
        }
    }

    /// The weighted mean of everything added except `model` (added earlier
    /// with `weight`): MergeMany's target for that model.
    pub(crate) fn mean_excluding(
        &self,
        model: &ParamSet,
        weight: f64,
    ) -> Result<ParamSet, MergeError> {
        if self.template.is_none() {
            return Err(MergeError::NoModels);
        }
        let rest = self.total_weight - weight;
        if rest <= 0.0 {
            return Err(MergeError::ZeroTotalWeight);
        }
        self.build(|name, sum| {
            let own = model.get(name).ok_or_else(|| ParamsError::MissingTensor {
                name: name.to_owned(),
                present: 0,
                missing: self.count,
            })?;
            Ok(sum
                .iter()
                .zip(own.data())
                .map(|(&s, &x)| ((s - weight * f64::from(x)) / rest) as f32)
                .collect())
        })
    }

    /// The weighted mean so far. Non-float tensors come from the first model.
    pub fn mean(&self) -> Result<ParamSet, MergeError> {
        if self.template.is_none() {
            return Err(MergeError::NoModels);
        }
        if self.total_weight <= 0.0 {
            return Err(MergeError::ZeroTotalWeight);
        }
        self.build(|_, sum| {
            Ok(sum
                .iter()
                .map(|&s| (s / self.total_weight) as f32)
                .collect())
        })
    }

    /// A new model in the template's layout, each tensor's values made by
    /// `values(name, sum)`; the carried tensors of the first model come
    /// along.
    fn build(
        &self,
        mut values: impl FnMut(&str, &[f64]) -> Result<Vec<f32>, MergeError>,
    ) -> Result<ParamSet, MergeError> {
        let template = self.template.as_ref().ok_or(MergeError::NoModels)?;
        let mut out = ParamSet::new();
        for ((name, layout), sum) in template.iter().zip(&self.sums) {
            let data = values(name, sum)?;
            out.insert(name, ParamTensor::new(name, layout.shape().to_vec(), data)?)?;
        }
        for (name, raw) in template.passthrough() {
            out.insert_passthrough(name.clone(), raw.clone())?;
        }
        Ok(out)
    }
}
