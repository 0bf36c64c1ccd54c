//! "Retry now" of the outbox, for admins: one notification, or a whole channel.
//!
//! The server only asks; the channel's sender decides (see
//! [`crate::dispatch::outbox`]): a notification waiting for a later attempt is due at
//! once, a failed one goes back to pending with the same id (receivers dedupe on it),
//! and one whose attempt is under way is left alone, so that a retry never sends a
//! second copy.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::api::{ApiError, ErrorBody};
use crate::dispatch::{Retried, RetryError};

/// What a retry did, by notification id.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetryAnswer {
    /// The channel whose sender took the retry.
    pub channel: String,
    /// Waiting for a later attempt: due now (behind earlier notifications of its group).
    pub due: Vec<String>,
    /// Failed: pending again with the same id, due now.
    pub requeued: Vec<String>,
    /// An attempt is under way: left alone, so that it is not sent twice.
    pub in_flight: Vec<String>,
    /// Sent already: nothing to do.
    pub sent: Vec<String>,
}

impl From<Retried> for RetryAnswer {
    fn from(r: Retried) -> RetryAnswer {
        RetryAnswer {
            channel: r.channel,
            due: r.due,
            requeued: r.requeued,
            in_flight: r.in_flight,
            sent: r.sent,
        }
    }
}

impl From<RetryError> for ApiError {
    fn from(e: RetryError) -> ApiError {
        let status = match &e {
            RetryError::UnknownNotification(_) | RetryError::UnknownChannel(_) => {
                StatusCode::NOT_FOUND
            }
            RetryError::Stopped | RetryError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.to_string())
    }
}

/// `POST /api/v1/notifications/{id}/retry`: attempt this notification at once.
#[utoipa::path(
    post,
    path = "/api/v1/notifications/{id}/retry",
    tag = "notifications",
    params(("id" = String, Path, description = "The notification id (`msg_...`), as `/api/v1/notifications` lists it.")),
    responses(
        (status = 202, description = "Taken: `due` or `requeued` name it when it will be attempted now, `in_flight` when an attempt is already under way (not repeated), `sent` when there was nothing to do.", body = RetryAnswer),
        (status = 404, description = "No notification with this id is in the outbox (sent ones are pruned after `storage` retention).", body = ErrorBody),
        (status = 503, description = "The dispatcher has stopped, or the database is closed.", body = ErrorBody),
        (status = 401, description = "No token, or another one.", body = ErrorBody),
        (status = 403, description = "`Origin` is another site, or the token is not an admin's.", body = ErrorBody),
        (status = 421, description = "`Host` is not this server.", body = ErrorBody),
    )
)]
pub async fn retry_notification(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let retried = state.dispatcher.retry_notification(&id).await?;
    Ok(accepted(retried))
}

/// `POST /api/v1/channels/{name}/retry`: attempt every waiting and failed notification
/// of this channel at once.
#[utoipa::path(
    post,
    path = "/api/v1/channels/{name}/retry",
    tag = "notifications",
    params(("name" = String, Path, description = "A channel's name, as in `channels:`.")),
    responses(
        (status = 202, description = "Taken: the ids now due, requeued (failed before) and in flight (not repeated).", body = RetryAnswer),
        (status = 404, description = "No channel has this name.", body = ErrorBody),
        (status = 503, description = "The dispatcher has stopped, or the database is closed.", body = ErrorBody),
        (status = 401, description = "No token, or another one.", body = ErrorBody),
        (status = 403, description = "`Origin` is another site, or the token is not an admin's.", body = ErrorBody),
        (status = 421, description = "`Host` is not this server.", body = ErrorBody),
    )
)]
pub async fn retry_channel(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let retried = state.dispatcher.retry_channel(&name).await?;
    Ok(accepted(retried))
}

fn accepted(retried: Retried) -> Response {
    (StatusCode::ACCEPTED, Json(RetryAnswer::from(retried))).into_response()
}
