//! The schema and its migrations, for SQLite (versioned with `PRAGMA user_version`) and
//! PostgreSQL (versioned in its `schema_version` table).
//!
//! `MIGRATIONS[i]` and `POSTGRES_MIGRATIONS[i]` take a database from version `i` to
//! `i + 1`; step `i` makes the same tables and columns in both. Append new steps to both
//! lists; never edit a released one, because databases in the field have already run it.

use std::path::Path;

use rusqlite::Connection;

use super::{Conn, StoreError, Tx, params};

/// Times are milliseconds since the epoch (UTC); JSON columns hold serde forms of the
/// types named in their comments.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );

    -- One row per firing alert; the rule evaluator restores them at start.
    CREATE TABLE live_alerts (
        fingerprint TEXT PRIMARY KEY,
        rule        TEXT NOT NULL,
        tracker_id  INTEGER,
        alert_key   TEXT,
        status      TEXT NOT NULL,
        starts_at   INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        last        TEXT NOT NULL          -- AlertTransition
    );

    -- Aggregation groups (one per channel and group key) and their members.
    CREATE TABLE groups (
        channel   TEXT NOT NULL,
        group_key TEXT NOT NULL,
        state     TEXT NOT NULL,           -- dispatch::group::GroupState
        PRIMARY KEY (channel, group_key)
    );
    CREATE TABLE group_members (
        channel     TEXT NOT NULL,
        group_key   TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        state       TEXT NOT NULL,         -- dispatch::group::Member
        PRIMARY KEY (channel, group_key, fingerprint),
        FOREIGN KEY (channel, group_key) REFERENCES groups (channel, group_key) ON DELETE CASCADE
    );

    -- Every notification, from the moment it is decided until its channel accepts it
    -- (sent) or it is given up (failed). `seq` keeps each channel's order.
    CREATE TABLE outbox (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        id              TEXT NOT NULL UNIQUE,
        channel         TEXT NOT NULL,
        group_key       TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        payload         TEXT NOT NULL,     -- dispatch::Notification
        status          TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        finished_at     INTEGER
    );
    CREATE INDEX outbox_by_status ON outbox (status, seq);

    -- What happened to each transition on each channel, for operators.
    CREATE TABLE notification_log (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        at              INTEGER NOT NULL,
        fingerprint     TEXT NOT NULL,
        rule            TEXT NOT NULL,
        tracker_id      INTEGER,
        status          TEXT NOT NULL,
        channel         TEXT,
        outcome         TEXT NOT NULL,
        notification_id TEXT,
        detail          TEXT
    );
    CREATE INDEX notification_log_by_time ON notification_log (at);

    CREATE TABLE silences (
        id         TEXT PRIMARY KEY,
        matchers   TEXT NOT NULL,          -- [SilenceMatcher]
        starts_at  INTEGER NOT NULL,
        ends_at    INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        comment    TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    "#,
    // 1 -> 2
    r#"
    -- Alerts inside their `for` when the daemon stopped; the next start takes them back
    -- (and deletes them), so that a restart does not start their wait again.
    CREATE TABLE pending_alerts (
        fingerprint TEXT PRIMARY KEY,
        rule        TEXT NOT NULL,
        tracker_id  INTEGER NOT NULL,
        alert_key   TEXT,
        since       INTEGER NOT NULL
    );
    "#,
    // 2 -> 3: the alert history (`store::history`).
    r#"
    -- Every transition and what happened to it on each channel, newest last; pruned
    -- after `storage.history_retention`.
    CREATE TABLE history (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        at              INTEGER NOT NULL,
        fingerprint     TEXT NOT NULL,
        rule            TEXT NOT NULL,
        tracker_id      INTEGER,
        kind            TEXT NOT NULL,
        channel         TEXT,
        notification_id TEXT,
        by_name         TEXT,
        comment         TEXT,
        value           TEXT,              -- JSON
        detail          TEXT
    );
    CREATE INDEX history_by_time ON history (at);
    CREATE INDEX history_by_fingerprint ON history (fingerprint, seq);
    CREATE INDEX history_by_rule ON history (rule, seq);
    CREATE INDEX history_by_tracker ON history (tracker_id, seq);
    "#,
    // 3 -> 4: acknowledgements and escalation steps.
    r#"
    -- One acknowledgement per firing alert; it goes when the alert resolves.
    -- `announced`: the `send_acks` channels have been told (their notifications queued).
    CREATE TABLE acks (
        fingerprint TEXT PRIMARY KEY,
        starts_at   INTEGER NOT NULL,      -- the firing it acknowledges
        by          TEXT NOT NULL,
        comment     TEXT NOT NULL,
        at          INTEGER NOT NULL,
        expires_at  INTEGER,
        announced   INTEGER NOT NULL DEFAULT 0
    );

    -- The escalation steps of each firing alert: due, or done (kept until the alert
    -- resolves, so that a step runs once per firing).
    CREATE TABLE escalations (
        fingerprint TEXT NOT NULL,
        route       TEXT NOT NULL,
        step        INTEGER NOT NULL,
        due_at      INTEGER NOT NULL,
        done        INTEGER NOT NULL DEFAULT 0,
        state       TEXT NOT NULL,         -- dispatch::escalation::Step
        PRIMARY KEY (fingerprint, route, step)
    );
    "#,
    // 4 -> 5: the cluster's leases (`cluster::lease`), a row per source. Used with
    // PostgreSQL only (`cluster:` needs it); here so that both lists keep one numbering.
    r#"
    CREATE TABLE IF NOT EXISTS leases (
        source     TEXT PRIMARY KEY,
        owner      TEXT NOT NULL,
        epoch      INTEGER NOT NULL,
        expires_at INTEGER NOT NULL        -- ms, the database's clock
    );
    "#,
    // 5 -> 6: the claims of a cluster's delivery (`dispatch::outbox::claimed`). Used on
    // PostgreSQL only; here so that both backends have every step.
    r#"
    CREATE TABLE IF NOT EXISTS outbox_channels (
        channel TEXT PRIMARY KEY
    );
    "#,
    // 6 -> 7: a group member's row may leave out its alert when the live alert row holds
    // the same transition (`dispatch::group`). No table changes; the step is here so that
    // a build that expects the alert in every member row refuses the database.
    r#"
    -- group_members.state: `alert` absent when live_alerts.last holds it
    "#,
];

/// [`MIGRATIONS`] in PostgreSQL's words: integers are `BIGINT`, `seq` columns identities,
/// and `by` (a reserved word there) is quoted.
const POSTGRES_MIGRATIONS: &[&str] = &[
    // 0 -> 1
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE live_alerts (
        fingerprint TEXT PRIMARY KEY,
        rule        TEXT NOT NULL,
        tracker_id  BIGINT,
        alert_key   TEXT,
        status      TEXT NOT NULL,
        starts_at   BIGINT NOT NULL,
        updated_at  BIGINT NOT NULL,
        last        TEXT NOT NULL
    );
    CREATE TABLE groups (
        channel   TEXT NOT NULL,
        group_key TEXT NOT NULL,
        state     TEXT NOT NULL,
        PRIMARY KEY (channel, group_key)
    );
    CREATE TABLE group_members (
        channel     TEXT NOT NULL,
        group_key   TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        state       TEXT NOT NULL,
        PRIMARY KEY (channel, group_key, fingerprint),
        FOREIGN KEY (channel, group_key) REFERENCES groups (channel, group_key) ON DELETE CASCADE
    );
    CREATE TABLE outbox (
        seq             BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        id              TEXT NOT NULL UNIQUE,
        channel         TEXT NOT NULL,
        group_key       TEXT NOT NULL,
        created_at      BIGINT NOT NULL,
        payload         TEXT NOT NULL,
        status          TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
        attempts        BIGINT NOT NULL DEFAULT 0,
        next_attempt_at BIGINT NOT NULL,
        last_error      TEXT,
        finished_at     BIGINT
    );
    CREATE INDEX outbox_by_status ON outbox (status, seq);
    CREATE TABLE notification_log (
        seq             BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        at              BIGINT NOT NULL,
        fingerprint     TEXT NOT NULL,
        rule            TEXT NOT NULL,
        tracker_id      BIGINT,
        status          TEXT NOT NULL,
        channel         TEXT,
        outcome         TEXT NOT NULL,
        notification_id TEXT,
        detail          TEXT
    );
    CREATE INDEX notification_log_by_time ON notification_log (at);
    CREATE TABLE silences (
        id         TEXT PRIMARY KEY,
        matchers   TEXT NOT NULL,
        starts_at  BIGINT NOT NULL,
        ends_at    BIGINT NOT NULL,
        created_by TEXT NOT NULL,
        comment    TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    "#,
    // 1 -> 2
    r#"
    CREATE TABLE pending_alerts (
        fingerprint TEXT PRIMARY KEY,
        rule        TEXT NOT NULL,
        tracker_id  BIGINT NOT NULL,
        alert_key   TEXT,
        since       BIGINT NOT NULL
    );
    "#,
    // 2 -> 3: the alert history.
    r#"
    CREATE TABLE history (
        seq             BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        at              BIGINT NOT NULL,
        fingerprint     TEXT NOT NULL,
        rule            TEXT NOT NULL,
        tracker_id      BIGINT,
        kind            TEXT NOT NULL,
        channel         TEXT,
        notification_id TEXT,
        by_name         TEXT,
        comment         TEXT,
        value           TEXT,
        detail          TEXT
    );
    CREATE INDEX history_by_time ON history (at);
    CREATE INDEX history_by_fingerprint ON history (fingerprint, seq);
    CREATE INDEX history_by_rule ON history (rule, seq);
    CREATE INDEX history_by_tracker ON history (tracker_id, seq);
    "#,
    // 3 -> 4: acknowledgements and escalation steps.
    r#"
    CREATE TABLE acks (
        fingerprint TEXT PRIMARY KEY,
        starts_at   BIGINT NOT NULL,
        "by"        TEXT NOT NULL,
        comment     TEXT NOT NULL,
        at          BIGINT NOT NULL,
        expires_at  BIGINT,
        announced   BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE escalations (
        fingerprint TEXT NOT NULL,
        route       TEXT NOT NULL,
        step        BIGINT NOT NULL,
        due_at      BIGINT NOT NULL,
        done        BIGINT NOT NULL DEFAULT 0,
        state       TEXT NOT NULL,
        PRIMARY KEY (fingerprint, route, step)
    );
    "#,
    // 4 -> 5: the cluster's leases (`cluster::lease`): who runs each source, until when
    // (ms, the database's clock), and the epoch the fence checks.
    r#"
    CREATE TABLE IF NOT EXISTS leases (
        source     TEXT PRIMARY KEY,
        owner      TEXT NOT NULL,
        epoch      BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    "#,
    // 5 -> 6: the claims of a cluster's delivery (`dispatch::outbox::claimed`): one row
    // per channel, locked FOR UPDATE SKIP LOCKED by the instance sending its notifications.
    r#"
    CREATE TABLE IF NOT EXISTS outbox_channels (
        channel TEXT PRIMARY KEY
    );
    "#,
    // 6 -> 7
    r#"
    -- group_members.state: `alert` absent when live_alerts.last holds it
    "#,
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// The advisory lock that serialises migrations of instances starting together.
const MIGRATION_LOCK: i64 = 0x6e61_7669_7879; // "navixy"

/// Brings the database to [`VERSION`], one transaction per step.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > VERSION {
        return Err(StoreError::TooNew {
            location: path.display().to_string(),
            found,
            known: VERSION,
        });
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", from as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// Brings a PostgreSQL database to [`VERSION`] in one transaction, under an advisory
/// lock: a second instance starting at the same time waits, then finds it done.
pub fn migrate_postgres(conn: &Conn, location: &str) -> Result<(), StoreError> {
    let tx = Tx::begin(conn, false, None)?;
    tx.query_opt(
        "SELECT pg_advisory_xact_lock(?1)::text",
        params![MIGRATION_LOCK],
        |_| Ok(()),
    )?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
    let found = tx.query_opt("SELECT version FROM schema_version", params![], |row| {
        row.get::<i64>(0)
    })?;
    if found.is_none() {
        tx.execute("INSERT INTO schema_version (version) VALUES (0)", params![])?;
    }
    let found = found.unwrap_or(0);
    if found > VERSION {
        return Err(StoreError::TooNew {
            location: location.to_owned(),
            found,
            known: VERSION,
        });
    }
    for sql in POSTGRES_MIGRATIONS.iter().skip(found.max(0) as usize) {
        tx.execute_batch(sql)?;
    }
    tx.execute(
        "UPDATE schema_version SET version = ?1",
        params![VERSION.max(found)],
    )?;
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_have_every_step() {
        assert_eq!(MIGRATIONS.len(), POSTGRES_MIGRATIONS.len());
    }
}
