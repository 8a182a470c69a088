//! Moving batches between the host and a device.

use burn::tensor::{Device, Int, Tensor, TensorData};

/// A batch of inputs `[n, features]` on `device`.
pub fn inputs(x: Vec<f32>, n: usize, features: usize, device: &Device) -> Tensor<2> {
    Tensor::<2>::from_data(TensorData::new(x, [n, features]), device)
}

/// Class labels as an integer tensor on `device`.
pub fn targets(y: &[u8], device: &Device) -> Tensor<1, Int> {
    let y: Vec<i64> = y.iter().map(|&l| i64::from(l)).collect();
    let n = y.len();
    Tensor::<1, Int>::from_data(TensorData::new(y, [n]), device)
}

pub use fusion_models::host;
