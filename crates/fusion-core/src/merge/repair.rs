//! REPAIR (Jordan et al., ICLR 2023) in a federation.
//!
//! Averaging aligned networks shrinks the variance of each channel (it
//! averages units that are not perfectly correlated), and in deep CNNs the
//! shrinkage compounds until the merged network's activations no longer
//! resemble its parents'. REPAIR rescales every norm layer's channels so
//! that their mean and standard deviation are the parents' again. Offline
//! (`fusion interpolate --repair-batches`) both sides are measured on
//! training data; a server has none, so [`Repair`] asks the clients:
//!
//! 1. in exchange 0, each client sends, beside its weights, every norm's
//!    per-channel output moments in its own trained model
//!    ([`StatisticKind::Outputs`](super::StatisticKind::Outputs)); once the
//!    inner strategy has merged, the server puts each client's moments in
//!    the merged model's channel order with the permutations that aligned
//!    it ([`ModelReport::perms`]) and pools them, weighted by examples, into
//!    the target: the moments of the clients' own models over the
//!    federation's data;
//! 2. in further exchanges, the clients run the merged model over their
//!    data and send the same moments of it; the server pools them and
//!    rescales norms' affine parameters so that their output moments hit
//!    the target.
//!
//! Offline REPAIR corrects one norm at a time, measuring each after the
//! norms before it were corrected; [`RepairMode::Sequential`] does the
//! same with one exchange per norm (21 for a ResNet-20), each asking for
//! that norm's moments alone. Correcting every norm from one exchange,
//! each against uncorrected layers before it, is cheaper but overshoots:
//! on one-shot LayerNorm CNN federations (docs/experiments.md) it moved
//! `align` from 31% to 39% on a VGG-11 but lowered it on a ResNet-20 and
//! raised the loss five- to thirtyfold elsewhere, and repeating it (a
//! Jacobi iteration) was worse still until it had run once per norm, when
//! it equals the sequential result. So only the sequential form is
//! offered.
//!
//! Pooling means and second moments over the clients (a mixture), rather
//! than averaging standard deviations as the two-model REPAIR does, makes
//! the target and the measurement describe the same data: all of the
//! federation's, each example seen by the model that trained on it in the
//! target and by the merged model in the measurement.

use std::sync::Arc;

use super::StatisticRequest;
use super::statistics::norm_layers;
use super::strategy::{check_requested, requested_values};
use super::{
    Aggregation, Instructions, MergeError, MergeOutcome, ModelReport, RepairMode, RoundContext,
    Strategy, StrategyKind, Update,
};
use crate::params::ParamSet;
use crate::spec::SpecSource;

/// `inner`, followed in every round by REPAIR exchanges that rescale the
/// merged model's norm layers to the clients' own output moments (see the
/// module documentation). A model without norm layers (an MLP), or
/// [`RepairMode::Off`], leaves `inner` as it is. Offline merges
/// ([`Strategy::merge`]) have no clients and use `inner` alone.
pub struct Repair {
    /// The strategy that merges the weights (with its BatchNorm
    /// re-estimation, which must come before REPAIR: re-estimated running
    /// statistics would undo REPAIR's rescaling).
    pub inner: Arc<dyn Strategy>,
    /// The spec that says which permutation reorders each norm's channels,
    /// for strategies that permute clients (the one they align with).
    pub spec: SpecSource,
    /// Off, or one exchange per norm.
    pub mode: RepairMode,
}

impl Strategy for Repair {
    fn kind(&self) -> StrategyKind {
        self.inner.kind()
    }

    fn begin(&self, round: &RoundContext) -> Result<Box<dyn Aggregation + '_>, MergeError> {
        let inner = self.inner.begin(round)?;
        let norms = round.global.as_deref().map(norm_layers).unwrap_or_default();
        let first = inner.instructions();
        // The targets are the clients' own models' moments, sent with
        // their weights: an inner strategy whose exchange 0 does not train
        // and send weights gives no place to ask for them.
        if self.mode == RepairMode::Off
            || norms.is_empty()
            || !first.send_weights
            || first.model.is_some()
        {
            return Ok(inner);
        }
        let targets = Targets::default();
        Ok(Box::new(Repairing {
            strategy: self,
            norms,
            stage: Stage::Merging { inner, targets },
        }))
    }

    fn merge(
        &self,
        round: &RoundContext,
        models: &[(ParamSet, f64)],
    ) -> Result<MergeOutcome, MergeError> {
        self.inner.merge(round, models)
    }
}

/// Per norm, example-weighted sums of each channel's mean and second
/// moment (`[Σ w·mean; Σ w·(variance + mean²)]`), and the total weight.
#[derive(Clone, Debug)]
struct Pooled {
    sums: Vec<Vec<f64>>,
    weight: f64,
}

impl Pooled {
    fn new(norms: &[StatisticRequest]) -> Self {
        Self {
            sums: norms.iter().map(|r| vec![0.0; 2 * r.shape[1]]).collect(),
            weight: 0.0,
        }
    }

    /// Adds one client's `[mean; variance]` per norm at `weight`.
    fn add(&mut self, moments: &[impl AsRef<[f64]>], weight: f64) {
        for (sum, values) in self.sums.iter_mut().zip(moments) {
            let values = values.as_ref();
            let channels = values.len() / 2;
            for c in 0..channels {
                let (mean, var) = (values[c], values[channels + c]);
                sum[c] += weight * mean;
                sum[channels + c] += weight * (var + mean * mean);
            }
        }
        self.weight += weight;
    }

    /// Per norm, each channel's pooled mean and standard deviation.
    fn mean_and_std(&self) -> Vec<(Vec<f64>, Vec<f64>)> {
        self.sums
            .iter()
            .map(|sum| {
                let channels = sum.len() / 2;
                let mean: Vec<f64> = sum[..channels].iter().map(|s| s / self.weight).collect();
                let std = sum[channels..]
                    .iter()
                    .zip(&mean)
                    .map(|(q, m)| (q / self.weight - m * m).max(0.0).sqrt())
                    .collect();
                (mean, std)
            })
            .collect()
    }
}

/// Exchange 0's moments, one entry per update the inner strategy took,
/// in the order it took them (its reports' `index`).
#[derive(Default)]
struct Targets {
    clients: Vec<(Vec<Vec<f64>>, f64)>,
}

impl Targets {
    /// Pools the clients' moments in the merged model's channel order: a
    /// client the inner strategy permuted has each norm's channels put
    /// where its permutation moved them.
    fn pool(
        self,
        norms: &[StatisticRequest],
        outcome: &MergeOutcome,
        spec: &SpecSource,
    ) -> Result<Pooled, MergeError> {
        let mut pooled = Pooled::new(norms);
        let mut resolved = None;
        for report in &outcome.reports {
            let (moments, weight) = self.clients.get(report.index).ok_or_else(|| {
                MergeError::BadUpdate(format!(
                    "the merge reports model {} but REPAIR holds no moments for it",
                    report.index
                ))
            })?;
            if report.perms.is_empty() {
                pooled.add(moments, *weight);
                continue;
            }
            if resolved.is_none() {
                resolved = Some(spec.resolve(&outcome.merged)?);
            }
            let Some(spec) = resolved.as_ref() else {
                continue;
            };
            let mut ordered = Vec::with_capacity(norms.len());
            for (request, values) in norms.iter().zip(moments) {
                let tensor = format!("{}.weight", request.layer);
                let Some(order) = spec.acting_on(&tensor, 0).and_then(|p| report.perms.get(p))
                else {
                    ordered.push(values.clone());
                    continue;
                };
                let channels = request.shape[1];
                if order.len() != channels {
                    return Err(MergeError::BadUpdate(format!(
                        "the permutation of `{tensor}` has {} units, the norm {channels} channels",
                        order.len()
                    )));
                }
                let mut row = Vec::with_capacity(2 * channels);
                for half in values.chunks_exact(channels) {
                    row.extend(order.as_slice().iter().map(|&src| half[src]));
                }
                ordered.push(row);
            }
            pooled.add(&ordered, *weight);
        }
        Ok(pooled)
    }
}

/// Where a round of [`Repair`] is.
enum Stage<'s> {
    /// The inner strategy's exchanges; exchange 0's updates also bring
    /// the targets.
    Merging {
        inner: Box<dyn Aggregation + 's>,
        targets: Targets,
    },
    /// A REPAIR pass: the model it measures and the moments so far.
    Measuring(Pass),
    /// Nothing left to ask.
    Done(MergeOutcome),
    /// Only while moving between stages; an error there leaves it, and
    /// every later call says so.
    Failed,
}

/// Per norm: the target mean and standard deviation of each channel.
type Target = Vec<(Vec<f64>, Vec<f64>)>;

/// One measure-and-rescale exchange.
struct Pass {
    outcome: MergeOutcome,
    target: Target,
    /// The norm it measures and corrects (an index into the round's
    /// norms, in forward order).
    norm: usize,
    instructions: Instructions,
    measured: Pooled,
    updates: usize,
}

impl Pass {
    fn open(
        outcome: MergeOutcome,
        target: Target,
        norms: &[StatisticRequest],
        norm: usize,
        exchange: u32,
    ) -> Self {
        let requests: Vec<StatisticRequest> = norms.get(norm).cloned().into_iter().collect();
        let measured = Pooled::new(&requests);
        let instructions = Instructions {
            exchange,
            train: false,
            send_weights: false,
            statistics: requests,
            model: Some(Arc::new(outcome.merged.clone())),
            optional: true,
        };
        Self {
            outcome,
            target,
            norm,
            instructions,
            measured,
            updates: 0,
        }
    }

    fn add(&mut self, update: &Update) -> Result<ModelReport, MergeError> {
        let moments = self.instructions.measured(update, self.updates)?;
        self.measured.add(&moments, update.weight);
        self.updates += 1;
        Ok(ModelReport {
            index: self.updates - 1,
            weight: update.weight,
            ..ModelReport::default()
        })
    }

    /// The model with the pass's norm rescaled so that its pooled output
    /// moments become the target: `γ ← s·γ`, `β ← s·β + t` with
    /// `s = target std / measured std` and `t = target mean − s · measured
    /// mean`. A channel that is constant in the merged model is left
    /// alone, as offline, and so is one whose correction would not be
    /// finite. Unchanged when nobody answered.
    fn rescaled(mut self) -> Result<(MergeOutcome, Target), MergeError> {
        if self.updates == 0 {
            return Ok((self.outcome, self.target));
        }
        let measured = self.measured.mean_and_std();
        let merged = &mut self.outcome.merged;
        for (request, (mean, std)) in self.instructions.statistics.iter().zip(&measured) {
            let (target_mean, target_std) = self.target.get(self.norm).ok_or_else(|| {
                MergeError::BadUpdate(format!("REPAIR has no target for `{}`", request.layer))
            })?;
            let position = |suffix: &str| {
                let name = format!("{}.{suffix}", request.layer);
                merged
                    .position(&name)
                    .ok_or_else(|| MergeError::BadUpdate(format!("the merged model lost `{name}`")))
            };
            let (at_weight, at_bias) = (position("weight")?, position("bias")?);
            let mut weight = merged.at_mut(at_weight).data_mut().to_vec();
            let mut bias = merged.at_mut(at_bias).data_mut().to_vec();
            for (c, (w, b)) in weight.iter_mut().zip(bias.iter_mut()).enumerate() {
                let (Some(&m), Some(&sd), Some(&tm), Some(&ts)) = (
                    mean.get(c),
                    std.get(c),
                    target_mean.get(c),
                    target_std.get(c),
                ) else {
                    continue;
                };
                if sd <= 1e-8 {
                    continue;
                }
                let scale = ts / sd;
                let shift = tm - scale * m;
                let (new_w, new_b) = (
                    (scale * f64::from(*w)) as f32,
                    (scale * f64::from(*b) + shift) as f32,
                );
                // Finite but enormous statistics (a broken or hostile
                // client) must not turn a weight into inf or NaN: such a
                // channel stays as merged.
                if new_w.is_finite() && new_b.is_finite() {
                    (*w, *b) = (new_w, new_b);
                }
            }
            merged.at_mut(at_weight).data_mut().copy_from_slice(&weight);
            merged.at_mut(at_bias).data_mut().copy_from_slice(&bias);
        }
        Ok((self.outcome, self.target))
    }
}

/// One round of [`Repair`].
struct Repairing<'s> {
    strategy: &'s Repair,
    norms: Vec<StatisticRequest>,
    stage: Stage<'s>,
}

impl Repairing<'_> {
    fn failed() -> MergeError {
        MergeError::BadUpdate("an earlier step of this round failed".into())
    }

    /// Exchange 0 of the inner strategy, which also carries the targets.
    fn first_exchange(inner: &dyn Aggregation) -> bool {
        inner.instructions().exchange == 0
    }
}

impl Aggregation for Repairing<'_> {
    fn instructions(&self) -> Instructions {
        match &self.stage {
            Stage::Merging { inner, .. } => {
                let mut instructions = inner.instructions();
                if instructions.exchange == 0 {
                    instructions.statistics.extend(self.norms.iter().cloned());
                }
                instructions
            }
            Stage::Measuring(pass) => pass.instructions.clone(),
            Stage::Done(_) | Stage::Failed => Instructions::train_and_send_weights(),
        }
    }

    fn add(&mut self, mut update: Update) -> Result<ModelReport, MergeError> {
        match &mut self.stage {
            Stage::Merging { inner, targets } => {
                if !Self::first_exchange(inner.as_ref()) {
                    return inner.add(update);
                }
                check_requested(&self.norms, &update)?;
                let moments: Vec<Vec<f64>> = requested_values(&self.norms, &update)?
                    .into_iter()
                    .map(<[f64]>::to_vec)
                    .collect();
                for request in &self.norms {
                    update.statistics.remove(&request.name());
                }
                let weight = update.weight;
                let report = inner.add(update)?;
                targets.clients.push((moments, weight));
                Ok(report)
            }
            Stage::Measuring(pass) => pass.add(&update),
            Stage::Done(_) => Err(MergeError::BadUpdate(
                "this round takes no more updates".into(),
            )),
            Stage::Failed => Err(Self::failed()),
        }
    }

    fn count(&self) -> usize {
        match &self.stage {
            Stage::Merging { inner, .. } => inner.count(),
            Stage::Measuring(pass) => pass.updates,
            Stage::Done(_) | Stage::Failed => 0,
        }
    }

    fn advance(&mut self) -> Result<Option<Instructions>, MergeError> {
        match std::mem::replace(&mut self.stage, Stage::Failed) {
            Stage::Merging { mut inner, targets } => {
                if let Some(next) = inner.advance()? {
                    self.stage = Stage::Merging { inner, targets };
                    return Ok(Some(next));
                }
                let last = inner.instructions().exchange;
                let outcome = inner.finish()?;
                let pooled = targets.pool(&self.norms, &outcome, &self.strategy.spec)?;
                let target = pooled.mean_and_std();
                let pass = Pass::open(outcome, target, &self.norms, 0, last + 1);
                let next = pass.instructions.clone();
                self.stage = Stage::Measuring(pass);
                Ok(Some(next))
            }
            Stage::Measuring(pass) => {
                let exchange = pass.instructions.exchange;
                // Sequential REPAIR moves on to the next norm.
                let following = Some(pass.norm + 1).filter(|&k| k < self.norms.len());
                // Nobody answered: the next norm would be measured by the
                // same clients (none) after no correction.
                let answered = pass.updates > 0;
                let (outcome, target) = pass.rescaled()?;
                let Some(norm) = following.filter(|_| answered) else {
                    self.stage = Stage::Done(outcome);
                    return Ok(None);
                };
                let pass = Pass::open(outcome, target, &self.norms, norm, exchange + 1);
                let next = pass.instructions.clone();
                self.stage = Stage::Measuring(pass);
                Ok(Some(next))
            }
            done @ Stage::Done(_) => {
                self.stage = done;
                Ok(None)
            }
            Stage::Failed => Err(Self::failed()),
        }
    }

    fn finish(self: Box<Self>) -> Result<MergeOutcome, MergeError> {
        match self.stage {
            Stage::Merging { inner, .. } => inner.finish(),
            Stage::Measuring(pass) => Ok(pass.rescaled()?.0),
            Stage::Done(outcome) => Ok(outcome),
            Stage::Failed => Err(Self::failed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use burn::tensor::Device;

    use super::*;
    use crate::merge::{AlignToReference, Reference, StatisticTensor, WeightedAverage};
    use crate::params::ParamTensor;
    use crate::perm::Permutation;
    use crate::spec::{AxisRef, PermDef, PermutationSpec};

    /// `fc` (3 units, no bias), a norm `n` over them, and a head.
    fn model(fc: [f32; 6], head: [f32; 3]) -> ParamSet {
        let mut p = ParamSet::new();
        for (name, shape, data) in [
            ("fc.weight", vec![3, 2], fc.to_vec()),
            ("n.weight", vec![3], vec![1.0, 1.0, 1.0]),
            ("n.bias", vec![3], vec![0.0, 0.0, 0.0]),
            ("head.weight", vec![1, 3], head.to_vec()),
        ] {
            p.insert(name, ParamTensor::new(name, shape, data).expect("t"))
                .expect("insert");
        }
        p
    }

    fn spec() -> PermutationSpec {
        let axes = ["fc.weight:0", "n.weight:0", "n.bias:0", "head.weight:1"]
            .iter()
            .map(|a| AxisRef::parse("P", a).expect("axis"))
            .collect();
        PermutationSpec::new(vec![PermDef {
            name: "P".into(),
            axes,
        }])
        .expect("spec")
    }

    fn outputs(mean: &[f64], var: &[f64]) -> StatisticTensor {
        let values = mean.iter().chain(var).copied().collect();
        StatisticTensor::new("n", vec![2, mean.len()], values).expect("t")
    }

    fn update(params: Option<ParamSet>, weight: f64, stats: StatisticTensor) -> Update {
        Update {
            client: None,
            params,
            weight,
            statistics: BTreeMap::from([("outputs:n".to_owned(), stats)]),
        }
    }

    fn repair(inner: Arc<dyn Strategy>, mode: RepairMode) -> Repair {
        Repair {
            inner,
            spec: SpecSource::Given(spec()),
            mode,
        }
    }

    fn round(global: &ParamSet) -> RoundContext {
        RoundContext {
            global: Some(Arc::new(global.clone())),
            from_own_init: true,
        }
    }

    fn close(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 1e-6, "{got:?} != {want:?}");
        }
    }

    #[test]
    fn targets_follow_each_clients_permutation_and_passes_rescale_the_norm() {
        let a = model([1.0, 0.0, 0.0, 2.0, -3.0, 1.0], [0.5, -1.0, 2.0]);
        let validated = spec().validate(&a).expect("valid");
        // B is A with its units reordered: B's unit j is A's unit P[j].
        let planted = [2, 0, 1];
        let p = Permutation::from_vec("P", planted.to_vec()).expect("perm");
        let b = validated.apply(&a, &[p]).expect("apply");
        let (mean_a, var_a) = ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]);
        let mean_b: Vec<f64> = planted.iter().map(|&j| mean_a[j]).collect();
        let var_b: Vec<f64> = planted.iter().map(|&j| var_a[j]).collect();

        let aligner = AlignToReference {
            reference: Reference::Largest,
            ..AlignToReference::new(SpecSource::Given(spec()), Device::flex())
        };
        let strategy = repair(Arc::new(aligner), RepairMode::Sequential);
        let mut aggregation = strategy.begin(&round(&a)).expect("begin");
        let first = aggregation.instructions();
        assert_eq!(first.exchange, 0);
        assert_eq!(first.statistics, vec![StatisticRequest::outputs("n", 3)]);
        aggregation
            .add(update(Some(a.clone()), 3.0, outputs(&mean_a, &var_a)))
            .expect("a");
        aggregation
            .add(update(Some(b), 1.0, outputs(&mean_b, &var_b)))
            .expect("b");
        let pass = aggregation.advance().expect("advance").expect("pass 1");
        assert_eq!(
            (pass.exchange, pass.train, pass.send_weights, pass.optional),
            (1, false, false, true)
        );
        let merged = pass.model.expect("the merged model travels");
        assert_eq!(merged.get("fc.weight"), a.get("fc.weight"));

        // The merged model measures mean (0, 2, 1), variance (1, 5, 16).
        // Aligned, B's target is A's, so the target is (1, 2, 3), (4, 5, 6)
        // exactly; without B's permutation channel 0 would aim at a mean
        // of (3·1 + 3)/4.
        aggregation
            .add(update(
                None,
                2.0,
                outputs(&[0.0, 2.0, 1.0], &[1.0, 5.0, 16.0]),
            ))
            .expect("measured");
        assert!(aggregation.advance().expect("advance").is_none());
        let outcome = aggregation.finish().expect("finish");
        let rescaled = &outcome.merged;
        let s2 = 6f64.sqrt() / 4.0;
        close(rescaled.get("n.weight").expect("w").data(), &[2.0, 1.0, s2]);
        close(
            rescaled.get("n.bias").expect("b").data(),
            &[1.0, 0.0, 3.0 - s2],
        );
        assert_eq!(rescaled.get("fc.weight"), a.get("fc.weight"));
        assert_eq!(outcome.reports.len(), 2);
        assert_eq!(outcome.reports[1].perms[0].as_slice(), &[1, 2, 0]);
    }

    #[test]
    fn clients_pool_as_a_mixture_weighted_by_examples() {
        let a = model([1.0, 0.0, 0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0]);
        let strategy = repair(Arc::new(WeightedAverage), RepairMode::Sequential);
        let mut aggregation = strategy.begin(&round(&a)).expect("begin");
        // Channel 0: one client at mean 0, the other (three times the
        // examples) at mean 4, both variance 1: the mixture has mean 3 and
        // variance 1 + ¼·0² + ¾·4² − 3² = 4.
        aggregation
            .add(update(
                Some(a.clone()),
                1.0,
                outputs(&[0.0, 0.0, 0.0], &[1.0, 1.0, 1.0]),
            ))
            .expect("a");
        aggregation
            .add(update(
                Some(a.clone()),
                3.0,
                outputs(&[4.0, 0.0, 0.0], &[1.0, 1.0, 1.0]),
            ))
            .expect("b");
        aggregation.advance().expect("advance").expect("pass");
        // The merged model is measured the same way: mean 1 and variance
        // 1 from one client, mean 5 and variance 1 from the other.
        aggregation
            .add(update(
                None,
                1.0,
                outputs(&[1.0, 0.0, 0.0], &[1.0, 1.0, 1.0]),
            ))
            .expect("m1");
        aggregation
            .add(update(
                None,
                3.0,
                outputs(&[5.0, 0.0, 0.0], &[1.0, 1.0, 1.0]),
            ))
            .expect("m2");
        assert!(aggregation.advance().expect("advance").is_none());
        let merged = aggregation.finish().expect("finish").merged;
        // Measured: mean 4, variance 4; target mean 3, variance 4:
        // scale 1, shift −1. Channels 1 and 2 already match.
        close(merged.get("n.weight").expect("w").data(), &[1.0, 1.0, 1.0]);
        close(merged.get("n.bias").expect("b").data(), &[-1.0, 0.0, 0.0]);
    }

    #[test]
    fn bad_moments_are_refused_by_name_and_change_nothing() {
        let a = model([1.0; 6], [1.0; 3]);
        let strategy = repair(Arc::new(WeightedAverage), RepairMode::Sequential);
        let mut aggregation = strategy.begin(&round(&a)).expect("begin");
        let err = |agg: &mut Box<dyn Aggregation + '_>, u: Update| {
            agg.add(u).expect_err("refused").to_string()
        };
        let mut missing = update(Some(a.clone()), 1.0, outputs(&[0.0; 3], &[1.0; 3]));
        missing.statistics.clear();
        let text = err(&mut aggregation, missing);
        assert!(text.contains("statistic `outputs:n` is missing"), "{text}");
        let negative = update(Some(a.clone()), 1.0, outputs(&[0.0; 3], &[1.0, -2.0, 1.0]));
        let text = err(&mut aggregation, negative);
        assert!(text.contains("negative variance -2 in channel 1"), "{text}");
        let text = err(
            &mut aggregation,
            update(Some(a.clone()), 1.0, outputs(&[0.0; 2], &[1.0; 2])),
        );
        assert!(text.contains("expected [2, 3]"), "{text}");
        assert_eq!(aggregation.count(), 0);
        aggregation
            .add(update(Some(a.clone()), 1.0, outputs(&[0.0; 3], &[1.0; 3])))
            .expect("good");
        aggregation.advance().expect("advance").expect("pass");
        let text = err(
            &mut aggregation,
            update(Some(a.clone()), 1.0, outputs(&[0.0; 3], &[1.0; 3])),
        );
        assert!(text.contains("asks only for statistics"), "{text}");
        let mut nan = update(None, 1.0, outputs(&[0.0; 3], &[1.0; 3]));
        nan.statistics.get_mut("outputs:n").expect("o").data_mut()[4] = f64::NAN;
        assert!(err(&mut aggregation, nan).contains("holds NaN at element 4"));
        let text = err(
            &mut aggregation,
            update(None, 0.0, outputs(&[0.0; 3], &[1.0; 3])),
        );
        assert!(text.contains("weight"), "{text}");
        assert_eq!(aggregation.count(), 0);
        // Nothing was folded in: the merge is FedAvg's, unrescaled.
        assert!(aggregation.advance().expect("advance").is_none());
        let merged = aggregation.finish().expect("finish").merged;
        assert_eq!(merged, a);
    }

    #[test]
    fn enormous_statistics_cannot_make_the_model_infinite() {
        let a = model([1.0; 6], [1.0; 3]);
        let strategy = repair(Arc::new(WeightedAverage), RepairMode::Sequential);
        let mut aggregation = strategy.begin(&round(&a)).expect("begin");
        // Finite, so accepted; squared, channel 0's mean overflows f64,
        // and channel 1's scale overflows f32.
        aggregation
            .add(update(
                Some(a.clone()),
                1.0,
                outputs(&[1e200, 0.0, 1.0], &[1.0, 1e100, 4.0]),
            ))
            .expect("finite values pass the checks");
        aggregation.advance().expect("advance").expect("pass");
        aggregation
            .add(update(None, 1.0, outputs(&[0.0; 3], &[1.0; 3])))
            .expect("measured");
        assert!(aggregation.advance().expect("advance").is_none());
        let merged = aggregation.finish().expect("finish").merged;
        merged.check_finite().expect("every weight finite");
        // Channel 2 was sane and is corrected: scale 2, shift 1.
        close(merged.get("n.weight").expect("w").data(), &[1.0, 1.0, 2.0]);
        close(merged.get("n.bias").expect("b").data(), &[0.0, 0.0, 1.0]);
    }

    #[test]
    fn without_norms_or_with_repair_off_the_inner_strategy_runs_alone() {
        let mut mlp = ParamSet::new();
        for (name, shape) in [("fc.weight", vec![3, 2]), ("fc.bias", vec![3])] {
            let n = shape.iter().product();
            mlp.insert(
                name,
                ParamTensor::new(name, shape, vec![1.0; n]).expect("t"),
            )
            .expect("insert");
        }
        let with_norm = model([1.0; 6], [1.0; 3]);
        for (global, mode) in [
            (&mlp, RepairMode::Sequential),
            (&with_norm, RepairMode::Off),
        ] {
            let strategy = repair(Arc::new(WeightedAverage), mode);
            let mut aggregation = strategy.begin(&round(global)).expect("begin");
            assert!(aggregation.instructions().statistics.is_empty());
            aggregation
                .add(Update::weights(global.clone(), 1.0))
                .expect("add");
            assert!(aggregation.advance().expect("advance").is_none());
            assert_eq!(&aggregation.finish().expect("finish").merged, global);
        }
    }

    /// `model`'s layout with a second norm `m` after the head's input.
    fn two_norms() -> ParamSet {
        let mut p = model([1.0; 6], [1.0; 3]);
        for name in ["m.weight", "m.bias"] {
            let v = if name.ends_with("weight") { 1.0 } else { 0.0 };
            p.insert(name, ParamTensor::new(name, vec![1], vec![v]).expect("t"))
                .expect("insert");
        }
        p
    }

    fn both(n: (&[f64], &[f64]), m: (f64, f64), weight: f64) -> Update {
        let mut u = update(None, weight, outputs(n.0, n.1));
        u.statistics
            .insert("outputs:m".into(), outputs(&[m.0], &[m.1]));
        u
    }

    #[test]
    fn sequential_repair_corrects_one_norm_per_exchange_in_order() {
        let global = two_norms();
        let strategy = repair(Arc::new(WeightedAverage), RepairMode::Sequential);
        let mut aggregation = strategy.begin(&round(&global)).expect("begin");
        assert_eq!(aggregation.instructions().statistics.len(), 2);
        // Target: n at mean 1, variance 4 in every channel; m at 3, 9.
        let mut first = both((&[1.0; 3], &[4.0; 3]), (3.0, 9.0), 1.0);
        first.params = Some(global.clone());
        aggregation.add(first).expect("exchange 0");

        let pass = aggregation.advance().expect("advance").expect("n");
        assert_eq!(pass.exchange, 1);
        assert_eq!(pass.statistics, vec![StatisticRequest::outputs("n", 3)]);
        // The pass asks for n alone: m is refused as unrequested.
        let err = aggregation
            .add(both((&[0.0; 3], &[1.0; 3]), (0.0, 1.0), 1.0))
            .expect_err("m was not asked");
        assert!(
            err.to_string().contains("`outputs:m` was not requested"),
            "{err}"
        );
        aggregation
            .add(update(None, 1.0, outputs(&[0.0; 3], &[1.0; 3])))
            .expect("n measured");

        let pass = aggregation.advance().expect("advance").expect("m");
        assert_eq!(pass.exchange, 2);
        assert_eq!(pass.statistics, vec![StatisticRequest::outputs("m", 1)]);
        // m is measured in the model whose n is already corrected.
        let model = pass.model.expect("model");
        close(model.get("n.weight").expect("w").data(), &[2.0; 3]);
        close(model.get("n.bias").expect("b").data(), &[1.0; 3]);
        close(model.get("m.weight").expect("w").data(), &[1.0]);
        let mut m = update(None, 1.0, outputs(&[1.0], &[1.0]));
        m.statistics = BTreeMap::from([("outputs:m".to_owned(), outputs(&[1.0], &[1.0]))]);
        aggregation.add(m).expect("m measured");
        assert!(aggregation.advance().expect("advance").is_none());
        let merged = aggregation.finish().expect("finish").merged;
        close(merged.get("m.weight").expect("w").data(), &[3.0]);
        close(merged.get("m.bias").expect("b").data(), &[0.0]);
        close(merged.get("n.weight").expect("w").data(), &[2.0; 3]);
    }

    #[test]
    fn an_unanswered_sequential_pass_ends_the_round_with_what_was_corrected() {
        let global = two_norms();
        let strategy = repair(Arc::new(WeightedAverage), RepairMode::Sequential);
        let mut aggregation = strategy.begin(&round(&global)).expect("begin");
        let mut first = both((&[1.0; 3], &[4.0; 3]), (3.0, 9.0), 1.0);
        first.params = Some(global.clone());
        aggregation.add(first).expect("exchange 0");
        aggregation.advance().expect("advance").expect("n");
        // Nobody measures n: m is not asked for, nothing changes.
        assert!(aggregation.advance().expect("advance").is_none());
        assert_eq!(aggregation.finish().expect("finish").merged, global);
    }

    #[test]
    fn norms_are_one_dimensional_weights_with_a_bias_of_their_size() {
        let mut p = ParamSet::new();
        for (name, shape) in [
            ("conv.weight", vec![4, 3, 3, 3]),
            ("conv.bias", vec![4]),
            ("bn.weight", vec![4]),
            ("bn.bias", vec![4]),
            ("bn.running_mean", vec![4]),
            ("bn.running_var", vec![4]),
            ("ln.weight", vec![4]),
            ("ln.bias", vec![4]),
            ("lonely.weight", vec![4]),
            ("odd.weight", vec![4]),
            ("odd.bias", vec![5]),
            ("fc.weight", vec![2, 4]),
            ("fc.bias", vec![2]),
        ] {
            p.insert(name, ParamTensor::zeros(shape)).expect("insert");
        }
        assert_eq!(
            norm_layers(&p),
            vec![
                StatisticRequest::outputs("bn", 4),
                StatisticRequest::outputs("ln", 4)
            ]
        );
        let found = StatisticRequest::parse_outputs("outputs:ln", &p).expect("ln");
        assert_eq!(found.name(), "outputs:ln");
        for bad in ["outputs:fc", "outputs:lonely", "moments:bn"] {
            assert!(StatisticRequest::parse_outputs(bad, &p).is_err(), "{bad}");
        }
        let linear = StatisticRequest::parse("outputs:ln", &p).expect_err("not linear");
        assert!(linear.to_string().contains("norm's moments"), "{linear}");
    }
}
