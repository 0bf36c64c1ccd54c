//! Serde types for every frame of Navixy's event stream, in both the documented and the
//! wire shapes (see `PROTOCOL.md`).
//!
//! Every field is optional ("JSON fields that are NULL are omitted") and unknown fields are
//! ignored, so a server that adds a field breaks nothing. Unknown event and item types
//! decode to `Unknown` variants that the caller counts instead of failing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::time::NavixyTime;

/// Navixy's id of a tracker (`tracker/list` `list[].id`); readings and iot events carry it.
pub type TrackerId = i64;
/// Navixy's id of a device (`list[].source.id`); state and lifecycle events carry it.
pub type SourceId = i64;

/// One decoded server frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// The Atmosphere negotiation line, `<uuid>|<heartbeat ms>|X|`.
    Handshake {
        tracking_id: String,
        heartbeat_ms: u64,
    },
    /// A single `X`.
    Heartbeat,
    /// `event: state`: one source state.
    State {
        user_time: Option<NavixyTime>,
        state: Box<SourceState>,
    },
    /// `event: state_batch`, documented (bare states) or wire (tagged items) shape.
    StateBatch {
        user_time: Option<NavixyTime>,
        items: Vec<BatchItem>,
    },
    /// `event: readings_batch`: deltas of sensor readings, plus lifecycle items.
    ReadingsBatch {
        user_time: Option<NavixyTime>,
        items: Vec<BatchItem>,
    },
    /// `event: iot_monitor`.
    IotMonitor { values: Vec<IotTrackerValues> },
    /// `event: lifecycle`.
    Lifecycle(LifecycleItem),
    /// `event: logout`: the session hash is no longer valid.
    Logout { reason: String },
    /// `type: response` to a subscribe or unsubscribe.
    Response(SubscribeResponse),
    /// `type: error`.
    Error(ErrorFrame),
    /// An `event` this engine does not know, by name.
    UnknownEvent { event: String },
}

/// One item of a `state_batch` or `readings_batch`.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchItem {
    /// A source state (documented bare object, or wire `source_state_event`).
    State(Box<SourceState>),
    /// Wire `readings_event`: only what changed.
    Readings(Box<ReadingsItem>),
    /// Wire `lifecycle_event`.
    Lifecycle(LifecycleItem),
    /// An item type this engine does not know.
    Unknown { item_type: String },
    /// An item of a known type with a field of the wrong type (say, speed as a string):
    /// only this item is dropped, the rest of the batch goes on. The caller counts it.
    Invalid(super::decode::DecodeError),
}

/// Calls the macro `$m` with every field of [`SourceState`] that is compared or merged as a
/// whole (all but `gps` and `additional`, which have fields of their own). The cache's
/// merge and the rules' change detection both walk this one list, so a field added to
/// `SourceState` is added here once.
#[macro_export]
macro_rules! with_plain_state_fields {
    ($m:ident) => {
        $m!(
            source_id,
            connection_status,
            movement_status,
            movement_status_update,
            ignition,
            ignition_update,
            gsm,
            last_update,
            battery_level,
            battery_update,
            inputs,
            inputs_update,
            outputs,
            outputs_update,
            actual_track_update
        )
    };
}

/// Calls the macro `$m` with every field of [`Gps`], for the same two walks.
#[macro_export]
macro_rules! with_gps_fields {
    ($m:ident) => {
        $m!(
            updated,
            signal_level,
            location,
            heading,
            speed,
            alt,
            precision,
            gsm_lbs
        )
    };
}

/// A tracker's source state (`tracker/get_state`), full or compact.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct SourceState {
    pub source_id: Option<SourceId>,
    pub gps: Option<Gps>,
    pub connection_status: Option<ConnectionStatus>,
    pub movement_status: Option<MovementStatus>,
    pub movement_status_update: Option<NavixyTime>,
    pub ignition: Option<bool>,
    pub ignition_update: Option<NavixyTime>,
    pub gsm: Option<Gsm>,
    pub last_update: Option<NavixyTime>,
    /// Percent.
    pub battery_level: Option<f64>,
    pub battery_update: Option<NavixyTime>,
    /// Index 0 is input 1.
    pub inputs: Option<Vec<bool>>,
    pub inputs_update: Option<NavixyTime>,
    pub outputs: Option<Vec<bool>>,
    pub outputs_update: Option<NavixyTime>,
    /// Extra fields by name, e.g. `event_code`, `hardware_key`.
    pub additional: Option<BTreeMap<String, AdditionalField>>,
    pub actual_track_update: Option<NavixyTime>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Gps {
    pub updated: Option<NavixyTime>,
    /// Percent.
    pub signal_level: Option<f64>,
    pub location: Option<Location>,
    /// Degrees, 0..360.
    pub heading: Option<f64>,
    /// km/h.
    pub speed: Option<f64>,
    /// Metres.
    pub alt: Option<f64>,
    /// Metres.
    pub precision: Option<f64>,
    pub gsm_lbs: Option<bool>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
pub struct Location {
    pub lat: f64,
    pub lng: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Gsm {
    pub updated: Option<NavixyTime>,
    pub signal_level: Option<f64>,
    pub network_name: Option<String>,
    pub roaming: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct AdditionalField {
    pub value: Option<String>,
    pub updated: Option<NavixyTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    SignalLost,
    JustRegistered,
    JustReplaced,
    Offline,
    Idle,
    Active,
    #[serde(other)]
    Other,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::SignalLost => "signal_lost",
            ConnectionStatus::JustRegistered => "just_registered",
            ConnectionStatus::JustReplaced => "just_replaced",
            ConnectionStatus::Offline => "offline",
            ConnectionStatus::Idle => "idle",
            ConnectionStatus::Active => "active",
            ConnectionStatus::Other => "other",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MovementStatus {
    Moving,
    Stopped,
    Parked,
    #[serde(other)]
    Other,
}

impl MovementStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MovementStatus::Moving => "moving",
            MovementStatus::Stopped => "stopped",
            MovementStatus::Parked => "parked",
            MovementStatus::Other => "other",
        }
    }
}

/// A wire `readings_event`: the sensor readings of one tracker that changed.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ReadingsItem {
    pub tracker_id: Option<TrackerId>,
    pub timestamp: Option<NavixyTime>,
    #[serde(default)]
    pub inputs: Vec<SensorInput>,
    #[serde(default)]
    pub states: Vec<StateValue>,
    #[serde(default)]
    pub virtual_sensors: Vec<VirtualSensor>,
    #[serde(default)]
    pub counters: Vec<Counter>,
}

/// A metering sensor (fuel level, voltage, temperature...).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct SensorInput {
    pub sensor_id: Option<i64>,
    pub label: Option<String>,
    /// e.g. `lls_level_1`, `board_voltage`: the name rules use.
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub value: Option<f64>,
    pub units: Option<String>,
    pub units_type: Option<String>,
    pub update_time: Option<NavixyTime>,
    pub min_value: Option<f64>,
    pub max_value: Option<f64>,
    pub converted_value: Option<f64>,
}

/// A discrete state field, e.g. `obd_mil_status`; its value may be any JSON scalar.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct StateValue {
    pub field: Option<String>,
    #[serde(default)]
    pub value: serde_json::Value,
    pub update_time: Option<NavixyTime>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct VirtualSensor {
    pub sensor_id: Option<i64>,
    pub label: Option<String>,
    /// Usually a string such as `"On"`.
    #[serde(default)]
    pub value: serde_json::Value,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub update_time: Option<NavixyTime>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Counter {
    /// `odometer`, `engine_hours`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub value: Option<f64>,
    pub update_time: Option<NavixyTime>,
}

/// A tracker was blocked, unblocked or removed.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct LifecycleItem {
    pub source_id: Option<SourceId>,
    pub lifecycle_event: LifecycleKind,
    pub timestamp: Option<NavixyTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleKind {
    Block,
    Unblock,
    /// The tracker was removed.
    Corrupt,
    #[serde(other)]
    Other,
}

/// The latest attribute values of one tracker (Data Stream Analyzer).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct IotTrackerValues {
    pub tracker_id: Option<TrackerId>,
    /// Per attribute, newest first, only messages where it was present.
    #[serde(default)]
    pub nonnull_fields: BTreeMap<String, Vec<IotValue>>,
    /// Per attribute, newest first, with nulls where it was missing.
    #[serde(default)]
    pub all_fields: BTreeMap<String, Vec<IotValue>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct IotValue {
    /// May be a number, a string holding a number (`"262.9138"`), or null.
    #[serde(default)]
    pub value: serde_json::Value,
    pub msg_time: Option<NavixyTime>,
    pub srv_time: Option<NavixyTime>,
}

/// The answer to a subscribe: per event, per tracker (or source) id, a status.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct SubscribeResponse {
    pub action: Option<String>,
    #[serde(default)]
    pub events: Vec<String>,
    /// Event name -> statuses.
    #[serde(default)]
    pub data: BTreeMap<String, SubscriptionStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct SubscriptionStatus {
    /// Id -> `normal` | `blocked` | `unknown` | `disallowed`.
    #[serde(default)]
    pub value: BTreeMap<String, String>,
    /// Documented, absent on the wire.
    pub success: Option<bool>,
}

/// A `tracker/list` response: the map from source ids (in state events) to tracker ids
/// (in readings and iot events), and each tracker's label.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct TrackerList {
    pub success: Option<bool>,
    #[serde(default)]
    pub list: Vec<TrackerListEntry>,
    /// Present when `success` is false.
    pub status: Option<ErrorStatus>,
}

/// One tracker of a `tracker/list` response; fields the engine does not use are ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct TrackerListEntry {
    pub id: TrackerId,
    /// The tracker's human name.
    pub label: Option<String>,
    pub group_id: Option<i64>,
    pub source: Option<TrackerSource>,
}

/// Who a tracker is, from `tracker/list` (or just its source id without one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrackerInfo {
    pub id: TrackerId,
    pub source_id: Option<SourceId>,
    pub label: Option<String>,
    pub group_id: Option<i64>,
    /// Whether the account had blocked it when listed (`source.blocked`); `None` when
    /// the list did not say.
    pub blocked: Option<bool>,
}

impl From<&TrackerListEntry> for TrackerInfo {
    /// `list[].id` is the tracker id, `list[].source.id` the source id states carry.
    fn from(t: &TrackerListEntry) -> TrackerInfo {
        TrackerInfo {
            id: t.id,
            source_id: t.source.as_ref().and_then(|s| s.id),
            label: t.label.clone(),
            group_id: t.group_id,
            blocked: t.source.as_ref().and_then(|s| s.blocked),
        }
    }
}

/// The device behind a tracker.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct TrackerSource {
    /// The `source_id` that state and lifecycle events carry.
    pub id: Option<SourceId>,
    /// IMEI or similar; some servers send it as a number.
    #[serde(default, deserialize_with = "string_or_number")]
    pub device_id: Option<String>,
    pub model: Option<String>,
    pub blocked: Option<bool>,
}

/// `type: error`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ErrorFrame {
    pub action: Option<String>,
    pub status: Option<ErrorStatus>,
    pub data: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ErrorStatus {
    pub code: Option<i64>,
    pub description: Option<String>,
}

/// Accepts a string or a number (kept as its decimal text).
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Number(serde_json::Number),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        Some(Raw::Text(s)) => Some(s),
        Some(Raw::Number(n)) => Some(n.to_string()),
        None => None,
    })
}
