//! Aligning model B to model A by a chosen method.

use std::time::Instant;

use burn::tensor::Device;
use fusion_core::{MatchOptions, ParamSet, weight_matching};
use fusion_data::Dataset;
use fusion_models::Network;
use fusion_train::{SteConfig, activation_matching_network, ste_matching};

use crate::error::ExperimentError;
use crate::method::Method;

/// B's parameters aligned to A, and what that took.
#[derive(Debug, Clone)]
pub struct Aligned {
    /// B after the permutations (the same function as B).
    pub b: ParamSet,
    /// Fraction of hidden units that moved, over all layers.
    pub moved: f64,
    /// Seconds spent finding the permutations.
    pub seconds: f64,
}

/// Aligns `b` to `a` with `method`. Activation and STE matching run the
/// models over `train` (the paper uses training data; STE trains on one
/// epoch of it); weight matching needs only the weights. `naive` returns B
/// unchanged.
pub fn align(
    method: Method,
    a: &ParamSet,
    b: &ParamSet,
    train: &Dataset,
    device: &Device,
    seed: u64,
) -> Result<Aligned, ExperimentError> {
    let start = Instant::now();
    let model_a = Network::from_params(a, device)?;
    let spec = model_a.permutation_spec()?.validate(a)?;
    spec.check_layout(b)?;
    let perms = match method {
        Method::Naive => spec.identity(),
        Method::Weight => {
            let options = MatchOptions {
                seed,
                ..MatchOptions::default()
            };
            weight_matching(&spec, a, b, device, &options)?.perms
        }
        Method::Activation => {
            let model_b = Network::from_params(b, device)?;
            activation_matching_network(&spec, &model_a, &model_b, train, device)?
        }
        Method::Ste => {
            let config = SteConfig {
                seed,
                ..SteConfig::default()
            };
            let found = ste_matching(&spec, a, b, train, &config, device)?;
            tracing::info!(
                steps = found.steps,
                midpoint_loss = ?found.epoch_loss,
                "STE matching done"
            );
            found.perms
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let total: usize = perms.iter().map(|p| p.len()).sum();
    let moved: usize = perms.iter().map(|p| p.moved()).sum();
    Ok(Aligned {
        b: spec.apply(b, &perms)?,
        moved: if total == 0 {
            0.0
        } else {
            moved as f64 / total as f64
        },
        seconds,
    })
}

/// `(1 − λ)·a + λ·b`, tensor by tensor. Both sets must have the same
/// layout (checked), which aligned sets of one architecture do.
pub fn lerp(a: &ParamSet, b: &ParamSet, lambda: f64) -> Result<ParamSet, ExperimentError> {
    a.check_same_layout(b, 0, 1)?;
    let mut out = a.clone();
    let l = lambda as f32;
    for (name, tb) in b.iter() {
        let Some(pos) = out.position(name) else {
            continue;
        };
        for (x, &y) in out.at_mut(pos).data_mut().iter_mut().zip(tb.data()) {
            *x = (1.0 - l) * *x + l * y;
        }
    }
    Ok(out)
}
