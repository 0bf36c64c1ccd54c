//! Escalation steps: one row per step of each firing alert, from when it fires until it
//! resolves. A step is due until it has run (`done`); a done row stays so that the same
//! firing never runs it twice. What a step does is [`crate::dispatch::escalation`]'s.

use chrono::{DateTime, Utc};

use super::{Conn, StoreError, from_ms, params, to_ms};
use crate::alert::Fingerprint;

/// A step not yet run.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredStep {
    pub fingerprint: Fingerprint,
    /// The route that escalates (`routes[0]`).
    pub route: String,
    /// The step's index in the route's `escalate`.
    pub step: u32,
    pub due_at: DateTime<Utc>,
    /// JSON of `dispatch::escalation::Step`.
    pub state: String,
}

/// Schedules a step; false (and nothing written) if this firing already has it.
pub fn schedule_escalation(conn: &Conn, s: &StoredStep) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "INSERT INTO escalations (fingerprint, route, step, due_at, state)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (fingerprint, route, step) DO NOTHING",
        params![s.fingerprint.0, s.route, s.step, to_ms(s.due_at), s.state],
    )? > 0)
}

/// Every step not yet run, earliest first.
pub fn load_escalations(conn: &Conn) -> Result<Vec<StoredStep>, StoreError> {
    conn.query_map(
        "SELECT fingerprint, route, step, due_at, state FROM escalations
         WHERE done = 0 ORDER BY due_at, fingerprint, route, step",
        params![],
        |row| {
            Ok(StoredStep {
                fingerprint: Fingerprint(row.get(0)?),
                route: row.get(1)?,
                step: row.get(2)?,
                due_at: from_ms(row.get(3)?),
                state: row.get(4)?,
            })
        },
    )
}

/// Marks a step as run (or cancelled): it never runs again for this firing.
pub fn finish_escalation(
    conn: &Conn,
    fingerprint: &Fingerprint,
    route: &str,
    step: u32,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE escalations SET done = 1 WHERE fingerprint = ?1 AND route = ?2 AND step = ?3",
        params![fingerprint.0, route, step],
    )?;
    Ok(())
}

/// Forgets every step of an alert (it resolved).
pub fn delete_escalations(conn: &Conn, fingerprint: &Fingerprint) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM escalations WHERE fingerprint = ?1",
        params![fingerprint.0],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Conn, conn_tests};

    conn_tests!(a_step_is_scheduled_once_per_firing_and_runs_once);

    fn a_step_is_scheduled_once_per_firing_and_runs_once(conn: &Conn) {
        let fp = Fingerprint("00aa".into());
        let step = StoredStep {
            fingerprint: fp.clone(),
            route: "routes[0]".into(),
            step: 0,
            due_at: DateTime::UNIX_EPOCH,
            state: "{}".into(),
        };
        assert!(schedule_escalation(conn, &step).unwrap());
        assert!(!schedule_escalation(conn, &step).unwrap());
        assert_eq!(load_escalations(conn).unwrap(), std::slice::from_ref(&step));
        finish_escalation(conn, &fp, "routes[0]", 0).unwrap();
        assert!(load_escalations(conn).unwrap().is_empty());
        // Done, it is not scheduled again by the same firing.
        assert!(!schedule_escalation(conn, &step).unwrap());
        delete_escalations(conn, &fp).unwrap();
        assert!(schedule_escalation(conn, &step).unwrap());
    }
}
