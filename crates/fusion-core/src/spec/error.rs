/// A spec that cannot be read, inferred, or used with a given model.
///
/// Every variant names the permutation, tensor and axis involved, so a user
/// can find the line of their spec file to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The spec file is not valid TOML or JSON of the expected shape.
    #[error("cannot parse spec as {format}: {message}")]
    Parse {
        /// `TOML` or `JSON`.
        format: &'static str,
        /// The parser's message.
        message: String,
    },
    /// An entry is neither `"tensor:axis"` nor `{ tensor, axis }`.
    #[error("permutation '{perm}': entry '{entry}' is not of the form \"tensor:axis\"")]
    BadAxisRef {
        /// Permutation name.
        perm: String,
        /// The entry as written.
        entry: String,
    },
    /// The spec defines no permutation.
    #[error("the spec defines no permutations")]
    NoPermutations,
    /// A permutation that touches no axis.
    #[error("permutation '{perm}' lists no tensor axes")]
    EmptyPermutation {
        /// Permutation name.
        perm: String,
    },
    /// The spec names a tensor the model does not have.
    #[error("permutation '{perm}': tensor '{tensor}' is not in the model")]
    MissingTensor {
        /// Permutation name.
        perm: String,
        /// Tensor name.
        tensor: String,
    },
    /// An axis beyond the tensor's rank.
    #[error(
        "permutation '{perm}': tensor '{tensor}' has {rank} axes, so axis {axis} does not exist"
    )]
    AxisOutOfRange {
        /// Permutation name.
        perm: String,
        /// Tensor name.
        tensor: String,
        /// Axis asked for.
        axis: usize,
        /// The tensor's rank.
        rank: usize,
    },
    /// One permutation over axes of different sizes.
    #[error(
        "permutation '{perm}': tensor '{tensor}' axis {axis} has size {size}, \
         but '{first_tensor}' axis {first_axis} has size {expected}"
    )]
    InconsistentSize {
        /// Permutation name.
        perm: String,
        /// Tensor whose axis disagrees.
        tensor: String,
        /// That axis.
        axis: usize,
        /// Its size.
        size: usize,
        /// First tensor listed for the permutation.
        first_tensor: String,
        /// Its axis.
        first_axis: usize,
        /// The size set by the first entry.
        expected: usize,
    },
    /// The same permutation on two axes of one tensor (unsupported: the
    /// cost matrix would no longer be linear in the permutation).
    #[error(
        "permutation '{perm}' appears twice on tensor '{tensor}' (axes {first_axis} and {second_axis})"
    )]
    RepeatedOnTensor {
        /// Permutation name.
        perm: String,
        /// Tensor name.
        tensor: String,
        /// First axis.
        first_axis: usize,
        /// Second axis.
        second_axis: usize,
    },
    /// Two permutations claim one axis.
    #[error("tensor '{tensor}' axis {axis} is claimed by both '{first_perm}' and '{second_perm}'")]
    AxisShared {
        /// Tensor name.
        tensor: String,
        /// Axis.
        axis: usize,
        /// First permutation.
        first_perm: String,
        /// Second permutation.
        second_perm: String,
    },
    /// Two permutations with one name.
    #[error("permutation '{0}' is defined twice")]
    DuplicatePermutation(String),
    /// The built-in MLP spec does not fit the file.
    #[error("cannot infer an mlp spec: {0}")]
    CannotInfer(String),
    /// A built-in CNN spec (`resnet`, `vgg`) does not fit the file.
    #[error("cannot infer a {family} spec: {reason}")]
    NotArchitecture {
        /// The built-in spec asked for.
        family: &'static str,
        /// What in the file does not fit it.
        reason: String,
    },
    /// No built-in spec fits the file; each one's reason, in order.
    #[error("no built-in spec fits: {}", .0.join("; "))]
    NoneFits(Vec<String>),
}
