//! `fusion bench train`: seconds per training epoch of a built-in network
//! (the paper's MLP by default, or a CNN) on each CPU (or GPU) backend, measured in one run and reported as ratios to
//! the first backend. `scripts/bench-train.sh` runs PyTorch's loop on the
//! same data size and threads right after, for the ratio the issue asks for.

use std::time::Instant;

use anyhow::{Result, ensure};
use fusion_models::Network;
use fusion_train::{TrainConfig, train_network};
use serde_json::json;

use super::report::print_json;
use crate::cli::BenchTrainArgs;
use crate::options::load_data;

/// Runs `fusion bench train`.
pub fn run(args: BenchTrainArgs) -> Result<()> {
    ensure!(args.examples > 0, "--examples must be at least 1");
    ensure!(!args.backends.is_empty(), "--backends: name at least one");
    let data = load_data(&args.data.dataset)?;
    let n = data.train.len();
    ensure!(
        n > 0,
        "dataset `{}` has no training examples",
        args.data.dataset
    );
    let indices: Vec<usize> = (0..args.examples).map(|i| i % n).collect();
    let train_set = data.train.subset(&indices);
    let arch = &args.model;
    let batch = usize::try_from(args.batch).unwrap_or(500);
    let repeats = usize::try_from(args.repeats).unwrap_or(1);
    let mut rows = Vec::new();
    for &backend in &args.backends {
        let device = backend.device()?;
        let model = Network::init(arch, train_set.shape(), train_set.classes(), 0, &device);
        let config = TrainConfig {
            epochs: 1,
            batch,
            progress: false,
            label: format!("bench {backend}"),
            ..TrainConfig::default()
        };
        // Warm-up: first-touch allocations, kernel compilation on wgpu.
        let (mut model, _) = train_network(model, &train_set.head(5_000), &config, &device)?;
        let mut best = f64::INFINITY;
        for _ in 0..repeats {
            let start = Instant::now();
            let (next, _) = train_network(model, &train_set, &config, &device)?;
            best = best.min(start.elapsed().as_secs_f64());
            model = next;
        }
        rows.push((backend, best));
    }
    let base = rows[0].1;
    if args.json {
        let list: Vec<_> = rows
            .iter()
            .map(|(b, s)| json!({"backend": b.to_string(), "seconds_per_epoch": s, "ratio_to_first": s / base}))
            .collect();
        return print_json(&json!({
            "model": arch.to_string(),
            "examples": args.examples,
            "batch": batch,
            "optimizer": "adam",
            "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "backends": list,
        }));
    }
    println!(
        "one epoch, {} on {} examples, Adam, batch {batch}, best of {repeats}",
        arch, args.examples
    );
    println!("| backend | s/epoch | ratio to {} |", rows[0].0);
    println!("|---|---|---|");
    for (b, s) in &rows {
        println!("| {b} | {s:.2} | {:.2} |", s / base);
    }
    Ok(())
}
