//! Test loss and accuracy of a model, or of an ensemble of models.

use burn::tensor::Device;
use fusion_data::Dataset;
use fusion_models::{Mlp, Network};

use crate::error::TrainError;
use crate::tensors::{host, images};

/// Examples per evaluation batch: large enough to keep the device busy,
/// small enough that 10k×512 activations stay a few MB.
pub const EVAL_BATCH: usize = 1000;

/// Mean cross-entropy loss and accuracy over a dataset.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    /// Mean cross-entropy (natural log) per example.
    pub loss: f64,
    /// Fraction of examples whose arg-max class is the label.
    pub accuracy: f64,
}

/// Evaluates the MLP `model` (on `device`) over all of `data`.
pub fn evaluate(model: &Mlp, data: &Dataset, device: &Device) -> Result<Metrics, TrainError> {
    evaluate_ensemble(&[model], data, device)
}

/// Evaluates the output ensemble of the MLPs `models`: class probabilities
/// averaged over the models (the upper reference a merged model is
/// compared with). One model is plain evaluation.
pub fn evaluate_ensemble(
    models: &[&Mlp],
    data: &Dataset,
    device: &Device,
) -> Result<Metrics, TrainError> {
    // burn modules share their tensors when cloned: no copy of weights.
    let networks: Vec<Network> = models.iter().map(|m| Network::Mlp((*m).clone())).collect();
    evaluate_networks(&networks.iter().collect::<Vec<_>>(), data, device)
}

/// Evaluates any built-in network (in evaluation mode: BatchNorm uses its
/// running statistics) over all of `data`.
pub fn evaluate_network(
    model: &Network,
    data: &Dataset,
    device: &Device,
) -> Result<Metrics, TrainError> {
    evaluate_networks(&[model], data, device)
}

/// The output ensemble of any built-in networks, as [`evaluate_ensemble`].
pub fn evaluate_networks(
    models: &[&Network],
    data: &Dataset,
    device: &Device,
) -> Result<Metrics, TrainError> {
    if data.is_empty() {
        return Err(TrainError::EmptyData("evaluation data"));
    }
    if models.is_empty() {
        return Err(TrainError::BadSetting {
            name: "models",
            value: "none".into(),
            reason: "an ensemble needs at least one model".into(),
        });
    }
    for model in models {
        model.check_data(data.shape(), data.classes())?;
    }
    let classes = data.classes();
    let (mut loss, mut correct) = (0.0f64, 0usize);
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(EVAL_BATCH) {
        let (x, y) = data.batch(chunk);
        let x = images(x, chunk.len(), data.shape(), device);
        let mut probs = vec![0.0f64; chunk.len() * classes];
        for model in models {
            let logits = host(model.forward(x.clone()));
            for (row, out) in logits
                .chunks_exact(classes)
                .zip(probs.chunks_exact_mut(classes))
            {
                softmax_add(row, out, 1.0 / models.len() as f64);
            }
        }
        for (p, &label) in probs.chunks_exact(classes).zip(&y) {
            loss -= p[label as usize].max(f64::MIN_POSITIVE).ln();
            let best = p
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i);
            correct += usize::from(best == label as usize);
        }
    }
    let n = data.len() as f64;
    Ok(Metrics {
        loss: loss / n,
        accuracy: correct as f64 / n,
    })
}

/// Adds `weight · softmax(logits)` to `out`, computed stably in f64.
fn softmax_add(logits: &[f32], out: &mut [f64], weight: f64) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    for (o, e) in out.iter_mut().zip(exps) {
        *o += weight * e / sum;
    }
}
