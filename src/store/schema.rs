//! The schema and its migrations, versioned with `PRAGMA user_version`.
//!
//! `MIGRATIONS[i]` takes the database from version `i` to `i + 1`. Append new steps; never
//! edit a released one, because databases in the field have already run it.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

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
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`VERSION`], one transaction per step.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
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
