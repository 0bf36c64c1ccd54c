//! Acknowledgement over HTTP: `POST|DELETE /api/v1/alerts/{fingerprint}/ack`, and the
//! page an ack link opens, `GET|POST /ack/{token}`.
//!
//! The page is open (no bearer token: it is reached from a chat or a mail): the signed,
//! expiring token is its credential (see [`crate::dispatch::ack`]). `GET` only shows the
//! alert and a button, so that a link preview acknowledges nothing; the button's `POST`
//! acknowledges. The form needs no CSRF token of its own: the token in its URL is the
//! proof, a forger cannot make one, and the `Origin` check of [`super::guard`] still
//! applies. The page is one small minijinja template.

use axum::Form;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::api::{ApiError, ErrorBody, JsonBody};
use crate::alert::{Ack, AlertTransition, Fingerprint};
use crate::dispatch::ack::{AckLinks, LinkError};
use crate::rfc3339;
use crate::store::{AckError, StoredAck};

/// The longest `by` and `comment` kept.
const MAX_TEXT: usize = 1024;

/// `POST /api/v1/alerts/{fingerprint}/ack`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// Who acknowledges (default: `api`).
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    /// When the ack ends by itself (RFC 3339); without it, when the alert resolves.
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

/// An alert's ack as the API answers it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AckView {
    fingerprint: String,
    #[schema(value_type = Object)]
    ack: Ack,
    expires_at: Option<String>,
}

impl AckView {
    fn new(stored: &StoredAck) -> AckView {
        AckView {
            fingerprint: stored.fingerprint.0.clone(),
            ack: stored.ack.clone(),
            expires_at: stored.expires_at.map(rfc3339::format),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Unacknowledged {
    unacknowledged: String,
}

/// Who acknowledges: the name given, else the token's name when tokens are in use,
/// else `api`. The one place that decides it.
fn caller_name(
    given: Option<String>,
    state: &AppState,
    caller: Option<&axum::Extension<super::Caller>>,
) -> String {
    given
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            caller
                .filter(|_| state.auth.required())
                .map(|axum::Extension(c)| c.name.to_string())
        })
        .unwrap_or_else(|| "api".into())
}

fn cut(text: String) -> String {
    crate::text::truncate(&text, MAX_TEXT).to_owned()
}

impl From<AckError> for ApiError {
    fn from(e: AckError) -> ApiError {
        match e {
            AckError::NotFiring(_) | AckError::NotAcked(_) => {
                ApiError::new(StatusCode::NOT_FOUND, e.to_string())
            }
            AckError::ExpiresInPast(_) => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
            AckError::Store(e) => e.into(),
        }
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/alerts/{fingerprint}/ack",
    tag = "alerts",
    params(("fingerprint" = String, Path, description = "The alert's fingerprint.")),
    request_body(content = AckRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Acknowledged (an earlier ack of it is replaced).", body = AckView),
        (status = 400, description = "Not a valid ack: an unknown field, a bad time, `expires_at` not in the future.", body = ErrorBody),
        (status = 404, description = "No firing alert with this fingerprint.", body = ErrorBody),
        (status = 415, description = "The body is not sent as `application/json`.", body = ErrorBody),
        (status = 401, description = "No token, or another one.", body = ErrorBody),
        (status = 403, description = "`Origin` is another site, or the token's role may not do this.", body = ErrorBody),
        (status = 421, description = "`Host` is not this server.", body = ErrorBody),
    )
)]
pub async fn acknowledge(
    State(state): State<AppState>,
    Path(fingerprint): Path<String>,
    caller: Option<axum::Extension<super::Caller>>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    let request: AckRequest = serde_json::from_value(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid ack: {e}")))?;
    let now = state.clock.now();
    let ack = Ack {
        by: cut(caller_name(request.by, &state, caller.as_ref())),
        at: now,
        comment: cut(request.comment.unwrap_or_default()),
    };
    let (_, stored) = state
        .store
        .acknowledge(Fingerprint(fingerprint), ack, request.expires_at, now)
        .await?;
    tracing::info!(fingerprint = %stored.fingerprint.0, by = %stored.ack.by, "Alert acknowledged.");
    Ok(Json(AckView::new(&stored)).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/alerts/{fingerprint}/ack",
    tag = "alerts",
    params(("fingerprint" = String, Path, description = "The alert's fingerprint.")),
    responses(
        (status = 200, description = "The ack is undone: repeats and escalation resume.", body = Unacknowledged),
        (status = 404, description = "No firing alert with this fingerprint, or it is not acknowledged.", body = ErrorBody),
        (status = 401, description = "No token, or another one.", body = ErrorBody),
        (status = 403, description = "`Origin` is another site, or the token's role may not do this.", body = ErrorBody),
        (status = 421, description = "`Host` is not this server.", body = ErrorBody),
    )
)]
pub async fn unacknowledge(
    State(state): State<AppState>,
    Path(fingerprint): Path<String>,
    caller: Option<axum::Extension<super::Caller>>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let by = caller_name(None, &state, caller.as_ref());
    state
        .store
        .unacknowledge(Fingerprint(fingerprint.clone()), by, now)
        .await?;
    tracing::info!(fingerprint = %fingerprint, "Alert acknowledgement undone.");
    Ok(Json(Unacknowledged {
        unacknowledged: fingerprint,
    })
    .into_response())
}

/// The ack page's form.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AckForm {
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    comment: Option<String>,
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title></head>
<body>
<h1>{{ title }}</h1>
{% if message %}<p>{{ message }}</p>{% endif %}
{% if alert %}
<dl>
<dt>Rule</dt><dd>{{ alert.rule }}</dd>
<dt>Severity</dt><dd>{{ alert.severity }}</dd>
{% if alert.tracker %}<dt>Tracker</dt><dd>{{ alert.tracker }}</dd>{% endif %}
{% if alert.summary %}<dt>Summary</dt><dd>{{ alert.summary }}</dd>{% endif %}
<dt>Firing since</dt><dd>{{ alert.starts_at }}</dd>
{% if ack %}<dt>Acknowledged</dt><dd>by {{ ack.by }} at {{ ack.at }}{% if ack.comment %}: {{ ack.comment }}{% endif %}</dd>{% endif %}
</dl>
{% endif %}
{% if form %}
<form method="post">
<p><label>Your name <input name="by"></label></p>
<p><label>Comment <input name="comment"></label></p>
<p><button type="submit">Acknowledge</button></p>
</form>
{% endif %}
</body></html>
"#;

#[derive(Debug, Serialize)]
struct AlertSummary {
    rule: String,
    severity: &'static str,
    tracker: Option<String>,
    summary: Option<String>,
    starts_at: String,
}

impl AlertSummary {
    fn new(t: &AlertTransition) -> AlertSummary {
        AlertSummary {
            rule: t.rule.to_string(),
            severity: t.severity.as_str(),
            tracker: t.tracker.as_ref().map(|tr| match &tr.label {
                Some(label) => format!("{label} ({})", tr.id),
                None => tr.id.to_string(),
            }),
            summary: t.annotations.get("summary").cloned(),
            starts_at: rfc3339::format(t.starts_at),
        }
    }
}

/// The page, with a status.
fn page(
    status: StatusCode,
    title: &str,
    message: Option<String>,
    alert: Option<&AlertTransition>,
    ack: Option<&Ack>,
    form: bool,
) -> Response {
    let mut env = minijinja::Environment::new();
    let rendered = env
        .add_template("ack.html", PAGE)
        .and_then(|()| env.get_template("ack.html"))
        .and_then(|t| {
            t.render(minijinja::context! {
                title,
                message,
                alert => alert.map(AlertSummary::new),
                ack,
                form,
            })
        });
    match rendered {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render the ack page: {e}"),
        )
        .into_response(),
    }
}

/// The firing a link names, or the page that says why not.
async fn resolve_link(
    state: &AppState,
    token: &str,
) -> Result<(Fingerprint, AlertTransition, Option<StoredAck>), Response> {
    let refused = |message: String| {
        page(
            StatusCode::FORBIDDEN,
            "Link refused",
            Some(message),
            None,
            None,
            false,
        )
    };
    let Some(external_url) = state.server.external_url.as_deref() else {
        return Err(refused("ack links are off (no server.external_url)".into()));
    };
    let key = state.store.ack_key().await.map_err(|e| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
    })?;
    let claims = AckLinks::new(external_url, &key)
        .verify(token, state.clock.now())
        .map_err(|e| match e {
            LinkError::Forged => refused(format!("{e}.")),
            LinkError::Expired => refused(format!("{e}; open a newer notification's link.")),
        })?;
    let gone = || {
        page(
            StatusCode::NOT_FOUND,
            "No longer firing",
            Some("The alert this link names has resolved.".into()),
            None,
            None,
            false,
        )
    };
    let found = state
        .store
        .load_ack(claims.fingerprint.clone())
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    match found {
        Some((alert, ack)) if alert.starts_at == claims.starts_at => {
            Ok((claims.fingerprint, alert, ack))
        }
        _ => Err(gone()),
    }
}

#[utoipa::path(
    get,
    path = "/ack/{token}",
    tag = "alerts",
    security(()),
    params(("token" = String, Path, description = "The signed token of an ack link.")),
    responses(
        (status = 200, description = "The alert and a button to acknowledge it; changes nothing.", body = String, content_type = "text/html"),
        (status = 403, description = "The link is forged or expired.", body = String, content_type = "text/html"),
        (status = 404, description = "The alert has resolved.", body = String, content_type = "text/html"),
        (status = 421, description = "`Host` is not this server.", body = ErrorBody),
    )
)]
pub async fn link_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let (_, alert, ack) = match resolve_link(&state, &token).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let now = state.clock.now();
    let ack = ack.filter(|a| a.is_active(now)).map(|a| a.ack);
    page(
        StatusCode::OK,
        "Acknowledge this alert?",
        None,
        Some(&alert),
        ack.as_ref(),
        true,
    )
}

#[utoipa::path(
    post,
    path = "/ack/{token}",
    tag = "alerts",
    security(()),
    params(("token" = String, Path, description = "The signed token of an ack link.")),
    request_body(content = AckForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Acknowledged.", body = String, content_type = "text/html"),
        (status = 403, description = "The link is forged or expired, or `Origin` is another site.", body = String, content_type = "text/html"),
        (status = 404, description = "The alert has resolved.", body = String, content_type = "text/html"),
        (status = 400, description = "The form cannot be read.", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB.", body = ErrorBody),
        (status = 415, description = "The body is not sent as `application/x-www-form-urlencoded`.", body = ErrorBody),
        (status = 421, description = "`Host` is not this server.", body = ErrorBody),
        (status = 422, description = "The form has fields of the wrong type.", body = ErrorBody),
    )
)]
pub async fn link_acknowledge(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Form(form): Form<AckForm>,
) -> Response {
    let (fingerprint, _, _) = match resolve_link(&state, &token).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let now = state.clock.now();
    let ack = Ack {
        by: cut(form
            .by
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "ack link".into())),
        at: now,
        comment: cut(form.comment.unwrap_or_default()),
    };
    match state.store.acknowledge(fingerprint, ack, None, now).await {
        Ok((alert, stored)) => {
            tracing::info!(fingerprint = %stored.fingerprint.0, by = %stored.ack.by, "Alert acknowledged through its link.");
            page(
                StatusCode::OK,
                "Acknowledged",
                None,
                Some(&alert),
                Some(&stored.ack),
                false,
            )
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}
