use serde::Serialize;

use crate::params::ParamSet;
use crate::perm::Permutation;
use crate::spec::ValidatedSpec;

/// How many units one permutation moved.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PermMoved {
    /// Permutation name.
    pub name: String,
    /// Units that changed place.
    pub moved: usize,
    /// Units in the layer.
    pub size: usize,
}

impl PermMoved {
    /// Fraction of the layer's units that moved.
    pub fn fraction(&self) -> f64 {
        if self.size == 0 {
            0.0
        } else {
            self.moved as f64 / self.size as f64
        }
    }

    /// One entry per permutation of `spec`.
    pub fn list(spec: &ValidatedSpec, perms: &[Permutation]) -> Vec<PermMoved> {
        spec.names()
            .iter()
            .zip(perms)
            .map(|(name, p)| PermMoved {
                name: name.clone(),
                moved: p.moved(),
                size: p.len(),
            })
            .collect()
    }
}

/// What a strategy did with one model: its weight and, for aligning
/// strategies, how far it had to be permuted. This is what Fusion reports
/// per client per round, so users can see whether alignment mattered.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ModelReport {
    /// Position of the model in the order it was added.
    pub index: usize,
    /// Its weight in the average.
    pub weight: f64,
    /// Units moved per permutation; empty for plain averaging.
    pub moved: Vec<PermMoved>,
    /// Weight-matching sweeps (0 for plain averaging).
    pub sweeps: usize,
    /// ⟨reference, model⟩ before alignment, if aligned.
    pub objective_before: Option<f64>,
    /// ⟨reference, aligned model⟩ after alignment, if aligned.
    pub objective_after: Option<f64>,
    /// The permutations that aligned it, one per permutation of the spec
    /// in the spec's order (unit `j` of the aligned model is unit
    /// `perms[p][j]` of this one); empty when the strategy does not
    /// permute. What a later step needs to put this client's per-unit
    /// statistics in the merged model's order ([`super::Repair`]). Not
    /// reported: hundreds of indices per layer say less than `moved`.
    #[serde(skip)]
    pub perms: Vec<Permutation>,
}

/// The merged model and a report per input model.
#[derive(Clone, Debug)]
pub struct MergeOutcome {
    /// The merged parameters.
    pub merged: ParamSet,
    /// One report per model, in the order added.
    pub reports: Vec<ModelReport>,
    /// Alignment passes over all models (MergeMany); 1 or 0 otherwise.
    pub passes: usize,
}
