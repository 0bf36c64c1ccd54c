//! The live source's health: connection, counters, last error and the subscription's
//! per-tracker statuses, shared with `/readyz` and metrics without locks on the hot path.
//! With several sources, each has its own, and a group ([`SourceHealth::group`]) answers
//! for all of them: connected only while every one is.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use parking_lot::RwLock;
use serde::Serialize;
use tokio::sync::Notify;

use crate::navixy::messages::TrackerId;
use crate::telemetry;

/// A tracker's status in the answer to `subscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TrackerStatus {
    Normal,
    /// No states until unblocked; lifecycle events still come.
    Blocked,
    /// Not this account's tracker.
    Unknown,
    /// Not allowed for this session.
    Disallowed,
    Other(String),
}

impl TrackerStatus {
    pub fn parse(s: &str) -> TrackerStatus {
        match s {
            "normal" => TrackerStatus::Normal,
            "blocked" => TrackerStatus::Blocked,
            "unknown" => TrackerStatus::Unknown,
            "disallowed" => TrackerStatus::Disallowed,
            other => TrackerStatus::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            TrackerStatus::Normal => "normal",
            TrackerStatus::Blocked => "blocked",
            TrackerStatus::Unknown => "unknown",
            TrackerStatus::Disallowed => "disallowed",
            TrackerStatus::Other(s) => s,
        }
    }
}

impl Serialize for TrackerStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Statuses per subscribed event, per tracker id, from the latest `subscribe` answer.
pub type SubscriptionStatuses = BTreeMap<String, BTreeMap<TrackerId, TrackerStatus>>;

/// The source's health, shared with `/readyz` and metrics. Reading the counters is a
/// few atomic loads; the rarely changing parts sit behind a read-mostly lock.
#[derive(Debug)]
pub struct SourceHealth {
    /// The source's name: the `source` label of its metrics.
    name: String,
    /// A group's sources (empty for a source's own health).
    members: Vec<std::sync::Arc<SourceHealth>>,
    connected: AtomicBool,
    /// Milliseconds since the epoch (engine clock) of the last change of `connected`.
    since_ms: AtomicI64,
    reconnects: AtomicU64,
    frames: AtomicU64,
    skipped: AtomicU64,
    session_closed: AtomicBool,
    detail: RwLock<HealthDetail>,
    /// Woken on every change, for [`SourceHealth::wait_until`].
    changed: Notify,
}

#[derive(Debug, Default, Clone)]
struct HealthDetail {
    last_error: Option<String>,
    subscriptions: SubscriptionStatuses,
}

/// A copy of [`SourceHealth`] at one moment, for the admin API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthSnapshot {
    /// A subscription works now.
    pub connected: bool,
    /// Since when `connected` has its value.
    pub since: Option<DateTime<Utc>>,
    /// Reconnect attempts since start.
    pub reconnects: u64,
    /// Frames received (data and control).
    pub frames: u64,
    /// Frames skipped here (oversized, binary).
    pub skipped_frames: u64,
    /// A logout ended the session and it could not be renewed.
    pub session_closed: bool,
    /// The last reason an attempt failed.
    pub last_error: Option<String>,
    pub subscriptions: SubscriptionStatuses,
    /// A group's sources by name (several accounts); the fields above then sum or
    /// combine them.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, HealthSnapshot>,
}

impl SourceHealth {
    /// A source that has not connected yet, as of `now`.
    pub fn new(now: DateTime<Utc>) -> SourceHealth {
        SourceHealth::named(crate::alert::DEFAULT_SOURCE, now)
    }

    /// The health of the source called `name`, not connected yet as of `now`.
    pub fn named(name: &str, now: DateTime<Utc>) -> SourceHealth {
        SourceHealth {
            name: name.to_string(),
            members: Vec::new(),
            connected: AtomicBool::new(false),
            since_ms: AtomicI64::new(now.timestamp_millis()),
            reconnects: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            session_closed: AtomicBool::new(false),
            detail: RwLock::new(HealthDetail::default()),
            changed: Notify::new(),
        }
    }

    /// The health of several sources as one: connected while every one is, counters
    /// summed, the last error of a source that is down (prefixed with its name).
    pub fn group(members: Vec<std::sync::Arc<SourceHealth>>, now: DateTime<Utc>) -> SourceHealth {
        SourceHealth {
            members,
            ..SourceHealth::named("", now)
        }
    }

    /// The source's name (empty for a group).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A group's sources; empty for a source's own health.
    pub fn members(&self) -> &[std::sync::Arc<SourceHealth>] {
        &self.members
    }

    pub fn is_connected(&self) -> bool {
        if !self.members.is_empty() {
            return self.members.iter().all(|m| m.is_connected());
        }
        self.connected.load(Ordering::Acquire)
    }

    /// The first source of a group that is down (the source itself when it is not a
    /// group).
    fn down_member(&self) -> Option<&SourceHealth> {
        self.members
            .iter()
            .find(|m| !m.is_connected())
            .map(|m| &**m)
    }

    /// Since when the source is connected (or not).
    pub fn since(&self) -> Option<DateTime<Utc>> {
        if !self.members.is_empty() {
            // Down since the first member went down; up since the last came up.
            return match self.down_member() {
                Some(m) => m.since(),
                None => self.members.iter().filter_map(|m| m.since()).max(),
            };
        }
        DateTime::from_timestamp_millis(self.since_ms.load(Ordering::Acquire))
    }

    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
            + self.members.iter().map(|m| m.reconnects()).sum::<u64>()
    }

    pub fn frames_received(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
            + self
                .members
                .iter()
                .map(|m| m.frames_received())
                .sum::<u64>()
    }

    pub fn frames_skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
            + self.members.iter().map(|m| m.frames_skipped()).sum::<u64>()
    }

    pub fn session_closed(&self) -> bool {
        self.session_closed.load(Ordering::Relaxed)
            || self.members.iter().any(|m| m.session_closed())
    }

    /// The last reason an attempt failed; in a group, that of the first source that is
    /// down (or else of the first that had one), prefixed with its name.
    pub fn last_error(&self) -> Option<String> {
        if !self.members.is_empty() {
            let member = self.down_member().or_else(|| {
                self.members
                    .iter()
                    .find(|m| m.last_error().is_some())
                    .map(|m| &**m)
            })?;
            let error = member
                .last_error()
                .unwrap_or_else(|| "not connected yet".into());
            return Some(format!("source {}: {error}", member.name));
        }
        self.detail.read().last_error.clone()
    }

    /// The subscription's statuses; in a group, those of the first source (tracker ids
    /// of different accounts would collide: each source's are in its own snapshot).
    pub fn subscriptions(&self) -> SubscriptionStatuses {
        if let Some(first) = self.members.first() {
            return first.subscriptions();
        }
        self.detail.read().subscriptions.clone()
    }

    /// Trackers any subscribed event reports blocked (in a group, the first source's).
    pub fn blocked_trackers(&self) -> Vec<TrackerId> {
        if let Some(first) = self.members.first() {
            return first.blocked_trackers();
        }
        let detail = self.detail.read();
        let mut ids: Vec<TrackerId> = detail
            .subscriptions
            .values()
            .flat_map(|m| m.iter())
            .filter(|(_, s)| **s == TrackerStatus::Blocked)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        HealthSnapshot {
            connected: self.is_connected(),
            since: self.since(),
            reconnects: self.reconnects(),
            frames: self.frames_received(),
            skipped_frames: self.frames_skipped(),
            session_closed: self.session_closed(),
            last_error: self.last_error(),
            subscriptions: self.subscriptions(),
            sources: self
                .members
                .iter()
                .map(|m| (m.name.clone(), m.snapshot()))
                .collect(),
        }
    }

    /// Waits until `condition` holds (checked at once and after every change, of any
    /// source of a group).
    pub async fn wait_until(&self, condition: impl Fn(&SourceHealth) -> bool) {
        loop {
            let mut waits: Vec<_> = std::iter::once(self)
                .chain(self.members.iter().map(|m| &**m))
                .map(|h| Box::pin(h.changed.notified()))
                .collect();
            for wait in &mut waits {
                wait.as_mut().enable();
            }
            if condition(self) {
                return;
            }
            futures_util::future::select_all(waits).await;
        }
    }

    pub(super) fn set_connected(&self, connected: bool, at: DateTime<Utc>) {
        if self.connected.swap(connected, Ordering::AcqRel) != connected {
            self.since_ms
                .store(at.timestamp_millis(), Ordering::Release);
            metrics::gauge!(telemetry::SOURCE_UP, "source" => self.name.clone())
                .set(if connected { 1.0 } else { 0.0 });
        }
        self.changed.notify_waiters();
    }

    pub(super) fn set_session_closed(&self, closed: bool) {
        self.session_closed.store(closed, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub(super) fn set_error(&self, error: String) {
        self.detail.write().last_error = Some(error);
        self.changed.notify_waiters();
    }

    pub(super) fn set_subscriptions(&self, statuses: SubscriptionStatuses) {
        self.detail.write().subscriptions = statuses;
        self.changed.notify_waiters();
    }

    pub(super) fn bump_reconnects(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(telemetry::WS_RECONNECTS, "source" => self.name.clone()).increment(1);
        self.changed.notify_waiters();
    }

    /// Health only: the engine counts the frames it is handed in `telemetry::FRAMES`,
    /// so counting them here too would double them.
    pub(super) fn bump_frames(&self) {
        self.frames.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn bump_skipped(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn health_reports_blocked_trackers_and_snapshots() {
        let health = SourceHealth::new(Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap());
        let statuses = SubscriptionStatuses::from([
            (
                "state_batch".to_string(),
                BTreeMap::from([(1, TrackerStatus::Normal), (2, TrackerStatus::Blocked)]),
            ),
            (
                "readings_batch".to_string(),
                BTreeMap::from([
                    (2, TrackerStatus::Blocked),
                    (3, TrackerStatus::parse("weird")),
                ]),
            ),
        ]);
        health.set_subscriptions(statuses);
        assert_eq!(health.blocked_trackers(), vec![2]);
        let json = serde_json::to_value(health.snapshot()).unwrap();
        assert_eq!(json["subscriptions"]["readings_batch"]["3"], "weird");
        assert_eq!(json["connected"], false);
    }

    #[test]
    fn a_group_is_connected_while_every_source_is_and_names_the_one_down() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap();
        let north = std::sync::Arc::new(SourceHealth::named("north", t0));
        let south = std::sync::Arc::new(SourceHealth::named("south", t0));
        let group = SourceHealth::group(vec![north.clone(), south.clone()], t0);
        assert!(!group.is_connected());
        north.set_connected(true, t0);
        south.set_connected(true, t0 + chrono::Duration::seconds(5));
        assert!(group.is_connected());
        assert_eq!(group.since(), Some(t0 + chrono::Duration::seconds(5)));
        south.set_error("connection reset".into());
        south.set_connected(false, t0 + chrono::Duration::seconds(9));
        north.bump_reconnects();
        south.bump_reconnects();
        assert!(!group.is_connected());
        assert_eq!(group.since(), Some(t0 + chrono::Duration::seconds(9)));
        assert_eq!(
            group.last_error().as_deref(),
            Some("source south: connection reset")
        );
        assert_eq!(group.reconnects(), 2);
        let json = serde_json::to_value(group.snapshot()).unwrap();
        assert_eq!(json["sources"]["north"]["connected"], true);
        assert_eq!(json["sources"]["south"]["connected"], false);
        // A source's own snapshot has no `sources`.
        assert!(
            serde_json::to_value(north.snapshot())
                .unwrap()
                .get("sources")
                .is_none()
        );
    }

    #[tokio::test]
    async fn waiting_on_a_group_wakes_on_a_source_change() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap();
        let north = std::sync::Arc::new(SourceHealth::named("north", t0));
        let south = std::sync::Arc::new(SourceHealth::named("south", t0));
        let group = SourceHealth::group(vec![north.clone(), south.clone()], t0);
        north.set_connected(true, t0);
        let wait = group.wait_until(|h| h.is_connected());
        tokio::pin!(wait);
        assert!(futures_util::poll!(wait.as_mut()).is_pending());
        south.set_connected(true, t0);
        wait.await;
    }
}
