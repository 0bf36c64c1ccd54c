//! Aggregation groups: grouping, dedup, flap damping and silences, decided on the database
//! thread and written in the same transaction as the transitions that caused them.
//!
//! This is plain synchronous code over a SQLite connection and explicit times, so every
//! rule below is unit-tested with exact timestamps and no runtime.
//!
//! # The model
//! An alert routed to a channel becomes a *member* of the group `(channel, group key)`.
//! A member remembers what the channel was last told about it: nothing, or "firing since
//! the notification at T". A *flush* of the group (first `group_wait` after the group is
//! created, then every `group_interval`) puts into one notification every member that
//! needs telling:
//! - firing and not yet told (a new alert);
//! - firing, told, and `repeat_interval` has passed since (a repeat);
//! - resolved while the channel believes it firing (a resolve, sent once).
//!
//! Nothing else is ever sent: a firing alert is not notified again before
//! `repeat_interval`, and an alert that resolves before its first notification is dropped
//! (Alertmanager does the same).
//!
//! # Flap damping
//! Two mechanisms, both per member:
//! 1. *Coalescing*: the channel hears at most one state per flush. An alert that resolves
//!    and fires again before the resolve was sent still reads "firing" to the receiver, so
//!    nothing is sent at all; fired-and-resolved before the first flush sends nothing.
//! 2. *A cap*: at most [`FLAP_LIMIT`] notifications per alert per channel in any hour
//!    ([`FLAP_WINDOW`]). Past it the member is *held*: its changes keep coalescing, and
//!    when the oldest of those notifications leaves the window the current state is sent
//!    once, with the notification's `reason` saying how many changes were damped.
//!
//! A resolved member is kept (as a tombstone) while its notification history is inside
//! the window, so a flapping alert cannot reset its cap by resolving.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::notification::Notification;
use super::routes::{Router, Settings};
use super::silence::ActiveSilences;
use crate::alert::{AlertStatus, AlertTransition, Fingerprint};
use crate::store::{self, LogEntry, Outcome, StoreError};
use crate::telemetry;

/// Notifications per alert per channel within [`FLAP_WINDOW`] before it is held.
pub const FLAP_LIMIT: usize = 6;
/// The sliding window of the flap cap.
pub const FLAP_WINDOW: Duration = Duration::from_secs(3600);

/// The groups that have notifications in the outbox not yet delivered (sent or given
/// up), with how many. Shared by the dispatcher (which adds) and the senders (which
/// remove); the lock is held for a map lookup only.
#[derive(Debug, Clone, Default)]
pub struct Undelivered(Arc<parking_lot::Mutex<HashMap<GroupId, u32>>>);

impl Undelivered {
    pub fn add(&self, channel: &str, key: &str) {
        *self.0.lock().entry(GroupId::new(channel, key)).or_insert(0) += 1;
    }

    pub fn done(&self, channel: &str, key: &str) {
        let mut map = self.0.lock();
        let id = GroupId::new(channel, key);
        if let Some(n) = map.get_mut(&id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&id);
            }
        }
    }

    pub fn contains(&self, id: &GroupId) -> bool {
        self.0.lock().contains_key(id)
    }
}

/// `(channel, group key)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId {
    pub channel: Arc<str>,
    pub key: Arc<str>,
}

impl GroupId {
    pub fn new(channel: &str, key: &str) -> GroupId {
        GroupId {
            channel: Arc::from(channel),
            key: Arc::from(key),
        }
    }
}

/// A group's own state, persisted as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct GroupState {
    labels: BTreeMap<String, String>,
    settings: Settings,
    next_flush_at: DateTime<Utc>,
    /// `None` until the group's first notification.
    last_notified_at: Option<DateTime<Utc>>,
}

/// One alert in one group, persisted as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Member {
    /// The newest transition.
    alert: AlertTransition,
    /// What the channel believes: `Some(t)` firing, told at `t` (the last notification
    /// that carried it); `None`: nothing, or resolved.
    told_firing_at: Option<DateTime<Utc>>,
    /// Transitions since the channel last heard about this alert.
    changes: u32,
    /// When notifications carried it, within the flap window.
    sent: Vec<DateTime<Utc>>,
    /// Logged as silenced or held already: say it once, not at every flush.
    #[serde(skip)]
    quiet_logged: bool,
}

impl Member {
    /// Nothing to tell and nothing to remember: the member can go.
    fn is_dead(&self) -> bool {
        self.alert.status == AlertStatus::Resolved
            && self.told_firing_at.is_none()
            && self.sent.is_empty()
    }
}

struct Group {
    state: GroupState,
    members: BTreeMap<Fingerprint, Member>,
}

/// A notification decided by a flush and written to the outbox.
#[derive(Debug, Clone)]
pub struct Queued {
    pub seq: i64,
    pub notification: Arc<Notification>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    New,
    Repeat,
    Resolve,
}

/// Every aggregation group, with the indexes to find them by time and by alert.
pub struct Groups {
    router: Arc<Router>,
    groups: HashMap<GroupId, Group>,
    /// Flush times, earliest first.
    schedule: BTreeSet<(DateTime<Utc>, GroupId)>,
    /// The groups each alert is a member of, so a resolve reaches them even if the routes
    /// changed since it fired.
    index: HashMap<Fingerprint, Vec<GroupId>>,
    silences: ActiveSilences,
    /// Groups with a notification not yet delivered: a repeat would only queue behind it.
    undelivered: Undelivered,
    /// Rules already warned about as unrouted (the log says it once per rule).
    unrouted_warned: HashSet<Arc<str>>,
}

pub(crate) fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn elapsed(since: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - since).to_std().unwrap_or(Duration::ZERO)
}

fn log(
    conn: &Connection,
    now: DateTime<Utc>,
    t: &AlertTransition,
    channel: Option<&str>,
    outcome: Outcome,
    notification_id: Option<&str>,
    detail: Option<String>,
) -> Result<(), StoreError> {
    store::insert_log(
        conn,
        &LogEntry {
            at: now,
            fingerprint: t.fingerprint.0.clone(),
            rule: t.rule.to_string(),
            tracker_id: t.tracker.as_ref().map(|tr| tr.id),
            status: t.status.as_str().to_owned(),
            channel: channel.map(str::to_owned),
            outcome,
            notification_id: notification_id.map(str::to_owned),
            detail,
        },
    )
}

impl Groups {
    /// Empty groups (a fresh database).
    pub fn new(router: Arc<Router>) -> Groups {
        Groups {
            router,
            groups: HashMap::new(),
            schedule: BTreeSet::new(),
            index: HashMap::new(),
            silences: ActiveSilences::default(),
            unrouted_warned: HashSet::new(),
            undelivered: Undelivered::default(),
        }
    }

    /// The groups as a previous run left them. Groups of channels the config no longer
    /// has are dropped with a warning (their rows are deleted).
    pub fn load(
        conn: &Connection,
        router: Arc<Router>,
        channels: &[Arc<str>],
    ) -> Result<Groups, StoreError> {
        let mut groups = Groups::new(router);
        for stored in store::load_groups(conn)? {
            let Some(channel) = channels.iter().find(|c| ***c == *stored.channel).cloned() else {
                tracing::warn!(
                    channel = %stored.channel,
                    group_key = %stored.group_key,
                    "Channel no longer configured: dropping its alert group."
                );
                store::delete_group(conn, &stored.channel, &stored.group_key)?;
                continue;
            };
            let state: GroupState = store::from_json("a group", &stored.state)?;
            let id = GroupId {
                channel,
                key: Arc::from(stored.group_key.as_str()),
            };
            let mut members = BTreeMap::new();
            for (fp, member) in &stored.members {
                let member: Member = store::from_json("a group member", member)?;
                let fp = Fingerprint(fp.clone());
                groups.index.entry(fp.clone()).or_default().push(id.clone());
                members.insert(fp, member);
            }
            groups.schedule.insert((state.next_flush_at, id.clone()));
            groups.groups.insert(id, Group { state, members });
        }
        Ok(groups)
    }

    /// Shares the record of undelivered notifications with the senders.
    pub fn set_undelivered(&mut self, undelivered: Undelivered) {
        self.undelivered = undelivered;
    }

    /// When the next flush is due.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.schedule.first().map(|(at, _)| *at)
    }

    /// Records one transition: the live alert state and its effect on every group it
    /// belongs to. Call inside the transaction that acknowledges it.
    pub fn apply(
        &mut self,
        conn: &Connection,
        mut t: AlertTransition,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match t.status {
            AlertStatus::Firing => {
                // Routing first: a repeated firing keeps its original `starts_at`, and the
                // live state should say the same.
                self.apply_firing(conn, &mut t, now)?;
                store::upsert_live_alert(conn, &t, now)
            }
            AlertStatus::Resolved => {
                store::delete_live_alert(conn, &t.fingerprint)?;
                self.apply_resolved(conn, &t, now)
            }
        }
    }

    fn apply_firing(
        &mut self,
        conn: &Connection,
        t: &mut AlertTransition,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let routed = self.router.route(t);
        for name in &routed.unknown_channels {
            tracing::warn!(rule = %t.rule, channel = %name, "Rule names an unknown channel.");
            log(
                conn,
                now,
                t,
                Some(name),
                Outcome::Dropped,
                None,
                Some(format!(
                    "the rule names channel `{name}`, which is not configured"
                )),
            )?;
        }
        if routed.targets.is_empty() {
            if routed.unknown_channels.is_empty() {
                if self.unrouted_warned.insert(t.rule.clone()) {
                    tracing::warn!(
                        rule = %t.rule,
                        "No route matches this rule's alerts and it names no channels: \
                         they are recorded, not sent."
                    );
                }
                log(conn, now, t, None, Outcome::Unrouted, None, None)?;
            }
            return Ok(());
        }
        for target in routed.targets {
            let (key, labels) = target.settings.group_of(&target.route, t);
            let id = GroupId {
                channel: target.channel.clone(),
                key: Arc::from(key),
            };
            let group = match self.groups.get_mut(&id) {
                Some(group) => group,
                None => {
                    let state = GroupState {
                        labels,
                        settings: (*target.settings).clone(),
                        next_flush_at: after(now, target.settings.group_wait),
                        last_notified_at: None,
                    };
                    store::put_group(
                        conn,
                        &id.channel,
                        &id.key,
                        &store::to_json("a group", &state)?,
                    )?;
                    self.schedule.insert((state.next_flush_at, id.clone()));
                    self.groups.entry(id.clone()).or_insert(Group {
                        state,
                        members: BTreeMap::new(),
                    })
                }
            };
            let member = match group.members.get_mut(&t.fingerprint) {
                None => {
                    self.index
                        .entry(t.fingerprint.clone())
                        .or_default()
                        .push(id.clone());
                    group
                        .members
                        .entry(t.fingerprint.clone())
                        .or_insert(Member {
                            alert: t.clone(),
                            told_firing_at: None,
                            changes: 1,
                            sent: Vec::new(),
                            quiet_logged: false,
                        })
                }
                Some(member) if member.alert.status == AlertStatus::Firing => {
                    // The same firing again (an evaluator that restarted without its
                    // state): keep when it started; nothing changes for the receiver.
                    t.starts_at = member.alert.starts_at;
                    member.alert = t.clone();
                    member
                }
                Some(member) => {
                    member.changes += 1;
                    member.alert = t.clone();
                    if member.told_firing_at.is_some() {
                        log(
                            conn,
                            now,
                            t,
                            Some(&id.channel),
                            Outcome::Coalesced,
                            None,
                            Some("fired again before its resolve was sent".into()),
                        )?;
                    }
                    member
                }
            };
            store::put_group_member(
                conn,
                &id.channel,
                &id.key,
                &t.fingerprint.0,
                &store::to_json("a group member", member)?,
            )?;
        }
        Ok(())
    }

    fn apply_resolved(
        &mut self,
        conn: &Connection,
        t: &AlertTransition,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Some(ids) = self.index.get(&t.fingerprint).cloned() else {
            log(
                conn,
                now,
                t,
                None,
                Outcome::Dropped,
                None,
                Some("resolved; its firing was never queued for a channel".into()),
            )?;
            return Ok(());
        };
        for id in ids {
            let Some(group) = self.groups.get_mut(&id) else {
                continue;
            };
            let send_resolved = group.state.settings.send_resolved;
            let Some(member) = group.members.get_mut(&t.fingerprint) else {
                continue;
            };
            if member.alert.status == AlertStatus::Resolved {
                continue;
            }
            member.changes += 1;
            member.alert = t.clone();
            let dropped = match (member.told_firing_at.is_some(), send_resolved) {
                // The resolve goes out at the group's next flush.
                (true, true) => None,
                (true, false) => {
                    member.told_firing_at = None;
                    Some("send_resolved is off")
                }
                (false, _) => Some("resolved before it was notified"),
            };
            if let Some(reason) = dropped {
                log(
                    conn,
                    now,
                    t,
                    Some(&id.channel),
                    Outcome::Dropped,
                    None,
                    Some(reason.into()),
                )?;
            }
            self.save_or_remove_member(conn, &id, &t.fingerprint)?;
        }
        Ok(())
    }

    /// Persists a member, or removes it (and its group, when empty) if it is dead.
    fn save_or_remove_member(
        &mut self,
        conn: &Connection,
        id: &GroupId,
        fp: &Fingerprint,
    ) -> Result<(), StoreError> {
        let Some(group) = self.groups.get_mut(id) else {
            return Ok(());
        };
        let Some(member) = group.members.get(fp) else {
            return Ok(());
        };
        if !member.is_dead() {
            return store::put_group_member(
                conn,
                &id.channel,
                &id.key,
                &fp.0,
                &store::to_json("a group member", member)?,
            );
        }
        group.members.remove(fp);
        store::delete_group_member(conn, &id.channel, &id.key, &fp.0)?;
        unindex(&mut self.index, fp, id);
        if group.members.is_empty() {
            self.schedule
                .remove(&(group.state.next_flush_at, id.clone()));
            self.groups.remove(id);
            store::delete_group(conn, &id.channel, &id.key)?;
        }
        Ok(())
    }

    /// Flushes every group due at `now`; each notification is written to the outbox and
    /// appended to `out`. `silence_generation` says whether the silences must be reloaded.
    pub fn flush_due(
        &mut self,
        conn: &Connection,
        now: DateTime<Utc>,
        silence_generation: u64,
        out: &mut Vec<Queued>,
    ) -> Result<(), StoreError> {
        if self.silences.is_stale(silence_generation) {
            self.silences
                .replace(store::load_silences(conn)?, silence_generation);
        }
        while let Some((at, _)) = self.schedule.first() {
            if *at > now {
                break;
            }
            let Some((_, id)) = self.schedule.pop_first() else {
                break;
            };
            self.flush(conn, id, now, out)?;
        }
        Ok(())
    }

    fn flush(
        &mut self,
        conn: &Connection,
        id: GroupId,
        now: DateTime<Utc>,
        out: &mut Vec<Queued>,
    ) -> Result<(), StoreError> {
        let Some(group) = self.groups.get_mut(&id) else {
            return Ok(());
        };
        let settings = group.state.settings.clone();
        // While the group's last notification is still being retried, a repeat would only
        // queue behind it (a long outage would end in a burst of stale repeats); it waits
        // for the first flush after the delivery.
        let repeats_wait = self.undelivered.contains(&id);
        let mut picked: Vec<(Fingerprint, Need)> = Vec::new();
        let mut dirty: Vec<Fingerprint> = Vec::new();
        for (fp, m) in group.members.iter_mut() {
            let before = m.sent.len();
            m.sent.retain(|s| elapsed(*s, now) < FLAP_WINDOW);
            if m.sent.len() != before {
                dirty.push(fp.clone());
            }
            let need = match (m.alert.status, m.told_firing_at) {
                (AlertStatus::Firing, None) => Need::New,
                (AlertStatus::Firing, Some(at))
                    if !repeats_wait && elapsed(at, now) >= settings.repeat_interval =>
                {
                    Need::Repeat
                }
                (AlertStatus::Resolved, Some(_)) => Need::Resolve,
                _ => continue,
            };
            if let Some(silence) = self.silences.matching(&m.alert, now) {
                if need == Need::Resolve {
                    // The receiver will not hear the resolve: forget that it was told.
                    m.told_firing_at = None;
                    dirty.push(fp.clone());
                }
                if !m.quiet_logged || need == Need::Resolve {
                    m.quiet_logged = true;
                    metrics::counter!(telemetry::NOTIFICATIONS_SILENCED, "channel" => id.channel.to_string())
                        .increment(1);
                    log(
                        conn,
                        now,
                        &m.alert,
                        Some(&id.channel),
                        Outcome::Silenced,
                        None,
                        Some(format!("silence {silence}")),
                    )?;
                }
                continue;
            }
            if m.sent.len() >= FLAP_LIMIT {
                if !m.quiet_logged {
                    m.quiet_logged = true;
                    log(
                        conn,
                        now,
                        &m.alert,
                        Some(&id.channel),
                        Outcome::Held,
                        None,
                        Some(format!(
                            "flapping: notified {} times in the last hour; held until the cap frees",
                            m.sent.len()
                        )),
                    )?;
                }
                continue;
            }
            m.quiet_logged = false;
            picked.push((fp.clone(), need));
        }

        if !picked.is_empty() {
            // Firing alerts first, then resolved ones; each part in fingerprint order.
            picked.sort_by_key(|(fp, need)| (*need == Need::Resolve, fp.clone()));
            let reason = reason(group, &picked);
            let alerts: Vec<AlertTransition> = picked
                .iter()
                .filter_map(|(fp, _)| group.members.get(fp).map(|m| m.alert.clone()))
                .collect();
            let status = if alerts.iter().any(|a| a.status == AlertStatus::Firing) {
                AlertStatus::Firing
            } else {
                AlertStatus::Resolved
            };
            let notification = Notification {
                id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
                receiver: id.channel.to_string(),
                group_key: id.key.to_string(),
                group_labels: group.state.labels.clone(),
                status,
                reason,
                created_at: now,
                alerts,
            };
            let seq = store::insert_outbox(
                conn,
                &notification.id,
                &id.channel,
                &id.key,
                now,
                &store::to_json("a notification", &notification)?,
            )?;
            for (fp, _) in &picked {
                let Some(m) = group.members.get_mut(fp) else {
                    continue;
                };
                log(
                    conn,
                    now,
                    &m.alert,
                    Some(&id.channel),
                    Outcome::Queued,
                    Some(&notification.id),
                    None,
                )?;
                m.told_firing_at = match m.alert.status {
                    AlertStatus::Firing => Some(now),
                    AlertStatus::Resolved => None,
                };
                m.changes = 0;
                m.sent.push(now);
                dirty.push(fp.clone());
            }
            group.state.last_notified_at = Some(now);
            out.push(Queued {
                seq,
                notification: Arc::new(notification),
            });
        }

        group.state.next_flush_at =
            after(now, settings.group_interval.max(Duration::from_millis(1)));
        let notified = !picked.is_empty();
        let state = group.state.clone();
        for fp in dirty {
            self.save_or_remove_member(conn, &id, &fp)?;
        }
        if self.groups.contains_key(&id) {
            // A flush that sent nothing changes only the next flush time; recomputing it
            // after a restart costs at most one early flush, so it is not written.
            if notified {
                store::put_group(
                    conn,
                    &id.channel,
                    &id.key,
                    &store::to_json("a group", &state)?,
                )?;
            }
            self.schedule.insert((state.next_flush_at, id));
        }
        Ok(())
    }

    /// Number of groups and members, for tests and the admin API.
    pub fn size(&self) -> (usize, usize) {
        (
            self.groups.len(),
            self.groups.values().map(|g| g.members.len()).sum(),
        )
    }
}

fn unindex(index: &mut HashMap<Fingerprint, Vec<GroupId>>, fp: &Fingerprint, id: &GroupId) {
    if let Some(ids) = index.get_mut(fp) {
        ids.retain(|g| g != id);
        if ids.is_empty() {
            index.remove(fp);
        }
    }
}

/// Why a notification goes out, for humans: `first notification`, else the kinds of
/// change in it; plus a note when flap damping held back state changes.
fn reason(group: &Group, picked: &[(Fingerprint, Need)]) -> String {
    let mut text = if group.state.last_notified_at.is_none() {
        "first notification".to_owned()
    } else {
        let mut parts = Vec::new();
        for (need, word) in [
            (Need::New, "new alerts"),
            (Need::Resolve, "resolved"),
            (Need::Repeat, "repeat"),
        ] {
            if picked.iter().any(|(_, n)| *n == need) {
                parts.push(word);
            }
        }
        parts.join(", ")
    };
    let (flapping, changes) = picked
        .iter()
        .filter_map(|(fp, _)| group.members.get(fp))
        .filter(|m| m.changes > 1)
        .fold((0u32, 0u32), |(n, c), m| (n + 1, c + m.changes));
    if flapping > 0 {
        let alerts = if flapping == 1 { "alert" } else { "alerts" };
        text.push_str(&format!(
            "; flapping: {flapping} {alerts} changed state {changes} times since last notified"
        ));
    }
    text
}

#[cfg(test)]
mod tests;
