//! BatchNorm statistics for a federation's merged model.
//!
//! Any merge of BatchNorm networks (an average, an aligned average, a
//! least-squares solve) also averages their running means and variances,
//! which then no longer describe the merged network's activations: a
//! one-shot merge of ResNet-20s that should reach 50–80% scores at chance
//! (docs/experiments.md). Offline, `fusion merge --reset-bn-batches`
//! measures them again on training data; a server has no data, so
//! [`ReestimateBatchNorm`] asks the clients: one more exchange per round,
//! in which each runs the merged model over its own data and sends every
//! BatchNorm layer's per-channel input mean and variance
//! ([`StatisticKind::Moments`]), and the server writes their average,
//! weighted by examples, into the merged model.

use std::sync::Arc;

use super::statistics::batch_norm_layers;
use super::{
    Aggregation, Instructions, MergeError, MergeOutcome, ModelReport, RoundContext, Strategy,
    StrategyKind, Update,
};
use crate::params::ParamSet;

/// `inner`, followed in every round by an exchange that re-estimates the
/// merged model's BatchNorm statistics from the clients' data. A model
/// without BatchNorm (an MLP, a LayerNorm CNN) skips the exchange, so
/// wrapping costs nothing there. Offline merges ([`Strategy::merge`])
/// have no clients to ask and keep `inner`'s statistics.
pub struct ReestimateBatchNorm {
    /// The strategy that merges the weights.
    pub inner: Arc<dyn Strategy>,
}

impl Strategy for ReestimateBatchNorm {
    fn kind(&self) -> StrategyKind {
        self.inner.kind()
    }

    fn begin(&self, round: &RoundContext) -> Result<Box<dyn Aggregation + '_>, MergeError> {
        Ok(Box::new(Reestimating {
            stage: Stage::Merging(self.inner.begin(round)?),
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

/// Where a round of [`ReestimateBatchNorm`] is.
enum Stage<'s> {
    /// The inner strategy's exchanges.
    Merging(Box<dyn Aggregation + 's>),
    /// The moments exchange, after the inner strategy finished.
    Measuring(Moments),
    /// Nothing left to ask: the inner strategy's outcome as it is.
    Done(MergeOutcome),
    /// Only while moving between stages; an error there leaves it, and
    /// every later call says so.
    Failed,
}

/// The moments exchange: the merged model and the weighted sums so far.
struct Moments {
    outcome: MergeOutcome,
    instructions: Instructions,
    /// Per norm: Σ weight × [mean; variance].
    sums: Vec<Vec<f64>>,
    weight: f64,
    updates: usize,
}

impl Moments {
    /// The stage after the inner strategy finished with `outcome` in
    /// exchange `last`: the moments exchange for its BatchNorm layers, or
    /// done when it has none.
    fn stage_after<'s>(outcome: MergeOutcome, last: u32) -> Stage<'s> {
        let requests = batch_norm_layers(&outcome.merged);
        if requests.is_empty() {
            return Stage::Done(outcome);
        }
        let sums = requests.iter().map(|r| vec![0.0; 2 * r.shape[1]]).collect();
        let instructions = Instructions {
            exchange: last + 1,
            train: false,
            send_weights: false,
            statistics: requests,
            model: Some(Arc::new(outcome.merged.clone())),
            optional: true,
        };
        Stage::Measuring(Self {
            outcome,
            instructions,
            sums,
            weight: 0.0,
            updates: 0,
        })
    }

    fn add(&mut self, update: &Update) -> Result<ModelReport, MergeError> {
        let values = self.instructions.measured(update, self.updates)?;
        for (sum, values) in self.sums.iter_mut().zip(values) {
            for (s, v) in sum.iter_mut().zip(values) {
                *s += update.weight * v;
            }
        }
        self.weight += update.weight;
        self.updates += 1;
        Ok(ModelReport {
            index: self.updates - 1,
            weight: update.weight,
            ..ModelReport::default()
        })
    }

    /// The merged model with every norm's running statistics replaced by
    /// the clients' weighted means, or as merged if none answered.
    fn finish(self) -> Result<MergeOutcome, MergeError> {
        let mut outcome = self.outcome;
        if self.updates == 0 {
            return Ok(outcome);
        }
        for (request, sum) in self.instructions.statistics.iter().zip(&self.sums) {
            let channels = request.shape[1];
            for (row, suffix) in ["running_mean", "running_var"].iter().enumerate() {
                let name = format!("{}.{suffix}", request.layer);
                let at = outcome.merged.position(&name).ok_or_else(|| {
                    MergeError::BadUpdate(format!("the merged model lost `{name}`"))
                })?;
                let values = &sum[row * channels..(row + 1) * channels];
                for (target, s) in outcome.merged.at_mut(at).data_mut().iter_mut().zip(values) {
                    *target = (s / self.weight) as f32;
                }
            }
        }
        Ok(outcome)
    }
}

/// One round of [`ReestimateBatchNorm`].
struct Reestimating<'s> {
    stage: Stage<'s>,
}

impl Reestimating<'_> {
    fn failed() -> MergeError {
        MergeError::BadUpdate("an earlier step of this round failed".into())
    }
}

impl Aggregation for Reestimating<'_> {
    fn instructions(&self) -> Instructions {
        match &self.stage {
            Stage::Merging(inner) => inner.instructions(),
            Stage::Measuring(moments) => moments.instructions.clone(),
            Stage::Done(_) | Stage::Failed => Instructions::train_and_send_weights(),
        }
    }

    fn add(&mut self, update: Update) -> Result<ModelReport, MergeError> {
        match &mut self.stage {
            Stage::Merging(inner) => inner.add(update),
            Stage::Measuring(moments) => moments.add(&update),
            Stage::Done(_) => Err(MergeError::BadUpdate(
                "this round takes no more updates".into(),
            )),
            Stage::Failed => Err(Self::failed()),
        }
    }

    fn count(&self) -> usize {
        match &self.stage {
            Stage::Merging(inner) => inner.count(),
            Stage::Measuring(moments) => moments.updates,
            Stage::Done(_) | Stage::Failed => 0,
        }
    }

    fn advance(&mut self) -> Result<Option<Instructions>, MergeError> {
        let Stage::Merging(inner) = &mut self.stage else {
            // The moments exchange is the last one.
            return Ok(None);
        };
        if let Some(next) = inner.advance()? {
            return Ok(Some(next));
        }
        let last = inner.instructions().exchange;
        let Stage::Merging(inner) = std::mem::replace(&mut self.stage, Stage::Failed) else {
            return Err(Self::failed());
        };
        self.stage = Moments::stage_after(inner.finish()?, last);
        Ok(match &self.stage {
            Stage::Measuring(moments) => Some(moments.instructions.clone()),
            _ => None,
        })
    }

    fn finish(self: Box<Self>) -> Result<MergeOutcome, MergeError> {
        match self.stage {
            Stage::Merging(inner) => inner.finish(),
            Stage::Measuring(moments) => moments.finish(),
            Stage::Done(outcome) => Ok(outcome),
            Stage::Failed => Err(Self::failed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::merge::{StatisticRequest, StatisticTensor, WeightedAverage};
    use crate::params::ParamTensor;

    /// A linear layer and a BatchNorm of two channels, every value `v`.
    fn bn_model(v: f32) -> ParamSet {
        let mut p = ParamSet::new();
        for (name, shape) in [
            ("fc.weight", vec![2, 2]),
            ("bn.weight", vec![2]),
            ("bn.bias", vec![2]),
            ("bn.running_mean", vec![2]),
            ("bn.running_var", vec![2]),
        ] {
            let n = shape.iter().product();
            p.insert(name, ParamTensor::new(name, shape, vec![v; n]).expect("t"))
                .expect("insert");
        }
        p
    }

    fn moments(mean: [f64; 2], var: [f64; 2], weight: f64) -> Update {
        let values = vec![mean[0], mean[1], var[0], var[1]];
        let tensor = StatisticTensor::new("m", vec![2, 2], values).expect("t");
        Update {
            client: None,
            params: None,
            weight,
            statistics: BTreeMap::from([("moments:bn".to_owned(), tensor)]),
        }
    }

    fn strategy() -> ReestimateBatchNorm {
        ReestimateBatchNorm {
            inner: Arc::new(WeightedAverage),
        }
    }

    /// Exchange 0 of FedAvg (weights 1 and 3), then the moments exchange.
    fn merged_and_measuring(strategy: &ReestimateBatchNorm) -> Box<dyn Aggregation + '_> {
        let mut aggregation = strategy.begin(&RoundContext::default()).expect("begin");
        aggregation
            .add(Update::weights(bn_model(1.0), 1.0))
            .expect("a");
        aggregation
            .add(Update::weights(bn_model(5.0), 3.0))
            .expect("b");
        let next = aggregation.advance().expect("advance").expect("moments");
        assert_eq!(
            (next.exchange, next.train, next.send_weights),
            (1, false, false)
        );
        assert_eq!(next.statistics, vec![StatisticRequest::moments("bn", 2)]);
        let model = next.model.expect("the merged model travels");
        assert_eq!(model.get("fc.weight").expect("w").data(), &[4.0; 4]);
        aggregation
    }

    #[test]
    fn client_moments_replace_the_averaged_statistics_weighted_by_examples() {
        let strategy = strategy();
        let mut aggregation = merged_and_measuring(&strategy);
        aggregation
            .add(moments([1.0, 2.0], [3.0, 4.0], 1.0))
            .expect("a");
        aggregation
            .add(moments([5.0, 6.0], [7.0, 8.0], 3.0))
            .expect("b");
        assert_eq!(aggregation.count(), 2);
        assert!(aggregation.advance().expect("advance").is_none());
        let merged = aggregation.finish().expect("finish").merged;
        assert_eq!(
            merged.get("bn.running_mean").expect("m").data(),
            &[4.0, 5.0]
        );
        assert_eq!(merged.get("bn.running_var").expect("v").data(), &[6.0, 7.0]);
        // The weights are FedAvg's: the exchange changes statistics only.
        assert_eq!(merged.get("fc.weight").expect("w").data(), &[4.0; 4]);
        assert_eq!(merged.get("bn.weight").expect("w").data(), &[4.0; 2]);
    }

    #[test]
    fn bad_moments_are_refused_by_name_and_change_nothing() {
        let strategy = strategy();
        let mut aggregation = merged_and_measuring(&strategy);
        let err = |a: &mut Box<dyn Aggregation + '_>, u: Update| {
            a.add(u).expect_err("refused").to_string()
        };
        let negative = err(&mut aggregation, moments([1.0, 2.0], [3.0, -4.0], 1.0));
        assert!(
            negative.contains("negative variance -4 in channel 1"),
            "{negative}"
        );
        let mut wrong_shape = moments([1.0, 2.0], [3.0, 4.0], 1.0);
        wrong_shape.statistics.insert(
            "moments:bn".into(),
            StatisticTensor::new("m", vec![4], vec![1.0; 4]).expect("t"),
        );
        let shape = err(&mut aggregation, wrong_shape);
        assert!(shape.contains("has shape [4], expected [2, 2]"), "{shape}");
        let mut with_weights = moments([1.0, 2.0], [3.0, 4.0], 1.0);
        with_weights.params = Some(bn_model(9.0));
        let weights = err(&mut aggregation, with_weights);
        assert!(weights.contains("asks only for statistics"), "{weights}");
        let mut nan = moments([1.0, 2.0], [3.0, 4.0], 1.0);
        nan.statistics.get_mut("moments:bn").expect("m").data_mut()[0] = f64::NAN;
        assert!(err(&mut aggregation, nan).contains("holds NaN"));
        assert_eq!(aggregation.count(), 0);
        aggregation
            .add(moments([1.0, 2.0], [3.0, 4.0], 2.0))
            .expect("good");
        let merged = aggregation.finish().expect("finish").merged;
        assert_eq!(
            merged.get("bn.running_mean").expect("m").data(),
            &[1.0, 2.0]
        );
        assert_eq!(merged.get("bn.running_var").expect("v").data(), &[3.0, 4.0]);
    }

    #[test]
    fn without_answers_the_merged_statistics_stay() {
        let strategy = strategy();
        let aggregation = merged_and_measuring(&strategy);
        let merged = aggregation.finish().expect("finish").merged;
        assert_eq!(merged.get("bn.running_mean").expect("m").data(), &[4.0; 2]);
    }

    #[test]
    fn a_model_without_batch_norm_skips_the_exchange() {
        let model = |v: f32| {
            let mut p = ParamSet::new();
            p.insert(
                "fc.weight",
                ParamTensor::new("w", vec![2], vec![v; 2]).expect("t"),
            )
            .expect("insert");
            p
        };
        let strategy = strategy();
        let mut aggregation = strategy.begin(&RoundContext::default()).expect("begin");
        aggregation
            .add(Update::weights(model(1.0), 1.0))
            .expect("a");
        aggregation
            .add(Update::weights(model(3.0), 1.0))
            .expect("b");
        assert!(aggregation.advance().expect("advance").is_none());
        let merged = aggregation.finish().expect("finish").merged;
        assert_eq!(merged.get("fc.weight").expect("w").data(), &[2.0; 2]);
    }

    #[test]
    fn norms_are_found_by_their_running_statistics() {
        let mut model = bn_model(1.0);
        // A mean without a variance, and a variance of another size, are
        // not norms.
        model
            .insert("half.running_mean", ParamTensor::zeros(vec![3]))
            .expect("insert");
        model
            .insert("odd.running_mean", ParamTensor::zeros(vec![3]))
            .expect("insert");
        model
            .insert("odd.running_var", ParamTensor::zeros(vec![4]))
            .expect("insert");
        assert_eq!(
            batch_norm_layers(&model),
            vec![StatisticRequest::moments("bn", 2)]
        );
        let found = StatisticRequest::parse_moments("moments:bn", &model).expect("bn");
        assert_eq!(found.name(), "moments:bn");
        let missing = StatisticRequest::parse_moments("moments:half", &model).expect_err("half");
        assert!(
            missing.to_string().contains("names no BatchNorm layer"),
            "{missing}"
        );
        assert!(StatisticRequest::parse("moments:bn", &model).is_err());
    }
}
