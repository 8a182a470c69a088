//! Weight matching: planted permutations come back exactly, and the
//! objective never decreases.

use crate::common;

use fusion_core::{ComputeBackend, Device, MatchOptions, infer_mlp_spec, weight_matching};

fn planted_recovery(device: &Device) {
    let a = common::random_mlp(&[784, 512, 512, 512, 10], 21);
    let spec = infer_mlp_spec(&a)
        .expect("mlp")
        .validate(&a)
        .expect("valid");
    let planted = common::random_perms(spec.sizes(), 22);
    let b = spec.apply(&a, &planted).expect("apply");
    let found = weight_matching(&spec, &a, &b, device, &MatchOptions::default()).expect("match");
    let aligned = spec.apply(&b, &found.perms).expect("apply");
    assert_eq!(aligned, a, "aligned B must equal A bit for bit");
    for (f, p) in found.perms.iter().zip(&planted) {
        assert_eq!(f, &p.inverse());
    }
    let last = *found.objective.last().expect("at least one sweep");
    assert!((last - a.dot(&a)).abs() < 1e-6 * last.abs());
}

#[test]
fn planted_permutation_is_recovered_exactly_on_cpu() {
    planted_recovery(&ComputeBackend::Flex.device().expect("flex"));
}

#[test]
fn ndarray_and_flex_find_the_same_permutations() {
    let a = common::random_mlp(&[30, 24, 24, 5], 40);
    let b = common::random_mlp(&[30, 24, 24, 5], 41);
    let spec = infer_mlp_spec(&a)
        .expect("mlp")
        .validate(&a)
        .expect("valid");
    let opts = MatchOptions::default();
    let flex = weight_matching(
        &spec,
        &a,
        &b,
        &ComputeBackend::Flex.device().expect("flex"),
        &opts,
    )
    .expect("flex");
    let nd = weight_matching(
        &spec,
        &a,
        &b,
        &ComputeBackend::Ndarray.device().expect("nd"),
        &opts,
    )
    .expect("ndarray");
    assert_eq!(flex.perms, nd.perms);
}

/// Runs on the wgpu device (lavapipe in CI, a real GPU under
/// scripts/gpu-check.sh) and must agree with the CPU exactly.
#[cfg(feature = "wgpu")]
#[test]
fn planted_permutation_is_recovered_exactly_on_wgpu() {
    let wgpu = ComputeBackend::Wgpu.device().expect("wgpu");
    planted_recovery(&wgpu);
    let a = common::random_mlp(&[64, 48, 48, 10], 50);
    let b = common::random_mlp(&[64, 48, 48, 10], 51);
    let spec = infer_mlp_spec(&a)
        .expect("mlp")
        .validate(&a)
        .expect("valid");
    let opts = MatchOptions::default();
    let cpu = weight_matching(
        &spec,
        &a,
        &b,
        &ComputeBackend::Flex.device().expect("flex"),
        &opts,
    )
    .expect("cpu");
    let gpu = weight_matching(&spec, &a, &b, &wgpu, &opts).expect("gpu");
    assert_eq!(
        cpu.perms, gpu.perms,
        "wgpu must find the CPU's permutations"
    );
}

#[test]
fn objective_never_decreases_across_sweeps() {
    let device = ComputeBackend::Flex.device().expect("flex");
    for seed in 0..4 {
        // Unrelated models: matching has real work to do over many sweeps.
        let a = common::random_mlp(&[40, 32, 32, 32, 6], 100 + seed);
        let b = common::random_mlp(&[40, 32, 32, 32, 6], 200 + seed);
        let spec = infer_mlp_spec(&a)
            .expect("mlp")
            .validate(&a)
            .expect("valid");
        let opts = MatchOptions {
            seed,
            ..MatchOptions::default()
        };
        let r = weight_matching(&spec, &a, &b, &device, &opts).expect("match");
        assert!(r.sweeps >= 2, "expected several sweeps, got {}", r.sweeps);
        let mut previous = r.initial_objective;
        for &o in &r.objective {
            assert!(o >= previous - 1e-9 * previous.abs(), "{o} < {previous}");
            previous = o;
        }
        assert!(
            r.objective[0] > r.initial_objective,
            "the first sweep must improve"
        );
        // The reported objective is ⟨A, π(B)⟩ computed independently.
        let aligned = spec.apply(&b, &r.perms).expect("apply");
        let direct = a.dot(&aligned);
        let last = *r.objective.last().expect("sweeps");
        assert!((direct - last).abs() < 1e-9 * direct.abs().max(1.0));
        // Same seed, same answer.
        let again = weight_matching(&spec, &a, &b, &device, &opts).expect("match");
        assert_eq!(again.perms, r.perms);
    }
}

#[test]
fn warm_start_from_the_answer_stops_at_once() {
    let device = ComputeBackend::Flex.device().expect("flex");
    let a = common::random_mlp(&[20, 16, 16, 4], 7);
    let b = common::random_mlp(&[20, 16, 16, 4], 8);
    let spec = infer_mlp_spec(&a)
        .expect("mlp")
        .validate(&a)
        .expect("valid");
    let first = weight_matching(&spec, &a, &b, &device, &MatchOptions::default()).expect("match");
    let opts = MatchOptions {
        init: Some(first.perms.clone()),
        ..MatchOptions::default()
    };
    let second = weight_matching(&spec, &a, &b, &device, &opts).expect("match");
    assert_eq!(second.perms, first.perms);
    assert_eq!(second.sweeps, 1);
    let bad = MatchOptions {
        init: Some(first.perms[..1].to_vec()),
        ..MatchOptions::default()
    };
    let err = weight_matching(&spec, &a, &b, &device, &bad).expect_err("wrong count");
    assert_eq!(
        err.to_string(),
        "initial permutations: expected 2 permutations, got 1"
    );
}

/// The README's CNN spec: 4-D conv weights, BatchNorm vectors, and a
/// permutation on axis 1 of a 4-D tensor.
const README_CNN_SPEC: &str = r#"
[permutations]
P_conv1 = ["conv1.weight:0", "conv1.bias:0",
           "bn1.weight:0", "bn1.bias:0", "bn1.running_mean:0", "bn1.running_var:0",
           "conv2.weight:1"]
P_conv2 = ["conv2.weight:0", "conv2.bias:0", "fc.weight:1"]
"#;

#[test]
fn readme_cnn_spec_recovers_a_planted_permutation() {
    use fusion_core::{ParamSet, ParamTensor, PermutationSpec};
    let mut r = common::rng(60);
    let mut a = ParamSet::new();
    for (name, shape) in [
        ("conv1.weight", vec![16, 3, 3, 3]),
        ("conv1.bias", vec![16]),
        ("bn1.weight", vec![16]),
        ("bn1.bias", vec![16]),
        ("bn1.running_mean", vec![16]),
        ("bn1.running_var", vec![16]),
        ("conv2.weight", vec![24, 16, 3, 3]),
        ("conv2.bias", vec![24]),
        ("fc.weight", vec![10, 24]),
        ("fc.bias", vec![10]),
    ] {
        let n = shape.iter().product();
        a.insert(
            name,
            ParamTensor::new(name, shape, common::uniform(&mut r, n, 1.0)).expect("shape"),
        )
        .expect("unique");
    }
    let spec = PermutationSpec::parse(README_CNN_SPEC)
        .expect("parse")
        .validate(&a)
        .expect("valid");
    assert_eq!(spec.sizes(), &[16, 24]);
    let planted = common::random_perms(spec.sizes(), 61);
    let b = spec.apply(&a, &planted).expect("apply");
    let device = ComputeBackend::Flex.device().expect("flex");
    let found = weight_matching(&spec, &a, &b, &device, &MatchOptions::default()).expect("match");
    assert_eq!(spec.apply(&b, &found.perms).expect("apply"), a);
}

#[test]
fn a_model_equal_to_the_reference_needs_no_sweep() {
    let device = ComputeBackend::Flex.device().expect("flex");
    let a = common::random_mlp(&[50, 40, 40, 8], 70);
    let spec = infer_mlp_spec(&a)
        .expect("mlp")
        .validate(&a)
        .expect("valid");
    let r =
        weight_matching(&spec, &a, &a.clone(), &device, &MatchOptions::default()).expect("match");
    assert_eq!(r.perms, spec.identity());
    assert_eq!((r.sweeps, r.solves), (0, 0));
    assert!((r.final_objective() - a.dot(&a)).abs() < 1e-9 * a.dot(&a));
    // The identity is the global optimum, whatever the starting point.
    let started_elsewhere = MatchOptions {
        init: Some(common::random_perms(spec.sizes(), 71)),
        ..MatchOptions::default()
    };
    let r = weight_matching(&spec, &a, &a, &device, &started_elsewhere).expect("match");
    assert_eq!(r.perms, spec.identity());
    // A tensor no permutation touches (the output bias) does not count...
    let mut b = a.clone();
    let out_bias = b.position("layers.2.bias").expect("named");
    b.at_mut(out_bias).data_mut()[0] += 1e-3;
    let r = weight_matching(&spec, &a, &b, &device, &MatchOptions::default()).expect("match");
    assert_eq!((r.sweeps, r.solves), (0, 0));
    // ...but one changed value in a permuted tensor and matching runs.
    let hidden = b.position("layers.1.weight").expect("named");
    b.at_mut(hidden).data_mut()[0] += 1e-3;
    let r = weight_matching(&spec, &a, &b, &device, &MatchOptions::default()).expect("match");
    assert!(r.sweeps >= 1 && r.solves >= 1, "{r:?}");
}

/// Rank-k corrections and price certificates change how the cost
/// matrices are computed, not what matching finds.
#[test]
fn incremental_matching_finds_what_full_recomputation_finds() {
    let device = ComputeBackend::Flex.device().expect("flex");
    let (mut corrected, mut certified) = (0, 0);
    for seed in 0..6 {
        let a = common::random_mlp(&[60, 48, 48, 48, 7], 300 + seed);
        let spec = infer_mlp_spec(&a)
            .expect("mlp")
            .validate(&a)
            .expect("valid");
        // Half the pairs near (a planted permutation plus noise), half
        // unrelated: few units move late in both, many early in the latter.
        let b = if seed % 2 == 0 {
            let planted = common::random_perms(spec.sizes(), 400 + seed);
            fusion_core::synthetic::perturb(
                &spec.apply(&a, &planted).expect("apply"),
                0.3,
                500 + seed,
            )
        } else {
            common::random_mlp(&[60, 48, 48, 48, 7], 600 + seed)
        };
        let run = |incremental: bool| {
            let opts = MatchOptions {
                seed,
                incremental,
                ..MatchOptions::default()
            };
            weight_matching(&spec, &a, &b, &device, &opts).expect("match")
        };
        let (fast, full) = (run(true), run(false));
        assert_eq!(fast.perms, full.perms, "seed {seed}");
        let (x, y) = (fast.final_objective(), full.final_objective());
        assert!((x - y).abs() < 1e-9 * y.abs(), "seed {seed}: {x} vs {y}");
        assert_eq!((full.corrected, full.certified), (0, 0));
        corrected += fast.corrected;
        certified += fast.certified;
    }
    assert!(
        corrected > 0,
        "no term was corrected: the test exercises nothing"
    );
    assert!(
        certified > 0,
        "no solve was certified: the test exercises nothing"
    );
}
