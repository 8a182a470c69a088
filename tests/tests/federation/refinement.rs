//! The step after aggregation, over the real protocol: it sees exactly the
//! client models the strategy merged (once each, whatever the exchanges),
//! the server saves what it returns and scores both, and a failing step
//! never loses the round.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fusion_core::{MergeError, ParamSet, Refinement, Refiner, RoundContext};
use fusion_server::{Init, RunSummary, StrategyKind};
use fusion_tests::*;

/// What the test refiner saw.
#[derive(Default)]
struct Seen {
    teachers: Vec<(ParamSet, f64)>,
    merged: Option<ParamSet>,
}

/// Records what it is shown; refines by adding `shift` to every weight,
/// or fails when `fail` is set.
struct Recording {
    seen: Arc<Mutex<Seen>>,
    shift: f32,
    fail: bool,
}

struct RecordingRound {
    seen: Arc<Mutex<Seen>>,
    shift: f32,
    fail: bool,
    count: usize,
}

impl Refiner for Recording {
    fn name(&self) -> &str {
        "recording"
    }

    fn begin(&self, _round: &RoundContext) -> Result<Box<dyn Refinement>, MergeError> {
        Ok(Box::new(RecordingRound {
            seen: self.seen.clone(),
            shift: self.shift,
            fail: self.fail,
            count: 0,
        }))
    }
}

impl Refinement for RecordingRound {
    fn observe(&mut self, model: &ParamSet, weight: f64) -> Result<(), MergeError> {
        self.count += 1;
        let mut seen = self.seen.lock().expect("lock");
        seen.teachers.push((model.clone(), weight));
        Ok(())
    }

    fn observed(&self) -> usize {
        self.count
    }

    fn refine(self: Box<Self>, merged: &ParamSet) -> Result<ParamSet, MergeError> {
        self.seen.lock().expect("lock").merged = Some(merged.clone());
        if self.fail {
            return Err(MergeError::Refinement {
                step: "recording".into(),
                reason: "planted failure".into(),
            });
        }
        let mut out = merged.clone();
        for i in 0..out.len() {
            out.at_mut(i)
                .data_mut()
                .iter_mut()
                .for_each(|v| *v += self.shift);
        }
        Ok(out)
    }
}

/// A one-shot round of `kind` with three clients on different data and
/// the recording refiner.
async fn one_shot(kind: StrategyKind, fail: bool) -> (RunSummary, Arc<Mutex<Seen>>) {
    let dir = scratch(&format!("refine-{kind}-{fail}"));
    let mut config = server_config(dir.join("state"));
    config.rounds = 1;
    config.min_clients = 3;
    config.init = Init::Clients;
    config.strategy = kind;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let refiner = Recording {
        seen: seen.clone(),
        shift: 0.25,
        fail,
    };
    let (train, test) = small_data(600);
    let server = RunningServer::start_with(config, Some(test), Some(Arc::new(refiner)));
    let mut clients = Vec::new();
    for i in 0..3 {
        let shard: Vec<usize> = (i * 200..(i + 1) * 200).collect();
        let cfg = client_config(&server.http_url(), &format!("client-{i}"), i as u64);
        let data = Arc::new(train.subset(&shard));
        clients.push(tokio::spawn(fusion_client::run(cfg, data)));
    }
    for client in clients {
        client.await.expect("task").expect("client finished");
    }
    let summary = server.finished(Duration::from_secs(120)).await;
    (summary, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refiner_sees_the_merged_clients_and_its_model_is_saved() {
    let (summary, seen) = one_shot(StrategyKind::Fedavg, false).await;
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.teachers.len(), 3);
    let merged = seen.merged.as_ref().expect("refine ran");
    // What it was shown is what FedAvg merged: the weighted mean of the
    // observed models is the merge it was handed.
    let total: f64 = seen.teachers.iter().map(|(_, w)| w).sum();
    for (name, tensor) in merged.iter() {
        for (k, &got) in tensor.data().iter().enumerate() {
            let want: f64 = seen
                .teachers
                .iter()
                .map(|(m, w)| w * f64::from(m.get(name).expect("same layout").data()[k]))
                .sum::<f64>()
                / total;
            assert!(
                (f64::from(got) - want).abs() < 1e-5,
                "{name}[{k}]: {got} vs {want}"
            );
        }
    }
    // The saved model is the refined one.
    for (name, tensor) in summary.global.iter() {
        let base = merged.get(name).expect("same layout");
        for (a, b) in tensor.data().iter().zip(base.data()) {
            assert_eq!(*a, b + 0.25, "{name}");
        }
    }
    let record = &summary.records[0];
    let refinement = record.refinement.as_ref().expect("recorded");
    assert_eq!(refinement.step, "recording");
    assert_eq!(refinement.observed, 3);
    assert!(refinement.error.is_none());
    // Both models were scored, and shifting every weight changes the loss.
    let (before, after) = (
        refinement.merged_test_loss.expect("merge scored"),
        record.test_loss.expect("refined scored"),
    );
    assert!((before - after).abs() > 1e-6, "{before} vs {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exchange_of_layerwise_shows_each_client_once() {
    let (summary, seen) = one_shot(StrategyKind::Layerwise, false).await;
    assert_eq!(seen.lock().expect("lock").teachers.len(), 3);
    assert_eq!(
        summary.records[0].refinement.as_ref().map(|r| r.observed),
        Some(3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refinement_saves_the_merge_and_says_why() {
    let (summary, seen) = one_shot(StrategyKind::Fedavg, true).await;
    let merged = seen
        .lock()
        .expect("lock")
        .merged
        .clone()
        .expect("refine ran");
    assert_eq!(summary.global, merged);
    let record = &summary.records[0];
    let refinement = record.refinement.as_ref().expect("recorded");
    let error = refinement.error.as_deref().expect("error recorded");
    assert!(error.contains("planted failure"), "{error}");
    assert_eq!(refinement.merged_test_acc, record.test_acc);
}
