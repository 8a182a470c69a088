//! Linear interpolation between two models, per alignment method: the
//! paper's Figure 2 and its loss barrier.

use burn::tensor::Device;
use fusion_core::ParamSet;
use fusion_data::TrainTest;
use fusion_models::Network;
use fusion_train::{Metrics, MomentData, evaluate_network, repair, reset_batch_norm};

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

/// What is done to each interpolated network before it is scored; with
/// re-estimated BatchNorm statistics, the end models' are re-estimated too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Correction {
    /// Nothing: the interpolated weights and statistics as they are.
    #[default]
    None,
    /// BatchNorm running statistics measured again on `batches` training
    /// batches of 250.
    ResetBatchNorm {
        /// Batches used.
        batches: usize,
    },
    /// REPAIR: every channel rescaled to the interpolation of the end
    /// models' moments, measured on `batches` training batches of 250.
    Repair {
        /// Batches used.
        batches: usize,
    },
}

/// Examples per batch of a [`Correction`]'s measurements.
const CORRECTION_BATCH: usize = 250;

/// Curves for every method, and the end models' own figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Interpolation {
    /// Test metrics of model A.
    pub a: Metrics,
    /// Test metrics of model B.
    pub b: Metrics,
    /// One curve per method, in the order asked for.
    pub curves: Vec<Curve>,
    /// What was done to each interpolated network before scoring.
    pub correction: Correction,
}

/// Evenly spaced λ in [0, 1]; always includes 0, 0.5 (for an odd count) and 1.
pub fn lambdas(steps: usize) -> Vec<f64> {
    let steps = steps.max(2);
    (0..steps).map(|i| i as f64 / (steps - 1) as f64).collect()
}

/// Interpolates between `a` and `b` on `data.test` for each method.
/// `steps` is the number of λ values (25 in the paper); odd counts hit 0.5.
/// Any built-in network works (MLP, ResNet, VGG). `correction` says what
/// is done to every interpolated network before it is scored: without
/// one, a BatchNorm network's barrier mostly measures stale statistics.
#[allow(clippy::too_many_arguments)]
pub fn interpolate(
    a: &ParamSet,
    b: &ParamSet,
    data: &TrainTest,
    methods: &[Method],
    steps: usize,
    device: &Device,
    seed: u64,
    correction: Correction,
) -> Result<Interpolation, ExperimentError> {
    if steps < 2 {
        return Err(ExperimentError::BadSetting(format!(
            "--steps {steps}: need at least 2 (λ = 0 and 1)"
        )));
    }
    let moments = |batches: usize| MomentData {
        data: &data.train,
        batches,
        batch: CORRECTION_BATCH,
        seed,
    };
    let net_a = Network::from_params(a, device)?;
    // The interpolated network at λ between A and aligned B, corrected.
    let score = |params: &ParamSet, b: &Network, lambda: f64| -> Result<Metrics, ExperimentError> {
        let model = Network::from_params(params, device)?;
        let model = match correction {
            Correction::None => model,
            Correction::ResetBatchNorm { batches } => {
                reset_batch_norm(model, &data.train, batches, CORRECTION_BATCH, seed, device)?
            }
            Correction::Repair { batches } => {
                repair(model, &net_a, b, lambda, moments(batches), device)?
            }
        };
        Ok(evaluate_network(&model, &data.test, device)?)
    };
    // The end models are scored with statistics measured the same way as
    // the interpolated ones' when those are re-estimated: training leaves
    // running statistics that lag the final weights, and a barrier against
    // them would credit the re-estimation, not the merge.
    let end = |params: &ParamSet| -> Result<Metrics, ExperimentError> {
        match correction {
            // REPAIR's targets at λ = 0 or 1 are the model's own moments.
            Correction::Repair { .. } => Ok(evaluate_network(
                &Network::from_params(params, device)?,
                &data.test,
                device,
            )?),
            _ => score(params, &net_a, 0.0),
        }
    };
    let (end_a, end_b) = (end(a)?, end(b)?);
    let grid = lambdas(steps);
    let mut curves = Vec::with_capacity(methods.len());
    for &method in methods {
        let aligned = align(method, a, b, &data.train, device, seed)?;
        tracing::info!(%method, moved = aligned.moved, seconds = aligned.seconds, "aligned");
        let net_b = Network::from_params(&aligned.b, device)?;
        let eval = |l: f64| -> Result<Metrics, ExperimentError> {
            score(&lerp(a, &aligned.b, l)?, &net_b, l)
        };
        let mut test = Vec::with_capacity(grid.len());
        for &l in &grid {
            test.push(match l {
                0.0 => end_a,
                1.0 => end_b,
                _ => eval(l)?,
            });
        }
        let barrier = grid
            .iter()
            .zip(&test)
            .map(|(&l, m)| m.loss - ((1.0 - l) * end_a.loss + l * end_b.loss))
            .fold(0.0f64, f64::max);
        let midpoint = match grid.iter().position(|&l| l == 0.5) {
            Some(i) => test[i],
            None => eval(0.5)?,
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
        correction,
    })
}
