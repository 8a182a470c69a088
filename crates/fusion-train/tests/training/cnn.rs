//! CNNs: training learns, BatchNorm statistics are re-estimated exactly.

use burn::tensor::{Device, Tensor, TensorData};
use fusion_data::DataSource;
use fusion_models::{Architecture, Network};
use fusion_train::{TrainConfig, evaluate_network, reset_batch_norm, train_network};

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
    // Weights are untouched.
    assert_eq!(
        params.get("features.0.weight"),
        Network::init(&arch, sample.shape(), 10, 5, &device())
            .to_params()
            .get("features.0.weight")
    );
}
