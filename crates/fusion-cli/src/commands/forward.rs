//! `fusion simulate` and `fusion bench ingest` run in the `fusion-sim`
//! binary: they drive the real server and clients in one process, and
//! keeping them out of `fusion` keeps the server and client libraries out
//! of it. The same arguments go through unchanged.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// The `fusion-sim` binary beside this one.
pub fn fusion_sim_path() -> Result<PathBuf> {
    let me = std::env::current_exe().context("cannot find the fusion binary's own path")?;
    Ok(me.with_file_name(format!("fusion-sim{}", std::env::consts::EXE_SUFFIX)))
}

/// Replaces this process with `fusion-sim` and the same arguments; its exit
/// status becomes this command's. Returns only when it cannot be started.
pub fn to_fusion_sim() -> Result<()> {
    use std::os::unix::process::CommandExt;
    let sim = fusion_sim_path()?;
    if !sim.is_file() {
        anyhow::bail!(
            "this command runs the fusion-sim binary, which is not beside fusion ({}): build it with `cargo build --release -p fusion-sim`",
            sim.display()
        );
    }
    let error = std::process::Command::new(&sim)
        .args(std::env::args_os().skip(1))
        .exec();
    Err(error).with_context(|| format!("cannot run {}", sim.display()))
}
