//! The trainer and evaluator contract, exercised with small shell
//! commands: what a good trainer produces is read back exactly, and each
//! way a trainer can go wrong is an error naming the file and tensor.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fusion_core::{ParamSet, ParamTensor, Scorer};
use fusion_external::{
    CommandScorer, ExternalCommand, ExternalError, TrainOutput, TrainRequest, Trainer,
};

/// A two-tensor model standing in for the federation's.
fn model(scale: f32) -> ParamSet {
    let mut p = ParamSet::new();
    p.insert(
        "conv.weight",
        ParamTensor::new("conv.weight", vec![2, 1, 3, 3], vec![scale; 18]).expect("tensor"),
    )
    .expect("insert");
    p.insert(
        "fc.weight",
        ParamTensor::new("fc.weight", vec![3, 2], vec![scale * 2.0; 6]).expect("tensor"),
    )
    .expect("insert");
    p
}

/// A scratch directory with `name` holding `model`.
fn saved(name: &str, model: &ParamSet) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, model.to_safetensors().expect("encode")).expect("write");
    (dir, path)
}

fn trainer(command: &str, timeout: Duration) -> Trainer {
    Trainer::new(
        ExternalCommand::new(command, timeout, "trainer"),
        model(0.0),
    )
}

fn request<'a>(global: &'a ParamSet) -> TrainRequest<'a> {
    TrainRequest {
        round: 2,
        exchange: 0,
        global: Some(global),
        own: None,
        from_own_init: false,
        proximal_mu: 0.01,
        wants_weights: true,
        statistics: &[],
    }
}

fn run(command: &str) -> Result<TrainOutput, ExternalError> {
    let global = model(1.0);
    trainer(command, Duration::from_secs(30)).run(&request(&global))
}

const RESULT: &str =
    r#"echo '{"examples": 120, "metrics": {"loss": 0.5, "accuracy": 0.75}}' > "$FUSION_RESULT""#;

#[test]
fn a_good_trainer_is_read_back_exactly_with_the_variables_it_was_given() {
    let (dir, update) = saved("update.safetensors", &model(3.0));
    let env_dump = dir.path().join("env");
    let command = format!(
        "env | grep ^FUSION_ | sort > {env}; test -s \"$FUSION_GLOBAL\" && cp {src} \"$FUSION_UPDATE\" && {RESULT}",
        env = env_dump.display(),
        src = update.display()
    );
    let out = run(&command).expect("trains");
    assert_eq!(out.update.as_ref(), Some(&model(3.0)));
    assert_eq!(out.examples, 120);
    assert_eq!(out.metrics.get("accuracy"), Some(&0.75));
    assert!(out.statistics.is_empty());
    let env = std::fs::read_to_string(env_dump).expect("env");
    for expected in [
        "FUSION_ROUND=2",
        "FUSION_EXCHANGE=0",
        "FUSION_FROM_OWN_INIT=0",
        "FUSION_PROXIMAL_MU=0.01",
        "FUSION_GLOBAL=",
        "FUSION_UPDATE=",
        "FUSION_RESULT=",
    ] {
        assert!(env.contains(expected), "{expected} missing from\n{env}");
    }
    assert!(
        !env.contains("FUSION_STATS"),
        "no statistics were asked for"
    );
}

#[test]
fn the_global_model_handed_over_is_the_one_given() {
    let (dir, _) = saved("unused.safetensors", &model(0.0));
    let copy = dir.path().join("seen.safetensors");
    let command = format!(
        "cp \"$FUSION_GLOBAL\" {copy} && cp \"$FUSION_GLOBAL\" \"$FUSION_UPDATE\" && {RESULT}",
        copy = copy.display()
    );
    run(&command).expect("trains");
    let seen = ParamSet::from_safetensors(&std::fs::read(copy).expect("read")).expect("decode");
    assert_eq!(seen, model(1.0));
}

#[test]
fn a_trainer_that_exits_1_is_named_with_its_last_words() {
    let err = run("echo 'CUDA out of memory' >&2; exit 1").expect_err("fails");
    let text = err.to_string();
    assert!(matches!(err, ExternalError::Failed { .. }), "{err:?}");
    assert!(text.contains("exit status 1"), "{text}");
    assert!(text.contains("CUDA out of memory"), "{text}");
}

#[test]
fn a_trainer_that_writes_no_update_is_named() {
    let err = run(RESULT).expect_err("no update");
    let text = err.to_string();
    assert!(matches!(err, ExternalError::NotWritten { .. }), "{err:?}");
    assert!(
        text.contains("FUSION_UPDATE") && text.contains("update.safetensors"),
        "{text}"
    );
}

fn with_update(update: &ParamSet) -> Result<TrainOutput, ExternalError> {
    let (_dir, path) = saved("bad.safetensors", update);
    run(&format!(
        "cp {} \"$FUSION_UPDATE\" && {RESULT}",
        path.display()
    ))
}

#[test]
fn an_update_missing_a_tensor_is_named() {
    let mut partial = ParamSet::new();
    partial
        .insert(
            "conv.weight",
            model(1.0).get("conv.weight").expect("t").clone(),
        )
        .expect("insert");
    let text = with_update(&partial).expect_err("missing").to_string();
    assert!(
        text.contains("`fc.weight` is missing") && text.contains("update.safetensors"),
        "{text}"
    );
}

#[test]
fn an_update_with_a_wrong_shape_is_named() {
    let mut wrong = model(1.0);
    let fc = wrong.position("fc.weight").expect("fc");
    *wrong.at_mut(fc) = ParamTensor::new("fc.weight", vec![2, 3], vec![0.0; 6]).expect("t");
    let text = with_update(&wrong).expect_err("shape").to_string();
    assert!(
        text.contains("`fc.weight` has shape [2, 3]") && text.contains("[3, 2]"),
        "{text}"
    );
}

#[test]
fn an_update_with_an_extra_tensor_or_a_nan_is_named() {
    let mut extra = model(1.0);
    extra
        .insert(
            "head.bias",
            ParamTensor::new("head.bias", vec![3], vec![0.0; 3]).expect("t"),
        )
        .expect("insert");
    let text = with_update(&extra).expect_err("extra").to_string();
    assert!(
        text.contains("`head.bias` is not in the global model"),
        "{text}"
    );
    let mut nan = model(1.0);
    let conv = nan.position("conv.weight").expect("conv");
    nan.at_mut(conv).data_mut()[4] = f32::NAN;
    let text = with_update(&nan).expect_err("nan").to_string();
    assert!(
        text.contains("conv.weight") && text.contains("NaN"),
        "{text}"
    );
}

#[test]
fn bad_result_files_are_named() {
    let (_dir, good) = saved("good.safetensors", &model(1.0));
    let copy = format!("cp {} \"$FUSION_UPDATE\"", good.display());
    for (result, expect) in [
        ("", "wrote no result file"),
        ("echo 'not json' > \"$FUSION_RESULT\"", "not the JSON"),
        (
            "echo '{\"metrics\": {}}' > \"$FUSION_RESULT\"",
            "no `examples`",
        ),
        (
            "echo '{\"examples\": 0}' > \"$FUSION_RESULT\"",
            "examples is 0",
        ),
        (
            "echo '{\"examples\": 5, \"metrics\": {\"loss\": \"low\"}}' > \"$FUSION_RESULT\"",
            "metric `loss`",
        ),
    ] {
        let command = if result.is_empty() {
            copy.clone()
        } else {
            format!("{copy} && {result}")
        };
        let text = run(&command).expect_err(expect).to_string();
        assert!(text.contains(expect), "{expect}: {text}");
    }
}

/// Whether process `pid` has ended (gone, or a zombie waiting for a
/// parent that does not reap).
fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

fn wait_until_ended(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if ended(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn a_hung_trainer_is_killed_at_its_limit_with_every_process_it_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pid");
    // A worker in the background, and a trainer that ignores SIGTERM.
    let command = format!(
        "sleep 300 & echo $! > {}; trap '' TERM; while true; do sleep 1; done",
        pid_file.display()
    );
    let global = model(1.0);
    let started = Instant::now();
    let err = trainer(&command, Duration::from_millis(500))
        .run(&request(&global))
        .expect_err("hangs");
    let took = started.elapsed();
    assert!(matches!(err, ExternalError::TimedOut { .. }), "{err:?}");
    assert!(err.to_string().contains("time limit"), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let worker: u32 = std::fs::read_to_string(&pid_file)
        .expect("pid written")
        .trim()
        .parse()
        .expect("pid");
    assert!(
        wait_until_ended(worker),
        "the background worker {worker} survived"
    );
}

#[test]
fn statistics_are_read_when_asked_and_must_be_exactly_those() {
    let mut stats = safetensors_f64(&[("gram:layers.0", vec![1.0, 2.0, 3.0])]);
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("stats.safetensors");
    std::fs::write(&file, &stats).expect("write");
    let (_g, good) = saved("good.safetensors", &model(1.0));
    let names = vec!["gram:layers.0".to_owned()];
    let global = model(1.0);
    let request = TrainRequest {
        statistics: &names,
        ..request(&global)
    };
    let command = format!(
        "test \"$FUSION_STATS_NAMES\" = gram:layers.0 && cp {} \"$FUSION_STATS\" && cp {} \"$FUSION_UPDATE\" && {RESULT}",
        file.display(),
        good.display()
    );
    let out = trainer(&command, Duration::from_secs(30))
        .run(&request)
        .expect("statistics");
    assert_eq!(out.statistics["gram:layers.0"].data(), &[1.0, 2.0, 3.0]);
    stats = safetensors_f64(&[("gram:layers.0", vec![1.0]), ("gram:layers.9", vec![1.0])]);
    std::fs::write(&file, &stats).expect("write");
    let text = trainer(&command, Duration::from_secs(30))
        .run(&request)
        .expect_err("extra statistic")
        .to_string();
    assert!(text.contains("`gram:layers.9` was not asked for"), "{text}");
}

/// A safetensors file of F64 vectors.
fn safetensors_f64(tensors: &[(&str, Vec<f64>)]) -> Vec<u8> {
    use safetensors::tensor::TensorView;
    let bytes: Vec<(String, Vec<u8>, usize)> = tensors
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                v.len(),
            )
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(n, b, len)| {
            (
                n.clone(),
                TensorView::new(safetensors::Dtype::F64, vec![*len], b).expect("view"),
            )
        })
        .collect();
    safetensors::serialize(views, None).expect("serialize")
}

#[test]
fn the_evaluator_scores_with_its_metrics() {
    let dir = tempfile::tempdir().expect("dir");
    let seen = dir.path().join("round");
    let scorer = CommandScorer::new(ExternalCommand::new(
        format!(
            "echo $FUSION_ROUND > {}; test -s \"$FUSION_GLOBAL\" && echo '{{\"metrics\": {{\"loss\": 0.3, \"accuracy\": 0.9, \"f1\": 0.8}}}}' > \"$FUSION_RESULT\"",
            seen.display()
        ),
        Duration::from_secs(30),
        "evaluator",
    ));
    // The status page shows the program, never the command line.
    assert_eq!(scorer.describe(), "your evaluator (echo)");
    let score = scorer.score(4, &model(1.0)).expect("scores");
    assert_eq!((score.loss, score.accuracy), (Some(0.3), Some(0.9)));
    assert_eq!(score.metrics.get("f1"), Some(&0.8));
    assert_eq!(std::fs::read_to_string(seen).expect("round").trim(), "4");
    let percent = CommandScorer::new(ExternalCommand::new(
        "echo '{\"metrics\": {\"accuracy\": 90}}' > \"$FUSION_RESULT\"",
        Duration::from_secs(30),
        "evaluator",
    ));
    let err = percent.score(1, &model(1.0)).expect_err("percent");
    assert!(err.to_string().contains("fraction"), "{err}");
}

#[test]
fn a_fifo_in_place_of_the_update_is_refused_without_blocking() {
    let started = Instant::now();
    let err = run(&format!("mkfifo \"$FUSION_UPDATE\" && {RESULT}")).expect_err("fifo");
    assert!(err.to_string().contains("not a regular file"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
