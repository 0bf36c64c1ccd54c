//! `GET /console/events`: the transitions the dispatcher commits, as Server-Sent Events
//! (`event: transition`, the alert's fingerprint, rule, status, severity and tracker id
//! as JSON), so that open pages refresh what changed without a reload.
//!
//! Each browser reads from a bounded broadcast: one that falls behind by more than the
//! channel holds is sent `event: lagged` (the page reloads its lists) and carries on from
//! the newest; nothing waits for a slow reader.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast::error::RecvError;

use super::ConsoleState;
use crate::alert::AlertTransition;

/// The JSON of one `transition` event.
pub fn transition_json(t: &AlertTransition) -> serde_json::Value {
    serde_json::json!({
        "fingerprint": t.fingerprint.0,
        "rule": &*t.rule,
        "status": t.status.as_str(),
        "severity": t.severity.as_str(),
        "tracker_id": t.tracker.as_ref().map(|r| r.id),
    })
}

/// The stream: `hello` first (the page knows it is connected), then transitions.
pub async fn events(
    State(state): State<ConsoleState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = state.committed.as_ref().map(|tx| tx.subscribe());
    let hello = Event::default().event("hello").data("{}");
    let stream = stream::unfold((Some(hello), receiver), |(first, mut rx)| async move {
        if let Some(event) = first {
            return Some((Ok(event), (None, rx)));
        }
        let receiver = rx.as_mut()?;
        let event = match receiver.recv().await {
            Ok(t) => Event::default()
                .event("transition")
                .data(transition_json(&t).to_string()),
            Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), (None, rx)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
