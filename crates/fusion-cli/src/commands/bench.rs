//! `fusion bench align`: weight matching and the assignment solver, each
//! timed against a baseline measured in the same run, reported as ratios.
//!
//! Baselines:
//! - weight matching: the paper's loop as the reference implements it
//!   (every permutation re-solved every sweep, every assignment cold), on
//!   the same device and data, so the ratio isolates Fusion's two wins;
//! - the assignment solver: `lsap`, a line-by-line port of scipy's
//!   `linear_sum_assignment`, on the same matrices.
//!
//! `--dump DIR` writes the inputs so `scripts/bench_reference.py` can time
//! scipy itself and a NumPy port of the reference weight matching on them.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use fusion_core::{
    LapSolver, MatchOptions, MatchResult, ParamSet, Sense, infer_mlp_spec, synthetic,
    weight_matching,
};
use serde_json::json;

use super::report::print_json;
use crate::cli::BenchAlignArgs;
use crate::files::{read_model, write_atomic, write_model};

const WIDTHS: [usize; 5] = [784, 512, 512, 512, 10];

/// Runs `fusion bench align`.
pub fn run(args: BenchAlignArgs) -> Result<()> {
    let device = args.backend.device()?;
    let repeats = usize::try_from(args.repeats).unwrap_or(1);
    let mut pairs: Vec<(String, ParamSet, ParamSet)> = Vec::new();
    let a = synthetic::random_mlp(&WIDTHS, 1);
    let spec = infer_mlp_spec(&a)?.validate(&a)?;
    let planted = synthetic::random_permutations(spec.sizes(), 2);
    let b_near = synthetic::perturb(&spec.apply(&a, &planted)?, 0.05, 3);
    pairs.push(("permuted + 5% noise".into(), a.clone(), b_near));
    pairs.push((
        "independent init".into(),
        a,
        synthetic::random_mlp(&WIDTHS, 4),
    ));
    if let (Some(pa), Some(pb)) = (&args.a, &args.b) {
        let (a, b) = (read_model(pa)?, read_model(pb)?);
        pairs.push((
            format!("{} vs {}", file_name(pa), file_name(pb)),
            a.clone(),
            b,
        ));
        // A federated client that uploads the global model unchanged.
        pairs.push((format!("{} vs itself", file_name(pa)), a.clone(), a));
    }
    if let Some(dir) = &args.dump {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory '{}'", dir.display()))?;
        for (k, (_, a, b)) in pairs.iter().enumerate() {
            write_model(&dir.join(format!("pair{k}_a.safetensors")), a)?;
            write_model(&dir.join(format!("pair{k}_b.safetensors")), b)?;
        }
    }

    let mut matching_rows = Vec::new();
    for (label, a, b) in &pairs {
        let spec = infer_mlp_spec(a)
            .and_then(|s| s.validate(a))
            .with_context(|| format!("pair '{label}'"))?;
        let variant = |all: bool, incremental: bool| -> Result<(f64, MatchResult)> {
            let opts = MatchOptions {
                warm_start: all,
                reuse_unchanged: all,
                incremental,
                ..MatchOptions::default()
            };
            // One untimed run warms caches and, on wgpu, compiles shaders.
            let first = weight_matching(&spec, a, b, &device, &opts)?;
            let best = best_of(repeats, || {
                weight_matching(&spec, a, b, &device, &opts)
                    .map(|_| ())
                    .map_err(Into::into)
            })?;
            Ok((best, first))
        };
        let (ours, found) = variant(true, true)?;
        let (baseline, paper) = variant(false, false)?;
        let (not_incremental, _) = variant(true, false)?;
        matching_rows.push(json!({
            "pair": label, "sweeps": found.sweeps, "solves": found.solves,
            "certified": found.certified, "corrected": found.corrected,
            "baseline_solves": paper.solves,
            "fusion_s": ours, "baseline_s": baseline, "speedup": baseline / ours,
            "without_incremental_s": not_incremental,
        }));
    }

    let mut lap_rows = Vec::new();
    for &n in &args.lap_sizes {
        if n == 0 {
            bail!("--lap-sizes must be positive");
        }
        let matrix = similarity_like(n, 10 + n as u64);
        if let Some(dir) = &args.dump {
            let bytes: Vec<u8> = matrix.iter().flat_map(|x| x.to_le_bytes()).collect();
            write_atomic(&dir.join(format!("lap_{n}.f32")), &bytes)?;
        }
        let wide: Vec<f64> = matrix.iter().map(|&x| f64::from(x)).collect();
        let reps = if n >= 4096 { repeats.min(2) } else { repeats };
        let ours = best_of(reps, || {
            LapSolver::new()
                .solve(&matrix, n, Sense::Maximize)
                .map(|_| ())
                .map_err(Into::into)
        })?;
        let lsap = best_of(reps, || {
            lsap::solve(n, n, &wide, true)
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!("lsap: {e:?}"))
        })?;
        // Warm: re-solve after a small change, as in later sweeps.
        let mut solver = LapSolver::new();
        solver.solve(&matrix, n, Sense::Maximize)?;
        let nudged: Vec<f32> = matrix
            .iter()
            .enumerate()
            .map(|(k, &x)| x + 1e-3 * ((k * 7919 % 1000) as f32 / 1000.0 - 0.5))
            .collect();
        let warm = best_of(reps, || {
            let mut s = solver.clone();
            s.solve(&nudged, n, Sense::Maximize)
                .map(|_| ())
                .map_err(Into::into)
        })?;
        lap_rows.push(json!({
            "n": n, "fusion_cold_s": ours, "fusion_warm_s": warm, "lsap_s": lsap, "speedup": lsap / ours,
        }));
    }

    if args.json {
        return print_json(&json!({
            "backend": args.backend.to_string(),
            "repeats": repeats,
            "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "weight_matching": matching_rows,
            "lap": lap_rows,
        }));
    }
    print_tables(
        &args.backend.to_string(),
        repeats,
        &matching_rows,
        &lap_rows,
        args.dump.as_deref(),
    );
    Ok(())
}

/// A file's name for a table row (the whole path when it has none).
fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Best wall time of `repeats` runs, in seconds.
fn best_of(repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// A matrix shaped like weight matching's: a Gram matrix `X Yᵀ` of random
/// unit rows, whose structure (not i.i.d. noise) is what solvers see in
/// practice. Deterministic for a seed.
fn similarity_like(n: usize, seed: u64) -> Vec<f32> {
    let k = 64;
    let x = synthetic::random_mlp(&[k, n], seed);
    let y = synthetic::random_mlp(&[k, n], seed + 1);
    let (x, y) = (
        x.get("layers.0.weight")
            .map(|t| t.data().to_vec())
            .unwrap_or_default(),
        y.get("layers.0.weight")
            .map(|t| t.data().to_vec())
            .unwrap_or_default(),
    );
    let mut m = vec![0.0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            m[i * n + j] = x[i * k..(i + 1) * k]
                .iter()
                .zip(&y[j * k..(j + 1) * k])
                .map(|(p, q)| p * q)
                .sum();
        }
    }
    m
}

fn print_tables(
    backend: &str,
    repeats: usize,
    matching: &[serde_json::Value],
    lap: &[serde_json::Value],
    dump: Option<&Path>,
) {
    let ms = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN) * 1e3;
    println!("weight matching, backend {backend}, best of {repeats}");
    println!(
        "| pair | sweeps | solves (baseline) | certified | corrected terms | Fusion ms | without rank-k and certificates ms | baseline ms | speedup |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in matching {
        println!(
            "| {} | {} | {} ({}) | {} | {} | {:.2} | {:.2} | {:.1} | {:.1}x |",
            r["pair"].as_str().unwrap_or(""),
            r["sweeps"],
            r["solves"],
            r["baseline_solves"],
            r["certified"],
            r["corrected"],
            ms(&r["fusion_s"]),
            ms(&r["without_incremental_s"]),
            ms(&r["baseline_s"]),
            r["speedup"].as_f64().unwrap_or(f64::NAN),
        );
    }
    println!();
    println!(
        "linear assignment (maximise), similarity-like matrices, best of {repeats} (2 at n >= 4096)"
    );
    println!("| n | Fusion JV cold ms | Fusion JV warm ms | lsap (scipy port) ms | speedup cold |");
    println!("|---|---|---|---|---|");
    for r in lap {
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2}x |",
            r["n"],
            ms(&r["fusion_cold_s"]),
            ms(&r["fusion_warm_s"]),
            ms(&r["lsap_s"]),
            r["speedup"].as_f64().unwrap_or(f64::NAN),
        );
    }
    if let Some(dir) = dump {
        println!();
        println!(
            "inputs written to {}; time scipy on them with:",
            dir.display()
        );
        println!("  python3 scripts/bench_reference.py {}", dir.display());
    }
}
