//! Re-estimating BatchNorm running statistics after a merge.
//!
//! Averaging (or interpolating) two networks averages their running means
//! and variances too, which no longer describe the merged network's
//! activations: accuracy collapses although the weights are fine (Jordan
//! et al., REPAIR, 2023). A pass over some training data in training mode,
//! with no gradient step, measures them again. In a federation the
//! server has no data, so each client measures them on its own
//! ([`batch_norm_moments`]) and the server averages what they send.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::tensor::Device;
use fusion_core::{ParamSet, StatisticRequest, StatisticTensor};
use fusion_data::Dataset;
use fusion_models::Network;

use crate::error::TrainError;
use crate::tensors::images;
use crate::train::shuffle_for_epoch;

/// `model` with every BatchNorm's running mean and variance replaced by
/// their average over `batches` batches of `batch` examples of `data`
/// (shuffled by `seed`; fewer if the data runs out), as PyTorch's
/// `momentum=None` cumulative average gives. Weights do not change; a
/// network without BatchNorm is returned as it is.
pub fn reset_batch_norm(
    model: Network,
    data: &Dataset,
    batches: usize,
    batch: usize,
    seed: u64,
    device: &Device,
) -> Result<Network, TrainError> {
    let mut probe = model;
    if probe.batch_norms_mut().is_empty() || batches == 0 {
        return Ok(probe);
    }
    if data.is_empty() || batch == 0 {
        return Err(TrainError::EmptyData("BatchNorm re-estimation data"));
    }
    probe.check_data(data.shape(), data.classes())?;
    // BatchNorm updates its statistics only in a forward pass on an
    // autodiff device, in training mode. With no parameter requiring a
    // gradient no graph is recorded: forward passes that are never
    // followed by a backward one kept theirs, and eight batches of a
    // ResNet-20 x2 grew the process past 24 GB.
    let autodiff = device.clone().autodiff();
    let mut net = Network::from_params(&probe.to_params(), &autodiff)?.no_grad();
    let mut order: Vec<usize> = (0..data.len()).collect();
    shuffle_for_epoch(&mut order, seed, 0);
    for (k, chunk) in order.chunks(batch).take(batches).enumerate() {
        // Momentum 1/k makes the running value the mean of the k batches.
        let momentum = 1.0 / (k + 1) as f64;
        for bn in net.batch_norms_mut() {
            bn.momentum = momentum;
        }
        let (x, _) = data.batch(chunk);
        let _ = net.forward(images(x, chunk.len(), data.shape(), &autodiff));
    }
    let mut plain = net.valid();
    for bn in plain.batch_norms_mut() {
        bn.momentum = 0.1;
    }
    Ok(plain)
}

/// The [`fusion_core::StatisticKind::Moments`] statistics named in `names`
/// (`moments:layer1.0.bn1`, …) of `model` over all of `data`, in batches
/// of `batch` examples in the data's order: per BatchNorm layer, the mean
/// and the variance of each channel's input as that layer measures them
/// in training mode (each layer sees the batch-normalised output of the
/// layers before it), averaged over the batches weighted by their size.
/// On equal batches this is what [`reset_batch_norm`] writes into the
/// running statistics, so a server that averages clients' moments,
/// weighted by examples, re-estimates the merged model as if it had their
/// pooled data. Errors name a statistic the model has no norm for.
pub fn batch_norm_moments(
    model: &ParamSet,
    names: &[String],
    data: &Dataset,
    batch: usize,
    device: &Device,
) -> Result<BTreeMap<String, StatisticTensor>, TrainError> {
    let requests = names
        .iter()
        .map(|name| {
            StatisticRequest::parse_moments(name, model)
                .map_err(|e| TrainError::bad_statistic(name, e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if requests.is_empty() {
        return Ok(BTreeMap::new());
    }
    if data.is_empty() || batch == 0 {
        return Err(TrainError::EmptyData("the statistics' data"));
    }
    let autodiff = device.clone().autodiff();
    let mut net = Network::from_params(model, &autodiff)?.no_grad();
    net.check_data(data.shape(), data.classes())?;
    // Momentum 1 makes each forward pass leave exactly its batch's
    // statistics in every norm's running mean and variance.
    for bn in net.batch_norms_mut() {
        bn.momentum = 1.0;
    }
    let mut sums: Vec<Vec<f64>> = requests.iter().map(|r| vec![0.0; 2 * r.shape[1]]).collect();
    let order: Vec<usize> = (0..data.len()).collect();
    for chunk in order.chunks(batch) {
        let (x, _) = data.batch(chunk);
        let _ = net.forward(images(x, chunk.len(), data.shape(), &autodiff));
        let measured = net.clone().valid().to_params();
        let examples = chunk.len() as f64;
        for (request, sum) in requests.iter().zip(&mut sums) {
            let channels = request.shape[1];
            for (row, suffix) in ["running_mean", "running_var"].iter().enumerate() {
                let name = format!("{}.{suffix}", request.layer);
                let values = measured
                    .get(&name)
                    .ok_or_else(|| {
                        TrainError::bad_statistic(
                            &request.name(),
                            format!("the network has no `{name}`"),
                        )
                    })?
                    .data();
                for (s, &v) in sum[row * channels..(row + 1) * channels]
                    .iter_mut()
                    .zip(values)
                {
                    *s += examples * f64::from(v);
                }
            }
        }
    }
    let total = data.len() as f64;
    requests
        .into_iter()
        .zip(sums)
        .map(|(request, sum)| {
            let name = request.name();
            let values = sum.into_iter().map(|s| s / total).collect();
            let tensor = StatisticTensor::new(&name, request.shape, values)
                .map_err(|e| TrainError::bad_statistic(&name, e.to_string()))?;
            Ok((name, tensor))
        })
        .collect()
}
