//! Training, evaluation and activation matching on small real data.

use burn::tensor::Device;
use fusion_core::synthetic::random_permutations;
use fusion_core::{ParamSet, ParamTensor};
use fusion_data::{DataSource, Dataset, TrainTest};
use fusion_models::Mlp;
use fusion_train::{
    OptimizerKind, TrainConfig, TrainError, activation_matching, evaluate, evaluate_ensemble, train,
};

fn device() -> Device {
    Device::flex()
}

/// The first 1,500 training and 500 test images of the embedded sample.
fn small() -> TrainTest {
    let data = DataSource::Embedded.load().expect("embedded data");
    TrainTest {
        name: "slice".into(),
        train: data.train.head(1500),
        test: data.test.head(500),
    }
}

fn quick(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch: 100,
        progress: false,
        ..TrainConfig::default()
    }
}

#[test]
fn training_lowers_loss_and_learns_the_task() {
    let data = small();
    let model = Mlp::init(&[784, 64, 64, 10], 1, &device());
    let before = evaluate(&model, &data.test, &device()).expect("eval");
    let (model, summary) = train(model, &data.train, &quick(4), &device()).expect("train");
    let after = evaluate(&model, &data.test, &device()).expect("eval");
    assert_eq!(summary.epoch_loss.len(), 4);
    assert_eq!(summary.steps, 4 * 15);
    assert!(
        summary.epoch_loss[3] < summary.epoch_loss[0],
        "{:?}",
        summary.epoch_loss
    );
    assert!(
        after.loss < before.loss - 0.5,
        "test loss {} -> {}",
        before.loss,
        after.loss
    );
    // Ten classes: chance is 10%. A small MLP on 1.5k images reaches ~75%.
    assert!(after.accuracy > 0.65, "test accuracy {}", after.accuracy);
}

#[test]
fn sgd_with_momentum_also_trains() {
    let data = small();
    let model = Mlp::init(&[784, 32, 10], 2, &device());
    let config = TrainConfig {
        optimizer: OptimizerKind::Sgd { momentum: 0.9 },
        lr: 0.05,
        ..quick(3)
    };
    let (model, summary) = train(model, &data.train, &config, &device()).expect("train");
    assert!(
        summary.epoch_loss[2] < summary.epoch_loss[0] * 0.8,
        "{:?}",
        summary.epoch_loss
    );
    assert!(
        evaluate(&model, &data.test, &device())
            .expect("eval")
            .accuracy
            > 0.6
    );
}

#[test]
fn training_is_reproducible_for_a_seed() {
    let data = small();
    let run = |seed| {
        let model = Mlp::init(&[784, 32, 10], 7, &device());
        let config = TrainConfig { seed, ..quick(1) };
        train(model, &data.train.head(600), &config, &device())
            .expect("train")
            .0
            .to_params()
    };
    let first = run(3);
    assert_eq!(
        first,
        run(3),
        "same seed, same data, same backend: same weights"
    );
    assert_ne!(first, run(4), "the seed must change the batch order");
}

fn distance(a: &ParamSet, b: &ParamSet) -> f64 {
    a.iter()
        .map(|(name, t)| {
            let o = b.get(name).expect("same layout");
            t.data()
                .iter()
                .zip(o.data())
                .map(|(x, y)| f64::from(x - y).powi(2))
                .sum::<f64>()
        })
        .sum::<f64>()
        .sqrt()
}

#[test]
fn fedprox_term_keeps_weights_near_the_start() {
    let data = small();
    let start = Mlp::init(&[784, 32, 10], 5, &device());
    let p0 = start.to_params();
    let moved = |mu: f64| {
        let config = TrainConfig {
            proximal_mu: mu,
            ..quick(2)
        };
        let (m, _) = train(
            Mlp::from_params(&p0, &device()).expect("copy"),
            &data.train,
            &config,
            &device(),
        )
        .expect("train");
        distance(&m.to_params(), &p0)
    };
    let (free, held) = (moved(0.0), moved(100.0));
    assert!(held < free * 0.5, "mu=100 moved {held}, mu=0 moved {free}");
}

fn constant_model(bias: [f32; 3]) -> Mlp {
    let mut p = ParamSet::new();
    p.insert("layers.0.weight", ParamTensor::zeros(vec![3, 4]))
        .expect("insert");
    p.insert(
        "layers.0.bias",
        ParamTensor::new("b", vec![3], bias.to_vec()).expect("bias"),
    )
    .expect("insert");
    Mlp::from_params(&p, &device()).expect("mlp")
}

#[test]
fn evaluation_computes_cross_entropy_and_accuracy_exactly() {
    // Logits are the bias whatever the input: softmax([0, ln 3, 0]) = [.2, .6, .2].
    let data = Dataset::new(vec![0; 5 * 4], vec![1, 1, 1, 0, 2], [1, 2, 2], 3).expect("dataset");
    let model = constant_model([0.0, 3f32.ln(), 0.0]);
    let m = evaluate(&model, &data, &device()).expect("eval");
    let want = -(3.0 * 0.6f64.ln() + 2.0 * 0.2f64.ln()) / 5.0;
    assert!((m.loss - want).abs() < 1e-6, "loss {} want {want}", m.loss);
    assert!((m.accuracy - 0.6).abs() < 1e-12);

    // The ensemble averages probabilities: [.2,.6,.2] and [.6,.2,.2] -> [.4,.4,.2].
    let other = constant_model([3f32.ln(), 0.0, 0.0]);
    let e = evaluate_ensemble(&[&model, &other], &data, &device()).expect("ensemble");
    let want = -(4.0 * 0.4f64.ln() + 0.2f64.ln()) / 5.0;
    assert!(
        (e.loss - want).abs() < 1e-6,
        "ensemble loss {} want {want}",
        e.loss
    );
}

/// Which hidden units of `model` vary over `data` (a unit that never
/// changes correlates with nothing, so where matching puts it is arbitrary
/// and harmless).
fn live_units(model: &Mlp, data: &Dataset) -> Vec<Vec<bool>> {
    let (x, _) = data.batch(&(0..data.len()).collect::<Vec<_>>());
    let x = burn::tensor::Tensor::<2>::from_data(
        burn::tensor::TensorData::new(x, [data.len(), data.features()]),
        &device(),
    );
    model
        .hidden_activations(x)
        .into_iter()
        .map(|h| {
            let [n, w] = h.dims();
            let v = h.into_data().try_into_vec::<f32>().expect("f32");
            (0..w)
                .map(|j| (0..n).any(|i| v[i * w + j] != v[j]))
                .collect()
        })
        .collect()
}

#[test]
fn activation_matching_recovers_a_planted_permutation() {
    let data = small();
    let probe = data.train.head(1000);
    let (a, _) = train(
        Mlp::init(&[784, 48, 32, 10], 8, &device()),
        &data.train,
        &quick(1),
        &device(),
    )
    .expect("train");
    let pa = a.to_params();
    let spec = a
        .permutation_spec()
        .expect("spec")
        .validate(&pa)
        .expect("valid");
    let planted = random_permutations(spec.sizes(), 21);
    let b = Mlp::from_params(&spec.apply(&pa, &planted).expect("permute"), &device()).expect("b");
    let found = activation_matching(&spec, &a, &b, &probe, &device()).expect("match");
    let live = live_units(&a, &probe);
    let mut checked = 0;
    for ((p, f), live) in planted.iter().zip(&found).zip(&live) {
        // Slot i of the aligned B takes B's unit f[i], which is A's unit p[f[i]].
        for (i, &j) in f.as_slice().iter().enumerate() {
            if live[i] {
                assert_eq!(p.as_slice()[j], i, "live unit {i} misplaced");
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 70,
        "most of the 80 hidden units should be live; {checked} were"
    );
}

#[test]
fn bad_settings_and_mismatched_data_are_refused() {
    let data = small();
    let model = || Mlp::init(&[784, 8, 10], 0, &device());
    let err = train(
        model(),
        &data.train,
        &TrainConfig {
            batch: 0,
            ..quick(1)
        },
        &device(),
    )
    .expect_err("batch 0");
    assert!(err.to_string().contains("batch"), "{err}");
    let err = train(
        model(),
        &data.train,
        &TrainConfig {
            lr: -1.0,
            ..quick(1)
        },
        &device(),
    )
    .expect_err("lr");
    assert!(err.to_string().contains("lr"), "{err}");
    let empty = data.train.head(0);
    assert!(matches!(
        train(model(), &empty, &quick(1), &device()),
        Err(TrainError::EmptyData(_))
    ));
    let small_model = Mlp::init(&[784, 8, 10], 0, &device());
    let wrong_width = Mlp::init(&[700, 8, 10], 0, &device());
    let err = evaluate_ensemble(&[&small_model, &wrong_width], &data.test, &device())
        .expect_err("second model");
    assert!(err.to_string().contains("700 input features"), "{err}");
    assert!(evaluate_ensemble(&[], &data.test, &device()).is_err());
    let wrong = Mlp::init(&[100, 8, 10], 0, &device());
    let err = train(wrong, &data.train, &quick(1), &device()).expect_err("input width");
    assert!(err.to_string().contains("100 input features"), "{err}");
    assert!("adamw".parse::<OptimizerKind>().is_err());
    assert_eq!(
        "sgd:0.5".parse::<OptimizerKind>().expect("sgd"),
        OptimizerKind::Sgd { momentum: 0.5 }
    );
}

#[test]
fn divergence_is_reported_not_hidden() {
    let data = small();
    let model = Mlp::init(&[784, 32, 10], 0, &device());
    let config = TrainConfig {
        optimizer: OptimizerKind::Sgd { momentum: 0.9 },
        lr: 1e30,
        ..quick(2)
    };
    match train(model, &data.train, &config, &device()) {
        Err(TrainError::Diverged { .. }) => {}
        other => panic!("expected divergence, got {other:?}"),
    }
}

#[path = "training/distillation.rs"]
mod distillation;

#[path = "training/cnn.rs"]
mod cnn;

#[path = "training/ste.rs"]
mod ste;

#[path = "training/federated_repair.rs"]
mod federated_repair;
