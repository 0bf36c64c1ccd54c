//! Every fixture of Navixy's samples decodes into exactly the expected values.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use navixy_alerts::navixy::decode::{
    DecodeErrorKind, decode_frame, decode_frame_limited, decode_tracker_list,
};
use navixy_alerts::navixy::messages::*;
use serde_json::json;

use super::data_text;

fn local(s: &str) -> Option<NavixyTime> {
    Some(NavixyTime::Local(
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap(),
    ))
}

fn instant(s: &str) -> Option<NavixyTime> {
    Some(NavixyTime::Instant(
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc),
    ))
}

/// The documented full state of source 10284 (state.json, state_batch_documented.json).
fn documented_state() -> SourceState {
    SourceState {
        source_id: Some(10284),
        gps: Some(Gps {
            updated: local("2018-10-17 12:51:43"),
            signal_level: Some(100.0),
            location: Some(Location {
                lat: 14.330065796228606,
                lng: -90.99037259141691,
            }),
            heading: Some(248.0),
            speed: Some(0.0),
            alt: Some(431.0),
            ..Gps::default()
        }),
        connection_status: Some(ConnectionStatus::Active),
        movement_status: Some(MovementStatus::Parked),
        movement_status_update: local("2018-10-04 22:47:07"),
        ignition: Some(false),
        ignition_update: local("2018-10-04 22:47:07"),
        gsm: None,
        last_update: local("2018-10-17 12:51:46"),
        battery_level: None,
        battery_update: None,
        inputs: Some(Bits::from_elem(false, 8)),
        inputs_update: local("2018-10-17 12:51:43"),
        outputs: Some(Bits::from_elem(false, 8)),
        outputs_update: local("2018-10-17 12:51:43"),
        additional: None,
        actual_track_update: local("2018-10-04 22:47:07"),
    }
}

#[test]
fn state_event() {
    assert_eq!(
        decode_frame(&data_text("navixy/state.json")),
        Ok(Frame::State {
            user_time: local("2018-10-17 12:51:55"),
            state: Box::new(documented_state()),
        })
    );
}

#[test]
fn state_batch_documented_shape() {
    assert_eq!(
        decode_frame(&data_text("navixy/state_batch_documented.json")),
        Ok(Frame::StateBatch {
            user_time: local("2018-10-17 12:51:55"),
            items: vec![BatchItem::State(Box::new(documented_state()))],
        })
    );
}

#[test]
fn state_batch_wire_shape() {
    let state = SourceState {
        source_id: Some(10433582),
        gps: Some(Gps {
            updated: instant("2025-10-08T17:27:04-06:00"),
            signal_level: Some(100.0),
            location: Some(Location {
                lat: 20.413698,
                lng: -102.524583,
            }),
            heading: Some(94.0),
            speed: Some(36.0),
            alt: Some(1558.0),
            ..Gps::default()
        }),
        connection_status: Some(ConnectionStatus::Offline),
        movement_status: Some(MovementStatus::Moving),
        movement_status_update: instant("2025-10-08T17:10:11-06:00"),
        ignition: Some(true),
        ignition_update: instant("2025-10-08T17:09:58-06:00"),
        gsm: None,
        last_update: instant("2025-10-08T17:27:05-06:00"),
        battery_level: None,
        battery_update: None,
        inputs: Some(Bits::from_slice(&[true, false, false, false])),
        inputs_update: instant("2025-10-08T17:09:58-06:00"),
        outputs: Some(Bits::from_slice(&[false, false])),
        outputs_update: instant("2025-10-08T17:09:58-06:00"),
        additional: Some(BTreeMap::from([(
            "event_code".into(),
            AdditionalField {
                value: Some("42".into()),
                updated: instant("2025-10-08T17:22:29-06:00"),
            },
        )])),
        actual_track_update: None,
    };
    assert_eq!(
        decode_frame(&data_text("navixy/state_batch_wire.json")),
        Ok(Frame::StateBatch {
            user_time: None,
            items: vec![
                BatchItem::State(Box::new(state)),
                BatchItem::Lifecycle(LifecycleItem {
                    source_id: Some(123456),
                    lifecycle_event: LifecycleKind::Block,
                    timestamp: local("2021-01-28 08:16:40"),
                }),
            ],
        })
    );
}

#[test]
fn compact_state_as_a_documented_batch_item() {
    let item = data_text("navixy/compact_state_item.json");
    let frame = format!(r#"{{"type":"event","event":"state_batch","data":[{item}]}}"#);
    let expected = SourceState {
        gsm: None,
        battery_level: None,
        inputs: None,
        inputs_update: None,
        outputs: None,
        outputs_update: None,
        actual_track_update: None,
        ..documented_state()
    };
    assert_eq!(
        decode_frame(&frame),
        Ok(Frame::StateBatch {
            user_time: None,
            items: vec![BatchItem::State(Box::new(expected))],
        })
    );
}

#[test]
fn readings_batch_wire_shape() {
    let readings = ReadingsItem {
        tracker_id: Some(21080),
        timestamp: local("2025-02-11 15:12:58"),
        inputs: vec![
            SensorInput {
                sensor_id: Some(501),
                label: Some("Fuel tank".into()),
                name: Some("lls_level_1".into()),
                kind: Some("fuel".into()),
                value: Some(262.9138),
                units: Some("l".into()),
                units_type: Some("litre".into()),
                update_time: local("2025-02-11 15:12:58"),
                min_value: Some(0.0),
                max_value: Some(400.0),
                converted_value: None,
            },
            SensorInput {
                sensor_id: Some(502),
                label: Some("Board voltage".into()),
                name: Some("board_voltage".into()),
                kind: Some("power".into()),
                value: Some(27.4),
                units: Some("V".into()),
                units_type: Some("volt".into()),
                update_time: local("2025-02-11 15:12:58"),
                min_value: None,
                max_value: None,
                converted_value: None,
            },
        ],
        states: vec![StateValue {
            field: Some("obd_mil_status".into()),
            value: json!(false),
            update_time: local("2025-02-11 15:12:58"),
        }],
        virtual_sensors: vec![VirtualSensor {
            sensor_id: Some(610),
            label: Some("Door".into()),
            value: json!("Closed"),
            kind: Some("state".into()),
            update_time: local("2025-02-11 15:10:02"),
        }],
        counters: vec![
            Counter {
                kind: Some("odometer".into()),
                value: Some(182344.2),
                update_time: local("2025-02-11 15:12:58"),
            },
            Counter {
                kind: Some("engine_hours".into()),
                value: Some(5120.5),
                update_time: local("2025-02-11 15:12:58"),
            },
        ],
    };
    assert_eq!(
        decode_frame(&data_text("navixy/readings_batch_wire.json")),
        Ok(Frame::ReadingsBatch {
            user_time: None,
            items: vec![
                BatchItem::Readings(Box::new(readings)),
                BatchItem::Lifecycle(LifecycleItem {
                    source_id: Some(10284),
                    lifecycle_event: LifecycleKind::Unblock,
                    timestamp: local("2025-02-11 15:13:00"),
                }),
            ],
        })
    );
}

#[test]
fn iot_monitor() {
    let Ok(Frame::IotMonitor { values }) = decode_frame(&data_text("navixy/iot_monitor.json"))
    else {
        panic!("not an iot_monitor frame");
    };
    assert_eq!(values.len(), 1);
    let v = &values[0];
    assert_eq!(v.tracker_id, Some(21080));
    let names: Vec<&str> = v.nonnull_fields.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "heading",
            "latitude",
            "lls_level_1",
            "longitude",
            "satellites",
            "speed"
        ]
    );
    assert_eq!(
        v.nonnull_fields["lls_level_1"],
        vec![
            IotValue {
                value: json!("262.9138"),
                msg_time: instant("2025-02-11T15:12:58Z"),
                srv_time: instant("2025-02-11T15:12:58Z"),
            },
            IotValue {
                value: json!("262.9945"),
                msg_time: instant("2025-02-11T15:12:52Z"),
                srv_time: instant("2025-02-11T15:12:53Z"),
            },
        ]
    );
    assert_eq!(v.nonnull_fields["speed"][0].value, json!(43));
    assert_eq!(
        v.all_fields["lls_level_1"][0],
        IotValue {
            value: serde_json::Value::Null,
            msg_time: instant("2025-02-11T15:12:59Z"),
            srv_time: instant("2025-02-11T15:12:59Z"),
        }
    );
    assert_eq!(v.all_fields.len(), 6);
}

#[test]
fn lifecycle_event() {
    assert_eq!(
        decode_frame(&data_text("navixy/lifecycle.json")),
        Ok(Frame::Lifecycle(LifecycleItem {
            source_id: Some(123456),
            lifecycle_event: LifecycleKind::Block,
            timestamp: None,
        }))
    );
}

#[test]
fn logout_event() {
    assert_eq!(
        decode_frame(&data_text("navixy/logout.json")),
        Ok(Frame::Logout {
            reason: "session closed".into()
        })
    );
}

#[test]
fn subscribe_response_documented_with_success() {
    let statuses = BTreeMap::from([
        ("15564".to_string(), "normal".to_string()),
        ("15565".to_string(), "blocked".to_string()),
        ("15568".to_string(), "unknown".to_string()),
    ]);
    assert_eq!(
        decode_frame(&data_text("navixy/subscribe_response.json")),
        Ok(Frame::Response(SubscribeResponse {
            action: Some("subscription/subscribe".into()),
            events: vec!["state".into()],
            data: BTreeMap::from([(
                "state".to_string(),
                SubscriptionStatus {
                    value: statuses,
                    success: Some(true),
                }
            )]),
        }))
    );
}

#[test]
fn subscribe_response_wire_without_success() {
    let normal = SubscriptionStatus {
        value: BTreeMap::from([
            ("3435108".to_string(), "normal".to_string()),
            ("3435109".to_string(), "normal".to_string()),
        ]),
        success: None,
    };
    assert_eq!(
        decode_frame(&data_text("navixy/subscribe_response_wire.json")),
        Ok(Frame::Response(SubscribeResponse {
            action: Some("subscription/subscribe".into()),
            events: vec!["state_batch".into(), "readings_batch".into()],
            data: BTreeMap::from([
                ("state_batch".to_string(), normal.clone()),
                ("readings_batch".to_string(), normal),
            ]),
        }))
    );
}

#[test]
fn error_frame() {
    assert_eq!(
        decode_frame(&data_text("navixy/error.json")),
        Ok(Frame::Error(ErrorFrame {
            action: Some("subscription/subscribe".into()),
            status: Some(ErrorStatus {
                code: Some(3),
                description: Some("Wrong hash".into()),
            }),
            data: Some(json!({"events": ["state"], "trackers": [15564]})),
        }))
    );
}

#[test]
fn handshake_and_heartbeat() {
    assert_eq!(
        decode_frame(&data_text("navixy/handshake.txt")),
        Ok(Frame::Handshake {
            tracking_id: "b623a15d-9623-4fd8-a9d3-697036635c29".into(),
            heartbeat_ms: 30000,
        })
    );
    assert_eq!(decode_frame("X"), Ok(Frame::Heartbeat));
}

#[test]
fn tracker_list() {
    let list = decode_tracker_list(&data_text("navixy/tracker_list.json")).unwrap();
    assert_eq!(
        list.list,
        vec![TrackerListEntry {
            id: 21080,
            label: Some("Truck 7".into()),
            group_id: Some(3),
            source: Some(TrackerSource {
                id: Some(10284),
                device_id: Some("356173065789123".into()),
                model: Some("teltonika_fmb920".into()),
                blocked: Some(false),
            }),
        }]
    );
    let failed = decode_tracker_list(
        r#"{"success":false,"status":{"code":4,"description":"User not found"}}"#,
    );
    assert_eq!(
        failed.unwrap_err().message,
        "tracker/list failed: User not found"
    );
}

#[test]
fn unknown_events_and_items_are_named_not_failed() {
    assert_eq!(
        decode_frame(r#"{"type":"event","event":"geofence_alarm","data":{"x":1}}"#),
        Ok(Frame::UnknownEvent {
            event: "geofence_alarm".into()
        })
    );
    assert_eq!(
        decode_frame(
            r#"{"type":"event","event":"state_batch","data":[{"type":"odd_event","state":{}}]}"#
        ),
        Ok(Frame::StateBatch {
            user_time: None,
            items: vec![BatchItem::Unknown {
                item_type: "odd_event".into()
            }],
        })
    );
}

#[test]
fn unknown_fields_and_statuses_are_ignored() {
    let f = decode_frame(
        r#"{"type":"event","event":"state","brand_new":{"a":[1,2,{"b":null}]},"data":{"source_id":5,"connection_status":"hibernating","movement_status":"flying","new_field":[1,"x"],"gps":{"speed":12.5,"satellites":9}}}"#,
    )
    .unwrap();
    let Frame::State { state, .. } = f else {
        panic!()
    };
    assert_eq!(state.connection_status, Some(ConnectionStatus::Other));
    assert_eq!(state.movement_status, Some(MovementStatus::Other));
    assert_eq!(state.gps.unwrap().speed, Some(12.5));
}

#[test]
fn wrong_types_cost_one_item_in_batches_and_the_frame_elsewhere() {
    let f = decode_frame(
        r#"{"type":"event","event":"readings_batch","data":[
            {"type":"readings_event","tracker_id":1,"inputs":[{"name":"lls_level_1","value":"full"}]},
            {"type":"readings_event","tracker_id":"two"},
            {"type":"readings_event","tracker_id":3,"counters":[{"type":"odometer","value":10}]},
            7]}"#,
    )
    .unwrap();
    let Frame::ReadingsBatch { items, .. } = f else {
        panic!()
    };
    let messages: Vec<String> = items
        .iter()
        .map(|i| match i {
            BatchItem::Invalid(e) => {
                assert_eq!(e.kind, DecodeErrorKind::WrongType);
                e.message.clone()
            }
            BatchItem::Readings(r) => format!("ok {:?}", r.tracker_id),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        messages,
        [
            "item 0: `inputs.value` is not a number",
            "item 1: `tracker_id` is not an integer",
            "ok Some(3)",
            "item 3: `item` is not a batch item object",
        ]
    );
    let e =
        decode_frame(r#"{"type":"event","event":"state","data":{"source_id":1,"ignition":"yes"}}"#)
            .unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (
            DecodeErrorKind::WrongType,
            "`ignition` is not true or false"
        )
    );
}

#[test]
fn errors_of_each_kind() {
    let kind = |s: &str| decode_frame(s).unwrap_err().kind;
    assert_eq!(
        kind(r#"{"type":"event","event":"state","data":{"#),
        DecodeErrorKind::Malformed
    );
    assert_eq!(
        kind("{\"type\":\"event\"} trailing"),
        DecodeErrorKind::Malformed
    );
    assert_eq!(kind("<html>"), DecodeErrorKind::Malformed);
    assert_eq!(kind(r#"{"type":"event"}"#), DecodeErrorKind::UnknownShape);
    assert_eq!(
        kind(r#"{"type":"push","event":"state"}"#),
        DecodeErrorKind::UnknownShape
    );
    assert_eq!(kind(r#""just a string""#), DecodeErrorKind::UnknownShape);
    assert_eq!(
        kind(r#"{"type":"event","event":"state_batch","data":"many"}"#),
        DecodeErrorKind::WrongType
    );
    assert_eq!(
        kind(r#"{"type":"response","events":"state"}"#),
        DecodeErrorKind::WrongType
    );
    let big = format!(
        r#"{{"type":"event","event":"logout","data":"{}"}}"#,
        "x".repeat(100)
    );
    assert_eq!(
        decode_frame_limited(&big, 64).unwrap_err().kind,
        DecodeErrorKind::Oversized
    );
    assert!(decode_frame_limited(&big, 1024).is_ok());
    // Deep nesting never overflows the stack: values that are read hit the parser's
    // recursion limit (malformed); values that are skipped are skipped without recursing.
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let outcome = |frame: String| match decode_frame(&frame) {
        Ok(Frame::UnknownEvent { event }) => format!("unknown event {event}"),
        Ok(Frame::State { state, .. }) => format!("state {:?}", state.source_id),
        Ok(Frame::StateBatch { items, .. }) => match &items[..] {
            [BatchItem::Invalid(e)] => e.message.clone(),
            other => format!("{other:?}"),
        },
        Ok(other) => format!("{other:?}"),
        Err(e) => e.kind.as_str().to_string(),
    };
    let outcomes: Vec<String> = [
        format!(r#"{{"type":"event","event":"state","data":{deep}}}"#),
        format!(r#"{{"type":"event","event":"state","data":{{"unknown":{deep}}}}}"#),
        format!(r#"{{"type":"event","event":"state_batch","data":[{{"gps":{deep}}}]}}"#),
        format!(
            r#"{{"type":"event","event":"state_batch","data":[{{"gps":{{"speed":{deep}}}}}]}}"#
        ),
        format!(r#"{{"data":{deep},"type":"event","event":"state"}}"#),
        format!(r#"{{"type":"event","event":"whatever","data":{deep}}}"#),
        format!(r#"{{"type":{deep}}}"#),
    ]
    .into_iter()
    .map(outcome)
    .collect();
    assert_eq!(
        outcomes,
        [
            "wrong_type",
            "state None",
            "item 0: `gps` is not a gps object",
            "item 0: `gps.speed` is not a number",
            "wrong_type",
            "unknown event whatever",
            "unknown_shape",
        ]
    );
}

#[test]
fn times_in_both_formats_and_odd_key_order() {
    let f = decode_frame(
        r#"{"data":[{"state":{"source_id":9,"last_update":"2025-10-08 17:27:05"},"type":"source_state_event"},
                    {"lifecycle_event":"corrupt","timestamp":"2025-10-08T17:27:05Z","source_id":9,"type":"lifecycle_event"}],
            "user_time":"2025-10-08 17:27:06","event":"state_batch","type":"event"}"#,
    )
    .unwrap();
    let Frame::StateBatch { user_time, items } = f else {
        panic!()
    };
    assert_eq!(user_time, local("2025-10-08 17:27:06"));
    let BatchItem::State(s) = &items[0] else {
        panic!()
    };
    assert_eq!(s.last_update, local("2025-10-08 17:27:05"));
    assert_eq!(
        items[1],
        BatchItem::Lifecycle(LifecycleItem {
            source_id: Some(9),
            lifecycle_event: LifecycleKind::Corrupt,
            timestamp: instant("2025-10-08T17:27:05Z"),
        })
    );
}

#[test]
fn readings_item_with_type_after_its_inputs() {
    let f = decode_frame(
        r#"{"type":"event","event":"readings_batch","data":[{"tracker_id":4,"inputs":[{"name":"lls_level_1","value":50}],"type":"readings_event"}]}"#,
    )
    .unwrap();
    let Frame::ReadingsBatch { items, .. } = f else {
        panic!()
    };
    let BatchItem::Readings(r) = &items[0] else {
        panic!("{items:?}")
    };
    assert_eq!(r.inputs[0].value, Some(50.0));
}
