use super::MergeError;
use crate::params::{ParamSet, ParamTensor, ParamsError};

/// A weighted running sum of models in `f64`.
///
/// Memory is one model's worth (in `f64`) however many models are added:
/// the federated server folds each update in as it arrives instead of
/// keeping all of them.
#[derive(Clone, Debug)]
pub struct RunningSum {
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
                self.template = Some(model.clone());
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
        let template = self.template.as_ref().ok_or(MergeError::NoModels)?;
        let rest = self.total_weight - weight;
        if rest <= 0.0 {
            return Err(MergeError::ZeroTotalWeight);
        }
        let mut out = template.clone();
        for (pos, (sum, name)) in self.sums.iter().zip(template.names()).enumerate() {
            let shape = template.at(pos).shape().to_vec();
            let own = model.get(name).ok_or_else(|| ParamsError::MissingTensor {
                name: name.to_owned(),
                present: 0,
                missing: self.count,
            })?;
            let data = sum
                .iter()
                .zip(own.data())
                .map(|(&s, &x)| ((s - weight * f64::from(x)) / rest) as f32)
                .collect();
            out.replace(pos, ParamTensor::new(name, shape, data)?);
        }
        Ok(out)
    }

    /// The weighted mean so far. Non-float tensors come from the first model.
    pub fn mean(&self) -> Result<ParamSet, MergeError> {
        let template = self.template.as_ref().ok_or(MergeError::NoModels)?;
        if self.total_weight <= 0.0 {
            return Err(MergeError::ZeroTotalWeight);
        }
        let mut out = template.clone();
        for (pos, sum) in self.sums.iter().enumerate() {
            let shape = template.at(pos).shape().to_vec();
            let data = sum
                .iter()
                .map(|&s| (s / self.total_weight) as f32)
                .collect();
            out.replace(pos, ParamTensor::new("", shape, data)?);
        }
        Ok(out)
    }
}
