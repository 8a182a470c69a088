//! The JSON file a trainer or evaluator writes at `$FUSION_RESULT`:
//! `{"examples": N, "metrics": {"loss": 0.41, "accuracy": 0.86}}`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::ExternalError;
use crate::files::read_bounded;

/// Largest result file read.
const MAX_RESULT_BYTES: u64 = 1 << 20;
/// Most metrics kept from one result.
pub const MAX_METRICS: usize = 64;
/// Longest metric name.
pub const MAX_METRIC_NAME: usize = 64;

/// What a command reports besides its model files.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommandResult {
    /// Training examples the update was computed on; a trainer must give
    /// it (at least 1), an evaluator may.
    pub examples: Option<u64>,
    /// Named finite numbers (`loss`, `accuracy`, …), by name.
    pub metrics: BTreeMap<String, f64>,
}

/// Other keys are ignored, so a trainer may write more for itself.
#[derive(Deserialize)]
struct ResultRepr {
    examples: Option<u64>,
    #[serde(default)]
    metrics: BTreeMap<String, serde_json::Value>,
}

impl CommandResult {
    /// Reads and checks the result file at `path`.
    pub fn read(path: &Path, variable: &'static str) -> Result<Self, ExternalError> {
        const WHAT: &str = "result file";
        let bytes = read_bounded(path, WHAT, variable, MAX_RESULT_BYTES)?;
        let invalid = |why: String| ExternalError::Invalid {
            what: WHAT,
            path: path.to_owned(),
            why,
        };
        let repr: ResultRepr = serde_json::from_slice(&bytes).map_err(|e| {
            invalid(format!(
                "not the JSON the contract asks for ({e}); expected {{\"examples\": N, \"metrics\": {{\"loss\": 0.4}}}}"
            ))
        })?;
        if repr.metrics.len() > MAX_METRICS {
            return Err(invalid(format!(
                "{} metrics; at most {MAX_METRICS} are kept",
                repr.metrics.len()
            )));
        }
        let mut metrics = BTreeMap::new();
        for (name, value) in repr.metrics {
            let ok_name = !name.is_empty()
                && name.len() <= MAX_METRIC_NAME
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
            if !ok_name {
                return Err(invalid(format!(
                    "metric name {:?} must be 1 to {MAX_METRIC_NAME} letters, digits, `_`, `-` or `.`",
                    name.chars().take(80).collect::<String>()
                )));
            }
            match value.as_f64() {
                Some(v) if v.is_finite() => {
                    metrics.insert(name, v);
                }
                _ => {
                    return Err(invalid(format!(
                        "metric `{name}` is {value}, not a finite number"
                    )));
                }
            }
        }
        if repr.examples == Some(0) {
            return Err(invalid(
                "examples is 0; when given, it must count at least one example".into(),
            ));
        }
        Ok(Self {
            examples: repr.examples,
            metrics,
        })
    }
}
