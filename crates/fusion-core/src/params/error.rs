/// What went wrong with a parameter set or a safetensors file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParamsError {
    /// The bytes are not a valid safetensors file (bad header, offsets, …).
    #[error("not a valid safetensors file: {0}")]
    Safetensors(String),
    /// A tensor's dtype cannot be read as floating point or carried through.
    #[error("tensor '{name}': unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// Tensor name.
        name: String,
        /// The dtype found in the file.
        dtype: String,
    },
    /// The data length does not match the product of the shape.
    #[error("tensor '{name}': shape {shape:?} needs {expected} values, got {actual}")]
    ShapeMismatch {
        /// Tensor name.
        name: String,
        /// Declared shape.
        shape: Vec<usize>,
        /// Number of values the shape implies.
        expected: usize,
        /// Number of values supplied.
        actual: usize,
    },
    /// Two tensors with one name.
    #[error("tensor '{0}' appears twice")]
    Duplicate(String),
    /// A tensor one model has and another lacks.
    #[error("tensor '{name}' is in model {present} but missing from model {missing}")]
    MissingTensor {
        /// Tensor name.
        name: String,
        /// Index of a model that has it.
        present: usize,
        /// Index of the model without it.
        missing: usize,
    },
    /// The same tensor with different shapes in two models.
    #[error(
        "tensor '{name}' has shape {left:?} in model {left_model} but {right:?} in model {right_model}"
    )]
    LayoutMismatch {
        /// Tensor name.
        name: String,
        /// Index of the first model.
        left_model: usize,
        /// Its shape there.
        left: Vec<usize>,
        /// Index of the second model.
        right_model: usize,
        /// Its shape there.
        right: Vec<usize>,
    },
    /// A NaN or infinite value, which would poison any average.
    #[error("tensor '{name}' holds a non-finite value ({value}) at flat index {index}")]
    NonFinite {
        /// Tensor name.
        name: String,
        /// Flat (row-major) index of the first bad value.
        index: usize,
        /// The value.
        value: f32,
    },
    /// The set holds no floating-point tensor at all.
    #[error("the file holds no floating-point tensors")]
    Empty,
}
