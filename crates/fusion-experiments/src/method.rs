//! How model B is aligned to model A before the two are combined.

use std::fmt;
use std::str::FromStr;

use crate::error::ExperimentError;

/// An alignment method, as in the paper's Figure 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// No alignment: plain coordinate-wise interpolation (FedAvg's view).
    Naive,
    /// Weight matching: the engine's coordinate descent on weights alone.
    Weight,
    /// Activation matching: correlate hidden activations over training data.
    Activation,
    /// STE matching (the paper's Algorithm 2): learns the permutation
    /// whose midpoint has the lowest training loss, with a weight matching
    /// and a forward and backward pass per batch of 100 over one epoch of
    /// the training data. Expensive; not in [`Method::ALL`].
    Ste,
}

impl Method {
    /// The methods run by default, in the order tables and plots show
    /// them (STE only when asked for: it costs a training epoch).
    pub const ALL: [Method; 3] = [Self::Naive, Self::Weight, Self::Activation];

    /// Parses a comma-separated list such as `naive,weight,activation`.
    pub fn parse_list(text: &str) -> Result<Vec<Method>, ExperimentError> {
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let m: Method = part.parse()?;
            if !out.contains(&m) {
                out.push(m);
            }
        }
        if out.is_empty() {
            return Err(ExperimentError::BadSetting(
                "--method: name at least one of naive, weight, activation, ste".into(),
            ));
        }
        Ok(out)
    }
}

impl FromStr for Method {
    type Err = ExperimentError;

    fn from_str(s: &str) -> Result<Self, ExperimentError> {
        match s {
            "naive" => Ok(Self::Naive),
            "weight" => Ok(Self::Weight),
            "activation" => Ok(Self::Activation),
            "ste" => Ok(Self::Ste),
            _ => Err(ExperimentError::BadSetting(format!(
                "method `{s}`: expected naive, weight, activation or ste"
            ))),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Naive => "naive",
            Self::Weight => "weight",
            Self::Activation => "activation",
            Self::Ste => "ste",
        })
    }
}
