//! The store-backed [`History`] sink: the decisions that the alert history keeps
//! (queued, silenced, inhibited, muted) become entries of `store::history`, kept in
//! [`Unpublished`] with the transitions' own entries, written together just before the
//! dispatcher's transaction commits (a few multi-row statements for the whole batch), and
//! published once it has.
//!
//! The muting stages decide again at every flush of the group; the history keeps what
//! changed: an alert held back by the same silence (or inhibition, or mute) flush after
//! flush has one entry, until it is queued, changes state, or something else holds it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::store::Conn;
use parking_lot::Mutex;

use super::{Decision, DeliveryRecord, History};
use crate::store::{self, Feed, FeedEvent, HistoryEntry, HistoryKind, StoreError};

/// Events of a transaction that is not committed yet: their history entries written by
/// [`Unpublished::write`] before it commits, published when it has, dropped when it
/// rolls back.
#[derive(Debug, Clone, Default)]
pub struct Unpublished(Arc<Mutex<Events>>);

#[derive(Debug, Default)]
struct Events {
    events: Vec<FeedEvent>,
    /// How many of `events` have had their history entries written.
    written: usize,
}

impl Unpublished {
    pub fn push(&self, event: FeedEvent) {
        self.0.lock().events.push(event);
    }

    /// Appends the history entries pushed since the last write, in order. Call it inside
    /// the transaction, before its commit.
    pub fn write(&self, conn: &Conn) -> Result<(), StoreError> {
        let mut events = self.0.lock();
        let entries = events.events[events.written..]
            .iter()
            .filter_map(|e| match e {
                FeedEvent::History(entry) => Some(entry),
                FeedEvent::Transition(_) => None,
            });
        store::history::append_all(conn, entries)?;
        events.written = events.events.len();
        Ok(())
    }

    /// After the commit: tells the feed, in order.
    pub fn publish(&self, feed: &Feed) {
        let events = std::mem::take(&mut *self.0.lock());
        feed.publish_all(events.events);
    }

    /// After a rollback: nothing happened.
    pub fn discard(&self) {
        *self.0.lock() = Events::default();
    }
}

/// Writes the history's kinds of decision to the store.
#[derive(Debug, Clone, Default)]
pub struct StoreHistory {
    unpublished: Unpublished,
    /// What holds each alert back on each channel now, as last recorded:
    /// fingerprint -> channel -> (kind, detail). Keyed in two steps so that the common
    /// case, an alert nothing holds, is looked up without making a key.
    held: HashMap<String, HashMap<String, Hold>>,
}

type Hold = (HistoryKind, Option<String>);

impl StoreHistory {
    pub fn new(unpublished: Unpublished) -> StoreHistory {
        StoreHistory {
            unpublished,
            held: HashMap::new(),
        }
    }

    /// Whether `e` is news: not the same hold as the last one recorded for its alert on
    /// its channel. Remembers holds, forgets them when anything else happens.
    fn is_news(&mut self, r: &DeliveryRecord<'_>, e: Option<&HistoryEntry>) -> bool {
        let Some(channel) = r.channel else {
            return true;
        };
        let fingerprint = &r.alert.fingerprint.0;
        match e {
            Some(e) if e.kind != HistoryKind::Queued => {
                let hold = (e.kind, e.detail.clone());
                let channels = self.held.entry(fingerprint.clone()).or_default();
                channels.insert(channel.to_owned(), hold.clone()) != Some(hold)
            }
            _ => {
                // Dedup and flap holds say nothing new about a mute either way.
                if !matches!(
                    r.decision,
                    Decision::Deduped | Decision::RepeatWaits | Decision::FlapCapped { .. }
                ) && let Some(channels) = self.held.get_mut(fingerprint)
                {
                    channels.remove(channel);
                    if channels.is_empty() {
                        self.held.remove(fingerprint);
                    }
                }
                true
            }
        }
    }
}

/// The history entry of a decision, if the history keeps that kind.
fn entry(r: &DeliveryRecord<'_>) -> Option<HistoryEntry> {
    let (kind, notification_id, detail) = match r.decision {
        Decision::Queued { notification } => (HistoryKind::Queued, Some(notification), None),
        Decision::Silenced { silence } => (HistoryKind::Silenced, None, Some(silence)),
        Decision::Inhibited { by } => (HistoryKind::Inhibited, None, Some(by)),
        Decision::Muted { interval } => (HistoryKind::Muted, None, Some(interval)),
        Decision::Escalated { step } => (HistoryKind::Escalated, None, Some(step)),
        // The plumbing of grouping, dedup and flap damping stays in the notification log.
        Decision::Unrouted
        | Decision::Dropped { .. }
        | Decision::Grouped
        | Decision::Coalesced
        | Decision::Deduped
        | Decision::RepeatWaits
        | Decision::Acknowledged
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
    /// Keeps the entry in [`Unpublished`], which writes it before the commit.
    fn record(&mut self, r: &DeliveryRecord<'_>) {
        let e = entry(r);
        if !self.is_news(r, e.as_ref()) {
            return;
        }
        if let Some(e) = e {
            self.unpublished.push(FeedEvent::History(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::testing::firing;

    fn kinds(conn: &Conn) -> Vec<String> {
        let page = store::history::page(
            conn,
            &store::HistoryQuery {
                limit: 100,
                ..store::HistoryQuery::default()
            },
        )
        .unwrap();
        page.entries
            .iter()
            .rev()
            .map(|e| {
                format!(
                    "{}:{}",
                    e.kind.as_str(),
                    e.detail
                        .as_deref()
                        .or(e.notification_id.as_deref())
                        .unwrap_or("")
                )
            })
            .collect()
    }

    #[test]
    fn the_same_hold_flush_after_flush_is_one_entry() {
        let conn = store::test_connection();
        let unpublished = Unpublished::default();
        let mut sink = StoreHistory::new(unpublished.clone());
        let t = firing("speeding", 1);
        let mut record = |decision| {
            let r = DeliveryRecord {
                at: t.at,
                alert: &t,
                channel: Some("ops"),
                group_key: Some("g"),
                decision,
            };
            sink.record(&r);
        };
        record(Decision::Grouped);
        record(Decision::Silenced { silence: "sil_1" });
        record(Decision::Silenced { silence: "sil_1" });
        record(Decision::Deduped);
        record(Decision::Silenced { silence: "sil_2" });
        record(Decision::Queued {
            notification: "msg_1",
        });
        record(Decision::Silenced { silence: "sil_2" });
        assert_eq!(
            kinds(&conn),
            Vec::<String>::new(),
            "written only when asked"
        );
        unpublished.write(&conn).unwrap();
        unpublished.write(&conn).unwrap();
        assert_eq!(
            kinds(&conn),
            [
                "silenced:sil_1",
                "silenced:sil_2",
                "queued:msg_1",
                "silenced:sil_2"
            ]
        );
        // Published only once the transaction commits.
        let feed = store::Feed::default();
        let mut rx = feed.subscribe();
        unpublished.publish(&feed);
        let mut published = 0;
        while rx.try_recv().is_ok() {
            published += 1;
        }
        assert_eq!(published, 4);
    }
}
