//! The admin HTTP server: health, readiness, Prometheus metrics, alerts, trackers,
//! silences, notifications and reload.
//!
//! It only reads and asks: the store for alerts, silences and the outbox, the engine for a
//! tracker's cached state, the source's health, the reloader for a new rule set. It never
//! changes alert state itself. [`run`] takes a bound listener and a shutdown future, so a
//! caller (the daemon, a test on `127.0.0.1:0`) decides where it listens and when it stops.
//!
//! - [`api`]: the routes. [`auth`]: the bearer token. [`metrics`]: the Prometheus recorder.
//!
//! With `server.token` set, every endpoint but `/healthz` needs
//! `Authorization: Bearer <token>` (a liveness probe rarely carries credentials, and
//! `/healthz` tells nothing but that the process answers).

pub mod api;
pub mod auth;
pub mod metrics;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, post};
use futures_util::future::BoxFuture;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::clock::Clock;
use crate::engine::EngineHandle;
use crate::source::navixy::SourceHealth;
use crate::store::Store;

pub use auth::Token;

/// What the routes read. Cheap to clone (handles and `Arc`s).
#[derive(Clone)]
pub struct AppState {
    /// Tracker lookups.
    pub engine: EngineHandle,
    /// Live alerts, silences, the outbox, the readiness write.
    pub store: Store,
    /// Whether the source is connected, and why not.
    pub health: Arc<SourceHealth>,
    /// The daemon's clock (the simulator's in the demo): silences start and end on it.
    pub clock: Arc<dyn Clock>,
    pub reloader: Arc<dyn ReloadRules>,
    /// `None` when this process has no Prometheus recorder.
    pub metrics: Option<PrometheusHandle>,
    /// `None`: the API is open (no `server.token`).
    pub token: Option<Token>,
}

/// What `POST /api/v1/reload` asks of the daemon: load the rule files again. Defined
/// here so that the server needs nothing of the daemon; the daemon's reloader
/// implements it.
pub trait ReloadRules: Send + Sync {
    /// What changed (as the response reports it), or why nothing did.
    fn reload_rules(&self) -> BoxFuture<'_, Result<serde_json::Value, ReloadRefused>>;
}

/// Why a reload did not take effect; the old rule set keeps running.
#[derive(Debug, Clone, PartialEq)]
pub enum ReloadRefused {
    /// The engine has stopped (503).
    Unavailable(String),
    /// The config or the new rule set has errors, each message naming its file, line,
    /// rule and field (422).
    Invalid { error: String, errors: Vec<String> },
}

/// The routes, with the token check on all but `/healthz`.
pub fn router(state: AppState) -> Router {
    let guarded = Router::new()
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route("/api/v1/alerts", get(api::alerts))
        .route("/api/v1/trackers/{id}", get(api::tracker))
        .route(
            "/api/v1/silences",
            get(api::list_silences).post(api::add_silence),
        )
        .route("/api/v1/silences/{id}", delete(api::delete_silence))
        .route("/api/v1/notifications", get(api::notifications))
        .route("/api/v1/reload", post(api::reload))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(api::healthz))
        .merge(guarded)
        .fallback(api::not_found)
        .with_state(state)
}

/// Serves the admin API on `listener` until `shutdown` completes, then lets requests in
/// flight finish.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
