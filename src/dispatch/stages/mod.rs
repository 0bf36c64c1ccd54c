//! Delivery as stages: every decision between an alert transition and a notification in
//! the outbox, one small type each, composed in [`Pipeline`] and nowhere else.
//!
//! ```text
//! ingest (per transition):  route ──> group
//! flush (per group member): wait ──> dedup/repeat ──> inhibit ──> silence ──> mute ──> flap ──> outbox
//! ```
//!
//! - [`route`]: which channels an alert goes to; unknown channels and unrouted alerts
//!   are logged here.
//! - *group* and *wait* are [`Groups`](super::group::Groups)' own: membership (with the
//!   coalescing half of flap damping) when a transition arrives, and the flush schedule
//!   (`group_wait`, `group_interval`) that starts the flush half of the pipeline.
//! - [`dedup`]: what the channel has not heard (a new alert, a due repeat, a resolve);
//!   everything else stops here.
//! - [`inhibit`], [`silence`], [`mute`]: the muting stages: an alert another firing
//!   alert inhibits, an active silence, a route's time interval.
//! - [`flap`]: the cap on notifications per alert per hour.
//! - [`outbox`]: one notification with every alert that got through, in the outbox.
//!
//! The muting stages come after dedup, where Alertmanager's `notify.go` mutes before it:
//! a mute matters, and is logged, only for an alert that has something to tell, so an
//! alert the channel already knows as firing is not logged as silenced when a silence
//! starts.
//!
//! Every stage reports what it did to each alert on each channel through one
//! [`History`] sink ([`DeliveryRecord`]); the notification log (`store::insert_log`) is
//! written as before, by the stage that decides. The default sink keeps nothing; the
//! dispatcher's is [`history::StoreHistory`], the alert history in the store.
//!
//! This is plain synchronous code on the database thread, inside the transaction that
//! records the transitions. Stages are plain values called in a fixed order, not trait
//! objects, and allocate nothing per alert; the history sink is the one dynamic call.

pub(crate) mod dedup;
pub(crate) mod flap;
pub(crate) mod history;
pub(crate) mod inhibit;
pub(crate) mod mute;
pub(crate) mod outbox;
pub(crate) mod route;
pub(crate) mod silence;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::store::Conn;
use chrono::{DateTime, Utc};

use super::ack::AckLinks;
use super::group::{GroupId, Member, Queued};
use super::routes::{Router, Settings, Target};
use crate::alert::{AlertTransition, Fingerprint};
use crate::store::{self, LogEntry, Outcome, StoreError};

pub use dedup::Need;
pub use history::StoreHistory;

/// What one stage did to one alert on one channel.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryRecord<'a> {
    pub at: DateTime<Utc>,
    pub alert: &'a AlertTransition,
    /// `None` when the alert reached no channel (`unrouted`, a resolve never queued).
    pub channel: Option<&'a str>,
    pub group_key: Option<&'a str>,
    pub decision: Decision<'a>,
}

/// A stage's decision about one alert on one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'a> {
    /// route: no route matched and the rule names no channels.
    Unrouted,
    /// route or group: nothing to tell this channel, and why.
    Dropped { reason: &'a str },
    /// group: the alert is a member of the channel's group, waiting for its flush.
    Grouped,
    /// group: fired again before its resolve was sent; the channel still believes it
    /// firing (flap damping).
    Coalesced,
    /// dedup: the channel was told it is firing and no repeat is due.
    Deduped,
    /// dedup: a repeat is due but waits for the group's undelivered notification.
    RepeatWaits,
    /// inhibit: a firing alert (its fingerprint) of an inhibit rule's source side.
    Inhibited { by: &'a str },
    /// dedup: a repeat is due but the alert is acknowledged.
    Acknowledged,
    /// escalation: a step (described) added this channel.
    Escalated { step: &'a str },
    /// silence: an active silence matched.
    Silenced { silence: &'a str },
    /// mute: the route's time interval mutes the channel (for `active_time_intervals`,
    /// the first of them, outside of which it is).
    Muted { interval: &'a str },
    /// flap: notified `sent` times within the hour; held until the cap frees.
    FlapCapped { sent: usize },
    /// outbox: written to the outbox in the notification `notification`.
    Queued { notification: &'a str },
}

impl Decision<'_> {
    /// The stage that decides this.
    pub fn stage(&self) -> &'static str {
        match self {
            Decision::Unrouted => "route",
            Decision::Dropped { .. } | Decision::Grouped | Decision::Coalesced => "group",
            Decision::Deduped | Decision::RepeatWaits | Decision::Acknowledged => "dedup",
            Decision::Escalated { .. } => "escalation",
            Decision::Inhibited { .. } => "inhibit",
            Decision::Silenced { .. } => "silence",
            Decision::Muted { .. } => "mute",
            Decision::FlapCapped { .. } => "flap",
            Decision::Queued { .. } => "outbox",
        }
    }

    /// A short name, for a history table's column.
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Unrouted => "unrouted",
            Decision::Dropped { .. } => "dropped",
            Decision::Grouped => "grouped",
            Decision::Coalesced => "coalesced",
            Decision::Deduped => "deduped",
            Decision::RepeatWaits => "repeat-waits",
            Decision::Inhibited { .. } => "inhibited",
            Decision::Acknowledged => "acknowledged",
            Decision::Escalated { .. } => "escalated",
            Decision::Silenced { .. } => "silenced",
            Decision::Muted { .. } => "muted",
            Decision::FlapCapped { .. } => "flap-capped",
            Decision::Queued { .. } => "queued",
        }
    }
}

/// Where the stages' decisions go, while the dispatcher's transaction is open: a sink
/// keeps what it records until that transaction commits or rolls back (the store's sink
/// is [`history::StoreHistory`]).
pub trait History: Send {
    fn record(&mut self, record: &DeliveryRecord<'_>);
}

/// The default sink: keeps nothing.
#[derive(Debug, Default)]
pub struct NoHistory;

impl History for NoHistory {
    fn record(&mut self, _: &DeliveryRecord<'_>) {}
}

/// What every flush stage sees of the group being flushed.
pub(crate) struct Flush<'a> {
    pub conn: &'a Conn,
    pub now: DateTime<Utc>,
    pub group: &'a GroupId,
    pub settings: &'a Settings,
    /// A notification of this group is still being delivered (retried).
    pub undelivered: bool,
    /// How ack links are made (`None`: no `server.external_url`, no links).
    pub links: Option<&'a AckLinks>,
}

impl Flush<'_> {
    /// A record of `decision` about `alert` on this group's channel.
    pub fn record<'a>(
        &'a self,
        alert: &'a AlertTransition,
        decision: Decision<'a>,
    ) -> DeliveryRecord<'a> {
        DeliveryRecord {
            at: self.now,
            alert,
            channel: Some(&self.group.channel),
            group_key: Some(&self.group.key),
            decision,
        }
    }

    /// A line in the notification log about `alert` on this group's channel.
    pub fn log(
        &self,
        alert: &AlertTransition,
        outcome: Outcome,
        notification_id: Option<&str>,
        detail: Option<String>,
    ) -> Result<(), StoreError> {
        log(
            self.conn,
            self.now,
            alert,
            Some(&self.group.channel),
            outcome,
            notification_id,
            detail,
        )
    }
}

/// One member of a flushing group on its way through the muting and flap stages.
pub(crate) struct Candidate<'a> {
    pub member: &'a mut Member,
    /// What the channel would hear (dedup's answer).
    pub need: Need,
    /// The member changed and must be written back.
    pub dirty: bool,
}

/// Whether an alert goes on to the next stage.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pass,
    /// Not in this notification; the stage has logged and recorded why.
    Stop,
}

/// A flush stage that lets an alert through or stops it.
pub(crate) trait Stage {
    fn exec(
        &mut self,
        f: &Flush<'_>,
        c: &mut Candidate<'_>,
        history: &mut dyn History,
    ) -> Result<Verdict, StoreError>;
}

/// The stages, in order. The only place that knows the order.
pub(crate) struct Pipeline {
    route: route::Route,
    inhibit: inhibit::Inhibit,
    silence: silence::Silence,
    mute: mute::Mute,
    flap: flap::Flap,
    history: Box<dyn History>,
}

impl Pipeline {
    pub fn new(router: Arc<Router>) -> Pipeline {
        Pipeline {
            route: route::Route::new(router.clone()),
            inhibit: inhibit::Inhibit::new(router.inhibit_rules().to_vec()),
            silence: silence::Silence::default(),
            mute: mute::Mute::new(router.intervals().clone()),
            flap: flap::Flap,
            history: Box::new(NoHistory),
        }
    }

    pub fn set_history(&mut self, history: Box<dyn History>) {
        self.history = history;
    }

    /// Reports a decision taken outside the stages here (group membership).
    pub fn record(&mut self, record: &DeliveryRecord<'_>) {
        self.history.record(record)
    }

    /// Ingest, before routing: every transition, routed or not, for the inhibitor's
    /// index of firing sources.
    pub fn observe(&mut self, t: &AlertTransition) {
        self.inhibit.observe(t);
    }

    /// After a flush: the earliest instant a mute that held back one of its members
    /// ends, if sooner than the group's next flush should be.
    pub fn take_wake(&mut self) -> Option<DateTime<Utc>> {
        self.mute.take_wake()
    }

    /// Ingest: the channels a transition goes to.
    pub fn route(
        &mut self,
        conn: &Conn,
        t: &AlertTransition,
        now: DateTime<Utc>,
    ) -> Result<Vec<Target>, StoreError> {
        self.route.exec(conn, t, now, &mut *self.history)
    }

    /// Before a round of flushes: reloads the silences if the store's changed.
    pub fn refresh(&mut self, conn: &Conn, silence_generation: u64) -> Result<(), StoreError> {
        self.silence.refresh(conn, silence_generation)
    }

    /// Flush: takes one member through dedup/repeat, inhibit, silence, mute and flap.
    /// Returns what it goes into the notification as, if it does; `dirty` is set when
    /// the member changed and must be written back.
    pub fn decide(
        &mut self,
        f: &Flush<'_>,
        member: &mut Member,
        dirty: &mut bool,
    ) -> Result<Option<Need>, StoreError> {
        // The flap window slides for every member at every flush, whatever is decided,
        // so that a resolved member is forgotten once its history leaves the window.
        *dirty |= flap::Flap::slide(member, f.now);
        let Some(need) = dedup::exec(f, member, &mut *self.history)? else {
            return Ok(None);
        };
        let mut c = Candidate {
            member,
            need,
            dirty: false,
        };
        let history = &mut *self.history;
        let through = self.inhibit.exec(f, &mut c, history)? == Verdict::Pass
            && self.silence.exec(f, &mut c, history)? == Verdict::Pass
            && self.mute.exec(f, &mut c, history)? == Verdict::Pass
            && self.flap.exec(f, &mut c, history)? == Verdict::Pass;
        *dirty |= c.dirty;
        if !through {
            return Ok(None);
        }
        // Through: the next mute or hold is news again.
        c.member.quiet_logged = false;
        Ok(Some(need))
    }

    /// Flush, last stage: one notification with the members that got through.
    pub fn queue(
        &mut self,
        f: &Flush<'_>,
        labels: &BTreeMap<String, String>,
        first: bool,
        members: &mut BTreeMap<Fingerprint, Member>,
        picked: &mut [(Fingerprint, Need)],
        dirty: &mut Vec<Fingerprint>,
    ) -> Result<Queued, StoreError> {
        outbox::queue(f, labels, first, members, picked, dirty, &mut *self.history)
    }
}

/// How long from `since` to `now`; zero if `now` is earlier.
pub(crate) fn elapsed(since: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - since).to_std().unwrap_or(Duration::ZERO)
}

/// A line in the notification log.
pub(crate) fn log(
    conn: &Conn,
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

#[cfg(test)]
pub(crate) mod tests;
