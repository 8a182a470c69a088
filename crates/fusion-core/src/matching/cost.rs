//! Cost (similarity) matrices of weight matching, computed with burn tensors
//! on whichever device the caller chose.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::MatchError;
use crate::params::{ParamSet, ParamTensor};
use crate::perm::{PermError, Permutation};
use crate::spec::ValidatedSpec;

/// Rank-k corrections a term may take before it is computed in full
/// again, bounding the f32 rounding that corrections accumulate.
const MAX_CORRECTIONS: usize = 16;

/// A correction pays when it touches at most this fraction of the other
/// permutation's units: it costs `k/n` of a full product, plus gathers.
const CORRECTION_FRACTION: usize = 3;

/// Whether `name` is a BatchNorm running statistic. Those move with their
/// channels (they are in the spec) but describe activations, not weights,
/// and their scale is unlike the weights': weight matching leaves them out
/// of the cost, as the paper's implementation does, where they are not
/// parameters at all.
pub fn is_running_statistic(name: &str) -> bool {
    name.ends_with(".running_mean") || name.ends_with(".running_var")
}

/// One cached (tensor, axis) term of a permutation's similarity matrix.
#[derive(Clone)]
struct CachedTerm {
    /// Versions of the tensor's other permutations it was computed with.
    key: Vec<u64>,
    /// The tensor's one other permutation, as it was, when there is
    /// exactly one: what a rank-k correction starts from.
    other: Option<Permutation>,
    /// Corrections applied since it was last computed in full.
    corrections: usize,
    value: Tensor<2>,
}

/// Holds both models on the device for the whole matching run, so each
/// cost matrix costs only the matrix products, not the uploads.
pub(crate) struct CostBuilder<'s> {
    spec: &'s ValidatedSpec,
    device: Device,
    /// Per permutation, per (tensor, axis) entry: A's tensor with that axis
    /// moved to the front and the rest flattened, `[n, k]`. Fixed for the run.
    a_rows: Vec<Vec<Tensor<2>>>,
    /// A's spec tensors, flat, in `spec.tensors()` order (for corrections).
    a_flat: Vec<Tensor<1>>,
    /// B's spec tensors, flat, in `spec.tensors()` order.
    b_flat: Vec<Tensor<1>>,
    /// Per permutation, per entry: the last term computed. A term whose
    /// tensor has no other changed permutation (the first layer's input
    /// side, the last layer's output side) is reused.
    terms: Vec<Vec<Option<CachedTerm>>>,
    /// Whether `terms` may be reused (off to measure the paper's loop).
    reuse: bool,
    /// Whether a term whose one other permutation moved a few units is
    /// corrected by a rank-k product instead of recomputed.
    correct: bool,
    /// Terms corrected rather than recomputed, for reports.
    pub(crate) corrected: usize,
}

impl<'s> CostBuilder<'s> {
    /// Uploads the spec's tensors of `a` and `b`. Both were checked against
    /// the spec by the caller.
    pub(crate) fn new(
        spec: &'s ValidatedSpec,
        a: &ParamSet,
        b: &ParamSet,
        device: &Device,
        reuse: bool,
        correct: bool,
    ) -> Result<Self, MatchError> {
        let upload_all = |set: &ParamSet| -> Result<Vec<Tensor<1>>, MatchError> {
            spec.tensors()
                .iter()
                .map(|t| {
                    set.get(&t.name)
                        .map(|x| upload(x, device))
                        .ok_or_else(|| PermError::MissingTensor(t.name.clone()).into())
                })
                .collect()
        };
        let a_flat = upload_all(a)?;
        let a_rows = (0..spec.len())
            .map(|p| {
                spec.axes_of(p)
                    .iter()
                    .map(|&(ti, axis)| {
                        rows_along(a_flat[ti].clone(), &spec.tensors()[ti].shape, axis)
                    })
                    .collect()
            })
            .collect();
        let b_flat = upload_all(b)?;
        let terms = (0..spec.len())
            .map(|p| vec![None; spec.axes_of(p).len()])
            .collect();
        Ok(Self {
            spec,
            device: device.clone(),
            a_rows,
            a_flat,
            b_flat,
            terms,
            reuse,
            correct: correct && reuse,
            corrected: 0,
        })
    }

    /// The `n x n` similarity matrix of permutation `p`, row-major:
    /// entry `(i, j)` is the inner product of A's unit `i` with B's unit `j`,
    /// summed over every tensor axis of `p`, with all other permutations in
    /// `perms` applied to B. `versions[q]` counts the changes of
    /// permutation `q`, so unchanged terms can be reused.
    pub(crate) fn similarity(
        &mut self,
        p: usize,
        perms: &[Permutation],
        versions: &[u64],
    ) -> Result<Vec<f32>, MatchError> {
        let mut total: Option<Tensor<2>> = None;
        for (entry, &(ti, axis)) in self.spec.axes_of(p).iter().enumerate() {
            let info = &self.spec.tensors()[ti];
            if is_running_statistic(&info.name) {
                continue;
            }
            // The tensor's axes permuted by permutations other than `p`.
            let others: Vec<(usize, usize)> = info
                .perm_of_axis
                .iter()
                .enumerate()
                .filter_map(|(other_axis, q)| q.filter(|&q| q != p).map(|q| (other_axis, q)))
                .collect();
            let key: Vec<u64> = others.iter().map(|&(_, q)| versions[q]).collect();
            let cached = self.terms[p][entry].take();
            let term = match cached {
                Some(c) if self.reuse && c.key == key => c,
                Some(c) if self.correct && others.len() == 1 => {
                    let (other_axis, q) = others[0];
                    match self.corrected_term(c, ti, axis, other_axis, &perms[q]) {
                        Some(mut c) => {
                            c.key = key;
                            c
                        }
                        None => self.full_term(p, entry, ti, axis, perms, key, &others),
                    }
                }
                _ => self.full_term(p, entry, ti, axis, perms, key, &others),
            };
            let value = term.value.clone();
            self.terms[p][entry] = Some(term);
            total = Some(match total {
                Some(t) => t + value,
                None => value,
            });
        }
        let Some(total) = total else {
            return Ok(Vec::new());
        };
        total
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| MatchError::Device(format!("{e:?}")))
    }

    /// A term computed in full, cached with what it was computed from.
    #[allow(clippy::too_many_arguments)] // the term's coordinates, all needed
    fn full_term(
        &self,
        p: usize,
        entry: usize,
        ti: usize,
        axis: usize,
        perms: &[Permutation],
        key: Vec<u64>,
        others: &[(usize, usize)],
    ) -> CachedTerm {
        CachedTerm {
            key,
            other: match others {
                [(_, q)] => Some(perms[*q].clone()),
                _ => None,
            },
            corrections: 0,
            value: self.term(p, entry, ti, axis, perms),
        }
    }

    /// `cached` brought up to date after the tensor's one other
    /// permutation became `now`, by a rank-k correction: only the `k`
    /// slices along `other_axis` whose source changed contribute,
    ///
    /// `term += A[.., C, ..] · (B[.., now(C), ..] − B[.., was(C), ..])ᵀ`
    ///
    /// (rows along `axis`), at `k/n` of a full product's cost. `None`
    /// when a full product is the better buy (many units moved, or the
    /// term has taken its share of corrections).
    fn corrected_term(
        &mut self,
        mut cached: CachedTerm,
        ti: usize,
        axis: usize,
        other_axis: usize,
        now: &Permutation,
    ) -> Option<CachedTerm> {
        let was = cached.other.as_ref()?;
        let changed: Vec<usize> = (0..now.len())
            .filter(|&o| was.as_slice().get(o) != now.as_slice().get(o))
            .collect();
        let k = changed.len();
        if k == 0 {
            return Some(cached);
        }
        if k * CORRECTION_FRACTION > now.len() || cached.corrections >= MAX_CORRECTIONS {
            return None;
        }
        let shape = &self.spec.tensors()[ti].shape;
        let mut sub_shape = shape.clone();
        sub_shape[other_axis] = k;
        let sources = |perm: &Permutation| -> Vec<usize> {
            changed.iter().map(|&o| perm.as_slice()[o]).collect()
        };
        let a = self.gather(self.a_flat[ti].clone(), shape, other_axis, &changed);
        let b_now = self.gather(self.b_flat[ti].clone(), shape, other_axis, &sources(now));
        let b_was = self.gather(self.b_flat[ti].clone(), shape, other_axis, &sources(was));
        let a_rows = rows_along(a, &sub_shape, axis);
        let diff_rows = rows_along(b_now - b_was, &sub_shape, axis);
        cached.value = cached.value + a_rows.matmul(diff_rows.transpose());
        cached.other = Some(now.clone());
        cached.corrections += 1;
        self.corrected += 1;
        Some(cached)
    }

    /// One (tensor, axis) term of permutation `p`'s similarity matrix: A's
    /// units along `axis` against B's, with B's other axes permuted.
    fn term(
        &self,
        p: usize,
        entry: usize,
        ti: usize,
        axis: usize,
        perms: &[Permutation],
    ) -> Tensor<2> {
        let info = &self.spec.tensors()[ti];
        let mut b = self.b_flat[ti].clone();
        for (other_axis, q) in info.perm_of_axis.iter().enumerate() {
            match *q {
                Some(q) if q != p && !perms[q].is_identity() => {
                    b = self.select(b, &info.shape, other_axis, &perms[q]);
                }
                _ => {}
            }
        }
        let b_rows = rows_along(b, &info.shape, axis);
        self.a_rows[p][entry].clone().matmul(b_rows.transpose())
    }

    /// `flat` (of shape `shape`) with `axis` reordered by `perm`.
    fn select(
        &self,
        flat: Tensor<1>,
        shape: &[usize],
        axis: usize,
        perm: &Permutation,
    ) -> Tensor<1> {
        self.gather(flat, shape, axis, perm.as_slice())
    }

    /// The slices of `flat` (of shape `shape`) along `axis` at `indices`,
    /// in that order, flat: `axis` becomes `indices.len()` long.
    fn gather(
        &self,
        flat: Tensor<1>,
        shape: &[usize],
        axis: usize,
        indices: &[usize],
    ) -> Tensor<1> {
        let (pre, n, post) = crate::params::split_shape(shape, axis);
        let k = indices.len();
        let indices: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
        let indices = Tensor::<1, Int>::from_data(TensorData::new(indices, [k]), &self.device);
        flat.reshape([pre, n, post])
            .select(1, indices)
            .reshape([pre * k * post])
    }
}

/// Moves `axis` of the flat tensor (of shape `shape`) to the front and
/// flattens the rest: `[n, k]`, one row per unit.
fn rows_along(flat: Tensor<1>, shape: &[usize], axis: usize) -> Tensor<2> {
    let (pre, n, post) = crate::params::split_shape(shape, axis);
    if pre == 1 {
        return flat.reshape([n, post]);
    }
    flat.reshape([pre, n, post])
        .swap_dims(0, 1)
        .reshape([n, pre * post])
}

fn upload(t: &ParamTensor, device: &Device) -> Tensor<1> {
    Tensor::<1>::from_data(TensorData::new(t.data().to_vec(), [t.numel()]), device)
}
