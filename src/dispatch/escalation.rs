//! Escalation: the steps of a route's `escalate`, scheduled for each firing alert when it
//! fires, due `after` it started firing, kept in memory and in SQLite (so that a step due
//! while the engine was down runs at start).
//!
//! When a step falls due and the alert still fires, unacknowledged, its channels join
//! the alert's groups like any routed channel ([`super::group::Groups`] does it), so
//! they get it at their group's next flush and its resolve later. An acknowledged alert
//! skips the step; a resolve deletes every step of the alert. Each step runs at most once
//! per firing: its row stays, done, until the resolve.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::store::Conn;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::group::after;
use super::routes::{Escalation, Settings};
use crate::alert::{AlertTransition, Fingerprint};
use crate::store::{self, StoreError, StoredStep};

/// One scheduled step, as persisted (the row's `state`): what it adds, with the settings
/// of the route that escalates, so that a config reload does not change a step already
/// planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Step {
    pub after: Duration,
    pub channels: Vec<String>,
    pub settings: Settings,
}

/// A step that fell due.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Due {
    pub fingerprint: Fingerprint,
    /// `routes[i]`.
    pub route: Arc<str>,
    pub index: u32,
    pub step: Step,
}

impl Due {
    /// `routes[0].escalate[1] (after 1h)`, for the log.
    pub fn describe(&self) -> String {
        format!(
            "{}.escalate[{}] (after {})",
            self.route,
            self.index,
            crate::config::human_duration(self.step.after)
        )
    }
}

type Key = (DateTime<Utc>, Fingerprint, Arc<str>, u32);

/// Every step not yet run, earliest first.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    due: BTreeMap<Key, Step>,
}

impl Schedule {
    /// The steps a previous run left.
    pub fn load(conn: &Conn) -> Result<Schedule, StoreError> {
        let mut schedule = Schedule::default();
        for s in store::load_escalations(conn)? {
            let step: Step = store::from_json("an escalation step", &s.state)?;
            let key = (s.due_at, s.fingerprint, Arc::from(s.route.as_str()), s.step);
            schedule.due.insert(key, step);
        }
        Ok(schedule)
    }

    /// When the next step falls due.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.due.first_key_value().map(|((at, ..), _)| *at)
    }

    /// Plans the steps of `escalations` for the firing `t`; a step this firing already
    /// has (planned, or run) is left as it is.
    pub fn plan(
        &mut self,
        conn: &Conn,
        t: &AlertTransition,
        escalations: &[Escalation],
    ) -> Result<(), StoreError> {
        for e in escalations {
            for (i, s) in e.steps.iter().enumerate() {
                let index = i as u32;
                let step = Step {
                    after: s.after,
                    channels: s.channels.clone(),
                    settings: (*e.settings).clone(),
                };
                let due_at = after(t.starts_at, s.after);
                let stored = StoredStep {
                    fingerprint: t.fingerprint.clone(),
                    route: e.route.to_string(),
                    step: index,
                    due_at,
                    state: store::to_json("an escalation step", &step)?,
                };
                if store::schedule_escalation(conn, &stored)? {
                    let key = (due_at, t.fingerprint.clone(), e.route.clone(), index);
                    self.due.insert(key, step);
                }
            }
        }
        Ok(())
    }

    /// Forgets every step of an alert that resolved.
    pub fn cancel(&mut self, conn: &Conn, fp: &Fingerprint) -> Result<(), StoreError> {
        if self.due.keys().any(|(_, f, ..)| f == fp) {
            self.due.retain(|(_, f, ..), _| f != fp);
        }
        store::delete_escalations(conn, fp)
    }

    /// Takes the steps due at `now` out of the schedule, earliest first. The caller runs
    /// (or skips) each and marks it done in the same transaction.
    pub fn take_due(&mut self, now: DateTime<Utc>) -> Vec<Due> {
        let mut out = Vec::new();
        while let Some(entry) = self.due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((_, fingerprint, route, index), step) = entry.remove_entry();
            out.push(Due {
                fingerprint,
                route,
                index,
                step,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::routes::Router;
    use crate::dispatch::testing::{config, firing};

    fn escalations(t: &AlertTransition) -> Vec<Escalation> {
        let config = config(
            "channels: { slack: { type: stdout }, pager: { type: stdout }, boss: { type: stdout } }\n\
             routes:\n  - channels: [slack]\n    escalate:\n      - { after: 15m, channels: [pager] }\n      - { after: 1h, channels: [boss] }\n",
        );
        Router::new(&config).unwrap().escalations(t)
    }

    #[test]
    fn steps_fall_due_after_the_firing_started_once_and_survive_a_reload() {
        let conn = store::test_connection();
        let t = firing("fuel_drain", 1);
        let mut schedule = Schedule::default();
        schedule.plan(&conn, &t, &escalations(&t)).unwrap();
        schedule.plan(&conn, &t, &escalations(&t)).unwrap();
        let minutes = |m: i64| t.starts_at + chrono::Duration::minutes(m);
        assert_eq!(schedule.next_due(), Some(minutes(15)));
        assert!(schedule.take_due(minutes(14)).is_empty());
        let due = schedule.take_due(minutes(15));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].step.channels, ["pager"]);
        assert_eq!(due[0].describe(), "routes[0].escalate[0] (after 15m)");
        store::finish_escalation(&conn, &t.fingerprint, "routes[0]", 0).unwrap();

        // After a restart only the step not run is due, and planning again adds nothing.
        let mut reloaded = Schedule::load(&conn).unwrap();
        reloaded.plan(&conn, &t, &escalations(&t)).unwrap();
        assert_eq!(reloaded.next_due(), Some(minutes(60)));
        reloaded.cancel(&conn, &t.fingerprint).unwrap();
        assert_eq!(reloaded.next_due(), None);
        assert!(Schedule::load(&conn).unwrap().due.is_empty());
    }
}
