//! Server-side ensemble distillation (FedDF) on small real data.

use fusion_core::{ParamSet, Refiner, RoundContext};
use fusion_data::Dataset;
use fusion_models::Mlp;
use fusion_train::{DistillConfig, Distiller, TrainError, evaluate, train};

use super::{device, quick, small};

/// A small MLP trained on the first 1,500 sample images.
fn teacher(seed: u64) -> ParamSet {
    let data = small();
    let model = Mlp::init(&[784, 32, 10], seed, &device());
    let mut config = quick(3);
    config.seed = seed;
    train(model, &data.train, &config, &device())
        .expect("train")
        .0
        .to_params()
}

fn config(epochs: usize) -> DistillConfig {
    DistillConfig {
        epochs,
        lr: 1e-3,
        batch: 100,
        ..DistillConfig::default()
    }
}

/// The proxy set: test images the teachers never saw, labels replaced.
fn proxy(label: u8) -> Dataset {
    let data = small();
    let images: Vec<u8> = (0..data.test.len())
        .flat_map(|i| data.test.image(i).to_vec())
        .collect();
    Dataset::new(
        images,
        vec![label; data.test.len()],
        data.test.shape(),
        data.test.classes(),
    )
    .expect("proxy")
}

fn distill(proxy: Dataset, teachers: &[&ParamSet], student: &ParamSet, epochs: usize) -> ParamSet {
    let distiller = Distiller::new(proxy, config(epochs), device()).expect("distiller");
    let mut round = distiller.begin(&RoundContext::default()).expect("begin");
    for t in teachers {
        round.observe(t, 1.0).expect("observe");
    }
    assert_eq!(round.observed(), teachers.len());
    round.refine(student).expect("refine")
}

/// Fraction of test images on which two models predict the same class.
fn agreement(a: &ParamSet, b: &ParamSet) -> f64 {
    let data = small();
    let (a, b) = (
        Mlp::from_params(a, &device()).expect("a"),
        Mlp::from_params(b, &device()).expect("b"),
    );
    let indices: Vec<usize> = (0..data.train.len()).collect();
    let (x, _) = data.train.batch(&indices);
    let x = burn::tensor::Tensor::<2>::from_data(
        burn::tensor::TensorData::new(x, [indices.len(), 784]),
        &device(),
    );
    let pa = a
        .forward(x.clone())
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>();
    let pb = b
        .forward(x)
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>();
    let (pa, pb) = (pa.expect("a preds"), pb.expect("b preds"));
    pa.iter().zip(&pb).filter(|(x, y)| x == y).count() as f64 / pa.len() as f64
}

#[test]
fn a_random_student_learns_the_teacher_from_unlabeled_images() {
    let teacher = teacher(1);
    let student = Mlp::init(&[784, 32, 10], 99, &device()).to_params();
    let before = agreement(&student, &teacher);
    let distilled = distill(proxy(0), &[&teacher], &student, 15);
    let after = agreement(&distilled, &teacher);
    assert!(
        before < 0.3,
        "a random student agrees {before} with the teacher"
    );
    assert!(after > 0.85, "after distillation it agrees only {after}");
    // It learned the task through the teacher alone: 500 unlabeled images.
    let test = small().test;
    let acc = evaluate(
        &Mlp::from_params(&distilled, &device()).expect("m"),
        &test,
        &device(),
    )
    .expect("eval")
    .accuracy;
    assert!(acc > 0.6, "distilled student's test accuracy {acc}");
}

#[test]
fn proxy_labels_are_never_read() {
    let teacher = teacher(1);
    let student = Mlp::init(&[784, 32, 10], 99, &device()).to_params();
    let zeros = distill(proxy(0), &[&teacher], &student, 2);
    let nines = distill(proxy(9), &[&teacher], &student, 2);
    assert_eq!(zeros, nines);
}

#[test]
fn the_ensemble_is_the_plain_mean_of_the_teachers() {
    let (a, b) = (teacher(1), teacher(2));
    let student = Mlp::init(&[784, 32, 10], 99, &device()).to_params();
    // (p + p) / 2 is p exactly, so a doubled teacher changes nothing...
    let once = distill(proxy(0), &[&a], &student, 1);
    let twice = distill(proxy(0), &[&a, &a], &student, 1);
    assert_eq!(once, twice);
    // ...while a second, different teacher does.
    let pair = distill(proxy(0), &[&a, &b], &student, 1);
    assert_ne!(once, pair);
}

#[test]
fn distillation_refuses_what_it_cannot_do() {
    let empty = Dataset::new(Vec::new(), Vec::new(), [1, 28, 28], 10).expect("empty");
    assert!(matches!(
        Distiller::new(empty, DistillConfig::default(), device()),
        Err(TrainError::EmptyData(_))
    ));
    let bad = DistillConfig {
        lr: -1.0,
        ..DistillConfig::default()
    };
    let err = Distiller::new(proxy(0), bad, device()).expect_err("negative lr");
    assert!(err.to_string().contains("distill_lr"), "{err}");

    let distiller = Distiller::new(proxy(0), config(1), device()).expect("distiller");
    let student = Mlp::init(&[784, 32, 10], 99, &device()).to_params();
    let round = distiller.begin(&RoundContext::default()).expect("begin");
    let err = round.refine(&student).expect_err("no teachers");
    assert!(err.to_string().contains("no client model"), "{err}");

    let mut round = distiller.begin(&RoundContext::default()).expect("begin");
    let wrong = Mlp::init(&[100, 32, 10], 1, &device()).to_params();
    let err = round.observe(&wrong, 1.0).expect_err("wrong inputs");
    assert!(err.to_string().contains("proxy set does not fit"), "{err}");
    assert_eq!(round.observed(), 0);
}
