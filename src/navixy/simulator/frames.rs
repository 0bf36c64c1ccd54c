//! Turns the simulated fleet into Navixy frames, in the wire shape (tagged batch items)
//! or the documented one (bare states, separate `lifecycle` events, `user_time`), with
//! ISO-8601 times when the client asked `iso_datetime` and offset-less ones otherwise.
//!
//! Frames are built from the protocol's own types (`messages`), so the simulator cannot
//! drift from what the decoder reads. The simulated account's zone is UTC: offset-less
//! times are UTC wall times.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::StateFormat;
use crate::navixy::messages::{
    AdditionalField, Bits, ConnectionStatus, Counter, Gps, Gsm, IotTrackerValues, IotValue,
    LifecycleItem, Location, MovementStatus, NavixyTime, ReadingsItem, SensorInput, SourceState,
    StateValue, VirtualSensor,
};
use compact_str::format_compact;

use super::fleet::{Fleet, LifecycleRecord, Vehicle};

/// How a connection wants its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// ISO-8601 with an offset (the client sent `iso_datetime: true`).
    pub iso: bool,
    /// Documented shapes instead of the wire's.
    pub documented: bool,
}

impl Shape {
    /// Simulated second `s` as the client wants to read it.
    pub fn time(&self, fleet: &Fleet, s: i64) -> NavixyTime {
        let t = fleet.time(s);
        if self.iso {
            NavixyTime::Instant(t)
        } else {
            NavixyTime::Local(t.naive_utc())
        }
    }
}

/// A vehicle's source state, full or compact.
pub fn source_state(v: &Vehicle, fleet: &Fleet, format: StateFormat, shape: Shape) -> SourceState {
    let at = |s: i64| Some(shape.time(fleet, s));
    let connection = if !v.online {
        ConnectionStatus::Offline
    } else if v.moving || v.ignition {
        ConnectionStatus::Active
    } else {
        ConnectionStatus::Idle
    };
    let mut state = SourceState {
        source_id: Some(v.source_id),
        gps: Some(Gps {
            updated: at(v.report_s),
            signal_level: Some(100.0),
            location: Some(Location {
                lat: (v.lat * 1e6).round() / 1e6,
                lng: (v.lng * 1e6).round() / 1e6,
            }),
            heading: Some(v.heading.round()),
            speed: Some(v.speed.round()),
            alt: Some(v.alt),
            ..Gps::default()
        }),
        connection_status: Some(connection),
        movement_status: Some(if v.moving {
            MovementStatus::Moving
        } else {
            MovementStatus::Parked
        }),
        movement_status_update: at(v.movement_s),
        ignition: Some(v.ignition),
        ignition_update: at(v.ignition_s),
        last_update: at(v.report_s),
        ..SourceState::default()
    };
    if format == StateFormat::Full {
        state.gsm = Some(Gsm {
            updated: at(v.report_s),
            signal_level: Some(v.gsm_signal),
            network_name: Some("Sim Mobile".into()),
            roaming: Some(false),
        });
        state.battery_level = Some(v.battery.round());
        state.battery_update = at(v.report_s);
        state.inputs = Some(Bits::from_slice(&v.inputs));
        state.inputs_update = at(v.inputs_s);
        state.outputs = Some(Bits::from_slice(&v.outputs));
        state.outputs_update = at(v.outputs_s);
        state.additional = Some(BTreeMap::from([(
            "event_code".into(),
            AdditionalField {
                value: Some(format_compact!("{}", v.event_code)),
                updated: at(v.event_code_s),
            },
        )]));
        state.actual_track_update = at(v.movement_s);
    }
    state
}

/// The readings that changed after `since_s` (all of them for a snapshot), or `None`.
pub fn readings(v: &Vehicle, fleet: &Fleet, since_s: i64, shape: Shape) -> Option<ReadingsItem> {
    let at = |s: i64| Some(shape.time(fleet, s));
    let base = 1000 + v.index as i64 * 10;
    let mut item = ReadingsItem {
        tracker_id: Some(v.tracker_id),
        timestamp: at(v.report_s),
        ..ReadingsItem::default()
    };
    let sensors = [
        (
            &v.fuel_sensor,
            1,
            "Fuel tank",
            "lls_level_1",
            "fuel",
            "l",
            "litre",
            Some((0.0, v.tank)),
        ),
        (
            &v.voltage_sensor,
            2,
            "Board voltage",
            "board_voltage",
            "power",
            "V",
            "volt",
            None,
        ),
        (
            &v.temp_sensor,
            3,
            "Cargo temperature",
            "temperature_1",
            "temperature",
            "°C",
            "celsius",
            Some((-30.0, 50.0)),
        ),
    ];
    for (sensor, id, label, name, kind, units, units_type, limits) in sensors {
        if sensor.changed_s > since_s {
            item.inputs.push(SensorInput {
                sensor_id: Some(base + id),
                label: Some(label.into()),
                name: Some(name.into()),
                kind: Some(kind.into()),
                value: Some(sensor.value),
                units: Some(units.into()),
                units_type: Some(units_type.into()),
                update_time: at(sensor.changed_s),
                min_value: limits.map(|l| l.0),
                max_value: limits.map(|l| l.1),
                converted_value: None,
            });
        }
    }
    if since_s == i64::MIN {
        // Only the snapshot carries this state: it never changes here.
        item.states.push(StateValue {
            field: Some("obd_mil_status".into()),
            value: serde_json::Value::Bool(false),
            update_time: at(0),
        });
    }
    if v.door.changed_s > since_s {
        item.virtual_sensors.push(VirtualSensor {
            sensor_id: Some(base + 4),
            label: Some("Door".into()),
            value: serde_json::Value::String(
                if v.door.value > 0.5 { "Open" } else { "Closed" }.into(),
            ),
            kind: Some("state".into()),
            update_time: at(v.door.changed_s),
        });
    }
    for (counter, kind) in [
        (&v.odometer, "odometer"),
        (&v.engine_hours_counter, "engine_hours"),
    ] {
        if counter.changed_s > since_s {
            item.counters.push(Counter {
                kind: Some(kind.into()),
                value: Some(counter.value),
                update_time: at(counter.changed_s),
            });
        }
    }
    let empty = item.inputs.is_empty()
        && item.states.is_empty()
        && item.virtual_sensors.is_empty()
        && item.counters.is_empty();
    (!empty).then_some(item)
}

pub fn lifecycle(record: &LifecycleRecord, fleet: &Fleet, shape: Shape) -> LifecycleItem {
    LifecycleItem {
        source_id: fleet.vehicles.get(record.index).map(|v| v.source_id),
        lifecycle_event: record.kind,
        timestamp: Some(shape.time(fleet, record.at_s)),
    }
}

/// The Data Stream Analyzer view of a vehicle: its last messages, newest first.
pub fn iot_values(v: &Vehicle, fleet: &Fleet) -> IotTrackerValues {
    let iso = Shape {
        iso: true,
        documented: false,
    };
    let mut fields: BTreeMap<String, Vec<IotValue>> = BTreeMap::new();
    for sample in &v.iot {
        let at = Some(iso.time(fleet, sample.at_s));
        let mut push = |name: &str, value: serde_json::Value| {
            fields.entry(name.to_string()).or_default().push(IotValue {
                value,
                msg_time: at,
                srv_time: at,
            });
        };
        push("speed", serde_json::json!(sample.speed));
        push("satellites", serde_json::json!(sample.satellites));
        // Navixy sends coordinates and levels as strings holding numbers.
        push("latitude", serde_json::json!(format!("{:.7}", sample.lat)));
        push("longitude", serde_json::json!(format!("{:.7}", sample.lng)));
        push(
            "lls_level_1",
            serde_json::json!(format!("{:.4}", sample.fuel)),
        );
    }
    IotTrackerValues {
        tracker_id: Some(v.tracker_id),
        nonnull_fields: fields.clone(),
        all_fields: fields,
    }
}

/// One item of a wire batch; the variant names are the wire's tags.
#[allow(clippy::enum_variant_names)]
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WireItem<'a> {
    SourceStateEvent { state: &'a SourceState },
    ReadingsEvent(&'a ReadingsItem),
    LifecycleEvent(&'a LifecycleItem),
}

/// `{"type":"event","event":...,"user_time":...,"data":...}`, in that order: clients find
/// `type` and `event` without reading the data.
#[derive(Serialize)]
pub struct EventFrame<'a, T: Serialize> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_time: Option<NavixyTime>,
    pub data: T,
}

/// Serializes an event frame. These types always serialize; an empty string would only
/// reach a client as a malformed frame, never a panic.
pub fn event<T: Serialize>(event: &str, user_time: Option<NavixyTime>, data: T) -> String {
    serde_json::to_string(&EventFrame {
        kind: "event",
        event,
        user_time,
        data,
    })
    .unwrap_or_default()
}

/// The answer to a subscribe: statuses per event and tracker id. The wire omits
/// `success` and puts `type` last; the documented shape has both up front.
pub fn subscribe_response(
    statuses: &BTreeMap<&'static str, BTreeMap<i64, &'static str>>,
    documented: bool,
) -> String {
    let events: Vec<&str> = statuses.keys().copied().collect();
    let mut data = serde_json::Map::new();
    for (event, by_id) in statuses {
        let value: serde_json::Map<String, serde_json::Value> = by_id
            .iter()
            .map(|(id, status)| (id.to_string(), serde_json::Value::from(*status)))
            .collect();
        let mut entry = serde_json::json!({ "value": value });
        if documented {
            entry["success"] = serde_json::Value::Bool(true);
        }
        data.insert((*event).to_string(), entry);
    }
    if documented {
        serde_json::json!({"type": "response", "action": "subscription/subscribe", "events": events, "data": data})
            .to_string()
    } else {
        // Field order as a real server sent it: `type` last.
        format!(
            r#"{{"events":{},"data":{},"type":"response","action":"subscription/subscribe"}}"#,
            serde_json::Value::from(events),
            serde_json::Value::Object(data)
        )
    }
}

pub fn unsubscribe_response(events: &[String]) -> String {
    serde_json::json!({"type": "response", "action": "subscription/unsubscribe", "events": events, "data": {}})
        .to_string()
}

pub fn error(action: &str, code: i64, description: &str, events: &[&str]) -> String {
    serde_json::json!({
        "type": "error",
        "action": action,
        "status": {"code": code, "description": description},
        "data": {"events": events, "trackers": []}
    })
    .to_string()
}

pub fn logout() -> String {
    r#"{"type":"event","event":"logout","data":"session closed"}"#.to_string()
}

/// Bad frames for `--chaos` and the malformed-flood hook, by number (they cycle): broken
/// JSON, non-JSON, wrong field types, unknown events and item types, a non-array batch.
pub fn malformed(n: usize, source_id: i64) -> String {
    match n % 7 {
        0 => r#"{"type":"event","event":"state_batch","data":[{"type":"source_state_event","state":{"source_id":"#.to_string(),
        1 => "<html><body>502 Bad Gateway</body></html>".to_string(),
        2 => format!(
            r#"{{"type":"event","event":"state_batch","data":[{{"type":"source_state_event","state":{{"source_id":{source_id},"gps":{{"speed":"fast","location":{{"lat":"north","lng":13.4}}}}}}}}]}}"#
        ),
        3 => r#"{"type":"event","event":"weather_report","data":{"rain":true}}"#.to_string(),
        4 => r#"{"type":"event","event":"state_batch","data":[{"type":"hologram_event","x":1}]}"#.to_string(),
        5 => r#"{"type":"event","event":"readings_batch","data":{"not":"an array"}}"#.to_string(),
        _ => r#"{"type":"event","event":"state_batch","data":[{"type":"lifecycle_event","source_id":1,"lifecycle_event":42}]}"#.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::navixy::decode::{DecodeErrorKind, decode_frame};
    use crate::navixy::messages::{BatchItem, Frame};
    use chrono::TimeZone;

    fn fleet() -> Fleet {
        let mut fleet = Fleet::new(
            6,
            3,
            chrono::Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap(),
        );
        fleet.advance_to(600);
        fleet
    }

    #[test]
    fn wire_frames_decode_with_iso_times() {
        let fleet = fleet();
        let shape = Shape {
            iso: true,
            documented: false,
        };
        let states: Vec<SourceState> = fleet
            .vehicles
            .iter()
            .map(|v| source_state(v, &fleet, StateFormat::Full, shape))
            .collect();
        let items: Vec<WireItem> = states
            .iter()
            .map(|state| WireItem::SourceStateEvent { state })
            .collect();
        let text = event("state_batch", None, &items);
        assert!(
            text.starts_with(r#"{"type":"event","event":"state_batch","data":"#),
            "{text}"
        );
        let Ok(Frame::StateBatch { items, .. }) = decode_frame(&text) else {
            panic!("{text}")
        };
        assert_eq!(items.len(), 6);
        let BatchItem::State(state) = &items[0] else {
            panic!()
        };
        assert_eq!(state.source_id, Some(10_037));
        assert!(matches!(state.last_update, Some(NavixyTime::Instant(_))));
        assert!(text.contains("+00:00") || text.contains('Z'));
    }

    #[test]
    fn documented_compact_frames_decode_with_offsetless_times() {
        let fleet = fleet();
        let shape = Shape {
            iso: false,
            documented: true,
        };
        let states: Vec<SourceState> = fleet
            .vehicles
            .iter()
            .map(|v| source_state(v, &fleet, StateFormat::Compact, shape))
            .collect();
        let text = event("state_batch", Some(shape.time(&fleet, 600)), &states);
        let Ok(Frame::StateBatch { items, user_time }) = decode_frame(&text) else {
            panic!("{text}")
        };
        assert_eq!(
            user_time.map(|t| t.to_utc(chrono_tz::UTC)),
            Some(fleet.time(600))
        );
        let BatchItem::State(state) = &items[1] else {
            panic!()
        };
        assert!(matches!(state.last_update, Some(NavixyTime::Local(_))));
        assert!(state.inputs.is_none(), "compact states carry no inputs");
    }

    #[test]
    fn readings_carry_only_what_changed() {
        let fleet = fleet();
        let v = &fleet.vehicles[0];
        let shape = Shape {
            iso: true,
            documented: false,
        };
        let all = readings(v, &fleet, i64::MIN, shape).unwrap();
        assert_eq!(all.inputs.len(), 3);
        assert_eq!(all.counters.len(), 2);
        assert_eq!(all.states.len(), 1);
        assert!(readings(v, &fleet, fleet.now_s, shape).is_none());
        let item = WireItem::ReadingsEvent(&all);
        let text = event("readings_batch", None, [item]);
        let Ok(Frame::ReadingsBatch { items, .. }) = decode_frame(&text) else {
            panic!("{text}")
        };
        let BatchItem::Readings(r) = &items[0] else {
            panic!()
        };
        assert_eq!(r.tracker_id, Some(21_001));
        assert_eq!(r.inputs[0].name.as_deref(), Some("lls_level_1"));
    }

    #[test]
    fn responses_and_errors_decode() {
        let statuses = BTreeMap::from([(
            "state_batch",
            BTreeMap::from([(21_001, "normal"), (21_002, "blocked")]),
        )]);
        for documented in [false, true] {
            let Ok(Frame::Response(r)) = decode_frame(&subscribe_response(&statuses, documented))
            else {
                panic!()
            };
            assert_eq!(r.data["state_batch"].value["21002"], "blocked");
            assert_eq!(r.data["state_batch"].success, documented.then_some(true));
        }
        let Ok(Frame::Error(e)) = decode_frame(&error(
            "subscription/subscribe",
            3,
            "Wrong hash",
            &["state_batch"],
        )) else {
            panic!()
        };
        assert_eq!(e.status.and_then(|s| s.code), Some(3));
        assert!(matches!(decode_frame(&logout()), Ok(Frame::Logout { .. })));
    }

    #[test]
    fn malformed_frames_fail_to_decode_or_are_unknown() {
        for n in 0..7 {
            match decode_frame(&malformed(n, 10_037)) {
                Err(e) => assert!(matches!(
                    e.kind,
                    DecodeErrorKind::Malformed
                        | DecodeErrorKind::WrongType
                        | DecodeErrorKind::UnknownShape
                )),
                Ok(Frame::UnknownEvent { .. }) => {}
                Ok(Frame::StateBatch { items, .. }) => {
                    assert!(matches!(
                        items[0],
                        BatchItem::Unknown { .. } | BatchItem::Invalid(_)
                    ))
                }
                Ok(other) => panic!("{n}: {other:?}"),
            }
        }
    }
}
