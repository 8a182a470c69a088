//! A VGG-style CNN (Simonyan & Zisserman 2015) of configurable depth and
//! width, with BatchNorm or LayerNorm, as a burn module in PyTorch names.
//!
//! The layout is torchvision's `features` Sequential (`conv, norm, ReLU`
//! per convolution, `MaxPool2d(2)` between stages, so convolution `i` has
//! its norm at `features.{i+1}`), except that the last stage's pooling is
//! a global average (`nn.AdaptiveAvgPool2d(1)`), which makes the network
//! independent of the image size and lets the last convolution's channels
//! feed `classifier.0` one to one. The classifier is `Linear, ReLU,
//! Linear` (`classifier.0`, `classifier.2`).

use burn::module::Module;
use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2dConfig;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use fusion_core::{ParamSet, indexed_layers};

use crate::error::ModelError;
use crate::layers::{Norm2d, NormKind, Reader, Writer, conv, init_rng, linear};
use crate::resnet::{Taps, channel_rows, global_average, tap};

/// One convolution of the feature stack, with the pooling after it.
#[derive(Module, Debug)]
pub struct VggConv {
    /// 3×3 convolution with bias.
    pub conv: Conv2d,
    /// Its norm.
    pub norm: Norm2d,
    /// Whether a 2×2 max-pool follows (skipped on a map already below
    /// 2×2, so small images fit deep stacks).
    pub pool: bool,
}

/// The shape of a VGG: the standard configurations with their widths
/// scaled so that the first stage has `base` channels (64 in the paper).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VggShape {
    /// 11, 13, 16 or 19.
    pub depth: usize,
    /// First stage's channels; later stages have 2, 4, 8 and 8 times it.
    pub base: usize,
    /// Normalisation after each convolution.
    pub norm: NormKind,
}

impl VggShape {
    /// Convolutions per stage of the standard configurations, or `None`
    /// for a depth that has none.
    pub fn convs_per_stage(depth: usize) -> Option<[usize; 5]> {
        match depth {
            11 => Some([1, 1, 2, 2, 2]),
            13 => Some([2, 2, 2, 2, 2]),
            16 => Some([2, 2, 3, 3, 3]),
            19 => Some([2, 2, 4, 4, 4]),
            _ => None,
        }
    }

    /// Output channels of every convolution and whether a pool follows it
    /// (every stage but the last ends in one).
    fn convs(&self) -> Vec<(usize, bool)> {
        let per_stage = Self::convs_per_stage(self.depth).unwrap_or([1, 1, 2, 2, 2]);
        let multipliers = [1, 2, 4, 8, 8];
        let mut out = Vec::new();
        for (stage, (&count, &m)) in per_stage.iter().zip(&multipliers).enumerate() {
            for k in 0..count {
                out.push((self.base * m, k + 1 == count && stage + 1 < per_stage.len()));
            }
        }
        out
    }
}

/// A VGG-style CNN. Parameters live on the device it was built on.
#[derive(Module, Debug)]
pub struct Vgg {
    /// The convolution stack, input side first.
    pub features: Vec<VggConv>,
    /// Linear layers over the globally pooled channels, ReLU between.
    pub classifier: Vec<Linear>,
}

impl Vgg {
    /// A freshly initialised VGG for images of `channels` channels and
    /// `classes` classes, from `seed` alone; the classifier's hidden layer
    /// is as wide as the last convolution.
    pub fn init(
        shape: VggShape,
        channels: usize,
        classes: usize,
        seed: u64,
        device: &Device,
    ) -> Self {
        let mut rng = init_rng(seed);
        let mut inputs = channels;
        let features = shape
            .convs()
            .into_iter()
            .map(|(width, pool)| {
                let layer = VggConv {
                    conv: conv(&mut rng, [inputs, width], 3, 1, true, device),
                    norm: Norm2d::new(shape.norm, width, device),
                    pool,
                };
                inputs = width;
                layer
            })
            .collect();
        let classifier = vec![
            linear(&mut rng, inputs, inputs, device),
            linear(&mut rng, inputs, classes, device),
        ];
        Self {
            features,
            classifier,
        }
    }

    /// Logits `[n, classes]` for images `[n, c, h, w]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = global_average(self.feature_map(x));
        let last = self.classifier.len().saturating_sub(1);
        for (i, layer) in self.classifier.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = relu(x);
            }
        }
        x
    }

    /// The last convolution's map, before global pooling.
    pub fn feature_map(&self, x: Tensor<4>) -> Tensor<4> {
        self.feature_map_tapped(x, &mut None)
    }

    /// [`Vgg::feature_map`], recording every norm's output in `taps`.
    pub(crate) fn feature_map_tapped(&self, x: Tensor<4>, taps: &mut Taps) -> Tensor<4> {
        let mut x = x;
        for layer in &self.features {
            x = relu(tap(taps, layer.norm.forward(layer.conv.forward(x))));
            let [_, _, h, w] = x.dims();
            if layer.pool && h >= 2 && w >= 2 {
                x = MaxPool2dConfig::new([2, 2]).init().forward(x);
            }
        }
        x
    }

    /// See [`crate::Network::matching_activations`].
    pub fn matching_activations(&self, x: Tensor<4>) -> Vec<(String, Tensor<2>)> {
        let mut out = Vec::new();
        let mut x = x;
        let mut index = 0;
        for layer in &self.features {
            x = relu(layer.norm.forward(layer.conv.forward(x)));
            out.push((format!("P_features.{index}"), channel_rows(x.clone())));
            let [_, _, h, w] = x.dims();
            if layer.pool && h >= 2 && w >= 2 {
                x = MaxPool2dConfig::new([2, 2]).init().forward(x);
            }
            index += 3 + usize::from(layer.pool);
        }
        let mut x = global_average(x);
        let hidden = self.classifier.len().saturating_sub(1);
        for (j, layer) in self.classifier[..hidden].iter().enumerate() {
            x = relu(layer.forward(x));
            out.push((format!("P_classifier.{}", 2 * j), x.clone()));
        }
        out
    }

    /// Input channels and classes.
    pub fn io(&self) -> (usize, usize) {
        let channels = self.features.first().map_or(0, |l| l.conv.weight.dims()[1]);
        let classes = self.classifier.last().map_or(0, |l| l.weight.dims()[1]);
        (channels, classes)
    }

    /// The names of its norms (`features.1`, `features.4`, …), in forward
    /// order, as [`Vgg::to_params`] writes them.
    pub fn norm_names(&self) -> Vec<String> {
        let mut index = 0;
        let mut names = Vec::with_capacity(self.features.len());
        for layer in &self.features {
            names.push(format!("features.{}", index + 1));
            index += 3 + usize::from(layer.pool);
        }
        names
    }

    /// The parameters in PyTorch names and layout, on the host.
    pub fn to_params(&self) -> ParamSet {
        let mut w = Writer::default();
        let mut index = 0;
        for layer in &self.features {
            w.conv(&format!("features.{index}"), &layer.conv);
            w.norm(&format!("features.{}", index + 1), &layer.norm);
            // conv, norm, ReLU, then the pool if any.
            index += 3 + usize::from(layer.pool);
        }
        for (j, layer) in self.classifier.iter().enumerate() {
            w.linear(&format!("classifier.{}", 2 * j), layer);
        }
        w.finish()
    }

    /// Builds the VGG from a parameter set in the layout of the module's
    /// documentation. Pools are read from the index gaps of `features`
    /// (conv, norm, ReLU take three indices; a fourth is a pool).
    pub fn from_params(params: &ParamSet, device: &Device) -> Result<Self, ModelError> {
        let mut r = Reader::new(params, device, "vgg");
        let convs = indexed_layers(params, "features.", 4);
        let linears = indexed_layers(params, "classifier.", 2);
        if convs.is_empty() || linears.is_empty() {
            return Err(ModelError::NotArchitecture {
                family: "vgg",
                reason: "expected 4-D 'features.{i}.weight' convolutions and 2-D \
                         'classifier.{j}.weight' Linear layers"
                    .into(),
            });
        }
        let mut inputs = None;
        let mut features = Vec::with_capacity(convs.len());
        for (k, &i) in convs.iter().enumerate() {
            let conv = r.conv(&format!("features.{i}"), inputs, 1)?;
            let [width, ..] = conv.weight.dims();
            let norm = r.norm(&format!("features.{}", i.saturating_add(1)), width)?;
            let pool = match convs.get(k + 1).map(|&next| next - i) {
                None | Some(3) => false,
                Some(4) => true,
                Some(gap) => {
                    return Err(ModelError::NotArchitecture {
                        family: "vgg",
                        reason: format!(
                            "{gap} modules between 'features.{i}' and the next convolution; \
                             expected conv, norm, ReLU and at most a max-pool (3 or 4)"
                        ),
                    });
                }
            };
            features.push(VggConv { conv, norm, pool });
            inputs = Some(width);
        }
        let mut width = inputs.unwrap_or(0);
        let mut classifier = Vec::with_capacity(linears.len());
        for j in linears {
            let layer = r.linear(&format!("classifier.{j}"), width)?;
            width = layer.weight.dims()[1];
            classifier.push(layer);
        }
        r.finish()?;
        Ok(Self {
            features,
            classifier,
        })
    }
}
