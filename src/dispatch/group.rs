//! Aggregation groups: the *group* and *wait* stages of delivery (membership, the
//! coalescing half of flap damping, the flush schedule) and the state every stage reads,
//! kept in memory and in SQLite, written in the same transaction as the transitions that
//! caused it. What a flush sends is decided by the stages in [`super::stages`], in the
//! order their [`Pipeline`] composes.
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
//! 2. *A cap* (the flap stage, [`super::stages::flap`]): at most [`FLAP_LIMIT`]
//!    notifications per alert per channel in any hour ([`FLAP_WINDOW`]). Past it the
//!    member is *held*: its changes keep coalescing, and when the oldest of those
//!    notifications leaves the window the current state is sent once, with the
//!    notification's `reason` saying how many changes were damped.
//!
//! A resolved member is kept (as a tombstone) while its notification history is inside
//! the window, so a flapping alert cannot reset its cap by resolving.
//!
//! # Events
//! An occurrence of an event rule is a member of its own, keyed by its occurrence id
//! rather than its fingerprint: a second occurrence of the same alert waiting in the
//! group is a second member, never a replacement, and none of the above coalesces it.
//! It is new until a notification carries it; then (or when a muting stage stops it, as
//! an occurrence is not worth telling once its moment has passed) it leaves the group.
//! It never repeats and never resolves, and is not a live alert.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::store::Conn;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::ack::AckLinks;
use super::escalation::Schedule;
use super::notification::Notification;
use super::routes::{Router, Settings, Target};
use super::stages::{Decision, DeliveryRecord, Flush, History, Need, Pipeline, log};
use crate::alert::{AlertStatus, AlertTransition, Fingerprint};
use crate::store::{self, Outcome, StoreError};

pub use super::stages::flap::{FLAP_LIMIT, FLAP_WINDOW};

mod writes;

use writes::Writes;

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

    /// The groups counted now.
    pub fn groups(&self) -> Vec<GroupId> {
        self.0.lock().keys().cloned().collect()
    }

    /// Forgets a group whose notifications were all delivered elsewhere (another
    /// instance of a cluster).
    pub fn forget(&self, id: &GroupId) {
        self.0.lock().remove(id);
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
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    next_flush_at: DateTime<Utc>,
    /// `None` until the group's first notification.
    #[serde(serialize_with = "crate::rfc3339::serialize_opt")]
    last_notified_at: Option<DateTime<Utc>>,
}

/// One alert in one group, persisted as JSON ([`MemberRow`], [`StoredMember`]).
#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// The newest transition, shared with the other groups it joined and the
    /// notifications that carry it: a transition is not copied on its way to the outbox.
    pub alert: Arc<AlertTransition>,
    /// What the channel believes: `Some(t)` firing, told at `t` (the last notification
    /// that carried it); `None`: nothing, or resolved.
    pub told_firing_at: Option<DateTime<Utc>>,
    /// Transitions since the channel last heard about this alert.
    pub changes: u32,
    /// When notifications carried it, within the flap window.
    pub sent: Vec<DateTime<Utc>>,
    /// Logged as silenced or held already: say it once, not at every flush.
    pub quiet_logged: bool,
    /// `alert` is the transition the live alert row holds: the member's row leaves it out
    /// (the live row has it, and a load takes it from there).
    alert_live: bool,
}

impl Member {
    /// A member that joins with `alert`: nothing told yet.
    pub fn new(alert: Arc<AlertTransition>) -> Member {
        Member {
            alert,
            told_firing_at: None,
            changes: 1,
            sent: Vec::new(),
            quiet_logged: false,
            alert_live: false,
        }
    }

    /// Nothing to tell and nothing to remember: the member can go. An occurrence is
    /// told once.
    fn is_dead(&self) -> bool {
        if self.alert.is_event() {
            return self.told_firing_at.is_some();
        }
        self.alert.status == AlertStatus::Resolved
            && self.told_firing_at.is_none()
            && self.sent.is_empty()
    }
}

/// A member's row as written: its alert (the transition, or its JSON made already), left
/// out when the live alert row holds it.
#[derive(Serialize)]
struct MemberRow<'a, A: Serialize> {
    #[serde(skip_serializing_if = "Option::is_none")]
    alert: Option<A>,
    #[serde(serialize_with = "crate::rfc3339::serialize_opt")]
    told_firing_at: Option<DateTime<Utc>>,
    changes: u32,
    #[serde(serialize_with = "crate::rfc3339::serialize_all")]
    sent: &'a [DateTime<Utc>],
}

/// `m`'s row with `alert` as its alert.
fn row_json<A: Serialize>(m: &Member, alert: Option<A>) -> Result<String, StoreError> {
    store::to_json(
        "a group member",
        &MemberRow {
            alert,
            told_firing_at: m.told_firing_at,
            changes: m.changes,
            sent: &m.sent,
        },
    )
}

/// `m`'s row: without its alert when the live alert row holds the same transition.
fn member_row(m: &Member) -> Result<String, StoreError> {
    let alert = (!m.alert_live).then_some(&m.alert);
    row_json(m, alert)
}

/// A member's row as read back: `alert` is absent when the live alert row holds it.
#[derive(Deserialize)]
struct StoredMember {
    alert: Option<AlertTransition>,
    told_firing_at: Option<DateTime<Utc>>,
    changes: u32,
    sent: Vec<DateTime<Utc>>,
}

impl StoredMember {
    /// The member, its alert from its row or else from `live` (the live alert row's
    /// transition); `None` when neither has it.
    fn into_member(self, live: Option<&Arc<AlertTransition>>) -> Option<Member> {
        let (alert, alert_live) = match (self.alert, live) {
            (Some(alert), _) => (Arc::new(alert), false),
            (None, Some(live)) => (Arc::clone(live), true),
            (None, None) => return None,
        };
        Some(Member {
            alert,
            told_firing_at: self.told_firing_at,
            changes: self.changes,
            sent: self.sent,
            quiet_logged: false,
            alert_live,
        })
    }
}

/// A transition's JSON, made at most once for the rows that carry it (its group
/// members and its live alert row); forgotten when the transition changes.
#[derive(Default)]
struct AlertJson(Option<Box<RawValue>>);

impl AlertJson {
    fn of(&mut self, t: &AlertTransition) -> Result<&RawValue, StoreError> {
        let json = match self.0.take() {
            Some(json) => json,
            None => serde_json::value::to_raw_value(t).map_err(|source| StoreError::Json {
                what: "an alert transition",
                source,
            })?,
        };
        Ok(self.0.insert(json))
    }

    fn forget(&mut self) {
        self.0 = None;
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

/// What acknowledgement changes in delivery: which channels are told of acks, and the
/// ack links (with `server.external_url`).
#[derive(Debug, Clone, Default)]
pub struct AckSetup {
    pub send_acks: HashSet<Arc<str>>,
    pub links: Option<AckLinks>,
}

/// Every aggregation group, with the indexes to find them by time and by alert.
pub struct Groups {
    /// The stages, which also route.
    pipeline: Pipeline,
    router: Arc<Router>,
    /// The escalation steps not yet run.
    escalation: Schedule,
    acks: AckSetup,
    groups: HashMap<GroupId, Group>,
    /// Flush times, earliest first.
    schedule: BTreeSet<(DateTime<Utc>, GroupId)>,
    /// The groups each alert is a member of, so a resolve reaches them even if the routes
    /// changed since it fired.
    index: HashMap<Fingerprint, Vec<GroupId>>,
    /// Groups with a notification not yet delivered: a repeat would only queue behind it.
    undelivered: Undelivered,
    /// The rows changed since the last [`Groups::write`].
    writes: Writes,
}

pub(crate) fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl Groups {
    /// Empty groups (a fresh database).
    pub fn new(router: Arc<Router>) -> Groups {
        Groups {
            pipeline: Pipeline::new(router.clone()),
            router,
            escalation: Schedule::default(),
            acks: AckSetup::default(),
            groups: HashMap::new(),
            schedule: BTreeSet::new(),
            index: HashMap::new(),
            undelivered: Undelivered::default(),
            writes: Writes::default(),
        }
    }

    /// The groups as a previous run left them. Groups of channels the config no longer
    /// has are dropped with a warning (their rows are deleted).
    pub fn load(
        conn: &Conn,
        router: Arc<Router>,
        channels: &[Arc<str>],
    ) -> Result<Groups, StoreError> {
        let mut groups = Groups::new(router);
        groups.escalation = Schedule::load(conn)?;
        let live: HashMap<String, Arc<AlertTransition>> = store::load_live_alerts(conn)?
            .into_iter()
            .map(|live| (live.fingerprint.0, Arc::new(live.last)))
            .collect();
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
                let row: StoredMember = store::from_json("a group member", member)?;
                let Some(member) = row.into_member(live.get(fp)) else {
                    tracing::warn!(
                        channel = %stored.channel,
                        group_key = %stored.group_key,
                        fingerprint = %fp,
                        "A group member's alert is neither in its row nor live: dropping the member."
                    );
                    store::delete_group_member(conn, &stored.channel, &stored.group_key, fp)?;
                    continue;
                };
                let fp = Fingerprint(fp.clone());
                groups.index.entry(fp.clone()).or_default().push(id.clone());
                members.insert(fp, member);
            }
            groups.schedule.insert((state.next_flush_at, id.clone()));
            groups.groups.insert(id, Group { state, members });
        }
        // The inhibitor's index of firing sources, as the live alerts left it.
        for alert in live.values() {
            groups.pipeline.observe(alert);
        }
        Ok(groups)
    }

    /// Shares the record of undelivered notifications with the senders.
    pub fn set_undelivered(&mut self, undelivered: Undelivered) {
        self.undelivered = undelivered;
    }

    /// Where the stages report what they decide about each alert on each channel (by
    /// default, nowhere).
    pub fn set_history(&mut self, history: Box<dyn History>) {
        self.pipeline.set_history(history);
    }

    /// Which channels hear of acks, and how ack links are made.
    pub fn set_acks(&mut self, acks: AckSetup) {
        self.acks = acks;
    }

    /// When the next flush or escalation step is due.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        let flush = self.schedule.first().map(|(at, _)| *at);
        match (flush, self.escalation.next_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Records one transition: the live alert state and its effect on every group it
    /// belongs to. Call inside the transaction that acknowledges it; the rows it changes
    /// are written by the next [`Groups::flush_due`] or [`Groups::write`].
    pub fn apply(
        &mut self,
        conn: &Conn,
        t: impl Into<Arc<AlertTransition>>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut t = t.into();
        self.pipeline.observe(&t);
        match t.status {
            // Nothing resolves an occurrence: it is only delivered, never live.
            AlertStatus::Firing if t.is_event() => {
                self.apply_firing(conn, &mut t, now, Some(&mut AlertJson::default()))?;
                Ok(())
            }
            AlertStatus::Firing => {
                // Routing first: a repeated firing keeps its original `starts_at`, and the
                // live state should say the same. The members joined are written once
                // the live row is known.
                let joined = self.apply_firing(conn, &mut t, now, None)?;
                let mut json = AlertJson::default();
                let escalations = self.router.escalations(&t);
                if !escalations.is_empty() {
                    self.escalation.plan(conn, &t, &escalations)?;
                }
                let row = store::LiveAlertRow::new(&t, json.of(&t)?.get().to_owned(), now);
                self.writes.live(&t.fingerprint, Some(row));
                self.share_live_alert(&t, &joined)
            }
            AlertStatus::Resolved => {
                self.writes.live(&t.fingerprint, None);
                // A new firing is a new alert: its ack and its escalation end here.
                store::delete_ack(conn, &t.fingerprint)?;
                self.escalation.cancel(conn, &t.fingerprint)?;
                self.apply_resolved(conn, &t, now)
            }
        }
    }

    /// The live alert row holds `t` now: the members whose alert is `t` leave it out of
    /// their rows, and one that left out an earlier transition and is not `t` (routes
    /// changed since) writes its own alert again. The members of the groups `joined` are
    /// written in any case.
    fn share_live_alert(
        &mut self,
        t: &Arc<AlertTransition>,
        joined: &[GroupId],
    ) -> Result<(), StoreError> {
        let Some(ids) = self.index.get(&t.fingerprint) else {
            return Ok(());
        };
        for id in ids {
            let Some(member) = self
                .groups
                .get_mut(id)
                .and_then(|g| g.members.get_mut(&t.fingerprint))
            else {
                continue;
            };
            let live = Arc::ptr_eq(&member.alert, t) || member.alert == *t;
            if live != member.alert_live || joined.contains(id) {
                member.alert_live = live;
                self.writes
                    .member(id, &t.fingerprint, Some(member_row(member)?));
            }
        }
        Ok(())
    }

    /// Joins `t` to the groups its routes give; returns them. See [`Groups::join`] for
    /// `json`.
    fn apply_firing(
        &mut self,
        conn: &Conn,
        t: &mut Arc<AlertTransition>,
        now: DateTime<Utc>,
        mut json: Option<&mut AlertJson>,
    ) -> Result<Vec<GroupId>, StoreError> {
        let targets = self.pipeline.route(conn, t, now)?;
        let mut joined = Vec::with_capacity(targets.len());
        for target in targets {
            joined.push(self.join(conn, t, &target, now, json.as_deref_mut())?);
        }
        Ok(joined)
    }

    /// Makes the firing `t` a member of its group on `target`'s channel (creating the
    /// group), or updates its membership; returns the group. With `json` (`t`'s JSON,
    /// made once for every row that carries it) the member's row is written here, with
    /// its alert; without, the caller writes it.
    fn join(
        &mut self,
        conn: &Conn,
        t: &mut Arc<AlertTransition>,
        target: &Target,
        now: DateTime<Utc>,
        mut json: Option<&mut AlertJson>,
    ) -> Result<GroupId, StoreError> {
        let mut coalesced = false;
        // An occurrence of an event rule is a member of its own: never coalesced.
        let member_key = t.delivery_key();
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
                self.writes
                    .group(&id, Some(store::to_json("a group", &state)?));
                self.schedule.insert((state.next_flush_at, id.clone()));
                self.groups.entry(id.clone()).or_insert(Group {
                    state,
                    members: BTreeMap::new(),
                })
            }
        };
        let member = match group.members.get_mut(&member_key) {
            None => {
                self.index
                    .entry(member_key.clone())
                    .or_default()
                    .push(id.clone());
                group
                    .members
                    .entry(member_key.clone())
                    .or_insert(Member::new(Arc::clone(t)))
            }
            Some(member) if member.alert.status == AlertStatus::Firing => {
                // The same firing again (an evaluator that restarted without its
                // state): keep when it started; nothing changes for the receiver. The
                // groups joined before keep the transition as it came (a copy is made
                // only when one holds it already).
                if t.starts_at != member.alert.starts_at {
                    Arc::make_mut(t).starts_at = member.alert.starts_at;
                    if let Some(json) = json.as_deref_mut() {
                        json.forget();
                    }
                }
                member.alert = Arc::clone(t);
                member
            }
            Some(member) => {
                member.changes += 1;
                member.alert = Arc::clone(t);
                if member.told_firing_at.is_some() {
                    coalesced = true;
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
        // The member's alert is `t` now, whichever way it joined.
        member.alert_live = false;
        if let Some(json) = json {
            self.writes
                .member(&id, &member_key, Some(row_json(member, Some(json.of(t)?))?));
        }
        let decision = if coalesced {
            Decision::Coalesced
        } else {
            Decision::Grouped
        };
        self.pipeline.record(&record(now, t, Some(&id), decision));
        Ok(id)
    }

    fn apply_resolved(
        &mut self,
        conn: &Conn,
        t: &Arc<AlertTransition>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Some(ids) = self.index.get(&t.fingerprint).cloned() else {
            let reason = "resolved; its firing was never queued for a channel";
            log(
                conn,
                now,
                t,
                None,
                Outcome::Dropped,
                None,
                Some(reason.into()),
            )?;
            let decision = Decision::Dropped { reason };
            self.pipeline.record(&record(now, t, None, decision));
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
            member.alert = Arc::clone(t);
            member.alert_live = false;
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
            let decision = match dropped {
                Some(reason) => Decision::Dropped { reason },
                None => Decision::Grouped,
            };
            self.pipeline.record(&record(now, t, Some(&id), decision));
            self.save_or_remove_member(&id, &t.fingerprint)?;
        }
        Ok(())
    }

    /// Persists a member, or removes it (and its group, when empty) if it is dead.
    fn save_or_remove_member(&mut self, id: &GroupId, fp: &Fingerprint) -> Result<(), StoreError> {
        let Some(group) = self.groups.get_mut(id) else {
            return Ok(());
        };
        let Some(member) = group.members.get(fp) else {
            return Ok(());
        };
        if !member.is_dead() {
            let state = member_row(member)?;
            self.writes.member(id, fp, Some(state));
            return Ok(());
        }
        self.remove_member(id, fp);
        Ok(())
    }

    /// Removes a member, and its group when that was the last.
    fn remove_member(&mut self, id: &GroupId, fp: &Fingerprint) {
        let Some(group) = self.groups.get_mut(id) else {
            return;
        };
        if group.members.remove(fp).is_none() {
            return;
        }
        self.writes.member(id, fp, None);
        unindex(&mut self.index, fp, id);
        if group.members.is_empty() {
            self.schedule
                .remove(&(group.state.next_flush_at, id.clone()));
            self.groups.remove(id);
            self.writes.group(id, None);
        }
    }

    /// Flushes every group due at `now`; each notification is written to the outbox and
    /// appended to `out`. `silence_generation` says whether the silences must be reloaded.
    pub fn flush_due(
        &mut self,
        conn: &Conn,
        now: DateTime<Utc>,
        silence_generation: u64,
        out: &mut Vec<Queued>,
    ) -> Result<(), StoreError> {
        // An escalation step reads the live alerts this batch changed.
        self.write(conn)?;
        self.pipeline.refresh(conn, silence_generation)?;
        self.run_escalations(conn, now)?;
        while let Some((at, _)) = self.schedule.first() {
            if *at > now {
                break;
            }
            let Some((_, id)) = self.schedule.pop_first() else {
                break;
            };
            self.flush(conn, id, now, out)?;
        }
        self.write(conn)
    }

    /// Writes the group, member and live alert rows changed since the last write (see
    /// [`writes`]). [`Groups::flush_due`] ends with it; call it before committing what
    /// [`Groups::apply`] did otherwise.
    pub fn write(&mut self, conn: &Conn) -> Result<(), StoreError> {
        self.writes.write(conn)
    }

    /// Runs the escalation steps due at `now`: an alert still firing and not acknowledged
    /// joins the groups of the step's channels; every step due is marked done.
    fn run_escalations(&mut self, conn: &Conn, now: DateTime<Utc>) -> Result<(), StoreError> {
        for due in self.escalation.take_due(now) {
            store::finish_escalation(conn, &due.fingerprint, &due.route, due.index)?;
            let Some(t) = store::load_live_alert(conn, &due.fingerprint)? else {
                continue;
            };
            let mut t = Arc::new(t);
            if store::active_ack(conn, &due.fingerprint, now)?.is_some() {
                let reason = format!("{}: not run, the alert is acknowledged", due.describe());
                log(conn, now, &t, None, Outcome::Dropped, None, Some(reason))?;
                continue;
            }
            let settings = Arc::new(due.step.settings.clone());
            for name in &due.step.channels {
                let Some(channel) = self.router.channel(name) else {
                    let reason = format!(
                        "{}: channel `{name}` is no longer configured",
                        due.describe()
                    );
                    log(
                        conn,
                        now,
                        &t,
                        Some(name),
                        Outcome::Dropped,
                        None,
                        Some(reason),
                    )?;
                    continue;
                };
                let target = Target {
                    channel,
                    route: due.route.clone(),
                    settings: settings.clone(),
                };
                let step = due.describe();
                log(
                    conn,
                    now,
                    &t,
                    Some(name),
                    Outcome::Escalated,
                    None,
                    Some(step.clone()),
                )?;
                self.pipeline.record(&DeliveryRecord {
                    at: now,
                    alert: &t,
                    channel: Some(name),
                    group_key: None,
                    decision: Decision::Escalated { step: &step },
                });
                self.join(conn, &mut t, &target, now, Some(&mut AlertJson::default()))?;
            }
        }
        Ok(())
    }

    /// Tells the `send_acks` channels of the acks not announced yet: each channel that
    /// was told the alert fires gets a notification of its own, at once (no `group_wait`).
    /// Every ack looked at is marked announced.
    pub fn announce_acks(
        &mut self,
        conn: &Conn,
        now: DateTime<Utc>,
        out: &mut Vec<Queued>,
    ) -> Result<(), StoreError> {
        for stored in store::unannounced_acks(conn)? {
            store::mark_announced(conn, &stored.fingerprint)?;
            if self.acks.send_acks.is_empty() || !stored.is_active(now) {
                continue;
            }
            let Some(ids) = self.index.get(&stored.fingerprint) else {
                continue;
            };
            for id in ids {
                if !self.acks.send_acks.contains(&id.channel) {
                    continue;
                }
                let Some(member) = self
                    .groups
                    .get(id)
                    .and_then(|g| g.members.get(&stored.fingerprint))
                else {
                    continue;
                };
                if member.alert.status != AlertStatus::Firing
                    || member.told_firing_at.is_none()
                    || member.alert.starts_at != stored.starts_at
                {
                    continue;
                }
                let n =
                    super::ack::notification(&id.channel, &id.key, &member.alert, &stored.ack, now);
                let seq = store::insert_outbox(
                    conn,
                    &n.id,
                    &id.channel,
                    &id.key,
                    now,
                    &store::to_json("a notification", &n)?,
                )?;
                log(
                    conn,
                    now,
                    &member.alert,
                    Some(&id.channel),
                    Outcome::Queued,
                    Some(&n.id),
                    Some(n.reason.clone()),
                )?;
                out.push(Queued {
                    seq,
                    notification: Arc::new(n),
                });
            }
        }
        Ok(())
    }

    fn flush(
        &mut self,
        conn: &Conn,
        id: GroupId,
        now: DateTime<Utc>,
        out: &mut Vec<Queued>,
    ) -> Result<(), StoreError> {
        let Some(group) = self.groups.get_mut(&id) else {
            return Ok(());
        };
        let group_interval = group.state.settings.group_interval;
        let f = Flush {
            conn,
            now,
            group: &id,
            settings: &group.state.settings,
            undelivered: self.undelivered.contains(&id),
            links: self.acks.links.as_ref(),
        };
        let mut picked: Vec<(Fingerprint, Need)> = Vec::new();
        let mut dirty: Vec<Fingerprint> = Vec::new();
        let mut stopped: Vec<Fingerprint> = Vec::new();
        for (fp, m) in group.members.iter_mut() {
            let mut changed = false;
            let need = self.pipeline.decide(&f, m, &mut changed)?;
            if changed {
                dirty.push(fp.clone());
            }
            match need {
                Some(need) => picked.push((fp.clone(), need)),
                // Dedup and flap pass every occurrence: a muting stage stopped it.
                None if m.alert.is_event() => stopped.push(fp.clone()),
                None => {}
            }
        }

        if !picked.is_empty() {
            let first = group.state.last_notified_at.is_none();
            let queued = self.pipeline.queue(
                &f,
                &group.state.labels,
                first,
                &mut group.members,
                &mut picked,
                &mut dirty,
            )?;
            group.state.last_notified_at = Some(now);
            out.push(queued);
        }

        group.state.next_flush_at = after(now, group_interval.max(Duration::from_millis(1)));
        // A mute held a member back: flush again when it ends, not a group_interval later.
        if let Some(wake) = self.pipeline.take_wake() {
            group.state.next_flush_at = group.state.next_flush_at.min(wake);
        }
        // A flush that sent nothing changes only the next flush time; recomputing it after
        // a restart costs at most one early flush, so it is not written.
        let state = if picked.is_empty() {
            None
        } else {
            Some(store::to_json("a group", &group.state)?)
        };
        let next_flush_at = group.state.next_flush_at;
        for fp in dirty {
            self.save_or_remove_member(&id, &fp)?;
        }
        for fp in stopped {
            self.remove_member(&id, &fp);
        }
        if self.groups.contains_key(&id) {
            if state.is_some() {
                self.writes.group(&id, state);
            }
            self.schedule.insert((next_flush_at, id));
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

/// A record of a group-stage decision about `t` (on the channel of `group`).
fn record<'a>(
    now: DateTime<Utc>,
    t: &'a AlertTransition,
    group: Option<&'a GroupId>,
    decision: Decision<'a>,
) -> DeliveryRecord<'a> {
    DeliveryRecord {
        at: now,
        alert: t,
        channel: group.map(|g| &*g.channel),
        group_key: group.map(|g| &*g.key),
        decision,
    }
}

#[cfg(test)]
mod event_tests;
#[cfg(test)]
mod tests;
