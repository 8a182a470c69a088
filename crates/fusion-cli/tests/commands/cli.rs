//! The `fusion` binary end to end: outputs, JSON, and one-line errors.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{fusion, s, scratch};

use fusion_core::{ParamSet, infer_mlp_spec, synthetic};

fn write(path: &Path, set: &ParamSet) {
    std::fs::write(path, set.to_safetensors().expect("encode")).expect("write");
}

/// A and B = A with hidden units permuted.
fn planted_pair(dir: &Path) -> (PathBuf, PathBuf, ParamSet) {
    planted_mlp_pair(dir, &[12, 10, 8, 3], 5)
}

/// An MLP A of `widths` drawn from `seed`, and B = A with hidden units
/// permuted, written to `dir`.
fn planted_mlp_pair(dir: &Path, widths: &[usize], seed: u64) -> (PathBuf, PathBuf, ParamSet) {
    let a = synthetic::random_mlp(widths, seed);
    let spec = infer_mlp_spec(&a)
        .expect("mlp")
        .validate(&a)
        .expect("valid");
    let b = spec
        .apply(&a, &synthetic::random_permutations(spec.sizes(), seed + 1))
        .expect("apply");
    let (pa, pb) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
    write(&pa, &a);
    write(&pb, &b);
    (pa, pb, a)
}

fn stderr_line(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(text.lines().count(), 1, "expected one line, got: {text}");
    assert!(!text.contains("panicked"), "{text}");
    text
}

#[test]
fn align_writes_a_and_prints_json() {
    let dir = scratch("align");
    let (pa, pb, a) = planted_pair(&dir);
    let out_path = dir.join("out.safetensors");
    let out = fusion(&[
        "align",
        "--a",
        s(&pa),
        "--b",
        s(&pb),
        "--out",
        s(&out_path),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert!(v["sweeps"].as_u64().expect("sweeps") >= 1);
    assert!(v["seconds"].as_f64().expect("seconds") >= 0.0);
    assert_eq!(
        v["objective"].as_array().expect("objective").len() as u64,
        v["sweeps"].as_u64().expect("sweeps")
    );
    assert_eq!(v["permutations"]["P_0"].as_array().expect("P_0").len(), 10);
    assert_eq!(v["permutations"]["P_1"].as_array().expect("P_1").len(), 8);
    let aligned =
        ParamSet::from_safetensors(&std::fs::read(&out_path).expect("read")).expect("parse");
    assert_eq!(aligned, a);
}

#[test]
fn merge_weights_by_recorded_examples_or_warns() {
    let dir = scratch("merge-weights");
    let a = synthetic::random_mlp(&[6, 4, 2], 1);
    let b = synthetic::random_mlp(&[6, 4, 2], 2);
    let counted = |set: &ParamSet, path: &Path, examples: &str| {
        let metadata =
            std::collections::HashMap::from([("fusion.examples".to_owned(), examples.to_owned())]);
        let bytes = set
            .to_safetensors_with_metadata(Some(metadata))
            .expect("encode");
        std::fs::write(path, bytes).expect("write");
    };
    let (pa, pb) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
    counted(&a, &pa, "1");
    counted(&b, &pb, "3");
    let out_path = dir.join("m.safetensors");
    let merge = |models: [&Path; 2]| {
        fusion(&[
            "merge",
            "--method",
            "average",
            "--models",
            s(models[0]),
            s(models[1]),
            "--out",
            s(&out_path),
            "--json",
        ])
    };
    let out = merge([&pa, &pb]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty(), "no warning when counts are recorded");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["method"], "fedavg");
    assert_eq!(v["weighted_by"], "examples recorded in the files");
    let merged =
        ParamSet::from_safetensors(&std::fs::read(&out_path).expect("read")).expect("parse");
    for (name, t) in merged.iter() {
        let (x, y) = (a.get(name).expect("a"), b.get(name).expect("b"));
        for ((m, x), y) in t.data().iter().zip(x.data()).zip(y.data()) {
            assert!((m - (x + 3.0 * y) / 4.0).abs() < 1e-6, "{name}");
        }
    }
    // Without counts: equal weights, and a warning that says so.
    let bare = dir.join("bare.safetensors");
    write(&bare, &b);
    let out = merge([&pa, &bare]);
    assert!(out.status.success());
    let warning = String::from_utf8_lossy(&out.stderr);
    assert!(
        warning.starts_with("warning:") && warning.contains("bare.safetensors"),
        "{warning}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["weighted_by"], "equal (no counts given)");
    // Data-aware strategies cannot run on files alone: one clear line.
    let out = fusion(&[
        "merge",
        "--method",
        "regmean",
        "--models",
        s(&pa),
        s(&pb),
        "--out",
        s(&out_path),
    ]);
    assert!(!out.status.success());
    let line = stderr_line(&out);
    assert!(
        line.contains("needs statistics computed on each client's data"),
        "{line}"
    );
}

#[test]
fn merge_methods_run_and_report() {
    let dir = scratch("merge");
    let (pa, pb, a) = planted_pair(&dir);
    for method in ["average", "align", "merge-many"] {
        let out_path = dir.join(format!("{method}.safetensors"));
        let out = fusion(&[
            "merge",
            "--method",
            method,
            "--models",
            s(&pa),
            s(&pb),
            "--weights",
            "1,3",
            "--out",
            s(&out_path),
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{method}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(v["models"].as_array().expect("models").len(), 2);
        let merged =
            ParamSet::from_safetensors(&std::fs::read(&out_path).expect("read")).expect("parse");
        if method == "align" {
            // B is a pure permutation of A: the aligned merge is A again.
            for (name, t) in merged.iter() {
                let want = a.get(name).expect("tensor");
                for (x, y) in t.data().iter().zip(want.data()) {
                    assert!((x - y).abs() < 1e-6);
                }
            }
        }
    }
}

#[test]
fn bad_inputs_give_one_clear_line() {
    let dir = scratch("errors");
    let (pa, pb, _) = planted_pair(&dir);
    let out_path = dir.join("out.safetensors");

    let missing = dir.join("nope.safetensors");
    let out = fusion(&[
        "align",
        "--a",
        s(&pa),
        "--b",
        s(&missing),
        "--out",
        s(&out_path),
    ]);
    assert!(!out.status.success());
    let line = stderr_line(&out);
    assert!(
        line.contains("cannot read model") && line.contains("nope.safetensors"),
        "{line}"
    );

    // A mistyped output directory is an error, not a new tree.
    let stray = dir.join("no-such-dir").join("sub").join("out.safetensors");
    let out = fusion(&["align", "--a", s(&pa), "--b", s(&pb), "--out", s(&stray)]);
    assert!(!out.status.success());
    let line = stderr_line(&out);
    assert!(line.contains("does not exist"), "{line}");
    assert!(!dir.join("no-such-dir").exists(), "no directory was made");

    let corrupt = dir.join("corrupt.safetensors");
    std::fs::write(&corrupt, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":").expect("write");
    let out = fusion(&[
        "align",
        "--a",
        s(&pa),
        "--b",
        s(&corrupt),
        "--out",
        s(&out_path),
    ]);
    let line = stderr_line(&out);
    assert!(
        line.contains("corrupt.safetensors") && line.contains("not a valid safetensors file"),
        "{line}"
    );

    let spec = dir.join("spec.toml");
    std::fs::write(&spec, "[permutations]\nP = [\"layers.0.weight:5\"]\n").expect("write");
    let out = fusion(&[
        "align",
        "--a",
        s(&pa),
        "--b",
        s(&pb),
        "--spec",
        s(&spec),
        "--out",
        s(&out_path),
    ]);
    let line = stderr_line(&out);
    assert!(
        line.contains("tensor 'layers.0.weight' has 2 axes, so axis 5 does not exist"),
        "{line}"
    );

    let other = dir.join("other.safetensors");
    write(&other, &synthetic::random_mlp(&[12, 9, 8, 3], 1));
    let out = fusion(&[
        "merge",
        "--models",
        s(&pa),
        s(&other),
        "--out",
        s(&out_path),
    ]);
    let line = stderr_line(&out);
    assert!(
        line.contains("other.safetensors")
            && line.contains("has shape [10] in model 0 but [9] in model 1"),
        "{line}"
    );

    let out = fusion(&[
        "merge",
        "--models",
        s(&pa),
        s(&pb),
        "--weights",
        "1,2,3",
        "--out",
        s(&out_path),
    ]);
    let line = stderr_line(&out);
    assert!(
        line.contains("--weights has 3 values but 2 models were given"),
        "{line}"
    );

    assert!(!out_path.exists(), "no output may be written on error");
}

#[test]
fn inspect_prints_the_inferred_spec() {
    let dir = scratch("inspect");
    let (pa, _, _) = planted_pair(&dir);
    let out = fusion(&["inspect", s(&pa)]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("layers.0.weight  F32"), "{text}");
    assert!(
        text.contains("P_1 = [\"layers.1.weight:0\", \"layers.1.bias:0\", \"layers.2.weight:1\"]"),
        "{text}"
    );

    // A server checkpoint says which round and run it is.
    let model = ParamSet::from_safetensors(&std::fs::read(&pa).expect("read")).expect("model");
    let metadata = std::collections::HashMap::from([
        ("fusion.round".to_owned(), "3".to_owned()),
        ("fusion.run_id".to_owned(), "run\nforged".to_owned()),
    ]);
    let checkpoint = dir.join("global.safetensors");
    std::fs::write(
        &checkpoint,
        model
            .to_safetensors_with_metadata(Some(metadata))
            .expect("encode"),
    )
    .expect("write");
    let out = fusion(&["inspect", s(&checkpoint)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("fusion.round = 3") && text.contains("fusion.run_id = run\\nforged"),
        "{text}"
    );
}

#[test]
fn align_refuses_a_spec_on_a_wrong_axis_of_the_same_size() {
    // Two hidden layers of 8: a spec that puts P_0 on the rows of the
    // middle weight and P_1 on its columns validates (every size fits) but
    // breaks the function. fusion align must notice and write nothing.
    let dir = scratch("align-wrong-axis");
    let (pa, pb, _) = planted_mlp_pair(&dir, &[12, 8, 8, 3], 15);
    let wrong = dir.join("wrong.toml");
    std::fs::write(
        &wrong,
        "[permutations]\n\
         P_0 = [\"layers.0.weight:0\", \"layers.0.bias:0\", \"layers.1.weight:0\"]\n\
         P_1 = [\"layers.1.weight:1\", \"layers.1.bias:0\", \"layers.2.weight:1\"]\n",
    )
    .expect("spec");
    let out_path = dir.join("out.safetensors");
    let args = ["align", "--a", s(&pa), "--b", s(&pb), "--out", s(&out_path)];
    let out = fusion(&[&args[..], &["--spec", s(&wrong)]].concat());
    assert!(!out.status.success());
    let line = stderr_line(&out);
    assert!(
        line.contains("does not keep the model's function"),
        "{line}"
    );
    assert!(!out_path.exists(), "a wrong spec must not write a model");

    // The right spec passes the same check and says so.
    let out = fusion(&[&args[..], &["--json"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let d = v["function_check"]["relative_difference"]
        .as_f64()
        .expect("checked");
    assert!(d < 1e-5, "{d}");
}

#[test]
fn align_and_inspect_know_resnet_and_vgg() {
    use fusion_models::{Architecture, Network};
    let dir = scratch("align-cnn");
    let device = fusion_core::ComputeBackend::Flex.device().expect("flex");
    for (arch, spec) in [("resnet20", "resnet20"), ("vgg11:4", "vgg")] {
        let arch: Architecture = arch.parse().expect("arch");
        let (pa, pb) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
        for (seed, path) in [(1, &pa), (2, &pb)] {
            write(
                path,
                &Network::init(&arch, [1, 28, 28], 10, seed, &device).to_params(),
            );
        }
        let out_path = dir.join("out.safetensors");
        let out = fusion(&[
            "align",
            "--a",
            s(&pa),
            "--b",
            s(&pb),
            "--out",
            s(&out_path),
            "--spec",
            spec,
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{spec}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert!(
            v["function_check"]["relative_difference"]
                .as_f64()
                .expect("checked")
                < 1e-5,
            "{v}"
        );
        let moved: u64 = v["moved"]
            .as_array()
            .expect("moved")
            .iter()
            .map(|m| m["moved"].as_u64().expect("count"))
            .sum();
        assert!(moved > 0, "two seeds should need some permuting: {v}");

        let out = fusion(&["inspect", s(&pa)]);
        let text = String::from_utf8_lossy(&out.stdout);
        let family = if spec == "vgg" { "vgg" } else { "resnet" };
        assert!(text.contains(&format!("layout: {family}")), "{text}");
        // The other family's spec is refused with the reason.
        let other = if family == "vgg" { "resnet" } else { "vgg" };
        let out = fusion(&[
            "align",
            "--a",
            s(&pa),
            "--b",
            s(&pb),
            "--out",
            s(&out_path),
            "--spec",
            other,
        ]);
        assert!(!out.status.success());
        assert!(stderr_line(&out).contains(&format!("cannot infer a {other} spec")));
    }
}

#[test]
fn align_checks_outputs_of_sequential_mlps_and_resnets_too() {
    use fusion_models::{Architecture, Network};
    let dir = scratch("align-wrong-axis-more");
    let out_path = dir.join("out.safetensors");
    let align = |a: &Path, b: &Path, spec: &Path| {
        fusion(&[
            "align",
            "--a",
            s(a),
            "--b",
            s(b),
            "--out",
            s(&out_path),
            "--spec",
            s(spec),
        ])
    };

    // An nn.Sequential MLP (0, 2, 4), which --spec mlp infers, with P_0
    // and P_1 swapped on the middle weight's axes.
    let (pa, pb, a) = planted_mlp_pair(&dir, &[12, 8, 8, 3], 25);
    let renamed = |set: &ParamSet| {
        let mut out = ParamSet::new();
        for (name, t) in set.iter() {
            let k: usize = name[7..8].parse().expect("layer index");
            let kind = &name[9..];
            out.insert(format!("{}.{kind}", 2 * k), t.clone())
                .expect("insert");
        }
        out
    };
    let b = ParamSet::from_safetensors(&std::fs::read(&pb).expect("b")).expect("b");
    write(&pa, &renamed(&a));
    write(&pb, &renamed(&b));
    let wrong = dir.join("wrong-mlp.toml");
    std::fs::write(
        &wrong,
        "[permutations]\nP_0 = [\"0.weight:0\", \"0.bias:0\", \"2.weight:0\"]\n\
         P_1 = [\"2.weight:1\", \"2.bias:0\", \"4.weight:1\"]\n",
    )
    .expect("spec");
    let out = align(&pa, &pb, &wrong);
    assert!(
        !out.status.success(),
        "a wrong spec on a Sequential MLP was accepted"
    );
    assert!(stderr_line(&out).contains("does not keep the model's function"));
    assert!(!out_path.exists());

    // A ResNet-20 whose spec swaps the input axes of two blocks' conv2
    // (both 16 channels): valid sizes, wrong function.
    let arch: Architecture = "resnet20".parse().expect("arch");
    let device = fusion_core::ComputeBackend::Flex.device().expect("flex");
    let (ra, rb) = (dir.join("ra.safetensors"), dir.join("rb.safetensors"));
    for (seed, path) in [(3, &ra), (4, &rb)] {
        write(
            path,
            &Network::init(&arch, [1, 28, 28], 10, seed, &device).to_params(),
        );
    }
    let model = ParamSet::from_safetensors(&std::fs::read(&ra).expect("ra")).expect("ra");
    let mut spec = fusion_core::infer_resnet_spec(&model)
        .expect("spec")
        .to_toml();
    spec = spec
        .replace("\"layer1.0.conv2.weight:1\"", "\"SWAP\"")
        .replace("\"layer1.1.conv2.weight:1\"", "\"layer1.0.conv2.weight:1\"")
        .replace("\"SWAP\"", "\"layer1.1.conv2.weight:1\"");
    let wrong = dir.join("wrong-resnet.toml");
    std::fs::write(&wrong, spec).expect("spec");
    let out = align(&ra, &rb, &wrong);
    assert!(
        !out.status.success(),
        "a wrong spec on a ResNet was accepted"
    );
    assert!(stderr_line(&out).contains("does not keep the model's function"));
    assert!(!out_path.exists());
}
