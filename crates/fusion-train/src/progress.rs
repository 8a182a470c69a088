//! Progress of a training run: a bar on a terminal, log lines otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Reports training progress. A bar is drawn only when standard error is a
/// terminal and `enabled` is set; otherwise each epoch ends with a `tracing`
/// line, which is what logs, CI and containers want.
pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
}

impl Progress {
    /// A reporter for `total` batches, titled `label` (e.g. `model A`).
    pub fn new(label: &str, total: u64, enabled: bool) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{prefix:>10} [{bar:30}] {pos}/{len} batches {msg} ({eta})",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(label.to_string());
            bar
        });
        Self {
            bar,
            label: label.into(),
        }
    }

    /// One batch done.
    pub fn batch(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// One epoch done with this mean training loss.
    pub fn epoch(&self, epoch: usize, epochs: usize, loss: f64, seconds: f64) {
        match &self.bar {
            Some(bar) => bar.set_message(format!("epoch {epoch}/{epochs} loss {loss:.4}")),
            None => tracing::info!(model = %self.label, epoch, epochs, loss, seconds, "epoch done"),
        }
    }

    /// Training finished: clear the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
