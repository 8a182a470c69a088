//! Reading and writing the contract's files: sizes bounded, and every
//! problem named by file and tensor.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use fusion_core::{ParamSet, StatisticTensor};

use crate::error::ExternalError;

/// Room for a safetensors header beyond the tensors' own bytes.
const HEADER_SLACK: u64 = 1 << 20;

/// A private directory for one run's files (`prefix` names whose it is
/// in /tmp), removed when dropped.
pub(crate) fn scratch_dir(prefix: &str) -> Result<tempfile::TempDir, ExternalError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|source| ExternalError::Io {
            what: "scratch directory",
            path: std::env::temp_dir(),
            source,
        })
}

/// Reads a file the command had to write, refusing one larger than
/// `limit` before reading it.
pub(crate) fn read_bounded(
    path: &Path,
    what: &'static str,
    variable: &'static str,
    limit: u64,
) -> Result<Vec<u8>, ExternalError> {
    // Checked before opening: opening a FIFO would block, and a device
    // might never end. Only regular files are read.
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => {
            return Err(ExternalError::Invalid {
                what,
                path: path.to_owned(),
                why: "not a regular file".into(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ExternalError::NotWritten {
                what,
                path: path.to_owned(),
                variable,
            });
        }
        Err(source) => {
            return Err(ExternalError::Io {
                what,
                path: path.to_owned(),
                source,
            });
        }
    }
    let io = |source| ExternalError::Io {
        what,
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(ExternalError::Invalid {
            what,
            path: path.to_owned(),
            why: format!("larger than the {limit} bytes it can be"),
        });
    }
    Ok(bytes)
}

/// Writes `model` as safetensors for the command to read.
pub(crate) fn write_model(
    path: &Path,
    model: &ParamSet,
    what: &'static str,
) -> Result<(), ExternalError> {
    let bytes = model.to_safetensors().map_err(|e| ExternalError::Invalid {
        what,
        path: path.to_owned(),
        why: e.to_string(),
    })?;
    std::fs::write(path, bytes).map_err(|source| ExternalError::Io {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Reads the update at `path` and checks it against `template` (the
/// federation's model): the same tensors with the same shapes, every value
/// finite. The first problem is named by tensor.
pub fn read_update(
    path: &Path,
    template: &ParamSet,
    variable: &'static str,
) -> Result<ParamSet, ExternalError> {
    const WHAT: &str = "update";
    // F64 is the widest float a trainer may write.
    let limit = (template.numel() as u64)
        .saturating_mul(8)
        .saturating_add(HEADER_SLACK);
    let bytes = read_bounded(path, WHAT, variable, limit)?;
    let invalid = |why: String| ExternalError::Invalid {
        what: WHAT,
        path: path.to_owned(),
        why,
    };
    let update = ParamSet::from_safetensors(&bytes)
        .map_err(|e| invalid(format!("not a usable safetensors model: {e}")))?;
    check_layout(&update, template).map_err(invalid)?;
    update.check_finite().map_err(|e| invalid(e.to_string()))?;
    Ok(update)
}

/// Names the first difference between `update`'s tensors and
/// `template`'s, in the words of the contract (the core's layout check
/// numbers the two models instead).
fn check_layout(update: &ParamSet, template: &ParamSet) -> Result<(), String> {
    use fusion_core::ParamsError;
    match template.check_same_layout(update, 0, 1) {
        Ok(()) => {}
        Err(ParamsError::MissingTensor {
            name, present: 0, ..
        }) => {
            let shape = template.get(&name).map(|t| t.shape().to_vec());
            return Err(format!(
                "tensor `{name}` is missing (the global model has it, shape {:?})",
                shape.unwrap_or_default()
            ));
        }
        Err(ParamsError::MissingTensor { name, .. }) => {
            return Err(format!(
                "tensor `{name}` is not in the global model (a float tensor the federation does not have)"
            ));
        }
        Err(ParamsError::LayoutMismatch {
            name, left, right, ..
        }) => {
            return Err(format!(
                "tensor `{name}` has shape {right:?}; the global model's is {left:?}"
            ));
        }
        Err(other) => return Err(other.to_string()),
    }
    let names = |set: &ParamSet| -> Vec<String> {
        let mut v: Vec<String> = set.passthrough().iter().map(|(n, _)| n.clone()).collect();
        v.sort();
        v
    };
    let (got, want) = (names(update), names(template));
    if got != want {
        return Err(format!(
            "non-float tensors {got:?} differ from the global model's {want:?}"
        ));
    }
    Ok(())
}

/// Reads the statistics at `path`: exactly the `names` asked for, as F64
/// (or F32) tensors with finite values. Their shapes are the server's to
/// check, against the model's layers.
pub fn read_statistics(
    path: &Path,
    names: &[String],
    limit: u64,
    variable: &'static str,
) -> Result<BTreeMap<String, StatisticTensor>, ExternalError> {
    use safetensors::{Dtype, SafeTensors};
    const WHAT: &str = "statistics file";
    let bytes = read_bounded(path, WHAT, variable, limit.saturating_add(HEADER_SLACK))?;
    let invalid = |why: String| ExternalError::Invalid {
        what: WHAT,
        path: path.to_owned(),
        why,
    };
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| invalid(format!("not a valid safetensors file: {e}")))?;
    let mut out = BTreeMap::new();
    for name in names {
        let view = st
            .tensor(name)
            .map_err(|_| invalid(format!("statistic `{name}` is missing")))?;
        let data: Vec<f64> = match view.dtype() {
            Dtype::F64 => view
                .data()
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                .collect(),
            Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|b| f64::from(f32::from_le_bytes(b.try_into().unwrap_or([0; 4]))))
                .collect(),
            other => {
                return Err(invalid(format!(
                    "statistic `{name}` is {other:?}; write F64 (or F32)"
                )));
            }
        };
        let tensor = StatisticTensor::new(name, view.shape().to_vec(), data)
            .map_err(|e| invalid(e.to_string()))?;
        if let Some((index, value)) = tensor.first_non_finite() {
            return Err(invalid(format!(
                "statistic `{name}` holds {value} at flat index {index}"
            )));
        }
        out.insert(name.clone(), tensor);
    }
    if let Some(extra) = st
        .names()
        .into_iter()
        .find(|n| !names.iter().any(|w| w == *n))
    {
        return Err(invalid(format!(
            "statistic `{extra}` was not asked for (asked: {names:?})"
        )));
    }
    Ok(out)
}
