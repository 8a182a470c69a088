//! The assignment solver against brute force and against an independent
//! solver (the scipy port in the `lsap` crate).

use crate::common;

use fusion_core::{LapSolver, Sense};
use rand::RngExt;

/// Best total over all n! assignments.
fn brute_force(m: &[f64], n: usize, sense: Sense) -> f64 {
    fn go(
        m: &[f64],
        n: usize,
        row: usize,
        used: &mut [bool],
        acc: f64,
        best: &mut f64,
        sense: Sense,
    ) {
        if row == n {
            let better = match sense {
                Sense::Minimize => acc < *best,
                Sense::Maximize => acc > *best,
            };
            if better {
                *best = acc;
            }
            return;
        }
        for j in 0..n {
            if !used[j] {
                used[j] = true;
                go(m, n, row + 1, used, acc + m[row * n + j], best, sense);
                used[j] = false;
            }
        }
    }
    let mut best = match sense {
        Sense::Minimize => f64::INFINITY,
        Sense::Maximize => f64::NEG_INFINITY,
    };
    go(m, n, 0, &mut vec![false; n], 0.0, &mut best, sense);
    best
}

fn assert_is_permutation(cols: &[usize]) {
    let mut seen = vec![false; cols.len()];
    for &c in cols {
        assert!(!seen[c], "column {c} assigned twice");
        seen[c] = true;
    }
}

#[test]
fn agrees_with_brute_force_on_300_small_matrices_with_ties() {
    let mut r = common::rng(7);
    let mut solver = LapSolver::new();
    for case in 0..300 {
        let n = 1 + case % 8;
        // Every third case draws from {0, 1, 2}: many ties.
        let m: Vec<f64> = if case % 3 == 0 {
            (0..n * n)
                .map(|_| f64::from(r.random_range(0..3u8)))
                .collect()
        } else {
            (0..n * n).map(|_| r.random_range(-10.0..10.0)).collect()
        };
        for sense in [Sense::Minimize, Sense::Maximize] {
            solver.reset();
            let got = solver.solve(&m, n, sense).expect("finite");
            assert_is_permutation(&got.row_to_col);
            let direct: f64 = got
                .row_to_col
                .iter()
                .enumerate()
                .map(|(i, &j)| m[i * n + j])
                .sum();
            assert!((direct - got.total).abs() < 1e-9);
            let want = brute_force(&m, n, sense);
            assert!(
                (got.total - want).abs() < 1e-9,
                "case {case} n={n} {sense:?}: solver {} brute force {want}",
                got.total
            );
        }
    }
}

#[test]
fn warm_starts_stay_exact_on_a_drifting_sequence() {
    let mut r = common::rng(11);
    let n = 7;
    let mut m: Vec<f64> = (0..n * n).map(|_| r.random_range(-5.0..5.0)).collect();
    let mut warm = LapSolver::new();
    for step in 0..200 {
        // Small drifts, with an occasional large jump.
        let scale = if step % 25 == 0 { 5.0 } else { 0.3 };
        for x in &mut m {
            *x += r.random_range(-scale..scale);
        }
        let was_warm = warm.is_warm(n);
        let got = warm.solve(&m, n, Sense::Maximize).expect("finite");
        assert_is_permutation(&got.row_to_col);
        assert!(step == 0 || was_warm);
        let want = brute_force(&m, n, Sense::Maximize);
        assert!(
            (got.total - want).abs() < 1e-9,
            "step {step}: {} vs {want}",
            got.total
        );
    }
}

#[test]
fn agrees_with_scipy_port_at_n_512() {
    let n = 512;
    let mut r = common::rng(3);
    for round in 0..3 {
        let m: Vec<f64> = (0..n * n).map(|_| r.random_range(0.0..1.0)).collect();
        let ours = LapSolver::new()
            .solve(&m, n, Sense::Maximize)
            .expect("finite");
        let (rows, cols) = lsap::solve(n, n, &m, true).expect("lsap");
        let theirs: f64 = rows.iter().zip(&cols).map(|(&i, &j)| m[i * n + j]).sum();
        assert_is_permutation(&ours.row_to_col);
        assert!(
            (ours.total - theirs).abs() < 1e-9 * theirs.abs(),
            "round {round}: ours {} lsap {theirs}",
            ours.total
        );
    }
}

#[test]
fn rejects_non_finite_and_non_square_input() {
    let mut s = LapSolver::new();
    let err = s
        .solve(&[1.0, f64::NAN, 0.0, 2.0], 2, Sense::Minimize)
        .expect_err("nan");
    assert_eq!(
        err.to_string(),
        "cost matrix entry (0, 1) is NaN, not a finite number"
    );
    let err = s
        .solve(&[1.0, 2.0, 3.0], 2, Sense::Minimize)
        .expect_err("shape");
    assert_eq!(
        err.to_string(),
        "cost matrix has 3 entries, expected 2x2 = 4"
    );
    let empty: [f64; 0] = [];
    assert!(
        s.solve(&empty, 0, Sense::Minimize)
            .expect("empty")
            .row_to_col
            .is_empty()
    );
}

#[test]
fn a_certified_assignment_is_optimal_and_small_drifts_are_certified() {
    let mut r = common::rng(13);
    let n = 6;
    let mut m: Vec<f64> = (0..n * n).map(|_| r.random_range(-5.0..5.0)).collect();
    let mut solver = LapSolver::new();
    let fresh = LapSolver::new();
    let mut current = solver
        .solve(&m, n, Sense::Maximize)
        .expect("finite")
        .row_to_col;
    assert!(
        !fresh.certifies(&m, n, Sense::Maximize, &current),
        "no prices, no proof"
    );
    let (mut certified, mut refused) = (0, 0);
    for step in 0..400 {
        let scale = if step % 2 == 0 { 0.01 } else { 2.0 };
        for x in &mut m {
            *x += r.random_range(-scale..scale);
        }
        let total =
            |cols: &[usize]| -> f64 { cols.iter().enumerate().map(|(i, &j)| m[i * n + j]).sum() };
        if solver.certifies(&m, n, Sense::Maximize, &current) {
            certified += 1;
            let want = brute_force(&m, n, Sense::Maximize);
            assert!(
                (total(&current) - want).abs() < 1e-9,
                "step {step}: certified {} but the optimum is {want}",
                total(&current)
            );
        } else {
            refused += 1;
            current = solver
                .solve(&m, n, Sense::Maximize)
                .expect("finite")
                .row_to_col;
        }
    }
    assert!(
        certified > 50 && refused > 50,
        "certified {certified}, refused {refused}"
    );
    // Not a permutation: never certified, whatever the prices say.
    let mut twice = current.clone();
    twice[1] = twice[0];
    assert!(!solver.certifies(&m, n, Sense::Maximize, &twice));
    // A non-optimal assignment under fresh prices is refused.
    solver.solve(&m, n, Sense::Maximize).expect("finite");
    let mut worse: Vec<usize> = solver
        .solve(&m, n, Sense::Maximize)
        .expect("finite")
        .row_to_col;
    worse.swap(0, 1);
    let best = brute_force(&m, n, Sense::Maximize);
    let worse_total: f64 = worse.iter().enumerate().map(|(i, &j)| m[i * n + j]).sum();
    if worse_total < best - 1e-9 {
        assert!(!solver.certifies(&m, n, Sense::Maximize, &worse));
    }
}
