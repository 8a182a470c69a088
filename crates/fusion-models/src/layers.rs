//! The CNNs' building blocks and their conversion to and from parameter
//! sets under PyTorch names, shared by [`crate::ResNet`] and [`crate::Vgg`].
//!
//! burn's `Conv2d` weight is `[out, in, kh, kw]`, as PyTorch's; its
//! `Linear` weight is `[in, out]`, PyTorch's transposed, so Linear weights
//! are transposed on the way in and out.

use std::collections::BTreeSet;

use burn::module::{Module, Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig, LayerNorm, LayerNormConfig, Linear, PaddingConfig2d};
use burn::tensor::{Device, Tensor, TensorData};
use fusion_core::{ParamSet, ParamTensor, RawTensor};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::error::ModelError;
use crate::mlp::host;

/// Which normalisation a CNN uses after each convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NormKind {
    /// BatchNorm with running statistics (PyTorch `nn.BatchNorm2d`):
    /// batch statistics in training, running ones in evaluation.
    #[default]
    Batch,
    /// LayerNorm over the channels of each pixel (PyTorch `nn.LayerNorm(C)`
    /// on channels-last maps, as in the paper's VGG and in ConvNeXt): no
    /// running statistics, the same computation in training and evaluation.
    Layer,
}

/// A per-channel normalisation of a `[n, c, h, w]` map; both kinds are
/// equivariant under a permutation of channels that also permutes their
/// per-channel tensors, which is what makes the CNNs' specs valid.
#[derive(Module, Debug)]
pub enum Norm2d {
    /// See [`NormKind::Batch`].
    Batch(BatchNorm),
    /// See [`NormKind::Layer`].
    Layer(LayerNorm),
}

impl Norm2d {
    /// A fresh norm over `channels`: scale 1, shift 0, running mean 0 and
    /// variance 1 (PyTorch's initialisation; epsilon 1e-5, momentum 0.1).
    pub fn new(kind: NormKind, channels: usize, device: &Device) -> Self {
        match kind {
            NormKind::Batch => Self::Batch(BatchNormConfig::new(channels).init(device)),
            NormKind::Layer => Self::Layer(LayerNormConfig::new(channels).init(device)),
        }
    }

    /// Normalises `x` `[n, c, h, w]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Batch(bn) => bn.forward(x),
            Self::Layer(ln) => ln.forward(x.permute([0, 2, 3, 1])).permute([0, 3, 1, 2]),
        }
    }

    /// Multiplies the output of channel `c` by `scale[c]` and adds
    /// `shift[c]`, by folding both into the affine parameters (γ ← s·γ,
    /// β ← s·β + t): REPAIR's per-channel correction, which changes nothing
    /// else about the layer. Slices of the wrong length change nothing.
    pub fn rescale(&mut self, scale: &[f32], shift: &[f32]) {
        let (gamma, beta) = match self {
            Self::Batch(bn) => (&mut bn.gamma, Some(&mut bn.beta)),
            Self::Layer(ln) => (&mut ln.gamma, ln.beta.as_mut()),
        };
        let g = gamma.val();
        let [n] = g.dims();
        if scale.len() != n || shift.len() != n {
            return;
        }
        let device = g.device();
        let s = Tensor::<1>::from_data(TensorData::new(scale.to_vec(), [n]), &device);
        let t = Tensor::<1>::from_data(TensorData::new(shift.to_vec(), [n]), &device);
        *gamma = Param::from_tensor(g * s.clone());
        if let Some(beta) = beta {
            *beta = Param::from_tensor(beta.val() * s + t);
        }
    }

    /// Which kind it is.
    pub fn kind(&self) -> NormKind {
        match self {
            Self::Batch(_) => NormKind::Batch,
            Self::Layer(_) => NormKind::Layer,
        }
    }
}

/// A fresh 3×3 (or `kernel`) convolution without bias, He-uniform
/// (±√(6/fan_in)) from `rng`, padding `kernel / 2`.
pub(crate) fn conv(
    rng: &mut StdRng,
    [inputs, outputs]: [usize; 2],
    kernel: usize,
    stride: usize,
    bias: bool,
    device: &Device,
) -> Conv2d {
    let fan_in = inputs * kernel * kernel;
    let bound = (6.0 / fan_in as f64).sqrt() as f32;
    let weight = uniform(rng, outputs * fan_in, bound);
    let bias = bias.then(|| {
        let b = uniform(rng, outputs, 1.0 / (fan_in as f32).sqrt());
        Param::from_tensor(Tensor::<1>::from_data(
            TensorData::new(b, [outputs]),
            device,
        ))
    });
    conv_from(
        Tensor::from_data(
            TensorData::new(weight, [outputs, inputs, kernel, kernel]),
            device,
        ),
        bias,
        stride,
    )
}

/// A convolution from its weight `[out, in, k, k]`, with padding `k / 2`.
fn conv_from(weight: Tensor<4>, bias: Option<Param<Tensor<1>>>, stride: usize) -> Conv2d {
    let [_, _, kh, kw] = weight.dims();
    Conv2d {
        weight: Param::from_tensor(weight),
        bias,
        stride: [stride, stride],
        kernel_size: [kh, kw],
        dilation: [1, 1],
        groups: 1,
        padding: PaddingConfig2d::Explicit(kh / 2, kw / 2, kh / 2, kw / 2),
    }
}

/// A fresh Linear layer as PyTorch draws it: weight and bias uniform in
/// ±1/√inputs.
pub(crate) fn linear(rng: &mut StdRng, inputs: usize, outputs: usize, device: &Device) -> Linear {
    let bound = 1.0 / (inputs as f32).sqrt();
    let weight = uniform(rng, inputs * outputs, bound);
    let bias = uniform(rng, outputs, bound);
    Linear {
        weight: Param::from_tensor(
            Tensor::<2>::from_data(TensorData::new(weight, [outputs, inputs]), device).transpose(),
        ),
        bias: Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(bias, [outputs]),
            device,
        ))),
    }
}

/// A seeded RNG for a model's initial weights: the same seed gives the
/// same model on every backend.
pub(crate) fn init_rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ 0x5EED_C0DE_F00D_CAFE)
}

fn uniform(rng: &mut StdRng, n: usize, bound: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
}

/// Writes modules into a [`ParamSet`] under PyTorch names.
#[derive(Default)]
pub(crate) struct Writer {
    set: ParamSet,
}

impl Writer {
    /// A tensor under `name`. Names are unique by construction and shapes
    /// come from the tensor, so insertion cannot fail; a failure would
    /// only drop the tensor, which `from_params` then reports.
    fn put<const D: usize>(&mut self, name: String, tensor: Tensor<D>) {
        let shape = tensor.dims().to_vec();
        if let Ok(t) = ParamTensor::new(&name, shape, host(tensor)) {
            let _ = self.set.insert(name, t);
        }
    }

    /// `{prefix}.weight` (and `.bias`).
    pub(crate) fn conv(&mut self, prefix: &str, conv: &Conv2d) {
        self.put(format!("{prefix}.weight"), conv.weight.val());
        if let Some(b) = &conv.bias {
            self.put(format!("{prefix}.bias"), b.val());
        }
    }

    /// `{prefix}.weight` `[out, in]` and `.bias`.
    pub(crate) fn linear(&mut self, prefix: &str, linear: &Linear) {
        self.put(format!("{prefix}.weight"), linear.weight.val().transpose());
        if let Some(b) = &linear.bias {
            self.put(format!("{prefix}.bias"), b.val());
        }
    }

    /// A norm's per-channel tensors under PyTorch's names; BatchNorm also
    /// gets `num_batches_tracked` (int64, 0), so that PyTorch's strict
    /// `load_state_dict` accepts the file.
    pub(crate) fn norm(&mut self, prefix: &str, norm: &Norm2d) {
        match norm {
            Norm2d::Batch(bn) => {
                self.put(format!("{prefix}.weight"), bn.gamma.val());
                self.put(format!("{prefix}.bias"), bn.beta.val());
                self.put(
                    format!("{prefix}.running_mean"),
                    bn.running_mean.value_sync(),
                );
                self.put(format!("{prefix}.running_var"), bn.running_var.value_sync());
                let _ = self.set.insert_passthrough(
                    format!("{prefix}.num_batches_tracked"),
                    RawTensor {
                        dtype: safetensors::Dtype::I64,
                        shape: Vec::new(),
                        bytes: 0i64.to_le_bytes().to_vec(),
                    },
                );
            }
            Norm2d::Layer(ln) => {
                self.put(format!("{prefix}.weight"), ln.gamma.val());
                if let Some(b) = &ln.beta {
                    self.put(format!("{prefix}.bias"), b.val());
                }
            }
        }
    }

    /// The set written.
    pub(crate) fn finish(self) -> ParamSet {
        self.set
    }
}

/// Reads modules out of a [`ParamSet`] under PyTorch names, checking ranks
/// and remembering what it used, so tensors of another architecture are
/// refused by name rather than ignored.
pub(crate) struct Reader<'p> {
    params: &'p ParamSet,
    device: Device,
    used: BTreeSet<String>,
    /// `resnet` or `vgg`, for messages.
    family: &'static str,
}

impl<'p> Reader<'p> {
    pub(crate) fn new(params: &'p ParamSet, device: &Device, family: &'static str) -> Self {
        Self {
            params,
            device: device.clone(),
            used: BTreeSet::new(),
            family,
        }
    }

    fn refuse(&self, reason: String) -> ModelError {
        ModelError::NotArchitecture {
            family: self.family,
            reason,
        }
    }

    /// Whether the set holds `name`.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.params.get(name).is_some()
    }

    /// The shape of `name`, which must exist with rank `rank`.
    pub(crate) fn shape(&self, name: &str, rank: usize) -> Result<Vec<usize>, ModelError> {
        let t = self
            .params
            .get(name)
            .ok_or_else(|| self.refuse(format!("no tensor '{name}'")))?;
        if t.shape().len() != rank {
            return Err(self.refuse(format!(
                "'{name}' has shape {:?}, expected {rank} axes",
                t.shape()
            )));
        }
        Ok(t.shape().to_vec())
    }

    fn tensor<const D: usize>(&mut self, name: &str) -> Result<Tensor<D>, ModelError> {
        let shape = self.shape(name, D)?;
        let t = self
            .params
            .get(name)
            .map(|t| t.data().to_vec())
            .unwrap_or_default();
        self.used.insert(name.to_owned());
        let dims: [usize; D] = shape
            .try_into()
            .map_err(|_| self.refuse(format!("'{name}' has the wrong rank")))?;
        Ok(Tensor::from_data(TensorData::new(t, dims), &self.device))
    }

    /// A vector `{name}` of length `len`.
    fn vector(&mut self, name: &str, len: usize) -> Result<Tensor<1>, ModelError> {
        let v: Tensor<1> = self.tensor(name)?;
        let [n] = v.dims();
        if n != len {
            return Err(self.refuse(format!("'{name}' has {n} values, expected {len}")));
        }
        Ok(v)
    }

    /// Convolution `{prefix}` with `stride` and padding `k / 2`, with its
    /// bias if the set has one; `inputs` is checked when given.
    pub(crate) fn conv(
        &mut self,
        prefix: &str,
        inputs: Option<usize>,
        stride: usize,
    ) -> Result<Conv2d, ModelError> {
        let weight: Tensor<4> = self.tensor(&format!("{prefix}.weight"))?;
        let [out, inp, kh, kw] = weight.dims();
        if let Some(expected) = inputs
            && inp != expected
        {
            return Err(self.refuse(format!(
                "'{prefix}.weight' takes {inp} channels, the layer before gives {expected}"
            )));
        }
        if kh != kw || kh % 2 == 0 {
            return Err(self.refuse(format!(
                "'{prefix}.weight' has a {kh}×{kw} kernel; only odd square kernels are built in"
            )));
        }
        let bias_name = format!("{prefix}.bias");
        let bias = if self.has(&bias_name) {
            Some(Param::from_tensor(self.vector(&bias_name, out)?))
        } else {
            None
        };
        Ok(conv_from(weight, bias, stride))
    }

    /// Linear layer `{prefix}` taking `inputs` features.
    pub(crate) fn linear(&mut self, prefix: &str, inputs: usize) -> Result<Linear, ModelError> {
        let weight: Tensor<2> = self.tensor(&format!("{prefix}.weight"))?;
        let [out, inp] = weight.dims();
        if inp != inputs {
            return Err(self.refuse(format!(
                "'{prefix}.weight' takes {inp} features, the layer before gives {inputs}"
            )));
        }
        let bias_name = format!("{prefix}.bias");
        let bias = if self.has(&bias_name) {
            Some(Param::from_tensor(self.vector(&bias_name, out)?))
        } else {
            None
        };
        Ok(Linear {
            weight: Param::from_tensor(weight.transpose()),
            bias,
        })
    }

    /// The norm `{prefix}` over `channels`: BatchNorm when the set has
    /// running statistics, LayerNorm otherwise.
    pub(crate) fn norm(&mut self, prefix: &str, channels: usize) -> Result<Norm2d, ModelError> {
        let gamma = self.vector(&format!("{prefix}.weight"), channels)?;
        let beta = self.vector(&format!("{prefix}.bias"), channels)?;
        if self.has(&format!("{prefix}.running_mean")) {
            let mean = self.vector(&format!("{prefix}.running_mean"), channels)?;
            let var = self.vector(&format!("{prefix}.running_var"), channels)?;
            let mut bn = BatchNormConfig::new(channels).init(&self.device);
            bn.gamma = Param::from_tensor(gamma);
            bn.beta = Param::from_tensor(beta);
            bn.running_mean = RunningState::new(mean);
            bn.running_var = RunningState::new(var);
            self.used.insert(format!("{prefix}.num_batches_tracked"));
            Ok(Norm2d::Batch(bn))
        } else {
            let mut ln = LayerNormConfig::new(channels).init(&self.device);
            ln.gamma = Param::from_tensor(gamma);
            ln.beta = Some(Param::from_tensor(beta));
            Ok(Norm2d::Layer(ln))
        }
    }

    /// Refuses tensors the architecture did not use.
    pub(crate) fn finish(self) -> Result<(), ModelError> {
        let unused = self
            .params
            .names()
            .chain(self.params.passthrough().iter().map(|(n, _)| n.as_str()))
            .find(|n| !self.used.contains(*n));
        match unused {
            Some(name) => Err(self.refuse(format!(
                "tensor '{name}' is not part of this {} layout",
                self.family
            ))),
            None => Ok(()),
        }
    }
}
