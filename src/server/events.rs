//! `GET /api/v1/events`: a Server-Sent Events stream of committed transitions
//! (`event: transition`) and history entries (`event: history`), one JSON object per
//! event, with a comment line as a heartbeat every [`HEARTBEAT`].
//!
//! Each client reads from its own place in the store's bounded [`Feed`]. The engine never
//! waits for a client: one that falls a whole buffer behind is dropped (its stream ends)
//! and reconnects, reading what it missed from `GET /api/v1/history`.
//!
//! [`Feed`]: crate::store::Feed

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use parking_lot::Mutex;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::AppState;
use super::api::ErrorBody;
use crate::store::FeedEvent;

/// How often an idle stream carries a comment, so that proxies keep it open and clients
/// notice a dead connection.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// The most events written to a client at once: those waiting when it is its turn.
const MAX_EVENTS_PER_WRITE: usize = 64;

/// The SSE text of the latest events, shared by every stream. The same `Arc` reaches
/// every listener, so each event is serialised once however many consoles follow, not
/// once per console; [`RECENT_TEXTS`] covers listeners a whole feed buffer apart.
static RECENT: Mutex<VecDeque<(Arc<FeedEvent>, Bytes)>> = Mutex::new(VecDeque::new());
const RECENT_TEXTS: usize = 1024;

/// `event: NAME\ndata: JSON\n\n`, serialised by the first stream that needs it.
fn sse_text(event: &Arc<FeedEvent>) -> Bytes {
    let mut recent = RECENT.lock();
    // Listeners are mostly at the head: look from the newest.
    if let Some((_, text)) = recent.iter().rev().find(|(e, _)| Arc::ptr_eq(e, event)) {
        return text.clone();
    }
    let text = Bytes::from(format!(
        "event: {}\ndata: {}\n\n",
        event.name(),
        event.json()
    ));
    if recent.len() >= RECENT_TEXTS {
        recent.pop_front();
    }
    recent.push_back((event.clone(), text.clone()));
    text
}

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
    // Each write carries every event waiting (up to a bound): a console that is behind
    // catches up in a few writes, not one per event.
    let chunks = stream::unfold((rx, false), |(mut rx, ended)| async move {
        if ended {
            return None;
        }
        let first = match tokio::time::timeout(HEARTBEAT, rx.recv()).await {
            Err(_) => {
                let beat = Bytes::from_static(b": heartbeat\n\n");
                return Some((Ok::<_, Infallible>(beat), (rx, false)));
            }
            Ok(Ok(event)) => event,
            Ok(Err(RecvError::Lagged(missed))) => {
                dropped(missed);
                return None;
            }
            Ok(Err(RecvError::Closed)) => return None,
        };
        let text = sse_text(&first);
        let mut more = Vec::new();
        let mut ended = false;
        while more.len() < MAX_EVENTS_PER_WRITE {
            match rx.try_recv() {
                Ok(event) => more.push(sse_text(&event)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Lagged(missed)) => {
                    dropped(missed);
                    ended = true;
                    break;
                }
                Err(TryRecvError::Closed) => {
                    ended = true;
                    break;
                }
            }
        }
        let chunk = if more.is_empty() {
            text
        } else {
            let mut all =
                Vec::with_capacity(text.len() + more.iter().map(Bytes::len).sum::<usize>());
            all.extend_from_slice(&text);
            for t in &more {
                all.extend_from_slice(t);
            }
            Bytes::from(all)
        };
        Some((Ok(chunk), (rx, ended)))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(chunks),
    )
        .into_response()
}

fn dropped(missed: u64) {
    tracing::info!(
        missed,
        "An event stream client fell behind; disconnecting it."
    );
}
