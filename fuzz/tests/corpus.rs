//! The fuzz targets on every test run: the committed corpus (seeds, and
//! inputs AFL++ found that reach new code) replayed, then a short burst of
//! random mutations of it. The long runs are `fuzz/run.sh` (AFL++).

use std::path::{Path, PathBuf};

use fusion_fuzz::{TARGETS, seeds};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Mutations per target per test run.
const SMOKE_RUNS: usize = 2_000;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let mut inputs = seeds(target);
    if let Ok(entries) = std::fs::read_dir(corpus_dir(target)) {
        for entry in entries.flatten() {
            inputs.push(std::fs::read(entry.path()).expect("corpus file"));
        }
    }
    inputs
}

/// A random edit of `input`: flip, insert, delete, or overwrite bytes.
fn mutate(input: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..8) {
        let at = if out.is_empty() {
            0
        } else {
            rng.random_range(0..out.len())
        };
        match rng.random_range(0..5) {
            0 if !out.is_empty() => out[at] ^= 1 << rng.random_range(0..8),
            1 => out.insert(at, rng.random()),
            2 if !out.is_empty() => {
                out.remove(at);
            }
            3 if !out.is_empty() => out[at] = [0, 0xff, 0x7f, 0x80][rng.random_range(0..4)],
            _ => out.truncate(at),
        }
    }
    out
}

#[test]
fn every_target_survives_its_corpus_and_random_mutations() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for (name, target) in TARGETS {
        let inputs = corpus(name);
        // The seeds and what AFL++ found: a missing folder would leave only
        // the seeds, and this test would replay almost nothing.
        assert!(
            inputs.len() > 20,
            "{name}: {} inputs; is fuzz/corpus/{name}/ there?",
            inputs.len()
        );
        for input in &inputs {
            target(input);
        }
        for i in 0..SMOKE_RUNS {
            let input = mutate(&inputs[i % inputs.len()], &mut rng);
            target(&input);
        }
    }
}

/// Writes the seeds into `fuzz/corpus/<target>/` for AFL++ to start from:
/// `cargo test -p fusion-fuzz --test corpus -- --ignored write_seeds`.
#[test]
#[ignore = "writes into the source tree; run by hand to refresh the seeds"]
fn write_seeds() {
    for (name, _) in TARGETS {
        let dir = corpus_dir(name);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        for (i, seed) in seeds(name).iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), seed).expect("seed");
        }
    }
}
