//! The paper's multilayer perceptron as a burn module, and its conversion
//! to and from the engine's parameter sets in PyTorch names and layout.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use fusion_core::{ParamSet, ParamTensor, PermutationSpec, infer_mlp_spec};

use crate::error::ModelError;
use fusion_core::MlpArchitecture;

/// A chain of `Linear` layers with ReLU between them (none after the last):
/// the MLP of Ainsworth et al. Parameters live on whatever device it was
/// built on; an autodiff device makes it trainable.
///
/// burn stores a `Linear` weight as `[in, out]`; PyTorch as `[out, in]`.
/// [`Mlp::to_params`] and [`Mlp::from_params`] transpose, so files and the
/// engine always see PyTorch's layout (`layers.{i}.weight`, `layers.{i}.bias`),
/// which is what the `mlp` permutation spec expects.
#[derive(Module, Debug)]
pub struct Mlp {
    /// The linear layers, input side first.
    pub layers: Vec<Linear>,
}

impl Mlp {
    /// A freshly initialised MLP of these widths (input, hidden…, classes),
    /// drawn as PyTorch's `nn.Linear` draws it (uniform in ±1/√fan_in), from
    /// `seed` alone: the same seed gives the same model on every backend.
    pub fn init(widths: &[usize], seed: u64, device: &Device) -> Self {
        let params = fusion_core::synthetic::random_mlp(widths, seed);
        // The set was built for exactly these widths, so conversion cannot fail;
        // fall back to an empty chain rather than panic if it ever did.
        Self::from_params(&params, device).unwrap_or(Self { layers: Vec::new() })
    }

    /// An MLP for `arch` on data with `input` features and `classes` classes.
    pub fn for_data(
        arch: &MlpArchitecture,
        input: usize,
        classes: usize,
        seed: u64,
        device: &Device,
    ) -> Self {
        Self::init(&arch.widths(input, classes), seed, device)
    }

    /// Logits for a batch `[n, input]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len().saturating_sub(1);
        let mut x = x;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = relu(x);
            }
        }
        x
    }

    /// Post-ReLU activations of every hidden layer for a batch, input side
    /// first: what activation matching correlates.
    pub fn hidden_activations(&self, x: Tensor<2>) -> Vec<Tensor<2>> {
        let last = self.layers.len().saturating_sub(1);
        let mut out = Vec::with_capacity(last);
        let mut x = x;
        for layer in &self.layers[..last] {
            x = relu(layer.forward(x));
            out.push(x.clone());
        }
        out
    }

    /// Layer widths: input, hidden…, output.
    pub fn widths(&self) -> Vec<usize> {
        let mut w = Vec::with_capacity(self.layers.len() + 1);
        for (i, layer) in self.layers.iter().enumerate() {
            let [inp, out] = layer.weight.dims();
            if i == 0 {
                w.push(inp);
            }
            w.push(out);
        }
        w
    }

    /// The parameters in PyTorch names and layout, as `f32` on the host.
    pub fn to_params(&self) -> ParamSet {
        let mut set = ParamSet::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let [inp, out] = layer.weight.dims();
            let w = host(layer.weight.val().transpose());
            // Shapes come from the tensors themselves and names are unique.
            if let Ok(t) = ParamTensor::new("weight", vec![out, inp], w) {
                let _ = set.insert(format!("layers.{i}.weight"), t);
            }
            if let Some(bias) = &layer.bias
                && let Ok(t) = ParamTensor::new("bias", vec![out], host(bias.val()))
            {
                let _ = set.insert(format!("layers.{i}.bias"), t);
            }
        }
        set
    }

    /// Builds the MLP from a parameter set in PyTorch layout: `layers.{i}.weight`
    /// `[out, in]` and optional `layers.{i}.bias` `[out]`, chained (each layer's
    /// input width is the previous one's output). Other names and layouts are
    /// refused with the reason; so are integer tensors, which an MLP has none of.
    pub fn from_params(params: &ParamSet, device: &Device) -> Result<Self, ModelError> {
        if let Some((name, _)) = params.passthrough().first() {
            return Err(ModelError::NotAnMlp(format!(
                "unexpected non-float tensor `{name}`"
            )));
        }
        let mut layers = Vec::new();
        let mut used = 0;
        let mut prev_out: Option<usize> = None;
        while let Some(w) = params.get(&format!("layers.{}.weight", layers.len())) {
            let i = layers.len();
            let &[out, inp] = w.shape() else {
                return Err(ModelError::NotAnMlp(format!(
                    "layers.{i}.weight has shape {:?}, not [out, in]",
                    w.shape()
                )));
            };
            if let Some(p) = prev_out
                && p != inp
            {
                return Err(ModelError::NotAnMlp(format!(
                    "layers.{i}.weight takes {inp} inputs but layers.{}.weight gives {p}",
                    i - 1
                )));
            }
            // Kept as a transposed view of PyTorch's [out, in] data rather
            // than made contiguous: measured 15-25% faster training with
            // flex's gemm (`fusion bench train`).
            let weight =
                Tensor::<2>::from_data(TensorData::new(w.data().to_vec(), [out, inp]), device)
                    .transpose();
            used += 1;
            let bias = match params.get(&format!("layers.{i}.bias")) {
                Some(b) if b.shape() == [out] => {
                    used += 1;
                    Some(Param::from_tensor(Tensor::<1>::from_data(
                        TensorData::new(b.data().to_vec(), [out]),
                        device,
                    )))
                }
                Some(b) => {
                    return Err(ModelError::NotAnMlp(format!(
                        "layers.{i}.bias has shape {:?}, expected [{out}]",
                        b.shape()
                    )));
                }
                None => None,
            };
            layers.push(Linear {
                weight: Param::from_tensor(weight),
                bias,
            });
            prev_out = Some(out);
        }
        if layers.is_empty() {
            return Err(ModelError::NotAnMlp(
                "no tensor named layers.0.weight".into(),
            ));
        }
        if used != params.len() {
            let extra: Vec<&str> = params
                .names()
                .filter(|n| !is_layer_tensor(n, layers.len()))
                .take(3)
                .collect();
            return Err(ModelError::NotAnMlp(format!(
                "tensors that are not part of the layer chain: {extra:?}"
            )));
        }
        Ok(Self { layers })
    }

    /// The permutation spec of this MLP: one permutation per hidden layer,
    /// acting on the rows of its weight and bias and on the columns of the
    /// next weight. Comes with the model, so no spec file is needed.
    pub fn permutation_spec(&self) -> Result<PermutationSpec, ModelError> {
        Ok(infer_mlp_spec(&self.to_params())?)
    }

    /// Checks that the model fits data with `input` features and `classes` classes.
    pub fn check_data(&self, input: usize, classes: usize) -> Result<(), ModelError> {
        let w = self.widths();
        let (first, last) = (
            w.first().copied().unwrap_or(0),
            w.last().copied().unwrap_or(0),
        );
        if first != input {
            return Err(ModelError::DataMismatch {
                what: "input features",
                model: first,
                data: input,
            });
        }
        if last != classes {
            return Err(ModelError::DataMismatch {
                what: "classes",
                model: last,
                data: classes,
            });
        }
        Ok(())
    }
}

/// Whether `name` is `layers.{i}.weight` or `.bias` with `i < count`.
fn is_layer_tensor(name: &str, count: usize) -> bool {
    let Some(rest) = name.strip_prefix("layers.") else {
        return false;
    };
    let Some((index, kind)) = rest.split_once('.') else {
        return false;
    };
    matches!(kind, "weight" | "bias") && index.parse::<usize>().is_ok_and(|i| i < count)
}

/// A tensor's values on the host as `f32`, in row-major order: how
/// parameters leave a device, and how training reads logits and statistics.
pub fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default()
}
