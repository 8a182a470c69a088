//! The data-aware merges (RegMean, layer-wise least squares) against the
//! closed form of pooled least squares, computed here in plain f64 from
//! the clients' data, which the strategies never see: they get only the
//! statistics a client would send.

use std::collections::BTreeMap;
use std::sync::Arc;

use fusion_core::{
    ComputeBackend, Instructions, MergeError, ParamSet, RoundContext, SpecSource, StatisticKind,
    StatisticTensor, Strategy, StrategyConfig, StrategyKind, Update, WeightedAverage, pack_upper,
};

use crate::common;

/// One client: its own trained model and its data (rows of `inputs`).
struct Client {
    /// Its id, as the server would pass it to the strategy.
    id: String,
    model: ParamSet,
    data: Vec<Vec<f32>>,
}

/// Layer `l`'s input (with a 1 appended for the bias) and pre-activation
/// for one example, in f64, by a forward pass written here.
fn layer_io(params: &ParamSet, x: &[f32], l: usize) -> (Vec<f64>, Vec<f64>) {
    let mut h: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let mut i = 0;
    loop {
        let w = params.get(&format!("layers.{i}.weight")).expect("weight");
        let b = params.get(&format!("layers.{i}.bias")).expect("bias");
        let (out, inp) = (w.shape()[0], w.shape()[1]);
        let y: Vec<f64> = (0..out)
            .map(|o| {
                f64::from(b.data()[o])
                    + (0..inp)
                        .map(|j| f64::from(w.data()[o * inp + j]) * h[j])
                        .sum::<f64>()
            })
            .collect();
        if i == l {
            let mut augmented = h;
            augmented.push(1.0);
            return (augmented, y);
        }
        h = y.into_iter().map(|v| v.max(0.0)).collect();
        i += 1;
    }
}

/// What a client sends for `instructions`: computed the way the protocol
/// defines each statistic (x̃ from the instructions' model, y from the
/// client's own).
fn client_update(client: &Client, instructions: &Instructions) -> Update {
    let reference = instructions.model.as_deref().unwrap_or(&client.model);
    let mut statistics = BTreeMap::new();
    for request in &instructions.statistics {
        let l: usize = request
            .layer
            .strip_prefix("layers.")
            .and_then(|d| d.parse().ok())
            .expect("layer index");
        let k = layer_io(reference, &client.data[0], l).0.len();
        let out = layer_io(&client.model, &client.data[0], l).1.len();
        let values: Vec<f64> = match request.kind {
            StatisticKind::Gram => {
                let mut g = vec![0.0; k * k];
                for x in &client.data {
                    let (xt, _) = layer_io(reference, x, l);
                    for a in 0..k {
                        for b in 0..k {
                            g[a * k + b] += xt[a] * xt[b];
                        }
                    }
                }
                pack_upper(&g, k)
            }
            StatisticKind::Cross => {
                let mut c = vec![0.0; k * out];
                for x in &client.data {
                    let (xt, _) = layer_io(reference, x, l);
                    let (_, y) = layer_io(&client.model, x, l);
                    for a in 0..k {
                        for o in 0..out {
                            c[a * out + o] += xt[a] * y[o];
                        }
                    }
                }
                c
            }
            StatisticKind::Moments | StatisticKind::Outputs => {
                panic!("the least-squares strategies ask for no moments")
            }
        };
        let name = request.name();
        statistics.insert(
            name.clone(),
            StatisticTensor::new(&name, request.shape.clone(), values).expect("tensor"),
        );
    }
    Update {
        client: Some(client.id.clone()),
        params: instructions.send_weights.then(|| client.model.clone()),
        weight: client.data.len() as f64,
        statistics,
    }
}

/// Runs every exchange of `strategy` with `clients`, as a server would.
fn run(kind: StrategyKind, ridge: f64, clients: &[Client]) -> ParamSet {
    run_with_dropouts(kind, ridge, clients, clients.len())
}

/// [`run`], where only the first `stay` clients take part after exchange 0
/// (the others died between exchanges).
fn run_with_dropouts(kind: StrategyKind, ridge: f64, clients: &[Client], stay: usize) -> ParamSet {
    run_strategy(strategy(kind, ridge, 1.0), clients, stay)
}

/// Runs every exchange of `strategy`, with only the first `stay` clients
/// after exchange 0.
fn run_strategy(strategy: Arc<dyn Strategy>, clients: &[Client], stay: usize) -> ParamSet {
    let round = one_shot(clients);
    let mut aggregation = strategy.begin(&round).expect("begin");
    let mut instructions = aggregation.instructions();
    loop {
        let present = if instructions.exchange == 0 {
            clients.len()
        } else {
            stay
        };
        for c in &clients[..present] {
            aggregation
                .add(client_update(c, &instructions))
                .expect("update");
        }
        match aggregation.advance().expect("advance") {
            Some(next) => instructions = next,
            None => break,
        }
    }
    aggregation.finish().expect("finish").merged
}

/// `kind` with the given ridge and RegMean α.
fn strategy(kind: StrategyKind, ridge: f64, regmean_alpha: f64) -> Arc<dyn Strategy> {
    StrategyConfig {
        ridge,
        regmean_alpha,
        ..StrategyConfig::new(kind, SpecSource::InferMlp, device())
    }
    .build()
}

/// A one-shot round over `clients`' models (the first gives the layout).
fn one_shot(clients: &[Client]) -> RoundContext {
    RoundContext {
        global: Some(Arc::new(clients[0].model.clone())),
        from_own_init: true,
    }
}

fn device() -> fusion_core::Device {
    ComputeBackend::Flex.device().expect("flex")
}

/// Clients with their own random models and data.
fn clients(widths: &[usize], sizes: &[usize], seed: u64) -> Vec<Client> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let mut r = common::rng(seed + i as u64);
            // Each client's inputs are shifted differently: non-IID.
            let shift = i as f32 * 0.5;
            Client {
                id: format!("client-{i}"),
                model: common::random_mlp(widths, seed * 10 + i as u64),
                data: (0..n)
                    .map(|_| {
                        common::uniform(&mut r, widths[0], 1.0)
                            .into_iter()
                            .map(|v| v + shift)
                            .collect()
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Largest entry of the pooled normal equations' residual for layer `l`
/// of `merged`: `Σᵢ X̃ᵢᵀ(X̃ᵢ Wᵀ − Yᵢ)`, with `X̃ᵢ` layer `l`'s input in
/// `merged` and `Yᵢ` client `i`'s own pre-activation, relative to the
/// size of `Σᵢ X̃ᵢᵀYᵢ`. Zero exactly when `W` is the pooled least-squares
/// solution (the Gram matrix is positive definite here).
fn normal_equation_residual(merged: &ParamSet, clients: &[Client], l: usize) -> f64 {
    let mut residual: Vec<f64> = Vec::new();
    let mut scale: f64 = 0.0;
    for c in clients {
        for x in &c.data {
            let (xt, pred) = layer_io(merged, x, l);
            let (_, target) = layer_io(&c.model, x, l);
            if residual.is_empty() {
                residual = vec![0.0; xt.len() * pred.len()];
            }
            for (a, &xa) in xt.iter().enumerate() {
                for (o, (&p, &t)) in pred.iter().zip(&target).enumerate() {
                    residual[a * pred.len() + o] += xa * (p - t);
                    scale = scale.max((xa * t).abs());
                }
            }
        }
    }
    residual.iter().fold(0.0f64, |m, v| m.max(v.abs())) / scale
}

#[test]
fn regmean_on_a_linear_model_is_pooled_least_squares() {
    // One linear layer: RegMean with α = 1 solves exactly the least
    // squares of the pooled data against each client's own outputs.
    let clients = clients(&[4, 3], &[30, 50, 20], 1);
    let merged = run(StrategyKind::Regmean, 0.0, &clients);
    let r = normal_equation_residual(&merged, &clients, 0);
    assert!(r < 1e-5, "residual {r}");
    // And it is not just an average.
    let models: Vec<(ParamSet, f64)> = clients
        .iter()
        .map(|c| (c.model.clone(), c.data.len() as f64))
        .collect();
    let fedavg = WeightedAverage
        .merge(&RoundContext::default(), &models)
        .expect("average")
        .merged;
    assert!(normal_equation_residual(&fedavg, &clients, 0) > 1e-2);
}

#[test]
fn layerwise_solves_every_layer_against_the_merged_models_inputs() {
    let clients = clients(&[5, 6, 4, 3], &[40, 60, 30], 2);
    let merged = run(StrategyKind::Layerwise, 0.0, &clients);
    for l in 0..3 {
        let r = normal_equation_residual(&merged, &clients, l);
        assert!(r < 1e-4, "layer {l}: residual {r}");
    }
    // RegMean fits each layer to the clients' own inputs, not the merged
    // model's: past the first layer it does not satisfy these equations.
    let regmean = run(StrategyKind::Regmean, 0.0, &clients);
    assert!(normal_equation_residual(&regmean, &clients, 0) < 1e-4);
    assert!(normal_equation_residual(&regmean, &clients, 2) > 1e-3);
}

#[test]
fn a_client_that_dies_between_exchanges_is_absent_from_later_layers_only() {
    let clients = clients(&[5, 6, 4, 3], &[40, 60, 30], 6);
    let merged = run_with_dropouts(StrategyKind::Layerwise, 0.0, &clients, 2);
    // Layer 0 was solved with all three clients' data; later layers with
    // the two that stayed, and nothing of the third is counted there.
    let r = normal_equation_residual(&merged, &clients, 0);
    assert!(r < 1e-4, "layer 0: residual {r}");
    for l in 1..3 {
        let r = normal_equation_residual(&merged, &clients[..2], l);
        assert!(r < 1e-4, "layer {l}: residual {r}");
        assert!(normal_equation_residual(&merged, &clients, l) > 1e-3);
    }
}

#[test]
fn identical_clients_give_fedavg() {
    // Same model, same data: every least-squares strategy returns the
    // average (the model itself), ridge or not.
    let one = clients(&[5, 6, 3], &[40], 3).remove(0);
    let clients: Vec<Client> = (0..3)
        .map(|i| Client {
            id: format!("client-{i}"),
            model: one.model.clone(),
            data: one.data.clone(),
        })
        .collect();
    for kind in [StrategyKind::Regmean, StrategyKind::Layerwise] {
        for ridge in [0.0, StrategyConfig::DEFAULT_RIDGE] {
            let merged = run(kind, ridge, &clients);
            for (name, t) in merged.iter() {
                let want = one.model.get(name).expect("same layout");
                for (a, b) in t.data().iter().zip(want.data()) {
                    assert!(
                        (a - b).abs() < 1e-6,
                        "{kind} ridge {ridge}: {name} {a} vs {b}"
                    );
                }
            }
        }
    }
}

/// `layerwise`, started from an alignment to the largest client.
fn aligned_layerwise(ridge: f64) -> Arc<dyn Strategy> {
    StrategyConfig {
        ridge,
        layerwise_align: true,
        ..StrategyConfig::new(StrategyKind::Layerwise, SpecSource::InferMlp, device())
    }
    .build()
}

#[test]
fn aligned_layerwise_recovers_planted_permutations() {
    // Three clients hold one model with its hidden units shuffled
    // differently, and data of their own. Aligned to the largest, they
    // are one model, which fits every client's pre-activations exactly:
    // layer-wise least squares must give back the largest client's model.
    let widths = [5, 8, 6, 3];
    let base = clients(&widths, &[30, 70, 40], 9);
    let spec = fusion_core::infer_mlp_spec(&base[0].model)
        .expect("mlp")
        .validate(&base[0].model)
        .expect("valid");
    let clients: Vec<Client> = base
        .iter()
        .enumerate()
        .map(|(i, c)| Client {
            id: c.id.clone(),
            model: spec
                .apply(
                    &base[0].model,
                    &common::random_perms(spec.sizes(), 40 + i as u64),
                )
                .expect("permute"),
            data: c.data.clone(),
        })
        .collect();
    let largest = &clients[1].model;
    // Some hidden unit is dead on all of this data, so the system needs
    // the ridge; it pulls towards the aligned average, the same model.
    let ridge = StrategyConfig::DEFAULT_RIDGE;
    let merged = run_strategy(aligned_layerwise(ridge), &clients, clients.len());
    for (name, t) in merged.iter() {
        let want = largest.get(name).expect("same layout");
        for (a, b) in t.data().iter().zip(want.data()) {
            assert!((a - b).abs() < 1e-5, "{name} {a} vs {b}");
        }
    }
    // Unaligned, the hidden units of different clients are mixed.
    let unaligned = run(StrategyKind::Layerwise, ridge, &clients);
    let w = unaligned.get("layers.0.weight").expect("w").data();
    let want = largest.get("layers.0.weight").expect("w").data();
    let gap = w
        .iter()
        .zip(want)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(gap > 1e-2, "unaligned layer 0 is off by only {gap}");
}

#[test]
fn aligned_layerwise_refuses_clients_it_cannot_follow() {
    let clients = clients(&[4, 6, 3], &[30, 50], 12);
    let strategy = aligned_layerwise(StrategyConfig::DEFAULT_RIDGE);
    let mut aggregation = strategy.begin(&one_shot(&clients)).expect("begin");
    let instructions = aggregation.instructions();
    let mut anonymous = client_update(&clients[0], &instructions);
    anonymous.client = None;
    let err = aggregation.add(anonymous).expect_err("no id").to_string();
    assert!(err.contains("names no client"), "{err}");
    for c in &clients {
        aggregation
            .add(client_update(c, &instructions))
            .expect("update");
    }
    let err = aggregation
        .add(client_update(&clients[0], &instructions))
        .expect_err("twice")
        .to_string();
    assert!(err.contains("already sent its weights"), "{err}");
    let next = aggregation.advance().expect("advance").expect("layer 1");
    let stranger = Client {
        id: "stranger".into(),
        model: clients[0].model.clone(),
        data: clients[0].data.clone(),
    };
    let err = aggregation
        .add(client_update(&stranger, &next))
        .expect_err("not in exchange 0")
        .to_string();
    assert!(err.contains("sent no weights in exchange 0"), "{err}");
    aggregation
        .add(client_update(&clients[1], &next))
        .expect("a known client");
    assert!(aggregation.advance().expect("advance").is_none());
    let outcome = aggregation.finish().expect("finish");
    // The reports say how far exchange 0's models moved.
    assert_eq!(outcome.reports.len(), 2);
    assert!(outcome.reports.iter().all(|r| !r.moved.is_empty()));
}

#[test]
fn bad_statistics_are_refused_and_the_rest_still_merge() {
    let clients = clients(&[4, 3], &[30, 50], 4);
    let strategy = strategy(StrategyKind::Regmean, StrategyConfig::DEFAULT_RIDGE, 1.0);
    let mut aggregation = strategy.begin(&one_shot(&clients)).expect("begin");
    let instructions = aggregation.instructions();
    assert_eq!(instructions.statistics.len(), 1);
    assert_eq!(instructions.statistics[0].name(), "gram:layers.0");
    let good = client_update(&clients[0], &instructions);

    let mut wrong_shape = good.clone();
    wrong_shape.statistics.insert(
        "gram:layers.0".into(),
        StatisticTensor::new("gram:layers.0", vec![3], vec![1.0; 3]).expect("tensor"),
    );
    let mut nan = good.clone();
    nan.statistics
        .get_mut("gram:layers.0")
        .expect("gram")
        .data_mut()[2] = f64::NAN;
    let mut unasked = good.clone();
    unasked.statistics.insert(
        "cross:layers.0".into(),
        StatisticTensor::new("cross:layers.0", vec![5, 3], vec![0.0; 15]).expect("tensor"),
    );
    let mut missing = good.clone();
    missing.statistics.clear();
    let mut no_weights = good.clone();
    no_weights.params = None;
    let cases = [
        (
            wrong_shape,
            "statistic `gram:layers.0` has shape [3], expected [15]",
        ),
        (nan, "statistic `gram:layers.0` holds NaN at element 2"),
        (
            unasked,
            "statistic `cross:layers.0` was not requested in exchange 0",
        ),
        (missing, "statistic `gram:layers.0` is missing"),
        (
            no_weights,
            "the update carries no weights, but this exchange asks for them",
        ),
    ];
    for (update, message) in cases {
        let err = aggregation.add(update).expect_err(message);
        assert!(matches!(err, MergeError::BadUpdate(_)));
        assert_eq!(err.to_string(), message);
    }
    assert_eq!(aggregation.count(), 0, "refused updates leave no trace");
    aggregation.add(good).expect("good");
    aggregation
        .add(client_update(&clients[1], &instructions))
        .expect("good");
    assert!(aggregation.advance().expect("advance").is_none());
    let merged = aggregation.finish().expect("finish").merged;
    // The refused updates changed nothing: the same two good updates
    // merged afresh give the same model.
    let fresh = run(
        StrategyKind::Regmean,
        StrategyConfig::DEFAULT_RIDGE,
        &clients,
    );
    assert_eq!(merged, fresh);
}

#[test]
fn a_singular_system_without_ridge_is_a_clear_error() {
    // Inputs that are all zero in one feature excite no direction there.
    let mut clients = clients(&[3, 2], &[20], 5);
    for x in &mut clients[0].data {
        x[1] = 0.0;
    }
    let strategy = strategy(
        StrategyKind::Regmean,
        0.0,
        StrategyConfig::DEFAULT_REGMEAN_ALPHA,
    );
    let mut aggregation = strategy.begin(&one_shot(&clients)).expect("begin");
    let instructions = aggregation.instructions();
    aggregation
        .add(client_update(&clients[0], &instructions))
        .expect("update");
    let err = aggregation.finish().expect_err("singular");
    assert!(
        err.to_string()
            .starts_with("layer `layers.0`: its normal equations are singular"),
        "{err}"
    );
    // The default ridge keeps the unused input's weights at the average.
    let merged = run(
        StrategyKind::Regmean,
        StrategyConfig::DEFAULT_RIDGE,
        &clients,
    );
    let w = merged.get("layers.0.weight").expect("weight");
    let own = clients[0].model.get("layers.0.weight").expect("weight");
    for o in 0..2 {
        assert!((w.data()[o * 3 + 1] - own.data()[o * 3 + 1]).abs() < 1e-4);
    }
}

#[test]
fn offline_merge_of_a_data_aware_strategy_says_what_it_needs() {
    let a = common::random_mlp(&[4, 3], 1);
    for kind in [StrategyKind::Regmean, StrategyKind::Layerwise] {
        let strategy = StrategyConfig::new(kind, SpecSource::InferMlp, device()).build();
        let err = strategy
            .merge(&RoundContext::default(), &[(a.clone(), 1.0)])
            .expect_err("needs statistics");
        assert!(
            matches!(err, MergeError::NeedsStatistics(k) if k == kind),
            "{err}"
        );
    }
}
