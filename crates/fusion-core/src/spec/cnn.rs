//! The built-in `resnet` and `vgg` specs, inferred from PyTorch names.
//!
//! Both follow the state dicts that the common CIFAR code writes, which is
//! also what Fusion's own models write (`fusion-models`):
//! - ResNet: `conv1`, `bn1`, `layer{s}.{b}.{conv1,bn1,conv2,bn2}`, a
//!   projection shortcut `layer{s}.{b}.shortcut.{0,1}` (1×1 conv, norm)
//!   where a block changes width or stride, and `linear` (or `fc`).
//! - VGG: `features.{i}` holding convolutions (4-D weights) each followed by
//!   an optional norm (1-D tensors), then `classifier.{j}` Linear layers.
//!
//! A norm layer's `weight`, `bias`, `running_mean` and `running_var` are all
//! permuted with its channels (BatchNorm's running statistics included;
//! LayerNorm has only the first two); `num_batches_tracked` is an integer
//! and passes through.

use std::collections::BTreeSet;

use super::{AxisRef, PermDef, PermutationSpec, SpecError};
use crate::params::ParamSet;

/// The per-channel tensors a norm layer may hold.
const NORM_TENSORS: [&str; 4] = ["weight", "bias", "running_mean", "running_var"];

/// Infers the spec of a CIFAR-style ResNet (ResNet-20, or deeper with more
/// blocks per stage; any width multiplier).
///
/// All blocks of a stage add into one residual stream, so they share one
/// permutation: the stream from `conv1` is `P_conv1`, and each projection
/// shortcut starts a new stream `P_layer{s}` (its conv's outputs, its
/// norm, every later block's `conv2` outputs and `bn2`, the next blocks'
/// `conv1` inputs, and the final Linear's inputs). Inside block
/// `layer{s}.{b}`, the channels between `conv1` and `conv2` get their own
/// permutation `P_layer{s}.{b}`.
pub fn infer_resnet_spec(params: &ParamSet) -> Result<PermutationSpec, SpecError> {
    let refuse = |reason: String| SpecError::NotArchitecture {
        family: "resnet",
        reason,
    };
    let mut claimed = Claimed::default();
    let stem = conv_weight(params, "conv1.weight", "resnet")?;
    let mut stream = PermDef {
        name: "P_conv1".into(),
        axes: vec![claimed.axis("conv1.weight", 0)],
    };
    stream.axes.extend(claimed.norm(params, "bn1"));
    let mut stream_width = stem[0];
    let mut perms = Vec::new();
    let mut stages = 0;
    for s in 1.. {
        if params.get(&format!("layer{s}.0.conv1.weight")).is_none() {
            break;
        }
        stages += 1;
        for b in 0.. {
            let block = format!("layer{s}.{b}");
            let conv1 = format!("{block}.conv1.weight");
            let conv2 = format!("{block}.conv2.weight");
            if params.get(&conv1).is_none() {
                break;
            }
            let c1 = conv_weight(params, &conv1, "resnet")?;
            let c2 = conv_weight(params, &conv2, "resnet")?;
            stream.axes.push(claimed.axis(&conv1, 1));
            let shortcut = format!("{block}.shortcut.0.weight");
            if params.get(&shortcut).is_some() {
                conv_weight(params, &shortcut, "resnet")?;
                stream.axes.push(claimed.axis(&shortcut, 1));
                perms.push(std::mem::replace(
                    &mut stream,
                    PermDef {
                        name: format!("P_layer{s}"),
                        axes: vec![claimed.axis(&shortcut, 0)],
                    },
                ));
                stream
                    .axes
                    .extend(claimed.norm(params, &format!("{block}.shortcut.1")));
                stream_width = c2[0];
            } else if c2[0] != stream_width {
                return Err(refuse(format!(
                    "block {block} changes the width from {stream_width} to {} without a \
                     projection shortcut ({block}.shortcut.0); zero-padding (option A) \
                     shortcuts have no permutation that keeps the function",
                    c2[0]
                )));
            }
            stream.axes.push(claimed.axis(&conv2, 0));
            stream
                .axes
                .extend(claimed.norm(params, &format!("{block}.bn2")));
            let mut inner = PermDef {
                name: format!("P_{block}"),
                axes: vec![claimed.axis(&conv1, 0)],
            };
            inner
                .axes
                .extend(claimed.norm(params, &format!("{block}.bn1")));
            inner.axes.push(claimed.axis(&conv2, 1));
            if c1[0] != c2[1] {
                return Err(refuse(format!(
                    "{conv1} gives {} channels but {conv2} takes {}",
                    c1[0], c2[1]
                )));
            }
            perms.push(inner);
        }
    }
    if stages == 0 {
        return Err(refuse(
            "no residual blocks (tensors named like 'layer1.0.conv1.weight')".into(),
        ));
    }
    let head = ["linear", "fc"]
        .into_iter()
        .find(|h| params.get(&format!("{h}.weight")).is_some())
        .ok_or_else(|| refuse("no final Linear layer ('linear.weight' or 'fc.weight')".into()))?;
    let head_weight = format!("{head}.weight");
    stream.axes.push(claimed.axis(&head_weight, 1));
    perms.push(stream);
    claimed.allow(&format!("{head}.bias"));
    claimed.check_covers(params, "resnet")?;
    PermutationSpec::new(perms)
}

/// Infers the spec of a VGG-style network: `features.{i}` convolutions with
/// optional norms after them, then `classifier.{j}` Linear layers, with the
/// last convolution's channels feeding the first Linear layer directly
/// (global pooling before the classifier, or a 1×1 final map).
///
/// Convolution `features.{i}` gets `P_features.{i}` over its output
/// channels, its bias, the norm after it and the next layer's inputs; each
/// hidden Linear layer `classifier.{j}` gets `P_classifier.{j}`.
pub fn infer_vgg_spec(params: &ParamSet) -> Result<PermutationSpec, SpecError> {
    let refuse = |reason: String| SpecError::NotArchitecture {
        family: "vgg",
        reason,
    };
    let convs = indexed_layers(params, "features.", 4);
    let linears = indexed_layers(params, "classifier.", 2);
    if convs.is_empty() {
        return Err(refuse(
            "no convolutions (4-D tensors named like 'features.0.weight')".into(),
        ));
    }
    if linears.is_empty() {
        return Err(refuse(
            "no classifier (2-D tensors named like 'classifier.0.weight')".into(),
        ));
    }
    let mut claimed = Claimed::default();
    let mut perms: Vec<PermDef> = Vec::new();
    let mut open: Option<(PermDef, usize)> = None;
    let layers = convs
        .iter()
        .map(|&i| (format!("features.{i}"), i, true))
        .chain(
            linears
                .iter()
                .map(|&j| (format!("classifier.{j}"), j, false)),
        )
        .collect::<Vec<_>>();
    for (k, (layer, index, is_conv)) in layers.iter().enumerate() {
        let weight = format!("{layer}.weight");
        let shape = params
            .get(&weight)
            .map(|t| t.shape().to_vec())
            .unwrap_or_default();
        if let Some((mut perm, width)) = open.take() {
            if shape[1] != width {
                let hint = if *is_conv {
                    String::new()
                } else {
                    format!(
                        " (a flattened {width}-channel map of more than 1×1 pixels cannot be \
                         permuted channel by channel; pool to 1×1 before the classifier)"
                    )
                };
                return Err(refuse(format!(
                    "'{weight}' takes {} inputs but the layer before gives {width}{hint}",
                    shape[1]
                )));
            }
            perm.axes.push(claimed.axis(&weight, 1));
            perms.push(perm);
        }
        if k + 1 == layers.len() {
            claimed.allow(&format!("{layer}.bias"));
            break;
        }
        let mut perm = PermDef {
            name: format!("P_{layer}"),
            axes: vec![claimed.axis(&weight, 0)],
        };
        let bias = format!("{layer}.bias");
        if params.get(&bias).is_some() {
            perm.axes.push(claimed.axis(&bias, 0));
        }
        if *is_conv {
            // A norm sits at a later index of `features` before the next
            // convolution (a ReLU and pooling between hold no tensors).
            let next_conv = convs.iter().find(|&&c| c > *index).copied();
            for n in index.saturating_add(1)..next_conv.unwrap_or(index.saturating_add(4)) {
                perm.axes
                    .extend(claimed.norm(params, &format!("features.{n}")));
            }
        }
        open = Some((perm, shape[0]));
    }
    claimed.check_covers(params, "vgg")?;
    PermutationSpec::new(perms)
}

/// Sorted indices `i` with a `{prefix}{i}.weight` of rank `rank`: the
/// convolutions (rank 4) or Linear layers (rank 2) of a PyTorch
/// `nn.Sequential` stored under `prefix` (`features.`, `classifier.`).
pub fn indexed_layers(params: &ParamSet, prefix: &str, rank: usize) -> Vec<usize> {
    let mut found: Vec<usize> = params
        .iter()
        .filter_map(|(name, t)| {
            let index = name.strip_prefix(prefix)?.strip_suffix(".weight")?;
            (t.shape().len() == rank).then(|| index.parse().ok())?
        })
        .collect();
    found.sort_unstable();
    found
}

/// The shape of a 4-D convolution weight, or why `name` is not one.
fn conv_weight<'p>(
    params: &'p ParamSet,
    name: &str,
    family: &'static str,
) -> Result<&'p [usize], SpecError> {
    let t = params.get(name).ok_or_else(|| SpecError::NotArchitecture {
        family,
        reason: format!("no tensor '{name}'"),
    })?;
    if t.shape().len() != 4 {
        return Err(SpecError::NotArchitecture {
            family,
            reason: format!(
                "'{name}' has shape {:?}, not a convolution's [out, in, kh, kw]",
                t.shape()
            ),
        });
    }
    Ok(t.shape())
}

/// Which tensors the inferred spec covers, so that a tensor it would leave
/// unpermuted (and so change what the model computes) is refused by name.
#[derive(Default)]
struct Claimed(BTreeSet<String>);

impl Claimed {
    /// `tensor:axis`, recorded as covered.
    fn axis(&mut self, tensor: &str, axis: usize) -> AxisRef {
        self.0.insert(tensor.to_owned());
        AxisRef::new(tensor, axis)
    }

    /// Axis 0 of each per-channel tensor of the norm layer `prefix` that
    /// the model has.
    fn norm(&mut self, params: &ParamSet, prefix: &str) -> Vec<AxisRef> {
        NORM_TENSORS
            .iter()
            .map(|t| format!("{prefix}.{t}"))
            .filter(|name| params.get(name).is_some_and(|t| t.shape().len() == 1))
            .map(|name| self.axis(&name, 0))
            .collect()
    }

    /// A tensor no permutation touches that keeps the function anyway (the
    /// output layer's bias).
    fn allow(&mut self, tensor: &str) {
        self.0.insert(tensor.to_owned());
    }

    /// Refuses any float tensor of `params` not covered.
    fn check_covers(&self, params: &ParamSet, family: &'static str) -> Result<(), SpecError> {
        match params.names().find(|n| !self.0.contains(*n)) {
            Some(extra) => Err(SpecError::NotArchitecture {
                family,
                reason: format!(
                    "tensor '{extra}' is not part of a {family} layout; write a spec file \
                     that says how it is permuted"
                ),
            }),
            None => Ok(()),
        }
    }
}
