//! One shard's trackers and how updates change them.
//!
//! Merging rules: a state update overlays the previous merged state field by field, so a
//! compact state (no inputs, outputs, gsm, additional...) never erases what only full
//! states carry; `additional` merges by key. Readings are deltas: each sensor, state
//! field, virtual sensor and counter replaces only its own entry. Lifecycle moves the
//! tracker between active, blocked and removed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use compact_str::format_compact;

use super::history::HistoryPolicy;
use super::{Lifecycle, TrackerState, Update};
use crate::navixy::messages::{
    AdditionalField, ConnectionStatus, Gps, IotTrackerValues, LifecycleKind, ReadingsItem,
    SourceState, Text, TrackerId,
};
use crate::navixy::messages::{IdHashMap, TrackerInfo};

/// The trackers of one shard. Owned by one worker; no locks.
#[derive(Debug)]
pub struct ShardCache {
    trackers: IdHashMap<TrackerId, TrackerState>,
    history: HistoryPolicy,
    tz: Tz,
}

impl ShardCache {
    /// `tz` reads Navixy's offset-less times; `history` sizes the windows.
    pub fn new(history: HistoryPolicy, tz: Tz) -> Self {
        ShardCache {
            trackers: IdHashMap::default(),
            history,
            tz,
        }
    }

    /// A tracker by its key (`navixy::messages::tracker_key`: the id, for source 0).
    pub fn get(&self, key: TrackerId) -> Option<&TrackerState> {
        self.trackers.get(&key)
    }

    pub fn iter(&self) -> impl Iterator<Item = &TrackerState> {
        self.trackers.values()
    }

    pub fn len(&self) -> usize {
        self.trackers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.trackers.is_empty()
    }

    pub fn history_policy(&self) -> &HistoryPolicy {
        &self.history
    }

    /// A new rule set may need longer (or no) windows; existing points are pruned lazily.
    pub fn set_history_policy(&mut self, policy: HistoryPolicy) {
        self.history = policy;
    }

    /// Labels and source ids from `tracker/list`; the tracker's state is kept. When the
    /// list first says, or says anew, whether the tracker is blocked, the lifecycle follows:
    /// a blocked tracker sends no state, so after a restart the list is the only witness
    /// of a block that happened while the engine was down.
    pub fn set_info(&mut self, info: TrackerInfo) {
        let entry = self.entry(info.key());
        if *entry.info != info {
            if info.blocked != entry.info.blocked {
                match (info.blocked, entry.lifecycle) {
                    (Some(true), Lifecycle::Active) => entry.lifecycle = Lifecycle::Blocked,
                    (Some(false), Lifecycle::Blocked) => entry.lifecycle = Lifecycle::Active,
                    _ => {}
                }
            }
            entry.info = Arc::new(info);
            entry.version += 1;
        }
    }

    fn entry(&mut self, id: TrackerId) -> &mut TrackerState {
        new_entry(&mut self.trackers, id)
    }

    /// Applies one update and returns the tracker it changed.
    pub fn apply(&mut self, update: Update) -> &TrackerState {
        let ShardCache {
            trackers,
            history: policy,
            tz,
        } = self;
        let tz = *tz;
        let event_time = update.event_time(tz);
        let tracker = new_entry(trackers, update.tracker_id());
        match update {
            Update::State { state, .. } => apply_state(tracker, state, event_time, tz, policy),
            Update::Readings { readings, .. } => {
                apply_readings(tracker, *readings, event_time, tz, policy)
            }
            Update::Lifecycle { kind, .. } => apply_lifecycle(tracker, kind),
            Update::Iot { values, .. } => apply_iot(tracker, *values),
        }
        if let Some(t) = event_time
            && tracker.last_data_at.is_none_or(|last| t > last)
        {
            tracker.last_data_at = Some(t);
        }
        tracker.version += 1;
        tracker
    }
}

/// `key` is the tracker's [`crate::navixy::messages::tracker_key`].
fn new_entry(
    trackers: &mut IdHashMap<TrackerId, TrackerState>,
    key: TrackerId,
) -> &mut TrackerState {
    trackers.entry(key).or_insert_with(|| {
        let (source, id) = crate::navixy::messages::key_parts(key);
        TrackerState {
            info: Arc::new(TrackerInfo {
                id,
                source,
                ..TrackerInfo::default()
            }),
            online: true,
            ..TrackerState::default()
        }
    })
}

fn apply_state(
    tracker: &mut TrackerState,
    new: Box<SourceState>,
    event_time: Option<DateTime<Utc>>,
    tz: Tz,
    policy: &HistoryPolicy,
) {
    if tracker.info.source_id.is_none()
        && let Some(source_id) = new.source_id
    {
        Arc::make_mut(&mut tracker.info).source_id = Some(source_id);
    }
    let merged = match tracker.current.as_deref() {
        Some(old) => merge_state(old, *new),
        None => *new,
    };
    if let Some(status) = merged.connection_status {
        tracker.online = !matches!(
            status,
            ConnectionStatus::Offline | ConnectionStatus::SignalLost
        ) && tracker.lifecycle != Lifecycle::Removed;
    }
    if policy.enabled() {
        let fallback_ms = event_time.map(|t| t.timestamp_millis());
        if let Some(gps) = &merged.gps {
            let at = gps
                .updated
                .map(|t| t.to_utc(tz).timestamp_millis())
                .or(fallback_ms);
            if let (Some(at), Some(speed)) = (at, gps.speed) {
                tracker.history.record("speed", at, speed, policy);
            }
        }
        if let Some(level) = merged.battery_level {
            let at = merged
                .battery_update
                .map(|t| t.to_utc(tz).timestamp_millis())
                .or(fallback_ms);
            if let Some(at) = at {
                tracker.history.record("battery_level", at, level, policy);
            }
        }
        if let Some(gsm) = &merged.gsm
            && let Some(signal) = gsm.signal_level
        {
            let at = gsm
                .updated
                .map(|t| t.to_utc(tz).timestamp_millis())
                .or(fallback_ms);
            if let Some(at) = at {
                tracker.history.record("gsm_signal", at, signal, policy);
            }
        }
    }
    tracker.prev = tracker.current.take();
    tracker.current = Some(Arc::new(merged));
}

/// `new` with every field it lacks taken from `old`. Only the fields a compact state
/// lacks are cloned, so a full state costs no copy at all.
fn merge_state(old: &SourceState, mut new: SourceState) -> SourceState {
    new.merge_from(old);
    new
}

/// A protocol object that takes from an older one what it lacks.
trait Merge {
    fn merge_from(&mut self, old: &Self);
}

/// The merge of a field table (`navixy::messages`): `gps` merges field by field,
/// `additional` by key, every other field as a whole.
macro_rules! merge_fields {
    (
        $(#[$smeta:meta])* $name:ident $prefix:literal $expected:literal {
            $( $(#[$meta:meta])* $field:ident : $ty:ty => $kind:ident ),* $(,)?
        }
    ) => {
        impl Merge for $name {
            fn merge_from(&mut self, old: &Self) {
                $( merge_fields!(@ $kind self.$field, old.$field); )*
            }
        }
    };
    (@ gps $new:expr, $old:expr) => {
        merge_nested(&mut $new, &$old)
    };
    (@ additional $new:expr, $old:expr) => {
        merge_additional(&mut $new, &$old)
    };
    (@ $kind:ident $new:expr, $old:expr) => {
        keep(&mut $new, &$old)
    };
}

crate::source_state_fields!(merge_fields);
crate::gps_fields!(merge_fields);

fn keep<T: Clone>(new: &mut Option<T>, old: &Option<T>) {
    if new.is_none() {
        new.clone_from(old);
    }
}

fn merge_nested<T: Merge + Clone>(new: &mut Option<T>, old: &Option<T>) {
    match (new.as_mut(), old) {
        (Some(new), Some(old)) => new.merge_from(old),
        (None, Some(_)) => new.clone_from(old),
        _ => {}
    }
}

fn merge_additional(
    new: &mut Option<BTreeMap<Text, AdditionalField>>,
    old: &Option<BTreeMap<Text, AdditionalField>>,
) {
    match (new.as_mut(), old) {
        // A full state usually carries every key again: a key is copied only when missing.
        (Some(add), Some(old_add)) => {
            for (k, v) in old_add {
                if !add.contains_key(k) {
                    add.insert(k.clone(), v.clone());
                }
            }
        }
        (None, Some(_)) => new.clone_from(old),
        _ => {}
    }
}

fn apply_readings(
    tracker: &mut TrackerState,
    item: ReadingsItem,
    event_time: Option<DateTime<Utc>>,
    tz: Tz,
    policy: &HistoryPolicy,
) {
    let fallback_ms = event_time.map(|t| t.timestamp_millis());
    let readings = &mut tracker.readings;
    for input in item.inputs {
        let Some(name) = input.name.as_deref() else {
            continue;
        };
        if let Some(value) = input.value {
            let at = input
                .update_time
                .map(|t| t.to_utc(tz).timestamp_millis())
                .or(fallback_ms);
            if let Some(at) = at {
                tracker.history.record(name, at, value, policy);
            }
        }
        put(&mut readings.inputs, input, |i| i.name.as_deref());
    }
    for state in item.states {
        put(&mut readings.states, state, |s| s.field.as_deref());
    }
    for sensor in item.virtual_sensors {
        let key = sensor
            .label
            .clone()
            .or_else(|| sensor.sensor_id.map(|id| format_compact!("{id}")));
        if let Some(key) = key {
            readings.virtual_sensors.insert(key, sensor);
        }
    }
    for counter in item.counters {
        let Some(kind) = counter.kind.as_deref() else {
            continue;
        };
        if let Some(value) = counter.value {
            let at = counter
                .update_time
                .map(|t| t.to_utc(tz).timestamp_millis())
                .or(fallback_ms);
            if let Some(at) = at {
                tracker.history.record(kind, at, value, policy);
            }
        }
        put(&mut readings.counters, counter, |c| c.kind.as_deref());
    }
}

/// Replaces the entry `name` (readings are deltas: the same names again and again), and
/// copies the name only for an entry that is new.
fn put<V>(map: &mut HashMap<Text, V>, value: V, name: impl Fn(&V) -> Option<&str>) {
    let Some(key) = name(&value) else {
        return;
    };
    if let Some(slot) = map.get_mut(key) {
        *slot = value;
    } else {
        let key = Text::from(key);
        map.insert(key, value);
    }
}

fn apply_lifecycle(tracker: &mut TrackerState, kind: LifecycleKind) {
    match kind {
        LifecycleKind::Block => tracker.lifecycle = Lifecycle::Blocked,
        LifecycleKind::Unblock => tracker.lifecycle = Lifecycle::Active,
        LifecycleKind::Corrupt => {
            tracker.lifecycle = Lifecycle::Removed;
            tracker.online = false;
        }
        LifecycleKind::Other => {}
    }
}

fn apply_iot(tracker: &mut TrackerState, values: IotTrackerValues) {
    // `nonnull_fields` is newest first and has no gaps: its head is the latest value.
    for (name, mut queue) in values.nonnull_fields {
        if !queue.is_empty() {
            tracker.iot.insert(name, queue.swap_remove(0));
        }
    }
}

impl Update {
    /// The update's own event time: state `last_update`, else `gps.updated`; readings
    /// `timestamp`, else the newest `update_time`; lifecycle its timestamp; iot the newest
    /// `msg_time`. Offset-less times are read in `tz`.
    pub fn event_time(&self, tz: Tz) -> Option<DateTime<Utc>> {
        match self {
            Update::State { state, .. } => state
                .last_update
                .or_else(|| state.gps.as_ref().and_then(|g| g.updated))
                .map(|t| t.to_utc(tz)),
            Update::Readings { readings, .. } => {
                readings.timestamp.map(|t| t.to_utc(tz)).or_else(|| {
                    let inputs = readings.inputs.iter().filter_map(|i| i.update_time);
                    let states = readings.states.iter().filter_map(|s| s.update_time);
                    let counters = readings.counters.iter().filter_map(|c| c.update_time);
                    inputs
                        .chain(states)
                        .chain(counters)
                        .map(|t| t.to_utc(tz))
                        .max()
                })
            }
            Update::Lifecycle { at, .. } => *at,
            Update::Iot { values, .. } => values
                .nonnull_fields
                .values()
                .filter_map(|q| q.first().and_then(|v| v.msg_time))
                .map(|t| t.to_utc(tz))
                .max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::navixy::messages::*;

    fn t(s: &str) -> Option<NavixyTime> {
        NavixyTime::parse(s)
    }

    fn cache() -> ShardCache {
        ShardCache::new(
            HistoryPolicy::for_window(Duration::from_secs(3600)),
            chrono_tz::Europe::Berlin,
        )
    }

    fn full_state() -> SourceState {
        let mut additional = BTreeMap::new();
        additional.insert(
            "event_code".into(),
            AdditionalField {
                value: Some("42".into()),
                updated: t("2025-10-08 17:22:29"),
            },
        );
        SourceState {
            source_id: Some(10284),
            gps: Some(Gps {
                updated: t("2025-10-08 17:27:04"),
                location: Some(Location {
                    lat: 52.5,
                    lng: 13.4,
                }),
                speed: Some(36.0),
                heading: Some(94.0),
                ..Gps::default()
            }),
            connection_status: Some(ConnectionStatus::Active),
            movement_status: Some(MovementStatus::Moving),
            ignition: Some(true),
            last_update: t("2025-10-08 17:27:05"),
            battery_level: Some(87.0),
            inputs: Some(Bits::from_slice(&[true, false])),
            outputs: Some(Bits::from_slice(&[false])),
            additional: Some(additional),
            ..SourceState::default()
        }
    }

    fn compact_state(speed: f64, at: &str) -> SourceState {
        SourceState {
            source_id: Some(10284),
            gps: Some(Gps {
                updated: t(at),
                speed: Some(speed),
                location: Some(Location {
                    lat: 52.6,
                    lng: 13.5,
                }),
                ..Gps::default()
            }),
            connection_status: Some(ConnectionStatus::Active),
            movement_status: Some(MovementStatus::Parked),
            ignition: Some(false),
            last_update: t(at),
            ..SourceState::default()
        }
    }

    fn state(id: TrackerId, s: SourceState) -> Update {
        Update::State {
            tracker_id: id,
            state: Box::new(s),
        }
    }

    #[test]
    fn a_compact_state_keeps_what_only_full_states_carry() {
        let mut c = cache();
        c.apply(state(21080, full_state()));
        let tr = c.apply(state(21080, compact_state(0.0, "2025-10-08 17:30:00")));
        let cur = tr.current.as_deref().expect("merged state");
        // Overlaid by the compact state:
        assert_eq!(cur.ignition, Some(false));
        assert_eq!(cur.movement_status, Some(MovementStatus::Parked));
        assert_eq!(cur.gps.as_ref().and_then(|g| g.speed), Some(0.0));
        // Kept from the full state:
        assert_eq!(cur.inputs.as_deref(), Some(&[true, false][..]));
        assert_eq!(cur.battery_level, Some(87.0));
        assert_eq!(cur.gps.as_ref().and_then(|g| g.heading), Some(94.0));
        let code = cur.additional.as_ref().and_then(|a| a.get("event_code"));
        assert_eq!(code.and_then(|f| f.value.as_deref()), Some("42"));
        // The previous state is the merged one before this update.
        let prev = tr.prev.as_deref().expect("previous state");
        assert_eq!(prev.ignition, Some(true));
        assert_eq!(tr.info.source_id, Some(10284));
        assert_eq!(tr.version, 2);
    }

    #[test]
    fn additional_merges_by_key_the_newer_value_winning() {
        // `full_state` carries `event_code` 42; each state here adds or replaces one key.
        let with = |key: &str, value: &str, at: &str| {
            let mut s = full_state();
            let field = AdditionalField {
                value: Some(value.into()),
                updated: t(at),
            };
            s.additional
                .get_or_insert_default()
                .insert(key.into(), field);
            s
        };
        let mut c = cache();
        c.apply(state(
            21080,
            with("hardware_key", "1", "2025-10-08 17:20:00"),
        ));
        let tr = c.apply(state(21080, with("event_code", "7", "2025-10-08 17:31:00")));
        let merged = tr.current.as_ref().and_then(|s| s.additional.as_ref());
        let value = |key: &str| {
            merged
                .and_then(|a| a.get(key))
                .and_then(|f| f.value.as_deref())
        };
        assert_eq!(value("event_code"), Some("7"), "the newer state's value");
        assert_eq!(
            value("hardware_key"),
            Some("1"),
            "kept from the older state"
        );
        assert_eq!(merged.map(BTreeMap::len), Some(2));
    }

    #[test]
    fn offline_connection_status_marks_the_tracker_offline() {
        let mut c = cache();
        let mut s = compact_state(0.0, "2025-10-08 17:30:00");
        s.connection_status = Some(ConnectionStatus::Offline);
        assert!(!c.apply(state(1, s)).online);
        let back = compact_state(0.0, "2025-10-08 17:31:00");
        assert!(c.apply(state(1, back)).online);
    }

    #[test]
    fn readings_are_deltas_per_entry() {
        let mut c = cache();
        let first = ReadingsItem {
            tracker_id: Some(7),
            timestamp: t("2025-02-11 15:12:58"),
            inputs: vec![
                SensorInput {
                    name: Some("lls_level_1".into()),
                    value: Some(262.9),
                    update_time: t("2025-02-11 15:12:58"),
                    ..SensorInput::default()
                },
                SensorInput {
                    name: Some("board_voltage".into()),
                    value: Some(27.4),
                    ..SensorInput::default()
                },
            ],
            counters: vec![Counter {
                kind: Some("odometer".into()),
                value: Some(1000.0),
                update_time: t("2025-02-11 15:12:58"),
            }],
            ..ReadingsItem::default()
        };
        c.apply(Update::Readings {
            tracker_id: 7,
            readings: Box::new(first),
        });
        let delta = ReadingsItem {
            tracker_id: Some(7),
            timestamp: t("2025-02-11 15:22:58"),
            inputs: vec![SensorInput {
                name: Some("lls_level_1".into()),
                value: Some(240.0),
                update_time: t("2025-02-11 15:22:58"),
                ..SensorInput::default()
            }],
            ..ReadingsItem::default()
        };
        let tr = c.apply(Update::Readings {
            tracker_id: 7,
            readings: Box::new(delta),
        });
        let fuel = tr.readings.inputs.get("lls_level_1").and_then(|i| i.value);
        let volts = tr
            .readings
            .inputs
            .get("board_voltage")
            .and_then(|i| i.value);
        assert_eq!(fuel, Some(240.0));
        assert_eq!(volts, Some(27.4), "a delta must not erase other sensors");
        assert!(tr.readings.counters.contains_key("odometer"));
        // Fuel history in Berlin time: 15:22:58 CET is 14:22:58 UTC.
        let series = tr.history.series("lls_level_1").expect("fuel history");
        let now = chrono::DateTime::parse_from_rfc3339("2025-02-11T14:22:58Z")
            .expect("time")
            .timestamp_millis();
        let drop = series.largest_fall(now, 15 * 60 * 1000).expect("fall");
        assert!((drop - 22.9).abs() < 0.01, "drop {drop}");
        assert_eq!(
            tr.last_data_at.map(|t| t.to_rfc3339()),
            Some("2025-02-11T14:22:58+00:00".into())
        );
    }

    #[test]
    fn the_list_says_when_a_tracker_is_blocked_and_events_say_it_after() {
        let mut c = cache();
        let listed = |blocked| TrackerInfo {
            id: 3,
            blocked,
            ..TrackerInfo::default()
        };
        let lifecycle = |c: &ShardCache| c.get(3).map(|t| t.lifecycle);
        c.set_info(listed(Some(true)));
        assert_eq!(lifecycle(&c), Some(Lifecycle::Blocked));
        // An unblock event is newer than the list: a refresh that says the same as
        // before does not undo it.
        c.apply(Update::Lifecycle {
            tracker_id: 3,
            kind: LifecycleKind::Unblock,
            at: None,
        });
        c.set_info(TrackerInfo {
            label: Some("Van 3".into()),
            ..listed(Some(true))
        });
        assert_eq!(lifecycle(&c), Some(Lifecycle::Active));
        // A block the stream did not tell, then an unblock.
        c.set_info(listed(Some(false)));
        c.set_info(listed(Some(true)));
        assert_eq!(lifecycle(&c), Some(Lifecycle::Blocked));
        c.set_info(listed(Some(false)));
        assert_eq!(lifecycle(&c), Some(Lifecycle::Active));
        // A list that does not say changes nothing.
        c.set_info(listed(Some(true)));
        c.set_info(listed(None));
        assert_eq!(lifecycle(&c), Some(Lifecycle::Blocked));
    }

    #[test]
    fn lifecycle_moves_between_active_blocked_removed() {
        let mut c = cache();
        let lc = |kind| Update::Lifecycle {
            tracker_id: 3,
            kind,
            at: None,
        };
        assert_eq!(
            c.apply(lc(LifecycleKind::Block)).lifecycle,
            Lifecycle::Blocked
        );
        assert_eq!(
            c.apply(lc(LifecycleKind::Unblock)).lifecycle,
            Lifecycle::Active
        );
        let removed = c.apply(lc(LifecycleKind::Corrupt));
        assert_eq!(removed.lifecycle, Lifecycle::Removed);
        assert!(!removed.online);
    }

    #[test]
    fn iot_keeps_the_newest_nonnull_value() {
        let mut c = cache();
        let mut fields = BTreeMap::new();
        fields.insert(
            "satellites".to_string(),
            vec![
                IotValue {
                    value: serde_json::json!(10),
                    msg_time: t("2025-02-11T15:12:58Z"),
                    srv_time: None,
                },
                IotValue {
                    value: serde_json::json!(9),
                    msg_time: t("2025-02-11T15:12:52Z"),
                    srv_time: None,
                },
            ],
        );
        let tr = c.apply(Update::Iot {
            tracker_id: 21080,
            values: Box::new(IotTrackerValues {
                tracker_id: Some(21080),
                nonnull_fields: fields,
                all_fields: BTreeMap::new(),
            }),
        });
        assert_eq!(
            tr.iot.get("satellites").map(|v| v.value.clone()),
            Some(serde_json::json!(10))
        );
        assert!(tr.last_data_at.is_some());
    }

    #[test]
    fn set_info_keeps_state_and_updates_the_label() {
        let mut c = cache();
        c.apply(state(21080, full_state()));
        c.set_info(TrackerInfo {
            source: 0,
            id: 21080,
            source_id: Some(10284),
            label: Some("Truck 7".into()),
            group_id: Some(3),
            blocked: None,
        });
        let tr = c.get(21080).expect("tracker");
        assert_eq!(tr.info.label.as_deref(), Some("Truck 7"));
        assert!(tr.current.is_some());
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn speed_history_follows_gps_time() {
        let mut c = cache();
        c.apply(state(1, compact_state(80.0, "2025-10-08 17:00:00")));
        c.apply(state(1, compact_state(120.0, "2025-10-08 17:01:00")));
        let tr = c.apply(state(1, compact_state(90.0, "2025-10-08 17:02:00")));
        let s = tr.history.series("speed").expect("speed");
        assert_eq!(s.len(), 3);
        let (_, latest) = s.latest().expect("latest");
        assert_eq!(latest, 90.0);
    }
}
