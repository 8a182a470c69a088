//! The local training loop: what a federated client runs on its shard, and
//! what the experiments run on theirs.

use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLoss;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use fusion_data::Dataset;
use fusion_models::{Mlp, Network};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::config::TrainConfig;
use crate::error::TrainError;
use crate::progress::Progress;
use crate::tensors::{images, targets};

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

/// Trains the MLP `model` on `data` with `config`: [`train_network`] for
/// callers that hold an [`Mlp`].
pub fn train(
    model: Mlp,
    data: &Dataset,
    config: &TrainConfig,
    device: &Device,
) -> Result<(Mlp, TrainSummary), TrainError> {
    let (trained, summary) = train_network(Network::Mlp(model), data, config, device)?;
    match trained {
        Network::Mlp(mlp) => Ok((mlp, summary)),
        // train_network returns the architecture it was given.
        _ => Err(TrainError::BadSetting {
            name: "model",
            value: "mlp".into(),
            reason: "training returned another architecture".into(),
        }),
    }
}

/// Trains `model` (any built-in network) on `data` with `config`, on
/// `device` (plain or autodiff; gradients are tracked on its autodiff
/// twin). Returns the trained model on `device` without autodiff, ready to
/// evaluate or export; BatchNorm layers keep the running statistics they
/// gathered.
///
/// Batches are drawn from a fresh shuffle each epoch, seeded by
/// `config.seed` and the epoch, so runs are reproducible on a given backend.
pub fn train_network(
    model: Network,
    data: &Dataset,
    config: &TrainConfig,
    device: &Device,
) -> Result<(Network, TrainSummary), TrainError> {
    config.validate()?;
    if data.is_empty() {
        return Err(TrainError::EmptyData("training data"));
    }
    model.check_data(data.shape(), data.classes())?;
    let started = Instant::now();
    let autodiff = device.clone().autodiff();
    let start = model.to_params();
    let mut model = Network::from_params(&start, &autodiff)?;
    // FedProx anchors: the starting weights, constant (no gradient).
    let anchors: Vec<Tensor<1>> = if config.proximal_mu > 0.0 {
        flat_params(&Network::from_params(&start, device)?)
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
        let mut augment_rng = crate::augment::epoch_rng(config.seed, epoch);
        for chunk in order.chunks(config.batch) {
            let (mut x, y) = data.batch(chunk);
            if config.augment {
                crate::augment::crop_flip(&mut x, chunk.len(), data.shape(), &mut augment_rng);
            }
            let x = images(x, chunk.len(), data.shape(), &autodiff);
            let logits = model.forward(x);
            let mut loss = loss_fn.forward(logits, targets(&y, &autodiff));
            losses.push(loss.clone().inner() * chunk.len() as f32);
            if config.proximal_mu > 0.0 {
                loss = loss
                    + proximal_term(&model, &anchors, &autodiff)
                        * (config.proximal_mu / 2.0) as f32;
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

/// ‖w − w₀‖² over every float tensor burn visits (norm scales and shifts
/// included), tracked for autodiff through `model`. BatchNorm running
/// statistics are visited too; they carry no gradient, so they add a
/// constant that changes no step.
fn proximal_term(model: &Network, anchors: &[Tensor<1>], autodiff: &Device) -> Tensor<1> {
    let current = flat_params(model);
    let mut total: Option<Tensor<1>> = None;
    for (w, w0) in current.into_iter().zip(anchors) {
        let term = (w - w0.clone().autodiff()).powf_scalar(2.0).sum();
        total = Some(match total {
            Some(t) => t + term,
            None => term,
        });
    }
    total.unwrap_or_else(|| Tensor::zeros([1], autodiff))
}

/// Every float parameter of `model`, flattened, in the module's order.
fn flat_params(model: &Network) -> Vec<Tensor<1>> {
    struct Flatten(Vec<Tensor<1>>);
    impl ModuleVisitor for Flatten {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            let n = t.shape().num_elements();
            self.0.push(t.reshape([n]));
        }
    }
    let mut visitor = Flatten(Vec::new());
    model.visit(&mut visitor);
    visitor.0
}
