use burn::tensor::Device;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::MatchError;
use super::cost::CostBuilder;
use crate::lap::{LapSolver, Sense};
use crate::params::{ParamSet, dot_f64 as dot};
use crate::perm::Permutation;
use crate::spec::ValidatedSpec;

/// Knobs of [`weight_matching`].
#[derive(Clone, Debug, PartialEq)]
pub struct MatchOptions {
    /// Seeds the random order of permutations in each sweep; the same seed
    /// gives the same result.
    pub seed: u64,
    /// Upper bound on sweeps; matching usually stops well before.
    pub max_sweeps: usize,
    /// Starting permutations (warm start), one per spec permutation;
    /// identities when `None`.
    pub init: Option<Vec<Permutation>>,
    /// Seed each assignment solve with the prices of the same permutation's
    /// previous solve. Exact either way; off only to measure the win.
    pub warm_start: bool,
    /// Skip a permutation whose neighbours have not changed since its last
    /// solve, and reuse cost-matrix terms whose inputs have not changed.
    /// Exact either way; off only to measure the win.
    pub reuse_unchanged: bool,
    /// Skip matching when B equals A on every permuted tensor (the
    /// identity is then optimal); when a neighbouring permutation moved
    /// only a few units, correct the cached cost term by a rank-k product
    /// instead of recomputing it; and skip the assignment solve when the
    /// previous solve's prices prove the current assignment still
    /// optimal. Exact up to f32 rounding of the cost matrices; off only
    /// to measure the win. The corrections need `reuse_unchanged` (they
    /// start from cached terms).
    pub incremental: bool,
}

impl Default for MatchOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            max_sweeps: 100,
            init: None,
            warm_start: true,
            reuse_unchanged: true,
            incremental: true,
        }
    }
}

/// What [`weight_matching`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct MatchResult {
    /// One permutation per spec permutation, in spec order. Applying them to
    /// B (with [`ValidatedSpec::apply`]) aligns it to A.
    pub perms: Vec<Permutation>,
    /// ⟨A, π(B)⟩ over all tensors, before any sweep (with the initial
    /// permutations).
    pub initial_objective: f64,
    /// The same objective after each sweep; never decreasing.
    pub objective: Vec<f64>,
    /// Sweeps run.
    pub sweeps: usize,
    /// Assignment problems solved.
    pub solves: usize,
    /// Solves skipped because no neighbouring permutation had changed.
    pub skipped: usize,
    /// Solves skipped because the previous prices proved the current
    /// assignment still optimal for the new costs.
    pub certified: usize,
    /// Cost terms brought up to date by a rank-k correction instead of a
    /// full product.
    pub corrected: usize,
}

impl MatchResult {
    /// A result with no sweep run yet.
    fn before_sweeps(perms: Vec<Permutation>, initial_objective: f64) -> Self {
        Self {
            perms,
            initial_objective,
            objective: Vec::new(),
            sweeps: 0,
            solves: 0,
            skipped: 0,
            certified: 0,
            corrected: 0,
        }
    }

    /// The objective at the end: after the last sweep, or the initial one
    /// when no sweep was needed.
    pub fn final_objective(&self) -> f64 {
        self.objective
            .last()
            .copied()
            .unwrap_or(self.initial_objective)
    }
}

/// Finds permutations of B's units that maximise ⟨A, π(B)⟩, by coordinate
/// descent: each step fixes all permutations but one and solves a linear
/// assignment problem for that one exactly.
///
/// Each sweep visits the permutations in a fresh random order (seeded by
/// `options.seed`). A permutation is re-solved only if a neighbour (one
/// sharing a tensor) changed since its last solve; otherwise its cost matrix,
/// and so its answer, would be the same. A new permutation is adopted only
/// if it strictly improves the objective, so ties cannot cycle. Matching
/// stops after a sweep with no improvement, or at `options.max_sweeps`.
///
/// When B equals A on every tensor the spec permutes (and
/// `options.incremental` is on), no sweep runs: by
/// Cauchy–Schwarz, ⟨A, π(A)⟩ ≤ ‖A‖‖π(A)‖ = ‖A‖², so the identity is the
/// global optimum (a federated client that uploads the global model
/// unchanged costs one comparison, not a matching).
///
/// Cost matrices are computed on `device` (CPU or GPU); the assignments are
/// solved on the CPU, warm-started from the previous sweep's prices.
pub fn weight_matching(
    spec: &ValidatedSpec,
    a: &ParamSet,
    b: &ParamSet,
    device: &Device,
    options: &MatchOptions,
) -> Result<MatchResult, MatchError> {
    for (model, set) in [a, b].into_iter().enumerate() {
        spec.check_layout(set)
            .map_err(|source| MatchError::Spec { model, source })?;
        set.check_finite()
            .map_err(|source| MatchError::Params { model, source })?;
    }
    let mut perms = match &options.init {
        Some(init) => {
            spec.check_perms(init)?;
            init.clone()
        }
        None => spec.identity(),
    };
    let mut objective = Objective::new(spec, a, b);
    if options.incremental && spec_tensors_equal(spec, a, b) {
        let perms = spec.identity();
        let initial_objective = objective.value(&perms, &vec![0; spec.len()])?;
        return Ok(MatchResult::before_sweeps(perms, initial_objective));
    }
    let mut costs = CostBuilder::new(
        spec,
        a,
        b,
        device,
        options.reuse_unchanged,
        options.incremental,
    )?;
    let mut solvers = vec![LapSolver::new(); spec.len()];
    let mut version = vec![0u64; spec.len()];
    let mut solved_at: Vec<Option<Vec<u64>>> = vec![None; spec.len()];
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut order: Vec<usize> = (0..spec.len()).collect();

    let initial_objective = objective.value(&perms, &version)?;
    let mut result = MatchResult::before_sweeps(Vec::new(), initial_objective);
    for sweep in 1..=options.max_sweeps {
        order.shuffle(&mut rng);
        let mut improved = false;
        for &p in &order {
            let seen: Vec<u64> = spec.neighbours(p).iter().map(|&q| version[q]).collect();
            if options.reuse_unchanged && solved_at[p].as_ref() == Some(&seen) {
                result.skipped += 1;
                continue;
            }
            let n = spec.sizes()[p];
            let sim = costs.similarity(p, &perms, &version)?;
            let current: f64 = perms[p]
                .as_slice()
                .iter()
                .enumerate()
                .map(|(i, &j)| f64::from(sim[i * n + j]))
                .sum();
            if options.incremental
                && solvers[p].certifies(&sim, n, Sense::Maximize, perms[p].as_slice())
            {
                // The current assignment is optimal for the new costs: the
                // solve could not improve it.
                result.certified += 1;
                solved_at[p] = Some(seen);
                continue;
            }
            if !options.warm_start {
                solvers[p].reset();
            }
            let best = solvers[p]
                .solve(&sim, n, Sense::Maximize)
                .map_err(|source| MatchError::Lap {
                    perm: spec.names()[p].clone(),
                    source,
                })?;
            result.solves += 1;
            solved_at[p] = Some(seen);
            if best.total > current + 1e-12 * current.abs().max(1e-300) {
                perms[p] = Permutation::from_vec(&spec.names()[p], best.row_to_col)?;
                version[p] += 1;
                improved = true;
            }
        }
        result.sweeps = sweep;
        result.objective.push(objective.value(&perms, &version)?);
        if !improved {
            break;
        }
    }
    result.perms = perms;
    result.corrected = costs.corrected;
    Ok(result)
}

/// Whether A and B hold the same values in every tensor the spec permutes
/// (both were checked against the spec and for finiteness).
fn spec_tensors_equal(spec: &ValidatedSpec, a: &ParamSet, b: &ParamSet) -> bool {
    spec.tensors()
        .iter()
        .all(|t| match (a.get(&t.name), b.get(&t.name)) {
            (Some(x), Some(y)) => x.data() == y.data(),
            _ => false,
        })
}

/// ⟨A, π(B)⟩ over all tensors, in `f64`, recomputing after each sweep
/// only the tensors whose permutations changed.
struct Objective<'a> {
    spec: &'a ValidatedSpec,
    a: &'a ParamSet,
    b: &'a ParamSet,
    /// ⟨A, B⟩ over the tensors no permutation touches: a constant.
    fixed: f64,
    /// Per spec tensor: the versions of its permutations and its product.
    cached: Vec<Option<(Vec<u64>, f64)>>,
}

impl<'a> Objective<'a> {
    fn new(spec: &'a ValidatedSpec, a: &'a ParamSet, b: &'a ParamSet) -> Self {
        let fixed = a
            .iter()
            .filter(|(name, _)| !spec.touches(name))
            .filter_map(|(name, t)| b.get(name).map(|u| dot(t.data(), u.data())))
            .sum();
        Self {
            spec,
            a,
            b,
            fixed,
            cached: vec![None; spec.tensors().len()],
        }
    }

    fn value(&mut self, perms: &[Permutation], versions: &[u64]) -> Result<f64, MatchError> {
        let mut total = self.fixed;
        for (ti, info) in self.spec.tensors().iter().enumerate() {
            // Out of the cost, so out of the objective it maximises.
            if super::cost::is_running_statistic(&info.name) {
                continue;
            }
            let key: Vec<u64> = info
                .perm_of_axis
                .iter()
                .flatten()
                .map(|&q| versions[q])
                .collect();
            let part = match &self.cached[ti] {
                Some((seen, part)) if *seen == key => *part,
                _ => {
                    let (pos, moved) = self.spec.permuted_tensor(self.b, ti, perms)?;
                    let part = dot(self.a.at(pos).data(), moved.data());
                    self.cached[ti] = Some((key, part));
                    part
                }
            };
            total += part;
        }
        Ok(total)
    }
}
