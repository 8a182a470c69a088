//! Ensemble distillation on the server (FedDF, Lin et al., NeurIPS 2020):
//! the round's client models are the teachers, the strategy's merge is the
//! student's start, and an unlabeled proxy set the server holds is the
//! only data. Labels of the proxy set are never read.

use std::sync::Arc;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use fusion_core::{MergeError, ParamSet, Refinement, Refiner, RoundContext};
use fusion_data::Dataset;
use fusion_models::Mlp;

use crate::error::TrainError;
use crate::evaluate::EVAL_BATCH;
use crate::optimizer::OptimizerKind;
use crate::tensors::{host, inputs};
use crate::train::shuffle_for_epoch;

/// Settings of server-side distillation. The defaults (Adam 1e-3 as in
/// FedDF, 20 epochs) were chosen on full Fashion-MNIST, seed 0, against
/// 1e-4 and 5 epochs (docs/experiments.md).
#[derive(Debug, Clone, PartialEq)]
pub struct DistillConfig {
    /// Passes over the proxy set.
    pub epochs: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Proxy examples per step.
    pub batch: usize,
    /// Softmax temperature of teachers and student; the loss is scaled by
    /// T² so its gradients keep their size (Hinton et al.).
    pub temperature: f64,
    /// Seeds the order of the proxy set in each epoch.
    pub seed: u64,
}

impl Default for DistillConfig {
    fn default() -> Self {
        Self {
            epochs: 20,
            lr: 1e-3,
            batch: 250,
            temperature: 1.0,
            seed: 0,
        }
    }
}

impl DistillConfig {
    /// Checks ranges, naming the setting at fault.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |name: &'static str, value: String, reason: &str| {
            Err(TrainError::BadSetting {
                name,
                value,
                reason: reason.into(),
            })
        };
        if self.epochs == 0 {
            return bad("distill_epochs", "0".into(), "must be at least 1");
        }
        if self.batch == 0 {
            return bad("distill_batch", "0".into(), "must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(
                "distill_lr",
                self.lr.to_string(),
                "must be a positive number",
            );
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad(
                "distill_temperature",
                self.temperature.to_string(),
                "must be a positive number",
            );
        }
        Ok(())
    }
}

/// FedDF as a [`Refiner`]: hand it to the server (or `fusion simulate`)
/// and every round's merged model is distilled towards the output ensemble
/// of that round's client models on the proxy set.
///
/// The teachers' averaged class probabilities are folded in as each client
/// model arrives, so memory is one model plus `proxy × classes` numbers,
/// whatever the number of clients. The ensemble is the plain (unweighted)
/// mean of the teachers' probabilities at the temperature: with T = 1 it is
/// exactly the output ensemble `fusion simulate` reports as the ceiling.
#[derive(Debug, Clone)]
pub struct Distiller {
    proxy: Arc<Dataset>,
    config: DistillConfig,
    device: Device,
}

impl Distiller {
    /// A distiller over `proxy` (its labels are ignored), or why not.
    pub fn new(proxy: Dataset, config: DistillConfig, device: Device) -> Result<Self, TrainError> {
        config.validate()?;
        if proxy.is_empty() {
            return Err(TrainError::EmptyData("the distillation proxy set"));
        }
        Ok(Self {
            proxy: Arc::new(proxy),
            config,
            device,
        })
    }

    /// Images in the proxy set.
    pub fn proxy_len(&self) -> usize {
        self.proxy.len()
    }
}

impl Refiner for Distiller {
    fn name(&self) -> &str {
        "distill"
    }

    fn begin(&self, _round: &RoundContext) -> Result<Box<dyn Refinement>, MergeError> {
        Ok(Box::new(Teachers {
            distiller: self.clone(),
            probs: vec![0.0; self.proxy.len() * self.proxy.classes()],
            count: 0,
        }))
    }
}

/// One round's teacher ensemble, summed as client models arrive.
struct Teachers {
    distiller: Distiller,
    /// Σ over teachers of softmax(logits / T), `[proxy, classes]`.
    probs: Vec<f64>,
    count: usize,
}

impl Teachers {
    fn failed(reason: impl std::fmt::Display) -> MergeError {
        MergeError::Refinement {
            step: "distill".into(),
            reason: reason.to_string(),
        }
    }
}

impl Refinement for Teachers {
    fn observe(&mut self, model: &ParamSet, _weight: f64) -> Result<(), MergeError> {
        let Distiller {
            proxy,
            config,
            device,
        } = &self.distiller;
        let teacher = Mlp::from_params(model, device).map_err(Self::failed)?;
        teacher
            .check_data(proxy.features(), proxy.classes())
            .map_err(|e| Self::failed(format!("the proxy set does not fit the model: {e}")))?;
        let classes = proxy.classes();
        let indices: Vec<usize> = (0..proxy.len()).collect();
        let mut probs = vec![0.0f64; self.probs.len()];
        for (b, chunk) in indices.chunks(EVAL_BATCH).enumerate() {
            let (x, _labels_never_read) = proxy.batch(chunk);
            let logits = host(teacher.forward(inputs(x, chunk.len(), proxy.features(), device)));
            let out = &mut probs[b * EVAL_BATCH * classes..][..chunk.len() * classes];
            for (row, p) in logits
                .chunks_exact(classes)
                .zip(out.chunks_exact_mut(classes))
            {
                tempered_softmax(row, config.temperature, p);
            }
        }
        if let Some(i) = probs.iter().position(|p| !p.is_finite()) {
            return Err(Self::failed(format!(
                "a teacher's output on proxy image {} is not finite",
                i / classes
            )));
        }
        for (sum, p) in self.probs.iter_mut().zip(probs) {
            *sum += p;
        }
        self.count += 1;
        Ok(())
    }

    fn observed(&self) -> usize {
        self.count
    }

    fn refine(self: Box<Self>, merged: &ParamSet) -> Result<ParamSet, MergeError> {
        if self.count == 0 {
            return Err(Self::failed("no client model to learn from"));
        }
        let targets: Vec<f32> = self
            .probs
            .iter()
            .map(|&p| (p / self.count as f64) as f32)
            .collect();
        distill(&self.distiller, merged, &targets).map_err(Self::failed)
    }
}

/// Trains `student` to match `targets` (class probabilities per proxy
/// image) by cross-entropy at the temperature, which differs from
/// KL(targets ‖ student) by a constant.
fn distill(
    distiller: &Distiller,
    student: &ParamSet,
    targets: &[f32],
) -> Result<ParamSet, TrainError> {
    let Distiller {
        proxy,
        config,
        device,
    } = distiller;
    let autodiff = device.clone().autodiff();
    let mut model = Mlp::from_params(student, &autodiff)?;
    model.check_data(proxy.features(), proxy.classes())?;
    let classes = proxy.classes();
    let t = config.temperature;
    let mut optimizer = OptimizerKind::Adam.build();
    let mut order: Vec<usize> = (0..proxy.len()).collect();
    let batches = proxy.len().div_ceil(config.batch);
    for epoch in 1..=config.epochs {
        shuffle_for_epoch(&mut order, config.seed, epoch);
        let mut losses: Vec<Tensor<1>> = Vec::with_capacity(batches);
        for chunk in order.chunks(config.batch) {
            let n = chunk.len();
            let (x, _labels_never_read) = proxy.batch(chunk);
            let target: Vec<f32> = chunk
                .iter()
                .flat_map(|&i| targets[i * classes..(i + 1) * classes].iter().copied())
                .collect();
            let target = Tensor::<2>::from_data(TensorData::new(target, [n, classes]), &autodiff);
            let logits = model.forward(inputs(x, n, proxy.features(), &autodiff));
            let log_p = log_softmax(logits / t as f32, 1);
            let loss = (log_p * target).sum().neg() * (t * t / n as f64) as f32;
            losses.push(loss.clone().inner() * n as f32);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(config.lr, model, grads);
        }
        let total = Tensor::cat(losses, 0).sum().into_scalar::<f32>();
        if !total.is_finite() {
            return Err(TrainError::Diverged {
                epoch,
                batch: batches,
                loss: total,
            });
        }
        tracing::debug!(
            epoch,
            loss = f64::from(total) / proxy.len() as f64,
            "distillation epoch"
        );
    }
    Ok(model.valid().to_params())
}

/// Writes softmax(logits / t) into `out`, computed stably in f64.
fn tempered_softmax(logits: &[f32], t: f64, out: &mut [f64]) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut sum = 0.0;
    for (o, &l) in out.iter_mut().zip(logits) {
        *o = ((l as f64 - max) / t).exp();
        sum += *o;
    }
    for o in out.iter_mut() {
        *o /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tempered_softmax_is_a_distribution_that_flattens_with_temperature() {
        let logits = [2.0f32, 0.0, -1.0];
        let (mut cold, mut hot) = ([0.0; 3], [0.0; 3]);
        tempered_softmax(&logits, 1.0, &mut cold);
        tempered_softmax(&logits, 10.0, &mut hot);
        let e: Vec<f64> = logits.iter().map(|&l| f64::from(l).exp()).collect();
        let z: f64 = e.iter().sum();
        for (c, e) in cold.iter().zip(&e) {
            assert!((c - e / z).abs() < 1e-12);
        }
        assert!((hot.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(hot[0] < cold[0] && hot[2] > cold[2]);
    }
}
