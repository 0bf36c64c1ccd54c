//! The alert history over HTTP: `GET /api/v1/history` and
//! `GET /api/v1/alerts/{fingerprint}/history`, newest first, a page at a time with an
//! opaque cursor. The store keeps the entries ([`crate::store::history`]); this module
//! only reads the query and shapes the answer.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::api::{ApiError, ErrorBody};
use crate::store::{Cursor, HistoryEntry, HistoryQuery};

/// The most entries a page holds.
pub const MAX_LIMIT: usize = 1000;
/// Entries per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;

/// Which entries `GET /api/v1/history` returns.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Only this rule's entries.
    rule: Option<String>,
    /// Only this tracker's entries.
    tracker_id: Option<String>,
    /// From this time on (RFC 3339, inclusive).
    since: Option<String>,
    /// Before this time (RFC 3339, exclusive).
    until: Option<String>,
    /// Entries per page: 1 to 1000, default 100.
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Which entries `GET /api/v1/alerts/{fingerprint}/history` returns.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertHistoryParams {
    /// Entries per page: 1 to 1000, default 100.
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of the history.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPageView {
    /// Newest first.
    entries: Vec<HistoryEntry>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    next_cursor: Option<String>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// `limit` as given, checked against its range.
fn limit(text: Option<&str>) -> Result<usize, ApiError> {
    let Some(text) = text else {
        return Ok(DEFAULT_LIMIT);
    };
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            bad(format!(
                "limit must be a whole number from 1 to {MAX_LIMIT}, not `{text}`"
            ))
        })
}

fn cursor(text: Option<&str>) -> Result<Option<Cursor>, ApiError> {
    text.filter(|t| !t.is_empty())
        .map(|t| {
            Cursor::decode(t).ok_or_else(|| {
                bad(format!(
                    "cursor `{t}` is not one this server gave out (pass `next_cursor` as is)"
                ))
            })
        })
        .transpose()
}

fn time(name: &str, text: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    text.filter(|t| !t.is_empty())
        .map(|t| {
            DateTime::parse_from_rfc3339(t.trim())
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    bad(format!(
                        "{name} must be an RFC 3339 time like 2026-01-01T10:00:00Z, not `{t}`: {e}"
                    ))
                })
        })
        .transpose()
}

async fn answer(state: &AppState, query: HistoryQuery) -> Result<Response, ApiError> {
    let page = state.store.history(query).await?;
    Ok(Json(HistoryPageView {
        entries: page.entries,
        next_cursor: page.next.map(Cursor::encode),
    })
    .into_response())
}

/// `GET /api/v1/history`: the alert history, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/history",
    tag = "history",
    params(HistoryParams),
    responses(
        (status = 200, description = "A page of entries, newest first, and the cursor of the next.", body = HistoryPageView),
        (status = 400, description = "A bad parameter; says which.", body = ErrorBody),
        (status = 503, description = "The database is closed.", body = ErrorBody),
        (status = 401, description = "No token, or another one.", body = ErrorBody),
        (status = 403, description = "The token's role may not do this.", body = ErrorBody),
        (status = 421, description = "`Host` is not this server.", body = ErrorBody),
    )
)]
pub async fn history(
    State(state): State<AppState>,
    query: Result<Query<HistoryParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| bad(e.body_text()))?;
    let tracker_id = q
        .tracker_id
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.trim()
                .parse::<i64>()
                .map_err(|_| bad(format!("tracker_id must be an integer, not `{t}`")))
        })
        .transpose()?;
    let query = HistoryQuery {
        fingerprint: None,
        rule: q.rule.filter(|r| !r.is_empty()),
        tracker_id,
        since: time("since", q.since.as_deref())?,
        until: time("until", q.until.as_deref())?,
        cursor: cursor(q.cursor.as_deref())?,
        limit: limit(q.limit.as_deref())?,
    };
    answer(&state, query).await
}

/// `GET /api/v1/alerts/{fingerprint}/history`: one alert's timeline, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/alerts/{fingerprint}/history",
    tag = "history",
    params(
        ("fingerprint" = String, Path, description = "The alert's fingerprint (16 hex digits)."),
        AlertHistoryParams
    ),
    responses(
        (status = 200, description = "A page of the alert's entries, newest first (none for an unknown alert).", body = HistoryPageView),
        (status = 400, description = "A bad parameter; says which.", body = ErrorBody),
        (status = 503, description = "The database is closed.", body = ErrorBody),
        (status = 401, description = "No token, or another one.", body = ErrorBody),
        (status = 403, description = "The token's role may not do this.", body = ErrorBody),
        (status = 421, description = "`Host` is not this server.", body = ErrorBody),
    )
)]
pub async fn alert_history(
    State(state): State<AppState>,
    Path(fingerprint): Path<String>,
    query: Result<Query<AlertHistoryParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| bad(e.body_text()))?;
    let query = HistoryQuery {
        fingerprint: Some(fingerprint),
        cursor: cursor(q.cursor.as_deref())?,
        limit: limit(q.limit.as_deref())?,
        ..HistoryQuery::default()
    };
    answer(&state, query).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_outside_their_range_are_refused_by_name() {
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit(Some("1")).unwrap(), 1);
        assert_eq!(limit(Some("1000")).unwrap(), 1000);
        for bad in ["0", "1001", "-1", "ten", ""] {
            let e = limit(Some(bad)).unwrap_err().into_response();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
        assert!(time("since", Some("yesterday")).is_err());
        assert!(cursor(Some("garbage")).is_err());
        assert_eq!(cursor(Some("")).unwrap(), None);
    }
}
