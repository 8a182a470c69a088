use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The strategies Fusion offers, by the name users type. One type for the
/// server's `--strategy`, `fusion merge --method` and `fusion simulate`,
/// so the three never drift apart; [`StrategyConfig`](super::StrategyConfig)
/// builds any of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    /// Coordinate-wise average weighted by examples (FedAvg). Sends weights.
    #[serde(alias = "average")]
    #[cfg_attr(feature = "clap", value(alias = "average"))]
    Fedavg,
    /// Weight-match each update to a reference, then FedAvg. Sends weights.
    Align,
    /// MergeMany: align every update to the mean of the others, pass after
    /// pass, then FedAvg (keeps every update in memory). Sends weights.
    MergeMany,
    /// RegMean (Jin et al., ICLR 2023): each linear layer solved from the
    /// clients' input Gram matrices. Sends weights and one Gram matrix per
    /// layer (second moments of the client's layer inputs).
    Regmean,
    /// Layer-wise least squares from the merged model's inputs to each
    /// client's own pre-activations, one exchange per layer. Sends weights,
    /// then per layer a Gram matrix and a cross term (second moments of the
    /// client's inputs and activations).
    Layerwise,
}

impl StrategyKind {
    /// Every strategy, in the order docs and help list them.
    pub const ALL: [StrategyKind; 5] = [
        Self::Fedavg,
        Self::Align,
        Self::MergeMany,
        Self::Regmean,
        Self::Layerwise,
    ];

    /// The name on the command line and in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fedavg => "fedavg",
            Self::Align => "align",
            Self::MergeMany => "merge-many",
            Self::Regmean => "regmean",
            Self::Layerwise => "layerwise",
        }
    }

    /// Whether clients must send statistics of their data (opt-in: they
    /// reveal second moments of a client's inputs and activations).
    pub fn uses_client_statistics(self) -> bool {
        matches!(self, Self::Regmean | Self::Layerwise)
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StrategyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "average" {
            return Ok(Self::Fedavg);
        }
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "unknown strategy `{s}`; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// What an aligning strategy aligns the updates to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Reference {
    /// The round's global model (the default). When clients trained from
    /// their own initialisations (cold start, one-shot) the global model is
    /// unrelated to them, so the largest update is used instead.
    #[default]
    Global,
    /// The first update of the round to arrive.
    First,
    /// The update with the most examples. It is known only when the round
    /// closes, so the round's updates are kept in memory until then.
    Largest,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Global => "global",
            Self::First => "first",
            Self::Largest => "largest",
        })
    }
}

impl FromStr for Reference {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "global" => Ok(Self::Global),
            "first" => Ok(Self::First),
            "largest" => Ok(Self::Largest),
            other => Err(format!(
                "unknown reference `{other}`; expected global, first or largest"
            )),
        }
    }
}

/// What a federation does with a merged model's BatchNorm running
/// statistics, which every merge averages along with the weights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum BatchNormStatistics {
    /// One more exchange per round: clients measure the merged model's
    /// per-channel moments on their data and the server writes their
    /// average (weighted by examples) into it (see
    /// [`ReestimateBatchNorm`](super::ReestimateBatchNorm)). Averaged
    /// statistics no longer describe a merged network, so this is the
    /// default; models without BatchNorm never get the exchange.
    #[default]
    Reestimate,
    /// Keep the averaged statistics: no extra exchange (for clients that
    /// cannot compute `moments:` statistics).
    Average,
}

impl fmt::Display for BatchNormStatistics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Reestimate => "reestimate",
            Self::Average => "average",
        })
    }
}

impl FromStr for BatchNormStatistics {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reestimate" => Ok(Self::Reestimate),
            "average" => Ok(Self::Average),
            other => Err(format!(
                "unknown batch-norm setting `{other}`; expected reestimate or average"
            )),
        }
    }
}

/// Whether a federation REPAIRs a merge of CNNs (see
/// [`Repair`](super::Repair)): rescales each norm layer's channels to the
/// output moments the clients' own models have on their data. The name
/// says what it costs: one exchange per norm. A cheaper mode that
/// corrected every norm from one exchange was measured and dropped (it
/// hurt as often as it helped; docs/experiments.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum RepairMode {
    /// No REPAIR: no statistics beyond the strategy's own.
    #[default]
    Off,
    /// One exchange per norm, in forward order, each measuring and
    /// correcting the next norm after the ones before it were corrected:
    /// REPAIR as `fusion interpolate --repair-batches` runs it.
    Sequential,
}

impl fmt::Display for RepairMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Off => "off",
            Self::Sequential => "sequential",
        })
    }
}

impl FromStr for RepairMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Self::Off),
            "sequential" => Ok(Self::Sequential),
            other => Err(format!(
                "unknown repair setting `{other}`; expected off or sequential"
            )),
        }
    }
}
