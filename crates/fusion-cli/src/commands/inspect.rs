//! `fusion inspect`: what a model file holds and how Fusion would permute it.

use std::fs;

use anyhow::{Context, Result};
use fusion_core::{ParamSet, describe_safetensors, infer_any, safetensors_metadata};
use fusion_net::LogSafe;
use serde_json::json;

use super::report::print_json;
use crate::cli::InspectArgs;

/// Runs `fusion inspect`.
pub fn run(args: InspectArgs) -> Result<()> {
    let path = args.file.display();
    let bytes = fs::read(&args.file).with_context(|| format!("cannot read model '{path}'"))?;
    let infos = describe_safetensors(&bytes).with_context(|| format!("model '{path}'"))?;
    let params = ParamSet::from_safetensors(&bytes).with_context(|| format!("model '{path}'"))?;
    // The header's free-form metadata: a server checkpoint's round, run id
    // and round record, or what another tool wrote.
    let metadata: std::collections::BTreeMap<String, String> = safetensors_metadata(&bytes)
        .with_context(|| format!("model '{path}'"))?
        .into_iter()
        .collect();
    // Which built-in layout fits (mlp, resnet, vgg), or each one's reason.
    let spec = infer_any(&params);
    let total: usize = infos
        .iter()
        .map(|t| t.shape.iter().product::<usize>())
        .sum();

    if args.json {
        return print_json(&json!({
            "file": path.to_string(),
            "tensors": infos,
            "parameters": total,
            "metadata": metadata,
            "layout": spec.as_ref().map(|(name, _)| *name).ok(),
            "spec": spec.as_ref().map(|(_, s)| s.to_toml()).ok(),
            "spec_error": spec.as_ref().err().map(|e| e.to_string()),
        }));
    }
    let width = infos.iter().map(|t| t.name.len()).max().unwrap_or(4).max(4);
    println!("{:width$}  {:5}  {:>12}  shape", "name", "dtype", "values");
    for t in &infos {
        let n: usize = t.shape.iter().product();
        println!("{:width$}  {:5}  {:>12}  {:?}", t.name, t.dtype, n, t.shape);
    }
    println!("{} tensors, {} values", infos.len(), total);
    if !metadata.is_empty() {
        println!("\nmetadata:");
        for (key, value) in &metadata {
            // The file's own text: escaped, and cut when long.
            println!("  {} = {}", LogSafe(key), LogSafe(value));
        }
    }
    match spec {
        Ok((layout, spec)) => {
            println!(
                "\nlayout: {layout} (align with --spec {layout}); its spec, to save and pass as --spec FILE to edit:\n"
            );
            print!("{}", spec.to_toml());
        }
        Err(e) => {
            println!("\n{e}\nwrite a spec file for this model (README, \"Permutation specs\")")
        }
    }
    Ok(())
}
