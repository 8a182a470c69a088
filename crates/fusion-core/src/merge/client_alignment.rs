use std::collections::HashMap;

use super::{AlignToReference, MergeError, ModelReport, PermMoved, RunningSum, StatisticTensor};
use crate::params::ParamSet;
use crate::perm::Permutation;
use crate::spec::{LinearLayer, ValidatedSpec};

/// Layer-wise least squares started from an alignment: exchange 0's
/// client models are weight-matched to the largest client, and every
/// cross term a client sends (in any exchange) has its output columns put
/// in that client's aligned order, as if the client had permuted its own
/// model first. Gram matrices need nothing: their rows are the merged
/// model's inputs, the same for every client.
///
/// The largest client is known only when exchange 0 ends, so exchange 0
/// keeps each client's weights and layer-0 cross term until then (memory:
/// one model and one cross term per client, in that exchange only). After
/// it, one permutation list per client.
pub(crate) struct ClientAlignment<'s> {
    aligner: &'s AlignToReference,
    /// Exchange 0's updates, in arrival order, until they are aligned.
    held: Vec<Held>,
    /// Checks each model's layout on arrival.
    layout: RunningSum,
    /// Once aligned: the spec and each client's permutations.
    aligned: Option<(ValidatedSpec, HashMap<String, Vec<Permutation>>)>,
}

struct Held {
    client: String,
    params: ParamSet,
    weight: f64,
    cross: StatisticTensor,
}

/// What aligning exchange 0 gives the strategy: the weighted sum of the
/// aligned models, and per client (in arrival order) its report and its
/// layer-0 cross term in aligned order.
pub(crate) struct Aligned {
    pub(crate) sum: RunningSum,
    pub(crate) reports: Vec<ModelReport>,
    pub(crate) crosses: Vec<StatisticTensor>,
}

impl<'s> ClientAlignment<'s> {
    pub(crate) fn new(aligner: &'s AlignToReference) -> Self {
        Self {
            aligner,
            held: Vec::new(),
            layout: RunningSum::new(),
            aligned: None,
        }
    }

    /// Keeps an exchange-0 update until [`ClientAlignment::align`]. The
    /// caller has checked it against the instructions; this checks the
    /// layout and that the client is named, once.
    pub(crate) fn hold(
        &mut self,
        client: Option<&str>,
        params: &ParamSet,
        weight: f64,
        cross: &StatisticTensor,
    ) -> Result<(), MergeError> {
        let client = named(client)?;
        if self.held.iter().any(|h| h.client == client) {
            return Err(MergeError::BadUpdate(format!(
                "client `{client}` already sent its weights in exchange 0"
            )));
        }
        self.layout.add(params, weight)?;
        self.held.push(Held {
            client: client.to_owned(),
            params: params.clone(),
            weight,
            cross: cross.clone(),
        });
        Ok(())
    }

    /// Whether exchange 0 is still being held (not yet aligned).
    pub(crate) fn pending(&self) -> bool {
        self.aligned.is_none() && !self.held.is_empty()
    }

    /// Aligns every held model to the one with the most weight (ties go
    /// to the first to arrive), folding each into the sum as soon as it
    /// is aligned (never all aligned models at once), and puts each
    /// layer-0 cross term in its client's aligned order.
    pub(crate) fn align(&mut self, first: &LinearLayer) -> Result<Aligned, MergeError> {
        let largest = self
            .held
            .iter()
            .enumerate()
            .max_by(|(i, a), (j, b)| a.weight.total_cmp(&b.weight).then(j.cmp(i)))
            .map(|(i, _)| i)
            .ok_or(MergeError::NoModels)?;
        let reference = &self.held[largest].params;
        let spec = self.aligner.spec.resolve(reference)?;
        let count = self.held.len();
        let mut out = Aligned {
            sum: RunningSum::new(),
            reports: Vec::with_capacity(count),
            crosses: Vec::with_capacity(count),
        };
        let mut perms = HashMap::with_capacity(count);
        for (index, h) in self.held.iter().enumerate() {
            let (found, report) = if index == largest {
                out.sum.add(&h.params, h.weight)?;
                let identity = spec.identity();
                let report = ModelReport {
                    index,
                    weight: h.weight,
                    moved: PermMoved::list(&spec, &identity),
                    perms: identity.clone(),
                    ..ModelReport::default()
                };
                (identity, report)
            } else {
                let (model, found, report) = self
                    .aligner
                    .align(&spec, reference, &h.params, index, h.weight)?;
                out.sum.add(&model, h.weight)?;
                (found, report)
            };
            out.crosses
                .push(permute_outputs(&spec, &found, first, &h.cross)?);
            out.reports.push(report);
            perms.insert(h.client.clone(), found);
        }
        self.held = Vec::new();
        self.layout = RunningSum::new();
        self.aligned = Some((spec, perms));
        Ok(out)
    }

    /// A later exchange's cross term of `layer` from `client`, in that
    /// client's aligned order. A client that sent no weights in exchange
    /// 0 has no alignment and is refused.
    pub(crate) fn cross_in_aligned_order(
        &self,
        client: Option<&str>,
        layer: &LinearLayer,
        cross: &StatisticTensor,
    ) -> Result<StatisticTensor, MergeError> {
        let client = named(client)?;
        let (spec, perms) = self.aligned.as_ref().ok_or_else(|| {
            MergeError::BadUpdate("exchange 0 of this round has not been aligned".into())
        })?;
        let found = perms.get(client).ok_or_else(|| {
            MergeError::BadUpdate(format!(
                "client `{client}` sent no weights in exchange 0 of this round"
            ))
        })?;
        permute_outputs(spec, found, layer, cross)
    }
}

fn named(client: Option<&str>) -> Result<&str, MergeError> {
    client.ok_or_else(|| {
        MergeError::BadUpdate(
            "layerwise with alignment follows each client across exchanges, but the update names no client".into(),
        )
    })
}

/// `cross` (`[k, out]`) with its columns in the order the permutation of
/// `layer`'s output units gives: column `j` of the result is column
/// `perm[j]` of `cross`, as unit `j` of the aligned model is unit
/// `perm[j]` of the client's. A layer whose outputs no permutation moves
/// (the last) is unchanged.
fn permute_outputs(
    spec: &ValidatedSpec,
    perms: &[Permutation],
    layer: &LinearLayer,
    cross: &StatisticTensor,
) -> Result<StatisticTensor, MergeError> {
    let Some(order) = spec.acting_on(&layer.weight, 0).and_then(|p| perms.get(p)) else {
        return Ok(cross.clone());
    };
    let out = layer.outputs;
    if order.len() != out || !cross.numel().is_multiple_of(out.max(1)) {
        return Err(MergeError::BadUpdate(format!(
            "the cross term of `{}` does not fit its {out} outputs",
            layer.name
        )));
    }
    let mut data = Vec::with_capacity(cross.numel());
    for row in cross.data().chunks_exact(out) {
        data.extend(order.as_slice().iter().map(|&src| row[src]));
    }
    StatisticTensor::new(&layer.name, cross.shape().to_vec(), data)
        .map_err(|e| MergeError::BadUpdate(e.to_string()))
}
