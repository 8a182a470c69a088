//! The `--optimizer` flag: Adam (PyTorch's defaults) or SGD with momentum.

use std::fmt;
use std::str::FromStr;

use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, ModuleOptimizer, SgdConfig};

use crate::error::TrainError;

/// An optimiser and its settings other than the learning rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptimizerKind {
    /// Adam with β = (0.9, 0.999) and ε = 1e-8, PyTorch's defaults (burn's
    /// own default ε is 1e-5; matching PyTorch keeps results comparable).
    Adam,
    /// SGD with heavy-ball momentum (PyTorch semantics: no dampening).
    Sgd {
        /// Momentum factor; 0 is plain SGD.
        momentum: f64,
    },
}

impl OptimizerKind {
    /// Builds burn's optimiser.
    pub fn build(self) -> ModuleOptimizer {
        match self {
            Self::Adam => AdamConfig::new().with_epsilon(1e-8).init(),
            Self::Sgd { momentum } if momentum > 0.0 => SgdConfig::new()
                .with_momentum(Some(MomentumConfig {
                    momentum,
                    dampening: 0.0,
                    nesterov: false,
                }))
                .init(),
            Self::Sgd { .. } => SgdConfig::new().init(),
        }
    }
}

impl FromStr for OptimizerKind {
    type Err = TrainError;

    /// `adam`, `sgd` (momentum 0.9) or `sgd:MOMENTUM`.
    fn from_str(s: &str) -> Result<Self, TrainError> {
        let bad = |reason: &str| TrainError::BadSetting {
            name: "optimizer",
            value: s.into(),
            reason: reason.into(),
        };
        match s.split_once(':') {
            None if s == "adam" => Ok(Self::Adam),
            None if s == "sgd" => Ok(Self::Sgd { momentum: 0.9 }),
            Some(("sgd", m)) => match m.parse::<f64>() {
                Ok(momentum) if (0.0..1.0).contains(&momentum) => Ok(Self::Sgd { momentum }),
                _ => Err(bad("momentum must be a number in [0, 1)")),
            },
            _ => Err(bad("expected `adam`, `sgd` or `sgd:MOMENTUM`")),
        }
    }
}

impl fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Adam => write!(f, "adam"),
            Self::Sgd { momentum } => write!(f, "sgd:{momentum}"),
        }
    }
}
