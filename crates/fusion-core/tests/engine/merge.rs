//! Merging strategies: exact averages, alignment that undoes permutations,
//! and equality with FedAvg when nothing needs aligning.

use crate::common;

use std::sync::Arc;

use fusion_core::{
    AlignToReference, ComputeBackend, MatchOptions, MergeMany, ParamSet, Reference, RoundContext,
    SpecSource, Strategy, Update, WeightedAverage, infer_mlp_spec, weight_matching,
};

const WIDTHS: [usize; 4] = [24, 32, 32, 6];

/// `model` plus uniform noise of the given scale.
fn jitter(model: &ParamSet, scale: f32, seed: u64) -> ParamSet {
    let mut r = common::rng(seed);
    let mut out = model.clone();
    for i in 0..out.len() {
        let noise = common::uniform(&mut r, out.at(i).numel(), scale);
        for (x, n) in out.at_mut(i).data_mut().iter_mut().zip(noise) {
            *x += n;
        }
    }
    out
}

/// Largest absolute difference over all values.
fn max_diff(a: &ParamSet, b: &ParamSet) -> f32 {
    a.iter()
        .map(|(name, t)| {
            let u = b.get(name).expect("same layout");
            t.data()
                .iter()
                .zip(u.data())
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max)
        })
        .fold(0.0, f32::max)
}

/// A's permuted copies with a little noise each.
fn permuted_copies(a: &ParamSet, count: u64) -> Vec<ParamSet> {
    let spec = infer_mlp_spec(a).expect("mlp").validate(a).expect("valid");
    (0..count)
        .map(|k| {
            let p = common::random_perms(spec.sizes(), 300 + k);
            jitter(&spec.apply(a, &p).expect("apply"), 1e-3, 400 + k)
        })
        .collect()
}

/// A round whose clients started from `global`.
fn from_global(global: &ParamSet) -> RoundContext {
    RoundContext {
        global: Some(Arc::new(global.clone())),
        from_own_init: false,
    }
}

fn device() -> fusion_core::Device {
    ComputeBackend::Flex.device().expect("flex")
}

#[test]
fn weighted_average_is_exact() {
    let a = common::random_mlp(&WIDTHS, 1);
    let b = common::random_mlp(&WIDTHS, 2);
    let out = WeightedAverage
        .merge(
            &RoundContext::default(),
            &[(a.clone(), 1.0), (b.clone(), 3.0)],
        )
        .expect("merge");
    for (name, m) in out.merged.iter() {
        let (x, y) = (a.get(name).expect("a"), b.get(name).expect("b"));
        for ((&m, &x), &y) in m.data().iter().zip(x.data()).zip(y.data()) {
            let want = ((f64::from(x) + 3.0 * f64::from(y)) / 4.0) as f32;
            assert_eq!(m, want);
        }
    }
}

#[test]
fn a_bad_model_is_refused_and_the_rest_still_merge() {
    let a = common::random_mlp(&WIDTHS, 1);
    let other_shape = common::random_mlp(&[24, 30, 32, 6], 2);
    let mut nan = a.clone();
    nan.at_mut(3).data_mut()[0] = f32::NAN;
    let mut agg = WeightedAverage
        .begin(&RoundContext::default())
        .expect("begin");
    agg.add(Update::weights(a.clone(), 1.0)).expect("first");
    let err = agg
        .add(Update::weights(other_shape.clone(), 1.0))
        .expect_err("shape");
    assert_eq!(
        err.to_string(),
        "tensor 'layers.0.weight' has shape [32, 24] in model 0 but [30, 24] in model 1"
    );
    let err = agg.add(Update::weights(nan.clone(), 1.0)).expect_err("nan");
    assert!(err.to_string().contains("non-finite value (NaN)"), "{err}");
    let err = agg
        .add(Update::weights(a.clone(), -1.0))
        .expect_err("weight");
    assert_eq!(
        err.to_string(),
        "model 1: weight -1 must be a finite number >= 0"
    );
    agg.add(Update::weights(a.clone(), 2.0))
        .expect("a good model still counts");
    assert_eq!(agg.count(), 2);
    assert_eq!(agg.finish().expect("finish").merged, a);
}

#[test]
fn align_undoes_permutations_that_averaging_blurs() {
    let a = common::random_mlp(&WIDTHS, 5);
    let copies = permuted_copies(&a, 3);
    let models: Vec<(ParamSet, f64)> = copies.into_iter().map(|m| (m, 1.0)).collect();
    let strategy = AlignToReference::new(SpecSource::InferMlp, device());
    let aligned = strategy.merge(&from_global(&a), &models).expect("align");
    let naive = WeightedAverage
        .merge(&RoundContext::default(), &models)
        .expect("average");
    assert!(
        max_diff(&aligned.merged, &a) < 2e-3,
        "aligned merge must recover A"
    );
    assert!(
        max_diff(&naive.merged, &a) > 0.1,
        "naive averaging must blur"
    );
    for report in &aligned.reports {
        for moved in &report.moved {
            assert!(moved.fraction() > 0.8, "{moved:?}");
        }
        assert!(report.objective_after > report.objective_before);
    }
}

#[test]
fn align_equals_fedavg_when_models_share_a_basin() {
    // Every client started from the same global model: matching returns the
    // identity and the result is FedAvg's, bit for bit.
    let global = common::random_mlp(&WIDTHS, 9);
    let models: Vec<(ParamSet, f64)> = (0..3)
        .map(|k| (jitter(&global, 1e-3, 50 + k), 1.0 + k as f64))
        .collect();
    let strategy = AlignToReference::new(SpecSource::InferMlp, device());
    let aligned = strategy
        .merge(&from_global(&global), &models)
        .expect("align");
    let fedavg = WeightedAverage
        .merge(&RoundContext::default(), &models)
        .expect("average");
    assert_eq!(aligned.merged, fedavg.merged);
    assert!(
        aligned
            .reports
            .iter()
            .all(|r| r.moved.iter().all(|m| m.moved == 0))
    );
}

#[test]
fn align_to_first_uses_the_first_model() {
    let a = common::random_mlp(&WIDTHS, 12);
    let mut models = vec![(a.clone(), 1.0)];
    models.extend(permuted_copies(&a, 2).into_iter().map(|m| (m, 1.0)));
    let strategy = AlignToReference {
        reference: Reference::First,
        ..AlignToReference::new(SpecSource::InferMlp, device())
    };
    // Even with a global model: `first` ignores it.
    let out = strategy
        .merge(&from_global(&models[1].0), &models)
        .expect("align");
    assert!(out.reports[0].moved.iter().all(|m| m.moved == 0));
    assert!(out.reports[1].moved.iter().any(|m| m.moved > 0));
    assert!(max_diff(&out.merged, &a) < 2e-3);
}

#[test]
fn clients_from_their_own_init_align_to_the_largest() {
    // The global model of a cold start is unrelated to the clients': the
    // default policy aligns to the update with the most examples instead,
    // which keeps its own units where they are.
    let a = common::random_mlp(&WIDTHS, 13);
    let copies = permuted_copies(&a, 3);
    let models: Vec<(ParamSet, f64)> = copies.into_iter().zip([1.0, 5.0, 2.0]).collect();
    let unrelated = common::random_mlp(&WIDTHS, 99);
    let round = RoundContext {
        global: Some(Arc::new(unrelated)),
        from_own_init: true,
    };
    let out = AlignToReference::new(SpecSource::InferMlp, device())
        .merge(&round, &models)
        .expect("align");
    assert!(
        out.reports[1].moved.iter().all(|m| m.moved == 0),
        "the largest is the reference"
    );
    assert!(out.reports[0].moved.iter().any(|m| m.moved > 0));
    let back_to_largest = max_diff(&out.merged, &models[1].0);
    assert!(back_to_largest < 2e-3, "diff {back_to_largest}");
}

#[test]
fn merge_many_recovers_the_common_model_up_to_permutation() {
    let a = common::random_mlp(&WIDTHS, 14);
    let models: Vec<(ParamSet, f64)> = permuted_copies(&a, 4)
        .into_iter()
        .map(|m| (m, 1.0))
        .collect();
    let out = MergeMany::new(SpecSource::InferMlp, device())
        .merge(&RoundContext::default(), &models)
        .expect("merge-many");
    assert!(
        out.passes >= 2,
        "a pass that changes something, then one that confirms"
    );
    // The merge sits in some permutation of A's basin: align it to A.
    let spec = infer_mlp_spec(&a)
        .expect("mlp")
        .validate(&a)
        .expect("valid");
    let found = weight_matching(&spec, &a, &out.merged, &device(), &MatchOptions::default())
        .expect("match");
    let back = spec.apply(&out.merged, &found.perms).expect("apply");
    assert!(max_diff(&back, &a) < 2e-3, "diff {}", max_diff(&back, &a));
}
