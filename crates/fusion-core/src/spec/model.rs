use std::fmt;

use super::SpecError;

/// One axis of one tensor: `tensor` is the name in the parameter set,
/// `axis` counts from 0 in PyTorch layout.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AxisRef {
    /// Tensor name.
    pub tensor: String,
    /// Axis index.
    pub axis: usize,
}

impl AxisRef {
    /// An axis reference.
    pub fn new(tensor: impl Into<String>, axis: usize) -> Self {
        Self {
            tensor: tensor.into(),
            axis,
        }
    }

    /// Parses `"tensor:axis"`; the last colon separates, so tensor names
    /// may themselves hold colons.
    pub fn parse(perm: &str, entry: &str) -> Result<Self, SpecError> {
        let bad = || SpecError::BadAxisRef {
            perm: perm.to_owned(),
            entry: entry.to_owned(),
        };
        let (tensor, axis) = entry.rsplit_once(':').ok_or_else(bad)?;
        if tensor.is_empty() {
            return Err(bad());
        }
        let axis = axis.trim().parse().map_err(|_| bad())?;
        Ok(Self::new(tensor, axis))
    }
}

impl fmt::Display for AxisRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.tensor, self.axis)
    }
}

/// A named permutation of hidden units and every axis it reorders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PermDef {
    /// Permutation name, such as `P_0`.
    pub name: String,
    /// Axes reordered together.
    pub axes: Vec<AxisRef>,
}

/// Permutation name → the (tensor, axis) pairs it acts on.
///
/// Unvalidated: it says nothing yet about a particular model. Call
/// [`PermutationSpec::validate`] with a parameter set to check names, axes
/// and sizes before matching.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PermutationSpec {
    perms: Vec<PermDef>,
}

impl PermutationSpec {
    /// A spec from its permutations, in order; names must be unique.
    pub fn new(perms: Vec<PermDef>) -> Result<Self, SpecError> {
        if perms.is_empty() {
            return Err(SpecError::NoPermutations);
        }
        for (i, p) in perms.iter().enumerate() {
            if perms[..i].iter().any(|q| q.name == p.name) {
                return Err(SpecError::DuplicatePermutation(p.name.clone()));
            }
            if p.axes.is_empty() {
                return Err(SpecError::EmptyPermutation {
                    perm: p.name.clone(),
                });
            }
        }
        Ok(Self { perms })
    }

    /// The permutations in order.
    pub fn perms(&self) -> &[PermDef] {
        &self.perms
    }

    /// Number of permutations.
    pub fn len(&self) -> usize {
        self.perms.len()
    }

    /// Whether there are none (never true for a constructed spec).
    pub fn is_empty(&self) -> bool {
        self.perms.is_empty()
    }
}

/// Where the spec of a merge comes from: one of the built-in layouts,
/// inferred from the reference model's names and shapes, or given (say,
/// parsed from a spec file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SpecSource {
    /// [`infer_mlp_spec`](super::infer_mlp_spec) on the reference model.
    #[default]
    InferMlp,
    /// [`infer_resnet_spec`](super::infer_resnet_spec): a CIFAR ResNet.
    InferResnet,
    /// [`infer_vgg_spec`](super::infer_vgg_spec): a VGG-style CNN.
    InferVgg,
    /// Whichever built-in layout fits (`auto`): what `fusion inspect`
    /// reports, and a convenience for files of unknown origin.
    InferAny,
    /// A spec the user wrote.
    Given(PermutationSpec),
}

impl SpecSource {
    /// The built-in spec called `name` (`mlp`, `resnet` or its alias
    /// `resnet20`, `vgg`, `auto`), or `None`
    /// when `name` is not one (callers then read it as a spec file's path).
    pub fn builtin(name: &str) -> Option<Self> {
        match name {
            "mlp" => Some(Self::InferMlp),
            "resnet" | "resnet20" => Some(Self::InferResnet),
            "vgg" => Some(Self::InferVgg),
            "auto" => Some(Self::InferAny),
            _ => None,
        }
    }

    /// The unvalidated spec for `params`.
    pub fn spec_for(&self, params: &crate::params::ParamSet) -> Result<PermutationSpec, SpecError> {
        match self {
            Self::InferMlp => super::infer_mlp_spec(params),
            Self::InferResnet => super::infer_resnet_spec(params),
            Self::InferVgg => super::infer_vgg_spec(params),
            Self::InferAny => infer_any(params).map(|(_, spec)| spec),
            Self::Given(spec) => Ok(spec.clone()),
        }
    }

    /// The spec for `params`, validated against it.
    pub fn resolve(
        &self,
        params: &crate::params::ParamSet,
    ) -> Result<super::ValidatedSpec, SpecError> {
        self.spec_for(params)?.validate(params)
    }
}

/// A built-in spec's inference from a model's names and shapes.
type Infer = fn(&crate::params::ParamSet) -> Result<PermutationSpec, SpecError>;

/// The first built-in layout (mlp, resnet, vgg) whose inferred spec fits
/// `params` and validates against it, with its name; else every layout's
/// reason, so a user sees why none fits.
pub fn infer_any(
    params: &crate::params::ParamSet,
) -> Result<(&'static str, PermutationSpec), SpecError> {
    let tries: [(&'static str, Infer); 3] = [
        ("mlp", super::infer_mlp_spec),
        ("resnet", super::infer_resnet_spec),
        ("vgg", super::infer_vgg_spec),
    ];
    let mut reasons = Vec::new();
    for (name, infer) in tries {
        match infer(params).and_then(|spec| spec.validate(params).map(|_| spec)) {
            Ok(spec) => return Ok((name, spec)),
            Err(e) => reasons.push(e.to_string()),
        }
    }
    Err(SpecError::NoneFits(reasons))
}
