//! REPAIR (Jordan et al., ICLR 2023): after two aligned CNNs are
//! interpolated, each channel's activations shrink in variance (averaging
//! decorrelated units), which is most of the barrier left after alignment.
//! REPAIR rescales every channel of the merged network so that its mean
//! and standard deviation are the interpolation of the end models' own.

use std::collections::BTreeMap;

use burn::tensor::Device;
use fusion_core::{ParamSet, StatisticRequest, StatisticTensor};
use fusion_data::Dataset;
use fusion_models::Network;

use crate::error::TrainError;
use crate::tensors::{host, images};
use crate::train::shuffle_for_epoch;

/// Per-channel mean and standard deviation of one norm layer's output,
/// over batch × height × width.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelMoments {
    /// Mean of each channel.
    pub mean: Vec<f64>,
    /// Standard deviation (population) of each channel.
    pub std: Vec<f64>,
}

/// Which examples the moments are measured on: `batches` batches of
/// `batch` examples of `data` shuffled by `seed` (fewer if it runs out).
#[derive(Debug, Clone, Copy)]
pub struct MomentData<'d> {
    /// The data (training data: REPAIR needs no labels).
    pub data: &'d Dataset,
    /// Batches to use.
    pub batches: usize,
    /// Examples per batch.
    pub batch: usize,
    /// Shuffle seed.
    pub seed: u64,
}

impl MomentData<'_> {
    /// The batches' example indices.
    fn chunks(&self) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.data.len()).collect();
        shuffle_for_epoch(&mut order, self.seed, 0);
        order
            .chunks(self.batch.max(1))
            .take(self.batches)
            .map(<[usize]>::to_vec)
            .collect()
    }
}

/// The moments of every norm layer's output of `model` (in evaluation
/// mode), in the order of [`Network::norms_mut`].
pub fn norm_moments(
    model: &Network,
    on: MomentData<'_>,
    device: &Device,
) -> Result<Vec<ChannelMoments>, TrainError> {
    if on.data.is_empty() || on.batches == 0 || on.batch == 0 {
        return Err(TrainError::EmptyData("REPAIR statistics data"));
    }
    model.check_data(on.data.shape(), on.data.classes())?;
    // Per layer: per-channel sums of values and of squares, and how many
    // positions (examples × height × width) they cover.
    let mut sums: Vec<(Vec<f64>, Vec<f64>, usize)> = Vec::new();
    for chunk in on.chunks() {
        let (x, _) = on.data.batch(&chunk);
        let outputs = model.norm_outputs(images(x, chunk.len(), on.data.shape(), device));
        if sums.is_empty() {
            sums = outputs
                .iter()
                .map(|y| (vec![0.0; y.dims()[1]], vec![0.0; y.dims()[1]], 0))
                .collect();
        }
        for (y, (sum, square, count)) in outputs.into_iter().zip(&mut sums) {
            let [n, c, h, w] = y.dims();
            let per_channel = y.swap_dims(0, 1).reshape([c, n * h * w]);
            let s = host(per_channel.clone().sum_dim(1));
            let q = host(per_channel.powf_scalar(2.0).sum_dim(1));
            for k in 0..c.min(sum.len()) {
                sum[k] += f64::from(s[k]);
                square[k] += f64::from(q[k]);
            }
            *count += n * h * w;
        }
    }
    Ok(sums
        .into_iter()
        .map(|(sum, square, count)| {
            let total = count.max(1) as f64;
            let mean: Vec<f64> = sum.iter().map(|s| s / total).collect();
            let std = square
                .iter()
                .zip(&mean)
                .map(|(q, m)| (q / total - m * m).max(0.0).sqrt())
                .collect();
            ChannelMoments { mean, std }
        })
        .collect())
}

/// How many of a client's examples its `outputs:` moments are measured
/// on. Sequential REPAIR asks for them once per norm: over a whole
/// 2,000-image shard that is 21 forward passes of it per ResNet-20 round;
/// 512 images are 512 × height × width values per
/// channel, plenty for a mean and a variance.
pub const OUTPUT_MOMENT_EXAMPLES: usize = 512;

/// The [`fusion_core::StatisticKind::Outputs`] statistics named in
/// `names` (`outputs:layer1.0.bn1`, …) of `model` over the first
/// [`OUTPUT_MOMENT_EXAMPLES`] examples of `data` in a fixed shuffle (all of
/// them when it has fewer), in batches of `batch`: per norm, each
/// channel's output mean and (population) variance, evaluation mode, as
/// `[2, C]`. What a federated client sends for REPAIR
/// ([`fusion_core::Repair`]): of its own model with its weights, of the
/// merged model in each pass. Errors name a statistic the model has no
/// norm for.
pub fn norm_output_moments(
    model: &ParamSet,
    names: &[String],
    data: &Dataset,
    batch: usize,
    device: &Device,
) -> Result<BTreeMap<String, StatisticTensor>, TrainError> {
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let net = Network::from_params(model, device)?;
    let norms = net.norm_names();
    let wanted = names
        .iter()
        .map(|name| {
            let request = StatisticRequest::parse_outputs(name, model)
                .map_err(|e| TrainError::bad_statistic(name, e.to_string()))?;
            let index = norms
                .iter()
                .position(|n| *n == request.layer)
                .ok_or_else(|| {
                    TrainError::bad_statistic(name, "the network has no norm of that name")
                })?;
            Ok((name, index))
        })
        .collect::<Result<Vec<_>, TrainError>>()?;
    // The same examples every time (seed 0), so a client's target and its
    // measurements of the merged model see the same data.
    let on = MomentData {
        data,
        batches: data
            .len()
            .min(OUTPUT_MOMENT_EXAMPLES)
            .div_ceil(batch.max(1)),
        batch,
        seed: 0,
    };
    let moments = norm_moments(&net, on, device)?;
    wanted
        .into_iter()
        .map(|(name, index)| {
            let m = moments.get(index).ok_or_else(|| {
                TrainError::bad_statistic(name, "the network measured no such norm")
            })?;
            let values = m.mean.iter().copied().chain(m.std.iter().map(|s| s * s));
            let tensor = StatisticTensor::new(name, vec![2, m.mean.len()], values.collect())
                .map_err(|e| TrainError::bad_statistic(name, e.to_string()))?;
            Ok((name.clone(), tensor))
        })
        .collect()
}

/// REPAIR: rescales every channel of `merged` (a merge of `a` and aligned
/// `b` at weight `lambda` on `b`) so that its output mean and standard
/// deviation become `(1 − λ)·a's + λ·b's`, layer by layer in forward
/// order, each measured after the layers before it were corrected.
///
/// Works on BatchNorm (evaluation mode) and LayerNorm CNNs alike, through
/// the norms' affine parameters; the MLP has no norm and comes back as it
/// is. A channel that is constant in the merged network is left alone.
pub fn repair(
    merged: Network,
    a: &Network,
    b: &Network,
    lambda: f64,
    on: MomentData<'_>,
    device: &Device,
) -> Result<Network, TrainError> {
    if !(0.0..=1.0).contains(&lambda) {
        return Err(TrainError::BadSetting {
            name: "lambda",
            value: lambda.to_string(),
            reason: "REPAIR interpolates moments with λ in [0, 1]".into(),
        });
    }
    let (ma, mb) = (norm_moments(a, on, device)?, norm_moments(b, on, device)?);
    let mut net = merged;
    for k in 0..ma.len() {
        let now = norm_moments(&net, on, device)?;
        let (Some(current), Some(ta), Some(tb)) = (now.get(k), ma.get(k), mb.get(k)) else {
            break;
        };
        let (mut scale, mut shift) = (Vec::new(), Vec::new());
        for c in 0..current.mean.len() {
            let target_mean = (1.0 - lambda) * ta.mean[c] + lambda * tb.mean[c];
            let target_std = (1.0 - lambda) * ta.std[c] + lambda * tb.std[c];
            let s = if current.std[c] > 1e-8 {
                target_std / current.std[c]
            } else {
                1.0
            };
            scale.push(s as f32);
            shift.push((target_mean - s * current.mean[c]) as f32);
        }
        if let Some(norm) = net.norms_mut().into_iter().nth(k) {
            norm.rescale(&scale, &shift);
        }
    }
    Ok(net)
}
