//! Model parameters as plain data: named, ordered `f32` tensors in PyTorch
//! layout, loaded from and saved to safetensors.

mod error;
mod io;
mod natural;
mod set;
mod tensor;

pub use error::ParamsError;
pub use io::{TensorInfo, describe_safetensors, safetensors_metadata};
pub use natural::natural_cmp;
pub use set::{ParamSet, RawTensor};
pub use tensor::ParamTensor;
pub(crate) use tensor::{check_count, dot_f64, split_shape};
