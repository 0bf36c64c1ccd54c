//! The console's routes: each reads its view from [`super::data`] and renders one
//! template of `templates/` (embedded). `?fragment=1` renders only the part a live page
//! swaps in when something changed.

use std::sync::OnceLock;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Json};
use minijinja::{Environment, context};
use serde::Deserialize;

use super::ConsoleState;
use super::data::{self, DataError};
use crate::config::Role;
use crate::navixy::messages::TrackerId;

/// The templates, by name; `.html` ones are autoescaped.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("macros.html", include_str!("templates/macros.html")),
    ("alerts.html", include_str!("templates/alerts.html")),
    (
        "alerts_list.html",
        include_str!("templates/alerts_list.html"),
    ),
    ("alert.html", include_str!("templates/alert.html")),
    ("trackers.html", include_str!("templates/trackers.html")),
    ("tracker.html", include_str!("templates/tracker.html")),
    ("silences.html", include_str!("templates/silences.html")),
    ("preview.html", include_str!("templates/preview.html")),
    ("deliveries.html", include_str!("templates/deliveries.html")),
    ("rules.html", include_str!("templates/rules.html")),
    ("login.html", include_str!("templates/login.html")),
];

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            // The templates are ours and tested: one that does not parse fails every
            // page test, and renders as an error page rather than a panic.
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "Console template does not parse.");
            }
        }
        env
    })
}

/// The caller's role, as the admin server's token check found it (no token configured:
/// anyone on loopback may do anything). Pages show only the buttons it may use; the API
/// checks again whatever a page sends.
pub type CallerRole = Option<Extension<Role>>;

fn role_of(role: &CallerRole) -> Role {
    role.as_ref().map(|Extension(r)| *r).unwrap_or(Role::Admin)
}

/// A page or a fragment, or the error that stopped it. Every page gets the daemon's
/// clock as `server_now`: relative times count from it, not from the browser's clock
/// (the demo's simulated clock runs ahead), and what the caller's role may do:
/// `can_ack` (acks, silences) and `can_admin` (reload, retry).
fn render(state: &ConsoleState, role: &CallerRole, name: &str, ctx: minijinja::Value) -> Response {
    let now = crate::rfc3339::format(state.clock.now());
    let role = role_of(role);
    let ctx = context! {
        server_now => now,
        role => role.as_str(),
        can_ack => role >= Role::Operator,
        can_admin => role >= Role::Admin,
        ..ctx
    };
    match environment().get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => Html(html).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("console template {name}: {e:#}"),
        )
            .into_response(),
    }
}

impl IntoResponse for DataError {
    fn into_response(self) -> Response {
        let status = match self {
            DataError::Invalid(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, self.to_string()).into_response()
    }
}

type PageResult = Result<Response, DataError>;

#[derive(Debug, Default, Deserialize)]
pub struct AlertsQuery {
    #[serde(default)]
    filter: String,
    #[serde(default)]
    fragment: Option<String>,
}

/// `GET /`: the live alerts.
pub async fn alerts(
    State(state): State<ConsoleState>,
    role: CallerRole,
    Query(q): Query<AlertsQuery>,
) -> PageResult {
    let view = data::alerts(&state, &q.filter).await?;
    let name = if q.fragment.is_some() {
        "alerts_list.html"
    } else {
        "alerts.html"
    };
    Ok(render(
        &state,
        &role,
        name,
        context! { page => "alerts", view },
    ))
}

/// `GET /alerts/{fingerprint}`: one alert, live or past.
pub async fn alert(
    State(state): State<ConsoleState>,
    role: CallerRole,
    Path(fingerprint): Path<String>,
) -> PageResult {
    let view = data::alert(&state, &fingerprint).await?;
    if view.alert.is_none() && view.timeline.is_empty() {
        return Ok((
            StatusCode::NOT_FOUND,
            format!("no alert with fingerprint `{fingerprint}` is live or in the notification log"),
        )
            .into_response());
    }
    Ok(render(
        &state,
        &role,
        "alert.html",
        context! { page => "alerts", view },
    ))
}

#[derive(Debug, Default, Deserialize)]
pub struct TrackersQuery {
    #[serde(default)]
    q: String,
}

/// `GET /trackers?q=`: the trackers in the cache.
pub async fn trackers(
    State(state): State<ConsoleState>,
    role: CallerRole,
    Query(q): Query<TrackersQuery>,
) -> PageResult {
    let rows = data::trackers(&state, &q.q).await?;
    let positions = rows
        .iter()
        .filter_map(|r| {
            r.location.map(|l| data::MapPosition {
                id: r.key,
                label: r.label.clone(),
                lat: l.lat,
                lng: l.lng,
            })
        })
        .collect();
    let map = data::map(&state, positions);
    Ok(render(
        &state,
        &role,
        "trackers.html",
        context! { page => "trackers", rows, q => q.q, map },
    ))
}

#[derive(Debug, Default, Deserialize)]
pub struct TrackerQuery {
    series: Option<String>,
}

/// `GET /trackers/{id}`: one tracker.
pub async fn tracker(
    State(state): State<ConsoleState>,
    role: CallerRole,
    Path(id): Path<String>,
    Query(q): Query<TrackerQuery>,
) -> PageResult {
    let id: TrackerId = id
        .trim()
        .parse()
        .map_err(|_| DataError::Invalid(format!("tracker id must be an integer, not `{id}`")))?;
    let Some(view) = data::tracker(&state, id, q.series.as_deref()).await? else {
        return Ok((StatusCode::NOT_FOUND, format!("tracker {id} is not known")).into_response());
    };
    Ok(render(
        &state,
        &role,
        "tracker.html",
        context! {
            page => "trackers",
            view,
            chart_width => data::CHART_WIDTH,
            chart_height => data::CHART_HEIGHT,
        },
    ))
}

#[derive(Debug, Default, Deserialize)]
pub struct SilencesQuery {
    /// Prefill: `rule`, `tracker_id` and (with several accounts) `source` matchers (the
    /// Silence button of an alert row).
    rule: Option<String>,
    tracker_id: Option<String>,
    source: Option<String>,
}

/// `GET /silences`: the list and the form (prefilled from the query).
pub async fn silences(
    State(state): State<ConsoleState>,
    role: CallerRole,
    Query(q): Query<SilencesQuery>,
) -> PageResult {
    let rows = data::silences(&state).await?;
    let prefill: Vec<String> = [
        ("rule", &q.rule),
        ("tracker_id", &q.tracker_id),
        ("source", &q.source),
    ]
    .into_iter()
    .filter_map(|(name, v)| v.as_ref().map(|v| format!("{name}={v}")))
    .collect();
    let defaults = data::default_silence(&state);
    Ok(render(
        &state,
        &role,
        "silences.html",
        context! {
            page => "silences",
            rows,
            prefill => prefill.join(", "),
            ends_at => crate::rfc3339::format(defaults.ends_at),
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct PreviewRequest {
    matchers: String,
}

/// `POST /silences/preview` `{"matchers": "rule=x, tracker_id=3"}`: the matchers as the
/// silence API takes them, and the live alerts they would hold back, as HTML.
pub async fn silence_preview(
    State(state): State<ConsoleState>,
    Json(req): Json<PreviewRequest>,
) -> Response {
    let matchers = match data::parse_matchers(&req.matchers) {
        Ok(m) => m,
        Err(error) => return Json(serde_json::json!({ "error": error })).into_response(),
    };
    match data::silence_preview(&state, &matchers).await {
        Ok(alerts) => {
            let html = environment()
                .get_template("preview.html")
                .and_then(|t| t.render(context! { alerts }))
                .unwrap_or_else(|e| format!("console template preview.html: {e:#}"));
            Json(serde_json::json!({ "matchers": matchers, "html": html })).into_response()
        }
        Err(e) => Json(serde_json::json!({ "error": e.to_string() })).into_response(),
    }
}

/// `GET /deliveries`: pending and failed notifications by channel.
pub async fn deliveries(State(state): State<ConsoleState>, role: CallerRole) -> PageResult {
    let channels = data::deliveries(&state).await?;
    let cluster = state.cluster.as_ref().map(|c| c.borrow().clone());
    Ok(render(
        &state,
        &role,
        "deliveries.html",
        context! { page => "deliveries", channels, cluster },
    ))
}

/// `GET /rules`: the rules in force, the reload button and the playground.
pub async fn rules(State(state): State<ConsoleState>, role: CallerRole) -> PageResult {
    let view = data::rules(&state).await?;
    let recordings = data::recordings(&state);
    Ok(render(
        &state,
        &role,
        "rules.html",
        context! {
            page => "rules",
            rules => view.rules,
            last_reload => view.last_reload,
            recordings,
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct PlaygroundRequest {
    condition: String,
}

/// `POST /rules/playground` `{"condition": "..."}`: the trackers it holds for now.
pub async fn playground(
    State(state): State<ConsoleState>,
    Json(req): Json<PlaygroundRequest>,
) -> Response {
    match data::playground(&state, &req.condition).await {
        Ok(view) => Json(view).into_response(),
        Err(e) => Json(serde_json::json!({ "error": e.to_string() })).into_response(),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    /// The page to land on after signing in (a path here).
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RecordingRequest {
    condition: String,
    /// How long it must hold before it fires (`5m`), like a rule's `for`.
    #[serde(default, rename = "for")]
    hold_for: Option<String>,
    /// A file name among those the page lists.
    recording: String,
}

/// `POST /rules/playground/recording` `{"condition", "for", "recording"}`: what the
/// condition would have done over one of `server.recordings`' files.
pub async fn playground_recording(
    State(state): State<ConsoleState>,
    Json(req): Json<RecordingRequest>,
) -> Response {
    match data::playground_recording(
        &state,
        &req.condition,
        req.hold_for.as_deref(),
        &req.recording,
    )
    .await
    {
        Ok(view) => Json(view).into_response(),
        Err(e) => Json(serde_json::json!({ "error": e.to_string() })).into_response(),
    }
}

/// `GET /login`: the token form (`POST /login` sets the session cookie).
pub async fn login(State(state): State<ConsoleState>, Query(q): Query<LoginQuery>) -> Response {
    let next = q
        .next
        .filter(|n| n.starts_with('/') && !n.starts_with("//"));
    render(
        &state,
        &None,
        "login.html",
        context! { page => "login", next },
    )
}
