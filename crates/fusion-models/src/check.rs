//! Whether a permuted model still computes what the original did: the
//! check that catches a spec which is structurally valid but wrong (a
//! permutation on another axis of the same size, a tensor left out).

use burn::tensor::{Device, Tensor, TensorData};
use fusion_core::ParamSet;
use rand::{RngExt, SeedableRng};

use crate::error::ModelError;
use crate::mlp::host;
use crate::network::Network;

/// Relative output differences below this are float rounding: summing
/// channels in another order moves f32 logits by ~1e-6 of their scale,
/// while a misplaced permutation moves them by tens of percent.
pub const SAME_FUNCTION_TOLERANCE: f32 = 1e-4;

/// Runs `original` and `permuted` (both built-in networks, see
/// [`Network::from_params`]) on `batch` random inputs drawn from `seed`
/// and returns the largest output difference relative to the largest
/// output of the original. Fails when either is not a built-in network.
pub fn permuted_output_difference(
    original: &ParamSet,
    permuted: &ParamSet,
    batch: usize,
    seed: u64,
    device: &Device,
) -> Result<f32, ModelError> {
    let a = network_of(original, device)?;
    let b = network_of(permuted, device)?;
    let shape = a.probe_shape(batch);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let values: Vec<f32> = (0..shape.iter().product())
        .map(|_| rng.random_range(0.0f32..1.0))
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(values, shape), device);
    let (ya, yb) = (host(a.forward(x.clone())), host(b.forward(x)));
    if ya.len() != yb.len() {
        return Err(ModelError::Unrecognised(format!(
            "the permuted model gives {} outputs, the original {}",
            yb.len(),
            ya.len()
        )));
    }
    let scale = ya
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    let diff = ya
        .iter()
        .zip(&yb)
        .map(|(p, q)| (p - q).abs())
        .fold(
            0.0f32,
            |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
        );
    Ok(diff / scale)
}

/// The built-in network `params` describe, whatever the naming of an MLP:
/// a chain of Linear layers that `--spec mlp` accepts (`layers.{i}`, an
/// `nn.Sequential`'s `0`, `2`, …, or `fc1`, `fc2`, …) is renamed to
/// `layers.{k}` first, so the check covers every layout a built-in spec
/// infers.
fn network_of(params: &ParamSet, device: &Device) -> Result<Network, ModelError> {
    let error = match Network::from_params(params, device) {
        Ok(network) => return Ok(network),
        Err(e) => e,
    };
    let Ok(chain) = fusion_core::linear_chain(params) else {
        return Err(error);
    };
    let mut renamed = ParamSet::new();
    for (k, layer) in chain.iter().enumerate() {
        let tensors = std::iter::once((&layer.weight, "weight"))
            .chain(layer.bias.as_ref().map(|b| (b, "bias")));
        for (name, kind) in tensors {
            if let Some(t) = params.get(name) {
                renamed.insert(format!("layers.{k}.{kind}"), t.clone())?;
            }
        }
    }
    Ok(Network::Mlp(crate::mlp::Mlp::from_params(
        &renamed, device,
    )?))
}
