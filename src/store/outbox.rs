//! The outbox: every notification from the moment it is decided until its channel accepts
//! it. A row is written in the same transaction that changes the group state behind it, so
//! a notification can be neither lost nor invented by a crash; its `id` is what receivers
//! dedupe on, and it never changes across retries or restarts.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Conn, Row, StoreError, from_ms, params, to_ms};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// Waiting for its (next) attempt.
    Pending,
    /// Accepted by the channel.
    Sent,
    /// A permanent error, or retried for `notify.retry_for` in vain: kept for inspection.
    Failed,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> OutboxStatus {
        match s {
            "sent" => OutboxStatus::Sent,
            "failed" => OutboxStatus::Failed,
            _ => OutboxStatus::Pending,
        }
    }
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxEntry {
    /// Insertion order: each channel delivers in this order.
    pub seq: i64,
    /// The notification id (`msg_...`), the same on every attempt.
    pub id: String,
    pub channel: String,
    pub group_key: String,
    pub created_at: DateTime<Utc>,
    pub status: OutboxStatus,
    /// Attempts made so far.
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    /// When it was sent or given up.
    pub finished_at: Option<DateTime<Utc>>,
    /// The notification itself (`dispatch::Notification` as JSON); serialized as nested
    /// JSON, not as a string, for the admin API.
    #[serde(serialize_with = "nested_json")]
    pub payload: String,
}

fn nested_json<S: serde::Serializer>(payload: &str, ser: S) -> Result<S::Ok, S::Error> {
    match serde_json::value::RawValue::from_string(payload.to_owned()) {
        Ok(raw) => serde::Serialize::serialize(&raw, ser),
        Err(_) => ser.serialize_str(payload),
    }
}

const COLUMNS: &str = "seq, id, channel, group_key, created_at, status, attempts, \
                       next_attempt_at, last_error, finished_at, payload";

fn entry(row: &Row<'_>) -> Result<OutboxEntry, StoreError> {
    Ok(OutboxEntry {
        seq: row.get(0)?,
        id: row.get(1)?,
        channel: row.get(2)?,
        group_key: row.get(3)?,
        created_at: from_ms(row.get(4)?),
        status: OutboxStatus::parse(&row.get::<String>(5)?),
        attempts: row.get(6)?,
        next_attempt_at: from_ms(row.get(7)?),
        last_error: row.get(8)?,
        finished_at: row.get::<Option<i64>>(9)?.map(from_ms),
        payload: row.get(10)?,
    })
}

/// Adds a pending notification, due at `created_at`; returns its `seq`.
pub fn insert_outbox(
    conn: &Conn,
    id: &str,
    channel: &str,
    group_key: &str,
    created_at: DateTime<Utc>,
    payload: &str,
) -> Result<i64, StoreError> {
    conn.query_one(
        "INSERT INTO outbox (id, channel, group_key, created_at, payload, status, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?4)
         RETURNING seq",
        params![id, channel, group_key, to_ms(created_at), payload],
        |row| row.get(0),
    )
}

pub fn mark_sent(
    conn: &Conn,
    id: &str,
    attempts: u32,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE outbox SET status = 'sent', attempts = ?2, finished_at = ?3, last_error = NULL
         WHERE id = ?1",
        params![id, attempts, to_ms(at)],
    )?;
    Ok(())
}

pub fn mark_retry(
    conn: &Conn,
    id: &str,
    attempts: u32,
    next_attempt_at: DateTime<Utc>,
    error: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE outbox SET attempts = ?2, next_attempt_at = ?3, last_error = ?4 WHERE id = ?1",
        params![id, attempts, to_ms(next_attempt_at), error],
    )?;
    Ok(())
}

pub fn mark_failed(
    conn: &Conn,
    id: &str,
    attempts: u32,
    at: DateTime<Utc>,
    error: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE outbox SET status = 'failed', attempts = ?2, finished_at = ?3, last_error = ?4
         WHERE id = ?1",
        params![id, attempts, to_ms(at), error],
    )?;
    Ok(())
}

/// One row by notification id, whatever its status.
pub fn outbox_entry(conn: &Conn, id: &str) -> Result<Option<OutboxEntry>, StoreError> {
    conn.query_opt(
        &format!("SELECT {COLUMNS} FROM outbox WHERE id = ?1"),
        params![id],
        entry,
    )
}

/// Puts a failed row back to pending, due at `at` (an operator's "retry now"); its id,
/// attempts and last error stay. Returns the row as it is now, or `None` when it was
/// not failed (sent meanwhile, or retried already): only one caller gets it back.
pub fn requeue_failed(
    conn: &Conn,
    id: &str,
    at: DateTime<Utc>,
) -> Result<Option<OutboxEntry>, StoreError> {
    let changed = conn.execute(
        "UPDATE outbox SET status = 'pending', next_attempt_at = ?2, finished_at = NULL
         WHERE id = ?1 AND status = 'failed'",
        params![id, to_ms(at)],
    )?;
    if changed == 0 {
        return Ok(None);
    }
    outbox_entry(conn, id)
}

/// The ids of a channel's failed rows, oldest first.
pub fn failed_ids(conn: &Conn, channel: &str) -> Result<Vec<String>, StoreError> {
    conn.query_map(
        "SELECT id FROM outbox WHERE status = 'failed' AND channel = ?1 ORDER BY seq",
        params![channel],
        |row| row.get(0),
    )
}

/// Every pending notification, in delivery order.
pub fn load_pending(conn: &Conn) -> Result<Vec<OutboxEntry>, StoreError> {
    load_pending_after(conn, 0)
}

/// The pending rows whose `seq` is above `seq`, in order.
pub fn load_pending_after(conn: &Conn, seq: i64) -> Result<Vec<OutboxEntry>, StoreError> {
    conn.query_map(
        &format!("SELECT {COLUMNS} FROM outbox WHERE status = 'pending' AND seq > ?1 ORDER BY seq"),
        params![seq],
        entry,
    )
}

pub fn count_pending(conn: &Conn) -> Result<u64, StoreError> {
    let n: i64 = conn.query_one(
        "SELECT count(*) FROM outbox WHERE status = 'pending'",
        params![],
        |row| row.get(0),
    )?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The newest `limit` rows with the given status (any when `None`), newest first.
pub fn list_outbox(
    conn: &Conn,
    status: Option<OutboxStatus>,
    limit: usize,
) -> Result<Vec<OutboxEntry>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    match status {
        Some(status) => conn.query_map(
            &format!("SELECT {COLUMNS} FROM outbox WHERE status = ?1 ORDER BY seq DESC LIMIT ?2"),
            params![status.as_str(), limit],
            entry,
        ),
        None => conn.query_map(
            &format!("SELECT {COLUMNS} FROM outbox ORDER BY seq DESC LIMIT ?1"),
            params![limit],
            entry,
        ),
    }
}

/// Deletes sent rows finished before `before` (failed rows stay until an operator looks).
pub fn prune_outbox(conn: &Conn, before: DateTime<Utc>) -> Result<usize, StoreError> {
    conn.execute(
        "DELETE FROM outbox WHERE status = 'sent' AND finished_at < ?1",
        params![to_ms(before)],
    )
}
