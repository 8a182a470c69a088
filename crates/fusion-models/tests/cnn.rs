//! The CNNs: PyTorch names, exact round trips, and specs that keep the
//! function (a permuted model computes the same outputs), so weight
//! matching can use them.

use burn::tensor::{Device, Tensor, TensorData};
use fusion_core::synthetic::random_permutations;
use fusion_core::{
    ComputeBackend, MatchOptions, ParamSet, ParamTensor, PermutationSpec, infer_any,
    infer_resnet_spec, infer_vgg_spec, weight_matching,
};
use fusion_models::{Architecture, ModelError, Network};

fn device() -> Device {
    Device::flex()
}

/// A deterministic pseudo-random vector in [lo, hi).
fn noise(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            lo + (hi - lo) * ((state >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

/// A network of `arch` whose every tensor is random, BatchNorm running
/// statistics included (variances positive), so that a spec that forgot
/// any of them changes the outputs.
fn random_network(arch: &str, seed: u64) -> (Network, ParamSet) {
    let arch: Architecture = arch.parse().expect("architecture");
    let net = Network::init(&arch, [3, 16, 16], 10, seed, &device());
    let mut params = ParamSet::new();
    for (i, (name, t)) in net.to_params().iter().enumerate() {
        let (lo, hi) = if name.ends_with("running_var") {
            (0.5, 2.0)
        } else if name.ends_with(".weight") && t.shape().len() == 1 {
            (0.5, 1.5)
        } else {
            (-0.3, 0.3)
        };
        let data = noise(t.numel(), seed * 1000 + i as u64, lo, hi);
        let t = ParamTensor::new(name, t.shape().to_vec(), data).expect("tensor");
        params.insert(name, t).expect("insert");
    }
    for (name, raw) in net.to_params().passthrough() {
        params
            .insert_passthrough(name.clone(), raw.clone())
            .expect("passthrough");
    }
    let net = Network::from_params(&params, &device()).expect("rebuild");
    (net, params)
}

fn images(n: usize, seed: u64) -> Tensor<4> {
    Tensor::from_data(
        TensorData::new(noise(n * 3 * 16 * 16, seed, -1.0, 1.0), [n, 3, 16, 16]),
        &device(),
    )
}

fn outputs(net: &Network, x: Tensor<4>) -> Vec<f32> {
    net.forward(x)
        .into_data()
        .try_into_vec::<f32>()
        .expect("f32 logits")
}

/// Largest absolute difference relative to the largest output.
fn relative_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = a.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-12);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

/// Permutes `params` by random permutations of `spec` and returns how far
/// the permuted network's outputs are from the original's.
fn permuted_output_diff(params: &ParamSet, spec: &PermutationSpec, seed: u64) -> f32 {
    let spec = spec.validate(params).expect("spec fits");
    let perms = random_permutations(spec.sizes(), seed);
    assert!(
        perms.iter().all(|p| !p.is_identity()),
        "a test perm is the identity"
    );
    let permuted = spec.apply(params, &perms).expect("apply");
    let a = Network::from_params(params, &device()).expect("original");
    let b = Network::from_params(&permuted, &device()).expect("permuted");
    relative_diff(&outputs(&a, images(4, 7)), &outputs(&b, images(4, 7)))
}

#[test]
fn permuted_cnns_compute_the_same_outputs() {
    for (arch, expected, seed) in [
        ("resnet20", "resnet", 1),
        ("resnet20x2-ln", "resnet", 2),
        ("vgg11:8", "vgg", 3),
        ("vgg13-ln:4", "vgg", 4),
    ] {
        let (_, params) = random_network(arch, seed);
        let (layout, spec) = infer_any(&params).expect("a built-in layout fits");
        assert_eq!(layout, expected, "{arch}");
        let diff = permuted_output_diff(&params, &spec, seed + 100);
        assert!(diff < 1e-5, "{arch}: permuted outputs differ by {diff:e}");
    }
}

#[test]
fn a_spec_that_forgets_a_tensor_changes_the_outputs() {
    // The check above can fail: drop one BatchNorm statistic from the
    // residual stream's permutation and the function changes.
    let (_, params) = random_network("resnet20", 5);
    let spec = infer_resnet_spec(&params).expect("resnet spec");
    let mut perms = spec.perms().to_vec();
    let stream = perms
        .iter_mut()
        .find(|p| p.name == "P_conv1")
        .expect("stem stream");
    stream
        .axes
        .retain(|a| a.tensor != "layer1.1.bn2.running_mean");
    let wrong = PermutationSpec::new(perms).expect("spec");
    let diff = permuted_output_diff(&params, &wrong, 9);
    assert!(diff > 1e-3, "a wrong spec went unnoticed ({diff:e})");
}

#[test]
fn resnet_uses_pytorch_names_and_its_spec_shares_a_stage_stream() {
    let (net, params) = random_network("resnet20x2", 6);
    for name in [
        "conv1.weight",
        "bn1.running_var",
        "layer1.2.conv2.weight",
        "layer2.0.shortcut.0.weight",
        "layer3.0.shortcut.1.running_mean",
        "layer3.2.bn2.bias",
        "linear.weight",
        "linear.bias",
    ] {
        assert!(params.get(name).is_some(), "missing {name}");
    }
    assert_eq!(
        params.get("conv1.weight").expect("stem").shape(),
        [32, 3, 3, 3]
    );
    assert_eq!(
        params.get("linear.weight").expect("head").shape(),
        [10, 128]
    );
    assert!(params.get("layer1.0.shortcut.0.weight").is_none());
    let tracked: Vec<&str> = params
        .passthrough()
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(tracked.contains(&"layer2.0.shortcut.1.num_batches_tracked"));
    assert_eq!(
        Network::from_params(&net.to_params(), &device())
            .expect("back")
            .to_params(),
        params
    );

    let spec = infer_resnet_spec(&params).expect("spec");
    // Three residual streams and one permutation inside each of 9 blocks.
    assert_eq!(spec.len(), 12);
    let stream = |name: &str| {
        spec.perms()
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .axes
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
    };
    let layer2 = stream("P_layer2");
    for axis in [
        "layer2.0.shortcut.0.weight:0",
        "layer2.0.conv2.weight:0",
        "layer2.2.bn2.running_var:0",
        "layer2.1.conv1.weight:1",
        "layer3.0.conv1.weight:1",
        "layer3.0.shortcut.0.weight:1",
    ] {
        assert!(layer2.contains(&axis.to_owned()), "P_layer2 lacks {axis}");
    }
    assert!(stream("P_layer3").contains(&"linear.weight:1".to_owned()));
    assert_eq!(
        stream("P_layer1.0"),
        [
            "layer1.0.conv1.weight:0",
            "layer1.0.bn1.weight:0",
            "layer1.0.bn1.bias:0",
            "layer1.0.bn1.running_mean:0",
            "layer1.0.bn1.running_var:0",
            "layer1.0.conv2.weight:1"
        ]
    );
}

#[test]
fn planted_permutation_in_resnet20_is_recovered_exactly() {
    let (_, a) = random_network("resnet20", 8);
    let spec = infer_resnet_spec(&a)
        .expect("spec")
        .validate(&a)
        .expect("valid");
    let planted = random_permutations(spec.sizes(), 81);
    let b = spec.apply(&a, &planted).expect("apply");
    let device = ComputeBackend::Flex.device().expect("flex");
    let found = weight_matching(&spec, &a, &b, &device, &MatchOptions::default()).expect("match");
    for ((name, f), p) in spec.names().iter().zip(&found.perms).zip(&planted) {
        assert_eq!(f, &p.inverse(), "{name} not recovered");
    }
    assert_eq!(spec.apply(&b, &found.perms).expect("apply"), a);
}

#[test]
fn vgg_layout_reads_back_with_its_pools() {
    let (net, params) = random_network("vgg11:8", 10);
    // VGG-11: 8 convolutions; pools after the 1st, 2nd, 4th and 6th.
    let convs: Vec<&str> = params
        .names()
        .filter(|n| n.starts_with("features.") && n.ends_with(".weight"))
        .filter(|n| params.get(n).is_some_and(|t| t.shape().len() == 4))
        .collect();
    assert_eq!(
        convs,
        [
            "features.0.weight",
            "features.4.weight",
            "features.8.weight",
            "features.11.weight",
            "features.15.weight",
            "features.18.weight",
            "features.22.weight",
            "features.25.weight"
        ]
    );
    let back = Network::from_params(&params, &device()).expect("back");
    assert_eq!(outputs(&net, images(2, 3)), outputs(&back, images(2, 3)));
    let spec = infer_vgg_spec(&params).expect("spec");
    // One permutation per convolution and one for the classifier's hidden layer.
    assert_eq!(spec.len(), 9);
}

#[test]
fn foreign_tensors_and_bad_names_are_refused_by_name() {
    let (_, mut params) = random_network("resnet20", 11);
    params
        .insert("extra.weight", ParamTensor::zeros(vec![3]))
        .expect("insert");
    let err = Network::from_params(&params, &device()).expect_err("extra tensor");
    assert!(err.to_string().contains("'extra.weight'"), "{err}");
    let err = infer_resnet_spec(&params).expect_err("extra tensor");
    assert!(err.to_string().contains("'extra.weight'"), "{err}");

    for (given, needle) in [
        ("resnet21", "6·b+2"),
        ("resnet20x0", "width multiplier"),
        ("vgg12", "11, 13, 16, 19"),
        ("cnn", "expected mlp"),
    ] {
        let err = given.parse::<Architecture>().expect_err(given);
        assert!(matches!(err, ModelError::BadArchitecture { .. }), "{err}");
        assert!(err.to_string().contains(needle), "{given}: {err}");
    }
    for (given, shown) in [
        ("resnet20", "resnet20x1"),
        ("resnet56x4-ln", "resnet56x4-ln"),
        ("vgg16-ln:16", "vgg16-ln:16"),
        ("vgg11", "vgg11:64"),
    ] {
        let arch: Architecture = given.parse().expect(given);
        assert_eq!(arch.to_string(), shown);
        assert_eq!(shown.parse::<Architecture>().expect("again"), arch);
    }
}

#[test]
fn a_fresh_network_and_its_file_compute_the_same() {
    // Strides (ResNet) and pools (VGG) are not in the tensors: they are
    // read back from the names. A wrong reading changes the outputs.
    for arch in ["resnet20x2", "vgg11:8", "vgg16-ln:4"] {
        let net = Network::init(&arch.parse().expect("arch"), [3, 16, 16], 10, 12, &device());
        let back = Network::from_params(&net.to_params(), &device()).expect("back");
        assert_eq!(
            outputs(&net, images(2, 5)),
            outputs(&back, images(2, 5)),
            "{arch}"
        );
    }
}

#[test]
fn a_shortcut_of_the_wrong_width_is_refused_not_run() {
    let (_, params) = random_network("resnet20", 13);
    let mut bad = ParamSet::new();
    for (name, t) in params.iter() {
        let t = if name == "layer2.0.shortcut.0.weight" {
            ParamTensor::zeros(vec![16, 16, 1, 1])
        } else {
            t.clone()
        };
        bad.insert(name, t).expect("insert");
    }
    let err = Network::from_params(&bad, &device()).expect_err("mismatched shortcut");
    assert!(
        err.to_string().contains("layer2.0.shortcut.0.weight"),
        "{err}"
    );
}

#[test]
fn weight_matching_leaves_running_statistics_out_of_its_cost() {
    // B = A permuted, then B's running variances replaced by large values
    // unrelated to A's: statistics describe activations, not weights, and
    // must not pull the matching. The planted permutation still comes back.
    let (_, a) = random_network("resnet20", 14);
    let spec = infer_resnet_spec(&a)
        .expect("spec")
        .validate(&a)
        .expect("valid");
    let planted = random_permutations(spec.sizes(), 141);
    let permuted = spec.apply(&a, &planted).expect("apply");
    let mut b = ParamSet::new();
    for (i, (name, t)) in permuted.iter().enumerate() {
        let t = if name.ends_with("running_var") {
            let data = noise(t.numel(), 9000 + i as u64, 100.0, 1000.0);
            ParamTensor::new(name, t.shape().to_vec(), data).expect("tensor")
        } else {
            t.clone()
        };
        b.insert(name, t).expect("insert");
    }
    let device = ComputeBackend::Flex.device().expect("flex");
    let found = weight_matching(&spec, &a, &b, &device, &MatchOptions::default()).expect("match");
    for ((name, f), p) in spec.names().iter().zip(&found.perms).zip(&planted) {
        assert_eq!(f, &p.inverse(), "{name} pulled off by running statistics");
    }
}
