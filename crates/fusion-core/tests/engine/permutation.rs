//! Applying permutations: the permuted model computes the same function.

use crate::common;

use fusion_core::{ParamSet, ParamTensor, PermutationSpec, infer_mlp_spec};

#[test]
fn permuted_mlp_gives_identical_outputs() {
    let widths = [20, 16, 12, 8, 5];
    let a = common::random_mlp(&widths, 1);
    let spec = infer_mlp_spec(&a)
        .expect("mlp")
        .validate(&a)
        .expect("valid");
    assert_eq!(spec.sizes(), &[16, 12, 8]);
    let perms = common::random_perms(spec.sizes(), 2);
    assert!(perms.iter().all(|p| p.moved() > 0));
    let b = spec.apply(&a, &perms).expect("apply");
    assert_ne!(a, b, "the weights must actually move");
    let mut r = common::rng(3);
    for _ in 0..20 {
        let x = common::uniform(&mut r, widths[0], 2.0);
        let ya = common::mlp_forward(&a, &x);
        let yb = common::mlp_forward(&b, &x);
        for (p, q) in ya.iter().zip(&yb) {
            assert!((p - q).abs() < 1e-9 * (1.0 + p.abs()), "{p} vs {q}");
        }
    }
    // Applying the inverses restores the original exactly.
    let inverses: Vec<_> = perms.iter().map(|p| p.inverse()).collect();
    let back = spec.apply(&b, &inverses).expect("apply");
    assert_eq!(back, a);
}

#[test]
fn a_wrong_spec_changes_the_function() {
    // Guard against a vacuous invariance test: permuting only the rows of a
    // layer, not the next layer's columns, must change the outputs.
    let widths = [6, 5, 3];
    let a = common::random_mlp(&widths, 4);
    let broken = PermutationSpec::parse(
        r#"[permutations]
        P_0 = ["layers.0.weight:0", "layers.0.bias:0"]"#,
    )
    .expect("parse")
    .validate(&a)
    .expect("valid");
    let perms = common::random_perms(broken.sizes(), 5);
    let b = broken.apply(&a, &perms).expect("apply");
    let x = common::uniform(&mut common::rng(6), widths[0], 2.0);
    let (ya, yb) = (common::mlp_forward(&a, &x), common::mlp_forward(&b, &x));
    assert!(ya.iter().zip(&yb).any(|(p, q)| (p - q).abs() > 1e-6));
}

#[test]
fn sequential_and_fc_names_are_inferred() {
    let mut seq = ParamSet::new();
    // nn.Sequential(Linear, ReLU, Linear, ReLU, Linear): keys 0, 2, 4.
    for (k, (o, i)) in [(0, (4, 3)), (2, (5, 4)), (4, (2, 5))] {
        seq.insert(format!("{k}.weight"), ParamTensor::zeros(vec![o, i]))
            .expect("ok");
        seq.insert(format!("{k}.bias"), ParamTensor::zeros(vec![o]))
            .expect("ok");
    }
    let spec = infer_mlp_spec(&seq).expect("sequential");
    assert_eq!(
        spec.to_toml(),
        "[permutations]\nP_0 = [\"0.weight:0\", \"0.bias:0\", \"2.weight:1\"]\n\
         P_1 = [\"2.weight:0\", \"2.bias:0\", \"4.weight:1\"]\n"
    );
    let mut fc = ParamSet::new();
    fc.insert("fc1.weight", ParamTensor::zeros(vec![4, 3]))
        .expect("ok");
    fc.insert("fc2.weight", ParamTensor::zeros(vec![2, 4]))
        .expect("ok");
    let spec = infer_mlp_spec(&fc).expect("fc");
    assert_eq!(
        spec.to_toml(),
        "[permutations]\nP_0 = [\"fc1.weight:0\", \"fc2.weight:1\"]\n"
    );
}

#[test]
fn mlp_inference_refuses_what_it_cannot_permute_safely() {
    let mut s = ParamSet::new();
    s.insert("layers.0.weight", ParamTensor::zeros(vec![4, 3]))
        .expect("ok");
    s.insert("layers.1.weight", ParamTensor::zeros(vec![2, 4]))
        .expect("ok");
    s.insert("norm.weight", ParamTensor::zeros(vec![4]))
        .expect("ok");
    assert_eq!(
        infer_mlp_spec(&s).expect_err("extra").to_string(),
        "cannot infer an mlp spec: tensor 'norm.weight' is not part of the Linear chain \
         'layers.{i}'; write a spec file that says how it is permuted"
    );
    let mut s = ParamSet::new();
    s.insert("layers.0.weight", ParamTensor::zeros(vec![4, 3]))
        .expect("ok");
    s.insert("layers.1.weight", ParamTensor::zeros(vec![2, 5]))
        .expect("ok");
    assert_eq!(
        infer_mlp_spec(&s).expect_err("chain").to_string(),
        "cannot infer an mlp spec: 'layers.1.weight' takes 5 inputs but 'layers.0.weight' gives 4 outputs"
    );
    let mut s = ParamSet::new();
    s.insert("conv.weight", ParamTensor::zeros(vec![4, 3, 3, 3]))
        .expect("ok");
    assert!(
        infer_mlp_spec(&s)
            .expect_err("none")
            .to_string()
            .contains("no 2-D tensors")
    );
}
