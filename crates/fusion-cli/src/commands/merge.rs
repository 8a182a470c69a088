//! `fusion merge`: several models into one.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use fusion_core::{ParamSet, Reference, RoundContext, StrategyConfig};
use serde_json::json;

use super::report::{moved_summary, print_json};
use crate::cli::MergeArgs;
use crate::files::{EXAMPLES_KEY, read_examples, read_model, write_model};
use crate::options::Matching;

/// Runs `fusion merge`.
pub fn run(args: MergeArgs) -> Result<()> {
    let (weights, weighted_by, warning) = weights(&args)?;
    let mut models: Vec<(ParamSet, f64)> = Vec::with_capacity(args.models.len());
    for (i, (path, &w)) in args.models.iter().zip(&weights).enumerate() {
        let m = read_model(path)?;
        m.check_finite()
            .with_context(|| format!("model '{}'", path.display()))?;
        if let Some((first, _)) = models.first() {
            first.check_same_layout(&m, 0, i).with_context(|| {
                format!(
                    "'{}' (model 0) and '{}' (model {i}) cannot be merged",
                    args.models[0].display(),
                    path.display()
                )
            })?;
        }
        models.push((m, w));
    }
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
    write_model(&args.out, &outcome.merged)?;

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
fn weights(args: &MergeArgs) -> Result<(Vec<f64>, &'static str, Option<String>)> {
    if let Some(w) = &args.weights {
        if w.len() != args.models.len() {
            bail!(
                "--weights has {} values but {} models were given",
                w.len(),
                args.models.len()
            );
        }
        return Ok((w.clone(), "--weights", None));
    }
    let counts: Vec<Option<f64>> = args
        .models
        .iter()
        .map(|p| read_examples(p))
        .collect::<Result<_>>()?;
    if let Some(counts) = counts.iter().copied().collect::<Option<Vec<f64>>>() {
        return Ok((counts, "examples recorded in the files", None));
    }
    let missing: Vec<String> = args
        .models
        .iter()
        .zip(&counts)
        .filter(|(_, c)| c.is_none())
        .map(|(p, _)| p.display().to_string())
        .collect();
    let warning = format!(
        "{} carry no example count (metadata `{EXAMPLES_KEY}`, written by `fusion train`) \
         and no --weights was given: every model weighs the same. Pass --weights with each \
         model's training examples when their data differ in size.",
        missing.join(", ")
    );
    Ok((
        vec![1.0; args.models.len()],
        "equal (no counts given)",
        Some(warning),
    ))
}
