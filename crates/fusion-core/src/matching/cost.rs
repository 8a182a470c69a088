//! Cost (similarity) matrices of weight matching, computed with burn tensors
//! on whichever device the caller chose.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::MatchError;
use crate::params::{ParamSet, ParamTensor};
use crate::perm::{PermError, Permutation};
use crate::spec::ValidatedSpec;

/// A term and the versions of the permutations it was computed with.
type CachedTerm = Option<(Vec<u64>, Tensor<2>)>;

/// Holds both models on the device for the whole matching run, so each
/// cost matrix costs only the matrix products, not the uploads.
pub(crate) struct CostBuilder<'s> {
    spec: &'s ValidatedSpec,
    device: Device,
    /// Per permutation, per (tensor, axis) entry: A's tensor with that axis
    /// moved to the front and the rest flattened, `[n, k]`. Fixed for the run.
    a_rows: Vec<Vec<Tensor<2>>>,
    /// B's spec tensors, flat, in `spec.tensors()` order.
    b_flat: Vec<Tensor<1>>,
    /// Per permutation, per entry: the last term computed and the versions
    /// of the other permutations on that tensor it was computed with. A
    /// term whose tensor has no other changed permutation (the first
    /// layer's input side, the last layer's output side) is reused.
    terms: Vec<Vec<CachedTerm>>,
    /// Whether `terms` may be reused (off to measure the paper's loop).
    reuse: bool,
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
            b_flat,
            terms,
            reuse,
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
            let key: Vec<u64> = self.spec.tensors()[ti]
                .perm_of_axis
                .iter()
                .flatten()
                .filter(|&&q| q != p)
                .map(|&q| versions[q])
                .collect();
            let term = match &self.terms[p][entry] {
                Some((seen, term)) if self.reuse && *seen == key => term.clone(),
                _ => {
                    let term = self.term(p, entry, ti, axis, perms);
                    self.terms[p][entry] = Some((key, term.clone()));
                    term
                }
            };
            total = Some(match total {
                Some(t) => t + term,
                None => term,
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
        let (pre, n, post) = crate::params::split_shape(shape, axis);
        let indices: Vec<i64> = perm.as_slice().iter().map(|&i| i as i64).collect();
        let indices = Tensor::<1, Int>::from_data(TensorData::new(indices, [n]), &self.device);
        flat.reshape([pre, n, post])
            .select(1, indices)
            .reshape([pre * n * post])
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
