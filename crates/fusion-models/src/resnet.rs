//! The CIFAR ResNet (He et al. 2016, §4.2; ResNet-20 and deeper) with a
//! width multiplier, as a burn module in PyTorch names.
//!
//! The names are those of the common PyTorch CIFAR ResNet-20 with
//! projection shortcuts: `conv1`, `bn1`,
//! `layer{1,2,3}.{b}.{conv1,bn1,conv2,bn2}`, `layer{2,3}.0.shortcut.{0,1}`
//! (1×1 conv, norm) and `linear`, so its files load into that PyTorch
//! module and `fusion_core::infer_resnet_spec` describes them.

use burn::module::Module;
use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use fusion_core::ParamSet;

use crate::error::ModelError;
use crate::layers::{Norm2d, NormKind, Reader, Writer, conv, init_rng, linear};

/// Channels of the three stages at width multiplier 1.
const BASE_WIDTHS: [usize; 3] = [16, 32, 64];

/// A 1×1 convolution and a norm, where a block changes width or stride.
#[derive(Module, Debug)]
pub struct Shortcut {
    /// `shortcut.0`.
    pub conv: Conv2d,
    /// `shortcut.1`.
    pub norm: Norm2d,
}

/// `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`.
#[derive(Module, Debug)]
pub struct BasicBlock {
    /// First 3×3 convolution (carries the block's stride).
    pub conv1: Conv2d,
    /// Its norm.
    pub bn1: Norm2d,
    /// Second 3×3 convolution.
    pub conv2: Conv2d,
    /// Its norm.
    pub bn2: Norm2d,
    /// Projection of the input, or none (identity).
    pub shortcut: Option<Shortcut>,
}

impl BasicBlock {
    /// The block's output; each norm's output is recorded in `taps` when
    /// given (bn1, bn2, then the shortcut's norm).
    fn forward(&self, x: Tensor<4>, taps: &mut Taps) -> Tensor<4> {
        let out = relu(tap(taps, self.bn1.forward(self.conv1.forward(x.clone()))));
        let out = tap(taps, self.bn2.forward(self.conv2.forward(out)));
        let skip = match &self.shortcut {
            Some(s) => tap(taps, s.norm.forward(s.conv.forward(x))),
            None => x,
        };
        relu(out + skip)
    }
}

/// Where a forward pass records each norm layer's output, if anywhere:
/// what REPAIR measures.
pub(crate) type Taps = Option<Vec<Tensor<4>>>;

/// Records `y` in `taps` (when recording) and passes it on.
pub(crate) fn tap(taps: &mut Taps, y: Tensor<4>) -> Tensor<4> {
    if let Some(v) = taps {
        v.push(y.clone());
    }
    y
}

/// The shape of a CIFAR ResNet: depth `6·blocks + 2` and a width
/// multiplier over 16/32/64 channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResNetShape {
    /// Blocks per stage (3 for ResNet-20, 5 for ResNet-32, …).
    pub blocks: usize,
    /// Channel multiplier (`resnet20x4` has 64/128/256 channels).
    pub width: usize,
    /// Normalisation after each convolution.
    pub norm: NormKind,
}

impl ResNetShape {
    /// The network's depth as its name counts it (20 for 3 blocks).
    pub fn depth(&self) -> usize {
        6 * self.blocks + 2
    }
}

/// A CIFAR ResNet. Parameters live on the device it was built on.
#[derive(Module, Debug)]
pub struct ResNet {
    /// Stem 3×3 convolution.
    pub conv1: Conv2d,
    /// Its norm.
    pub bn1: Norm2d,
    /// Three stages of blocks; the first block of stages 2 and 3 halves
    /// the resolution and doubles the width.
    pub stages: Vec<Vec<BasicBlock>>,
    /// Classifier over globally average-pooled channels.
    pub linear: Linear,
}

impl ResNet {
    /// A freshly initialised ResNet for images of `channels` channels and
    /// `classes` classes, from `seed` alone (He-uniform convolutions,
    /// PyTorch's Linear initialisation, norms at identity).
    pub fn init(
        shape: ResNetShape,
        channels: usize,
        classes: usize,
        seed: u64,
        device: &Device,
    ) -> Self {
        let mut rng = init_rng(seed);
        let widths = BASE_WIDTHS.map(|w| w * shape.width);
        let conv1 = conv(&mut rng, [channels, widths[0]], 3, 1, false, device);
        let bn1 = Norm2d::new(shape.norm, widths[0], device);
        let mut inputs = widths[0];
        let stages = widths
            .iter()
            .enumerate()
            .map(|(s, &width)| {
                (0..shape.blocks)
                    .map(|b| {
                        let stride = if s > 0 && b == 0 { 2 } else { 1 };
                        let shortcut = (stride != 1 || inputs != width).then(|| Shortcut {
                            conv: conv(&mut rng, [inputs, width], 1, stride, false, device),
                            norm: Norm2d::new(shape.norm, width, device),
                        });
                        let block = BasicBlock {
                            conv1: conv(&mut rng, [inputs, width], 3, stride, false, device),
                            bn1: Norm2d::new(shape.norm, width, device),
                            conv2: conv(&mut rng, [width, width], 3, 1, false, device),
                            bn2: Norm2d::new(shape.norm, width, device),
                            shortcut,
                        };
                        inputs = width;
                        block
                    })
                    .collect()
            })
            .collect();
        let linear = linear(&mut rng, widths[2], classes, device);
        Self {
            conv1,
            bn1,
            stages,
            linear,
        }
    }

    /// Logits `[n, classes]` for images `[n, c, h, w]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.linear.forward(global_average(self.features(x)))
    }

    /// The last stage's map `[n, c, h', w']`, before pooling.
    pub fn features(&self, x: Tensor<4>) -> Tensor<4> {
        self.features_tapped(x, &mut None)
    }

    /// [`ResNet::features`], recording every norm's output in `taps`, in
    /// the order of [`ResNet::norms_mut`].
    pub(crate) fn features_tapped(&self, x: Tensor<4>, taps: &mut Taps) -> Tensor<4> {
        let mut x = relu(tap(taps, self.bn1.forward(self.conv1.forward(x))));
        for block in self.stages.iter().flatten() {
            x = block.forward(x, taps);
        }
        x
    }

    /// See [`crate::Network::matching_activations`].
    pub fn matching_activations(&self, x: Tensor<4>) -> Vec<(String, Tensor<2>)> {
        let mut out = Vec::new();
        let mut x = relu(self.bn1.forward(self.conv1.forward(x)));
        let mut stream = "P_conv1".to_owned();
        out.push((stream.clone(), channel_rows(x.clone())));
        for (s, stage) in self.stages.iter().enumerate() {
            for (b, block) in stage.iter().enumerate() {
                let inner = relu(block.bn1.forward(block.conv1.forward(x.clone())));
                out.push((format!("P_layer{}.{b}", s + 1), channel_rows(inner.clone())));
                let main = block.bn2.forward(block.conv2.forward(inner));
                let skip = match &block.shortcut {
                    Some(sc) => {
                        stream = format!("P_layer{}", s + 1);
                        sc.norm.forward(sc.conv.forward(x))
                    }
                    None => x,
                };
                x = relu(main + skip);
                out.push((stream.clone(), channel_rows(x.clone())));
            }
        }
        out
    }

    /// Every norm layer in forward order: the stem's, then per block
    /// `bn1`, `bn2` and the shortcut's.
    pub fn norms_mut(&mut self) -> Vec<&mut Norm2d> {
        let mut v = vec![&mut self.bn1];
        for block in self.stages.iter_mut().flatten() {
            v.push(&mut block.bn1);
            v.push(&mut block.bn2);
            if let Some(s) = &mut block.shortcut {
                v.push(&mut s.norm);
            }
        }
        v
    }

    /// The names of [`ResNet::norms_mut`]'s norms, as
    /// [`ResNet::to_params`] writes them.
    pub fn norm_names(&self) -> Vec<String> {
        let mut names = vec!["bn1".to_owned()];
        for (s, stage) in self.stages.iter().enumerate() {
            for (b, block) in stage.iter().enumerate() {
                let p = format!("layer{}.{b}", s + 1);
                names.push(format!("{p}.bn1"));
                names.push(format!("{p}.bn2"));
                if block.shortcut.is_some() {
                    names.push(format!("{p}.shortcut.1"));
                }
            }
        }
        names
    }

    /// Its shape, read back from the modules.
    pub fn shape(&self) -> ResNetShape {
        let [stem, ..] = self.conv1.weight.dims();
        ResNetShape {
            blocks: self.stages.first().map_or(0, Vec::len),
            width: stem / BASE_WIDTHS[0],
            norm: self.bn1.kind(),
        }
    }

    /// Input channels and classes.
    pub fn io(&self) -> (usize, usize) {
        let [_, channels, _, _] = self.conv1.weight.dims();
        let [_, classes] = self.linear.weight.dims();
        (channels, classes)
    }

    /// The parameters in PyTorch names and layout, on the host.
    pub fn to_params(&self) -> ParamSet {
        let mut w = Writer::default();
        w.conv("conv1", &self.conv1);
        w.norm("bn1", &self.bn1);
        for (s, stage) in self.stages.iter().enumerate() {
            for (b, block) in stage.iter().enumerate() {
                let p = format!("layer{}.{b}", s + 1);
                w.conv(&format!("{p}.conv1"), &block.conv1);
                w.norm(&format!("{p}.bn1"), &block.bn1);
                w.conv(&format!("{p}.conv2"), &block.conv2);
                w.norm(&format!("{p}.bn2"), &block.bn2);
                if let Some(sc) = &block.shortcut {
                    w.conv(&format!("{p}.shortcut.0"), &sc.conv);
                    w.norm(&format!("{p}.shortcut.1"), &sc.norm);
                }
            }
        }
        w.linear("linear", &self.linear);
        w.finish()
    }

    /// Builds the ResNet from a parameter set in PyTorch names and layout
    /// (see the module's documentation; the head may be named `fc`). Strides follow the architecture:
    /// the first block of every stage after the first halves the map.
    /// Any other tensor, a missing one, or sizes that do not chain are
    /// refused with the tensor's name.
    pub fn from_params(params: &ParamSet, device: &Device) -> Result<Self, ModelError> {
        let mut r = Reader::new(params, device, "resnet");
        let conv1 = r.conv("conv1", None, 1)?;
        let [mut inputs, ..] = conv1.weight.dims();
        let bn1 = r.norm("bn1", inputs)?;
        let mut stages = Vec::new();
        for s in 1.. {
            if !r.has(&format!("layer{s}.0.conv1.weight")) {
                break;
            }
            let mut stage = Vec::new();
            for b in 0.. {
                let p = format!("layer{s}.{b}");
                if !r.has(&format!("{p}.conv1.weight")) {
                    break;
                }
                let stride = if s > 1 && b == 0 { 2 } else { 1 };
                let conv1 = r.conv(&format!("{p}.conv1"), Some(inputs), stride)?;
                let [width, ..] = conv1.weight.dims();
                let bn1 = r.norm(&format!("{p}.bn1"), width)?;
                let conv2 = r.conv(&format!("{p}.conv2"), Some(width), 1)?;
                let [out, ..] = conv2.weight.dims();
                let bn2 = r.norm(&format!("{p}.bn2"), out)?;
                let shortcut = if r.has(&format!("{p}.shortcut.0.weight")) {
                    let conv = r.conv(&format!("{p}.shortcut.0"), Some(inputs), stride)?;
                    let [projected, ..] = conv.weight.dims();
                    if projected != out {
                        return Err(ModelError::NotArchitecture {
                            family: "resnet",
                            reason: format!(
                                "'{p}.shortcut.0.weight' gives {projected} channels but the \
                                 block's conv2 gives {out}: they cannot be added"
                            ),
                        });
                    }
                    let norm = r.norm(&format!("{p}.shortcut.1"), out)?;
                    Some(Shortcut { conv, norm })
                } else if stride != 1 || inputs != out {
                    return Err(ModelError::NotArchitecture {
                        family: "resnet",
                        reason: format!(
                            "block {p} changes the width from {inputs} to {out} or the \
                             stride without a projection shortcut ({p}.shortcut.0)"
                        ),
                    });
                } else {
                    None
                };
                stage.push(BasicBlock {
                    conv1,
                    bn1,
                    conv2,
                    bn2,
                    shortcut,
                });
                inputs = out;
            }
            stages.push(stage);
        }
        if stages.is_empty() {
            return Err(ModelError::NotArchitecture {
                family: "resnet",
                reason: "no residual blocks (tensors named like 'layer1.0.conv1.weight')".into(),
            });
        }
        // `fc` is torchvision's name for the head; files are written back
        // with the CIFAR code's `linear`.
        let head = if r.has("linear.weight") || !r.has("fc.weight") {
            "linear"
        } else {
            "fc"
        };
        let linear = r.linear(head, inputs)?;
        r.finish()?;
        Ok(Self {
            conv1,
            bn1,
            stages,
            linear,
        })
    }
}

/// A map `[n, c, h, w]` as rows of channels `[n·h·w, c]`: every position
/// of every image is one observation of each channel.
pub(crate) fn channel_rows(x: Tensor<4>) -> Tensor<2> {
    let [n, c, h, w] = x.dims();
    x.permute([0, 2, 3, 1]).reshape([n * h * w, c])
}

/// The mean over height and width: `[n, c, h, w]` → `[n, c]`.
pub(crate) fn global_average(x: Tensor<4>) -> Tensor<2> {
    let [n, c, _, _] = x.dims();
    x.mean_dim(3).mean_dim(2).reshape([n, c])
}
