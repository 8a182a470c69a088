//! Reading and writing model and spec files, with the path in every error.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use fusion_core::{ParamSet, PermutationSpec, SpecSource};

/// Loads a safetensors model.
pub fn read_model(path: &Path) -> Result<ParamSet> {
    let bytes =
        fs::read(path).with_context(|| format!("cannot read model '{}'", path.display()))?;
    ParamSet::from_safetensors(&bytes).with_context(|| format!("model '{}'", path.display()))
}

/// Writes a model atomically: a temporary file in the same directory,
/// flushed to disk, then renamed over the target. A crash leaves either the
/// old file or the new one, never half of one.
pub fn write_model(path: &Path, params: &ParamSet) -> Result<()> {
    let bytes = params
        .to_safetensors()
        .with_context(|| format!("cannot encode '{}'", path.display()))?;
    write_atomic(path, &bytes)
}

/// The safetensors metadata key where `fusion train` records the number of
/// training examples behind a model, so `fusion merge` can weight by it.
pub const EXAMPLES_KEY: &str = "fusion.examples";

/// Writes a model (atomically, as [`write_model`]) with the number of
/// examples it was trained on in its metadata.
pub fn write_trained_model(path: &Path, params: &ParamSet, examples: usize) -> Result<()> {
    let metadata =
        std::collections::HashMap::from([(EXAMPLES_KEY.to_owned(), examples.to_string())]);
    let bytes = params
        .to_safetensors_with_metadata(Some(metadata))
        .with_context(|| format!("cannot encode '{}'", path.display()))?;
    write_atomic(path, &bytes)
}

/// Loads a safetensors model with the example count recorded in its
/// metadata, if any, reading the file once.
pub fn read_model_and_examples(path: &Path) -> Result<(ParamSet, Option<f64>)> {
    let bytes =
        fs::read(path).with_context(|| format!("cannot read model '{}'", path.display()))?;
    let model = ParamSet::from_safetensors(&bytes)
        .with_context(|| format!("model '{}'", path.display()))?;
    let metadata = fusion_core::safetensors_metadata(&bytes)
        .with_context(|| format!("model '{}'", path.display()))?;
    let examples = match metadata.get(EXAMPLES_KEY) {
        None => None,
        Some(v) => Some(v.parse::<u64>().map(|n| n as f64).with_context(|| {
            format!(
                "model '{}': metadata `{EXAMPLES_KEY}` = `{v}` is not a count",
                path.display()
            )
        })?),
    };
    Ok((model, examples))
}

/// Atomic write of any bytes (see [`write_model`]). The directory must
/// exist: a mistyped `--out a/b/model.safetensors` is an error, not a tree
/// of new directories (commands whose `--out` is a directory create it).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        anyhow::bail!(
            "cannot write '{}': directory '{}' does not exist (create it first)",
            path.display(),
            dir.display()
        );
    }
    let name = path
        .file_name()
        .with_context(|| format!("'{}' is not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write '{}'", path.display()))
}

/// A built-in layout (`mlp`, `resnet`, `vgg`, `auto`) or a spec file path.
pub fn read_spec(arg: &str) -> Result<SpecSource> {
    if let Some(builtin) = SpecSource::builtin(arg) {
        return Ok(builtin);
    }
    let text = fs::read_to_string(arg).with_context(|| format!("cannot read spec file '{arg}'"))?;
    let spec = PermutationSpec::parse(&text).with_context(|| format!("spec file '{arg}'"))?;
    Ok(SpecSource::Given(spec))
}
