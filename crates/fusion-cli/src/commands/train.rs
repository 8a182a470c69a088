//! `fusion train`: train a model on a dataset or on one client's shard.

use anyhow::{Context, Result};
use fusion_models::Network;
use fusion_train::{evaluate_network, train_network};
use serde_json::json;

use super::report::print_json;
use crate::cli::TrainArgs;
use crate::files::write_trained_model;
use crate::options::{load_data, train_config};

/// Runs `fusion train`.
pub fn run(args: TrainArgs) -> Result<()> {
    let data = load_data(&args.data.dataset)?;
    let (train_set, shard_text) = args.shard.select(&data.train)?;
    let device = args.training.backend.device()?;
    let model = Network::init(
        &args.training.model,
        train_set.shape(),
        train_set.classes(),
        args.training.seed,
        &device,
    );
    let config = train_config(&args.training, &args.data.dataset, "train");
    let (model, summary) =
        train_network(model, &train_set, &config, &device).context("training failed")?;
    let test = evaluate_network(&model, &data.test, &device)?;
    write_trained_model(&args.out, &model.to_params(), train_set.len())?;
    if args.json {
        return print_json(&json!({
            "dataset": data.name,
            "shard": args.shard.shard.map(|s| s.to_string()),
            "split": args.shard.split.to_string(),
            "model": args.training.model.to_string(),
            "examples": train_set.len(),
            "epochs": config.epochs,
            "epoch_loss": summary.epoch_loss,
            "seconds": summary.seconds,
            "test_loss": test.loss,
            "test_accuracy": test.accuracy,
            "out": args.out,
        }));
    }
    println!(
        "trained {} on {} ({}, {} examples) for {} epochs in {:.1}s",
        args.training.model,
        data.name,
        shard_text,
        train_set.len(),
        config.epochs,
        summary.seconds
    );
    if let Some(last) = summary.epoch_loss.last() {
        println!("final training loss {last:.4}");
    }
    println!(
        "test loss {:.4}, test accuracy {:.2}% ({} examples)",
        test.loss,
        test.accuracy * 100.0,
        data.test.len()
    );
    println!("wrote {}", args.out.display());
    Ok(())
}
