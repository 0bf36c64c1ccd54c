//! Acknowledgements: one row per acknowledged firing alert, kept until the alert
//! resolves, and the key that signs ack links (in `meta`, made at first use).
//!
//! An ack is in force from when it is made until its `expires_at` (if any); the row stays
//! until the resolve so that `announced` (the `send_acks` channels were told) survives a
//! crash. What an ack means for delivery is [`crate::dispatch::ack`]'s.

use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};

use super::history::{self, FeedEvent, HistoryEntry, HistoryKind};
use super::{
    Conn, Durability, LogEntry, Outcome, Row, Store, StoreError, from_ms, insert_log, params, to_ms,
};
use crate::alert::{Ack, AlertTransition, Fingerprint};

/// The length of the ack link key, in bytes.
const KEY_BYTES: usize = 32;

/// An acknowledgement as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAck {
    pub fingerprint: Fingerprint,
    /// When the firing it acknowledges started.
    pub starts_at: DateTime<Utc>,
    pub ack: Ack,
    pub expires_at: Option<DateTime<Utc>>,
}

impl StoredAck {
    /// In force at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|end| now < end)
    }
}

/// Why an ack or its undoing was refused.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    #[error("no firing alert with fingerprint `{0}`")]
    NotFiring(String),
    #[error("alert `{0}` is not acknowledged")]
    NotAcked(String),
    #[error("expires_at: {0} is not after now")]
    ExpiresInPast(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Records (or replaces) the ack of a firing alert, not yet announced.
pub fn put_ack(conn: &Conn, a: &StoredAck) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO acks
             (fingerprint, starts_at, \"by\", comment, at, expires_at, announced)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)
         ON CONFLICT (fingerprint) DO UPDATE SET
             starts_at = excluded.starts_at, \"by\" = excluded.\"by\",
             comment = excluded.comment, at = excluded.at, expires_at = excluded.expires_at,
             announced = 0",
        params![
            a.fingerprint.0,
            to_ms(a.starts_at),
            a.ack.by,
            a.ack.comment,
            to_ms(a.ack.at),
            a.expires_at.map(to_ms),
        ],
    )?;
    Ok(())
}

/// Forgets the ack of an alert (undone, or the alert resolved); false if there was none.
pub fn delete_ack(conn: &Conn, fingerprint: &Fingerprint) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "DELETE FROM acks WHERE fingerprint = ?1",
        params![fingerprint.0],
    )? > 0)
}

fn row_to_ack(row: &Row<'_>) -> Result<StoredAck, StoreError> {
    Ok(StoredAck {
        fingerprint: Fingerprint(row.get(0)?),
        starts_at: from_ms(row.get(1)?),
        ack: Ack {
            by: row.get(2)?,
            comment: row.get(3)?,
            at: from_ms(row.get(4)?),
        },
        expires_at: row.get::<Option<i64>>(5)?.map(from_ms),
    })
}

const COLUMNS: &str = "fingerprint, starts_at, \"by\", comment, at, expires_at";

/// The ack of an alert, in force or expired.
pub fn load_ack(conn: &Conn, fingerprint: &Fingerprint) -> Result<Option<StoredAck>, StoreError> {
    conn.query_opt(
        &format!("SELECT {COLUMNS} FROM acks WHERE fingerprint = ?1"),
        params![fingerprint.0],
        row_to_ack,
    )
}

/// The ack of an alert in force at `now`.
pub fn active_ack(
    conn: &Conn,
    fingerprint: &Fingerprint,
    now: DateTime<Utc>,
) -> Result<Option<Ack>, StoreError> {
    Ok(load_ack(conn, fingerprint)?
        .filter(|a| a.is_active(now))
        .map(|a| a.ack))
}

/// Every ack in force at `now`, by fingerprint.
pub fn active_acks(
    conn: &Conn,
    now: DateTime<Utc>,
) -> Result<std::collections::HashMap<String, Ack>, StoreError> {
    let all = conn.query_map(
        &format!("SELECT {COLUMNS} FROM acks"),
        params![],
        row_to_ack,
    )?;
    Ok(all
        .into_iter()
        .filter(|a| a.is_active(now))
        .map(|a| (a.fingerprint.0, a.ack))
        .collect())
}

/// Acks whose `send_acks` channels have not been told yet, oldest first.
pub fn unannounced_acks(conn: &Conn) -> Result<Vec<StoredAck>, StoreError> {
    conn.query_map(
        &format!("SELECT {COLUMNS} FROM acks WHERE announced = 0 ORDER BY at, fingerprint"),
        params![],
        row_to_ack,
    )
}

/// Notes that the `send_acks` channels were told of this ack.
pub fn mark_announced(conn: &Conn, fingerprint: &Fingerprint) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE acks SET announced = 1 WHERE fingerprint = ?1",
        params![fingerprint.0],
    )?;
    Ok(())
}

/// The key that signs ack links, made (from the OS's random source) and kept in `meta`
/// the first time it is asked for, so links stay valid across restarts.
pub fn ack_key(conn: &Conn) -> Result<Vec<u8>, StoreError> {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let stored: Option<String> = conn.query_opt(
        "SELECT value FROM meta WHERE key = 'ack_link_key'",
        params![],
        |row| row.get(0),
    )?;
    if let Some(key) = stored.and_then(|k| engine.decode(k).ok())
        && key.len() == KEY_BYTES
    {
        return Ok(key);
    }
    let mut key = Vec::with_capacity(KEY_BYTES);
    while key.len() < KEY_BYTES {
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    key.truncate(KEY_BYTES);
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('ack_link_key', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![engine.encode(&key)],
    )?;
    Ok(key)
}

fn log_entry(
    t: &AlertTransition,
    now: DateTime<Utc>,
    outcome: Outcome,
    detail: String,
) -> LogEntry {
    LogEntry {
        at: now,
        fingerprint: t.fingerprint.0.clone(),
        rule: t.rule.to_string(),
        tracker_id: t.tracker.as_ref().map(|tr| tr.id),
        status: t.status.as_str().to_owned(),
        channel: None,
        outcome,
        notification_id: None,
        detail: Some(detail),
    }
}

impl Store {
    /// Acknowledges the firing alert `fingerprint` (replacing an earlier ack of it) and
    /// wakes the dispatcher to tell the `send_acks` channels. `expires_at` must be after
    /// `now`. Returns the alert as it fires and the ack.
    pub async fn acknowledge(
        &self,
        fingerprint: Fingerprint,
        ack: Ack,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(AlertTransition, StoredAck), AckError> {
        if let Some(end) = expires_at.filter(|end| *end <= now) {
            return Err(AckError::ExpiresInPast(crate::rfc3339::format(end)));
        }
        let fp = fingerprint.0.clone();
        let feed = self.feed().clone();
        let result = self
            .call(move |db| {
                let tx = db.write(Durability::Full)?;
                let Some(alert) = super::load_live_alert(&tx, &fingerprint)? else {
                    return Ok(None);
                };
                let stored = StoredAck {
                    fingerprint,
                    starts_at: alert.starts_at,
                    ack,
                    expires_at,
                };
                put_ack(&tx, &stored)?;
                let detail = match stored.ack.comment.as_str() {
                    "" => format!("by {}", stored.ack.by),
                    comment => format!("by {}: {comment}", stored.ack.by),
                };
                insert_log(&tx, &log_entry(&alert, now, Outcome::Acknowledged, detail))?;
                let entry = HistoryEntry {
                    by: Some(stored.ack.by.clone()),
                    comment: Some(stored.ack.comment.clone()).filter(|c| !c.is_empty()),
                    ..HistoryEntry::about(&alert, HistoryKind::Acknowledged, now)
                };
                history::append(&tx, &entry)?;
                tx.commit()?;
                feed.publish(FeedEvent::History(entry));
                Ok(Some((alert, stored)))
            })
            .await?;
        let Some(done) = result else {
            return Err(AckError::NotFiring(fp));
        };
        self.ack_generation.fetch_add(1, Ordering::AcqRel);
        self.acks_changed.notify_one();
        Ok(done)
    }

    /// Undoes the ack in force of the firing alert `fingerprint`.
    pub async fn unacknowledge(
        &self,
        fingerprint: Fingerprint,
        by: String,
        now: DateTime<Utc>,
    ) -> Result<AlertTransition, AckError> {
        let fp = fingerprint.0.clone();
        let feed = self.feed().clone();
        let result = self
            .call(move |db| {
                let tx = db.write(Durability::Full)?;
                let Some(alert) = super::load_live_alert(&tx, &fingerprint)? else {
                    return Ok(Err(AckError::NotFiring(fingerprint.0)));
                };
                let active = load_ack(&tx, &fingerprint)?.is_some_and(|a| a.is_active(now));
                if !active {
                    return Ok(Err(AckError::NotAcked(fingerprint.0)));
                }
                delete_ack(&tx, &fingerprint)?;
                let detail = format!("by {by}");
                insert_log(
                    &tx,
                    &log_entry(&alert, now, Outcome::Unacknowledged, detail),
                )?;
                let entry = HistoryEntry {
                    by: Some(by),
                    ..HistoryEntry::about(&alert, HistoryKind::Unacknowledged, now)
                };
                history::append(&tx, &entry)?;
                tx.commit()?;
                feed.publish(FeedEvent::History(entry));
                Ok(Ok(alert))
            })
            .await?;
        let alert = result.map_err(|e| match e {
            AckError::NotFiring(_) => AckError::NotFiring(fp.clone()),
            other => other,
        })?;
        self.ack_generation.fetch_add(1, Ordering::AcqRel);
        self.acks_changed.notify_one();
        Ok(alert)
    }

    /// The ack of a firing alert, in force or not (`None` if it is not firing or not
    /// acknowledged), with the alert.
    pub async fn load_ack(
        &self,
        fingerprint: Fingerprint,
    ) -> Result<Option<(AlertTransition, Option<StoredAck>)>, StoreError> {
        self.call(move |db| {
            let Some(alert) = super::load_live_alert(db.conn(), &fingerprint)? else {
                return Ok(None);
            };
            Ok(Some((alert, load_ack(db.conn(), &fingerprint)?)))
        })
        .await
    }

    /// Every ack in force at `now`, by fingerprint (for listings).
    pub async fn list_active_acks(
        &self,
        now: DateTime<Utc>,
    ) -> Result<std::collections::HashMap<String, Ack>, StoreError> {
        self.call(move |db| active_acks(db.conn(), now)).await
    }

    /// The ack link key (see [`ack_key`]).
    pub async fn ack_key(&self) -> Result<Vec<u8>, StoreError> {
        self.call(|db| {
            let tx = db.write(Durability::Full)?;
            let key = ack_key(&tx)?;
            tx.commit()?;
            Ok(key)
        })
        .await
    }

    /// Changes whenever an ack is made or undone.
    pub fn ack_generation(&self) -> u64 {
        self.ack_generation.load(Ordering::Acquire)
    }

    /// Notified whenever an ack is made or undone.
    pub fn acks_changed(&self) -> &tokio::sync::Notify {
        &self.acks_changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Conn, conn_tests};

    conn_tests!(
        an_ack_is_in_force_until_it_expires_and_announced_once,
        the_link_key_is_made_once_and_kept
    );
    use chrono::TimeZone;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_767_261_600 + s, 0).unwrap()
    }

    fn an_ack_is_in_force_until_it_expires_and_announced_once(conn: &Conn) {
        let fp = Fingerprint("00aa".into());
        let stored = StoredAck {
            fingerprint: fp.clone(),
            starts_at: at(0),
            ack: Ack {
                by: "ana".into(),
                at: at(10),
                comment: "on it".into(),
            },
            expires_at: Some(at(100)),
        };
        put_ack(conn, &stored).unwrap();
        assert_eq!(
            active_ack(conn, &fp, at(99)).unwrap(),
            Some(stored.ack.clone())
        );
        assert_eq!(active_ack(conn, &fp, at(100)).unwrap(), None);
        assert_eq!(
            unannounced_acks(conn).unwrap(),
            std::slice::from_ref(&stored)
        );
        mark_announced(conn, &fp).unwrap();
        assert!(unannounced_acks(conn).unwrap().is_empty());
        assert!(delete_ack(conn, &fp).unwrap());
        assert!(!delete_ack(conn, &fp).unwrap());
    }

    fn the_link_key_is_made_once_and_kept(conn: &Conn) {
        let key = ack_key(conn).unwrap();
        assert_eq!(key.len(), KEY_BYTES);
        assert_eq!(ack_key(conn).unwrap(), key);
    }
}
