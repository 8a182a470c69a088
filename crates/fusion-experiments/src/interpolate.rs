//! Linear interpolation between two models, per alignment method: the
//! paper's Figure 2 and its loss barrier.

use burn::tensor::Device;
use fusion_core::ParamSet;
use fusion_data::TrainTest;
use fusion_models::Network;
use fusion_train::{EVAL_BATCH, Metrics, evaluate_network, reset_batch_norm};

use crate::align::{align, lerp};
use crate::error::ExperimentError;
use crate::method::Method;

/// One method's curve: test metrics of `(1 − λ)·A + λ·π(B)` for each λ.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Curve {
    /// The alignment method.
    pub method: Method,
    /// λ values, 0 (model A) to 1 (model B, aligned).
    pub lambdas: Vec<f64>,
    /// Test metrics at each λ.
    pub test: Vec<Metrics>,
    /// Test-loss barrier: the largest gap between the interpolated loss and
    /// the straight line between the end models' losses (Ainsworth et al., eq. 2).
    pub barrier: f64,
    /// Test metrics at λ = 0.5: the merged model.
    pub midpoint: Metrics,
    /// The interior λ (strictly between 0 and 1) with the lowest test loss,
    /// and its metrics: a merge need not be best at the midpoint.
    pub best_lambda: f64,
    /// Test metrics at [`Curve::best_lambda`].
    pub best: Metrics,
    /// Fraction of hidden units the alignment moved.
    pub moved: f64,
    /// Seconds spent aligning.
    pub align_seconds: f64,
}

/// Curves for every method, and the end models' own figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Interpolation {
    /// Test metrics of model A.
    pub a: Metrics,
    /// Test metrics of model B.
    pub b: Metrics,
    /// One curve per method, in the order asked for.
    pub curves: Vec<Curve>,
}

/// Evenly spaced λ in [0, 1]; always includes 0, 0.5 (for an odd count) and 1.
pub fn lambdas(steps: usize) -> Vec<f64> {
    let steps = steps.max(2);
    (0..steps).map(|i| i as f64 / (steps - 1) as f64).collect()
}

/// Interpolates between `a` and `b` on `data.test` for each method.
/// `steps` is the number of λ values (25 in the paper); odd counts hit 0.5.
/// Any built-in network works (MLP, ResNet, VGG). With a non-zero
/// `reset_bn_batches`, every interpolated network's BatchNorm statistics are measured
/// again on that many training batches before it is scored (the end
/// models keep their own): without it, a BatchNorm network's barrier
/// mostly measures stale statistics.
#[allow(clippy::too_many_arguments)]
pub fn interpolate(
    a: &ParamSet,
    b: &ParamSet,
    data: &TrainTest,
    methods: &[Method],
    steps: usize,
    device: &Device,
    seed: u64,
    reset_bn_batches: usize,
) -> Result<Interpolation, ExperimentError> {
    if steps < 2 {
        return Err(ExperimentError::BadSetting(format!(
            "--steps {steps}: need at least 2 (λ = 0 and 1)"
        )));
    }
    let score = |params: &ParamSet, reset: bool| -> Result<Metrics, ExperimentError> {
        let mut model = Network::from_params(params, device)?;
        if reset {
            model = reset_batch_norm(
                model,
                &data.train,
                reset_bn_batches,
                EVAL_BATCH / 4,
                seed,
                device,
            )?;
        }
        Ok(evaluate_network(&model, &data.test, device)?)
    };
    let eval = |params: &ParamSet| score(params, reset_bn_batches > 0);
    let end_a = score(a, false)?;
    let end_b = score(b, false)?;
    let grid = lambdas(steps);
    let mut curves = Vec::with_capacity(methods.len());
    for &method in methods {
        let aligned = align(method, a, b, &data.train, device, seed)?;
        tracing::info!(%method, moved = aligned.moved, seconds = aligned.seconds, "aligned");
        let mut test = Vec::with_capacity(grid.len());
        for &l in &grid {
            test.push(match l {
                0.0 => end_a,
                1.0 => end_b,
                _ => eval(&lerp(a, &aligned.b, l)?)?,
            });
        }
        let barrier = grid
            .iter()
            .zip(&test)
            .map(|(&l, m)| m.loss - ((1.0 - l) * end_a.loss + l * end_b.loss))
            .fold(0.0f64, f64::max);
        let midpoint = match grid.iter().position(|&l| l == 0.5) {
            Some(i) => test[i],
            None => eval(&lerp(a, &aligned.b, 0.5)?)?,
        };
        let (best_lambda, best) = grid
            .iter()
            .zip(&test)
            .filter(|(l, _)| **l > 0.0 && **l < 1.0)
            .min_by(|a, b| a.1.loss.total_cmp(&b.1.loss))
            .map_or((0.5, midpoint), |(&l, &m)| (l, m));
        curves.push(Curve {
            method,
            lambdas: grid.clone(),
            test,
            barrier,
            midpoint,
            best_lambda,
            best,
            moved: aligned.moved,
            align_seconds: aligned.seconds,
        });
    }
    Ok(Interpolation {
        a: end_a,
        b: end_b,
        curves,
    })
}
