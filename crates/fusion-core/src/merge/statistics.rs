use std::fmt;

use super::MergeError;
use crate::params::ParamSet;
use crate::spec::{LinearLayer, linear_chain};

/// Which second moment of a layer a client computes.
///
/// For linear layer `l` with weight `W` (`[out, in]`) and optional bias,
/// let `x̃` be the layer's input in the instructions' model with a 1
/// appended when the layer has a bias (`k = in + 1` columns), and `y` the
/// layer's pre-activation in the client's own trained model. Sums run over
/// the client's examples; they are sums, not means, so clients with more
/// data weigh more, as in pooled least squares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatisticKind {
    /// `Σ x̃ x̃ᵀ`, `k × k` and symmetric, sent as its upper triangle row by
    /// row: shape `[k(k+1)/2]`.
    Gram,
    /// `Σ x̃ yᵀ`, shape `[k, out]`.
    Cross,
    /// A BatchNorm layer's per-channel input moments in the instructions'
    /// model, shape `[2, C]`: row 0 the mean, row 1 the variance, each the
    /// average over the client's batches (in training mode, so each
    /// layer sees the batch-normalised output of the layers before it)
    /// weighted by batch size. Means, not sums: the server weighs clients
    /// by their examples, as FedAvg does. `layer` names the norm
    /// (`layer1.0.bn1`), whose `running_mean` and `running_var` these
    /// replace after the merge.
    Moments,
    /// A norm layer's per-channel output moments, shape `[2, C]`: row 0
    /// the mean, row 1 the (population) variance of each channel of the
    /// norm's output, affine included, over the client's examples ×
    /// height × width, in evaluation mode. In exchange 0 they are the
    /// client's own trained model's (REPAIR's target); later, the
    /// instructions' merged model's. `layer` names the norm (its
    /// `weight` and `bias` are what REPAIR rescales).
    Outputs,
}

impl StatisticKind {
    fn prefix(self) -> &'static str {
        match self {
            Self::Gram => "gram",
            Self::Cross => "cross",
            Self::Moments => "moments",
            Self::Outputs => "outputs",
        }
    }
}

/// A statistic a strategy asks clients for: its kind, the layer (by the
/// name [`linear_chain`] gives it, `layers.0`, or a norm's prefix for
/// [`StatisticKind::Moments`]) and the shape it must have. Its wire name
/// is `gram:layers.0`, `cross:layers.2` or `moments:layer1.0.bn1`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StatisticRequest {
    /// Gram matrix, cross term or a norm's moments.
    pub kind: StatisticKind,
    /// The linear layer.
    pub layer: String,
    /// The shape the tensor must have.
    pub shape: Vec<usize>,
    /// Whether the layer has a bias (its inputs then end with a 1).
    pub bias: bool,
    /// `k`: the layer's inputs, plus 1 with a bias.
    pub augmented_inputs: usize,
}

impl StatisticRequest {
    /// The request of `kind` for the linear `layer`, with its shape.
    /// (Moments belong to norms: [`StatisticRequest::moments`]; asked of a
    /// linear layer, they are those of its `outputs` channels.)
    pub fn new(kind: StatisticKind, layer: &LinearLayer) -> Self {
        let k = layer.augmented_inputs();
        let shape = match kind {
            StatisticKind::Gram => vec![k * (k + 1) / 2],
            StatisticKind::Cross => vec![k, layer.outputs],
            StatisticKind::Moments => return Self::moments(&layer.name, layer.outputs),
            StatisticKind::Outputs => return Self::outputs(&layer.name, layer.outputs),
        };
        Self {
            kind,
            layer: layer.name.clone(),
            shape,
            bias: layer.bias.is_some(),
            augmented_inputs: k,
        }
    }

    /// The [`StatisticKind::Moments`] request for the norm `layer` of
    /// `channels` channels.
    pub fn moments(layer: &str, channels: usize) -> Self {
        Self {
            kind: StatisticKind::Moments,
            layer: layer.to_owned(),
            shape: vec![2, channels],
            bias: false,
            augmented_inputs: 0,
        }
    }

    /// The [`StatisticKind::Outputs`] request for the norm `layer` of
    /// `channels` channels.
    pub fn outputs(layer: &str, channels: usize) -> Self {
        Self {
            kind: StatisticKind::Outputs,
            ..Self::moments(layer, channels)
        }
    }

    /// The name it travels under: `gram:LAYER`, `cross:LAYER`,
    /// `moments:NORM` or `outputs:NORM`.
    pub fn name(&self) -> String {
        format!("{}:{}", self.kind.prefix(), self.layer)
    }

    /// Parses a wire name against `model`'s linear chain, so a client can
    /// tell what to compute and the shape follows from its own model.
    /// Moments are parsed by [`StatisticRequest::parse_moments`].
    pub fn parse(name: &str, model: &ParamSet) -> Result<(Self, LinearLayer), MergeError> {
        let (kind, layer) = match name.split_once(':') {
            Some(("gram", layer)) => (StatisticKind::Gram, layer),
            Some(("cross", layer)) => (StatisticKind::Cross, layer),
            Some(("moments" | "outputs", _)) => {
                return Err(MergeError::BadUpdate(format!(
                    "statistic `{name}` is a norm's moments, not a linear layer's"
                )));
            }
            _ => {
                return Err(MergeError::BadUpdate(format!(
                    "unknown statistic `{name}`; expected gram:LAYER, cross:LAYER, moments:NORM or outputs:NORM"
                )));
            }
        };
        let chain = linear_chain(model)?;
        let found = chain.into_iter().find(|l| l.name == layer).ok_or_else(|| {
            MergeError::BadUpdate(format!("statistic `{name}` names no linear layer"))
        })?;
        Ok((Self::new(kind, &found), found))
    }

    /// Parses `moments:NORM` against `model`: the norm must hold a
    /// `running_mean` and a `running_var` of one shape `[C]`.
    pub fn parse_moments(name: &str, model: &ParamSet) -> Result<Self, MergeError> {
        let Some(("moments", layer)) = name.split_once(':') else {
            return Err(MergeError::BadUpdate(format!(
                "statistic `{name}` is not moments:NORM"
            )));
        };
        batch_norm_layers(model)
            .into_iter()
            .find(|request| request.layer == layer)
            .ok_or_else(|| {
                MergeError::BadUpdate(format!(
                    "statistic `{name}` names no BatchNorm layer (with running_mean and running_var) of the model"
                ))
            })
    }

    /// Parses `outputs:NORM` against `model`: the norm must be one
    /// [`norm_layers`] finds.
    pub fn parse_outputs(name: &str, model: &ParamSet) -> Result<Self, MergeError> {
        let Some(("outputs", layer)) = name.split_once(':') else {
            return Err(MergeError::BadUpdate(format!(
                "statistic `{name}` is not outputs:NORM"
            )));
        };
        norm_layers(model)
            .into_iter()
            .find(|request| request.layer == layer)
            .ok_or_else(|| {
                MergeError::BadUpdate(format!(
                    "statistic `{name}` names no norm layer (a one-dimensional weight with a bias of its size) of the model"
                ))
            })
    }
}

/// One [`StatisticKind::Moments`] request per BatchNorm layer of `model`:
/// every `NAME.running_mean` with a `NAME.running_var` of the same
/// one-dimensional shape, in the model's order. Empty for a model
/// without BatchNorm (an MLP, a LayerNorm CNN).
pub fn batch_norm_layers(model: &ParamSet) -> Vec<StatisticRequest> {
    model
        .iter()
        .filter_map(|(name, mean)| {
            let layer = name.strip_suffix(".running_mean")?;
            let var = model.get(&format!("{layer}.running_var"))?;
            match (mean.shape(), var.shape()) {
                ([c], [v]) if c == v => Some(StatisticRequest::moments(layer, *c)),
                _ => None,
            }
        })
        .collect()
}

/// One [`StatisticKind::Outputs`] request per norm layer of `model`, in
/// the model's order: every `NAME.weight` of shape `[C]` with a
/// `NAME.bias` of the same shape. In PyTorch layout nothing else has a
/// one-dimensional weight (convolutions' are 4-D, linear layers' 2-D), so
/// this finds BatchNorm and LayerNorm layers alike, and nothing in an
/// MLP.
pub fn norm_layers(model: &ParamSet) -> Vec<StatisticRequest> {
    model
        .iter()
        .filter_map(|(name, weight)| {
            let layer = name.strip_suffix(".weight")?;
            let bias = model.get(&format!("{layer}.bias"))?;
            match (weight.shape(), bias.shape()) {
                ([c], [b]) if c == b => Some(StatisticRequest::outputs(layer, *c)),
                _ => None,
            }
        })
        .collect()
}

/// Checks that a moments statistic could be one: no negative variance.
/// (Shape and finiteness are checked for every statistic.)
pub fn check_moments(name: &str, values: &[f64]) -> Result<(), String> {
    let channels = values.len() / 2;
    match values[channels..].iter().position(|&v| v < 0.0) {
        Some(c) => Err(format!(
            "statistic `{name}` has a negative variance {} in channel {c}",
            values[channels + c]
        )),
        None => Ok(()),
    }
}

impl fmt::Display for StatisticRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Checks that a packed Gram matrix could be one: a non-negative diagonal,
/// every entry within Cauchy–Schwarz of its diagonal (`G_ij² ≤ G_ii G_jj`,
/// with room for rounding), and, for a layer with a bias, the input's
/// appended 1 summed to exactly `examples`. A hostile or broken client
/// could otherwise make the summed system indefinite (failing the round on
/// every retry) or outweigh everyone by scaling its statistics.
pub fn check_gram(
    name: &str,
    packed: &[f64],
    k: usize,
    bias: bool,
    examples: f64,
) -> Result<(), String> {
    let mut diagonal = Vec::with_capacity(k);
    let mut at = 0;
    for i in 0..k {
        diagonal.push(packed[at]);
        at += k - i;
    }
    if let Some(i) = diagonal.iter().position(|&d| d < 0.0) {
        return Err(format!(
            "statistic `{name}` has a negative diagonal entry {} at {i}: not a Gram matrix",
            diagonal[i]
        ));
    }
    let mut at = 0;
    for i in 0..k {
        for j in i..k {
            let g = packed[at];
            at += 1;
            let bound = (diagonal[i] * diagonal[j]).sqrt();
            if g.abs() > bound * (1.0 + 1e-3) + 1e-6 {
                return Err(format!(
                    "statistic `{name}`: entry ({i}, {j}) = {g} exceeds sqrt(G_ii G_jj) = {bound}: not a Gram matrix"
                ));
            }
        }
    }
    if bias {
        let ones = diagonal[k - 1];
        if (ones - examples).abs() > 0.5 {
            return Err(format!(
                "statistic `{name}` sums {ones} examples, but the update claims {examples}"
            ));
        }
    }
    Ok(())
}

/// Packs the upper triangle (row by row, diagonal included) of the
/// symmetric `k × k` row-major `full` into `k(k+1)/2` values: a Gram
/// matrix's wire form, half the bytes of the full matrix.
pub fn pack_upper(full: &[f64], k: usize) -> Vec<f64> {
    let mut packed = Vec::with_capacity(k * (k + 1) / 2);
    for i in 0..k {
        packed.extend_from_slice(&full[i * k + i..(i + 1) * k]);
    }
    packed
}

/// Adds the symmetric matrix packed by [`pack_upper`], times `scale`, to
/// the row-major `k × k` `full`.
pub fn add_unpacked(full: &mut [f64], packed: &[f64], k: usize, scale: f64) {
    let mut at = 0;
    for i in 0..k {
        for j in i..k {
            let v = packed[at] * scale;
            at += 1;
            full[i * k + j] += v;
            if i != j {
                full[j * k + i] += v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips_a_symmetric_matrix() {
        let k = 4;
        let mut full = vec![0.0; k * k];
        for i in 0..k {
            for j in 0..k {
                full[i * k + j] = (i.min(j) * 10 + i.max(j)) as f64;
            }
        }
        let packed = pack_upper(&full, k);
        assert_eq!(packed.len(), k * (k + 1) / 2);
        let mut back = vec![0.0; k * k];
        add_unpacked(&mut back, &packed, k, 1.0);
        assert_eq!(back, full);
    }

    #[test]
    fn names_parse_against_the_model_and_carry_shapes() {
        let model = crate::synthetic::random_mlp(&[5, 3, 2], 0);
        let (gram, layer) = StatisticRequest::parse("gram:layers.1", &model).expect("parses");
        assert_eq!(layer.inputs, 3);
        assert_eq!(gram.shape, vec![4 * 5 / 2]);
        assert_eq!(gram.name(), "gram:layers.1");
        let (cross, _) = StatisticRequest::parse("cross:layers.0", &model).expect("parses");
        assert_eq!(cross.shape, vec![6, 3]);
        assert!(StatisticRequest::parse("gram:layers.7", &model).is_err());
        assert!(StatisticRequest::parse("mean:layers.0", &model).is_err());
    }

    #[test]
    fn impossible_gram_matrices_are_named() {
        // x̃ = (1, 2, 1) and (0, 1, 1): two examples with a bias column.
        let mut full = vec![0.0; 9];
        for x in [[1.0, 2.0, 1.0], [0.0, 1.0, 1.0]] {
            for i in 0..3 {
                for j in 0..3 {
                    full[i * 3 + j] += x[i] * x[j];
                }
            }
        }
        let good = pack_upper(&full, 3);
        assert_eq!(check_gram("g", &good, 3, true, 2.0), Ok(()));
        let err = check_gram("g", &good, 3, true, 5.0).expect_err("count");
        assert!(
            err.contains("sums 2 examples, but the update claims 5"),
            "{err}"
        );
        let mut negative = good.clone();
        negative[0] = -1.0;
        assert!(
            check_gram("g", &negative, 3, true, 2.0)
                .expect_err("neg")
                .contains("negative")
        );
        let mut off = good.clone();
        off[1] = 100.0;
        assert!(
            check_gram("g", &off, 3, true, 2.0)
                .expect_err("cs")
                .contains("(0, 1)")
        );
    }
}
