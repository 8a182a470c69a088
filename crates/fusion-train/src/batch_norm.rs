//! Re-estimating BatchNorm running statistics after a merge.
//!
//! Averaging (or interpolating) two networks averages their running means
//! and variances too, which no longer describe the merged network's
//! activations: accuracy collapses although the weights are fine (Jordan
//! et al., REPAIR, 2023). A pass over some training data in training mode,
//! with no gradient step, measures them again.

use burn::module::Module;
use burn::tensor::Device;
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
