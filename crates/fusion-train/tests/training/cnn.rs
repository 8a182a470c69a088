//! CNNs: training learns, BatchNorm statistics are re-estimated exactly.

use burn::tensor::{Device, Tensor, TensorData};
use fusion_data::DataSource;
use fusion_models::{Architecture, Network};
use fusion_train::{
    TrainConfig, batch_norm_moments, evaluate_network, reset_batch_norm, train_network,
};

fn device() -> Device {
    Device::flex()
}

#[test]
fn a_small_resnet_learns_fashion_mnist_and_keeps_its_running_statistics() {
    let data = DataSource::Embedded.load().expect("embedded data");
    let (train_set, test_set) = (data.train.head(600), data.test.head(300));
    let arch: Architecture = "resnet20".parse().expect("arch");
    let model = Network::init(&arch, train_set.shape(), 10, 3, &device());
    let before = evaluate_network(&model, &test_set, &device()).expect("eval");
    let config = TrainConfig {
        epochs: 2,
        batch: 50,
        lr: 3e-3,
        progress: false,
        ..TrainConfig::default()
    };
    let (trained, summary) = train_network(model, &train_set, &config, &device()).expect("train");
    assert!(summary.epoch_loss[1] < summary.epoch_loss[0], "{summary:?}");
    let after = evaluate_network(&trained, &test_set, &device()).expect("eval");
    assert!(
        after.accuracy > before.accuracy + 0.2 && after.accuracy > 0.45,
        "{before:?} -> {after:?}"
    );
    // Training moved the running statistics away from their start (0, 1).
    let params = trained.to_params();
    let mean = params.get("layer1.0.bn1.running_mean").expect("bn");
    assert!(
        mean.data().iter().any(|v| v.abs() > 1e-3),
        "{:?}",
        mean.data()
    );
}

#[test]
fn reset_batch_norm_measures_the_first_layer_exactly() {
    // One batch holding the whole data: the first BatchNorm's running mean
    // and (biased) variance must equal the per-channel moments of the stem
    // convolution's outputs, computed here directly.
    let data = DataSource::Embedded.load().expect("embedded data");
    let sample = data.train.head(64);
    let arch: Architecture = "vgg11:4".parse().expect("arch");
    let model = Network::init(&arch, sample.shape(), 10, 5, &device());
    let Network::Vgg(vgg) = &model else {
        panic!("not a vgg")
    };
    let (x, _) = sample.batch(&(0..64).collect::<Vec<_>>());
    let [c, h, w] = sample.shape();
    let x = Tensor::<4>::from_data(TensorData::new(x, [64, c, h, w]), &device());
    let y = vgg.features[0].conv.forward(x);
    let [_, channels, _, _] = y.dims();
    let y = y.swap_dims(0, 1).reshape([channels, 64 * h * w]);
    let mean: Vec<f32> = y
        .clone()
        .mean_dim(1)
        .into_data()
        .try_to_vec::<f32>()
        .expect("mean");
    let centred = y - Tensor::from_data(TensorData::new(mean.clone(), [channels, 1]), &device());
    let var: Vec<f32> = centred
        .powf_scalar(2.0)
        .mean_dim(1)
        .into_data()
        .try_to_vec::<f32>()
        .expect("var");

    let reset = reset_batch_norm(model, &sample, 1, 64, 0, &device()).expect("reset");
    let params = reset.to_params();
    let got_mean = params.get("features.1.running_mean").expect("mean").data();
    let got_var = params.get("features.1.running_var").expect("var").data();
    for k in 0..channels {
        assert!(
            (got_mean[k] - mean[k]).abs() < 1e-4,
            "mean {k}: {} vs {}",
            got_mean[k],
            mean[k]
        );
        assert!(
            (got_var[k] - var[k]).abs() < 1e-4 * var[k].max(1.0),
            "var {k}: {} vs {}",
            got_var[k],
            var[k]
        );
    }
    // Two batches of 32: the running mean is the mean of the two batch
    // means, which is the mean over all 64 (momentum 1/k, not 0.1).
    let twice = reset_batch_norm(
        Network::init(&arch, sample.shape(), 10, 5, &device()),
        &sample,
        2,
        32,
        0,
        &device(),
    )
    .expect("reset")
    .to_params();
    let two_mean = twice.get("features.1.running_mean").expect("mean").data();
    for k in 0..channels {
        assert!(
            (two_mean[k] - mean[k]).abs() < 1e-4,
            "two batches, mean {k}"
        );
    }
    // Weights are untouched.
    assert_eq!(
        params.get("features.0.weight"),
        Network::init(&arch, sample.shape(), 10, 5, &device())
            .to_params()
            .get("features.0.weight")
    );
}

/// `(1 − λ)·a + λ·b`, tensor by tensor (integer tensors from `a`).
fn lerp(
    a: &fusion_core::ParamSet,
    b: &fusion_core::ParamSet,
    lambda: f32,
) -> fusion_core::ParamSet {
    let mut out = a.clone();
    for (name, t) in b.iter() {
        let p = out.position(name).expect("same layout");
        for (x, y) in out.at_mut(p).data_mut().iter_mut().zip(t.data()) {
            *x = (1.0 - lambda) * *x + lambda * y;
        }
    }
    out
}

#[test]
fn repair_gives_every_norm_its_target_moments() {
    use fusion_train::{MomentData, norm_moments, repair};
    let data = DataSource::Embedded.load().expect("embedded data");
    let sample = data.train.head(192);
    let on = MomentData {
        data: &sample,
        batches: 2,
        batch: 96,
        seed: 1,
    };
    for (arch, lambda) in [("vgg11:4", 0.5), ("resnet20-ln", 0.3)] {
        let arch: Architecture = arch.parse().expect("arch");
        let a = Network::init(&arch, sample.shape(), 10, 1, &device());
        let b = Network::init(&arch, sample.shape(), 10, 2, &device());
        let merged = Network::from_params(&lerp(&a.to_params(), &b.to_params(), lambda), &device())
            .expect("merged");
        let (ma, mb) = (
            norm_moments(&a, on, &device()).expect("a"),
            norm_moments(&b, on, &device()).expect("b"),
        );
        let target = |k: usize, c: usize| {
            let l = f64::from(lambda);
            (
                (1.0 - l) * ma[k].mean[c] + l * mb[k].mean[c],
                (1.0 - l) * ma[k].std[c] + l * mb[k].std[c],
            )
        };
        // Before REPAIR the merge's channels are off target (variance
        // collapse), so the check below can fail.
        let before = norm_moments(&merged, on, &device()).expect("before");
        let worst_before = (0..before.len())
            .flat_map(|k| (0..before[k].std.len()).map(move |c| (k, c)))
            .map(|(k, c)| (before[k].std[c] / target(k, c).1 - 1.0).abs())
            .fold(0.0f64, f64::max);
        assert!(
            worst_before > 0.05,
            "{arch}: merge already on target ({worst_before})"
        );

        let repaired = repair(merged, &a, &b, f64::from(lambda), on, &device()).expect("repair");
        let after = norm_moments(&repaired, on, &device()).expect("after");
        assert_eq!(after.len(), ma.len());
        for (k, layer) in after.iter().enumerate() {
            for c in 0..layer.mean.len() {
                let (mean, std) = target(k, c);
                assert!(
                    (layer.mean[c] - mean).abs() < 1e-3 * (1.0 + mean.abs()),
                    "{arch} layer {k} channel {c}: mean {} vs {mean}",
                    layer.mean[c]
                );
                assert!(
                    (layer.std[c] - std).abs() < 1e-3 * (1.0 + std),
                    "{arch} layer {k} channel {c}: std {} vs {std}",
                    layer.std[c]
                );
            }
        }
    }
}

#[test]
fn conv_activation_matching_recovers_a_planted_permutation() {
    use fusion_core::synthetic::random_permutations;
    use fusion_train::activation_matching_network;
    let data = DataSource::Embedded.load().expect("embedded data");
    let sample = data.train.head(200);
    for arch in ["vgg11:4", "resnet20"] {
        let arch: Architecture = arch.parse().expect("arch");
        // BatchNorm statistics measured on the sample: every channel is
        // then centred and varies. A channel that is always zero (as many
        // are at initialisation, with running statistics of 0 and 1)
        // correlates with nothing, and any slot fits it.
        let a = Network::init(&arch, sample.shape(), 10, 7, &device());
        let a = reset_batch_norm(a, &sample, 2, 100, 0, &device()).expect("statistics");
        let params = a.to_params();
        let spec = a
            .permutation_spec()
            .expect("spec")
            .validate(&params)
            .expect("valid");
        let planted = random_permutations(spec.sizes(), 70);
        let b = Network::from_params(&spec.apply(&params, &planted).expect("apply"), &device())
            .expect("b");
        let found = activation_matching_network(&spec, &a, &b, &sample, &device()).expect("match");
        for ((name, f), p) in spec.names().iter().zip(&found).zip(&planted) {
            assert_eq!(f, &p.inverse(), "{arch}: {name} not recovered");
        }
    }
}

#[test]
fn client_moments_are_the_batch_weighted_mean_of_each_batch_statistics() {
    // A ResNet, so deeper norms see the batch-normalised output of the
    // layers before them. 96 examples in batches of 64 and 32: each
    // layer's moments must be (64·first + 32·second) / 96, where each
    // batch's statistics are what reset_batch_norm measures on a single
    // batch holding exactly those examples (order-free).
    let data = DataSource::Embedded.load().expect("embedded data");
    let sample = data.train.head(96);
    let arch: Architecture = "resnet20".parse().expect("arch");
    let model = Network::init(&arch, sample.shape(), 10, 7, &device());
    let params = model.to_params();
    let names: Vec<String> = fusion_core::batch_norm_layers(&params)
        .iter()
        .map(|r| r.name())
        .collect();
    assert_eq!(names.len(), 21, "{names:?}");
    let got = batch_norm_moments(&params, &names, &sample, 64, &device()).expect("moments");
    let batch_statistics = |indices: Vec<usize>| {
        let part = sample.subset(&indices);
        let n = part.len();
        reset_batch_norm(model.clone(), &part, 1, n, 0, &device())
            .expect("reset")
            .to_params()
    };
    let first = batch_statistics((0..64).collect());
    let second = batch_statistics((64..96).collect());
    for name in &names {
        let layer = name.strip_prefix("moments:").expect("prefix");
        let tensor = &got[name];
        let channels = tensor.shape()[1];
        assert_eq!(tensor.shape(), &[2, channels]);
        for (row, suffix) in ["running_mean", "running_var"].iter().enumerate() {
            let key = format!("{layer}.{suffix}");
            let (a, b) = (
                first.get(&key).expect("a").data(),
                second.get(&key).expect("b").data(),
            );
            for c in 0..channels {
                let want = (64.0 * f64::from(a[c]) + 32.0 * f64::from(b[c])) / 96.0;
                let value = tensor.data()[row * channels + c];
                assert!(
                    (value - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "{key}[{c}]: {value} vs {want}"
                );
            }
        }
    }
    // The deepest norm's variance differs between the batches, so the
    // weighting is visible.
    let last = "layer3.2.bn2.running_var";
    assert_ne!(
        first.get(last).expect("a").data(),
        second.get(last).expect("b").data()
    );
    let err = batch_norm_moments(
        &params,
        &["moments:layer9.bn".into()],
        &sample,
        64,
        &device(),
    )
    .expect_err("no such norm");
    assert!(
        err.to_string().contains("names no BatchNorm layer"),
        "{err}"
    );
}
