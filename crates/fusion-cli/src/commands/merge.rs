//! `fusion merge`: several models into one.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use fusion_core::{AlignToReference, MergeMany, ParamSet, Strategy, WeightedAverage};
use serde_json::json;

use super::report::{moved_summary, print_json};
use crate::cli::{MergeArgs, MergeMethod};
use crate::files::{read_model, write_model};
use crate::options::Matching;

/// Runs `fusion merge`.
pub fn run(args: MergeArgs) -> Result<()> {
    let weights = match &args.weights {
        Some(w) if w.len() != args.models.len() => bail!(
            "--weights has {} values but {} models were given",
            w.len(),
            args.models.len()
        ),
        Some(w) => w.clone(),
        None => vec![1.0; args.models.len()],
    };
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
    let m = Matching::from_args(&args.matching)?;
    let strategy: Box<dyn Strategy> = match args.method {
        MergeMethod::Average => Box::new(WeightedAverage),
        MergeMethod::Align => Box::new(AlignToReference {
            spec: m.spec,
            device: m.device,
            options: m.options,
        }),
        MergeMethod::MergeMany => Box::new(MergeMany {
            options: m.options,
            ..MergeMany::new(m.spec, m.device)
        }),
    };
    let start = Instant::now();
    let outcome = strategy.merge(None, &models).context("merge failed")?;
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
            "method": strategy.name(),
            "seconds": seconds,
            "passes": outcome.passes,
            "models": reports,
            "out": args.out.display().to_string(),
        }));
    }
    println!(
        "merged {} models with '{}' in {:.3} s",
        models.len(),
        strategy.name(),
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
