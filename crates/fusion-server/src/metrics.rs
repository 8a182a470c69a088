//! Prometheus metrics: counters the server updates from any task, and
//! their text exposition (served at `/metrics` by `status_page`).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// The server's counters. Cheap to update from any task (atomics).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Rounds completed.
    pub rounds: Counter,
    /// Rounds retried because too few updates arrived by the deadline.
    pub retries: Counter,
    /// Updates merged.
    pub accepted: Counter,
    rejected: Family<Labels, Counter>,
    /// The same counts by reason, for the status page.
    reasons: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// Model bytes received.
    pub bytes_in: Counter,
    /// Model bytes sent.
    pub bytes_out: Counter,
    /// Seconds inside the strategy per round.
    pub align_seconds: Histogram,
    /// Seconds per round, open to saved.
    pub round_seconds: Histogram,
    /// The round in progress.
    pub round: Gauge,
    /// Clients seen within the liveness window.
    pub live_clients: Gauge,
    /// Connections open (gRPC and the status page).
    pub connections: Gauge,
    /// Connections closed at once because `max_connections` were open.
    pub connections_refused: Counter,
    /// Connections closed for silence (no handshake in time, or idle).
    pub connections_timed_out: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `fusion_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fusion");
        let rounds = Counter::default();
        let retries = Counter::default();
        let accepted = Counter::default();
        let rejected = Family::<Labels, Counter>::default();
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        let align_seconds = Histogram::new(exponential_buckets(0.001, 4.0, 10));
        let round_seconds = Histogram::new(exponential_buckets(0.1, 3.0, 10));
        let round = Gauge::default();
        let live_clients = Gauge::default();
        let connections = Gauge::default();
        let connections_refused = Counter::default();
        let connections_timed_out = Counter::default();
        registry.register("rounds_completed", "Rounds completed", rounds.clone());
        registry.register(
            "round_retries",
            "Rounds retried for lack of updates",
            retries.clone(),
        );
        registry.register("updates_accepted", "Updates merged", accepted.clone());
        registry.register(
            "updates_rejected",
            "Updates refused, by reason",
            rejected.clone(),
        );
        registry.register("bytes_received", "Model bytes received", bytes_in.clone());
        registry.register("bytes_sent", "Model bytes sent", bytes_out.clone());
        registry.register(
            "align_seconds",
            "Seconds inside the strategy per round",
            align_seconds.clone(),
        );
        registry.register("round_seconds", "Seconds per round", round_seconds.clone());
        registry.register("round", "Round in progress", round.clone());
        registry.register(
            "live_clients",
            "Clients seen recently",
            live_clients.clone(),
        );
        registry.register(
            "connections",
            "Connections open, gRPC and status page",
            connections.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed at once: max_connections were open",
            connections_refused.clone(),
        );
        registry.register(
            "connections_timed_out",
            "Connections closed for silence (no handshake in time, or idle)",
            connections_timed_out.clone(),
        );
        Self {
            registry,
            rounds,
            retries,
            accepted,
            rejected,
            reasons: Default::default(),
            bytes_in,
            bytes_out,
            align_seconds,
            round_seconds,
            round,
            live_clients,
            connections,
            connections_refused,
            connections_timed_out,
        }
    }

    /// Counts a refused update under `reason` (a short stable label such as
    /// `hash`, `shape`, `non_finite`, `old_round`).
    pub fn reject(&self, reason: &str) {
        self.rejected
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .inc();
        *self
            .reasons
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason.to_owned())
            .or_default() += 1;
    }

    /// Every refusal reason seen so far, with its count.
    pub fn rejections(&self) -> std::collections::BTreeMap<String, u64> {
        self.reasons
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Refusals counted under `reason` so far.
    pub fn rejected(&self, reason: &str) -> u64 {
        self.rejected
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .get()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_by_reason() {
        let m = Metrics::new();
        m.accepted.inc();
        m.reject("hash");
        m.reject("hash");
        m.bytes_in.inc_by(100);
        let text = m.render();
        assert!(text.contains("fusion_updates_accepted_total 1"), "{text}");
        assert!(
            text.contains("fusion_updates_rejected_total{reason=\"hash\"} 2"),
            "{text}"
        );
        assert!(text.contains("fusion_bytes_received_total 100"), "{text}");
        assert_eq!(m.rejected("hash"), 2);
    }
}
