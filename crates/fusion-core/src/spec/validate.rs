use std::borrow::Cow;

use super::{PermutationSpec, SpecError};
use crate::params::{ParamSet, ParamTensor};
use crate::perm::{PermError, Permutation};

/// The permutations that act on one tensor, axis by axis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TensorAxes {
    /// Tensor name.
    pub name: String,
    /// Its shape in the model the spec was validated against.
    pub shape: Vec<usize>,
    /// For each axis, the index of the permutation acting on it.
    pub perm_of_axis: Vec<Option<usize>>,
}

/// A spec checked against one model layout: every tensor exists, every axis
/// is in range, each permutation has one size, and no axis is claimed twice.
///
/// Matching and permuting take only this type, so those checks are done once
/// and the hot loops need no error paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatedSpec {
    names: Vec<String>,
    sizes: Vec<usize>,
    /// Per permutation: (index into `tensors`, axis).
    axes: Vec<Vec<(usize, usize)>>,
    tensors: Vec<TensorAxes>,
    neighbours: Vec<Vec<usize>>,
}

impl PermutationSpec {
    /// Checks the spec against `params` and precomputes its index tables.
    pub fn validate(&self, params: &ParamSet) -> Result<ValidatedSpec, SpecError> {
        let mut tensors: Vec<TensorAxes> = Vec::new();
        let mut sizes = Vec::with_capacity(self.len());
        let mut axes = Vec::with_capacity(self.len());
        for (p, def) in self.perms().iter().enumerate() {
            let mut size = None;
            let mut own = Vec::with_capacity(def.axes.len());
            for a in &def.axes {
                let t = params
                    .get(&a.tensor)
                    .ok_or_else(|| SpecError::MissingTensor {
                        perm: def.name.clone(),
                        tensor: a.tensor.clone(),
                    })?;
                let rank = t.shape().len();
                if a.axis >= rank {
                    return Err(SpecError::AxisOutOfRange {
                        perm: def.name.clone(),
                        tensor: a.tensor.clone(),
                        axis: a.axis,
                        rank,
                    });
                }
                let ti = match tensors.iter().position(|x| x.name == a.tensor) {
                    Some(ti) => ti,
                    None => {
                        tensors.push(TensorAxes {
                            name: a.tensor.clone(),
                            shape: t.shape().to_vec(),
                            perm_of_axis: vec![None; rank],
                        });
                        tensors.len() - 1
                    }
                };
                let entry = &mut tensors[ti];
                if let Some(first_axis) = entry.perm_of_axis.iter().position(|&q| q == Some(p)) {
                    return Err(SpecError::RepeatedOnTensor {
                        perm: def.name.clone(),
                        tensor: a.tensor.clone(),
                        first_axis,
                        second_axis: a.axis,
                    });
                }
                if let Some(q) = entry.perm_of_axis[a.axis] {
                    return Err(SpecError::AxisShared {
                        tensor: a.tensor.clone(),
                        axis: a.axis,
                        first_perm: self.perms()[q].name.clone(),
                        second_perm: def.name.clone(),
                    });
                }
                let n = t.shape()[a.axis];
                match size {
                    None => size = Some(n),
                    Some(expected) if expected != n => {
                        let first = &def.axes[0];
                        return Err(SpecError::InconsistentSize {
                            perm: def.name.clone(),
                            tensor: a.tensor.clone(),
                            axis: a.axis,
                            size: n,
                            first_tensor: first.tensor.clone(),
                            first_axis: first.axis,
                            expected,
                        });
                    }
                    Some(_) => {}
                }
                entry.perm_of_axis[a.axis] = Some(p);
                own.push((ti, a.axis));
            }
            sizes.push(size.unwrap_or(0));
            axes.push(own);
        }
        let neighbours = (0..self.len())
            .map(|p| {
                let mut ns: Vec<usize> = axes[p]
                    .iter()
                    .flat_map(|&(ti, _)| tensors[ti].perm_of_axis.iter().flatten().copied())
                    .filter(|&q| q != p)
                    .collect();
                ns.sort_unstable();
                ns.dedup();
                ns
            })
            .collect();
        Ok(ValidatedSpec {
            names: self.perms().iter().map(|d| d.name.clone()).collect(),
            sizes,
            axes,
            tensors,
            neighbours,
        })
    }
}

impl ValidatedSpec {
    /// Permutation names in spec order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of units each permutation reorders.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// Number of permutations.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the spec has no permutation (never, once validated).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Identity permutations, the starting point of matching.
    pub fn identity(&self) -> Vec<Permutation> {
        self.sizes
            .iter()
            .map(|&n| Permutation::identity(n))
            .collect()
    }

    /// Permutations that share a tensor with `p`: the only ones whose change
    /// can change `p`'s cost matrix.
    pub fn neighbours(&self, p: usize) -> &[usize] {
        &self.neighbours[p]
    }

    /// Whether some permutation reorders the tensor called `name`.
    pub fn touches(&self, name: &str) -> bool {
        self.tensors.iter().any(|t| t.name == name)
    }

    /// The permutation that reorders axis `axis` of tensor `tensor`, if any:
    /// how code that computes permutations per layer (activation matching)
    /// finds where each belongs without relying on names or order.
    pub fn acting_on(&self, tensor: &str, axis: usize) -> Option<usize> {
        let t = self.tensors.iter().find(|t| t.name == tensor)?;
        t.perm_of_axis.get(axis).copied().flatten()
    }

    /// (tensor index, axis) pairs of permutation `p`.
    pub(crate) fn axes_of(&self, p: usize) -> &[(usize, usize)] {
        &self.axes[p]
    }

    /// Every tensor touched by some permutation.
    pub(crate) fn tensors(&self) -> &[TensorAxes] {
        &self.tensors
    }

    /// Checks that `params` has every tensor of the spec with the shape it
    /// was validated against, so a spec validated on one model can be used
    /// on another.
    pub fn check_layout(&self, params: &ParamSet) -> Result<(), SpecError> {
        for t in &self.tensors {
            let p = t.perm_of_axis.iter().flatten().next().copied().unwrap_or(0);
            let Some(found) = params.get(&t.name) else {
                return Err(SpecError::MissingTensor {
                    perm: self.names[p].clone(),
                    tensor: t.name.clone(),
                });
            };
            if found.shape() != t.shape.as_slice() {
                let axis = t.perm_of_axis.iter().position(Option::is_some).unwrap_or(0);
                return Err(SpecError::InconsistentSize {
                    perm: self.names[p].clone(),
                    tensor: t.name.clone(),
                    axis,
                    size: found.shape().get(axis).copied().unwrap_or(0),
                    first_tensor: t.name.clone(),
                    first_axis: axis,
                    expected: t.shape[axis],
                });
            }
        }
        Ok(())
    }

    /// Checks that `perms` fit this spec: one per permutation, each of the
    /// right size.
    pub fn check_perms(&self, perms: &[Permutation]) -> Result<(), PermError> {
        if perms.len() != self.len() {
            return Err(PermError::WrongCount {
                expected: self.len(),
                actual: perms.len(),
            });
        }
        for ((name, &n), p) in self.names.iter().zip(&self.sizes).zip(perms) {
            if p.len() != n {
                return Err(PermError::WrongLength {
                    name: name.clone(),
                    expected: n,
                    actual: p.len(),
                });
            }
        }
        Ok(())
    }

    /// `params` with every permuted axis reordered: slot `i` of an axis of
    /// permutation `p` takes slot `perms[p][i]` of the input. Tensors outside
    /// the spec are copied as they are. The result computes the same
    /// function when the spec describes the model correctly.
    pub fn apply(&self, params: &ParamSet, perms: &[Permutation]) -> Result<ParamSet, PermError> {
        self.check_perms(perms)?;
        let mut out = params.clone();
        for ti in 0..self.tensors.len() {
            // Tensors that no permutation moves stay as cloned.
            if let (pos, Cow::Owned(tensor)) = self.permuted_tensor(params, ti, perms)? {
                out.replace(pos, tensor);
            }
        }
        Ok(out)
    }

    /// Spec tensor `ti` of `params`, permuted (borrowed when every
    /// permutation on it is the identity), with its position in `params`.
    /// `perms` were checked by the caller.
    pub(crate) fn permuted_tensor<'p>(
        &self,
        params: &'p ParamSet,
        ti: usize,
        perms: &[Permutation],
    ) -> Result<(usize, Cow<'p, ParamTensor>), PermError> {
        let t = &self.tensors[ti];
        let pos = params
            .position(&t.name)
            .filter(|&pos| params.at(pos).shape() == t.shape.as_slice())
            .ok_or_else(|| PermError::MissingTensor(t.name.clone()))?;
        let mut tensor = Cow::Borrowed(params.at(pos));
        for (axis, p) in t.perm_of_axis.iter().enumerate() {
            if let Some(p) = *p
                && !perms[p].is_identity()
            {
                tensor = Cow::Owned(tensor.take_along(axis, perms[p].as_slice()));
            }
        }
        Ok((pos, tensor))
    }
}
