//! Each spec validation error is raised with a message naming the tensor
//! and axis.

use crate::common;

use fusion_core::PermutationSpec;

fn check(spec: &str, expected: &str) {
    let model = common::random_mlp(&[6, 4, 3, 2], 0);
    let spec = PermutationSpec::parse(spec).expect("parses");
    let err = spec.validate(&model).expect_err("must be rejected");
    assert_eq!(err.to_string(), expected);
}

#[test]
fn missing_tensor() {
    check(
        r#"[permutations]
        P_0 = ["layers.0.weight:0", "layers.9.weight:1"]"#,
        "permutation 'P_0': tensor 'layers.9.weight' is not in the model",
    );
}

#[test]
fn axis_out_of_range() {
    check(
        r#"[permutations]
        P_0 = ["layers.0.weight:0", "layers.0.bias:1"]"#,
        "permutation 'P_0': tensor 'layers.0.bias' has 1 axes, so axis 1 does not exist",
    );
}

#[test]
fn inconsistent_sizes() {
    check(
        r#"[permutations]
        P_0 = ["layers.0.weight:0", "layers.0.bias:0", "layers.2.weight:1"]"#,
        "permutation 'P_0': tensor 'layers.2.weight' axis 1 has size 3, \
         but 'layers.0.weight' axis 0 has size 4",
    );
}

#[test]
fn same_permutation_twice_on_one_tensor() {
    check(
        r#"[permutations]
        P_0 = ["layers.1.weight:0", "layers.1.weight:1"]"#,
        "permutation 'P_0' appears twice on tensor 'layers.1.weight' (axes 0 and 1)",
    );
}

#[test]
fn two_permutations_on_one_axis() {
    check(
        r#"[permutations]
        P_0 = ["layers.0.weight:0"]
        P_1 = ["layers.0.weight:0"]"#,
        "tensor 'layers.0.weight' axis 0 is claimed by both 'P_0' and 'P_1'",
    );
}

#[test]
fn a_correct_spec_validates_with_its_sizes() {
    let model = common::random_mlp(&[6, 4, 3, 2], 0);
    let spec = PermutationSpec::parse(
        r#"{"permutations": {
            "P_0": ["layers.0.weight:0", "layers.0.bias:0", "layers.1.weight:1"],
            "P_1": ["layers.1.weight:0", "layers.1.bias:0", "layers.2.weight:1"]}}"#,
    )
    .expect("json");
    let v = spec.validate(&model).expect("valid");
    assert_eq!(v.sizes(), &[4, 3]);
    assert_eq!(v.neighbours(0), &[1]);
}
