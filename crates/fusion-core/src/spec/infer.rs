//! The built-in `mlp` spec, inferred from tensor names and shapes.

use std::collections::BTreeMap;

use super::{AxisRef, PermDef, PermutationSpec, SpecError};
use crate::params::ParamSet;

/// One `Linear` layer of a chain: its tensors and sizes. The data-aware
/// strategies (RegMean, layer-wise least squares) ask clients for
/// statistics per layer and solve each layer from them, so they need the
/// chain in order, not only the permutations between its layers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinearLayer {
    /// The layer's name: its weight's name without `.weight` (`layers.0`).
    pub name: String,
    /// Index in the file's naming (`layers.{index}`); orders the chain.
    pub index: u64,
    /// The weight tensor, `[outputs, inputs]`.
    pub weight: String,
    /// The bias tensor, `[outputs]`, if the layer has one.
    pub bias: Option<String>,
    /// Output features.
    pub outputs: usize,
    /// Input features.
    pub inputs: usize,
}

impl LinearLayer {
    /// Columns of the layer's input once a constant 1 is appended for the
    /// bias (`inputs + 1` with a bias, `inputs` without): the size of the
    /// layer's Gram matrix.
    pub fn augmented_inputs(&self) -> usize {
        self.inputs + usize::from(self.bias.is_some())
    }
}

/// Finds the chain of `Linear` layers of `params`: tensors named
/// `PREFIX{i}.weight` (2-D, `[out, in]`) with optional `PREFIX{i}.bias`, as
/// written by `layers = nn.ModuleList(...)` (`layers.{i}`) or by an
/// `nn.Sequential` (`{i}`, or `net.{i}` inside a module), in index order.
/// Indices need not be consecutive: a Sequential interleaves activations.
///
/// It refuses a chain whose sizes do not connect and any float tensor
/// outside the chain, since a caller that ignored it would silently change
/// what the model computes.
pub fn linear_chain(params: &ParamSet) -> Result<Vec<LinearLayer>, SpecError> {
    let mut groups: BTreeMap<String, Vec<LinearLayer>> = BTreeMap::new();
    for (name, t) in params.iter() {
        let Some(stem) = name.strip_suffix(".weight") else {
            continue;
        };
        let (prefix, digits) = split_index(stem);
        let (Ok(index), 2) = (digits.parse::<u64>(), t.shape().len()) else {
            continue;
        };
        let bias_name = format!("{stem}.bias");
        let bias = params
            .get(&bias_name)
            .map(|b| (bias_name, b.shape().to_vec()));
        if let Some((bias_name, shape)) = &bias
            && shape.as_slice() != [t.shape()[0]]
        {
            return Err(SpecError::CannotInfer(format!(
                "bias '{bias_name}' has shape {shape:?}, expected [{}] to match '{name}'",
                t.shape()[0]
            )));
        }
        groups
            .entry(prefix.to_owned())
            .or_default()
            .push(LinearLayer {
                name: stem.to_owned(),
                index,
                weight: name.to_owned(),
                bias: bias.map(|(n, _)| n),
                outputs: t.shape()[0],
                inputs: t.shape()[1],
            });
    }
    let Some((prefix, mut layers)) = groups.into_iter().max_by_key(|(_, v)| v.len()) else {
        return Err(SpecError::CannotInfer(
            "no 2-D tensors named like 'layers.{i}.weight' or '{i}.weight'".into(),
        ));
    };
    layers.sort_by_key(|l| l.index);
    for pair in layers.windows(2) {
        if pair[1].inputs != pair[0].outputs {
            return Err(SpecError::CannotInfer(format!(
                "'{}' takes {} inputs but '{}' gives {} outputs",
                pair[1].weight, pair[1].inputs, pair[0].weight, pair[0].outputs
            )));
        }
    }
    let covered: Vec<&str> = layers
        .iter()
        .flat_map(|l| std::iter::once(l.weight.as_str()).chain(l.bias.as_deref()))
        .collect();
    if let Some(extra) = params.names().find(|n| !covered.contains(n)) {
        return Err(SpecError::CannotInfer(format!(
            "tensor '{extra}' is not part of the Linear chain '{prefix}{{i}}'; \
             write a spec file that says how it is permuted"
        )));
    }
    Ok(layers)
}

/// Infers the spec of a chain of `Linear` layers (see [`linear_chain`]).
///
/// Hidden layer `k` (between Linear `k` and `k+1`) gets permutation `P_k`,
/// acting on rows of weight `k`, on bias `k`, and on columns of weight
/// `k+1`.
pub fn infer_mlp_spec(params: &ParamSet) -> Result<PermutationSpec, SpecError> {
    let layers = linear_chain(params)?;
    if layers.len() < 2 {
        return Err(SpecError::CannotInfer(format!(
            "only one Linear layer ('{}'), so there are no hidden units to permute",
            layers[0].weight
        )));
    }
    let perms = layers
        .windows(2)
        .enumerate()
        .map(|(k, pair)| {
            let mut axes = vec![AxisRef::new(&pair[0].weight, 0)];
            if let Some(b) = &pair[0].bias {
                axes.push(AxisRef::new(b, 0));
            }
            axes.push(AxisRef::new(&pair[1].weight, 1));
            PermDef {
                name: format!("P_{k}"),
                axes,
            }
        })
        .collect();
    PermutationSpec::new(perms)
}

/// Splits `"layers.12"` into `("layers.", "12")` and `"3"` into `("", "3")`.
fn split_index(stem: &str) -> (&str, &str) {
    let start = stem
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    stem.split_at(start)
}
