//! STE matching: a planted permutation comes back, and on a trained pair
//! its midpoint fits the training data better than weight matching's.

use burn::tensor::Device;
use fusion_core::synthetic::random_permutations;
use fusion_core::{MatchOptions, ParamSet, ValidatedSpec, weight_matching};
use fusion_data::{DataSource, Dataset};
use fusion_models::{Mlp, Network};
use fusion_train::{SteConfig, TrainConfig, evaluate_network, ste_matching, train};

fn device() -> Device {
    Device::flex()
}

fn spec_of(params: &ParamSet) -> ValidatedSpec {
    Network::from_params(params, &device())
        .expect("network")
        .permutation_spec()
        .expect("spec")
        .validate(params)
        .expect("valid")
}

/// `½(a + b)`.
fn midpoint(a: &ParamSet, b: &ParamSet) -> ParamSet {
    let mut out = a.clone();
    for (name, t) in b.iter() {
        let at = out.position(name).expect("same layout");
        for (x, &y) in out.at_mut(at).data_mut().iter_mut().zip(t.data()) {
            *x = 0.5 * (*x + y);
        }
    }
    out
}

fn loss_on(params: &ParamSet, data: &Dataset) -> f64 {
    let net = Network::from_params(params, &device()).expect("network");
    evaluate_network(&net, data, &device()).expect("eval").loss
}

fn trained(data: &Dataset, seed: u64) -> ParamSet {
    let config = TrainConfig {
        epochs: 3,
        batch: 50,
        seed,
        progress: false,
        ..TrainConfig::default()
    };
    let model = Mlp::init(&[784, 48, 48, 10], seed, &device());
    train(model, data, &config, &device())
        .expect("train")
        .0
        .to_params()
}

#[test]
fn ste_recovers_a_planted_permutation() {
    let data = DataSource::Embedded.load().expect("embedded data");
    let sample = data.train.head(300);
    let a = trained(&sample, 1);
    let spec = spec_of(&a);
    let planted = random_permutations(spec.sizes(), 11);
    let b = spec.apply(&a, &planted).expect("apply");
    let config = SteConfig {
        epochs: 1,
        batch: 100,
        ..SteConfig::default()
    };
    let found = ste_matching(&spec, &a, &b, &sample, &config, &device()).expect("ste");
    assert_eq!(found.steps, 3);
    assert_eq!(found.epoch_loss.len(), 1);
    for ((name, f), p) in spec.names().iter().zip(&found.perms).zip(&planted) {
        assert_eq!(f, &p.inverse(), "{name} not recovered");
    }
}

#[test]
fn ste_midpoints_fit_the_training_data_better_than_weight_matching() {
    let data = DataSource::Embedded.load().expect("embedded data");
    let sample = data.train.head(1000);
    let (a, b) = (trained(&sample, 1), trained(&sample, 2));
    let spec = spec_of(&a);
    let weight = weight_matching(&spec, &a, &b, &device(), &MatchOptions::default())
        .expect("weight matching");
    let config = SteConfig {
        epochs: 3,
        batch: 50,
        ..SteConfig::default()
    };
    let ste = ste_matching(&spec, &a, &b, &sample, &config, &device()).expect("ste");
    let by_weight = loss_on(
        &midpoint(&a, &spec.apply(&b, &weight.perms).expect("apply")),
        &sample,
    );
    let by_ste = loss_on(
        &midpoint(&a, &spec.apply(&b, &ste.perms).expect("apply")),
        &sample,
    );
    assert!(
        by_ste < by_weight,
        "midpoint training loss: STE {by_ste}, weight matching {by_weight}"
    );
    assert!(
        ste.epoch_loss[2] < ste.epoch_loss[0],
        "the midpoint's loss falls as W̃ learns: {:?}",
        ste.epoch_loss
    );
}

#[test]
fn ste_refuses_a_model_it_cannot_train_instead_of_matching_weights() {
    // An `nn.Sequential` MLP (`0.weight`, `2.weight`, …): STE trains the
    // built-in network, which names its tensors `layers.{i}`. Were the
    // file read under other names, W̃ would never move and STE would
    // silently return weight matching's answer; it must refuse instead.
    let data = DataSource::Embedded.load().expect("embedded data");
    let sample = data.train.head(100);
    let a = trained(&sample, 1);
    let mut sequential = ParamSet::new();
    for (name, tensor) in a.iter() {
        let index: usize = name
            .trim_start_matches("layers.")
            .split('.')
            .next()
            .and_then(|i| i.parse().ok())
            .expect("layer index");
        let renamed = name.replacen(&format!("layers.{index}"), &(2 * index).to_string(), 1);
        sequential.insert(renamed, tensor.clone()).expect("insert");
    }
    let spec = fusion_core::infer_mlp_spec(&sequential)
        .expect("spec")
        .validate(&sequential)
        .expect("valid");
    let result = ste_matching(
        &spec,
        &sequential,
        &sequential,
        &sample,
        &SteConfig::default(),
        &device(),
    );
    let err = result.expect_err("nothing to train").to_string();
    assert!(
        err.contains("not a built-in architecture")
            || err.contains("no tensor of the model has a gradient"),
        "{err}"
    );
}
