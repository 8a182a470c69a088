//! `fusion-sim simulate` (what `fusion simulate` runs): the real server
//! and clients in one process, strategies compared per round, one-shot
//! fusion, distillation on a proxy holdout, splits from a file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh directory for one test, unique to this process.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fusion-sim-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Runs the `fusion-sim` binary with warnings-only logging.
fn fusion(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fusion-sim"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run fusion-sim")
}

/// A path as a command-line argument.
fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn simulate(dir: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "simulate",
        "--dataset",
        "embedded",
        "--limit",
        "1500",
        "--model",
        "mlp:32",
        "--batch",
        "50",
        "--lr",
        "0.005",
        "--json",
        "--out",
        s(dir),
    ];
    if !extra.contains(&"--split-file") {
        args.extend_from_slice(&["--split", "iid"]);
    }
    args.extend_from_slice(extra);
    let o = fusion(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("one JSON object")
}

#[test]
fn simulate_rounds_compare_strategies_and_write_outputs() {
    let dir = scratch("simulate");
    let v = simulate(
        &dir,
        &[
            "--clients",
            "3",
            "--rounds",
            "2",
            "--strategy",
            "fedavg,align",
        ],
    );
    let runs = v["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    for run in runs {
        let rounds = run["rounds"].as_array().expect("rounds");
        assert_eq!(rounds.len(), 2, "{run}");
        let acc = rounds[1]["test_acc"].as_f64().expect("accuracy");
        assert!(acc > 0.5, "{} round 2 accuracy {acc}", run["strategy"]);
    }
    // Clients started each round from the global model: align is FedAvg.
    let moved = runs[1]["rounds"][0]["moved_fraction"]
        .as_f64()
        .expect("moved");
    assert!(moved < 0.1, "align moved {moved} units from a common start");
    for f in ["results.json", "rounds.csv", "simulate.svg", "simulate.png"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
}

#[test]
fn one_shot_fusion_moves_units_and_aligned_beats_plain_average() {
    let dir = scratch("one-shot");
    let v = simulate(
        &dir,
        &[
            "--clients",
            "2",
            "--one-shot",
            "--local-epochs",
            "2",
            "--strategy",
            "fedavg,align",
        ],
    );
    assert_eq!(v["mode"], "one-shot");
    let runs = v["runs"].as_array().expect("runs");
    let acc = |i: usize| runs[i]["rounds"][0]["test_acc"].as_f64().expect("acc");
    // The first update is the reference (there is no global model yet);
    // the other, from another initialisation, has nearly every unit moved.
    let updates = runs[1]["rounds"][0]["updates"].as_array().expect("updates");
    let moved: Vec<f64> = updates
        .iter()
        .flat_map(|u| u["moved"].as_object().expect("per layer").values())
        .map(|v| v.as_f64().expect("fraction"))
        .collect();
    assert!(
        moved.iter().any(|&m| m > 0.8),
        "models from different inits need alignment: moved {moved:?}"
    );
    assert!(acc(1) > acc(0), "align {} vs fedavg {}", acc(1), acc(0));
}

#[test]
fn one_shot_distillation_on_a_proxy_holdout_lifts_the_plain_average() {
    let dir = scratch("distill");
    let v = simulate(
        &dir,
        &[
            "--clients",
            "2",
            "--one-shot",
            "--local-epochs",
            "2",
            "--strategy",
            "fedavg",
            "--proxy-holdout",
            "300",
            "--distill-data",
            "holdout",
            "--distill-epochs",
            "10",
            "--distill-lr",
            "0.001",
        ],
    );
    assert_eq!(v["proxy_holdout"], 300);
    assert_eq!(v["distill"]["images"], 300);
    let sizes: u64 = v["shard_sizes"]
        .as_array()
        .expect("sizes")
        .iter()
        .map(|s| s.as_u64().expect("size"))
        .sum();
    assert_eq!(sizes, 1200, "the holdout is taken from the clients' data");
    let round = &v["runs"][0]["rounds"][0];
    let refinement = &round["refinement"];
    assert_eq!(refinement["step"], "distill");
    assert_eq!(refinement["observed"], 2);
    let merged = refinement["merged_test_acc"]
        .as_f64()
        .expect("merge scored");
    let distilled = round["test_acc"].as_f64().expect("distilled scored");
    // Two models from different initialisations average badly; 300
    // unlabeled images and their ensemble's answers repair much of it.
    assert!(
        distilled > merged + 0.1,
        "distilled {distilled} vs plain average {merged}"
    );
}

#[test]
fn simulate_deals_shards_from_a_split_file_and_checks_it() {
    let dir = scratch("split-file");
    let file = dir.join("split.json");
    let shards: Vec<Vec<usize>> = vec![(0..500).collect(), (500..800).collect()];
    std::fs::write(&file, serde_json::to_string(&shards).expect("json")).expect("write");
    let v = simulate(
        &dir,
        &[
            "--one-shot",
            "--local-epochs",
            "1",
            "--strategy",
            "fedavg",
            "--split-file",
            s(&file),
        ],
    );
    assert_eq!(v["clients"], 2);
    assert_eq!(v["shard_sizes"], serde_json::json!([500, 300]));
    assert_eq!(v["split"], format!("file:{}", file.display()));

    std::fs::write(&file, "[[0, 1, 2], [2, 3]]").expect("write");
    let o = fusion(&[
        "simulate",
        "--dataset",
        "embedded",
        "--limit",
        "1500",
        "--split-file",
        s(&file),
        "--out",
        s(&dir),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("example 2 is dealt twice: to shard 0 and to shard 1"),
        "{err}"
    );
    std::fs::write(&file, "[[0, 1], [2]]").expect("write");
    let o = fusion(&[
        "simulate",
        "--dataset",
        "embedded",
        "--limit",
        "1500",
        "--split-file",
        s(&file),
        "--clients",
        "3",
        "--out",
        s(&dir),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--clients 3 but"), "{err}");
}

#[test]
fn a_resnet_federation_runs_with_its_built_in_spec() {
    // The server builds the ResNet's first weights (--model resnet20), the
    // clients train it, and align uses the resnet spec: from the shared
    // global model it moves next to nothing, as with the MLP.
    let dir = scratch("simulate-resnet");
    let o = fusion(&[
        "simulate",
        "--dataset",
        "embedded",
        "--limit",
        "800",
        "--model",
        "resnet20",
        "--batch",
        "50",
        "--lr",
        "0.003",
        "--split",
        "iid",
        "--clients",
        "2",
        "--rounds",
        "2",
        "--strategy",
        "fedavg,align",
        "--json",
        "--out",
        s(&dir),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    let runs = v["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    for run in runs {
        let rounds = run["rounds"].as_array().expect("rounds");
        assert_eq!(rounds.len(), 2, "{run}");
        let acc = rounds[1]["test_acc"].as_f64().expect("accuracy");
        assert!(acc > 0.3, "{} round 2 accuracy {acc}", run["strategy"]);
    }
    let moved = runs[1]["rounds"][0]["moved_fraction"]
        .as_f64()
        .expect("moved");
    assert!(
        moved < 0.1,
        "align moved {moved} of the units from a common start"
    );
    let global = fusion_core::ParamSet::from_safetensors(
        &std::fs::read(dir.join("state-align/global.safetensors")).expect("checkpoint"),
    )
    .expect("global model");
    assert!(global.get("layer3.0.shortcut.0.weight").is_some());
}

#[test]
fn federated_repair_of_a_layer_norm_vgg_rescales_its_norms_and_nothing_else() {
    // The same one-shot federation twice (same seeds: the same client
    // models; fedavg of two is exact whatever order they arrive in),
    // without and with sequential REPAIR over gRPC: REPAIR's exchanges
    // must change every norm's weight and bias, and no other tensor.
    let global = |repair: &str| {
        let dir = scratch(&format!("simulate-repair-{repair}"));
        let o = fusion(&[
            "simulate",
            "--dataset",
            "embedded",
            "--limit",
            "600",
            "--model",
            "vgg11-ln:4",
            "--batch",
            "50",
            "--lr",
            "0.003",
            "--split",
            "iid",
            "--clients",
            "2",
            "--one-shot",
            "--local-epochs",
            "1",
            "--strategy",
            "fedavg",
            "--repair",
            repair,
            "--json",
            "--out",
            s(&dir),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
        assert_eq!(v["runs"][0]["rounds"][0]["attempts"], 1, "{v}");
        fusion_core::ParamSet::from_safetensors(
            &std::fs::read(dir.join("state-fedavg/global.safetensors")).expect("checkpoint"),
        )
        .expect("global model")
    };
    let (plain, repaired) = (global("off"), global("sequential"));
    let norms: Vec<String> = fusion_core::norm_layers(&plain)
        .into_iter()
        .map(|r| r.layer)
        .collect();
    assert_eq!(norms.len(), 8, "{norms:?}");
    for (name, tensor) in plain.iter() {
        let other = repaired.get(name).expect("same layout");
        let in_norm = norms
            .iter()
            .any(|n| *name == format!("{n}.weight") || *name == format!("{n}.bias"));
        if in_norm {
            assert_ne!(tensor, other, "REPAIR left `{name}` as merged");
        } else {
            assert_eq!(
                tensor, other,
                "REPAIR changed `{name}`, which is not a norm's"
            );
        }
    }
}
