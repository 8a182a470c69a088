//! How the binaries log: `tracing` events to stderr (so a command's
//! `--json` output on stdout stays clean), filtered by `RUST_LOG` or the
//! binary's default, as text (coloured on a terminal) or as JSON lines.

use std::io::IsTerminal;

/// wgpu's driver probing logs every API it tries and fails (Vulkan, then
/// GL) as an error even when it then succeeds, so its HAL is silenced
/// unless `RUST_LOG` asks for it.
pub const QUIET_WGPU: &str = "wgpu_hal=off,wgpu_core=warn";

/// The output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One line of text per event, coloured when stderr is a terminal.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the process's subscriber: `RUST_LOG` when set, else
/// `default_filter` (an `EnvFilter` directive such as `info`, with
/// [`QUIET_WGPU`] appended). Call once, first thing in `main`.
pub fn init(default_filter: &str, format: Format) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{default_filter},{QUIET_WGPU}"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        Format::Json => builder.json().init(),
        Format::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// [`Format::Json`] when `json` is set (`--json-logs`), else text.
pub fn format(json: bool) -> Format {
    if json { Format::Json } else { Format::Text }
}
