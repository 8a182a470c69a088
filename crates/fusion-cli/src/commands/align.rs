//! `fusion align`: B permuted onto A.

use std::time::Instant;

use anyhow::{Context, Result};
use fusion_core::{Device, ParamSet, PermMoved, weight_matching};
use fusion_models::{SAME_FUNCTION_TOLERANCE, permuted_output_difference};
use serde_json::json;

use super::report::{moved_summary, print_json};
use crate::cli::AlignArgs;
use crate::files::{read_model, write_model};
use crate::options::Matching;

/// Runs `fusion align`.
pub fn run(args: AlignArgs) -> Result<()> {
    let a = read_model(&args.a)?;
    let b = read_model(&args.b)?;
    let (a_name, b_name) = (args.a.display(), args.b.display());
    a.check_same_layout(&b, 0, 1).with_context(|| {
        format!("models A ('{a_name}', model 0) and B ('{b_name}', model 1) differ")
    })?;
    a.check_finite()
        .with_context(|| format!("model A ('{a_name}')"))?;
    b.check_finite()
        .with_context(|| format!("model B ('{b_name}')"))?;
    let m = Matching::from_args(&args.matching)?;
    let spec = m
        .spec
        .resolve(&a)
        .with_context(|| format!("spec does not fit model A ('{a_name}')"))?;

    let start = Instant::now();
    let found = weight_matching(&spec, &a, &b, &m.device, &m.options).context("weight matching")?;
    let seconds = start.elapsed().as_secs_f64();
    let aligned = spec.apply(&b, &found.perms)?;
    let check = check_function(&b, &aligned, &m.device)?;
    write_model(&args.out, &aligned)?;

    let moved = PermMoved::list(&spec, &found.perms);
    if args.json {
        let permutations: serde_json::Map<String, serde_json::Value> = spec
            .names()
            .iter()
            .zip(&found.perms)
            .map(|(name, p)| (name.clone(), json!(p.as_slice())))
            .collect();
        print_json(&json!({
            "sweeps": found.sweeps,
            "objective": found.objective,
            "initial_objective": found.initial_objective,
            "seconds": seconds,
            "permutations": permutations,
            "moved": moved,
            "solves": found.solves,
            "skipped": found.skipped,
            "certified": found.certified,
            "corrected": found.corrected,
            "backend": args.matching.backend.to_string(),
            "function_check": match &check {
                FunctionCheck::Same(d) => json!({ "relative_difference": d }),
                FunctionCheck::NotChecked(why) => json!({ "skipped": why }),
            },
            "out": args.out.display().to_string(),
        }))
    } else {
        println!(
            "aligned '{b_name}' onto '{a_name}' in {:.3} s ({} sweeps, {} solves)",
            seconds, found.sweeps, found.solves
        );
        println!("  units moved: {}", moved_summary(&moved));
        println!(
            "  objective <A, P(B)>: {:.6} -> {:.6}",
            found.initial_objective,
            found.final_objective()
        );
        match &check {
            FunctionCheck::Same(d) => println!(
                "  outputs of permuted B equal B's on random inputs (relative difference {d:.1e})"
            ),
            FunctionCheck::NotChecked(why) => {
                println!("  outputs not checked (no built-in forward pass for this model: {why})")
            }
        }
        println!("  wrote {}", args.out.display());
        Ok(())
    }
}

/// What the permuted-output check found.
enum FunctionCheck {
    /// Same outputs, up to this relative difference.
    Same(f32),
    /// No built-in forward pass fits the model (a spec file's own
    /// architecture); the reason.
    NotChecked(String),
}

/// Runs B and permuted B on random inputs when B is a built-in network, so
/// that a spec which validates but permutes a wrong axis of the same size
/// (or leaves a tensor out) is refused before anything is written, rather
/// than producing a broken model with exit status 0.
fn check_function(b: &ParamSet, permuted: &ParamSet, device: &Device) -> Result<FunctionCheck> {
    match permuted_output_difference(b, permuted, 8, 0x000A_119E, device) {
        Ok(d) if d <= SAME_FUNCTION_TOLERANCE => Ok(FunctionCheck::Same(d)),
        Ok(d) => anyhow::bail!(
            "the spec does not keep the model's function: permuted B's outputs differ from B's \
             by {d:.3} of their scale on random inputs (float rounding stays below \
             {SAME_FUNCTION_TOLERANCE:e}); a permutation acts on a wrong axis or misses a \
             tensor. Nothing was written"
        ),
        Err(e) => Ok(FunctionCheck::NotChecked(e.to_string())),
    }
}
