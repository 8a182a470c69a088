//! The operator's HTTP side: a live, read-only status page (`/`), the
//! JSON it polls (`/status.json`), Prometheus text (`/metrics`) and a
//! health probe (`/healthz`) for container health checks and Kubernetes
//! probes. The page (HTML, its script and its style sheet) is compiled
//! into the binary: no npm, no assets on disk.
//!
//! The page shows strings clients chose (their ids), so it is served with
//! a Content-Security-Policy that allows no inline script and no other
//! origin, and its script writes every value as text, never as HTML.

use std::sync::Arc;
use std::time::Instant;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::service::Shared;

/// The page; its script polls `/status.json` every two seconds and redraws.
const PAGE: &str = include_str!("status_page.html");
/// The page's script, its own file so that the policy can forbid inline
/// script.
const SCRIPT: &str = include_str!("status_page.js");
/// The page's style sheet.
const STYLE: &str = include_str!("status_page.css");

/// What the page may load: its own script, style sheet and JSON, nothing
/// inline, nothing from elsewhere, and no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// Headers of every static part of the page.
fn static_headers(content_type: &'static str) -> [(&'static str, &'static str); 3] {
    [
        ("content-type", content_type),
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
    ]
}

/// The run's state as JSON: round, clients seen, updates accepted and
/// refused by reason, and every completed round's record.
pub fn status_json(shared: &Shared) -> serde_json::Value {
    let now = Instant::now();
    let (round, finished, clients, sampled, accepted) = {
        let mut state = shared.lock();
        state.clients.evict(now);
        // Sorted by id already.
        let clients: Vec<_> = state
            .clients
            .iter()
            .map(|(id, c)| {
                json!({
                    "id": id,
                    "examples": c.examples,
                    "seen_secs_ago": now.saturating_duration_since(c.last_seen()).as_secs_f64(),
                })
            })
            .collect();
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
        "model": shared.model_origin,
        "scoring": shared.scoring.get(),
        "round": round.min(config.rounds),
        "rounds": config.rounds,
        "finished": finished,
        "clients": clients,
        "sampled": sampled,
        "accepted_in_round": accepted,
        "min_clients": config.min_clients,
        // From the records, so a restart does not reset it.
        "updates_accepted": shared
            .records()
            .iter()
            .fold(0u64, |n, r| n.saturating_add(u64::from(r.clients)))
            .saturating_add(accepted as u64),
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

/// Whether a request to `/status.json` or `/metrics` may see them: always
/// when no status token is configured, else only with `Authorization:
/// Bearer <token>` (compared in constant time). Client ids are on the
/// page and in the metrics' labels; the token keeps them to the operator.
fn authorised(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(expected) = &shared.config.status_token else {
        return true;
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    fusion_net::same_secret(given, &expected.0)
}

/// The answer to a request without the status token.
fn unauthorised() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [("www-authenticate", "Bearer realm=\"fusion status\"")],
        "this server's status needs its status token (Authorization: Bearer …)\n",
    )
        .into_response()
}

/// Serves the page, `/status.json`, `/metrics` and `/healthz` until
/// `shutdown`. With a status token, the data (`/status.json`, `/metrics`)
/// needs it; the page itself holds none and asks for it.
pub async fn serve(
    shared: Arc<Shared>,
    listener: crate::incoming::GuardedListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let for_status = shared.clone();
    let for_health = shared.clone();
    let for_metrics = shared;
    let app = axum::Router::new()
        .route(
            "/",
            get(|| async { (static_headers("text/html; charset=utf-8"), PAGE) }),
        )
        .route(
            "/status.js",
            get(|| async { (static_headers("text/javascript; charset=utf-8"), SCRIPT) }),
        )
        .route(
            "/status.css",
            get(|| async { (static_headers("text/css; charset=utf-8"), STYLE) }),
        )
        .route(
            "/status.json",
            get(move |headers: HeaderMap| {
                let shared = for_status.clone();
                async move {
                    if !authorised(&shared, &headers) {
                        return unauthorised();
                    }
                    (
                        [
                            ("content-type", "application/json"),
                            ("x-content-type-options", "nosniff"),
                        ],
                        status_json(&shared).to_string(),
                    )
                        .into_response()
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
            get(move |headers: HeaderMap| {
                let shared = for_metrics.clone();
                async move {
                    if !authorised(&shared, &headers) {
                        return unauthorised();
                    }
                    (
                        [(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        shared.metrics.render(),
                    )
                        .into_response()
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
