//! The routes: health, readiness, metrics, and the `/api/v1` resources.
//!
//! Every answer is JSON except `/healthz` and `/metrics` (text). Errors are
//! `{"error": "..."}` with a status that says whose fault it is: 400 for a request that
//! cannot be understood (the message says what to fix), 404 for an unknown tracker or
//! silence, 422 for a rule set that does not load, 503 when a part the answer needs is
//! stopped or does not answer in time.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AppState, ReloadRefused};
use crate::alert::{AlertRecord, TrackerRef};
use crate::dispatch::notification::fmt_time;
use crate::dispatch::silence::ActiveSilences;
use crate::navixy::messages::TrackerInfo;
use crate::navixy::messages::{IotValue, Location, SourceState, TrackerId};
use crate::state::{Readings, TrackerState};
use crate::store::{NewSilence, OutboxStatus, Silence, StoreError};

/// How long `/readyz` waits for the database to take its test write.
const STORAGE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a tracker lookup waits for its shard (busy shards answer in order).
const TRACKER_TIMEOUT: Duration = Duration::from_secs(5);

/// An error answer: a status and a message for whoever sent the request.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Invalid(message) => ApiError::bad_request(message),
            StoreError::Closed => ApiError::unavailable("the database is closed (stopping?)"),
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// `GET /healthz`: the process is alive and serving.
pub async fn healthz() -> &'static str {
    "ok\n"
}

#[derive(Debug, Serialize)]
struct Check {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `GET /readyz`: 200 when the source has a working subscription and the database takes
/// a write; 503 otherwise, saying which is not.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let source = if state.health.is_connected() {
        Check {
            ok: true,
            error: None,
        }
    } else {
        let since = state
            .health
            .since()
            .map(|t| format!(" since {}", fmt_time(t)))
            .unwrap_or_default();
        let why = state
            .health
            .last_error()
            .map(|e| format!(": {e}"))
            .unwrap_or_else(|| " yet".into());
        Check {
            ok: false,
            error: Some(format!("not connected{since}{why}")),
        }
    };
    let storage =
        match tokio::time::timeout(STORAGE_CHECK_TIMEOUT, state.store.check_writable()).await {
            Ok(Ok(())) => Check {
                ok: true,
                error: None,
            },
            Ok(Err(e)) => Check {
                ok: false,
                error: Some(e.to_string()),
            },
            Err(_) => Check {
                ok: false,
                error: Some(format!(
                    "no answer within {}s",
                    STORAGE_CHECK_TIMEOUT.as_secs()
                )),
            },
        };
    let ready = source.ok && storage.ok;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "ready": ready, "source": source, "storage": storage })),
    )
        .into_response()
}

/// `GET /metrics`: the Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let Some(handle) = &state.metrics else {
        return ApiError::unavailable(
            "metrics are not recorded in this process (another recorder was installed first)",
        )
        .into_response();
    };
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

/// One live alert as the API shows it: the webhook payload's alert, plus its key and the
/// silence that holds back its notifications, if any.
#[derive(Debug, Serialize)]
struct AlertView<'a> {
    fingerprint: &'a str,
    status: &'static str,
    rule: &'a str,
    severity: &'static str,
    tracker: Option<&'a TrackerRef>,
    key: Option<&'a str>,
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
    value: Option<&'a serde_json::Value>,
    starts_at: String,
    /// When the alert last changed (its firing transition).
    updated_at: String,
    location: Option<&'a Location>,
    state: &'a serde_json::Map<String, serde_json::Value>,
    silenced_by: Option<&'a str>,
}

/// `GET /api/v1/alerts`: the live (firing) alerts as committed, oldest first.
pub async fn alerts(State(state): State<AppState>) -> ApiResult<Response> {
    let records: Vec<AlertRecord> = state.store.load_live_alerts().await?;
    let mut silences = ActiveSilences::default();
    silences.replace(
        state.store.list_silences().await?,
        state.store.silence_generation(),
    );
    let now = state.clock.now();
    let views: Vec<AlertView<'_>> = records
        .iter()
        .map(|r| AlertView {
            fingerprint: &r.fingerprint.0,
            status: r.status.as_str(),
            rule: &r.rule,
            severity: r.last.severity.as_str(),
            tracker: r.last.tracker.as_ref(),
            key: r.key.as_deref(),
            labels: &r.last.labels,
            annotations: &r.last.annotations,
            value: r.last.value.as_ref(),
            starts_at: fmt_time(r.starts_at),
            updated_at: fmt_time(r.last.at),
            location: r.last.location.as_ref(),
            state: &r.last.state,
            silenced_by: silences.matching(&r.last, now),
        })
        .collect();
    Ok(Json(views).into_response())
}

/// A tracker as the API shows it: named like what rule conditions read.
#[derive(Debug, Serialize)]
struct TrackerView<'a> {
    tracker: InfoView<'a>,
    lifecycle: &'static str,
    online: bool,
    last_data_at: Option<String>,
    state: Option<&'a SourceState>,
    prev: Option<&'a SourceState>,
    readings: ReadingsView<'a>,
    iot: &'a std::collections::HashMap<String, IotValue>,
    /// The history series kept for this tracker (what window helpers can read).
    history: Vec<&'a str>,
}

/// Who the tracker is, as `tracker/list` says.
#[derive(Debug, Serialize)]
struct InfoView<'a> {
    id: TrackerId,
    source_id: Option<i64>,
    label: Option<&'a str>,
    group_id: Option<i64>,
}

impl<'a> InfoView<'a> {
    fn new(info: &'a TrackerInfo) -> InfoView<'a> {
        InfoView {
            id: info.id,
            source_id: info.source_id,
            label: info.label.as_deref(),
            group_id: info.group_id,
        }
    }
}

#[derive(Debug, Serialize)]
struct ReadingsView<'a> {
    inputs: BTreeMap<&'a str, &'a crate::navixy::messages::SensorInput>,
    states: BTreeMap<&'a str, &'a crate::navixy::messages::StateValue>,
    virtual_sensors: BTreeMap<&'a str, &'a crate::navixy::messages::VirtualSensor>,
    counters: BTreeMap<&'a str, &'a crate::navixy::messages::Counter>,
}

impl<'a> ReadingsView<'a> {
    /// Sorted by name, so that the answer reads (and diffs) the same each time.
    fn new(r: &'a Readings) -> ReadingsView<'a> {
        ReadingsView {
            inputs: r.inputs.iter().map(|(k, v)| (k.as_str(), v)).collect(),
            states: r.states.iter().map(|(k, v)| (k.as_str(), v)).collect(),
            virtual_sensors: r
                .virtual_sensors
                .iter()
                .map(|(k, v)| (k.as_str(), v))
                .collect(),
            counters: r.counters.iter().map(|(k, v)| (k.as_str(), v)).collect(),
        }
    }
}

/// `GET /api/v1/trackers/{id}`: the tracker's cached state, or 404.
pub async fn tracker(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id: TrackerId = id
        .trim()
        .parse()
        .map_err(|_| ApiError::bad_request(format!("tracker id must be an integer, not `{id}`")))?;
    let engine = state.engine.clone();
    // Asking a shard may block while its queue is full: not on an async worker.
    let reply = tokio::task::spawn_blocking(move || engine.tracker(id))
        .await
        .map_err(|_| ApiError::unavailable("the engine did not answer"))?;
    let tracker: TrackerState = match tokio::time::timeout(TRACKER_TIMEOUT, reply).await {
        Ok(Ok(Some(tracker))) => tracker,
        Ok(Ok(None)) => {
            return Err(ApiError::not_found(format!("tracker {id} is not known")));
        }
        Ok(Err(_)) => return Err(ApiError::unavailable("the engine has stopped")),
        Err(_) => {
            return Err(ApiError::unavailable(format!(
                "the engine did not answer within {}s",
                TRACKER_TIMEOUT.as_secs()
            )));
        }
    };
    let mut history: Vec<&str> = tracker.history.names().collect();
    history.sort_unstable();
    let view = TrackerView {
        tracker: InfoView::new(&tracker.info),
        lifecycle: tracker.lifecycle.as_str(),
        online: tracker.online,
        last_data_at: tracker.last_data_at.map(fmt_time),
        state: tracker.current.as_deref(),
        prev: tracker.prev.as_deref(),
        readings: ReadingsView::new(&tracker.readings),
        iot: &tracker.iot,
        history,
    };
    Ok(Json(view).into_response())
}

#[derive(Debug, Serialize)]
struct SilenceView<'a> {
    #[serde(flatten)]
    silence: &'a Silence,
    /// `pending`, `active` or `expired` at the time of the answer.
    state: &'static str,
}

/// `GET /api/v1/silences`: every silence, newest first, with its state now.
pub async fn list_silences(State(state): State<AppState>) -> ApiResult<Response> {
    let silences = state.store.list_silences().await?;
    let now = state.clock.now();
    let views: Vec<SilenceView<'_>> = silences
        .iter()
        .map(|silence| SilenceView {
            silence,
            state: silence.state(now),
        })
        .collect();
    Ok(Json(views).into_response())
}

/// `POST /api/v1/silences`: adds a silence (Alertmanager's shape: `matchers`,
/// `starts_at`, `ends_at`, `created_by`, `comment`); answers with it and its id. The body
/// is read as JSON whatever its `Content-Type` says, so that a plain `curl -d` works.
pub async fn add_silence(State(state): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let new: NewSilence = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid silence: {e}")))?;
    let silence = state.store.add_silence(new, state.clock.now()).await?;
    tracing::info!(silence = %silence.id, created_by = %silence.created_by, ends_at = %fmt_time(silence.ends_at), "Silence added.");
    let view = SilenceView {
        state: silence.state(state.clock.now()),
        silence: &silence,
    };
    Ok(Json(view).into_response())
}

/// `DELETE /api/v1/silences/{id}`: ends a silence now (it is removed).
pub async fn delete_silence(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    if state.store.delete_silence(&id).await? {
        tracing::info!(silence = %id, "Silence deleted.");
        Ok(Json(json!({ "deleted": id })).into_response())
    } else {
        Err(ApiError::not_found(format!("no silence with id `{id}`")))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsQuery {
    status: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/notifications?status=failed&limit=100`: the outbox, newest first;
/// `failed` lists the notifications kept for inspection.
pub async fn notifications(
    State(state): State<AppState>,
    query: Result<Query<NotificationsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some("pending") => Some(OutboxStatus::Pending),
        Some("sent") => Some(OutboxStatus::Sent),
        Some("failed") => Some(OutboxStatus::Failed),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "status must be pending, sent or failed, not `{other}`"
            )));
        }
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let entries = state.store.list_outbox(status, limit).await?;
    Ok(Json(entries).into_response())
}

/// `POST /api/v1/reload`: loads the rule files again; 200 with what changed, or 422 with
/// every error (the old rule set keeps running).
pub async fn reload(State(state): State<AppState>) -> Response {
    match state.reloader.reload_rules().await {
        Ok(report) => Json(json!({ "status": "ok", "reload": report })).into_response(),
        Err(ReloadRefused::Unavailable(message)) => ApiError::unavailable(message).into_response(),
        Err(ReloadRefused::Invalid { error, errors }) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "status": "error",
                "error": error,
                "errors": errors,
            })),
        )
            .into_response(),
    }
}

/// Any other path.
pub async fn not_found() -> ApiError {
    ApiError::not_found(
        "no such endpoint (see /healthz, /readyz, /metrics, /api/v1/alerts, \
         /api/v1/trackers/{id}, /api/v1/silences, /api/v1/notifications, /api/v1/reload)",
    )
}
