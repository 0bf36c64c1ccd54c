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

/// Text of the stream that is almost always short (an `additional` key and its value, an
/// operator, a sensor's name, label and units): held inline up to 24 bytes, so the words
/// every state and reading repeats cost no allocation, neither to decode nor to free.
pub type Text = compact_str::CompactString;

/// A state's digital inputs or outputs: up to 16 held inline, so reading them allocates
/// nothing for the trackers Navixy knows (4 to 8 of each).
pub type Bits = smallvec::SmallVec<[bool; 16]>;

/// Which configured account (`sources:`) a tracker belongs to: its position in the list.
/// Not Navixy's; 0 for the `source:` shorthand, replay and rule tests.
pub type SourceIx = u16;

/// A map keyed by tracker (or source) id, looked up for every update: the ids are
/// integers, hashed with foldhash (seeded per process) instead of the standard SipHash,
/// which costs several times more per lookup.
pub type IdHashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The bit where a tracker key's source index starts: Navixy's tracker ids stay far below
/// 2^48.
const SOURCE_SHIFT: u32 = 48;

/// A tracker's identity inside the engine: its source and its Navixy id in one `i64`, so
/// that two accounts' tracker 42 are two trackers while the hot path keys maps, picks
/// shards and compares with one integer, as it did with the bare id. Source 0's keys
/// *are* the tracker ids, so a single account keys everything exactly as before.
pub fn tracker_key(source: SourceIx, id: TrackerId) -> TrackerId {
    if source == 0 {
        id
    } else {
        (i64::from(source) << SOURCE_SHIFT) | (id & ((1 << SOURCE_SHIFT) - 1))
    }
}

/// The source and Navixy tracker id of a [`tracker_key`].
pub fn key_parts(key: TrackerId) -> (SourceIx, TrackerId) {
    if key >> SOURCE_SHIFT <= 0 {
        (0, key)
    } else {
        (
            (key >> SOURCE_SHIFT) as SourceIx,
            key & ((1 << SOURCE_SHIFT) - 1),
        )
    }
}

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

/// The fields of a tracker's source state, one line each, as `name: Type => kind`: the
/// one declaration the rest of the engine is generated from. `$m!` receives the struct's
/// attributes, its name, the prefix its fields have in error messages, what the decoder
/// calls it, and the fields. From this table come the struct (every field optional, as
/// Navixy omits nulls), the decoder's field readers (`navixy/decode/lenient.rs`, and
/// `navixy/decode/direct.rs` for the fast path), the decoder's per-field skip mask
/// ([`crate::navixy::decode::StateFields`]), the cache's merge (`state/cache.rs`), the
/// rules' changed-field mask (`rules/script/fields.rs`), the `state.*` leaves rules read
/// and the schema that catches misspelt ones (`rules/script/{context,schema}.rs`).
///
/// Kinds: `leaf` is a value rules read as is (a number, boolean, time, word or string);
/// `bits` is `inputs`/`outputs`; `gps`, `gsm`, `location` and `additional` are objects
/// with readers of their own. Adding a `leaf` line is all a new field takes.
#[macro_export]
macro_rules! source_state_fields {
    ($m:ident) => {
        $m! {
            /// A tracker's source state (`tracker/get_state`), full or compact.
            SourceState "" "a source state object" {
                /// The device's id (not the tracker's: see `tracker.id`).
                source_id: $crate::navixy::messages::SourceId => leaf,
                /// The latest position fix.
                gps: $crate::navixy::messages::Gps => gps,
                /// Whether the device is connected.
                connection_status: $crate::navixy::messages::ConnectionStatus => leaf,
                /// Whether the vehicle moves.
                movement_status: $crate::navixy::messages::MovementStatus => leaf,
                /// When `movement_status` last changed.
                movement_status_update: $crate::navixy::messages::NavixyTime => leaf,
                /// Whether the ignition is on.
                ignition: bool => leaf,
                /// When `ignition` last changed.
                ignition_update: $crate::navixy::messages::NavixyTime => leaf,
                /// The cellular connection, when the device reports it.
                gsm: $crate::navixy::messages::Gsm => gsm,
                /// When the device last sent data.
                last_update: $crate::navixy::messages::NavixyTime => leaf,
                /// The device's battery, percent.
                battery_level: f64 => leaf,
                /// When `battery_level` last changed.
                battery_update: $crate::navixy::messages::NavixyTime => leaf,
                /// Digital inputs: index 0 is input 1.
                inputs: $crate::navixy::messages::Bits => bits,
                /// When `inputs` last changed.
                inputs_update: $crate::navixy::messages::NavixyTime => leaf,
                /// Digital outputs: index 0 is output 1.
                outputs: $crate::navixy::messages::Bits => bits,
                /// When `outputs` last changed.
                outputs_update: $crate::navixy::messages::NavixyTime => leaf,
                /// Extra fields by name, e.g. `event_code`, `hardware_key`.
                additional: ::std::collections::BTreeMap<
                    $crate::navixy::messages::Text,
                    $crate::navixy::messages::AdditionalField,
                > => additional,
                /// When the track was last updated.
                actual_track_update: $crate::navixy::messages::NavixyTime => leaf,
            }
        }
    };
}

/// The fields of [`Gps`], as [`source_state_fields!`] has them.
#[macro_export]
macro_rules! gps_fields {
    ($m:ident) => {
        $m! {
            /// The position fix of a source state.
            Gps "gps." "a gps object" {
                /// When the fix was taken.
                updated: $crate::navixy::messages::NavixyTime => leaf,
                /// GNSS signal, percent.
                signal_level: f64 => leaf,
                /// Where the vehicle is.
                location: $crate::navixy::messages::Location => location,
                /// Heading, degrees 0..360.
                heading: f64 => leaf,
                /// Speed, km/h.
                speed: f64 => leaf,
                /// Altitude, metres.
                alt: f64 => leaf,
                /// Accuracy of the position, metres.
                precision: f64 => leaf,
                /// The position is approximate, from the cell towers.
                gsm_lbs: bool => leaf,
                /// Satellites in the fix (Navixy's `satellites` attribute).
                satellites: i64 => leaf,
                /// Horizontal dilution of precision: the fix's geometry, lower is better.
                hdop: f64 => leaf,
            }
        }
    };
}

/// The fields of [`Gsm`], as [`source_state_fields!`] has them.
#[macro_export]
macro_rules! gsm_fields {
    ($m:ident) => {
        $m! {
            /// The cellular connection of a source state.
            Gsm "gsm." "a gsm object" {
                /// When the cellular data was taken.
                updated: $crate::navixy::messages::NavixyTime => leaf,
                /// Cellular signal, percent.
                signal_level: f64 => leaf,
                /// The operator's name.
                network_name: $crate::navixy::messages::Text => leaf,
                /// Whether the SIM is roaming.
                roaming: bool => leaf,
            }
        }
    };
}

/// Defines a struct of a field table, every field optional, and its field names.
macro_rules! define_struct {
    (
        $(#[$smeta:meta])* $name:ident $prefix:literal $expected:literal {
            $( $(#[$meta:meta])* $field:ident : $ty:ty => $kind:ident ),* $(,)?
        }
    ) => {
        $(#[$smeta])*
        #[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
        pub struct $name {
            $( $(#[$meta])* pub $field: Option<$ty>, )*
        }

        impl $name {
            /// The field names, in the order of the protocol table.
            pub const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];
        }
    };
}

source_state_fields!(define_struct);
gps_fields!(define_struct);
gsm_fields!(define_struct);

/// The position of `name` in `list`, at compile time (a name missing fails the build):
/// the bit of a field in the masks built over `FIELDS`.
pub const fn field_index(list: &[&str], name: &str) -> u32 {
    let mut i = 0;
    while i < list.len() {
        let (a, b) = (list[i].as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return i as u32;
            }
        }
        i += 1;
    }
    panic!("not a field of the table")
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
pub struct Location {
    pub lat: f64,
    pub lng: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct AdditionalField {
    pub value: Option<Text>,
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

/// The objects of a wire `readings_event`, one line a field, as `name "key": Type => kind`
/// (`key` the wire's name for it): the one declaration of each. From this table come the
/// structs, the lenient decoder's readers (`navixy/decode/lenient.rs`), the fast path's
/// (`navixy/decode/direct.rs`, which expects the keys in the table's order, Navixy's) and
/// the property test's generators (`tests/it/foundation/decode_agree.rs`). `$m!` receives
/// each struct's attributes, its name, the prefix its fields have in error messages and
/// what the decoder calls it.
///
/// Kinds: `opt` is a value Navixy may leave out (an `Option`); `json` any JSON value, null
/// when left out.
#[macro_export]
macro_rules! readings_fields {
    ($m:ident) => {
        $m! {
            /// A metering sensor (fuel level, voltage, temperature...).
            SensorInput "inputs." "a sensor object" {
                sensor_id "sensor_id": i64 => opt,
                label "label": $crate::navixy::messages::Text => opt,
                /// e.g. `lls_level_1`, `board_voltage`: the name rules use.
                name "name": $crate::navixy::messages::Text => opt,
                kind "type": $crate::navixy::messages::Text => opt,
                value "value": f64 => opt,
                units "units": $crate::navixy::messages::Text => opt,
                units_type "units_type": $crate::navixy::messages::Text => opt,
                update_time "update_time": $crate::navixy::messages::NavixyTime => opt,
                min_value "min_value": f64 => opt,
                max_value "max_value": f64 => opt,
                converted_value "converted_value": f64 => opt,
            }
            /// A discrete state field, e.g. `obd_mil_status`; its value may be any JSON scalar.
            StateValue "states." "a state object" {
                field "field": $crate::navixy::messages::Text => opt,
                value "value": ::serde_json::Value => json,
                update_time "update_time": $crate::navixy::messages::NavixyTime => opt,
            }
            /// A virtual sensor, by its label.
            VirtualSensor "virtual_sensors." "a virtual sensor object" {
                sensor_id "sensor_id": i64 => opt,
                label "label": $crate::navixy::messages::Text => opt,
                /// Usually a string such as `"On"`.
                value "value": ::serde_json::Value => json,
                kind "type": $crate::navixy::messages::Text => opt,
                update_time "update_time": $crate::navixy::messages::NavixyTime => opt,
            }
            /// A counter.
            Counter "counters." "a counter object" {
                /// `odometer`, `engine_hours`.
                kind "type": $crate::navixy::messages::Text => opt,
                value "value": f64 => opt,
                update_time "update_time": $crate::navixy::messages::NavixyTime => opt,
            }
        }
    };
}

/// Defines the structs of [`readings_fields!`].
macro_rules! define_readings {
    (@ty opt $ty:ty) => { Option<$ty> };
    (@ty json $ty:ty) => { $ty };
    ($(
        $(#[$smeta:meta])* $name:ident $prefix:literal $expected:literal {
            $( $(#[$meta:meta])* $field:ident $key:literal : $ty:ty => $kind:ident ),* $(,)?
        }
    )*) => {$(
        $(#[$smeta])*
        #[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
        pub struct $name {
            $(
                $(#[$meta])*
                #[serde(rename = $key, default)]
                pub $field: define_readings!(@ty $kind $ty),
            )*
        }
    )*};
}

readings_fields!(define_readings);

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
    /// The account it belongs to (see [`tracker_key`]).
    pub source: SourceIx,
    pub source_id: Option<SourceId>,
    pub label: Option<String>,
    pub group_id: Option<i64>,
    /// Whether the account had blocked it when listed (`source.blocked`); `None` when
    /// the list did not say.
    pub blocked: Option<bool>,
}

impl TrackerInfo {
    /// The engine's key of this tracker ([`tracker_key`]).
    pub fn key(&self) -> TrackerId {
        tracker_key(self.source, self.id)
    }
}

impl From<&TrackerListEntry> for TrackerInfo {
    /// `list[].id` is the tracker id, `list[].source.id` the source id states carry.
    fn from(t: &TrackerListEntry) -> TrackerInfo {
        TrackerInfo {
            id: t.id,
            source: 0,
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

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn a_tracker_key_keeps_source_and_id_apart_and_is_the_id_for_source_0() {
        assert_eq!(tracker_key(0, 42), 42);
        assert_eq!(tracker_key(0, -3), -3);
        assert_eq!(key_parts(-3), (0, -3));
        assert_ne!(tracker_key(1, 42), tracker_key(0, 42));
        assert_ne!(tracker_key(1, 42), tracker_key(2, 42));
        for (source, id) in [
            (0, 21001),
            (1, 42),
            (2, 42),
            (SourceIx::MAX >> 1, 4_000_000_000),
        ] {
            assert_eq!(key_parts(tracker_key(source, id)), (source, id));
        }
    }
}
