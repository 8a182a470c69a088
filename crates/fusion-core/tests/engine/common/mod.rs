//! Helpers shared by the integration tests: random MLPs and a plain-Rust
//! forward pass that does not go through the code under test.
#![allow(dead_code)]

use fusion_core::ParamSet;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// A seeded generator.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Uniform values in [-scale, scale).
pub fn uniform(rng: &mut StdRng, len: usize, scale: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-scale..scale)).collect()
}

/// A random MLP with `layers.{i}.weight` `[out, in]` and `layers.{i}.bias`.
pub fn random_mlp(widths: &[usize], seed: u64) -> ParamSet {
    fusion_core::synthetic::random_mlp(widths, seed)
}

/// Forward pass of a `layers.{i}` MLP with ReLU between layers, in f64.
pub fn mlp_forward(params: &ParamSet, input: &[f32]) -> Vec<f64> {
    let mut x: Vec<f64> = input.iter().map(|&v| f64::from(v)).collect();
    let layers = params.len() / 2;
    for i in 0..layers {
        let w = params.get(&format!("layers.{i}.weight")).expect("weight");
        let b = params.get(&format!("layers.{i}.bias")).expect("bias");
        let (out, inp) = (w.shape()[0], w.shape()[1]);
        let mut y = vec![0.0; out];
        for (o, yo) in y.iter_mut().enumerate() {
            let row = &w.data()[o * inp..(o + 1) * inp];
            *yo = f64::from(b.data()[o])
                + row
                    .iter()
                    .zip(&x)
                    .map(|(&a, &v)| f64::from(a) * v)
                    .sum::<f64>();
            if i + 1 < layers {
                *yo = yo.max(0.0);
            }
        }
        x = y;
    }
    x
}

/// Random permutations of the given sizes.
pub fn random_perms(sizes: &[usize], seed: u64) -> Vec<fusion_core::Permutation> {
    fusion_core::synthetic::random_permutations(sizes, seed)
}
