//! REPAIR through the Strategy's exchanges, with the statistics a built-in
//! client computes: what a federation runs, without the network.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::tensor::Device;
use fusion_core::{
    ParamSet, Repair, RepairMode, RoundContext, SpecSource, StatisticTensor, Strategy, Update,
    WeightedAverage, norm_layers,
};
use fusion_data::{DataSource, Dataset};
use fusion_models::{Architecture, Network};
use fusion_train::requested_statistics;

fn device() -> Device {
    Device::flex()
}

const BATCH: usize = 48;

/// Per norm: each channel's mean and variance over both shards pooled,
/// from each shard's `[mean; variance]` (equal shards).
fn pooled(per_client: &[BTreeMap<String, StatisticTensor>]) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut out = BTreeMap::new();
    for name in per_client[0].keys() {
        let channels = per_client[0][name].shape()[1];
        let k = per_client.len() as f64;
        let moments = (0..channels)
            .map(|c| {
                let (mut mean, mut square) = (0.0, 0.0);
                for stats in per_client {
                    let v = stats[name].data();
                    mean += v[c] / k;
                    square += (v[channels + c] + v[c] * v[c]) / k;
                }
                (mean, square - mean * mean)
            })
            .collect();
        out.insert(name.clone(), moments);
    }
    out
}

/// The worst relative error of `got`'s standard deviations and means
/// against `want`'s.
fn worst(got: &BTreeMap<String, Vec<(f64, f64)>>, want: &BTreeMap<String, Vec<(f64, f64)>>) -> f64 {
    let mut worst = 0.0f64;
    for (name, channels) in want {
        for ((gm, gv), (wm, wv)) in got[name].iter().zip(channels) {
            let (gs, ws) = (gv.sqrt(), wv.sqrt());
            worst = worst
                .max((gs - ws).abs() / (1.0 + ws))
                .max((gm - wm).abs() / (1.0 + wm.abs()));
        }
    }
    worst
}

#[test]
fn federated_repair_gives_the_merge_its_clients_pooled_moments() {
    let data = DataSource::Embedded.load().expect("embedded data");
    let shards: Vec<Dataset> = vec![
        data.train.subset(&(0..96).collect::<Vec<_>>()),
        data.train.subset(&(96..192).collect::<Vec<_>>()),
    ];
    for arch in ["vgg11:4-ln", "resnet20-ln"] {
        let arch: Architecture = arch.parse().expect("arch");
        let models: Vec<ParamSet> = [1, 2]
            .iter()
            .map(|&seed| Network::init(&arch, shards[0].shape(), 10, seed, &device()).to_params())
            .collect();
        // The server's norms are the network's, by name and order.
        let norms = norm_layers(&models[0]);
        let net = Network::from_params(&models[0], &device()).expect("net");
        assert_eq!(
            norms.iter().map(|r| r.layer.clone()).collect::<Vec<_>>(),
            net.norm_names(),
            "{arch}"
        );
        // Sequential: one exchange per norm, and every norm must land.
        let strategy = Repair {
            inner: Arc::new(WeightedAverage),
            spec: SpecSource::InferAny,
            mode: RepairMode::Sequential,
        };
        let round = RoundContext {
            global: Some(Arc::new(models[0].clone())),
            from_own_init: true,
        };
        let mut aggregation = strategy.begin(&round).expect("begin");
        let names: Vec<String> = aggregation
            .instructions()
            .statistics
            .iter()
            .map(|r| r.name())
            .collect();
        assert_eq!(names.len(), norms.len());
        let mut own = Vec::new();
        for (model, shard) in models.iter().zip(&shards) {
            let statistics =
                requested_statistics(model, None, &names, shard, BATCH, &device()).expect("own");
            own.push(statistics.clone());
            aggregation
                .add(Update {
                    client: None,
                    params: Some(model.clone()),
                    weight: shard.len() as f64,
                    statistics,
                })
                .expect("exchange 0");
        }
        let target = pooled(&own);
        let measure = |model: &ParamSet| {
            let per_client: Vec<_> = shards
                .iter()
                .map(|shard| {
                    requested_statistics(model, Some(model), &names, shard, BATCH, &device())
                        .expect("measure")
                })
                .collect();
            pooled(&per_client)
        };
        let mut passes = 0;
        let mut before = None;
        while let Some(next) = aggregation.advance().expect("advance") {
            let model = next.model.expect("each pass sends the model");
            if before.is_none() {
                before = Some(worst(&measure(&model), &target));
            }
            passes += 1;
            let asked: Vec<String> = next.statistics.iter().map(|r| r.name()).collect();
            assert_eq!(
                asked,
                [names[passes - 1].clone()],
                "{arch}: one norm per exchange"
            );
            for shard in &shards {
                let statistics =
                    requested_statistics(&model, Some(&model), &asked, shard, BATCH, &device())
                        .expect("pass");
                aggregation
                    .add(Update {
                        client: None,
                        params: None,
                        weight: shard.len() as f64,
                        statistics,
                    })
                    .expect("pass update");
            }
        }
        assert_eq!(passes, norms.len(), "{arch}");
        let merged = aggregation.finish().expect("finish").merged;
        let before = before.expect("a pass");
        let after = worst(&measure(&merged), &target);
        // Averaging shrinks the merge's channels well off target, so the
        // check can fail; after REPAIR every norm is on it.
        assert!(before > 0.05, "{arch}: merge already on target ({before})");
        assert!(after < 2e-3, "{arch}: {after} off target after REPAIR");
    }
}
