//! The admin HTTP server: health, readiness, Prometheus metrics, alerts, trackers,
//! silences, notifications, reload, and the OpenAPI document of them all.
//!
//! It only reads and asks: the store for alerts, silences and the outbox, the engine for a
//! tracker's cached state, the source's health, the reloader for a new rule set. It never
//! changes alert state itself. [`run`] takes a bound listener and a shutdown future, so a
//! caller (the daemon, a test on `127.0.0.1:0`) decides where it listens and when it stops.
//!
//! - [`api`]: the routes and their error answers. [`ack`]: acknowledging alerts, by
//!   the API and by the signed links notifications carry (open: the link is the proof).
//!   [`auth`]: the tokens, their roles and the console's login sessions.
//!   [`guard`]: the `Host` and `Origin` checks. [`deliveries`]: "retry now" of the
//!   outbox. [`history`]: the alert history.
//!   [`events`]: the live stream of transitions and history entries. [`listener`]: the
//!   accept loop, its connection cap and header timeout. [`openapi`]: the document.
//!   [`metrics`]: the Prometheus recorder. [`cluster`]: who runs which source, and the
//!   small server of a standby.
//!
//! With `server.token` or `server.tokens` set, every endpoint but `/healthz`, the login
//! and the ack links needs `Authorization: Bearer <token>` or the console's session
//! cookie (a liveness probe rarely carries credentials, and `/healthz` tells nothing but
//! that the process answers); the token's role decides what it may change. Without one,
//! the config only loads with a loopback `listen` (or `server.insecure: true`).

pub mod ack;
pub mod api;
pub mod auth;
pub mod cluster;
pub mod deliveries;
pub mod events;
pub mod guard;
pub mod history;
pub mod listener;
pub mod metrics;
pub mod openapi;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use futures_util::future::BoxFuture;
use metrics_exporter_prometheus::PrometheusHandle;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::clock::Clock;
use crate::config::ServerConfig;
use crate::engine::EngineHandle;
use crate::source::navixy::SourceHealth;
use crate::store::Store;

pub use auth::{Auth, Caller, Token};
pub use guard::Access;

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
    /// "Retry now" of the outbox's notifications.
    pub dispatcher: crate::dispatch::DispatcherHandle,
    /// `None` when this process has no Prometheus recorder.
    pub metrics: Option<PrometheusHandle>,
    /// The tokens and the console's sessions; no token: the API is open.
    pub auth: Auth,
    /// `server:` as loaded: the external URL and the connection limits.
    pub server: ServerConfig,
    /// With `cluster:`: who holds which source's lease (`/readyz`, the console).
    pub cluster: Option<tokio::sync::watch::Receiver<crate::cluster::ClusterView>>,
}

/// What `POST /api/v1/reload` asks of the daemon: load the rule files again. Defined
/// here so that the server needs nothing of the daemon; the daemon's reloader
/// implements it.
pub trait ReloadRules: Send + Sync {
    /// What changed (as the response reports it), or why nothing did.
    /// `by`: the name of the token that asked.
    fn reload_rules(&self, by: &str) -> BoxFuture<'_, Result<serde_json::Value, ReloadRefused>>;

    /// The rule set in force (the console lists it and compiles playground conditions
    /// with its engine); `None` where there is none.
    fn rules_in_force(&self) -> Option<Arc<crate::rules::RuleSet>> {
        None
    }

    /// The outcome of the last reload since the start, whatever asked for it.
    fn last_reload(&self) -> Option<crate::console::data::LastReload> {
        None
    }
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

/// Every route with its OpenAPI description: `/healthz` open, the others behind the token.
/// The one place routes are registered: [`router`] serves them, [`openapi::document`]
/// describes them.
fn parts() -> (OpenApiRouter<AppState>, OpenApiRouter<AppState>) {
    let open = OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(api::healthz))
        .routes(routes!(ack::link_page, ack::link_acknowledge))
        // The console's login form posts here; not part of the API document.
        .route("/login", axum::routing::post(auth::login))
        .route("/logout", axum::routing::post(auth::logout));
    let guarded = OpenApiRouter::new()
        .routes(routes!(api::readyz))
        .routes(routes!(api::metrics))
        .routes(routes!(api::alerts))
        .routes(routes!(history::alert_history))
        .routes(routes!(history::history))
        .routes(routes!(events::events))
        .routes(routes!(api::tracker))
        .routes(routes!(api::list_silences, api::add_silence))
        .routes(routes!(api::delete_silence))
        .routes(routes!(api::notifications))
        .routes(routes!(deliveries::retry_notification))
        .routes(routes!(deliveries::retry_channel))
        .routes(routes!(api::reload))
        .routes(routes!(ack::acknowledge, ack::unacknowledge))
        .routes(routes!(api::openapi));
    (open, guarded)
}

/// Every route, for the document.
pub fn routes() -> OpenApiRouter<AppState> {
    let (open, guarded) = parts();
    open.merge(guarded)
}

/// The routes, with the token check on all but `/healthz`, the `Host` and `Origin`
/// checks on all, and JSON error answers everywhere. `local` is the bound address.
pub fn router(state: AppState, local: SocketAddr) -> Router {
    let access = Arc::new(Access::new(local, state.server.external_url.as_deref()));
    let (open, guarded) = parts();
    let guarded = guarded.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::require_token,
    ));
    let (router, _) = open.merge(guarded).split_for_parts();
    let console_state = console_state(&state);
    let open_console = crate::console::open_router(console_state.clone());
    let console = crate::console::router(console_state);
    let console = console
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .route_layer(axum::middleware::from_fn(crate::console::login_first));
    let routes = router
        .with_state(state.clone())
        .merge(console)
        .merge(open_console)
        .fallback(api::not_found)
        .layer(DefaultBodyLimit::max(api::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            access,
            guard::check_host_and_origin,
        ));
    // Around the whole router, not each route: a route's layers run before axum adds
    // the `Allow` header of a 405, which the JSON error keeps.
    Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::from_fn(api::json_errors))
}

/// The sources' names in config order (`sources:`; the one source's name without it).
fn source_names(state: &AppState) -> Vec<String> {
    match state.health.members() {
        [] => vec![state.health.name().to_owned()],
        members => members.iter().map(|m| m.name().to_owned()).collect(),
    }
}

/// What the console reads, from what the routes read.
fn console_state(state: &AppState) -> crate::console::ConsoleState {
    let reloader = state.reloader.clone();
    let reloads = state.reloader.clone();
    crate::console::ConsoleState {
        last_reload: Arc::new(move || reloads.last_reload()),
        engine: state.engine.clone(),
        store: state.store.clone(),
        clock: state.clock.clone(),
        rules: Arc::new(move || reloader.rules_in_force()),
        map_tiles: state.server.map_tiles.clone(),
        recordings: state.server.recordings.clone(),
        sources: source_names(state).into(),
        cluster: state.cluster.clone(),
    }
}

/// Serves the admin API on `listener` until `shutdown` completes, then lets requests in
/// flight finish.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let limits = listener::Limits {
        header_timeout: state.server.header_timeout,
        max_connections: state.server.max_connections,
    };
    listener::serve(listener, router(state, local), limits, shutdown).await
}
