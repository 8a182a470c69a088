//! A quick end-to-end run on a slice of the embedded data: two models
//! trained apart, interpolated with and without alignment.

use burn::tensor::Device;
use fusion_data::{DataSource, Split, TrainTest};
use fusion_experiments::{
    Correction, Method, SplitMergeConfig, interpolate, interpolation_csv, interpolation_figure,
    interpolation_table, lambdas, lerp, split_merge, split_merge_table,
};
use fusion_models::{Architecture, Mlp, MlpArchitecture};
use fusion_train::{TrainConfig, train};

fn device() -> Device {
    Device::flex()
}

fn slice() -> TrainTest {
    let data = DataSource::Embedded.load().expect("embedded data");
    TrainTest {
        name: "embedded slice".into(),
        train: data.train.head(3000),
        test: data.test.head(1000),
    }
}

fn config(seed: u64) -> TrainConfig {
    TrainConfig {
        epochs: 3,
        batch: 100,
        seed,
        progress: false,
        ..TrainConfig::default()
    }
}

#[test]
fn weight_matching_lowers_the_barrier_between_independent_models() {
    let data = slice();
    let widths = [784, 128, 128, 10];
    let (a, _) = train(
        Mlp::init(&widths, 1, &device()),
        &data.train,
        &config(1),
        &device(),
    )
    .expect("train A");
    let (b, _) = train(
        Mlp::init(&widths, 2, &device()),
        &data.train,
        &config(2),
        &device(),
    )
    .expect("train B");
    let result = interpolate(
        &a.to_params(),
        &b.to_params(),
        &data,
        &[Method::Naive, Method::Weight, Method::Activation],
        5,
        &device(),
        0,
        fusion_experiments::Correction::None,
    )
    .expect("interpolate");
    let barrier = |m: Method| {
        result
            .curves
            .iter()
            .find(|c| c.method == m)
            .expect("curve")
            .barrier
    };
    let (naive, weight, activation) = (
        barrier(Method::Naive),
        barrier(Method::Weight),
        barrier(Method::Activation),
    );
    assert!(
        naive > 0.05,
        "independent models should have a real naive barrier, got {naive}"
    );
    assert!(
        weight < naive,
        "weight-matched barrier {weight} must be below naive {naive}"
    );
    assert!(
        activation < naive,
        "activation-matched barrier {activation} must be below naive {naive}"
    );
    // Curves start at A and end at B (aligned B computes the same function).
    for c in &result.curves {
        assert_eq!(c.lambdas, lambdas(5));
        assert_eq!(c.test[0], result.a);
        assert_eq!(c.test[4], result.b);
        assert_eq!(c.midpoint, c.test[2]);
        assert!(c.best_lambda > 0.0 && c.best_lambda < 1.0 && c.best.loss <= c.midpoint.loss);
        assert!(c.barrier >= 0.0);
    }
    let naive_curve = &result.curves[0];
    assert_eq!(naive_curve.moved, 0.0);
    assert!(
        result.curves[1].moved > 0.5,
        "independent inits: most units should move"
    );
    let table = interpolation_table(&result);
    assert!(
        table.contains("weight") && table.contains("loss barrier"),
        "{table}"
    );
    assert_eq!(interpolation_csv(&result).lines().count(), 1 + 3 * 5);
}

#[test]
fn lerp_is_exact_at_the_ends_and_linear_between() {
    let a = Mlp::init(&[6, 4, 2], 1, &device()).to_params();
    let b = Mlp::init(&[6, 4, 2], 2, &device()).to_params();
    assert_eq!(lerp(&a, &b, 0.0).expect("lerp"), a);
    assert_eq!(lerp(&a, &b, 1.0).expect("lerp"), b);
    let mid = lerp(&a, &b, 0.5).expect("lerp");
    let (x, y, m) = (a.at(0).data()[3], b.at(0).data()[3], mid.at(0).data()[3]);
    assert!((m - (x + y) / 2.0).abs() < 1e-7);
    let other = Mlp::init(&[6, 5, 2], 2, &device()).to_params();
    assert!(
        lerp(&a, &other, 0.5).is_err(),
        "different layouts cannot be interpolated"
    );
}

#[test]
fn split_merge_reports_every_row_and_writes_a_figure() {
    let data = slice();
    let run = SplitMergeConfig {
        split: Split::Biased(0.8),
        arch: Architecture::Mlp(MlpArchitecture {
            hidden: vec![64, 64],
        }),
        train: config(0),
        steps: 3,
        split_seed: 0,
        correction: Correction::None,
    };
    let report = split_merge(&data, &run, &device()).expect("split-merge");
    let names: Vec<&str> = report.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "model A",
            "model B",
            "naive average",
            "weight-matched merge",
            "activation-matched merge",
            "ensemble of A and B"
        ]
    );
    assert_eq!(report.shard_sizes.iter().sum::<usize>(), 3000);
    let weight = report.rows[3].test.loss;
    assert_eq!(
        report.merged_beats_both,
        weight < report.rows[0].test.loss && weight < report.rows[1].test.loss
    );
    assert!(split_merge_table(&report).contains("lower test loss than both A and B"));

    let dir = std::env::temp_dir().join(format!("fusion-exp-figure-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let paths = interpolation_figure(&report.interpolation, "test")
        .write(&dir, "fig")
        .expect("figure");
    let svg = std::fs::read_to_string(&paths[0]).expect("svg");
    assert!(
        svg.contains("<svg") && svg.contains("weight matching"),
        "SVG has the legend"
    );
    let png = std::fs::read(&paths[1]).expect("png");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000,
        "a real PNG image"
    );
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["rows"].as_array().map(Vec::len), Some(6));
}

#[test]
fn method_lists_parse_and_bad_names_are_named() {
    assert_eq!(
        Method::parse_list("naive, weight").expect("list"),
        [Method::Naive, Method::Weight]
    );
    assert_eq!(
        Method::parse_list("naive,ste").expect("STE is opt-in, by name"),
        [Method::Naive, Method::Ste]
    );
    assert!(
        !Method::ALL.contains(&Method::Ste),
        "STE is never run unasked"
    );
    let err = Method::parse_list("naive,gradient").expect_err("unknown");
    assert!(err.to_string().contains("`gradient`"), "{err}");
    assert!(Method::parse_list("").is_err());
}
