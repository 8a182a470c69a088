//! The operator's HTTP side: a live, read-only status page (`/`), the
//! JSON it polls (`/status.json`), Prometheus text (`/metrics`) and a
//! health probe (`/healthz`) for container health checks and Kubernetes
//! probes. The page is one HTML file compiled into the binary: no npm, no
//! assets.

use std::sync::Arc;
use std::time::Instant;

use axum::routing::get;
use serde_json::json;

use crate::service::Shared;

/// The page; it polls `/status.json` every two seconds and redraws.
const PAGE: &str = include_str!("status_page.html");

/// The run's state as JSON: round, clients seen, updates accepted and
/// refused by reason, and every completed round's record.
pub fn status_json(shared: &Shared) -> serde_json::Value {
    let now = Instant::now();
    let (round, finished, clients, sampled, accepted) = {
        let state = shared.lock();
        let mut clients: Vec<_> = state
            .clients
            .iter()
            .map(|(id, c)| {
                json!({
                    "id": id,
                    "examples": c.examples,
                    "seen_secs_ago": now.saturating_duration_since(c.last_seen).as_secs_f64(),
                })
            })
            .collect();
        clients.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        let (sampled, accepted) = state
            .open
            .as_ref()
            .map(|o| (o.sampled.len(), o.accepted.len()))
            .unwrap_or((0, 0));
        (state.round, state.finished(), clients, sampled, accepted)
    };
    let config = &shared.config;
    json!({
        "run_id": shared.run_id,
        "strategy": config.strategy.to_string(),
        "round": round.min(config.rounds),
        "rounds": config.rounds,
        "finished": finished,
        "clients": clients,
        "sampled": sampled,
        "accepted_in_round": accepted,
        "updates_accepted": shared.metrics.accepted.get(),
        "rejected": shared.metrics.rejections(),
        "records": shared.records(),
    })
}

/// The health probe's answer: 200 with the round while the server runs.
/// It is served by the same task as the page, so a wedged runtime stops
/// answering and the container is marked unhealthy.
pub fn health_text(shared: &Shared) -> String {
    let state = shared.lock();
    format!(
        "ok round {} of {}\n",
        state.round.min(shared.config.rounds),
        shared.config.rounds
    )
}

/// Serves the page, `/status.json`, `/metrics` and `/healthz` until
/// `shutdown`.
pub async fn serve(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let for_status = shared.clone();
    let for_health = shared.clone();
    let for_metrics = shared;
    let app = axum::Router::new()
        .route(
            "/",
            get(|| async { ([("content-type", "text/html; charset=utf-8")], PAGE) }),
        )
        .route(
            "/status.json",
            get(move || {
                let shared = for_status.clone();
                async move {
                    (
                        [("content-type", "application/json")],
                        status_json(&shared).to_string(),
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let shared = for_health.clone();
                async move { health_text(&shared) }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let shared = for_metrics.clone();
                async move {
                    (
                        [(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        shared.metrics.render(),
                    )
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
