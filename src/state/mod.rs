//! The per-tracker state cache: merged latest source state, the previous one, lifecycle,
//! readings merged from deltas, latest iot values, and bounded history windows.
//!
//! Each shard owns its trackers' entries outright (no locks); the engine routes every
//! update to the shard of its tracker id. This module decides what "latest" means: a
//! compact state never erases what only full states carry, and readings are deltas.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::navixy::messages::{
    Counter, IotTrackerValues, IotValue, LifecycleKind, ReadingsItem, SensorInput, SourceState,
    StateValue, Text, TrackerId, TrackerInfo, VirtualSensor,
};

/// A tracker's lifecycle as Navixy reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Lifecycle {
    #[default]
    Active,
    Blocked,
    Removed,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Active => "active",
            Lifecycle::Blocked => "blocked",
            Lifecycle::Removed => "removed",
        }
    }
}

/// One normalized unit of work for a shard: already mapped to a tracker. `tracker_id` is
/// the tracker's key (`navixy::messages::tracker_key`), which is its id for source 0.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    State {
        tracker_id: TrackerId,
        state: Box<SourceState>,
    },
    Readings {
        tracker_id: TrackerId,
        readings: Box<ReadingsItem>,
    },
    Lifecycle {
        tracker_id: TrackerId,
        kind: LifecycleKind,
        at: Option<DateTime<Utc>>,
    },
    Iot {
        tracker_id: TrackerId,
        values: Box<IotTrackerValues>,
    },
}

impl Update {
    pub fn tracker_id(&self) -> TrackerId {
        match self {
            Update::State { tracker_id, .. }
            | Update::Readings { tracker_id, .. }
            | Update::Lifecycle { tracker_id, .. }
            | Update::Iot { tracker_id, .. } => *tracker_id,
        }
    }
}

/// Readings merged from `readings_batch` deltas, each kind keyed by the name rules use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Readings {
    /// Metering sensors by `name` (`lls_level_1`, `board_voltage`).
    pub inputs: HashMap<Text, SensorInput>,
    /// Discrete state fields by `field` (`obd_mil_status`).
    pub states: HashMap<Text, StateValue>,
    /// Virtual sensors by `label`.
    pub virtual_sensors: HashMap<Text, VirtualSensor>,
    /// Counters by `type` (`odometer`, `engine_hours`).
    pub counters: HashMap<Text, Counter>,
}

impl Readings {
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
            && self.states.is_empty()
            && self.virtual_sensors.is_empty()
            && self.counters.is_empty()
    }
}

/// Everything the engine knows about one tracker.
#[derive(Debug, Clone, Default)]
pub struct TrackerState {
    pub info: Arc<TrackerInfo>,
    pub lifecycle: Lifecycle,
    /// False once the source reported it lost (offline connection status, removed).
    pub online: bool,
    /// The merged latest source state; `Arc` so rule evaluation shares it without a copy.
    pub current: Option<Arc<SourceState>>,
    /// The merged state before the latest state update.
    pub prev: Option<Arc<SourceState>>,
    pub readings: Readings,
    /// The newest value of each iot_monitor attribute.
    pub iot: HashMap<String, IotValue>,
    /// Bounded windows of numeric values (see `history`).
    pub history: history::History,
    /// Event time of the newest data for this tracker (its own clock, from the device).
    pub last_data_at: Option<DateTime<Utc>>,
    /// Bumped on every change, so evaluation can skip trackers whose inputs did not change.
    pub version: u64,
}

impl TrackerState {
    /// Whether the tracker sent anything: a state, readings, iot values.
    pub fn has_data(&self) -> bool {
        self.current.is_some() || !self.iot.is_empty() || !self.readings.is_empty()
    }

    /// Whether anything is known of it beyond a label: data, a lifecycle change, or the
    /// list saying whether it is blocked. A tracker known only by name has nothing for a
    /// rule to judge, so the ticker leaves its alerts as they are (after a restart, the
    /// ones restored firing) until something is.
    pub fn has_facts(&self) -> bool {
        self.has_data()
            || self.last_data_at.is_some()
            || self.lifecycle != Lifecycle::Active
            || !self.online
            || self.info.blocked.is_some()
    }
}

pub mod cache;
pub mod history;
