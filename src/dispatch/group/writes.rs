//! The rows of groups, members and live alerts that a batch of transitions changes, kept
//! until the batch is recorded and then written with a few multi-row statements, each row
//! once, as it ends up: a member that joins and is told in the same batch is written once,
//! and a thousand new members cost a handful of statements rather than a thousand.
//!
//! Only [`Groups`](super::Groups) writes these tables while the dispatcher runs, and it
//! reads none of them back inside a transaction, so a row waiting here is never missed;
//! live alerts, which escalation steps read, are written before a flush runs them. When
//! the transaction rolls back, the dispatcher rebuilds the groups from the database before
//! its next commit, and what waited here goes with the old ones.

use std::collections::HashMap;

use super::GroupId;
use crate::alert::Fingerprint;
use crate::store::{self, Conn, LiveAlertRow, StoreError};

/// The pending rows: `Some` to write, `None` to delete.
#[derive(Debug, Default)]
pub(super) struct Writes {
    groups: HashMap<GroupId, Option<String>>,
    members: HashMap<(GroupId, Fingerprint), Option<String>>,
    live: HashMap<Fingerprint, Option<LiveAlertRow>>,
}

impl Writes {
    /// A group's state (JSON), or `None`: the group and its members go.
    pub fn group(&mut self, id: &GroupId, state: Option<String>) {
        self.groups.insert(id.clone(), state);
    }

    /// A member's state (JSON), or `None`: it leaves the group.
    pub fn member(&mut self, id: &GroupId, fp: &Fingerprint, state: Option<String>) {
        self.members.insert((id.clone(), fp.clone()), state);
    }

    /// A firing alert's live row, or `None`: it is no longer live.
    pub fn live(&mut self, fp: &Fingerprint, row: Option<LiveAlertRow>) {
        self.live.insert(fp.clone(), row);
    }

    /// Writes every pending row and forgets it: deleted members, then deleted groups,
    /// then the groups written and their members (whose foreign key needs the group).
    pub fn write(&mut self, conn: &Conn) -> Result<(), StoreError> {
        let (mut put_groups, mut put_members) = (Vec::new(), Vec::new());
        for ((id, fp), state) in &self.members {
            match state {
                Some(state) => put_members.push((&*id.channel, &*id.key, fp.0.as_str(), &**state)),
                None => store::delete_group_member(conn, &id.channel, &id.key, &fp.0)?,
            }
        }
        for (id, state) in &self.groups {
            match state {
                Some(state) => put_groups.push((&*id.channel, &*id.key, &**state)),
                None => store::delete_group(conn, &id.channel, &id.key)?,
            }
        }
        store::put_groups(conn, &put_groups)?;
        store::put_group_members(conn, &put_members)?;
        let mut put_live = Vec::new();
        for (fp, row) in self.live.drain() {
            match row {
                Some(row) => put_live.push(row),
                None => store::delete_live_alert(conn, &fp)?,
            }
        }
        store::upsert_live_alerts(conn, &put_live)?;
        self.groups.clear();
        self.members.clear();
        Ok(())
    }
}
