//! Generated models and permutations, for demos, benchmarks and tests that
//! must not depend on training or on files.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use crate::params::{ParamSet, ParamTensor};
use crate::perm::Permutation;

/// A randomly initialised MLP in PyTorch layout (`layers.{i}.weight`
/// `[out, in]`, `layers.{i}.bias`), uniform in ±1/√fan_in as PyTorch's
/// `nn.Linear` initialises it. Deterministic for a seed.
pub fn random_mlp(widths: &[usize], seed: u64) -> ParamSet {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut set = ParamSet::new();
    for (i, pair) in widths.windows(2).enumerate() {
        let (inp, out) = (pair[0], pair[1]);
        let bound = 1.0 / (inp.max(1) as f32).sqrt();
        let mut draw =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
        let w = draw(out * inp);
        let b = draw(out);
        // Shapes match the data by construction, and names are unique.
        if let (Ok(w), Ok(b)) = (
            ParamTensor::new("weight", vec![out, inp], w),
            ParamTensor::new("bias", vec![out], b),
        ) {
            let _ = set.insert(format!("layers.{i}.weight"), w);
            let _ = set.insert(format!("layers.{i}.bias"), b);
        }
    }
    set
}

/// Uniformly random permutations of the given sizes; deterministic for a seed.
pub fn random_permutations(sizes: &[usize], seed: u64) -> Vec<Permutation> {
    let mut rng = StdRng::seed_from_u64(seed);
    sizes
        .iter()
        .map(|&n| {
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut rng);
            Permutation::from_vec("random", order).unwrap_or_else(|_| Permutation::identity(n))
        })
        .collect()
}

/// `params` plus uniform noise of `relative` times each tensor's largest
/// magnitude: a stand-in for "the same network, trained a little longer".
pub fn perturb(params: &ParamSet, relative: f32, seed: u64) -> ParamSet {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = params.clone();
    for i in 0..out.len() {
        let data = out.at_mut(i).data_mut();
        let scale = relative * data.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        if scale > 0.0 {
            for x in data.iter_mut() {
                *x += rng.random_range(-scale..scale);
            }
        }
    }
    out
}
