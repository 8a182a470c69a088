//! `fusion experiment split-merge` and `fusion demo`, which is the same
//! experiment with defaults that need nothing but the binary.

use anyhow::{Context, Result};
use fusion_data::{DataSource, Split};
use fusion_experiments::{
    Correction, SplitMergeConfig, interpolation_csv, interpolation_figure, split_merge,
    split_merge_csv, split_merge_table,
};
use fusion_models::{Architecture, MlpArchitecture};
use fusion_train::{OptimizerKind, TrainConfig};

use super::outputs::{list, write_outputs};
use super::report::print_json;
use crate::cli::{DemoArgs, SplitMergeArgs};
use crate::files::write_model;
use crate::options::{load_data, train_config};

/// Runs `fusion experiment split-merge`.
pub fn run_split_merge(args: SplitMergeArgs) -> Result<()> {
    let config = SplitMergeConfig {
        split: args.split,
        arch: args.training.model.clone(),
        train: train_config(&args.training, &args.data.dataset, "model"),
        steps: args.steps,
        split_seed: args.split_seed,
        correction: args.correction.correction(),
    };
    let device = args.training.backend.device()?;
    execute(&args.data.dataset, &config, &device, &args.out, args.json)
}

/// Runs `fusion demo`: the paper's biased split of the embedded sample,
/// 3×512 MLPs, Adam 1e-3, batch 500.
pub fn run_demo(args: DemoArgs) -> Result<()> {
    let config = SplitMergeConfig {
        split: Split::Biased(0.8),
        arch: Architecture::Mlp(MlpArchitecture::default()),
        train: TrainConfig {
            epochs: args.epochs,
            optimizer: OptimizerKind::Adam,
            seed: args.seed,
            ..TrainConfig::default()
        },
        steps: 11,
        split_seed: args.seed,
        correction: Correction::None,
    };
    let device = args.backend.device()?;
    execute(&DataSource::Embedded, &config, &device, &args.out, false)?;
    println!(
        "\nThe same on the full Fashion-MNIST: apt-get install -y dataset-fashion-mnist, then\n  fusion experiment split-merge --dataset fashion-mnist --split biased:0.8 --out out/split-merge"
    );
    Ok(())
}

fn execute(
    source: &DataSource,
    config: &SplitMergeConfig,
    device: &fusion_core::Device,
    out: &std::path::Path,
    json: bool,
) -> Result<()> {
    let data = load_data(source)?;
    let report = split_merge(&data, config, device).context("split-merge experiment failed")?;
    let title = format!(
        "Split {} of {}: interpolation between A and B",
        report.split, data.name
    );
    let mut written = write_outputs(
        out,
        &[
            ("results.json", serde_json::to_string_pretty(&report)?),
            ("results.csv", split_merge_csv(&report)),
            ("curves.csv", interpolation_csv(&report.interpolation)),
        ],
        &interpolation_figure(&report.interpolation, &title),
        "split-merge",
    )?;
    for (name, model) in [
        ("model-a.safetensors", &report.models[0]),
        ("model-b.safetensors", &report.models[1]),
    ] {
        let path = out.join(name);
        write_model(&path, model)?;
        written.push(path);
    }
    if json {
        return print_json(&serde_json::to_value(&report)?);
    }
    print!("{}", split_merge_table(&report));
    println!(
        "loss barrier along the interpolation: {}",
        report
            .interpolation
            .curves
            .iter()
            .map(|c| format!("{} {:.3}", c.method, c.barrier))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("wrote {}", list(&written));
    Ok(())
}
