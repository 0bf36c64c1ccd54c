//! The notification log: what happened to each transition on each channel. Operators read
//! it to answer "why did nobody get paged?": silenced, unrouted, held as flapping, or
//! queued in notification `msg_...`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Conn, StoreError, from_ms, params, to_ms};

/// What the dispatcher did with an alert on one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Put into a notification in the outbox (`notification_id` says which).
    Queued,
    /// No route matched and the rule names no channels: recorded, not sent.
    Unrouted,
    /// An active silence matched (`detail` names it): recorded, not sent.
    Silenced,
    /// Resolved and fired again before the resolve was sent: the receiver still believes
    /// it is firing, so nothing is sent (flap damping).
    Coalesced,
    /// Notified too often within the hour: held until the cap frees (flap damping).
    Held,
    /// Nothing to tell this channel (`detail` says why: resolved before it was ever
    /// notified, `send_resolved: false`, an unknown channel).
    Dropped,
    /// A firing alert of an inhibit rule's source side holds it back (`detail` names
    /// it): recorded, not sent.
    Inhibited,
    /// A route's time interval mutes its channel (`detail` names it): recorded, sent
    /// when the mute ends.
    Muted,
    /// Acknowledged through the API or an ack link (`detail`: by whom, and the comment).
    Acknowledged,
    /// An acknowledgement undone.
    Unacknowledged,
    /// An escalation step added the channel (`detail` names the step).
    Escalated,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Queued => "queued",
            Outcome::Unrouted => "unrouted",
            Outcome::Silenced => "silenced",
            Outcome::Coalesced => "coalesced",
            Outcome::Held => "held",
            Outcome::Dropped => "dropped",
            Outcome::Inhibited => "inhibited",
            Outcome::Muted => "muted",
            Outcome::Acknowledged => "acknowledged",
            Outcome::Unacknowledged => "unacknowledged",
            Outcome::Escalated => "escalated",
        }
    }

    fn parse(s: &str) -> Outcome {
        match s {
            "queued" => Outcome::Queued,
            "unrouted" => Outcome::Unrouted,
            "silenced" => Outcome::Silenced,
            "coalesced" => Outcome::Coalesced,
            "held" => Outcome::Held,
            "inhibited" => Outcome::Inhibited,
            "muted" => Outcome::Muted,
            "acknowledged" => Outcome::Acknowledged,
            "unacknowledged" => Outcome::Unacknowledged,
            "escalated" => Outcome::Escalated,
            _ => Outcome::Dropped,
        }
    }
}

/// One line of the notification log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogEntry {
    pub at: DateTime<Utc>,
    pub fingerprint: String,
    pub rule: String,
    pub tracker_id: Option<i64>,
    /// `firing` or `resolved`: the alert's status at the time.
    pub status: String,
    /// `None` when no channel was involved (unrouted).
    pub channel: Option<String>,
    pub outcome: Outcome,
    pub notification_id: Option<String>,
    pub detail: Option<String>,
}

pub fn insert_log(conn: &Conn, e: &LogEntry) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO notification_log
             (at, fingerprint, rule, tracker_id, status, channel, outcome, notification_id, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            to_ms(e.at),
            e.fingerprint,
            e.rule,
            e.tracker_id,
            e.status,
            e.channel,
            e.outcome.as_str(),
            e.notification_id,
            e.detail,
        ],
    )?;
    Ok(())
}

/// The newest `limit` entries, newest first.
pub fn recent_log(conn: &Conn, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
    conn.query_map(
        "SELECT at, fingerprint, rule, tracker_id, status, channel, outcome, notification_id, detail
         FROM notification_log ORDER BY seq DESC LIMIT ?1",
        params![i64::try_from(limit).unwrap_or(i64::MAX)],
        |row| {
            Ok(LogEntry {
                at: from_ms(row.get(0)?),
                fingerprint: row.get(1)?,
                rule: row.get(2)?,
                tracker_id: row.get(3)?,
                status: row.get(4)?,
                channel: row.get(5)?,
                outcome: Outcome::parse(&row.get::<String>(6)?),
                notification_id: row.get(7)?,
                detail: row.get(8)?,
            })
        },
    )
}

/// Deletes entries older than `before`; returns how many.
pub fn prune_log(conn: &Conn, before: DateTime<Utc>) -> Result<usize, StoreError> {
    conn.execute(
        "DELETE FROM notification_log WHERE at < ?1",
        params![to_ms(before)],
    )
}
