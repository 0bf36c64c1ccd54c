//! The alert contract: what an alert is (identity, severity, status), the transition
//! the rules and the source's engine alerts emit and the dispatcher delivers, and the
//! persisted records that let a restart neither re-fire nor forget an alert. Every
//! module that makes or moves alerts depends on this one; it depends on nothing but the
//! protocol's ids.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::navixy::messages::{Location, SourceId, TrackerId};

/// An alert's identity: a stable hash of rule name + tracker id (+ key), as 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(pub String);

/// The name of the source of a single-account config (`source:` without `name:`). Its
/// alerts' fingerprints leave the source out, so they are those of the versions before
/// sources had names: an upgrade neither re-fires nor orphans what is firing.
pub use crate::config::DEFAULT_SOURCE;

impl Fingerprint {
    /// The fingerprint of an alert of source `source` (its name): [`Fingerprint::new`]
    /// for [`DEFAULT_SOURCE`], else with the name fed after the other parts, so that the
    /// same rule on two accounts' tracker 42 makes two alerts.
    pub fn of_source(
        rule: &str,
        source: &str,
        tracker_id: Option<TrackerId>,
        key: Option<&str>,
    ) -> Fingerprint {
        if source == DEFAULT_SOURCE {
            return Fingerprint::new(rule, tracker_id, key);
        }
        let tracker = tracker_id.map(|id| id.to_string());
        let mut parts: Vec<&[u8]> = vec![rule.as_bytes()];
        parts.push(tracker.as_deref().map_or(b"-", str::as_bytes));
        if let Some(k) = key {
            parts.push(k.as_bytes());
        }
        parts.push(b"\x00source");
        parts.push(source.as_bytes());
        Fingerprint::hash(&parts)
    }

    /// Which of `names` (the sources in config order) made this fingerprint for `rule`
    /// on tracker `id`: an alert that records only Navixy's id tells its account so.
    pub fn source_among(
        &self,
        names: &[String],
        rule: &str,
        id: TrackerId,
        key: Option<&str>,
    ) -> Option<crate::navixy::messages::SourceIx> {
        names
            .iter()
            .position(|name| Fingerprint::of_source(rule, name, Some(id), key) == *self)
            .and_then(|i| crate::navixy::messages::SourceIx::try_from(i).ok())
    }

    /// FNV-1a 64 over the parts, separated so that ("ab", 1) and ("a", "b1") differ.
    /// Stable across versions and machines: receivers and the store key on it.
    pub fn new(rule: &str, tracker_id: Option<TrackerId>, key: Option<&str>) -> Fingerprint {
        let tracker = tracker_id.map(|id| id.to_string());
        let mut parts: Vec<&[u8]> = vec![rule.as_bytes()];
        parts.push(tracker.as_deref().map_or(b"-", str::as_bytes));
        if let Some(k) = key {
            parts.push(k.as_bytes());
        }
        Fingerprint::hash(&parts)
    }

    fn hash(parts: &[&[u8]]) -> Fingerprint {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for bytes in parts {
            for b in *bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            h ^= 0xff;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Fingerprint(format!("{h:016x}"))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// The tracker an alert is about, as receivers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackerRef {
    pub id: TrackerId,
    pub label: Option<String>,
    pub source_id: Option<SourceId>,
}

/// An alert went firing or resolved, or an event rule's condition occurred; or (for the
/// history only, [`AlertTransition::pending`]) an alert started to wait out its `for`.
/// Emitted once per change, never per evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertTransition {
    pub fingerprint: Fingerprint,
    pub rule: Arc<str>,
    pub status: AlertStatus,
    pub severity: Severity,
    /// `None` for engine alerts (`navixy_source_down`, `navixy_session_closed`).
    pub tracker: Option<TrackerRef>,
    /// The value of the rule's `key` expression, when it has one.
    pub key: Option<String>,
    /// The rule's labels (not including alertname/tracker/severity).
    pub labels: BTreeMap<String, String>,
    /// Rendered annotations (`summary`, `description`, ...).
    pub annotations: BTreeMap<String, String>,
    /// The rule's `value` expression at the transition, if any (number, string or bool).
    pub value: Option<serde_json::Value>,
    /// When the alert started firing (event-time clock).
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub starts_at: DateTime<Utc>,
    /// When it resolved; `None` while firing.
    #[serde(serialize_with = "crate::rfc3339::serialize_opt")]
    pub ends_at: Option<DateTime<Utc>>,
    /// The engine clock at the transition.
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub at: DateTime<Utc>,
    /// The tracker's last known position.
    pub location: Option<Location>,
    /// Key state fields at the transition (`speed`, `ignition`, `movement_status`, ...).
    pub state: serde_json::Map<String, serde_json::Value>,
    /// The rule's own channels, bypassing routes, when it sets them.
    pub channels: Option<Vec<String>>,
    /// An occurrence of an event rule (`mode: event`): `"<fingerprint>:<starts_at in
    /// ms>"`, unique per occurrence, so that delivery keeps each one apart from the
    /// others of the same alert. `None` for state rules and engine alerts, whose
    /// transitions are a firing and a resolve of one alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurrence_id: Option<String>,
    /// The alert started to wait out its rule's `for`: its condition holds, not yet long
    /// enough. `status` is `firing`, what it will become; `starts_at` is since when it
    /// holds. The history records it (`pending`) and the event stream shows it; nothing
    /// is notified, grouped or kept for it, and a wait that ends without firing leaves no
    /// trace. Only evaluators asked for it emit it (the daemon's).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

impl AlertTransition {
    /// An occurrence of an event rule: it fires once and never resolves.
    pub fn is_event(&self) -> bool {
        self.occurrence_id.is_some()
    }

    /// What it is, in one word: `pending`, `event` (an occurrence), `firing` or
    /// `resolved`; the history's kind and the transitions metric's `status`.
    pub fn kind(&self) -> &'static str {
        if self.pending {
            "pending"
        } else if self.is_event() {
            "event"
        } else {
            self.status.as_str()
        }
    }

    /// What delivery keeps it apart by: the occurrence for an event, else the alert.
    pub fn delivery_key(&self) -> Fingerprint {
        match &self.occurrence_id {
            Some(id) => Fingerprint(id.clone()),
            None => self.fingerprint.clone(),
        }
    }

    /// The resolve of this alert at `at`: the same identity, labels and annotations, so
    /// receivers pair it with the firing they heard. For alerts nothing will evaluate any
    /// more (a removed rule, an engine alert left by a previous run) and for tests.
    pub fn resolved_at(&self, at: DateTime<Utc>) -> AlertTransition {
        AlertTransition {
            status: AlertStatus::Resolved,
            ends_at: Some(at),
            at,
            ..self.clone()
        }
    }
}

/// An alert inside its `for` (its condition holds, not yet long enough): what a stopping
/// daemon keeps so that the next start does not start the wait again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingAlert {
    pub fingerprint: Fingerprint,
    pub rule: String,
    pub tracker_id: TrackerId,
    pub key: Option<String>,
    /// Since when the condition holds.
    pub since: DateTime<Utc>,
}

impl PendingAlert {
    /// What is known of it, in the shape matchers and pages read: its rule, tracker
    /// (`tracker_id` as listed, with `tracker_label`), key and since when, with the
    /// `severity` and `labels` its rule gives it.
    pub fn transition(
        &self,
        severity: Severity,
        labels: BTreeMap<String, String>,
        tracker_label: Option<String>,
    ) -> AlertTransition {
        AlertTransition {
            fingerprint: self.fingerprint.clone(),
            rule: Arc::from(self.rule.as_str()),
            status: AlertStatus::Firing,
            severity,
            tracker: Some(TrackerRef {
                id: self.tracker_id,
                label: tracker_label,
                source_id: None,
            }),
            key: self.key.clone(),
            labels,
            annotations: BTreeMap::new(),
            value: None,
            starts_at: self.since,
            ends_at: None,
            at: self.since,
            location: None,
            state: serde_json::Map::new(),
            channels: None,
            occurrence_id: None,
            pending: false,
        }
    }
}

/// A firing alert as persisted, so that a restart resumes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub fingerprint: Fingerprint,
    pub rule: String,
    pub tracker_id: Option<TrackerId>,
    pub key: Option<String>,
    pub status: AlertStatus,
    pub starts_at: DateTime<Utc>,
    /// The last transition, for the admin API.
    pub last: AlertTransition,
}

/// Who acknowledged a firing alert, when, and why: what notifications carry as the
/// alert's `ack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub by: String,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub at: DateTime<Utc>,
    pub comment: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_source_keeps_the_fingerprint_and_others_have_their_own() {
        let legacy = Fingerprint::new("speeding", Some(21080), None);
        assert_eq!(legacy.0, "61180e867bd606c9");
        assert_eq!(
            Fingerprint::of_source("speeding", DEFAULT_SOURCE, Some(21080), None),
            legacy
        );
        let north = Fingerprint::of_source("speeding", "north", Some(21080), None);
        let south = Fingerprint::of_source("speeding", "south", Some(21080), None);
        assert_ne!(north, legacy);
        assert_ne!(north, south);
        assert_ne!(
            Fingerprint::of_source("navixy_source_down", "south", None, None),
            Fingerprint::new("navixy_source_down", None, None)
        );
    }
}
