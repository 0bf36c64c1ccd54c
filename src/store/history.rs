//! The alert history: every transition (pending, firing, resolved, event) and everything
//! that happened to it on each channel (queued, silenced, inhibited, muted, sent, failed,
//! acknowledged, ...), one row each, kept for `storage.history_retention`; and the
//! [`Feed`] that tells live listeners (`GET /api/v1/events`) of each once it is committed.
//!
//! Entries are appended inside the transaction that commits what they record, so the
//! history never claims what a crash rolled back, and costs no commit of its own. Pages
//! are read newest first by `seq`, the append order; a cursor is the `seq` of the last
//! entry of a page, so entries appended meanwhile never shift a later page.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::broadcast;

use super::sql::{InsertRows, insert_rows};
use super::{Conn, StoreError, ToValue, Value, from_json, from_ms, params, to_json, to_ms};
use crate::alert::{AlertStatus, AlertTransition};

/// What a history entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HistoryKind {
    /// The condition started to hold; the alert waits out its `for`. Once per wait: a
    /// wait that ends before firing adds nothing more.
    Pending,
    Firing,
    Resolved,
    /// An occurrence of an event rule.
    Event,
    /// Put into a notification in the outbox (`notification_id`).
    Queued,
    /// The channel accepted the notification (`notification_id`).
    Sent,
    /// The notification was given up (`detail` says why).
    Failed,
    /// An active silence matched (`detail` names it).
    Silenced,
    /// A firing source alert inhibits it (`detail` names the source).
    Inhibited,
    /// A time interval mutes the route (`detail` names it).
    Muted,
    Acknowledged,
    Unacknowledged,
    /// An escalation step told more channels.
    Escalated,
}

impl HistoryKind {
    /// Every kind, in the order the SPEC lists them.
    pub const ALL: [HistoryKind; 13] = [
        HistoryKind::Pending,
        HistoryKind::Firing,
        HistoryKind::Resolved,
        HistoryKind::Event,
        HistoryKind::Queued,
        HistoryKind::Sent,
        HistoryKind::Failed,
        HistoryKind::Silenced,
        HistoryKind::Inhibited,
        HistoryKind::Muted,
        HistoryKind::Acknowledged,
        HistoryKind::Unacknowledged,
        HistoryKind::Escalated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HistoryKind::Pending => "pending",
            HistoryKind::Firing => "firing",
            HistoryKind::Resolved => "resolved",
            HistoryKind::Event => "event",
            HistoryKind::Queued => "queued",
            HistoryKind::Sent => "sent",
            HistoryKind::Failed => "failed",
            HistoryKind::Silenced => "silenced",
            HistoryKind::Inhibited => "inhibited",
            HistoryKind::Muted => "muted",
            HistoryKind::Acknowledged => "acknowledged",
            HistoryKind::Unacknowledged => "unacknowledged",
            HistoryKind::Escalated => "escalated",
        }
    }

    /// The kind named `s`; `None` for a name this build does not know (a newer row).
    pub fn parse(s: &str) -> Option<HistoryKind> {
        HistoryKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One entry of the history, as stored and as the API shows it (absent fields null).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    #[schema(value_type = String, format = DateTime)]
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub at: DateTime<Utc>,
    pub fingerprint: String,
    pub rule: String,
    pub tracker_id: Option<i64>,
    pub kind: HistoryKind,
    pub channel: Option<String>,
    pub notification_id: Option<String>,
    /// Who acknowledged, unacknowledged or escalated.
    pub by: Option<String>,
    pub comment: Option<String>,
    /// The rule's `value` at the transition, any JSON.
    #[schema(value_type = Option<serde_json::Value>)]
    pub value: Option<serde_json::Value>,
    pub detail: Option<String>,
}

impl HistoryEntry {
    /// An entry about `t` with nothing but its identity and `kind` filled in.
    pub fn about(t: &AlertTransition, kind: HistoryKind, at: DateTime<Utc>) -> HistoryEntry {
        HistoryEntry {
            at,
            fingerprint: t.fingerprint.0.clone(),
            rule: t.rule.to_string(),
            tracker_id: t.tracker.as_ref().map(|tr| tr.id),
            kind,
            channel: None,
            notification_id: None,
            by: None,
            comment: None,
            value: t.value.clone(),
            detail: None,
        }
    }

    /// The `pending`, `firing`, `resolved` or `event` entry of a transition, at the
    /// engine time it happened.
    pub fn transition(t: &AlertTransition) -> HistoryEntry {
        let kind = match t.status {
            _ if t.pending => HistoryKind::Pending,
            AlertStatus::Firing if t.is_event() => HistoryKind::Event,
            AlertStatus::Firing => HistoryKind::Firing,
            AlertStatus::Resolved => HistoryKind::Resolved,
        };
        HistoryEntry::about(t, kind, t.at)
    }
}

/// Appends entries, in order, with a few multi-row statements: [`append`] for a whole
/// transaction's entries at once, before its commit.
pub fn append_all<'a>(
    conn: &Conn,
    entries: impl IntoIterator<Item = &'a HistoryEntry>,
) -> Result<(), StoreError> {
    let rows = entries
        .into_iter()
        .map(|e| {
            let value = e
                .value
                .as_ref()
                .map(|v| to_json("a history value", v))
                .transpose()?;
            Ok((e, value))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    static HISTORY: InsertRows = InsertRows::new(
        "INSERT INTO history
             (at, fingerprint, rule, tracker_id, kind, channel, notification_id, by_name,
              comment, value, detail)",
        "",
        11,
    );
    insert_rows(conn, &HISTORY, &rows, |(e, value), out| {
        out.extend([
            Value::Integer(to_ms(e.at)),
            Value::Text(&e.fingerprint),
            Value::Text(&e.rule),
            e.tracker_id.map_or(Value::Null, Value::Integer),
            Value::Text(e.kind.as_str()),
            e.channel.to_value(),
            e.notification_id.to_value(),
            e.by.to_value(),
            e.comment.to_value(),
            value.to_value(),
            e.detail.to_value(),
        ]);
    })
}

/// Appends an entry. Call it inside the transaction that commits what it records, then
/// hand the entry to [`Feed::publish`] once that transaction has committed.
pub fn append(conn: &Conn, e: &HistoryEntry) -> Result<(), StoreError> {
    append_all(conn, [e])
}

/// Which entries a page holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryQuery {
    pub fingerprint: Option<String>,
    pub rule: Option<String>,
    pub tracker_id: Option<i64>,
    /// From this time on (inclusive).
    pub since: Option<DateTime<Utc>>,
    /// Before this time (exclusive).
    pub until: Option<DateTime<Utc>>,
    /// Where the previous page ended ([`HistoryPage::next`]).
    pub cursor: Option<Cursor>,
    pub limit: usize,
}

/// Where a page ended: the entries after it are older. Opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(i64);

impl Cursor {
    /// The text clients pass back.
    pub fn encode(self) -> String {
        format!("h{:x}", self.0)
    }

    /// A cursor from its text; `None` if it is not one this server gave out.
    pub fn decode(text: &str) -> Option<Cursor> {
        let hex = text.strip_prefix('h')?;
        if hex.is_empty() || hex.len() > 16 {
            return None;
        }
        i64::from_str_radix(hex, 16)
            .ok()
            .filter(|seq| *seq > 0)
            .map(Cursor)
    }
}

/// A page of entries, newest first, and the cursor of the next one when there may be more.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    pub entries: Vec<HistoryEntry>,
    pub next: Option<Cursor>,
}

/// A page of the history, newest first.
pub fn page(conn: &Conn, q: &HistoryQuery) -> Result<HistoryPage, StoreError> {
    let mut sql = String::from(
        "SELECT seq, at, fingerprint, rule, tracker_id, kind, channel, notification_id, by_name,
                comment, value, detail
         FROM history WHERE 1 = 1",
    );
    let mut args: Vec<Value<'_>> = Vec::new();
    let mut and = |clause: &str, value| {
        args.push(value);
        sql.push_str(&format!(" AND {clause} ?{}", args.len()));
    };
    if let Some(fp) = &q.fingerprint {
        and("fingerprint =", Value::Text(fp));
    }
    if let Some(rule) = &q.rule {
        and("rule =", Value::Text(rule));
    }
    if let Some(id) = q.tracker_id {
        and("tracker_id =", Value::Integer(id));
    }
    if let Some(since) = q.since {
        and("at >=", Value::Integer(to_ms(since)));
    }
    if let Some(until) = q.until {
        and("at <", Value::Integer(to_ms(until)));
    }
    if let Some(Cursor(seq)) = q.cursor {
        and("seq <", Value::Integer(seq));
    }
    let limit = q.limit.max(1);
    // One more than asked: whether there is a next page.
    args.push(Value::Integer(
        i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1,
    ));
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT ?{}", args.len()));

    let rows = conn.query_map(&sql, &args, |row| {
        Ok((
            row.get::<i64>(0)?,
            Row {
                at: row.get(1)?,
                fingerprint: row.get(2)?,
                rule: row.get(3)?,
                tracker_id: row.get(4)?,
                kind: row.get(5)?,
                channel: row.get(6)?,
                notification_id: row.get(7)?,
                by: row.get(8)?,
                comment: row.get(9)?,
                value: row.get(10)?,
                detail: row.get(11)?,
            },
        ))
    })?;
    let mut entries = Vec::with_capacity(limit);
    let mut last = None;
    let mut more = false;
    for (read, (seq, row)) in rows.into_iter().enumerate() {
        if read == limit {
            // A row past the page: there is a next one, starting after the last row read.
            more = true;
            break;
        }
        last = Some(Cursor(seq));
        // A kind a newer build wrote is not this build's to show.
        let Some(kind) = HistoryKind::parse(&row.kind) else {
            continue;
        };
        let value = row
            .value
            .map(|v| from_json::<serde_json::Value>("a history value", &v))
            .transpose()?;
        entries.push(HistoryEntry {
            at: from_ms(row.at),
            fingerprint: row.fingerprint,
            rule: row.rule,
            tracker_id: row.tracker_id,
            kind,
            channel: row.channel,
            notification_id: row.notification_id,
            by: row.by,
            comment: row.comment,
            value,
            detail: row.detail,
        });
    }
    Ok(HistoryPage {
        next: if more { last } else { None },
        entries,
    })
}

/// A row as read, before its kind and value are decoded.
struct Row {
    at: i64,
    fingerprint: String,
    rule: String,
    tracker_id: Option<i64>,
    kind: String,
    channel: Option<String>,
    notification_id: Option<String>,
    by: Option<String>,
    comment: Option<String>,
    value: Option<String>,
    detail: Option<String>,
}

/// Deletes at most `batch` entries older than `before`, oldest first; returns how many.
/// Called repeatedly, each in a transaction of its own, so that no prune holds the
/// writer for long.
pub fn prune_history(
    conn: &Conn,
    before: DateTime<Utc>,
    batch: usize,
) -> Result<usize, StoreError> {
    conn.execute(
        "DELETE FROM history WHERE seq IN
             (SELECT seq FROM history WHERE at < ?1 ORDER BY at LIMIT ?2)",
        params![to_ms(before), i64::try_from(batch).unwrap_or(i64::MAX)],
    )
}

/// A transition as live listeners see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransitionEvent {
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub at: DateTime<Utc>,
    pub fingerprint: String,
    pub rule: String,
    pub tracker_id: Option<i64>,
    /// `pending`, `firing` or `resolved`.
    pub status: &'static str,
    pub severity: Option<&'static str>,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub starts_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::rfc3339::serialize_opt")]
    pub ends_at: Option<DateTime<Utc>>,
    pub value: Option<serde_json::Value>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
}

impl TransitionEvent {
    pub fn of(t: &AlertTransition) -> TransitionEvent {
        TransitionEvent {
            at: t.at,
            fingerprint: t.fingerprint.0.clone(),
            rule: t.rule.to_string(),
            tracker_id: t.tracker.as_ref().map(|tr| tr.id),
            status: if t.pending {
                "pending"
            } else {
                t.status.as_str()
            },
            severity: Some(t.severity.as_str()),
            starts_at: t.starts_at,
            ends_at: t.ends_at,
            value: t.value.clone(),
            labels: t.labels.clone(),
            annotations: t.annotations.clone(),
        }
    }
}

/// What the live stream carries.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEvent {
    Transition(TransitionEvent),
    History(HistoryEntry),
}

impl FeedEvent {
    /// The SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            FeedEvent::Transition(_) => "transition",
            FeedEvent::History(_) => "history",
        }
    }

    /// The SSE `data:` line.
    pub fn json(&self) -> String {
        let text = match self {
            FeedEvent::Transition(t) => serde_json::to_string(t),
            FeedEvent::History(e) => serde_json::to_string(e),
        };
        // Plain structs of strings, numbers and JSON values always serialize.
        text.unwrap_or_default()
    }
}

/// How many events a listener may fall behind before it is dropped.
pub const FEED_BUFFER: usize = 1024;

/// The live stream of committed transitions and history entries. Publishing never
/// waits: a listener that falls [`FEED_BUFFER`] events behind loses its place (and the
/// server closes its stream) instead of slowing down the engine.
#[derive(Debug, Clone)]
pub struct Feed {
    tx: broadcast::Sender<Arc<FeedEvent>>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed::with_capacity(FEED_BUFFER)
    }
}

impl Feed {
    pub fn with_capacity(capacity: usize) -> Feed {
        Feed {
            tx: broadcast::channel(capacity.max(1)).0,
        }
    }

    /// Tells every listener; a feed nobody listens to drops the event.
    pub fn publish(&self, event: FeedEvent) {
        let _ = self.tx.send(Arc::new(event));
    }

    /// True while someone listens: what only the feed reads need not be built otherwise.
    pub fn is_listened(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Publishes every event, in order.
    pub fn publish_all(&self, events: impl IntoIterator<Item = FeedEvent>) {
        for e in events {
            self.publish(e);
        }
    }

    /// A new listener, seeing what is published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FeedEvent>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Conn, conn_tests};

    conn_tests!(
        every_kind_round_trips_with_every_field,
        pages_go_newest_first_and_filter,
        a_cursor_resumes_where_the_page_ended_even_after_inserts,
        pruning_deletes_only_older_entries_in_batches
    );

    fn at(s: i64) -> DateTime<Utc> {
        from_ms(1_767_225_600_000 + s * 1000)
    }

    fn entry(s: i64, fp: &str, rule: &str, tracker: i64, kind: HistoryKind) -> HistoryEntry {
        HistoryEntry {
            at: at(s),
            fingerprint: fp.into(),
            rule: rule.into(),
            tracker_id: Some(tracker),
            kind,
            channel: None,
            notification_id: None,
            by: None,
            comment: None,
            value: None,
            detail: None,
        }
    }

    fn kinds_and_times(page: &HistoryPage) -> Vec<(i64, &'static str)> {
        page.entries
            .iter()
            .map(|e| ((e.at - at(0)).num_seconds(), e.kind.as_str()))
            .collect()
    }

    fn every_kind_round_trips_with_every_field(conn: &Conn) {
        for (i, kind) in HistoryKind::ALL.into_iter().enumerate() {
            assert_eq!(HistoryKind::parse(kind.as_str()), Some(kind));
            let e = HistoryEntry {
                channel: Some("ops".into()),
                notification_id: Some(format!("msg_{i}")),
                by: Some("alice".into()),
                comment: Some("on it".into()),
                value: Some(serde_json::json!({"speed": 97.5})),
                detail: Some("why".into()),
                ..entry(i as i64, "fp1", "speeding", 7, kind)
            };
            append(conn, &e).unwrap();
        }
        let page = page(
            conn,
            &HistoryQuery {
                limit: 100,
                ..HistoryQuery::default()
            },
        )
        .unwrap();
        assert_eq!(page.entries.len(), 13);
        assert_eq!(page.next, None);
        let newest = &page.entries[0];
        assert_eq!(newest.kind, HistoryKind::Escalated);
        assert_eq!(newest.notification_id.as_deref(), Some("msg_12"));
        assert_eq!(newest.value, Some(serde_json::json!({"speed": 97.5})));
        assert_eq!(
            serde_json::to_value(newest).unwrap(),
            serde_json::json!({
                "at": "2026-01-01T00:00:12Z", "fingerprint": "fp1", "rule": "speeding",
                "tracker_id": 7, "kind": "escalated", "channel": "ops",
                "notification_id": "msg_12", "by": "alice", "comment": "on it",
                "value": {"speed": 97.5}, "detail": "why"
            })
        );
    }

    #[test]
    fn a_transitions_entry_and_event_say_what_it_is() {
        let firing = crate::dispatch::testing::firing("fuel_drain", 7);
        let pending = AlertTransition {
            pending: true,
            ..firing.clone()
        };
        let occurrence = AlertTransition {
            occurrence_id: Some("x:1".into()),
            ..firing.clone()
        };
        let resolved = firing.resolved_at(firing.at);
        let kind = |t: &AlertTransition| HistoryEntry::transition(t).kind;
        assert_eq!(kind(&pending), HistoryKind::Pending);
        assert_eq!(kind(&firing), HistoryKind::Firing);
        assert_eq!(kind(&occurrence), HistoryKind::Event);
        assert_eq!(kind(&resolved), HistoryKind::Resolved);
        assert_eq!(
            serde_json::to_value(HistoryEntry::transition(&pending)).unwrap(),
            serde_json::json!({
                "at": "2026-01-01T10:00:00Z", "fingerprint": firing.fingerprint.0,
                "rule": "fuel_drain", "tracker_id": 7, "kind": "pending", "channel": null,
                "notification_id": null, "by": null, "comment": null, "value": 17.2,
                "detail": null
            })
        );
        let event = TransitionEvent::of(&pending);
        assert_eq!(event.status, "pending");
        assert_eq!(
            TransitionEvent {
                status: "firing",
                ..event
            },
            TransitionEvent::of(&firing),
            "a wait reads as its firing will"
        );
    }

    fn pages_go_newest_first_and_filter(conn: &Conn) {
        for s in 0..10 {
            let (fp, rule, tracker) = if s % 2 == 0 {
                ("a", "speeding", 1)
            } else {
                ("b", "offline", 2)
            };
            append(conn, &entry(s, fp, rule, tracker, HistoryKind::Firing)).unwrap();
        }
        let q = |f: &dyn Fn(&mut HistoryQuery)| {
            let mut q = HistoryQuery {
                limit: 100,
                ..HistoryQuery::default()
            };
            f(&mut q);
            page(conn, &q).unwrap()
        };
        let times = |p: HistoryPage| {
            kinds_and_times(&p)
                .into_iter()
                .map(|(t, _)| t)
                .collect::<Vec<_>>()
        };
        assert_eq!(times(q(&|_| {})), vec![9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
        assert_eq!(
            times(q(&|q| q.rule = Some("offline".into()))),
            vec![9, 7, 5, 3, 1]
        );
        assert_eq!(times(q(&|q| q.tracker_id = Some(1))), vec![8, 6, 4, 2, 0]);
        assert_eq!(
            times(q(&|q| q.fingerprint = Some("a".into()))),
            vec![8, 6, 4, 2, 0]
        );
        assert_eq!(
            times(q(&|q| {
                q.since = Some(at(3));
                q.until = Some(at(6));
            })),
            vec![5, 4, 3]
        );
        assert!(q(&|q| q.rule = Some("nope".into())).entries.is_empty());
    }

    fn a_cursor_resumes_where_the_page_ended_even_after_inserts(conn: &Conn) {
        for s in 0..5 {
            append(conn, &entry(s, "a", "r", 1, HistoryKind::Queued)).unwrap();
        }
        let first = page(
            conn,
            &HistoryQuery {
                limit: 2,
                ..HistoryQuery::default()
            },
        )
        .unwrap();
        assert_eq!(kinds_and_times(&first), vec![(4, "queued"), (3, "queued")]);
        let cursor = first.next.unwrap();
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));

        // Newer entries arrive between the pages: they do not shift the next page.
        for s in 5..8 {
            append(conn, &entry(s, "a", "r", 1, HistoryKind::Sent)).unwrap();
        }
        let next = |cursor| {
            page(
                conn,
                &HistoryQuery {
                    limit: 2,
                    cursor: Some(cursor),
                    ..HistoryQuery::default()
                },
            )
            .unwrap()
        };
        let second = next(cursor);
        assert_eq!(kinds_and_times(&second), vec![(2, "queued"), (1, "queued")]);
        let third = next(second.next.unwrap());
        assert_eq!(kinds_and_times(&third), vec![(0, "queued")]);
        assert_eq!(third.next, None, "the last page has no cursor");

        // A page that ends exactly at the last entry says so too.
        let exact = page(
            conn,
            &HistoryQuery {
                limit: 8,
                ..HistoryQuery::default()
            },
        )
        .unwrap();
        assert_eq!(exact.entries.len(), 8);
        assert_eq!(exact.next, None);
    }

    #[test]
    fn cursors_that_were_not_given_out_are_refused() {
        for bad in ["", "h", "x12", "h-1", "h0", "hzz", "h12345678901234567"] {
            assert_eq!(Cursor::decode(bad), None, "{bad:?}");
        }
    }

    fn pruning_deletes_only_older_entries_in_batches(conn: &Conn) {
        for s in 0..10 {
            append(conn, &entry(s, "a", "r", 1, HistoryKind::Firing)).unwrap();
        }
        assert_eq!(prune_history(conn, at(7), 3).unwrap(), 3);
        assert_eq!(prune_history(conn, at(7), 3).unwrap(), 3);
        assert_eq!(prune_history(conn, at(7), 3).unwrap(), 1);
        assert_eq!(prune_history(conn, at(7), 3).unwrap(), 0);
        let left = page(
            conn,
            &HistoryQuery {
                limit: 100,
                ..HistoryQuery::default()
            },
        )
        .unwrap();
        assert_eq!(
            kinds_and_times(&left),
            vec![(9, "firing"), (8, "firing"), (7, "firing")]
        );
    }

    #[tokio::test]
    async fn the_store_prunes_batch_by_batch_and_publishes_what_it_appends() {
        let store = crate::store::Store::open_in_memory().unwrap();
        let mut rx = store.feed().subscribe();
        let entries: Vec<HistoryEntry> = (0..20)
            .map(|s| entry(s, "a", "r", 1, HistoryKind::Acknowledged))
            .collect();
        store.append_history(entries.clone()).await.unwrap();
        for e in &entries {
            let got = rx.recv().await.unwrap();
            assert_eq!(*got, FeedEvent::History(e.clone()));
        }
        assert_eq!(store.prune_history(at(15), 4).await.unwrap(), 15);
        let left = store
            .history(HistoryQuery {
                limit: 100,
                ..HistoryQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(left.entries.len(), 5);
        assert_eq!(left.entries.last().map(|e| e.at), Some(at(15)));
    }

    #[tokio::test]
    async fn a_listener_that_falls_behind_loses_its_place() {
        let feed = Feed::with_capacity(2);
        let mut rx = feed.subscribe();
        for s in 0..3 {
            feed.publish(FeedEvent::History(entry(s, "a", "r", 1, HistoryKind::Sent)));
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(1))
        ));
    }
}
