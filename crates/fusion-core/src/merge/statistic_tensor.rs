use crate::params::{ParamsError, check_count};

/// One statistic a client sends (a packed Gram matrix, a cross term): a
/// shape and its `f64` values, row-major.
///
/// Statistics stay in `f64` from the client's sum to the server's solve.
/// A least-squares merge solves `A X = B` where `A` and `B` come from the
/// same data; rounding them to `f32` separately breaks the consistency
/// between them, and the solve amplifies the break by `A`'s condition
/// number (measured: weights moved by up to 2e-3 where identical clients
/// should give their model back exactly).
#[derive(Clone, Debug, PartialEq)]
pub struct StatisticTensor {
    shape: Vec<usize>,
    data: Vec<f64>,
}

impl StatisticTensor {
    /// A statistic from its shape and values; fails if the counts
    /// disagree. `name` only labels the error.
    pub fn new(name: &str, shape: Vec<usize>, data: Vec<f64>) -> Result<Self, ParamsError> {
        let shape = check_count(name, shape, data.len())?;
        Ok(Self { shape, data })
    }

    /// The shape, outermost axis first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values, row-major.
    pub fn data(&self) -> &[f64] {
        &self.data
    }

    /// Mutable values (tests plant bad ones); the shape cannot change.
    pub fn data_mut(&mut self) -> &mut [f64] {
        &mut self.data
    }

    /// Number of values.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// The first non-finite value, as (flat index, value).
    pub fn first_non_finite(&self) -> Option<(usize, f64)> {
        self.data
            .iter()
            .position(|x| !x.is_finite())
            .map(|i| (i, self.data[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_must_match_the_shape_and_non_finite_values_are_found() {
        let err = StatisticTensor::new("gram:layers.0", vec![2, 3], vec![0.0; 5])
            .expect_err("5 values for 6");
        assert!(err.to_string().contains("gram:layers.0"), "{err}");
        let mut t = StatisticTensor::new("s", vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]).expect("ok");
        assert_eq!(t.first_non_finite(), None);
        t.data_mut()[3] = f64::NEG_INFINITY;
        assert_eq!(t.first_non_finite(), Some((3, f64::NEG_INFINITY)));
        assert_eq!((t.shape(), t.numel()), (&[2usize, 2][..], 4));
    }
}
