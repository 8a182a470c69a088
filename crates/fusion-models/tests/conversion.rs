//! Module ↔ parameter-set conversion: PyTorch layout, exact round trips,
//! and the permutation spec that comes with the model.

use burn::tensor::{Device, Tensor, TensorData};
use fusion_core::synthetic::random_permutations;
use fusion_core::{ParamSet, ParamTensor};
use fusion_models::{Mlp, MlpArchitecture, ModelError};

fn device() -> Device {
    Device::flex()
}

fn batch(n: usize, features: usize, seed: u64) -> Tensor<2> {
    // A cheap deterministic pseudo-random batch in [0, 1).
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let x: Vec<f32> = (0..n * features)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    Tensor::<2>::from_data(TensorData::new(x, [n, features]), &device())
}

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("f32 data")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn parameters_use_pytorch_names_and_layout() {
    let model = Mlp::init(&[6, 5, 4, 3], 1, &device());
    let params = model.to_params();
    let names: Vec<&str> = params.names().collect();
    assert_eq!(
        names,
        [
            "layers.0.weight",
            "layers.0.bias",
            "layers.1.weight",
            "layers.1.bias",
            "layers.2.weight",
            "layers.2.bias"
        ]
    );
    assert_eq!(params.get("layers.0.weight").expect("w0").shape(), [5, 6]);
    assert_eq!(params.get("layers.2.weight").expect("w2").shape(), [3, 4]);
    assert_eq!(model.widths(), [6, 5, 4, 3]);
}

#[test]
fn forward_is_relu_of_w_x_plus_b_in_pytorch_layout() {
    // Hand-made 2-3-2 network: y = W1 relu(W0 x + b0) + b1 with W as [out, in].
    let mut p = ParamSet::new();
    let t = |shape: Vec<usize>, data: Vec<f32>| ParamTensor::new("t", shape, data).expect("tensor");
    p.insert(
        "layers.0.weight",
        t(vec![3, 2], vec![1.0, 0.0, 0.0, 1.0, -1.0, -1.0]),
    )
    .expect("insert");
    p.insert("layers.0.bias", t(vec![3], vec![0.0, 0.5, 0.0]))
        .expect("insert");
    p.insert(
        "layers.1.weight",
        t(vec![2, 3], vec![1.0, 2.0, 3.0, 0.0, 0.0, 1.0]),
    )
    .expect("insert");
    p.insert("layers.1.bias", t(vec![2], vec![0.25, -0.25]))
        .expect("insert");
    let model = Mlp::from_params(&p, &device()).expect("mlp");
    let x = Tensor::<2>::from_data(TensorData::new(vec![2.0f32, 3.0], [1, 2]), &device());
    // hidden = relu([2, 3.5, -5]) = [2, 3.5, 0]; y = [2 + 7 + 0 + .25, 0 - .25]
    assert_eq!(host(model.forward(x)), vec![9.25, -0.25]);
}

#[test]
fn export_then_import_computes_the_same_outputs() {
    let model = Mlp::init(&[784, 64, 32, 10], 3, &device());
    let params = model.to_params();
    let bytes = params.to_safetensors().expect("encode");
    let back = Mlp::from_params(
        &ParamSet::from_safetensors(&bytes).expect("decode"),
        &device(),
    )
    .expect("import");
    assert_eq!(
        back.to_params(),
        params,
        "parameters survive the round trip bit for bit"
    );
    let x = batch(16, 784, 9);
    assert_eq!(host(model.forward(x.clone())), host(back.forward(x)));
}

#[test]
fn init_is_deterministic_per_seed() {
    let a = Mlp::init(&[10, 8, 3], 5, &device()).to_params();
    assert_eq!(a, Mlp::init(&[10, 8, 3], 5, &device()).to_params());
    assert_ne!(a, Mlp::init(&[10, 8, 3], 6, &device()).to_params());
}

#[test]
fn permuted_model_computes_the_same_function() {
    let model = Mlp::init(&[784, 128, 64, 10], 2, &device());
    let params = model.to_params();
    let spec = model
        .permutation_spec()
        .expect("spec")
        .validate(&params)
        .expect("valid");
    assert_eq!(spec.sizes(), [128, 64]);
    let perms = random_permutations(spec.sizes(), 4);
    let permuted = spec.apply(&params, &perms).expect("apply");
    assert_ne!(permuted, params, "the permutation must actually move units");
    let other = Mlp::from_params(&permuted, &device()).expect("import");
    let x = batch(32, 784, 1);
    let diff = max_abs_diff(&host(model.forward(x.clone())), &host(other.forward(x)));
    assert!(diff < 1e-4, "outputs differ by {diff}");
}

#[test]
fn files_that_are_not_this_mlp_are_refused_with_the_reason() {
    let good = Mlp::init(&[4, 3, 2], 0, &device()).to_params();
    let t = |shape: Vec<usize>| ParamTensor::zeros(shape);

    let err = Mlp::from_params(&ParamSet::new(), &device()).expect_err("empty");
    assert!(err.to_string().contains("layers.0.weight"), "{err}");

    let mut broken = ParamSet::new();
    broken
        .insert("layers.0.weight", t(vec![3, 4]))
        .expect("insert");
    broken
        .insert("layers.1.weight", t(vec![2, 5]))
        .expect("insert");
    let err = Mlp::from_params(&broken, &device()).expect_err("chain");
    assert!(err.to_string().contains("takes 5 inputs"), "{err}");

    let mut extra = good.clone();
    extra.insert("head.scale", t(vec![2])).expect("insert");
    let err = Mlp::from_params(&extra, &device()).expect_err("extra tensor");
    assert!(err.to_string().contains("head.scale"), "{err}");

    let mut bad_bias = ParamSet::new();
    bad_bias
        .insert("layers.0.weight", t(vec![3, 4]))
        .expect("insert");
    bad_bias
        .insert("layers.0.bias", t(vec![4]))
        .expect("insert");
    assert!(matches!(
        Mlp::from_params(&bad_bias, &device()),
        Err(ModelError::NotAnMlp(_))
    ));

    let model = Mlp::from_params(&good, &device()).expect("good");
    assert!(model.check_data(4, 2).is_ok());
    let err = model.check_data(784, 2).expect_err("input width");
    assert!(
        err.to_string()
            .contains("expects 4 input features, the data has 784"),
        "{err}"
    );
}

#[test]
fn architectures_parse_and_print() {
    let arch: MlpArchitecture = "mlp:512x3".parse().expect("parse");
    assert_eq!(arch.hidden, [512, 512, 512]);
    assert_eq!(arch.widths(784, 10), [784, 512, 512, 512, 10]);
    assert_eq!(arch.to_string(), "mlp:512x3");
    assert_eq!(
        "mlp".parse::<MlpArchitecture>().expect("default"),
        MlpArchitecture::default()
    );
    assert_eq!(
        "mlp:1024,256"
            .parse::<MlpArchitecture>()
            .expect("list")
            .hidden,
        [1024, 256]
    );
    for bad in ["cnn", "mlp:0x3", "mlp:abc", "mlp:", "mlpx"] {
        assert!(bad.parse::<MlpArchitecture>().is_err(), "{bad}");
    }
}
