//! `GET /api/v1/events`: a Server-Sent Events stream of committed transitions
//! (`event: transition`) and history entries (`event: history`), one JSON object per
//! event, with a comment line as a heartbeat every [`HEARTBEAT`].
//!
//! Each client reads from its own place in the store's bounded [`Feed`]. The engine never
//! waits for a client: one that falls a whole buffer behind is dropped (its stream ends)
//! and reconnects, reading what it missed from `GET /api/v1/history`.
//!
//! [`Feed`]: crate::store::Feed

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use super::api::ErrorBody;

/// How often an idle stream carries a comment, so that proxies keep it open and clients
/// notice a dead connection.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// `GET /api/v1/events`: the live stream.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "history",
    responses(
        (status = 200, description = "Server-Sent Events: `event: transition` with `{at, fingerprint, rule, tracker_id, status, severity, starts_at, ends_at, value, labels, annotations}`, `event: history` with a history entry; a `: heartbeat` comment every 15 s. A client that falls behind is disconnected.", body = String, content_type = "text/event-stream"),
        (status = 401, description = "No token, or another one.", body = ErrorBody),
        (status = 403, description = "The token's role may not do this.", body = ErrorBody),
        (status = 421, description = "`Host` is not this server.", body = ErrorBody),
    )
)]
pub async fn events(State(state): State<AppState>) -> Response {
    let rx = state.store.feed().subscribe();
    let events = stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(event) => {
                let sse = Event::default().event(event.name()).data(event.json());
                Some((Ok::<_, Infallible>(sse), rx))
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::info!(
                    missed,
                    "An event stream client fell behind; disconnecting it."
                );
                None
            }
            Err(RecvError::Closed) => None,
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
        .into_response()
}
