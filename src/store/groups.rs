//! Aggregation groups as the dispatcher left them: each group's state and each member's
//! state as JSON. The dispatcher owns their meaning (`dispatch::group`); this file only
//! keeps them, so that a restart resumes every group_wait, group_interval, repeat and flap
//! count where it was.

use std::collections::BTreeMap;

use super::sql::{InsertRows, insert_rows};
use super::{Conn, StoreError, Value, params};

/// One group as stored: its own state and its members' states, by fingerprint.
#[derive(Debug, Clone, Default)]
pub struct StoredGroup {
    pub channel: String,
    pub group_key: String,
    pub state: String,
    pub members: BTreeMap<String, String>,
}

/// Writes groups, `(channel, group key, state)` each, every group once: new ones are
/// added, known ones get the new state.
pub fn put_groups(conn: &Conn, groups: &[(&str, &str, &str)]) -> Result<(), StoreError> {
    static GROUPS: InsertRows = InsertRows::new(
        "INSERT INTO groups (channel, group_key, state)",
        "ON CONFLICT (channel, group_key) DO UPDATE SET state = excluded.state",
        3,
    );
    insert_rows(conn, &GROUPS, groups, |(channel, key, state), out| {
        out.extend([Value::Text(channel), Value::Text(key), Value::Text(state)]);
    })
}

/// Deletes a group and (by cascade) its members.
pub fn delete_group(conn: &Conn, channel: &str, group_key: &str) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM groups WHERE channel = ?1 AND group_key = ?2",
        params![channel, group_key],
    )?;
    Ok(())
}

/// Writes group members, `(channel, group key, fingerprint, state)` each, every member
/// once; their groups are in the table already.
pub fn put_group_members(
    conn: &Conn,
    members: &[(&str, &str, &str, &str)],
) -> Result<(), StoreError> {
    static MEMBERS: InsertRows = InsertRows::new(
        "INSERT INTO group_members (channel, group_key, fingerprint, state)",
        "ON CONFLICT (channel, group_key, fingerprint) DO UPDATE SET state = excluded.state",
        4,
    );
    insert_rows(
        conn,
        &MEMBERS,
        members,
        |(channel, key, fingerprint, state), out| {
            out.extend([
                Value::Text(channel),
                Value::Text(key),
                Value::Text(fingerprint),
                Value::Text(state),
            ]);
        },
    )
}

pub fn delete_group_member(
    conn: &Conn,
    channel: &str,
    group_key: &str,
    fingerprint: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM group_members WHERE channel = ?1 AND group_key = ?2 AND fingerprint = ?3",
        params![channel, group_key, fingerprint],
    )?;
    Ok(())
}

/// Every group with its members.
pub fn load_groups(conn: &Conn) -> Result<Vec<StoredGroup>, StoreError> {
    let mut groups: BTreeMap<(String, String), StoredGroup> = BTreeMap::new();
    let rows = conn.query_map(
        "SELECT channel, group_key, state FROM groups",
        params![],
        |row| {
            Ok(StoredGroup {
                channel: row.get(0)?,
                group_key: row.get(1)?,
                state: row.get(2)?,
                members: BTreeMap::new(),
            })
        },
    )?;
    for g in rows {
        groups.insert((g.channel.clone(), g.group_key.clone()), g);
    }
    let members = conn.query_map(
        "SELECT channel, group_key, fingerprint, state FROM group_members",
        params![],
        |row| {
            Ok((
                row.get::<String>(0)?,
                row.get::<String>(1)?,
                row.get::<String>(2)?,
                row.get::<String>(3)?,
            ))
        },
    )?;
    for (channel, group_key, fingerprint, state) in members {
        if let Some(g) = groups.get_mut(&(channel, group_key)) {
            g.members.insert(fingerprint, state);
        }
    }
    Ok(groups.into_values().collect())
}
