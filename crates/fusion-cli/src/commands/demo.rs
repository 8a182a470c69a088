//! `fusion demo`: the case for aligning before averaging, on generated
//! models, in a few seconds and with nothing to download.
//!
//! Model B is model A with its hidden units shuffled (the same function)
//! plus a little noise: what two trainings that found the same solution in
//! different unit orders look like. Averaging A and B coordinate by
//! coordinate mixes unrelated units; aligning B first does not.

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use fusion_core::{
    MatchOptions, ParamSet, PermMoved, Strategy, WeightedAverage, infer_mlp_spec, synthetic,
    weight_matching,
};

use super::report::moved_summary;
use crate::cli::DemoArgs;
use crate::files::write_model;

/// Inputs on which the models' outputs are compared.
const PROBES: usize = 256;

/// Runs `fusion demo`.
pub fn run(args: DemoArgs) -> Result<()> {
    ensure!(
        args.widths.len() >= 3 && args.widths.iter().all(|&w| w > 0),
        "--widths needs at least 3 positive widths (input, hidden…, output)"
    );
    ensure!(
        args.noise >= 0.0 && args.noise.is_finite(),
        "--noise must be >= 0"
    );
    let a = synthetic::random_mlp(&args.widths, args.seed);
    let spec = infer_mlp_spec(&a)?.validate(&a)?;
    let planted = synthetic::random_permutations(spec.sizes(), args.seed.wrapping_add(1));
    let b = synthetic::perturb(
        &spec.apply(&a, &planted)?,
        args.noise,
        args.seed.wrapping_add(2),
    );

    let device = args.backend.device()?;
    let start = Instant::now();
    let found = weight_matching(&spec, &a, &b, &device, &MatchOptions::default())?;
    let seconds = start.elapsed().as_secs_f64();
    let b_aligned = spec.apply(&b, &found.perms)?;
    let recovered: usize = found
        .perms
        .iter()
        .zip(&planted)
        .map(|(f, p)| {
            let inv = p.inverse();
            f.as_slice()
                .iter()
                .zip(inv.as_slice())
                .filter(|(x, y)| x == y)
                .count()
        })
        .sum();
    let units: usize = spec.sizes().iter().sum();

    let naive = WeightedAverage
        .merge(None, &[(a.clone(), 1.0), (b.clone(), 1.0)])?
        .merged;
    let aligned = WeightedAverage
        .merge(None, &[(a.clone(), 1.0), (b_aligned.clone(), 1.0)])?
        .merged;

    let probes = synthetic::random_mlp(&[args.widths[0], PROBES], args.seed.wrapping_add(3));
    let inputs = probes
        .get("layers.0.weight")
        .context("probe inputs")?
        .data();
    let reference = forward(&a, inputs, args.widths[0]);
    let err = |m: &ParamSet| relative_error(&forward(m, inputs, args.widths[0]), &reference);

    println!(
        "Fusion demo: MLP {:?}, B = A with shuffled hidden units + {:.0}% noise",
        args.widths,
        100.0 * args.noise
    );
    println!();
    println!(
        "weight matching ({}, {:.3} s, {} sweeps):",
        args.backend, seconds, found.sweeps
    );
    println!(
        "  units moved: {}",
        moved_summary(&PermMoved::list(&spec, &found.perms))
    );
    println!("  planted permutation recovered: {recovered}/{units} units");
    println!();
    println!("output error against A on {PROBES} random inputs (lower is better):");
    println!("  {:32} {:>8.4}", "B alone", err(&b));
    println!("  {:32} {:>8.4}", "naive average (A+B)/2", err(&naive));
    println!(
        "  {:32} {:>8.4}",
        "aligned average (A+P(B))/2",
        err(&aligned)
    );

    for (name, m) in [
        ("a", &a),
        ("b", &b),
        ("b_aligned", &b_aligned),
        ("merged_naive", &naive),
        ("merged_aligned", &aligned),
    ] {
        write_model(&args.out.join(format!("{name}.safetensors")), m)?;
    }
    println!();
    println!("models written to {}/; try:", args.out.display());
    println!(
        "  fusion align --a {0}/a.safetensors --b {0}/b.safetensors --out {0}/b_aligned.safetensors",
        args.out.display()
    );
    Ok(())
}

/// Outputs of a `layers.{i}` ReLU MLP for row-major `inputs` of width
/// `width`, on the CPU in plain Rust (the demo needs no training stack).
fn forward(params: &ParamSet, inputs: &[f32], width: usize) -> Vec<f32> {
    let mut x = inputs.to_vec();
    let mut cols = width;
    let layers = params.len() / 2;
    for i in 0..layers {
        let (Some(w), Some(b)) = (
            params.get(&format!("layers.{i}.weight")),
            params.get(&format!("layers.{i}.bias")),
        ) else {
            break;
        };
        let out = w.shape()[0];
        let rows = x.len() / cols;
        let mut y = vec![0.0f32; rows * out];
        for r in 0..rows {
            let xr = &x[r * cols..(r + 1) * cols];
            for o in 0..out {
                let wr = &w.data()[o * cols..(o + 1) * cols];
                let v = b.data()[o] + wr.iter().zip(xr).map(|(p, q)| p * q).sum::<f32>();
                y[r * out + o] = if i + 1 < layers { v.max(0.0) } else { v };
            }
        }
        x = y;
        cols = out;
    }
    x
}

/// ‖got − want‖ / ‖want‖.
fn relative_error(got: &[f32], want: &[f32]) -> f64 {
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| f64::from(g - w).powi(2))
        .sum();
    let den: f64 = want.iter().map(|&w| f64::from(w).powi(2)).sum();
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}
