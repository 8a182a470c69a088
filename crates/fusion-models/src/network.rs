//! Any built-in network behind one type: what `--model` names, what the
//! permuted-output check runs, and what a parameter file is read back as.

use std::fmt;
use std::str::FromStr;

use burn::module::Module;
use burn::nn::BatchNorm;
use burn::tensor::{Device, Tensor};
use fusion_core::{MlpArchitecture, ParamSet, PermutationSpec, infer_resnet_spec, infer_vgg_spec};

use crate::error::ModelError;
use crate::layers::{Norm2d, NormKind};
use crate::mlp::Mlp;
use crate::resnet::{ResNet, ResNetShape};
use crate::vgg::{Vgg, VggShape};

/// A built-in architecture as `--model` names it:
/// - `mlp`, `mlp:512x3`, `mlp:1024,512` (see [`MlpArchitecture`]);
/// - `resnet20`, `resnet20x2`, `resnet32x4-ln`: a CIFAR ResNet of depth
///   `6·b + 2`, width multiplier after `x`, LayerNorm with `-ln`;
/// - `vgg11`, `vgg16-ln`, `vgg11:16`: VGG-11/13/16/19, LayerNorm with
///   `-ln`, the first stage's channels after `:` (64 by default).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// The paper's MLP.
    Mlp(MlpArchitecture),
    /// A CIFAR ResNet.
    ResNet(ResNetShape),
    /// A VGG-style CNN.
    Vgg(VggShape),
}

/// What `--model` accepts, for error messages.
const EXPECTED: &str = "expected mlp[:WIDTHxDEPTH], resnet20[xW][-ln] (depth 6b+2: 20, 32, 44, 56) \
                        or vgg{11,13,16,19}[-ln][:BASE]";

impl FromStr for Architecture {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, ModelError> {
        let bad = |reason: String| ModelError::BadArchitecture {
            given: s.to_owned(),
            reason,
        };
        if s.starts_with("mlp") {
            return s
                .parse::<MlpArchitecture>()
                .map(Self::Mlp)
                .map_err(|e| bad(e.to_string()));
        }
        let (body, norm) = split_norm(s);
        if let Some(rest) = body.strip_prefix("resnet") {
            let (depth, width) = rest.split_once('x').unwrap_or((rest, "1"));
            let depth: usize = depth.parse().map_err(|_| bad(EXPECTED.into()))?;
            let width: usize = width.parse().map_err(|_| bad(EXPECTED.into()))?;
            if depth < 8 || !(depth - 2).is_multiple_of(6) {
                return Err(bad(format!(
                    "a CIFAR ResNet has depth 6·b+2 (20, 32, 44, 56, …), not {depth}"
                )));
            }
            if width == 0 || width > 64 {
                return Err(bad(format!("width multiplier {width} is not in 1..=64")));
            }
            return Ok(Self::ResNet(ResNetShape {
                blocks: (depth - 2) / 6,
                width,
                norm,
            }));
        }
        if let Some(rest) = body.strip_prefix("vgg") {
            let (depth, base) = rest.split_once(':').unwrap_or((rest, "64"));
            let depth: usize = depth.parse().map_err(|_| bad(EXPECTED.into()))?;
            let base: usize = base.parse().map_err(|_| bad(EXPECTED.into()))?;
            if VggShape::convs_per_stage(depth).is_none() {
                return Err(bad(format!(
                    "VGG depth {depth} is not one of 11, 13, 16, 19"
                )));
            }
            if base == 0 || base > 1024 {
                return Err(bad(format!("base width {base} is not in 1..=1024")));
            }
            return Ok(Self::Vgg(VggShape { depth, base, norm }));
        }
        Err(bad(EXPECTED.into()))
    }
}

/// `resnet20x2-ln` → (`resnet20x2`, LayerNorm); `vgg11-ln:16` and
/// `vgg11:16-ln` both → (`vgg11:16`, LayerNorm).
fn split_norm(s: &str) -> (String, NormKind) {
    if s.contains("-ln") {
        (s.replacen("-ln", "", 1), NormKind::Layer)
    } else {
        (s.replacen("-bn", "", 1), NormKind::Batch)
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ln = |norm: NormKind| if norm == NormKind::Layer { "-ln" } else { "" };
        match self {
            Self::Mlp(a) => write!(f, "{a}"),
            Self::ResNet(r) => write!(f, "resnet{}x{}{}", r.depth(), r.width, ln(r.norm)),
            Self::Vgg(v) => write!(f, "vgg{}{}:{}", v.depth, ln(v.norm), v.base),
        }
    }
}

impl Architecture {
    /// The built-in spec that describes it (`mlp`, `resnet`, `vgg`).
    pub fn spec_name(&self) -> &'static str {
        match self {
            Self::Mlp(_) => "mlp",
            Self::ResNet(_) => "resnet",
            Self::Vgg(_) => "vgg",
        }
    }

    /// Whether the network takes images as `[c, h, w]` maps (a CNN) rather
    /// than flat feature vectors.
    pub fn is_cnn(&self) -> bool {
        !matches!(self, Self::Mlp(_))
    }
}

/// Any built-in network: the trainer, the evaluator and the permuted-output
/// check work on this type, so each architecture is written once.
// A few networks exist at a time, never in bulk, so the size gap between
// variants costs nothing; boxing would need burn's Module on Box.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Network {
    /// See [`Mlp`].
    Mlp(Mlp),
    /// See [`ResNet`].
    ResNet(ResNet),
    /// See [`Vgg`].
    Vgg(Vgg),
}

impl Network {
    /// A freshly initialised network for images of shape `image`
    /// (`[channels, height, width]`) and `classes` classes, from `seed`.
    pub fn init(
        arch: &Architecture,
        image: [usize; 3],
        classes: usize,
        seed: u64,
        device: &Device,
    ) -> Self {
        match arch {
            Architecture::Mlp(a) => Self::Mlp(Mlp::for_data(
                a,
                image.iter().product(),
                classes,
                seed,
                device,
            )),
            Architecture::ResNet(s) => {
                Self::ResNet(ResNet::init(*s, image[0], classes, seed, device))
            }
            Architecture::Vgg(s) => Self::Vgg(Vgg::init(*s, image[0], classes, seed, device)),
        }
    }

    /// Logits `[n, classes]` for images `[n, c, h, w]`; the MLP sees them
    /// flattened.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Self::Mlp(m) => {
                let [n, c, h, w] = x.dims();
                m.forward(x.reshape([n, c * h * w]))
            }
            Self::ResNet(r) => r.forward(x),
            Self::Vgg(v) => v.forward(x),
        }
    }

    /// The parameters in PyTorch names and layout, on the host.
    pub fn to_params(&self) -> ParamSet {
        match self {
            Self::Mlp(m) => m.to_params(),
            Self::ResNet(r) => r.to_params(),
            Self::Vgg(v) => v.to_params(),
        }
    }

    /// The network a parameter set describes, recognised by its names
    /// (`layers.0.weight`: MLP; `conv1.weight`: ResNet; `features.*`:
    /// VGG), or why it is none of them.
    pub fn from_params(params: &ParamSet, device: &Device) -> Result<Self, ModelError> {
        if params.get("layers.0.weight").is_some() {
            Ok(Self::Mlp(Mlp::from_params(params, device)?))
        } else if params.get("conv1.weight").is_some() {
            Ok(Self::ResNet(ResNet::from_params(params, device)?))
        } else if params.names().any(|n| n.starts_with("features.")) {
            Ok(Self::Vgg(Vgg::from_params(params, device)?))
        } else {
            Err(ModelError::Unrecognised(
                "no 'layers.0.weight' (mlp), 'conv1.weight' (resnet) or 'features.*' (vgg)".into(),
            ))
        }
    }

    /// The permutation spec of this network, from its names.
    pub fn permutation_spec(&self) -> Result<PermutationSpec, ModelError> {
        let params = self.to_params();
        Ok(match self {
            Self::Mlp(m) => m.permutation_spec()?,
            Self::ResNet(_) => infer_resnet_spec(&params)?,
            Self::Vgg(_) => infer_vgg_spec(&params)?,
        })
    }

    /// Input channels (features, for the MLP) and classes.
    pub fn io(&self) -> (usize, usize) {
        match self {
            Self::Mlp(m) => {
                let w = m.widths();
                (
                    w.first().copied().unwrap_or(0),
                    w.last().copied().unwrap_or(0),
                )
            }
            Self::ResNet(r) => r.io(),
            Self::Vgg(v) => v.io(),
        }
    }

    /// Checks that the network fits images of shape `image` with
    /// `classes` classes (the MLP: their flattened size; a CNN: their
    /// channels; any size of map fits a CNN).
    pub fn check_data(&self, image: [usize; 3], classes: usize) -> Result<(), ModelError> {
        let (inputs, model_classes) = self.io();
        let (what, data) = match self {
            Self::Mlp(_) => ("input features", image.iter().product()),
            _ => ("image channels", image[0]),
        };
        if inputs != data {
            return Err(ModelError::DataMismatch {
                what,
                model: inputs,
                data,
            });
        }
        if model_classes != classes {
            return Err(ModelError::DataMismatch {
                what: "classes",
                model: model_classes,
                data: classes,
            });
        }
        Ok(())
    }

    /// Every norm layer in forward order (none for the MLP): what REPAIR
    /// rescales, in the order [`Network::norm_outputs`] reports them.
    pub fn norms_mut(&mut self) -> Vec<&mut Norm2d> {
        match self {
            Self::Mlp(_) => Vec::new(),
            Self::ResNet(r) => r.norms_mut(),
            Self::Vgg(g) => g.features.iter_mut().map(|l| &mut l.norm).collect(),
        }
    }

    /// The parameter-name prefix of every norm layer (`bn1`,
    /// `layer1.0.shortcut.1`, `features.1`), in the order of
    /// [`Network::norms_mut`] and [`Network::norm_outputs`]: how a
    /// client finds the norm a server's `outputs:NORM` request names.
    pub fn norm_names(&self) -> Vec<String> {
        match self {
            Self::Mlp(_) => Vec::new(),
            Self::ResNet(r) => r.norm_names(),
            Self::Vgg(g) => g.norm_names(),
        }
    }

    /// Every BatchNorm layer, input side first: what re-estimating running
    /// statistics after a merge walks. Empty for the MLP and LayerNorm CNNs.
    pub fn batch_norms_mut(&mut self) -> Vec<&mut BatchNorm> {
        self.norms_mut()
            .into_iter()
            .filter_map(|n| match n {
                Norm2d::Batch(bn) => Some(bn),
                Norm2d::Layer(_) => None,
            })
            .collect()
    }

    /// The output of every norm layer for images `x`, in the order of
    /// [`Network::norms_mut`] (empty for the MLP).
    pub fn norm_outputs(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        let mut taps = Some(Vec::new());
        match self {
            Self::Mlp(_) => return Vec::new(),
            Self::ResNet(r) => {
                r.features_tapped(x, &mut taps);
            }
            Self::Vgg(v) => {
                v.feature_map_tapped(x, &mut taps);
            }
        }
        taps.unwrap_or_default()
    }

    /// The activations activation matching correlates for a CNN, each
    /// named by the permutation of the built-in spec it aligns, as
    /// `[positions, channels]` (batch × height × width rows): the post-ReLU
    /// output of every convolution block (VGG: `P_features.{i}`; ResNet:
    /// each block's inner channels `P_layer{s}.{b}`, and every output of a
    /// residual stream, stem included, under the stream's name) and of the
    /// classifier's hidden layers (`P_classifier.{j}`). Several entries may
    /// share a name: a stream is seen after every block that adds into it.
    /// Empty for the MLP, whose matching works per layer.
    pub fn matching_activations(&self, x: Tensor<4>) -> Vec<(String, Tensor<2>)> {
        match self {
            Self::Mlp(_) => Vec::new(),
            Self::ResNet(r) => r.matching_activations(x),
            Self::Vgg(v) => v.matching_activations(x),
        }
    }

    /// The shape of random inputs that fit it, for checks that run it on
    /// noise: `[1, inputs, 1, 1]` for the MLP, 16×16 maps for a CNN.
    pub fn probe_shape(&self, batch: usize) -> [usize; 4] {
        let (inputs, _) = self.io();
        match self {
            Self::Mlp(_) => [batch, inputs, 1, 1],
            _ => [batch, inputs, 16, 16],
        }
    }
}

/// A built-in CNN's first weights for a `--model` setting: what a server
/// (or the simulator) starts a federation from when the setting names a
/// CNN, for images of shape `image` with `classes` classes, with a phrase
/// naming it for logs and the status page. `None` when the setting names
/// the MLP, which the server library builds itself.
pub fn initial_cnn(
    model: &str,
    image: [usize; 3],
    classes: usize,
    seed: u64,
    device: &Device,
) -> Result<Option<(Architecture, ParamSet, String)>, ModelError> {
    let arch: Architecture = model.parse()?;
    if !arch.is_cnn() {
        return Ok(None);
    }
    // The wire carries F32 tensors only: no `num_batches_tracked`.
    let params = Network::init(&arch, image, classes, seed, device)
        .to_params()
        .without_passthrough();
    let origin = format!(
        "the built-in {arch} ({}x{}x{} images, {classes} classes)",
        image[0], image[1], image[2]
    );
    Ok(Some((arch, params, origin)))
}
