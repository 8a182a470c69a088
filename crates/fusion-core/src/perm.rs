//! Permutations of hidden units.

/// Permutations that do not fit a spec or are not bijections.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PermError {
    /// Not a bijection of `0..n`.
    #[error("permutation '{name}' is not a bijection of 0..{len}: {reason}")]
    NotBijection {
        /// Permutation name.
        name: String,
        /// Its length.
        len: usize,
        /// The first problem found.
        reason: String,
    },
    /// The number of permutations differs from the spec's.
    #[error("expected {expected} permutations, got {actual}")]
    WrongCount {
        /// The spec's count.
        expected: usize,
        /// The count given.
        actual: usize,
    },
    /// A permutation of the wrong size.
    #[error("permutation '{name}' must have length {expected}, got {actual}")]
    WrongLength {
        /// Permutation name.
        name: String,
        /// Size of the axes it acts on.
        expected: usize,
        /// Its length.
        actual: usize,
    },
    /// A model lacks a tensor of the spec, or has it in another shape.
    #[error("tensor '{0}' of the spec is missing from the model or has another shape")]
    MissingTensor(String),
}

/// A reordering of `n` units: slot `i` takes unit `self[i]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Permutation(Vec<usize>);

impl Permutation {
    /// The permutation that moves nothing.
    pub fn identity(n: usize) -> Self {
        Self((0..n).collect())
    }

    /// Checks that `order` is a bijection of `0..order.len()`. `name` only
    /// labels the error.
    pub fn from_vec(name: &str, order: Vec<usize>) -> Result<Self, PermError> {
        let n = order.len();
        let mut seen = vec![false; n];
        for (i, &x) in order.iter().enumerate() {
            let reason = if x >= n {
                format!("entry {i} is {x}, out of range")
            } else if seen[x] {
                format!("value {x} appears twice")
            } else {
                seen[x] = true;
                continue;
            };
            return Err(PermError::NotBijection {
                name: name.to_owned(),
                len: n,
                reason,
            });
        }
        Ok(Self(order))
    }

    /// The order as a slice.
    pub fn as_slice(&self) -> &[usize] {
        &self.0
    }

    /// Number of units.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it permutes zero units.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every unit stays in place.
    pub fn is_identity(&self) -> bool {
        self.0.iter().enumerate().all(|(i, &x)| i == x)
    }

    /// How many units change place.
    pub fn moved(&self) -> usize {
        self.0.iter().enumerate().filter(|&(i, &x)| i != x).count()
    }

    /// Fraction of units that change place: what Fusion reports per layer
    /// so users see whether alignment did anything.
    pub fn moved_fraction(&self) -> f64 {
        if self.0.is_empty() {
            0.0
        } else {
            self.moved() as f64 / self.0.len() as f64
        }
    }

    /// The permutation that undoes this one.
    pub fn inverse(&self) -> Self {
        let mut inv = vec![0; self.0.len()];
        for (i, &x) in self.0.iter().enumerate() {
            inv[x] = i;
        }
        Self(inv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bijection_is_checked() {
        assert!(Permutation::from_vec("P", vec![2, 0, 1]).is_ok());
        let err = Permutation::from_vec("P", vec![0, 0, 1]).expect_err("dup");
        assert_eq!(
            err.to_string(),
            "permutation 'P' is not a bijection of 0..3: value 0 appears twice"
        );
        let err = Permutation::from_vec("P", vec![0, 3, 1]).expect_err("range");
        assert_eq!(
            err.to_string(),
            "permutation 'P' is not a bijection of 0..3: entry 1 is 3, out of range"
        );
    }

    #[test]
    fn inverse_undoes() {
        let p = Permutation::from_vec("P", vec![3, 0, 2, 1]).expect("ok");
        let inv = p.inverse();
        let composed: Vec<usize> = (0..4).map(|i| p.as_slice()[inv.as_slice()[i]]).collect();
        assert_eq!(composed, vec![0, 1, 2, 3]);
        assert_eq!(p.moved(), 3);
        assert!((p.moved_fraction() - 0.75).abs() < 1e-12);
    }
}
