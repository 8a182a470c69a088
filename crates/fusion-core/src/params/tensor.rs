use super::ParamsError;

/// One parameter tensor: a shape and its `f32` values in row-major order.
///
/// Layout follows PyTorch: a `Linear` weight is `[out, in]`, a convolution
/// weight `[out, in, kh, kw]`, so `state_dict()` files map one to one.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamTensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl ParamTensor {
    /// A tensor from its shape and values; fails if the counts disagree.
    /// `name` only labels the error.
    pub fn new(name: &str, shape: Vec<usize>, data: Vec<f32>) -> Result<Self, ParamsError> {
        let shape = check_count(name, shape, data.len())?;
        Ok(Self { shape, data })
    }

    /// A tensor of zeros, the start of a running sum.
    pub fn zeros(shape: Vec<usize>) -> Self {
        let len = shape.iter().product();
        Self {
            shape,
            data: vec![0.0; len],
        }
    }

    /// The shape, outermost axis first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values, row-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Mutable values; the shape cannot change through this.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the tensor, giving back its values.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Number of values.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// Sizes around `axis`: (product before, size of axis, product after).
    /// Any axis of any rank can then be handled as the middle of a 3-D view.
    ///
    /// # Panics
    /// If `axis` is out of range; specs are validated before this is called.
    pub fn split_at_axis(&self, axis: usize) -> (usize, usize, usize) {
        split_shape(&self.shape, axis)
    }

    /// The tensor with its `axis` reordered: slot `i` of the result holds
    /// slot `order[i]` of the input. This is how a permutation of hidden
    /// units is applied.
    ///
    /// # Panics
    /// If `order.len()` differs from the axis size or an index is out of range.
    pub fn take_along(&self, axis: usize, order: &[usize]) -> Self {
        let (pre, n, post) = self.split_at_axis(axis);
        assert_eq!(order.len(), n, "order length must equal axis size");
        let mut out = Vec::with_capacity(self.data.len());
        for p in 0..pre {
            let block = &self.data[p * n * post..(p + 1) * n * post];
            for &src in order {
                out.extend_from_slice(&block[src * post..(src + 1) * post]);
            }
        }
        Self {
            shape: self.shape.clone(),
            data: out,
        }
    }

    /// The first non-finite value, as (flat index, value).
    pub fn first_non_finite(&self) -> Option<(usize, f32)> {
        self.data
            .iter()
            .position(|x| !x.is_finite())
            .map(|i| (i, self.data[i]))
    }
}

/// `shape`, if it holds exactly `count` values; else the error naming
/// `name`. Every tensor type checks its values against its shape here.
pub(crate) fn check_count(
    name: &str,
    shape: Vec<usize>,
    count: usize,
) -> Result<Vec<usize>, ParamsError> {
    let expected: usize = shape.iter().product();
    if expected != count {
        return Err(ParamsError::ShapeMismatch {
            name: name.to_owned(),
            shape,
            expected,
            actual: count,
        });
    }
    Ok(shape)
}

/// Inner product of two value slices, accumulated in `f64` so that sums
/// over millions of `f32` products stay exact enough to compare sweeps.
pub(crate) fn dot_f64(x: &[f32], y: &[f32]) -> f64 {
    x.iter()
        .zip(y)
        .map(|(&p, &q)| f64::from(p) * f64::from(q))
        .sum()
}

/// (product before `axis`, size of `axis`, product after `axis`).
pub(crate) fn split_shape(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let pre = shape[..axis].iter().product();
    let post = shape[axis + 1..].iter().product();
    (pre, shape[axis], post)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_along_middle_axis_moves_whole_slices() {
        // shape [2, 3, 2]: values encode (a, b, c) as 100a + 10b + c.
        let mut data = Vec::new();
        for a in 0..2 {
            for b in 0..3 {
                for c in 0..2 {
                    data.push((100 * a + 10 * b + c) as f32);
                }
            }
        }
        let t = ParamTensor::new("t", vec![2, 3, 2], data).expect("valid");
        let p = t.take_along(1, &[2, 0, 1]);
        assert_eq!(
            p.data(),
            &[
                20., 21., 0., 1., 10., 11., 120., 121., 100., 101., 110., 111.
            ]
        );
    }

    #[test]
    fn new_rejects_wrong_length() {
        let err = ParamTensor::new("w", vec![2, 3], vec![0.0; 5]).expect_err("must fail");
        assert_eq!(
            err.to_string(),
            "tensor 'w': shape [2, 3] needs 6 values, got 5"
        );
    }
}
