//! `fusion train`, `interpolate` and `experiment split-merge` end to end on
//! the embedded data, with small models so that they run in seconds.

use std::process::Output;

use crate::common::{fusion, s, scratch};

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).expect("stdout is one JSON value")
}

const SMALL: [&str; 6] = [
    "--model",
    "mlp:32x2",
    "--epochs",
    "1",
    "--no-progress",
    "--batch=250",
];

#[test]
fn train_then_interpolate() {
    let dir = scratch("pipeline");
    let (a, b) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
    let mut args = vec![
        "train",
        "--shard",
        "0/2",
        "--split",
        "iid",
        "--seed",
        "1",
        "--json",
        "--out",
        s(&a),
    ];
    args.extend(SMALL);
    let report = json(&fusion(&args));
    assert_eq!(report["examples"], 6000, "{report}");
    assert!(
        report["test_accuracy"].as_f64().expect("accuracy") > 0.3,
        "{report}"
    );
    let mut args = vec!["train", "--seed", "2", "--out", s(&b)];
    args.extend(SMALL);
    let text = ok(&fusion(&args));
    assert!(
        text.contains("12000 examples") && text.contains("test accuracy"),
        "{text}"
    );

    let out_dir = dir.join("interp");
    let text = ok(&fusion(&[
        "interpolate",
        "--a",
        s(&a),
        "--b",
        s(&b),
        "--steps",
        "3",
        "--out",
        s(&out_dir),
    ]));
    for needle in ["naive", "weight", "activation", "loss barrier"] {
        assert!(text.contains(needle), "missing {needle}: {text}");
    }
    for file in [
        "curves.json",
        "curves.csv",
        "interpolation.svg",
        "interpolation.png",
    ] {
        assert!(out_dir.join(file).is_file(), "{file} not written");
    }
    let curves: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("curves.json")).expect("read"))
            .expect("json");
    assert_eq!(curves["curves"].as_array().map(Vec::len), Some(3));

    let only = json(&fusion(&[
        "interpolate",
        "--a",
        s(&a),
        "--b",
        s(&b),
        "--steps",
        "3",
        "--method",
        "weight",
        "--json",
        "--out",
        s(&out_dir),
    ]));
    assert_eq!(only["curves"][0]["method"], "weight");
}

#[test]
fn split_merge_writes_table_results_plot_and_models() {
    let dir = scratch("split-merge");
    let mut args = vec![
        "experiment",
        "split-merge",
        "--split",
        "classes:0-4/5-9",
        "--steps",
        "3",
        "--out",
        s(&dir),
    ];
    args.extend(SMALL);
    let text = ok(&fusion(&args));
    for needle in [
        "model A",
        "naive average",
        "weight-matched merge",
        "activation-matched merge",
        "ensemble",
        "lower test loss than both",
    ] {
        assert!(text.contains(needle), "missing {needle}: {text}");
    }
    for file in [
        "results.json",
        "results.csv",
        "curves.csv",
        "split-merge.svg",
        "split-merge.png",
        "model-a.safetensors",
        "model-b.safetensors",
    ] {
        assert!(dir.join(file).is_file(), "{file} not written");
    }
}

#[test]
fn bad_data_flags_fail_with_one_clear_line() {
    let dir = scratch("errors");
    let out = dir.join("m.safetensors");
    let cases: [(&[&str], &str); 5] = [
        (
            &["train", "--dataset", "imagenet", "--out", s(&out)],
            "expected `embedded`",
        ),
        (
            &[
                "train",
                "--dataset",
                "mnist:/nonexistent/mnist",
                "--out",
                s(&out),
            ],
            "/nonexistent/mnist/train-images-idx3-ubyte",
        ),
        (
            &[
                "train",
                "--split",
                "biased:2",
                "--shard",
                "0/2",
                "--out",
                s(&out),
            ],
            "must be in",
        ),
        (&["train", "--shard", "2/2", "--out", s(&out)], "0 <= i < N"),
        (
            &["train", "--model", "cnn", "--out", s(&out)],
            "expected mlp[:WIDTHxDEPTH], resnet20",
        ),
    ];
    for (args, needle) in cases {
        let result = fusion(args);
        assert!(!result.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&result.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(!out.exists(), "nothing is written when the input is bad");

    // An interpolation between models of different widths names the problem.
    let (a, b) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
    ok(&fusion(&[
        "train",
        "--model",
        "mlp:16",
        "--epochs",
        "1",
        "--no-progress",
        "--out",
        s(&a),
    ]));
    ok(&fusion(&[
        "train",
        "--model",
        "mlp:24",
        "--epochs",
        "1",
        "--no-progress",
        "--out",
        s(&b),
    ]));
    let result = fusion(&[
        "interpolate",
        "--a",
        s(&a),
        "--b",
        s(&b),
        "--steps",
        "3",
        "--out",
        s(&dir),
    ]);
    assert!(!result.status.success());
    let err = String::from_utf8_lossy(&result.stderr);
    assert!(
        err.starts_with("error:") && err.lines().count() == 1,
        "{err}"
    );
}

/// A CIFAR-10 folder in the binary format with `per_batch` random-looking
/// images in each of the six files.
fn write_cifar(dir: &std::path::Path, per_batch: usize) {
    let mut state = 7u32;
    let mut record = |label: u8| {
        let mut r = vec![label];
        r.extend((0..3072).map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        }));
        r
    };
    for name in (1..=5)
        .map(|i| format!("data_batch_{i}.bin"))
        .chain(["test_batch.bin".to_owned()])
    {
        let bytes: Vec<u8> = (0..per_batch)
            .flat_map(|k| record((k % 10) as u8))
            .collect();
        std::fs::write(dir.join(name), bytes).expect("write cifar");
    }
}

#[test]
fn cnns_train_merge_and_interpolate_on_cifar_files() {
    let dir = scratch("cnn-cifar");
    write_cifar(&dir, 8);
    let data = format!("cifar10:{}", dir.display());
    let (a, b) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
    for (seed, out) in [("1", &a), ("2", &b)] {
        let v = json(&fusion(&[
            "train",
            "--dataset",
            &data,
            "--model",
            "resnet20",
            "--epochs",
            "1",
            "--batch",
            "8",
            "--seed",
            seed,
            "--no-progress",
            "--json",
            "--out",
            s(out),
        ]));
        assert_eq!(v["model"], "resnet20x1");
        assert_eq!(v["examples"], 40);
    }
    let model =
        fusion_core::ParamSet::from_safetensors(&std::fs::read(&a).expect("read")).expect("model");
    assert_eq!(
        model.get("conv1.weight").expect("stem").shape(),
        [16, 3, 3, 3]
    );

    // A merge with its BatchNorm statistics measured again differs from
    // the plain merge in the statistics only.
    let merged = |extra: &[&str], out: &std::path::Path| {
        ok(&fusion(
            &[
                &[
                    "merge",
                    "--method",
                    "align",
                    "--spec",
                    "resnet",
                    "--models",
                    s(&a),
                    s(&b),
                ][..],
                extra,
                &["--out", s(out)],
            ]
            .concat(),
        ));
        fusion_core::ParamSet::from_safetensors(&std::fs::read(out).expect("read")).expect("merged")
    };
    let plain = merged(&[], &dir.join("plain.safetensors"));
    let reset = merged(
        &["--reset-bn-batches", "1", "--dataset", &data],
        &dir.join("reset.safetensors"),
    );
    for (name, t) in plain.iter() {
        let same = reset.get(name).expect("same tensors") == t;
        assert_eq!(same, !name.contains("running_"), "{name}");
    }
    let err = fusion(&[
        "merge",
        "--spec",
        "resnet",
        "--models",
        s(&a),
        s(&b),
        "--reset-bn-batches",
        "1",
        "--out",
        s(&dir.join("x.safetensors")),
    ]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("needs --dataset"));

    // Interpolation with every method and REPAIR runs on the CNN.
    let v = json(&fusion(&[
        "interpolate",
        "--a",
        s(&a),
        "--b",
        s(&b),
        "--dataset",
        &data,
        "--steps",
        "3",
        "--repair-batches",
        "1",
        "--json",
        "--out",
        s(&dir.join("interp")),
    ]));
    assert_eq!(v["correction"]["kind"], "repair");
    assert_eq!(v["curves"].as_array().expect("curves").len(), 3);
    let plain = json(&fusion(&[
        "interpolate",
        "--a",
        s(&a),
        "--b",
        s(&b),
        "--dataset",
        &data,
        "--steps",
        "3",
        "--method",
        "weight",
        "--json",
        "--out",
        s(&dir.join("interp-plain")),
    ]));
    let midpoint = |v: &serde_json::Value, i: usize| {
        v["curves"][i]["midpoint"]["loss"]
            .as_f64()
            .expect("finite midpoint loss")
    };
    // curves[1] is weight matching in the REPAIR run (naive, weight, activation).
    assert_ne!(
        midpoint(&v, 1),
        midpoint(&plain, 0),
        "REPAIR changed nothing"
    );
}

#[test]
fn split_merge_trains_and_merges_a_resnet_with_its_statistics_measured_again() {
    let dir = scratch("split-merge-cnn");
    write_cifar(&dir, 8);
    let data = format!("cifar10:{}", dir.display());
    let out = dir.join("out");
    let args = |extra: &[&str]| {
        let mut args = vec![
            "experiment",
            "split-merge",
            "--dataset",
            &data,
            "--split",
            "iid",
            "--model",
            "resnet20",
            "--epochs",
            "1",
            "--batch",
            "8",
            "--steps",
            "3",
            "--no-progress",
            "--out",
            s(&out),
        ];
        args.extend_from_slice(extra);
        args.iter()
            .map(|a| (*a).to_owned())
            .collect::<Vec<String>>()
    };
    let v = json(&fusion(
        &args(&["--reset-bn-batches", "1", "--json"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ));
    assert_eq!(v["model"], "resnet20x1");
    assert_eq!(v["interpolation"]["correction"]["kind"], "reset_batch_norm");
    let rows: Vec<&str> = v["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        rows,
        [
            "model A",
            "model B",
            "naive average",
            "weight-matched merge",
            "activation-matched merge",
            "ensemble of A and B"
        ]
    );
    let model = fusion_core::ParamSet::from_safetensors(
        &std::fs::read(out.join("model-a.safetensors")).expect("a"),
    )
    .expect("model");
    assert!(model.get("layer3.0.shortcut.1.running_var").is_some());
    let both = fusion(
        &args(&["--reset-bn-batches", "1", "--repair-batches", "1"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(!both.status.success());
    assert!(
        String::from_utf8_lossy(&both.stderr).contains("--repair-batches"),
        "{}",
        String::from_utf8_lossy(&both.stderr)
    );
}
