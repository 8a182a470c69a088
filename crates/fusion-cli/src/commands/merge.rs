//! `fusion merge`: several models into one.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use fusion_core::{ParamSet, Reference, RoundContext, StrategyConfig};
use serde_json::json;

use super::report::{moved_summary, print_json};
use crate::cli::MergeArgs;
use crate::files::{EXAMPLES_KEY, read_model_and_examples, write_model};
use crate::options::Matching;

/// Runs `fusion merge`.
pub fn run(args: MergeArgs) -> Result<()> {
    if let Some(w) = &args.weights
        && w.len() != args.models.len()
    {
        bail!(
            "--weights has {} values but {} models were given",
            w.len(),
            args.models.len()
        );
    }
    let mut models: Vec<ParamSet> = Vec::with_capacity(args.models.len());
    let mut counts: Vec<Option<f64>> = Vec::with_capacity(args.models.len());
    for (i, path) in args.models.iter().enumerate() {
        let (m, examples) = read_model_and_examples(path)?;
        m.check_finite()
            .with_context(|| format!("model '{}'", path.display()))?;
        if let Some(first) = models.first() {
            first.check_same_layout(&m, 0, i).with_context(|| {
                format!(
                    "'{}' (model 0) and '{}' (model {i}) cannot be merged",
                    args.models[0].display(),
                    path.display()
                )
            })?;
        }
        models.push(m);
        counts.push(examples);
    }
    if args.reset_bn_batches > 0 && args.dataset.is_none() {
        bail!("--reset-bn-batches needs --dataset (the data to measure the statistics on)");
    }
    let (weights, weighted_by, warning) = weights(&args, &counts);
    let models: Vec<(ParamSet, f64)> = models.into_iter().zip(weights).collect();
    if let Some(warning) = warning {
        // Only once the models are known to merge: one clear line on error.
        eprintln!("warning: {warning}");
    }
    let m = Matching::from_args(&args.matching)?;
    let config = StrategyConfig {
        options: m.options,
        // The first file is the reference, as --models documents.
        reference: Reference::First,
        max_passes: args.max_passes,
        ..StrategyConfig::new(args.method, m.spec, m.device)
    };
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("--max-passes: {e}"))?;
    let strategy = config.build();
    let start = Instant::now();
    let outcome = strategy
        .merge(&RoundContext::default(), &models)
        .context("merge failed")?;
    let seconds = start.elapsed().as_secs_f64();
    let merged = match args.reset_bn_batches {
        0 => outcome.merged,
        batches => reset_statistics(&args, outcome.merged, batches)?,
    };
    write_model(&args.out, &merged)?;

    if args.json {
        let reports: Vec<_> = outcome
            .reports
            .iter()
            .zip(&args.models)
            .map(|(r, path)| {
                json!({
                    "model": path.display().to_string(),
                    "weight": r.weight,
                    "moved": r.moved,
                    "sweeps": r.sweeps,
                })
            })
            .collect();
        return print_json(&json!({
            "method": strategy.kind().as_str(),
            "weighted_by": weighted_by,
            "seconds": seconds,
            "passes": outcome.passes,
            "models": reports,
            "out": args.out.display().to_string(),
        }));
    }
    println!(
        "merged {} models with '{}' in {:.3} s (weights: {weighted_by})",
        models.len(),
        strategy.kind(),
        seconds
    );
    for (r, path) in outcome.reports.iter().zip(&args.models) {
        if r.moved.is_empty() {
            println!("  {} (weight {})", path.display(), r.weight);
        } else {
            println!(
                "  {} (weight {}): {}",
                path.display(),
                r.weight,
                moved_summary(&r.moved)
            );
        }
    }
    println!("  wrote {}", args.out.display());
    Ok(())
}

/// The models' weights and where they came from: `--weights`, else the
/// example counts `fusion train` records in each file, else equal weights,
/// with a warning (a uniform average of clients with unequal data loses
/// about 10 points of accuracy in one-shot merges; issue 10).
fn weights(args: &MergeArgs, counts: &[Option<f64>]) -> (Vec<f64>, &'static str, Option<String>) {
    if let Some(w) = &args.weights {
        return (w.clone(), "--weights", None);
    }
    if let Some(counts) = counts.iter().copied().collect::<Option<Vec<f64>>>() {
        return (counts, "examples recorded in the files", None);
    }
    let missing: Vec<String> = args
        .models
        .iter()
        .zip(counts)
        .filter(|(_, c)| c.is_none())
        .map(|(p, _)| p.display().to_string())
        .collect();
    let warning = format!(
        "{} carry no example count (metadata `{EXAMPLES_KEY}`, written by `fusion train`) \
         and no --weights was given: every model weighs the same. Pass --weights with each \
         model's training examples when their data differ in size.",
        missing.join(", ")
    );
    (
        vec![1.0; args.models.len()],
        "equal (no counts given)",
        Some(warning),
    )
}

/// The merged model with its BatchNorm statistics measured again on
/// `batches` batches of `--dataset`'s training set (250 examples each).
fn reset_statistics(args: &MergeArgs, merged: ParamSet, batches: usize) -> Result<ParamSet> {
    let source = args
        .dataset
        .as_ref()
        .context("--reset-bn-batches needs --dataset (the data to measure the statistics on)")?;
    let device = args.matching.backend.device()?;
    let network = fusion_models::Network::from_params(&merged, &device)
        .context("--reset-bn-batches needs a built-in ResNet or VGG")?;
    if network.clone().batch_norms_mut().is_empty() {
        anyhow::bail!("--reset-bn-batches: the merged model has no BatchNorm layer");
    }
    let data = crate::options::load_data(source)?;
    let network = fusion_train::reset_batch_norm(
        network,
        &data.train,
        batches,
        250,
        args.matching.seed,
        &device,
    )
    .context("re-estimating BatchNorm statistics")?;
    // Only running statistics changed; they go back into the merged set,
    // which keeps its names (a `fc` head stays `fc`), tensor order and
    // integer tensors.
    let mut out = merged;
    let statistics = network.to_params();
    let changed = statistics
        .iter()
        .filter(|(name, _)| fusion_core::is_running_statistic(name));
    for (name, t) in changed {
        let position = out
            .position(name)
            .with_context(|| format!("tensor '{name}' is not in the merged model"))?;
        let target = out.at_mut(position).data_mut();
        if target.len() != t.data().len() {
            bail!("tensor '{name}' changed size while re-estimating statistics");
        }
        target.copy_from_slice(t.data());
    }
    Ok(out)
}
