//! The store-backed [`History`] sink: the decisions that the alert history keeps
//! (queued, silenced, inhibited, muted) become entries of `store::history`, written in
//! the dispatcher's transaction, and wait in [`Unpublished`] until it commits.

use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::Connection;

use super::{Decision, DeliveryRecord, History};
use crate::store::{self, Feed, FeedEvent, HistoryEntry, HistoryKind, StoreError};

/// Events written inside a transaction that is not committed yet: published when it
/// is, dropped when it rolls back.
#[derive(Debug, Clone, Default)]
pub struct Unpublished(Arc<Mutex<Vec<FeedEvent>>>);

impl Unpublished {
    pub fn push(&self, event: FeedEvent) {
        self.0.lock().push(event);
    }

    /// After the commit: tells the feed, in order.
    pub fn publish(&self, feed: &Feed) {
        let events = std::mem::take(&mut *self.0.lock());
        feed.publish_all(events);
    }

    /// After a rollback: nothing happened.
    pub fn discard(&self) {
        self.0.lock().clear();
    }
}

/// Writes the history's kinds of decision to the store.
#[derive(Debug, Clone, Default)]
pub struct StoreHistory {
    unpublished: Unpublished,
}

impl StoreHistory {
    pub fn new(unpublished: Unpublished) -> StoreHistory {
        StoreHistory { unpublished }
    }
}

/// The history entry of a decision, if the history keeps that kind.
fn entry(r: &DeliveryRecord<'_>) -> Option<HistoryEntry> {
    let (kind, notification_id, detail) = match r.decision {
        Decision::Queued { notification } => (HistoryKind::Queued, Some(notification), None),
        Decision::Silenced { silence } => (HistoryKind::Silenced, None, Some(silence)),
        Decision::Inhibited { source } => (HistoryKind::Inhibited, None, Some(source)),
        Decision::Muted { interval } => (HistoryKind::Muted, None, Some(interval)),
        // The plumbing of grouping, dedup and flap damping stays in the notification log.
        Decision::Unrouted
        | Decision::Dropped { .. }
        | Decision::Grouped
        | Decision::Coalesced
        | Decision::Deduped
        | Decision::RepeatWaits
        | Decision::FlapCapped { .. } => return None,
    };
    Some(HistoryEntry {
        channel: r.channel.map(str::to_owned),
        notification_id: notification_id.map(str::to_owned),
        detail: detail.map(str::to_owned),
        ..HistoryEntry::about(r.alert, kind, r.at)
    })
}

impl History for StoreHistory {
    fn record(&mut self, conn: &Connection, r: &DeliveryRecord<'_>) -> Result<(), StoreError> {
        let Some(e) = entry(r) else {
            return Ok(());
        };
        store::history::append(conn, &e)?;
        self.unpublished.push(FeedEvent::History(e));
        Ok(())
    }
}
