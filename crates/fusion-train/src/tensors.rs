//! Moving batches between the host and a device.

use burn::tensor::{Device, Int, Tensor, TensorData};

/// A batch of inputs `[n, features]` on `device`.
pub fn inputs(x: Vec<f32>, n: usize, features: usize, device: &Device) -> Tensor<2> {
    Tensor::<2>::from_data(TensorData::new(x, [n, features]), device)
}

/// A batch of images `[n, c, h, w]` on `device`, from rows of `c·h·w`
/// channel-major values: what [`fusion_models::Network::forward`] takes.
pub fn images(x: Vec<f32>, n: usize, shape: [usize; 3], device: &Device) -> Tensor<4> {
    let [c, h, w] = shape;
    Tensor::<4>::from_data(TensorData::new(x, [n, c, h, w]), device)
}

/// Class labels as an integer tensor on `device`.
pub fn targets(y: &[u8], device: &Device) -> Tensor<1, Int> {
    let y: Vec<i64> = y.iter().map(|&l| i64::from(l)).collect();
    let n = y.len();
    Tensor::<1, Int>::from_data(TensorData::new(y, [n]), device)
}

pub use fusion_models::host;
