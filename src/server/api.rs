//! The routes: health, readiness, metrics, and the `/api/v1` resources, each described
//! for the OpenAPI document by its `#[utoipa::path]` (see [`super::openapi`]).
//!
//! Every answer is JSON except `/healthz` and `/metrics` (text). Errors are
//! `{"error": "..."}` with a status that says whose fault it is: 400 for a request that
//! cannot be understood (the message says what to fix), 404 for an unknown tracker,
//! silence or endpoint, 405 for a method the endpoint does not take, 413 for a body over
//! [`MAX_BODY_BYTES`], 415 for a body that is not JSON, 422 for a rule set that does not
//! load, 503 when a part the answer needs is stopped or does not answer in time. Errors
//! that axum or a layer makes itself (405, 413) are turned into the same shape by
//! [`json_errors`].

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{AppState, ReloadRefused};

use crate::alert::{AlertRecord, AlertTransition, PendingAlert, Severity, TrackerRef};
use crate::dispatch::routes::LabelMatcher;
use crate::dispatch::silence::ActiveSilences;
use crate::navixy::messages::TrackerInfo;
use crate::navixy::messages::{IotValue, Location, SourceState, TrackerId};
use crate::rfc3339;
use crate::state::{Readings, TrackerState};
use crate::store::{NewSilence, OutboxStatus, Silence, StoreError};

/// How long `/readyz` waits for the database to take its test write.
const STORAGE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a tracker lookup waits for its shard (busy shards answer in order).
const TRACKER_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request body read: a silence with its 32 matchers fits many times over.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long a request body may take to arrive once its headers have: a client that
/// announces a body and sends nothing would otherwise hold its connection forever.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, and what to fix when it is the request.
    pub error: String,
}

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

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
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
        let body = ErrorBody {
            error: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

/// True for `application/json`, with or without parameters (`; charset=utf-8`).
fn is_json(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// True for `text/html`: a page (the ack link's) answers errors as pages.
fn is_html(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("text/html"))
}

/// A JSON request body: 415 unless it is sent as `application/json` (a browser sends a
/// form or `text/plain` to another site without asking first, never JSON), 413 over
/// [`MAX_BODY_BYTES`], 408 when it does not arrive in time, 400 when it does not parse.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON sent with `Content-Type: application/json`",
            ));
        }
        let bytes = tokio::time::timeout(BODY_TIMEOUT, Bytes::from_request(request, state))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the body did not arrive within {}s", BODY_TIMEOUT.as_secs()),
                )
            })?
            .map_err(|e| match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => too_large(),
                status => ApiError::new(status, e.body_text()),
            })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("invalid silence: {e}")))
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the body is larger than the {} KiB allowed",
            MAX_BODY_BYTES / 1024
        ),
    )
}

/// Middleware: an error answer that is not JSON yet (axum's 405, a layer's 413, a path
/// that does not decode) becomes `{"error": "..."}`, keeping its status and headers
/// (`Allow`, `WWW-Authenticate`).
pub async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || is_json(response.headers().get(header::CONTENT_TYPE))
        || is_html(response.headers().get(header::CONTENT_TYPE))
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            format!("{path} does not take {method} (it takes {allowed})")
        }
        StatusCode::PAYLOAD_TOO_LARGE => too_large().message,
        _ => {
            let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
            let text = String::from_utf8_lossy(&text).trim().to_owned();
            if text.is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("error")
                    .to_ascii_lowercase()
            } else {
                text
            }
        }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = serde_json::to_vec(&ErrorBody { error: message }).unwrap_or_default();
    Response::from_parts(parts, Body::from(body))
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
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "The process is alive and serving.", body = String, content_type = "text/plain", example = "ok\n"),
        (status = 421, description = "`Host` is not this server.", body = ErrorBody),
    )
)]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// One part of the readiness answer.
#[derive(Debug, Serialize, ToSchema)]
struct Check {
    ok: bool,
    /// Why the part is not ready; absent when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The readiness answer.
#[derive(Debug, Serialize, ToSchema)]
struct Readiness {
    /// `source.ok` and `storage.ok`.
    ready: bool,
    /// The source has a working subscription.
    source: Check,
    /// The database takes a write.
    storage: Check,
    /// With `cluster:`: this instance, its role, and who holds each source's lease.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<crate::cluster::ClusterView>,
}

/// `GET /readyz`: 200 when the source has a working subscription and the database takes
/// a write; 503 otherwise, saying which is not.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready.", body = Readiness),
        (status = 503, description = "Not ready; says which part is not.", body = Readiness),
        (status = 401, description = "No token, or another one.", body = ErrorBody),
        (status = 421, description = "`Host` is not this server.", body = ErrorBody),
    )
)]
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
            .map(|t| format!(" since {}", rfc3339::format(t)))
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
        Json(Readiness {
            ready,
            source,
            storage,
            cluster: state.cluster.as_ref().map(|c| c.borrow().clone()),
        }),
    )
        .into_response()
}

/// `GET /metrics`: the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses(
        (status = 200, description = "Every metric, in the Prometheus text format 0.0.4.", body = String, content_type = "text/plain"),
        (status = 503, description = "This process records no metrics.", body = ErrorBody),
        (status = 401, description = "No token, or another one.", body = ErrorBody),
        (status = 421, description = "`Host` is not this server.", body = ErrorBody),
    )
)]
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
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Alert)]
struct AlertView<'a> {
    fingerprint: &'a str,
    /// `firing`, or `pending` for an alert inside its `for`.
    status: &'static str,
    rule: &'a str,
    /// `info`, `warning` or `critical`; null for a pending alert.
    severity: Option<&'static str>,
    /// The tracker's id; null for engine alerts.
    tracker_id: Option<TrackerId>,
    /// `id`, `label`, `source_id`; null for engine alerts and pending alerts.
    #[schema(value_type = Option<Object>)]
    tracker: Option<&'a TrackerRef>,
    key: Option<&'a str>,
    #[schema(value_type = BTreeMap<String, String>)]
    labels: &'a BTreeMap<String, String>,
    #[schema(value_type = BTreeMap<String, String>)]
    annotations: &'a BTreeMap<String, String>,
    /// The rule's `value`, any JSON.
    #[schema(value_type = Option<serde_json::Value>)]
    value: Option<&'a serde_json::Value>,
    /// When it started firing; for a pending alert, since when its condition holds.
    starts_at: String,
    /// When the alert last changed (its firing transition).
    updated_at: String,
    #[schema(value_type = Option<Object>)]
    location: Option<&'a Location>,
    /// What the rule read, by name.
    #[schema(value_type = Object)]
    state: &'a serde_json::Map<String, serde_json::Value>,
    /// The id of the silence that holds back its notifications.
    silenced_by: Option<&'a str>,
    /// The acknowledgement (`by`, `at`, `comment`); null while not acknowledged.
    #[schema(value_type = Option<Object>)]
    ack: Option<&'a crate::alert::Ack>,
}

/// Which live alerts `GET /api/v1/alerts` lists.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// `firing` (default), `pending` (inside their `for`) or `all`.
    state: Option<String>,
    /// Only this rule's alerts.
    rule: Option<String>,
    /// Only this tracker's alerts.
    tracker_id: Option<String>,
    /// Label matchers as in Alertmanager, comma-separated: `severity="critical",rule=~"fuel_.*"`
    /// (`=`, `!=`, `=~`, `!~`; braces optional). Pending alerts have only `rule`,
    /// `tracker_id` and `key`.
    matchers: Option<String>,
}

/// `matchers=` as Alertmanager writes them: `a="x",b=~"y.*"`, optionally in braces.
fn parse_matchers(text: &str) -> Result<Vec<LabelMatcher>, String> {
    let text = text.trim();
    let text = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(text);
    let mut parts = Vec::new();
    let (mut current, mut quoted, mut escaped) = (String::new(), false, false);
    for c in text.chars() {
        match c {
            _ if escaped => {
                current.push(c);
                escaped = false;
            }
            '\\' if quoted => {
                current.push(c);
                escaped = true;
            }
            '"' => {
                current.push(c);
                quoted = !quoted;
            }
            ',' if !quoted => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    parts.push(current);
    parts
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let at = p
                .find(['=', '!'])
                .ok_or_else(|| format!("matcher `{p}` has no operator (=, !=, =~, !~)"))?;
            let (name, rest) = p.split_at(at);
            let (op, value) = ["=~", "!~", "!=", "="]
                .iter()
                .find_map(|op| rest.strip_prefix(op).map(|v| (*op, v.trim())))
                .ok_or_else(|| format!("matcher `{p}` has no operator (=, !=, =~, !~)"))?;
            let value = match value.strip_prefix('"') {
                Some(v) => v
                    .strip_suffix('"')
                    .ok_or_else(|| format!("matcher `{p}`: the value's quote is not closed"))?
                    .replace("\\\"", "\"")
                    .replace("\\\\", "\\"),
                None => value.to_owned(),
            };
            let name = name.trim();
            if name.is_empty() {
                return Err(format!("matcher `{p}` needs a label name"));
            }
            LabelMatcher::new(name, &value, op.ends_with('~'), op.starts_with('='))
                .map_err(|e| format!("matcher `{p}`: {e}"))
        })
        .collect()
}

/// How long the engine may take to list its pending alerts.
const PENDING_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /api/v1/alerts`: the live alerts, oldest first: firing ones as committed, and
/// with `state=pending|all` those inside their `for` as the engine holds them.
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "alerts",
    params(AlertsQuery),
    responses(
        (status = 200, description = "The live alerts, oldest first.", body = Vec<AlertView>),
        (status = 400, description = "A bad parameter; says which.", body = ErrorBody),
        (status = 503, description = "The database is closed, or the engine does not answer.", body = ErrorBody),
        (status = 401, description = "No token, or another one.", body = ErrorBody),
        (status = 403, description = "The token's role may not do this.", body = ErrorBody),
        (status = 421, description = "`Host` is not this server.", body = ErrorBody),
    )
)]
pub async fn alerts(
    State(state): State<AppState>,
    query: Result<Query<AlertsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (firing, pending) = match query.state.as_deref() {
        None | Some("") | Some("firing") => (true, false),
        Some("pending") => (false, true),
        Some("all") => (true, true),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "state must be pending, firing or all, not `{other}`"
            )));
        }
    };
    let tracker_id = match query.tracker_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) => Some(t.parse::<TrackerId>().map_err(|_| {
            ApiError::bad_request(format!("tracker_id must be an integer, not `{t}`"))
        })?),
    };
    let matchers = parse_matchers(query.matchers.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("matchers: {e}")))?;
    let rule = query.rule.filter(|r| !r.is_empty());
    let wanted = |t: &AlertTransition| {
        rule.as_deref().is_none_or(|r| *t.rule == *r)
            && tracker_id.is_none_or(|id| t.tracker.as_ref().map(|tr| tr.id) == Some(id))
            && matchers.iter().all(|m| m.matches(t))
    };

    let records: Vec<AlertRecord> = if firing {
        state.store.load_live_alerts().await?
    } else {
        Vec::new()
    };
    // A pending alert as a transition, so that the same filters read it.
    let pending: Vec<(PendingAlert, AlertTransition)> = if pending {
        let engine = state.engine.clone();
        let listed = tokio::time::timeout(
            PENDING_TIMEOUT,
            tokio::task::spawn_blocking(move || engine.pending_blocking()),
        )
        .await
        .map_err(|_| ApiError::unavailable("the engine did not list its pending alerts in time"))?
        .map_err(|_| ApiError::unavailable("the engine did not answer"))?;
        // Its labels are the source's: matchers on `source` find it (the fingerprint
        // names the account of a tracker listed by Navixy's id).
        let names = super::source_names(&state);
        listed
            .into_iter()
            .map(|p| {
                let source = p
                    .fingerprint
                    .source_among(&names, &p.rule, p.tracker_id, p.key.as_deref())
                    .map_or(0, usize::from);
                let labels = names
                    .get(source)
                    .map(|name| BTreeMap::from([("source".to_owned(), name.clone())]))
                    .unwrap_or_default();
                let t = p.transition(Severity::Info, labels, None);
                (p, t)
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut silences = ActiveSilences::default();
    silences.replace(
        state.store.list_silences().await?,
        state.store.silence_generation(),
    );
    let now = state.clock.now();
    let acks = state.store.list_active_acks(now).await?;
    let mut views: Vec<AlertView<'_>> = records
        .iter()
        .filter(|r| wanted(&r.last))
        .map(|r| AlertView {
            fingerprint: &r.fingerprint.0,
            status: r.status.as_str(),
            rule: &r.rule,
            severity: Some(r.last.severity.as_str()),
            tracker_id: r.tracker_id,
            tracker: r.last.tracker.as_ref(),
            key: r.key.as_deref(),
            labels: &r.last.labels,
            annotations: &r.last.annotations,
            value: r.last.value.as_ref(),
            starts_at: rfc3339::format(r.starts_at),
            updated_at: rfc3339::format(r.last.at),
            location: r.last.location.as_ref(),
            state: &r.last.state,
            silenced_by: silences.matching(&r.last, now),
            ack: acks.get(&r.fingerprint.0),
        })
        .collect();
    views.extend(
        pending
            .iter()
            .filter(|(_, t)| wanted(t))
            .map(|(p, t)| AlertView {
                fingerprint: &p.fingerprint.0,
                status: "pending",
                rule: &p.rule,
                severity: None,
                tracker_id: Some(p.tracker_id),
                tracker: None,
                key: p.key.as_deref(),
                labels: &t.labels,
                annotations: &t.annotations,
                value: None,
                starts_at: rfc3339::format(p.since),
                updated_at: rfc3339::format(p.since),
                location: None,
                state: &t.state,
                silenced_by: None,
                ack: None,
            }),
    );
    views.sort_by(|a, b| {
        (a.starts_at.as_str(), a.fingerprint).cmp(&(b.starts_at.as_str(), b.fingerprint))
    });
    Ok(Json(views).into_response())
}

/// A tracker as the API shows it: named like what rule conditions read.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Tracker)]
struct TrackerView<'a> {
    tracker: InfoView<'a>,
    lifecycle: &'static str,
    online: bool,
    last_data_at: Option<String>,
    /// The last source state, as Navixy sends it.
    #[schema(value_type = Option<Object>)]
    state: Option<&'a SourceState>,
    /// The state before it.
    #[schema(value_type = Option<Object>)]
    prev: Option<&'a SourceState>,
    readings: ReadingsView<'a>,
    /// IoT values by name.
    #[schema(value_type = Object)]
    iot: &'a std::collections::HashMap<String, IotValue>,
    /// The history series kept for this tracker (what window helpers can read).
    history: Vec<&'a str>,
}

/// Who the tracker is, as `tracker/list` says.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TrackerInfo)]
struct InfoView<'a> {
    id: TrackerId,
    /// The account it belongs to (`sources:` name).
    source: &'a str,
    source_id: Option<i64>,
    label: Option<&'a str>,
    group_id: Option<i64>,
}

impl<'a> InfoView<'a> {
    fn new(info: &'a TrackerInfo, source: &'a str) -> InfoView<'a> {
        InfoView {
            id: info.id,
            source,
            source_id: info.source_id,
            label: info.label.as_deref(),
            group_id: info.group_id,
        }
    }
}

/// The last readings, by sensor name.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Readings)]
struct ReadingsView<'a> {
    #[schema(value_type = Object)]
    inputs: BTreeMap<&'a str, &'a crate::navixy::messages::SensorInput>,
    #[schema(value_type = Object)]
    states: BTreeMap<&'a str, &'a crate::navixy::messages::StateValue>,
    #[schema(value_type = Object)]
    virtual_sensors: BTreeMap<&'a str, &'a crate::navixy::messages::VirtualSensor>,
    #[schema(value_type = Object)]
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

/// Which account's tracker `GET /api/v1/trackers/{id}` means.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrackerQuery {
    /// The source's name (`sources:`); default: the first source.
    pub source: Option<String>,
}

/// `GET /api/v1/trackers/{id}`: the tracker's cached state, or 404. With several
/// accounts, `?source=NAME` says whose tracker `id` is (two accounts may both have it).
#[utoipa::path(
    get,
    path = "/api/v1/trackers/{id}",
    tag = "trackers",
    params(("id" = i64, Path, description = "The tracker id (Navixy's `tracker_id`)."), TrackerQuery),
    responses(
        (status = 200, description = "The tracker's cached state.", body = TrackerView),
        (status = 400, description = "The id is not an integer.", body = ErrorBody),
        (status = 404, description = "No such tracker.", body = ErrorBody),
        (status = 503, description = "The engine is stopped or busy.", body = ErrorBody),
        (status = 401, description = "No token, or another one.", body = ErrorBody),
        (status = 421, description = "`Host` is not this server.", body = ErrorBody),
    )
)]
pub async fn tracker(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<TrackerQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let id: TrackerId = id
        .trim()
        .parse()
        .map_err(|_| ApiError::bad_request(format!("tracker id must be an integer, not `{id}`")))?;
    // The sources in config order are the health group's members (none: one source).
    let names: Vec<&str> = state.health.members().iter().map(|m| m.name()).collect();
    let source = match &query.source {
        None => 0,
        Some(name) => names
            .iter()
            .position(|n| n == name)
            .or_else(|| (names.is_empty() && name == state.health.name()).then_some(0))
            .and_then(|i| crate::navixy::messages::SourceIx::try_from(i).ok())
            .ok_or_else(|| ApiError::not_found(format!("no source is named `{name}`")))?,
    };
    let key = crate::navixy::messages::tracker_key(source, id);
    let engine = state.engine.clone();
    // Asking a shard may block while its queue is full: not on an async worker.
    let reply = tokio::task::spawn_blocking(move || engine.tracker(key))
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
        tracker: InfoView::new(
            &tracker.info,
            names
                .get(usize::from(tracker.info.source))
                .copied()
                .unwrap_or(state.health.name()),
        ),
        lifecycle: tracker.lifecycle.as_str(),
        online: tracker.online,
        last_data_at: tracker.last_data_at.map(rfc3339::format),
        state: tracker.current.as_deref(),
        prev: tracker.prev.as_deref(),
        readings: ReadingsView::new(&tracker.readings),
        iot: &tracker.iot,
        history,
    };
    Ok(Json(view).into_response())
}

/// A silence and its state.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SilenceWithState)]
struct SilenceView<'a> {
    #[serde(flatten)]
    silence: &'a Silence,
    /// `pending`, `active` or `expired` at the time of the answer.
    state: &'static str,
}

/// `GET /api/v1/silences`: every silence, newest first, with its state now.
#[utoipa::path(
    get,
    path = "/api/v1/silences",
    tag = "silences",
    responses(
        (status = 200, description = "Every silence, newest first.", body = Vec<SilenceView>),
        (status = 503, description = "The database is closed.", body = ErrorBody),
        (status = 401, description = "No token, or another one.", body = ErrorBody),
        (status = 421, description = "`Host` is not this server.", body = ErrorBody),
    )
)]
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
/// `starts_at`, `ends_at`, `created_by`, `comment`, also in Alertmanager's camelCase);
/// answers with it and its id.
#[utoipa::path(
    post,
    path = "/api/v1/silences",
    tag = "silences",
    request_body(content = NewSilence, content_type = "application/json"),
    responses(
        (status = 200, description = "The silence as stored, with its id.", body = SilenceView),
        (status = 400, description = "Not a valid silence; says why (a matcher, the time range, one that would silence everything, a cap).", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB.", body = ErrorBody),
        (status = 415, description = "The body is not sent as `application/json`.", body = ErrorBody),
        (status = 503, description = "The database is closed.", body = ErrorBody),
        (status = 401, description = "No token, or another one.", body = ErrorBody),
        (status = 403, description = "`Origin` is another site, or the token's role may not do this.", body = ErrorBody),
        (status = 421, description = "`Host` is not this server.", body = ErrorBody),
    )
)]
pub async fn add_silence(
    State(state): State<AppState>,
    caller: Option<axum::Extension<super::Caller>>,
    JsonBody(mut new): JsonBody<NewSilence>,
) -> ApiResult<Response> {
    // Who added it: the token's name unless the body says.
    if new.created_by.trim().is_empty()
        && state.auth.required()
        && let Some(axum::Extension(caller)) = caller
    {
        new.created_by = caller.name.to_string();
    }
    let silence = state.store.add_silence(new, state.clock.now()).await?;
    tracing::info!(silence = %silence.id, created_by = %silence.created_by, ends_at = %rfc3339::format(silence.ends_at), "Silence added.");
    let view = SilenceView {
        state: silence.state(state.clock.now()),
        silence: &silence,
    };
    Ok(Json(view).into_response())
}

/// The answer to a deletion.
#[derive(Debug, Serialize, ToSchema)]
struct Deleted {
    /// The id of the silence removed.
    deleted: String,
}

/// `DELETE /api/v1/silences/{id}`: ends a silence now (it is removed).
#[utoipa::path(
    delete,
    path = "/api/v1/silences/{id}",
    tag = "silences",
    params(("id" = String, Path, description = "The silence id (`sil_...`).")),
    responses(
        (status = 200, description = "Removed.", body = Deleted),
        (status = 400, description = "The id does not decode.", body = ErrorBody),
        (status = 404, description = "No such silence.", body = ErrorBody),
        (status = 503, description = "The database is closed.", body = ErrorBody),
        (status = 401, description = "No token, or another one.", body = ErrorBody),
        (status = 403, description = "`Origin` is another site, or the token's role may not do this.", body = ErrorBody),
        (status = 421, description = "`Host` is not this server.", body = ErrorBody),
    )
)]
pub async fn delete_silence(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    if state.store.delete_silence(&id).await? {
        tracing::info!(silence = %id, "Silence deleted.");
        Ok(Json(Deleted { deleted: id }).into_response())
    } else {
        Err(ApiError::not_found(format!("no silence with id `{id}`")))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NotificationsQuery {
    /// `pending`, `sent` or `failed` (kept for inspection); default: all.
    status: Option<String>,
    /// How many, newest first: 1 to 1000, default 100.
    limit: Option<usize>,
}

/// `GET /api/v1/notifications?status=failed&limit=100`: the outbox, newest first;
/// `failed` lists the notifications kept for inspection.
#[utoipa::path(
    get,
    path = "/api/v1/notifications",
    tag = "notifications",
    params(NotificationsQuery),
    responses(
        (status = 200, description = "Outbox entries, newest first: `seq`, `id`, `channel`, `group_key`, `created_at`, `status`, `attempts`, `next_attempt_at`, `last_error`, `finished_at`, `payload`.", body = Vec<serde_json::Value>),
        (status = 400, description = "A bad `status` or `limit`, or another parameter.", body = ErrorBody),
        (status = 503, description = "The database is closed.", body = ErrorBody),
        (status = 401, description = "No token, or another one.", body = ErrorBody),
        (status = 421, description = "`Host` is not this server.", body = ErrorBody),
    )
)]
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

/// A reload that took effect.
#[derive(Debug, Serialize, ToSchema)]
struct Reloaded {
    /// `ok`.
    status: &'static str,
    /// `rules` (in force now), `files`, `added` and `removed` rule names.
    #[schema(value_type = Object)]
    reload: serde_json::Value,
}

/// A reload that was rejected: the old rule set keeps running.
#[derive(Debug, Serialize, ToSchema)]
struct ReloadRejected {
    /// `error`.
    status: &'static str,
    error: String,
    /// Every problem, each naming its file and rule.
    errors: Vec<String>,
}

/// `POST /api/v1/reload`: loads the rule files again; 200 with what changed, or 422 with
/// every error (the old rule set keeps running).
#[utoipa::path(
    post,
    path = "/api/v1/reload",
    tag = "rules",
    responses(
        (status = 200, description = "The new rule set is running.", body = Reloaded),
        (status = 422, description = "The new rule set does not load; the old one keeps running.", body = ReloadRejected),
        (status = 503, description = "The daemon is stopping.", body = ErrorBody),
        (status = 401, description = "No token, or another one.", body = ErrorBody),
        (status = 403, description = "`Origin` is another site, or the token's role may not do this.", body = ErrorBody),
        (status = 421, description = "`Host` is not this server.", body = ErrorBody),
    )
)]
pub async fn reload(
    State(state): State<AppState>,
    caller: Option<axum::Extension<super::Caller>>,
) -> Response {
    let by = caller.map_or_else(|| "anonymous".into(), |c| c.name.to_string());
    match state.reloader.reload_rules(&by).await {
        Ok(report) => Json(Reloaded {
            status: "ok",
            reload: report,
        })
        .into_response(),
        Err(ReloadRefused::Unavailable(message)) => ApiError::unavailable(message).into_response(),
        Err(ReloadRefused::Invalid { error, errors }) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(ReloadRejected {
                status: "error",
                error,
                errors,
            }),
        )
            .into_response(),
    }
}

/// `GET /api/v1/openapi.json`: this API's OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "health",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object),
        (status = 401, description = "No token, or another one.", body = ErrorBody),
        (status = 421, description = "`Host` is not this server.", body = ErrorBody),
    )
)]
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi::json(),
    )
        .into_response()
}

/// Any other path.
pub async fn not_found() -> ApiError {
    ApiError::not_found(
        "no such endpoint (see /healthz, /readyz, /metrics, /api/v1/alerts, \
         /api/v1/alerts/{fingerprint}/history, /api/v1/history, /api/v1/events, \
         /api/v1/trackers/{id}, /api/v1/silences, /api/v1/notifications, \
         /api/v1/notifications/{id}/retry, /api/v1/channels/{name}/retry, /api/v1/reload, \
         /api/v1/openapi.json)",
    )
}
