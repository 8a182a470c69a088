//! Writing an experiment's results into its output directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use fusion_experiments::Figure;

use crate::files::write_atomic;

/// Writes text files and a figure (SVG and PNG) into `dir`; returns every
/// path written, for the summary.
pub fn write_outputs(
    dir: &Path,
    files: &[(&str, String)],
    figure: &Figure,
    stem: &str,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory '{}'", dir.display()))?;
    let mut written = Vec::with_capacity(files.len() + 2);
    for (name, text) in files {
        let path = dir.join(name);
        write_atomic(&path, text.as_bytes())?;
        written.push(path);
    }
    written.extend(figure.write(dir, stem)?);
    Ok(written)
}

/// `a, b and c`-style list of file names for a one-line summary.
pub fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
