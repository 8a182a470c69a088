//! Choosing where tensor work runs, at run time.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

/// A compute backend that weight matching (and later training) can run on.
///
/// Chosen at run time, not by a type parameter, so one binary serves CPU-only
/// hosts and GPU hosts alike.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ComputeBackend {
    /// burn's `flex` CPU backend with rayon and SIMD: the fastest CPU choice
    /// measured here (see `docs/benchmarks.md`).
    #[default]
    Flex,
    /// burn's `ndarray` CPU backend (deprecated upstream; kept for
    /// comparison and for users who rely on it).
    Ndarray,
    /// burn's `wgpu` backend: Vulkan, Metal or DX12, whichever the machine has.
    /// Needs the `wgpu` cargo feature.
    Wgpu,
}

/// A backend that this build or this machine cannot provide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The name is not one of the known backends.
    #[error("unknown backend '{0}': expected flex, ndarray or wgpu")]
    Unknown(String),
    /// wgpu was asked for but not compiled in.
    #[error("this build has no wgpu support: rebuild with `--features wgpu`")]
    NotCompiled,
}

impl ComputeBackend {
    /// Every backend, for help texts and benchmarks.
    pub const ALL: [ComputeBackend; 3] = [Self::Flex, Self::Ndarray, Self::Wgpu];

    /// Whether this build can create the backend's device.
    pub fn is_available(self) -> bool {
        !matches!(self, Self::Wgpu) || cfg!(feature = "wgpu")
    }

    /// The burn device for this backend. wgpu picks the best adapter the
    /// machine offers (a GPU if there is one, else a software rasteriser).
    pub fn device(self) -> Result<Device, BackendError> {
        match self {
            Self::Flex => Ok(Device::flex()),
            #[allow(deprecated)] // ndarray is deprecated upstream but still a supported choice here
            Self::Ndarray => Ok(Device::ndarray()),
            Self::Wgpu => wgpu_device(),
        }
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device, BackendError> {
    Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device, BackendError> {
    Err(BackendError::NotCompiled)
}

impl FromStr for ComputeBackend {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "flex" | "cpu" => Ok(Self::Flex),
            "ndarray" => Ok(Self::Ndarray),
            "wgpu" | "gpu" => Ok(Self::Wgpu),
            _ => Err(BackendError::Unknown(s.to_owned())),
        }
    }
}

impl fmt::Display for ComputeBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Flex => "flex",
            Self::Ndarray => "ndarray",
            Self::Wgpu => "wgpu",
        })
    }
}
