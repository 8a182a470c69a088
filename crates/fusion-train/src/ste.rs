//! STE matching: the paper's Algorithm 2 (Ainsworth et al., ICLR 2023).
//!
//! Weight matching looks at weights only; activation matching at one
//! layer's activations at a time. STE matching looks for the permutation
//! whose *midpoint* `½(A + π(B))` has the lowest training loss: it learns
//! free weights `W̃` whose nearest permutation of B (by weight matching)
//! is used in the forward pass, and passes the loss's gradient straight
//! through the projection to `W̃`. It is the strongest of the three
//! methods in the paper and by far the most expensive: a weight matching
//! and a forward and backward pass of the midpoint per batch. Opt-in.

use std::time::Instant;

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::loss::CrossEntropyLoss;
use burn::tensor::{Device, Gradients, Tensor};
use fusion_core::{MatchOptions, ParamSet, Permutation, ValidatedSpec, weight_matching};
use fusion_data::Dataset;
use fusion_models::Network;

use crate::error::TrainError;
use crate::tensors::{images, targets};
use crate::train::shuffle_for_epoch;

/// How long and how fast STE matching learns.
#[derive(Debug, Clone, PartialEq)]
pub struct SteConfig {
    /// Passes over the data (one weight matching per batch).
    pub epochs: usize,
    /// Examples per step.
    pub batch: usize,
    /// Adam's learning rate on the free weights `W̃`.
    pub lr: f64,
    /// Shuffling and weight matching's sweep order.
    pub seed: u64,
    /// Weight matching's sweep cap per step (each step starts from the
    /// previous step's permutations, so it converges in a sweep or two).
    pub max_sweeps: usize,
}

impl Default for SteConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            batch: 100,
            lr: 1e-3,
            seed: 0,
            max_sweeps: 100,
        }
    }
}

/// What STE matching found and what it took.
#[derive(Debug, Clone)]
pub struct SteResult {
    /// One permutation per spec permutation, aligning B to A.
    pub perms: Vec<Permutation>,
    /// Mean training loss of the midpoint in each epoch (as `W̃` learned).
    pub epoch_loss: Vec<f64>,
    /// Optimiser steps taken.
    pub steps: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Permutations aligning `b` to `a` (networks of one built-in
/// architecture, `spec` their spec) found by STE matching on `data`'s
/// training examples. `W̃` starts at A, as in the paper; the permutations
/// returned are weight matching's projection of the final `W̃`. BatchNorm
/// midpoints run in training mode, so their running statistics play no
/// part; the caller re-estimates them after merging.
pub fn ste_matching(
    spec: &ValidatedSpec,
    a: &ParamSet,
    b: &ParamSet,
    data: &Dataset,
    config: &SteConfig,
    device: &Device,
) -> Result<SteResult, TrainError> {
    if config.epochs == 0 || config.batch == 0 || !(config.lr.is_finite() && config.lr > 0.0) {
        return Err(TrainError::BadSetting {
            name: "ste",
            value: format!(
                "epochs {}, batch {}, lr {}",
                config.epochs, config.batch, config.lr
            ),
            reason: "STE needs at least one epoch, a batch of at least 1 and a learning rate > 0"
                .into(),
        });
    }
    if data.is_empty() {
        return Err(TrainError::EmptyData("STE matching data"));
    }
    Network::from_params(a, device)?.check_data(data.shape(), data.classes())?;
    let started = Instant::now();
    let autodiff = device.clone().autodiff();
    let loss_fn = CrossEntropyLoss::new(None, &autodiff);
    let mut free = a.clone();
    let mut adam = HostAdam::new(&free);
    let mut perms: Option<Vec<Permutation>> = None;
    let project = |free: &ParamSet, perms: &mut Option<Vec<Permutation>>| {
        let options = MatchOptions {
            seed: config.seed,
            max_sweeps: config.max_sweeps,
            init: perms.take(),
            ..MatchOptions::default()
        };
        let found = weight_matching(spec, free, b, device, &options)?;
        let projected = spec.apply(b, &found.perms)?;
        *perms = Some(found.perms);
        Ok::<_, TrainError>(projected)
    };
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut epoch_loss = Vec::with_capacity(config.epochs);
    let mut steps = 0;
    for epoch in 0..config.epochs {
        shuffle_for_epoch(&mut order, config.seed, epoch);
        let mut total = 0.0;
        for chunk in order.chunks(config.batch) {
            let projected = project(&free, &mut perms)?;
            let midpoint = Network::from_params(&halfway(a, &projected), &autodiff)?;
            let (x, y) = data.batch(chunk);
            let logits = midpoint.forward(images(x, chunk.len(), data.shape(), &autodiff));
            let loss = loss_fn.forward(logits, targets(&y, &autodiff));
            let value = f64::from(loss.clone().into_scalar::<f32>());
            if !value.is_finite() {
                return Err(TrainError::Diverged {
                    epoch,
                    batch: steps,
                    loss: value as f32,
                });
            }
            total += value * chunk.len() as f64;
            // d loss / d W̃ = ½ d loss / d midpoint: the projection is
            // passed straight through.
            let gradient = gradients_by_name(midpoint, &loss.backward());
            if adam.step(&mut free, &gradient, 0.5, config.lr) == 0 {
                // The network names its tensors otherwise than the file
                // (an `nn.Sequential` MLP): nothing would ever learn.
                return Err(TrainError::BadSetting {
                    name: "ste",
                    value: "the model's tensor names".into(),
                    reason: "no tensor of the model has a gradient under its own name; \
                             save it with the built-in network's names (`fusion train` does)"
                        .into(),
                });
            }
            steps += 1;
        }
        epoch_loss.push(total / data.len() as f64);
    }
    project(&free, &mut perms)?;
    Ok(SteResult {
        perms: perms.unwrap_or_else(|| spec.identity()),
        epoch_loss,
        steps,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `½(a + b)`, tensor by tensor (same layout: `b` is `a`'s architecture
/// permuted).
fn halfway(a: &ParamSet, b: &ParamSet) -> ParamSet {
    let mut out = a.clone();
    for (name, tensor) in b.iter() {
        if let Some(at) = out.position(name) {
            for (x, &y) in out.at_mut(at).data_mut().iter_mut().zip(tensor.data()) {
                *x = 0.5 * (*x + y);
            }
        }
    }
    out
}

/// The gradient of every parameter of `network` in `grads`, under the
/// parameter's name (zeros where it has none: running statistics).
fn gradients_by_name(network: Network, grads: &Gradients) -> ParamSet {
    struct AsGradient<'g>(&'g Gradients);
    impl ModuleMapper for AsGradient<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|value| match value.grad(self.0) {
                Some(gradient) => gradient.autodiff(),
                None => value.zeros_like(),
            })
        }
    }
    network.map(&mut AsGradient(grads)).valid().to_params()
}

/// Adam (Kingma and Ba) over named host tensors: the free weights of STE
/// live on the host between steps, where weight matching reads them.
struct HostAdam {
    first: Vec<Vec<f32>>,
    second: Vec<Vec<f32>>,
    step: i32,
}

impl HostAdam {
    const BETA1: f32 = 0.9;
    const BETA2: f32 = 0.999;
    const EPSILON: f32 = 1e-8;

    fn new(params: &ParamSet) -> Self {
        let zeros: Vec<Vec<f32>> = params
            .iter()
            .map(|(_, t)| vec![0.0; t.data().len()])
            .collect();
        Self {
            first: zeros.clone(),
            second: zeros,
            step: 0,
        }
    }

    /// One step on `params` along `scale × gradient`; returns how many
    /// tensors it moved. Running statistics are not parameters and stay as
    /// they are.
    fn step(&mut self, params: &mut ParamSet, gradient: &ParamSet, scale: f32, lr: f64) -> usize {
        self.step += 1;
        let correct1 = 1.0 - Self::BETA1.powi(self.step);
        let correct2 = 1.0 - Self::BETA2.powi(self.step);
        let lr = lr as f32;
        let names: Vec<String> = params.names().map(str::to_owned).collect();
        let mut moved = 0;
        for (at, name) in names.iter().enumerate() {
            if fusion_core::is_running_statistic(name) {
                continue;
            }
            let Some(g) = gradient
                .get(name)
                .filter(|g| g.shape() == params.at(at).shape())
            else {
                continue;
            };
            moved += 1;
            let (m, v) = (&mut self.first[at], &mut self.second[at]);
            let values = params.at_mut(at).data_mut();
            for (i, (w, &g)) in values.iter_mut().zip(g.data()).enumerate() {
                let g = scale * g;
                m[i] = Self::BETA1 * m[i] + (1.0 - Self::BETA1) * g;
                v[i] = Self::BETA2 * v[i] + (1.0 - Self::BETA2) * g * g;
                *w -= lr * (m[i] / correct1) / ((v[i] / correct2).sqrt() + Self::EPSILON);
            }
        }
        moved
    }
}
