//! The local training loop: what a federated client runs on its shard, and
//! what the experiments run on theirs.

use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLoss;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use fusion_data::Dataset;
use fusion_models::Mlp;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::config::TrainConfig;
use crate::error::TrainError;
use crate::progress::Progress;
use crate::tensors::{inputs, targets};

/// What a training run did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrainSummary {
    /// Mean training loss of each epoch (over the epoch's batches, as the
    /// weights changed during it).
    pub epoch_loss: Vec<f64>,
    /// Examples trained on per epoch.
    pub examples: usize,
    /// Optimiser steps taken.
    pub steps: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Trains `model` on `data` with `config`, on `device` (plain or autodiff;
/// gradients are tracked on its autodiff twin). Returns the trained model on
/// `device` without autodiff, ready to evaluate or export.
///
/// Batches are drawn from a fresh shuffle each epoch, seeded by
/// `config.seed` and the epoch, so runs are reproducible on a given backend.
pub fn train(
    model: Mlp,
    data: &Dataset,
    config: &TrainConfig,
    device: &Device,
) -> Result<(Mlp, TrainSummary), TrainError> {
    config.validate()?;
    if data.is_empty() {
        return Err(TrainError::EmptyData("training data"));
    }
    model.check_data(data.features(), data.classes())?;
    let started = Instant::now();
    let autodiff = device.clone().autodiff();
    let start = model.to_params();
    let mut model = Mlp::from_params(&start, &autodiff)?;
    // FedProx anchors: the starting weights, constant (no gradient).
    let anchors: Vec<(Tensor<2>, Option<Tensor<1>>)> = if config.proximal_mu > 0.0 {
        let fixed = Mlp::from_params(&start, device)?;
        fixed
            .layers
            .iter()
            .map(|l| (l.weight.val(), l.bias.as_ref().map(|b| b.val())))
            .collect()
    } else {
        Vec::new()
    };
    let mut optimizer = config.optimizer.build();
    let loss_fn = CrossEntropyLoss::new(None, &autodiff);
    let batches = data.len().div_ceil(config.batch);
    let progress = Progress::new(
        &config.label,
        (batches * config.epochs) as u64,
        config.progress,
    );
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut summary = TrainSummary {
        epoch_loss: Vec::with_capacity(config.epochs),
        examples: data.len(),
        steps: 0,
        seconds: 0.0,
    };
    for epoch in 1..=config.epochs {
        let epoch_start = Instant::now();
        shuffle_for_epoch(&mut order, config.seed, epoch);
        // Per-batch losses stay on the device and are read once per epoch,
        // so a GPU is not made to synchronise after every step.
        let mut losses: Vec<Tensor<1>> = Vec::with_capacity(batches);
        for chunk in order.chunks(config.batch) {
            let (x, y) = data.batch(chunk);
            let x = inputs(x, chunk.len(), data.features(), &autodiff);
            let logits = model.forward(x);
            let mut loss = loss_fn.forward(logits, targets(&y, &autodiff));
            losses.push(loss.clone().inner() * chunk.len() as f32);
            if config.proximal_mu > 0.0 {
                loss = loss
                    + proximal_term(&model, &anchors, device) * (config.proximal_mu / 2.0) as f32;
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(config.lr, model, grads);
            summary.steps += 1;
            progress.batch();
        }
        let total = Tensor::cat(losses, 0).sum().into_scalar::<f32>();
        let mean = f64::from(total) / data.len() as f64;
        if !mean.is_finite() {
            progress.finish();
            return Err(TrainError::Diverged {
                epoch,
                batch: batches,
                loss: total,
            });
        }
        summary.epoch_loss.push(mean);
        progress.epoch(
            epoch,
            config.epochs,
            mean,
            epoch_start.elapsed().as_secs_f64(),
        );
    }
    progress.finish();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok((model.valid(), summary))
}

/// Shuffles `order` for `epoch` of a run seeded by `seed`: a fresh,
/// reproducible order every epoch, for training and distillation alike.
pub(crate) fn shuffle_for_epoch(order: &mut [usize], seed: u64, epoch: usize) {
    let mut rng = StdRng::seed_from_u64(
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(epoch as u64),
    );
    order.shuffle(&mut rng);
}

/// ‖w − w₀‖² over every layer, tracked for autodiff through `model`.
fn proximal_term(
    model: &Mlp,
    anchors: &[(Tensor<2>, Option<Tensor<1>>)],
    device: &Device,
) -> Tensor<1> {
    let autodiff = device.clone().autodiff();
    let mut total = Tensor::<1>::zeros([1], &autodiff);
    for (layer, (w0, b0)) in model.layers.iter().zip(anchors) {
        let dw = layer.weight.val() - w0.clone().autodiff();
        total = total + dw.powf_scalar(2.0).sum();
        if let (Some(b), Some(b0)) = (&layer.bias, b0) {
            let db = b.val() - b0.clone().autodiff();
            total = total + db.powf_scalar(2.0).sum();
        }
    }
    total
}
