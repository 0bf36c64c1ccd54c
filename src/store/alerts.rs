//! Live alert states: one row per firing alert, written in the same transaction that
//! records the transition, so that after a restart the rule evaluator neither fires an
//! alert again nor forgets one that still has to resolve; and the pending alerts a
//! stopping daemon leaves for the next start.

use chrono::{DateTime, Utc};

use std::sync::Arc;

use super::sql::{InsertRows, insert_rows};
use super::{Conn, StoreError, ToValue, Value, from_json, from_ms, params, to_json, to_ms};
use crate::alert::{AlertRecord, AlertStatus, AlertTransition, Fingerprint, PendingAlert};

/// Records a firing alert (or refreshes it with its newest transition).
pub fn upsert_live_alert(
    conn: &Conn,
    t: &AlertTransition,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let last = to_json("an alert transition", t)?;
    upsert_live_alerts(conn, &[LiveAlertRow::new(t, last, now)])
}

/// A live alert row to write: what [`upsert_live_alert`] writes of a transition, owned, so
/// that rows can wait for the end of a batch ([`upsert_live_alerts`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveAlertRow {
    pub fingerprint: String,
    pub rule: Arc<str>,
    pub tracker_id: Option<i64>,
    pub key: Option<String>,
    pub status: &'static str,
    pub starts_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The transition as JSON.
    pub last: String,
}

impl LiveAlertRow {
    /// The row of `t` at `now`, `last` being `t` as JSON.
    pub fn new(t: &AlertTransition, last: String, now: DateTime<Utc>) -> LiveAlertRow {
        LiveAlertRow {
            fingerprint: t.fingerprint.0.clone(),
            rule: t.rule.clone(),
            tracker_id: t.tracker.as_ref().map(|tr| tr.id),
            key: t.key.clone(),
            status: t.status.as_str(),
            starts_at: t.starts_at,
            updated_at: now,
            last,
        }
    }
}

/// Records firing alerts (or refreshes them), every fingerprint once.
pub fn upsert_live_alerts(conn: &Conn, rows: &[LiveAlertRow]) -> Result<(), StoreError> {
    static LIVE_ALERTS: InsertRows = InsertRows::new(
        "INSERT INTO live_alerts
             (fingerprint, rule, tracker_id, alert_key, status, starts_at, updated_at, last)",
        "ON CONFLICT (fingerprint) DO UPDATE SET
             rule = excluded.rule, tracker_id = excluded.tracker_id,
             alert_key = excluded.alert_key, status = excluded.status,
             starts_at = excluded.starts_at, updated_at = excluded.updated_at,
             last = excluded.last",
        8,
    );
    insert_rows(conn, &LIVE_ALERTS, rows, |r, out| {
        out.extend([
            Value::Text(&r.fingerprint),
            Value::Text(&r.rule),
            r.tracker_id.map_or(Value::Null, Value::Integer),
            r.key.to_value(),
            Value::Text(r.status),
            Value::Integer(to_ms(r.starts_at)),
            Value::Integer(to_ms(r.updated_at)),
            Value::Text(&r.last),
        ]);
    })
}

/// Forgets a resolved alert.
pub fn delete_live_alert(conn: &Conn, fingerprint: &Fingerprint) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM live_alerts WHERE fingerprint = ?1",
        params![fingerprint.0],
    )?;
    Ok(())
}

/// The live alert with this fingerprint, if it is firing.
pub fn load_live_alert(
    conn: &Conn,
    fingerprint: &Fingerprint,
) -> Result<Option<AlertTransition>, StoreError> {
    let last: Option<String> = conn.query_opt(
        "SELECT last FROM live_alerts WHERE fingerprint = ?1",
        params![fingerprint.0],
        |row| row.get(0),
    )?;
    last.map(|last| from_json("a live alert", &last))
        .transpose()
}

/// Every live alert, oldest first.
pub fn load_live_alerts(conn: &Conn) -> Result<Vec<AlertRecord>, StoreError> {
    conn.query_map(
        "SELECT fingerprint, rule, tracker_id, alert_key, status, starts_at, last
         FROM live_alerts ORDER BY starts_at, fingerprint",
        params![],
        |row| {
            let status: String = row.get(4)?;
            let last: AlertTransition = from_json("a live alert", &row.get::<String>(6)?)?;
            Ok(AlertRecord {
                fingerprint: Fingerprint(row.get(0)?),
                rule: row.get(1)?,
                tracker_id: row.get(2)?,
                key: row.get(3)?,
                status: if status == "resolved" {
                    AlertStatus::Resolved
                } else {
                    AlertStatus::Firing
                },
                starts_at: from_ms(row.get(5)?),
                last,
            })
        },
    )
}

/// Replaces the kept pending alerts with `pending` (a stopping daemon's).
pub fn save_pending_alerts(conn: &Conn, pending: &[PendingAlert]) -> Result<(), StoreError> {
    conn.execute("DELETE FROM pending_alerts", params![])?;
    insert_pending_alerts(conn, pending)
}

fn insert_pending_alerts(conn: &Conn, pending: &[PendingAlert]) -> Result<(), StoreError> {
    for p in pending {
        conn.execute(
            "INSERT INTO pending_alerts (fingerprint, rule, tracker_id, alert_key, since)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (fingerprint) DO UPDATE SET
                 rule = excluded.rule, tracker_id = excluded.tracker_id,
                 alert_key = excluded.alert_key, since = excluded.since",
            params![p.fingerprint.0, p.rule, p.tracker_id, p.key, to_ms(p.since)],
        )?;
    }
    Ok(())
}

/// Takes the kept pending alerts out: once read they are gone, so that a start that
/// ends without saving its own (`kill -9`) does not leave old ones to the next.
pub fn take_pending_alerts(conn: &Conn) -> Result<Vec<PendingAlert>, StoreError> {
    let out = kept_pending_alerts(conn)?;
    conn.execute("DELETE FROM pending_alerts", params![])?;
    Ok(out)
}

/// Every kept pending alert, oldest first.
fn kept_pending_alerts(conn: &Conn) -> Result<Vec<PendingAlert>, StoreError> {
    conn.query_map(
        "SELECT fingerprint, rule, tracker_id, alert_key, since
         FROM pending_alerts ORDER BY since, fingerprint",
        params![],
        |row| {
            Ok(PendingAlert {
                fingerprint: Fingerprint(row.get(0)?),
                rule: row.get(1)?,
                tracker_id: row.get(2)?,
                key: row.get(3)?,
                since: from_ms(row.get(4)?),
            })
        },
    )
}

/// The kept pending alerts of `sources` (by the source their fingerprint was made with),
/// removed: in a cluster the others belong to the instances running their sources.
pub fn take_pending_alerts_of(
    conn: &Conn,
    sources: &[String],
) -> Result<Vec<PendingAlert>, StoreError> {
    let mine: Vec<PendingAlert> = kept_pending_alerts(conn)?
        .into_iter()
        .filter(|p| of_sources(p, sources))
        .collect();
    for p in &mine {
        conn.execute(
            "DELETE FROM pending_alerts WHERE fingerprint = ?1",
            params![p.fingerprint.0],
        )?;
    }
    Ok(mine)
}

/// [`save_pending_alerts`] replacing only the kept pending alerts of `sources`.
pub fn save_pending_alerts_of(
    conn: &Conn,
    sources: &[String],
    pending: &[PendingAlert],
) -> Result<(), StoreError> {
    take_pending_alerts_of(conn, sources)?;
    insert_pending_alerts(conn, pending)
}

fn of_sources(p: &PendingAlert, sources: &[String]) -> bool {
    p.fingerprint
        .source_among(sources, &p.rule, p.tracker_id, p.key.as_deref())
        .is_some()
}
