//! The paper's split-data experiment: train A and B on two shards of one
//! training set, then compare, on the full test set, the two models, their
//! naive average, their weight- and activation-matched merges, and their
//! output ensemble. Any built-in network: a CNN's merges are corrected
//! (BatchNorm statistics re-estimated, or REPAIR) as the config says.

use burn::tensor::Device;
use fusion_core::ParamSet;
use fusion_data::{Split, TrainTest};
use fusion_models::{Architecture, Network};
use fusion_train::{Metrics, TrainConfig, TrainSummary, evaluate_networks, train_network};

use crate::error::ExperimentError;
use crate::interpolate::{Correction, Interpolation, interpolate};
use crate::method::Method;

/// Settings of a split-merge run.
#[derive(Debug, Clone)]
pub struct SplitMergeConfig {
    /// How the training set is dealt to the two models.
    pub split: Split,
    /// The network.
    pub arch: Architecture,
    /// Training of each model (its `seed` seeds shuffling and, offset per
    /// model, the initial weights, so A and B start apart).
    pub train: TrainConfig,
    /// λ values for the interpolation curves of the plot.
    pub steps: usize,
    /// Seed of the split.
    pub split_seed: u64,
    /// What is done to every interpolated (and end) model before it is
    /// scored: for BatchNorm CNNs, whose averaged statistics describe no
    /// network, re-estimated statistics or REPAIR.
    pub correction: Correction,
}

/// One line of the result table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// What was evaluated, e.g. `weight-matched merge`.
    pub name: String,
    /// Its test metrics.
    pub test: Metrics,
}

/// What a split-merge run found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SplitMergeReport {
    /// The data source.
    pub dataset: String,
    /// The split, as given.
    pub split: String,
    /// The architecture.
    pub model: String,
    /// Examples in shard A and shard B.
    pub shard_sizes: [usize; 2],
    /// Training of A and B.
    pub training: [TrainSummary; 2],
    /// The table: A, B, naive average, weight-matched merge,
    /// activation-matched merge, ensemble.
    pub rows: Vec<Row>,
    /// Interpolation curves (naive, weight, activation) on the test set.
    pub interpolation: Interpolation,
    /// The paper's claim: the weight-matched merge has lower test loss than
    /// both A and B.
    pub merged_beats_both: bool,
    /// The same claim for the best interior point of the weight-matched
    /// line: λ, its test loss, and whether that loss is below both ends.
    pub best_weight_matched: (f64, f64, bool),
    /// The trained models A and B, for writing out (not part of the JSON).
    #[serde(skip)]
    pub models: [ParamSet; 2],
}

/// Runs the experiment on `data` (the split cuts `data.train` into two).
pub fn split_merge(
    data: &TrainTest,
    config: &SplitMergeConfig,
    device: &Device,
) -> Result<SplitMergeReport, ExperimentError> {
    let train_set = &data.train;
    let shards = config.split.shards(
        train_set.labels(),
        train_set.classes(),
        2,
        config.split_seed,
    )?;
    let (image, classes) = (train_set.shape(), train_set.classes());
    let mut models = Vec::with_capacity(2);
    let mut summaries = Vec::with_capacity(2);
    for (i, shard) in shards.iter().enumerate() {
        let label = if i == 0 { "model A" } else { "model B" };
        let init_seed = config.train.seed.wrapping_add(i as u64 * 1_000_003);
        let model = Network::init(&config.arch, image, classes, init_seed, device);
        let cfg = TrainConfig {
            seed: init_seed,
            label: label.into(),
            ..config.train.clone()
        };
        tracing::info!(model = label, examples = shard.len(), "training");
        let (trained, summary) = train_network(model, &train_set.subset(shard), &cfg, device)?;
        models.push(trained);
        summaries.push(summary);
    }
    let (a, b) = (&models[0], &models[1]);
    let (pa, pb) = (a.to_params(), b.to_params());
    let interpolation = interpolate(
        &pa,
        &pb,
        data,
        &Method::ALL,
        config.steps,
        device,
        config.train.seed,
        config.correction,
    )?;
    let mut rows = vec![
        Row {
            name: "model A".into(),
            test: interpolation.a,
        },
        Row {
            name: "model B".into(),
            test: interpolation.b,
        },
    ];
    for curve in &interpolation.curves {
        let name = match curve.method {
            Method::Naive => "naive average",
            Method::Weight => "weight-matched merge",
            Method::Activation => "activation-matched merge",
            Method::Ste => "STE-matched merge",
        };
        rows.push(Row {
            name: name.into(),
            test: curve.midpoint,
        });
    }
    rows.push(Row {
        name: "ensemble of A and B".into(),
        test: evaluate_networks(&[a, b], &data.test, device)?,
    });
    let weight = interpolation
        .curves
        .iter()
        .find(|c| c.method == Method::Weight);
    let below_both = |loss: f64| loss < interpolation.a.loss && loss < interpolation.b.loss;
    let merged_beats_both = weight.is_some_and(|c| below_both(c.midpoint.loss));
    let best_weight_matched = weight.map_or((0.5, f64::INFINITY, false), |c| {
        (c.best_lambda, c.best.loss, below_both(c.best.loss))
    });
    let mut training = summaries.into_iter();
    let (ta, tb) = (training.next(), training.next());
    let (Some(ta), Some(tb)) = (ta, tb) else {
        return Err(ExperimentError::BadSetting("two shards expected".into()));
    };
    Ok(SplitMergeReport {
        dataset: data.name.clone(),
        split: config.split.to_string(),
        model: config.arch.to_string(),
        shard_sizes: [shards[0].len(), shards[1].len()],
        training: [ta, tb],
        rows,
        interpolation,
        merged_beats_both,
        best_weight_matched,
        models: [pa, pb],
    })
}
