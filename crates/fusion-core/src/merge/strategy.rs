use std::collections::BTreeMap;
use std::sync::Arc;

use super::statistics::{StatisticKind, StatisticRequest, check_gram, check_moments};
use super::{MergeError, MergeOutcome, ModelReport, StatisticTensor, StrategyKind};
use crate::params::ParamSet;

/// How a set of models becomes one: the concept users choose by name
/// ([`StrategyKind`]) and [`StrategyConfig`](super::StrategyConfig) builds.
/// FedAvg, align-to-reference, MergeMany, RegMean and layer-wise least
/// squares implement it; the offline `fusion merge`, `fusion simulate` and
/// the federated server drive strategies only through this trait.
///
/// Like Flower's `Strategy`, it holds no transport and does no I/O: the
/// round loop lives elsewhere. A strategy decides what clients compute and
/// send ([`Aggregation::instructions`], one or more exchanges per round)
/// and how what they send combines. Aggregation is incremental
/// ([`Strategy::begin`], then [`Aggregation::add`] per update) so a server
/// can fold updates in as they arrive.
pub trait Strategy: Send + Sync {
    /// Which strategy this is, as named on the command line.
    fn kind(&self) -> StrategyKind;

    /// Starts one round's aggregation.
    fn begin(&self, round: &RoundContext) -> Result<Box<dyn Aggregation + '_>, MergeError>;

    /// Merges `models` (with their weights) in one call: the offline path
    /// for strategies that need nothing but weights. A strategy that needs
    /// client statistics refuses with [`MergeError::NeedsStatistics`].
    fn merge(
        &self,
        round: &RoundContext,
        models: &[(ParamSet, f64)],
    ) -> Result<MergeOutcome, MergeError> {
        let mut aggregation = self.begin(round)?;
        if !aggregation.instructions().statistics.is_empty() {
            return Err(MergeError::NeedsStatistics(self.kind()));
        }
        for (model, weight) in models {
            aggregation.add(Update::weights(model.clone(), *weight))?;
        }
        if aggregation.advance()?.is_some() {
            return Err(MergeError::NeedsStatistics(self.kind()));
        }
        aggregation.finish()
    }
}

/// What a round starts from, as the round loop knows it.
#[derive(Clone, Debug, Default)]
pub struct RoundContext {
    /// The round's global model, if the run has one yet.
    pub global: Option<Arc<ParamSet>>,
    /// Whether clients train from their own initialisations this round
    /// (cold start, one-shot): their models are then unrelated to
    /// `global`, and aligning strategies do not use it as the reference.
    pub from_own_init: bool,
}

/// What clients do and send in one exchange of a round. Exchange 0 always
/// exists; a strategy that needs more (layer-wise least squares: one per
/// layer) opens them with [`Aggregation::advance`].
#[derive(Clone, Debug, PartialEq)]
pub struct Instructions {
    /// The exchange, from 0.
    pub exchange: u32,
    /// Whether clients train first (only exchange 0 trains).
    pub train: bool,
    /// Whether the update carries the client's model weights.
    pub send_weights: bool,
    /// Statistics of the client's data to send (on the wire sorted by
    /// name, whatever this order).
    pub statistics: Vec<StatisticRequest>,
    /// The model whose layer inputs the statistics are computed with
    /// (`x̃` in [`StatisticRequest`]); `None` means the client's own model.
    pub model: Option<Arc<ParamSet>>,
    /// Whether the exchange may end at its deadline with fewer updates than
    /// a round needs, even none: the merge is already made and the
    /// exchange only refines it (BatchNorm statistics), so losing the
    /// round's training to clients that cannot answer would lose more
    /// than it saves.
    pub optional: bool,
}

impl Instructions {
    /// Exchange 0 of a weights-only strategy: train, send the weights.
    pub fn train_and_send_weights() -> Self {
        Self {
            exchange: 0,
            train: true,
            send_weights: true,
            statistics: Vec::new(),
            model: None,
            optional: false,
        }
    }

    /// Checks that `update` is what these instructions asked for: weights
    /// if and only if asked, exactly the requested statistics with their
    /// shapes, every value finite. Names the first thing that is wrong.
    pub fn check(&self, update: &Update) -> Result<(), MergeError> {
        match (&update.params, self.send_weights) {
            (None, true) => {
                return Err(MergeError::BadUpdate(
                    "the update carries no weights, but this exchange asks for them".into(),
                ));
            }
            (Some(_), false) => {
                return Err(MergeError::BadUpdate(
                    "the update carries weights, but this exchange asks only for statistics".into(),
                ));
            }
            _ => {}
        }
        for name in update.statistics.keys() {
            if !self.statistics.iter().any(|r| r.name() == *name) {
                return Err(MergeError::BadUpdate(format!(
                    "statistic `{name}` was not requested in exchange {}",
                    self.exchange
                )));
            }
        }
        check_requested(&self.statistics, update)
    }

    /// For an exchange that only sums what clients measure (BatchNorm
    /// moments, REPAIR's passes): checks `update` as
    /// [`Instructions::check`] does, and its weight (`index` names it in
    /// the error), and returns every requested statistic's values in
    /// request order, so the caller folds an update in whole or not.
    pub(crate) fn measured<'u>(
        &self,
        update: &'u Update,
        index: usize,
    ) -> Result<Vec<&'u [f64]>, MergeError> {
        self.check(update)?;
        if !(update.weight.is_finite() && update.weight > 0.0) {
            return Err(MergeError::BadWeight {
                model: index,
                weight: update.weight,
            });
        }
        requested_values(&self.statistics, update)
    }
}

/// Each of `requests`' values in `update`, in request order; an error
/// names the first missing.
pub(crate) fn requested_values<'u>(
    requests: &[StatisticRequest],
    update: &'u Update,
) -> Result<Vec<&'u [f64]>, MergeError> {
    requests
        .iter()
        .map(|request| {
            let name = request.name();
            update
                .statistics
                .get(&name)
                .map(|t| t.data())
                .ok_or_else(|| MergeError::BadUpdate(format!("statistic `{name}` is missing")))
        })
        .collect()
}

/// Checks that `update` carries each of `requests` with its shape, every
/// value finite and, by kind, a Gram matrix that could be one or no
/// negative variance. Names the first thing that is wrong. (Statistics
/// beyond `requests` are [`Instructions::check`]'s business.)
pub(crate) fn check_requested(
    requests: &[StatisticRequest],
    update: &Update,
) -> Result<(), MergeError> {
    for request in requests {
        let name = request.name();
        let tensor = update
            .statistics
            .get(&name)
            .ok_or_else(|| MergeError::BadUpdate(format!("statistic `{name}` is missing")))?;
        if tensor.shape() != request.shape.as_slice() {
            return Err(MergeError::BadUpdate(format!(
                "statistic `{name}` has shape {:?}, expected {:?}",
                tensor.shape(),
                request.shape
            )));
        }
        if let Some((index, value)) = tensor.first_non_finite() {
            return Err(MergeError::BadUpdate(format!(
                "statistic `{name}` holds {value} at element {index}"
            )));
        }
        match request.kind {
            StatisticKind::Gram => {
                let k = request.augmented_inputs;
                check_gram(&name, tensor.data(), k, request.bias, update.weight)
                    .map_err(MergeError::BadUpdate)?;
            }
            StatisticKind::Moments | StatisticKind::Outputs => {
                check_moments(&name, tensor.data()).map_err(MergeError::BadUpdate)?;
            }
            StatisticKind::Cross => {}
        }
    }
    Ok(())
}

/// One client's contribution to an exchange: its weights (when the
/// exchange asks for them), its weight in averages (examples), and the
/// statistics the exchange asked for, by [`StatisticRequest::name`].
#[derive(Clone, Debug, Default)]
pub struct Update {
    /// Who sent it, for a strategy that follows a client from one
    /// exchange to the next (`layerwise` with alignment keeps each
    /// client's permutation). The server sets the authenticated client
    /// id; offline merges leave it `None`.
    pub client: Option<String>,
    /// The client's model, in exchanges that send weights.
    pub params: Option<ParamSet>,
    /// Its weight in averages (training examples).
    pub weight: f64,
    /// Requested statistics, by name.
    pub statistics: BTreeMap<String, StatisticTensor>,
}

impl Update {
    /// An update of weights only.
    pub fn weights(params: ParamSet, weight: f64) -> Self {
        Self {
            client: None,
            params: Some(params),
            weight,
            statistics: BTreeMap::new(),
        }
    }

    /// The weights, or the error a weights-only strategy gives without them.
    pub(crate) fn require_params(&self) -> Result<&ParamSet, MergeError> {
        self.params
            .as_ref()
            .ok_or_else(|| MergeError::BadUpdate("the update carries no weights".into()))
    }
}

/// One aggregation in progress.
pub trait Aggregation: Send {
    /// What clients must compute and send in the current exchange.
    fn instructions(&self) -> Instructions {
        Instructions::train_and_send_weights()
    }

    /// Folds in one update of the current exchange. On error the
    /// aggregation is unchanged, so a bad update can be dropped and the
    /// others still merged.
    fn add(&mut self, update: Update) -> Result<ModelReport, MergeError>;

    /// Updates folded in so far in the current exchange.
    fn count(&self) -> usize;

    /// Ends the current exchange. Returns the next exchange's instructions
    /// when the strategy needs another one, `None` when it can finish.
    fn advance(&mut self) -> Result<Option<Instructions>, MergeError> {
        Ok(None)
    }

    /// The merged model.
    fn finish(self: Box<Self>) -> Result<MergeOutcome, MergeError>;
}
