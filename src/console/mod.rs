//! The console: web pages for the operations desk on the admin server, at `/`.
//!
//! Server-rendered (axum + minijinja), with one stylesheet and one small script of our
//! own and Leaflet for maps, all embedded in the binary: nothing is fetched from
//! elsewhere unless `server.map_tiles` names a tile server. Pages change nothing
//! themselves: their buttons call the admin API (`/api/v1/silences`, `/api/v1/reload`,
//! acknowledgements) with JSON, same-origin, as any client would.
//!
//! - [`data`]: everything the pages read, as view structs (the one place that knows
//!   where alerts, trackers, silences and deliveries come from).
//! - [`pages`]: the routes and their templates (`templates/`).
//! - [`assets`]: the embedded static files (`static/`).
//!
//! It owns no state and must not change alert state: the engine, the dispatcher and the
//! store stay the only writers.

pub mod assets;
pub mod data;
pub mod pages;

use std::sync::Arc;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::clock::Clock;
use crate::engine::EngineHandle;
use crate::navixy::messages::{SourceIx, TrackerId, tracker_key};
use crate::rules::RuleSet;
use crate::store::Store;

/// What the console reads. Cheap to clone.
#[derive(Clone)]
pub struct ConsoleState {
    /// Trackers' cached state and the pending alerts.
    pub engine: EngineHandle,
    /// Firing alerts, the notification log, silences, the outbox.
    pub store: Store,
    /// The daemon's clock: "since" and silence times are on it.
    pub clock: Arc<dyn Clock>,
    /// The rule set in force (it changes on reload), `None` when there is none.
    pub rules: Arc<dyn Fn() -> Option<Arc<RuleSet>> + Send + Sync>,
    /// The outcome of the last reload, `None` before the first.
    pub last_reload: Arc<dyn Fn() -> Option<data::LastReload> + Send + Sync>,
    /// `server.map_tiles`.
    pub map_tiles: Option<String>,
    /// `server.recordings`, resolved: the folder the playground's recordings are in.
    pub recordings: Option<std::path::PathBuf>,
    /// The sources' names in config order (`sources:`): a tracker's page is at its engine
    /// key, which tells two accounts' tracker 42 apart.
    pub sources: Arc<[String]>,
    /// With `cluster:`: who holds which source's lease (the deliveries page shows it).
    pub cluster: Option<tokio::sync::watch::Receiver<crate::cluster::ClusterView>>,
}

impl ConsoleState {
    /// The engine's key of an alert's tracker: its Navixy id under the source its
    /// `source` label names (the first source when the label names none it knows).
    pub fn tracker_key(&self, t: &crate::alert::AlertTransition) -> Option<TrackerId> {
        let id = t.tracker.as_ref()?.id;
        let ix = t
            .labels
            .get("source")
            .and_then(|name| self.sources.iter().position(|s| s == name))
            .and_then(|i| SourceIx::try_from(i).ok())
            .unwrap_or(0);
        Some(tracker_key(ix, id))
    }

    /// The name of a tracker's source, shown only when there are several.
    pub fn source_shown(&self, ix: SourceIx) -> Option<String> {
        (self.sources.len() > 1)
            .then(|| self.sources.get(usize::from(ix)).cloned())
            .flatten()
    }
}

/// The pages, behind the admin server's access checks.
pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/", get(pages::alerts))
        .route("/alerts/{fingerprint}", get(pages::alert))
        .route("/trackers", get(pages::trackers))
        .route("/trackers/{id}", get(pages::tracker))
        .route("/silences", get(pages::silences))
        .route("/silences/preview", post(pages::silence_preview))
        .route("/deliveries", get(pages::deliveries))
        .route("/rules", get(pages::rules))
        .route("/rules/playground", post(pages::playground))
        .route(
            "/rules/playground/recording",
            post(pages::playground_recording),
        )
        .with_state(state)
}

/// Middleware around the pages, outside the token check: a browser that opens a page
/// without a session (401) is sent to the login form, which brings it back after.
pub async fn login_first(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let wanted = (request.method() == axum::http::Method::GET).then(|| {
        request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into())
    });
    let response = next.run(request).await;
    match wanted {
        Some(path) if response.status() == axum::http::StatusCode::UNAUTHORIZED => {
            let next: String = url::form_urlencoded::byte_serialize(path.as_bytes()).collect();
            let to = format!("/login?next={next}");
            axum::response::Redirect::to(&to).into_response()
        }
        _ => response,
    }
}

/// What needs no token: the login page and the static files.
pub fn open_router(state: ConsoleState) -> Router {
    Router::new()
        .route("/login", get(pages::login))
        .route("/console/static/{file}", get(assets::file))
        .with_state(state)
}
