//! Live alert states: one row per firing alert, written in the same transaction that
//! records the transition, so that after a restart the rule evaluator neither fires an
//! alert again nor forgets one that still has to resolve; and the pending alerts a
//! stopping daemon leaves for the next start.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreError, from_json, from_ms, to_json, to_ms};
use crate::alert::{AlertRecord, AlertStatus, AlertTransition, Fingerprint, PendingAlert};

/// Records a firing alert (or refreshes it with its newest transition).
pub fn upsert_live_alert(
    conn: &Connection,
    t: &AlertTransition,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let last = to_json("an alert transition", t)?;
    conn.prepare_cached(
        "INSERT INTO live_alerts
             (fingerprint, rule, tracker_id, alert_key, status, starts_at, updated_at, last)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (fingerprint) DO UPDATE SET
             rule = excluded.rule, tracker_id = excluded.tracker_id,
             alert_key = excluded.alert_key, status = excluded.status,
             starts_at = excluded.starts_at, updated_at = excluded.updated_at,
             last = excluded.last",
    )?
    .execute(params![
        t.fingerprint.0,
        &*t.rule,
        t.tracker.as_ref().map(|tr| tr.id),
        t.key,
        t.status.as_str(),
        to_ms(t.starts_at),
        to_ms(now),
        last,
    ])?;
    Ok(())
}

/// Forgets a resolved alert.
pub fn delete_live_alert(conn: &Connection, fingerprint: &Fingerprint) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM live_alerts WHERE fingerprint = ?1")?
        .execute(params![fingerprint.0])?;
    Ok(())
}

/// The live alert with this fingerprint, if it is firing.
pub fn load_live_alert(
    conn: &Connection,
    fingerprint: &Fingerprint,
) -> Result<Option<AlertTransition>, StoreError> {
    let last: Option<String> = conn
        .prepare_cached("SELECT last FROM live_alerts WHERE fingerprint = ?1")?
        .query_row(params![fingerprint.0], |row| row.get(0))
        .optional()?;
    last.map(|last| from_json("a live alert", &last))
        .transpose()
}

/// Every live alert, oldest first.
pub fn load_live_alerts(conn: &Connection) -> Result<Vec<AlertRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT fingerprint, rule, tracker_id, alert_key, status, starts_at, last
         FROM live_alerts ORDER BY starts_at, fingerprint",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, Option<i64>>(2)?,
            row.get::<_, Option<String>>(3)?,
            row.get::<_, String>(4)?,
            row.get::<_, i64>(5)?,
            row.get::<_, String>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (fingerprint, rule, tracker_id, key, status, starts_at, last) = row?;
        let last: AlertTransition = from_json("a live alert", &last)?;
        out.push(AlertRecord {
            fingerprint: Fingerprint(fingerprint),
            rule,
            tracker_id,
            key,
            status: if status == "resolved" {
                AlertStatus::Resolved
            } else {
                AlertStatus::Firing
            },
            starts_at: from_ms(starts_at),
            last,
        });
    }
    Ok(out)
}

/// Replaces the kept pending alerts with `pending` (a stopping daemon's).
pub fn save_pending_alerts(conn: &Connection, pending: &[PendingAlert]) -> Result<(), StoreError> {
    conn.execute("DELETE FROM pending_alerts", [])?;
    let mut insert = conn.prepare_cached(
        "INSERT OR REPLACE INTO pending_alerts (fingerprint, rule, tracker_id, alert_key, since)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for p in pending {
        insert.execute(params![
            p.fingerprint.0,
            p.rule,
            p.tracker_id,
            p.key,
            to_ms(p.since)
        ])?;
    }
    Ok(())
}

/// Takes the kept pending alerts out: once read they are gone, so that a start that
/// ends without saving its own (`kill -9`) does not leave old ones to the next.
pub fn take_pending_alerts(conn: &Connection) -> Result<Vec<PendingAlert>, StoreError> {
    let mut out = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT fingerprint, rule, tracker_id, alert_key, since
             FROM pending_alerts ORDER BY since, fingerprint",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok(PendingAlert {
                fingerprint: Fingerprint(row.get(0)?),
                rule: row.get(1)?,
                tracker_id: row.get(2)?,
                key: row.get(3)?,
                since: from_ms(row.get(4)?),
            })
        })?;
        for row in rows {
            out.push(row?);
        }
    }
    conn.execute("DELETE FROM pending_alerts", [])?;
    Ok(out)
}
