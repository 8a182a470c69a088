//! `kill_running` ends every command this process runs, so it has a test
//! process of its own: in `contract.rs` it would kill the other tests'
//! commands.

use std::time::{Duration, Instant};

use fusion_core::{ParamSet, ParamTensor};
use fusion_external::{ExternalCommand, TrainRequest, Trainer};

#[test]
fn kill_running_ends_a_command_in_progress_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let started_file = dir.path().join("started");
    let command = format!("touch {}; sleep 300", started_file.display());
    let mut template = ParamSet::new();
    template
        .insert(
            "w",
            ParamTensor::new("w", vec![2], vec![0.0; 2]).expect("t"),
        )
        .expect("insert");
    let run = std::thread::spawn(move || {
        let trainer = Trainer::new(
            ExternalCommand::new(command, Duration::from_secs(120), "trainer"),
            template.clone(),
        );
        trainer.run(&TrainRequest {
            round: 1,
            exchange: 0,
            global: Some(&template),
            own: None,
            from_own_init: false,
            proximal_mu: 0.0,
            wants_weights: true,
            statistics: &[],
        })
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !started_file.exists() {
        assert!(Instant::now() < deadline, "the command never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    fusion_external::kill_running();
    let err = run.join().expect("thread").expect_err("killed");
    assert!(err.to_string().contains("killed by signal 9"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
