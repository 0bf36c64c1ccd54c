//! The direct evaluator against Rhai: on random expressions over random trackers,
//! whenever the direct evaluator answers, Rhai answers the same (and does not fail).
//!
//! The expressions reach every leaf the subset reads (each state field of each type, in
//! `state` and `prev`, `tracker`, every kind of reading, `iot`, inputs and outputs by
//! index, presence tests, `?.`), every helper with good and bad arguments, history
//! windows, params of every scalar type including null and the integer limits, strings
//! over Rhai's size limit, comments, escapes, and `??` chains of several operands.
//!
//! `PROPTEST_CASES=100000 cargo test --lib fast::differential` runs more than the default.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use proptest::prelude::*;
use proptest::sample::select;
use rhai::{Dynamic, Engine, ImmutableString};

use super::{Fallback, FastExpr};
use crate::navixy::messages::TrackerInfo;
use crate::navixy::messages::{
    AdditionalField, Bits, ConnectionStatus, Counter, Gps, Gsm, IotValue, Location, MovementStatus,
    NavixyTime, SensorInput, SourceState, StateValue, Text, VirtualSensor,
};
use crate::rules::script::context::{self, ScriptFrame, StateLeaf};
use crate::rules::script::engine::{self, DynamicNames, MAX_STRING_SIZE};
use crate::rules::zones::Zones;
use crate::state::history::HistoryPolicy;
use crate::state::{Lifecycle, Readings, TrackerState};

/// The engine clock of every case: 2026-01-05 08:00:00 UTC.
const NOW_MS: i64 = 1_767_600_000_000;

/// A string just over the limit Rhai puts on what a getter returns.
fn long_string() -> String {
    "x".repeat(MAX_STRING_SIZE + 1)
}

static ENGINE: LazyLock<Engine> = LazyLock::new(|| {
    let set = |names: &[&str]| names.iter().map(|s| (*s).to_string()).collect();
    engine::build(&DynamicNames {
        readings: set(&[
            "lls_level_1",
            "board_voltage",
            "obd_mil_status",
            "door_sensor",
            "odometer",
            "engine_hours",
            "missing",
        ]),
        iot: set(&["satellites", "temp", "note", "missing"]),
        additional: set(&["event_code", "note", "missing"]),
    })
});

/// The params every case compiles with: each scalar type, null, the integer limits and a
/// string over the size limit.
fn params() -> rhai::Map {
    let mut p = rhai::Map::new();
    let mut put = |k: &str, v: Dynamic| {
        p.insert(k.into(), v);
    };
    put("a", Dynamic::UNIT);
    put("b", Dynamic::UNIT);
    put("limit", Dynamic::from_int(90));
    put("neg", Dynamic::from_int(-3));
    put("big", Dynamic::from_int(i64::MAX));
    put("small", Dynamic::from_int(i64::MIN));
    put("ratio", Dynamic::from_float(0.5));
    put("speed", Dynamic::from_float(90.0));
    put("flag", Dynamic::TRUE);
    put("off", Dynamic::FALSE);
    put("name", Dynamic::from(ImmutableString::from("parked")));
    put("empty", Dynamic::from(ImmutableString::from("")));
    put("long", Dynamic::from(ImmutableString::from(long_string())));
    put("zone", Dynamic::from(ImmutableString::from("depot")));
    put(
        "sensor",
        Dynamic::from(ImmutableString::from("lls_level_1")),
    );
    put("path", Dynamic::from(ImmutableString::from("ignition")));
    p
}

fn zones() -> Zones {
    let z = [(
        "depot".to_string(),
        crate::config::ZoneConfig {
            circle: Some(crate::config::Circle {
                lat: 52.52,
                lng: 13.40,
                radius_m: 300.0,
            }),
            polygon: None,
            sausage: None,
        },
    )]
    .into_iter()
    .collect();
    Zones::local(&z)
}

/// The direct answer (`None`: not in the subset) and Rhai's, on one tracker.
fn both(text: &str, tracker: &TrackerState) -> (Option<Result<Dynamic, Fallback>>, Rhai) {
    let params = params();
    let fast = FastExpr::compile(text, &params);
    // Loading compiles with Rhai first: what Rhai rejects never gets further.
    let ast = match ENGINE.compile_with_scope(&engine::compile_scope(params), text) {
        Ok(ast) => ast,
        Err(e) => return (fast.map(|_| Err(Fallback)), Rhai::Rejected(e.to_string())),
    };
    let zones = zones();
    let frame = ScriptFrame {
        tracker,
        now_ms: NOW_MS,
        time_zone: chrono_tz::UTC,
        zones: &zones,
        navixy: &Default::default(),
        around: &Default::default(),
    };
    let mut scope = engine::eval_scope();
    crate::rules::script::set_now(&mut scope, NOW_MS.div_euclid(1000));
    context::enter(&frame, || {
        let direct = fast.map(|f| f.eval(&frame));
        let rhai = crate::rules::script::eval_rhai(&ENGINE, &mut scope, &ast);
        (
            direct,
            match rhai {
                Ok(v) => Rhai::Value(v),
                Err(e) => Rhai::Failed(e.to_string()),
            },
        )
    })
}

#[derive(Debug)]
enum Rhai {
    Rejected(String),
    Value(Dynamic),
    Failed(String),
}

fn same(a: &Dynamic, b: &Dynamic) -> bool {
    if a.is_unit() || b.is_unit() {
        return a.is_unit() && b.is_unit();
    }
    if let (Ok(x), Ok(y)) = (a.as_bool(), b.as_bool()) {
        return x == y;
    }
    if let (Ok(x), Ok(y)) = (a.as_int(), b.as_int()) {
        return x == y;
    }
    if let (Ok(x), Ok(y)) = (a.as_float(), b.as_float()) {
        return x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan());
    }
    if let (Some(x), Some(y)) = (
        a.read_lock::<ImmutableString>(),
        b.read_lock::<ImmutableString>(),
    ) {
        return x.as_str() == y.as_str();
    }
    false
}

/// A value for a failure message, long strings cut.
fn show(d: &Dynamic) -> String {
    let text = format!("{d:?}");
    match text.char_indices().nth(60) {
        Some((i, _)) => format!("{}... ({} bytes)", &text[..i], text.len()),
        None => text,
    }
}

/// Checks one case: `Err` describes a disagreement.
fn agree(text: &str, tracker: &TrackerState) -> Result<(), String> {
    match both(text, tracker) {
        (Some(Ok(d)), Rhai::Value(r)) if !same(&d, &r) => {
            Err(format!("{text}: direct {}, Rhai {}", show(&d), show(&r)))
        }
        (Some(Ok(d)), Rhai::Failed(e) | Rhai::Rejected(e)) => {
            Err(format!("{text}: direct {}, Rhai error {e}", show(&d)))
        }
        _ => Ok(()),
    }
}

// ---- the regressions the widened run found ----

fn parked_tracker() -> TrackerState {
    let state = SourceState {
        ignition: Some(true),
        additional: Some(
            [(
                "note".into(),
                AdditionalField {
                    value: Some(long_string().into()),
                    updated: None,
                },
            )]
            .into_iter()
            .collect(),
        ),
        ..SourceState::default()
    };
    TrackerState {
        current: Some(Arc::new(state)),
        info: Arc::new(TrackerInfo {
            id: 1,
            label: Some(long_string()),
            ..TrackerInfo::default()
        }),
        ..TrackerState::default()
    }
}

/// The direct answer of an expression that must be in the subset.
fn direct(text: &str, tracker: &TrackerState) -> Result<Dynamic, Fallback> {
    match both(text, tracker) {
        (Some(d), _) => d,
        (None, _) => panic!("{text} is not in the subset"),
    }
}

#[test]
fn a_chain_of_null_params_reaches_its_third_operand() {
    let t = parked_tracker();
    for text in [
        "params.a ?? params.b ?? state.ignition",
        "(params.a ?? params.b) ?? state.ignition",
        "params.a ?? () ?? params.b ?? state.ignition",
    ] {
        assert_eq!(
            direct(text, &t).map(|d| d.as_bool()),
            Ok(Ok(true)),
            "{text}"
        );
        agree(text, &t).unwrap();
    }
}

#[test]
fn a_chain_rhai_folds_away_entirely_is_false_but_one_left_is_itself() {
    let t = parked_tracker();
    for (text, expected) in [
        ("() ?? ()", Some(false)),
        ("params.a ?? params.b", Some(false)),
        ("params.a ?? params.b ?? ()", Some(false)),
        // Down to one operand before `params.a` reads as `()`: the chain is `()`.
        ("params.a ?? ()", None),
        ("() ?? params.a", None),
        ("!(params.a ?? params.b)", Some(true)),
    ] {
        let d = direct(text, &t).unwrap_or_else(|_| panic!("{text} fell back"));
        assert_eq!(d.as_bool().ok(), expected, "{text}: {d:?}");
        assert!(expected.is_some() || d.is_unit(), "{text}: {d:?}");
        agree(text, &t).unwrap();
    }
}

#[test]
fn a_string_over_rhais_size_limit_is_left_to_rhai() {
    let t = parked_tracker();
    for text in [
        "state.additional.note.value == \"x\"",
        "tracker.label != ()",
        "state.additional.note.value ?? 1",
    ] {
        assert_eq!(direct(text, &t).map(|_| ()), Err(Fallback), "{text}");
        assert!(matches!(both(text, &t).1, Rhai::Failed(_)), "{text}");
    }
    // A string param is a constant of the compiled expression: Rhai does not check it.
    agree("params.long == \"x\"", &t).unwrap();
    assert_eq!(
        direct("params.long != \"x\"", &t).map(|d| d.as_bool()),
        Ok(Ok(true))
    );
}

// ---- random expressions ----

/// Every state leaf, for `state` and for `prev`: the leaves of the field tables, and the
/// indexed and named ones.
fn state_leaves() -> Vec<String> {
    use crate::navixy::messages::{Gps, Gsm};
    let top = SourceState::FIELDS
        .iter()
        .filter(|f| StateLeaf::top(f).is_some())
        .map(|f| f.to_string());
    let gps = Gps::FIELDS
        .iter()
        .filter(|f| StateLeaf::gps(f).is_some())
        .map(|f| format!("gps.{f}"));
    let gsm = Gsm::FIELDS
        .iter()
        .filter(|f| StateLeaf::gsm(f).is_some())
        .map(|f| format!("gsm.{f}"));
    let others = [
        "gps.location.lat",
        "gps.location.lng",
        "gps?.location?.lng",
        "inputs[0]",
        "inputs[2]",
        "inputs[-1]",
        "inputs[9]",
        "outputs[0]",
        "outputs[1]",
        "additional.event_code.value",
        "additional.event_code.updated",
        "additional.note.value",
        "additional.missing.value",
    ]
    .map(String::from);
    top.chain(gps).chain(gsm).chain(others).collect()
}

/// Objects whose presence `== ()` tests.
const OBJECTS: &[&str] = &[
    "state",
    "prev",
    "state.gps",
    "prev.gps.location",
    "state.gsm",
    "state.inputs",
    "prev.outputs",
    "state.additional",
    "state.additional.event_code",
    "readings.lls_level_1",
    "readings.odometer",
    "readings.missing",
    "iot.satellites",
    "iot.missing",
    "tracker",
];

const OTHER_LEAVES: &[&str] = &[
    "tracker.id",
    "tracker.source_id",
    "tracker.label",
    "tracker.group_id",
    "tracker.lifecycle",
    "tracker.online",
    "tracker.last_data_at",
    "readings.lls_level_1.value",
    "readings.lls_level_1.converted_value",
    "readings.lls_level_1.min_value",
    "readings.lls_level_1.max_value",
    "readings.lls_level_1.units",
    "readings.lls_level_1.units_type",
    "readings.lls_level_1.label",
    "readings.lls_level_1.name",
    "readings.lls_level_1.field",
    "readings.lls_level_1.type",
    "readings.lls_level_1.sensor_id",
    "readings.lls_level_1.update_time",
    "readings.board_voltage.value",
    "readings.obd_mil_status.value",
    "readings.obd_mil_status.name",
    "readings.obd_mil_status.update_time",
    "readings.door_sensor.value",
    "readings.door_sensor.label",
    "readings.door_sensor.type",
    "readings.odometer.value",
    "readings.odometer.type",
    "readings.odometer.update_time",
    "readings.engine_hours.value",
    "readings.missing.value",
    "readings?.odometer?.value",
    "iot.satellites.value",
    "iot.satellites.msg_time",
    "iot.satellites.srv_time",
    "iot.temp.value",
    "iot.note.value",
    "iot.missing.value",
    "now",
    "params.a",
    "params.b",
    "params.limit",
    "params.neg",
    "params.big",
    "params.small",
    "params.ratio",
    "params.speed",
    "params.flag",
    "params.off",
    "params.name",
    "params.empty",
    "params.long",
    "params.unknown",
    "params?.limit",
];

/// Helpers with good and bad arguments.
const CALLS: &[&str] = &[
    "seconds(5)",
    "minutes(2)",
    "hours(0.5)",
    "minutes(params.limit)",
    "hours(params.big)",
    "minutes(-2)",
    "minutes(())",
    "minutes(\"2\")",
    "seconds(state.battery_level)",
    "since(state.last_update)",
    "since(prev.ignition_update)",
    "since(tracker.last_data_at)",
    "since(\"2026-01-05 07:00:00\")",
    "since(\"2026-01-05T07:00:00Z\")",
    "since(\"yesterday\")",
    "since(())",
    "since(1767599000)",
    "since(1767599000.7)",
    "since(true)",
    "since(state.additional.event_code.value)",
    "changed(\"ignition\")",
    "changed(\"gps.speed\")",
    "changed(\"gps.location\")",
    "changed(\"inputs\")",
    "changed(\"inputs[1]\")",
    "changed(\"outputs\")",
    "changed(\"additional.event_code\")",
    "changed(\"movement_status\")",
    "changed(\"nope\")",
    "changed(params.path)",
    "changed(1)",
    "in_zone(\"depot\")",
    "in_zone(params.zone)",
    "in_zone(\"nowhere\")",
    "in_zone(())",
    "distance_m(state.gps.location.lat, state.gps.location.lng, 52.52, 13.4)",
    "distance_m(52.5, 13, 52, 13.4)",
    "distance_m((), 1, 2, 3)",
    "distance_m(\"a\", 1, 2, 3)",
    "fuel_drop(\"lls_level_1\", minutes(10))",
    "fuel_rise(params.sensor, 600)",
    "delta(\"lls_level_1\", 120.5)",
    "min_over(\"lls_level_1\", hours(1))",
    "max_over(\"odometer\", minutes(10))",
    "avg_over(\"lls_level_1\", 0.5)",
    "delta(\"missing\", 60)",
    "avg_over(\"lls_level_1\", 0)",
    "min_over(\"lls_level_1\", -5)",
    "max_over(\"lls_level_1\", ())",
    "fuel_drop(\"lls_level_1\", \"10\")",
    "fuel_drop(1, 60)",
    "delta(\"lls_level_1\", params.a)",
];

/// Literals, including the integer limits and escapes.
const LITERALS: &[&str] = &[
    "0",
    "1",
    "-3",
    "90",
    "90.0",
    "2.5",
    "1e3",
    "0.1",
    "1_000",
    "-0.0",
    "1e308",
    "9223372036854775807",
    "-9223372036854775807",
    "4611686018427387904",
    "3037000500",
    "\"parked\"",
    "\"moving\"",
    "\"active\"",
    "\"\"",
    "\"a\\\"b\"",
    "\"back\\\\slash\"",
    "\"tab\\there\"",
    "\"line\\nnext\"",
    "\"\\u0041\"",
    "\"Grüße\"",
    "true",
    "false",
    "()",
];

const BINARY: &[&str] = &[
    "==", "!=", "<", "<=", ">", ">=", "&&", "||", "??", "+", "-", "*", "/", "%",
];

const ROOTS: &[&str] = &["state", "prev", "state?"];
const TESTS: &[&str] = &["== ()", "!= ()"];

fn leaf() -> impl Strategy<Value = String> {
    let state = (select(ROOTS), select(state_leaves())).prop_map(|(root, f)| format!("{root}.{f}"));
    let presence = (select(OBJECTS), select(TESTS), any::<bool>()).prop_map(|(o, test, flip)| {
        if flip {
            format!("() {} {o}", &test[..2])
        } else {
            format!("{o} {test}")
        }
    });
    let plain = prop_oneof![
        4 => state,
        4 => select(OTHER_LEAVES).prop_map(str::to_string),
        3 => select(CALLS).prop_map(str::to_string),
        3 => select(LITERALS).prop_map(str::to_string),
        1 => presence,
    ];
    // Comments anywhere whitespace may go. A nested block comment is Rhai's alone: rare,
    // or most expressions of several leaves would never reach the direct evaluator.
    let before = prop_oneof![
        90 => Just(""),
        8 => Just("/* c */ "),
        1 => Just("/* a /* b */ */ "),
    ];
    let after = prop_oneof![
        90 => Just(""),
        5 => Just(" // c\n"),
        5 => Just(" /* */"),
    ];
    (plain, before, after).prop_map(|(l, before, after)| format!("{before}{l}{after}"))
}

fn expr() -> impl Strategy<Value = String> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            (inner.clone(), select(BINARY), inner.clone())
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            // No parentheses: Rhai's precedence and associativity decide.
            (
                inner.clone(),
                select(BINARY),
                inner.clone(),
                select(BINARY),
                inner.clone()
            )
                .prop_map(|(a, o1, b, o2, c)| format!("{a} {o1} {b} {o2} {c}")),
            // `??` chains of three and four operands, some parenthesised.
            proptest::collection::vec(inner.clone(), 3..5).prop_map(|v| v.join(" ?? ")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("({a} ?? {b}) ?? {c}")),
            inner.clone().prop_map(|a| format!("!{a}")),
            inner.prop_map(|a| format!("-({a})")),
        ]
    })
}

fn time(minutes_ago: i64) -> NavixyTime {
    NavixyTime::Instant(
        chrono::DateTime::from_timestamp_millis(NOW_MS).unwrap_or_default()
            - chrono::Duration::minutes(minutes_ago),
    )
}

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    proptest::option::weighted(0.7, s)
}

fn text(long: bool, s: &str) -> Text {
    if long { long_string().into() } else { s.into() }
}

fn source_state() -> impl Strategy<Value = Option<SourceState>> {
    let speed = select(vec![0.0, 50.0, 90.0, 90.000_000_000_001, 120.5, -1.0]);
    let gps = opt((
        opt(speed),
        opt(select(vec![(52.5201, 13.4), (52.6, 13.4), (-33.9, 151.2)])),
        opt(0.0..360.0f64),
        opt(any::<bool>()),
        opt(0..60i64),
    ))
    .prop_map(|g| {
        g.map(|(speed, location, heading, lbs, updated)| Gps {
            speed,
            location: location.map(|(lat, lng)| Location { lat, lng }),
            heading,
            alt: heading.map(|h| h - 100.0),
            precision: speed,
            signal_level: heading.map(|h| h / 3.6),
            gsm_lbs: lbs,
            updated: updated.map(time),
            satellites: heading.map(|h| (h / 30.0) as i64),
            hdop: speed.map(|s| s / 10.0),
        })
    });
    let gsm = opt((
        opt(select(vec!["Vodafone", "", "moving"])),
        opt(any::<bool>()),
        any::<bool>(),
    ))
    .prop_map(|g| {
        g.map(|(name, roaming, long)| Gsm {
            updated: Some(time(3)),
            signal_level: Some(71.0),
            network_name: name.map(|n| text(long && !n.is_empty(), n)),
            roaming,
        })
    });
    let status = (
        opt(select(vec![
            MovementStatus::Moving,
            MovementStatus::Parked,
            MovementStatus::Stopped,
        ])),
        opt(select(vec![
            ConnectionStatus::Active,
            ConnectionStatus::Offline,
            ConnectionStatus::SignalLost,
        ])),
        opt(any::<bool>()),
        opt(0.0..100.0f64),
        opt(select(vec![10_284i64, 0, i64::MAX])),
    );
    let bits = (
        opt(proptest::collection::vec(any::<bool>(), 0..5)),
        opt(proptest::collection::vec(any::<bool>(), 0..3)),
    );
    let additional = opt((
        opt(select(vec!["42", "parked", "", "2026-01-05 07:00:00"])),
        any::<bool>(),
        opt(0..90i64),
    ));
    let times = (opt(0..600i64), opt(0..600i64), opt(0..600i64));
    opt((gps, gsm, status, bits, additional, times).prop_map(
        |(gps, gsm, status, bits, additional, times)| {
            let (movement, connection, ignition, battery, source_id) = status;
            let (update, ignition_update, movement_update) = times;
            let (inputs, outputs) = bits;
            SourceState {
                source_id,
                gps,
                gsm,
                connection_status: connection,
                movement_status: movement,
                movement_status_update: movement_update.map(time),
                ignition,
                ignition_update: ignition_update.map(time),
                last_update: update.map(time),
                battery_level: battery,
                battery_update: update.map(time),
                inputs_update: inputs.as_ref().map(|_| time(1)),
                inputs: inputs.map(Bits::from_vec),
                outputs_update: outputs.as_ref().map(|_| time(2)),
                outputs: outputs.map(Bits::from_vec),
                actual_track_update: Some(
                    NavixyTime::parse("2026-01-05 07:58:00").unwrap_or(time(2)),
                ),
                additional: additional.map(|(code, long, updated)| {
                    let mut fields = std::collections::BTreeMap::new();
                    fields.insert(
                        "event_code".into(),
                        AdditionalField {
                            value: code.map(Text::from),
                            updated: updated.map(time),
                        },
                    );
                    fields.insert(
                        "note".into(),
                        AdditionalField {
                            value: Some(text(long, "short")),
                            updated: None,
                        },
                    );
                    fields
                }),
            }
        },
    ))
}

/// A JSON scalar a state field, virtual sensor or iot attribute may carry.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        select(vec![0i64, 3, -7, i64::MAX]).prop_map(serde_json::Value::from),
        select(vec![2.5f64, 262.9138]).prop_map(serde_json::Value::from),
        select(vec!["on", "", "262.9138", " 12 ", "nan"]).prop_map(serde_json::Value::from),
        Just(serde_json::Value::from(long_string())),
        Just(serde_json::json!([1, 2])),
        Just(serde_json::json!({"a": 1})),
    ]
}

fn readings() -> impl Strategy<Value = Readings> {
    (
        opt(select(vec![0.0, 15.5, 300.0])),
        opt(select(vec![21.0, 24.5, 30.1])),
        opt(json_value()),
        opt(json_value()),
        opt(select(vec![0.0, 123_456.7])),
        any::<bool>(),
    )
        .prop_map(|(fuel, voltage, mil, door, odometer, long_units)| {
            let mut r = Readings::default();
            if let Some(v) = fuel {
                r.inputs.insert(
                    "lls_level_1".into(),
                    SensorInput {
                        sensor_id: Some(7),
                        label: Some("Fuel".into()),
                        name: Some("lls_level_1".into()),
                        kind: Some("fuel".into()),
                        value: Some(v),
                        units: Some(text(long_units, "l")),
                        units_type: None,
                        update_time: Some(time(1)),
                        min_value: Some(0.0),
                        max_value: Some(400.0),
                        converted_value: Some(v * 2.0),
                    },
                );
            }
            if let Some(v) = voltage {
                r.inputs.insert(
                    "board_voltage".into(),
                    SensorInput {
                        name: Some("board_voltage".into()),
                        value: Some(v),
                        ..SensorInput::default()
                    },
                );
            }
            if let Some(value) = mil {
                r.states.insert(
                    "obd_mil_status".into(),
                    StateValue {
                        field: Some("obd_mil_status".into()),
                        value,
                        update_time: Some(time(4)),
                    },
                );
            }
            if let Some(value) = door {
                r.virtual_sensors.insert(
                    "door_sensor".into(),
                    VirtualSensor {
                        sensor_id: Some(9),
                        label: Some("door_sensor".into()),
                        value,
                        kind: Some("virtual".into()),
                        update_time: None,
                    },
                );
            }
            if let Some(v) = odometer {
                r.counters.insert(
                    "odometer".into(),
                    Counter {
                        kind: Some("odometer".into()),
                        value: Some(v),
                        update_time: Some(time(9)),
                    },
                );
            }
            r.counters.insert(
                "engine_hours".into(),
                Counter {
                    kind: Some("engine_hours".into()),
                    value: None,
                    update_time: None,
                },
            );
            r
        })
}

fn iot() -> impl Strategy<Value = HashMap<String, IotValue>> {
    (opt(json_value()), opt(json_value()), opt(json_value())).prop_map(|(sat, temp, note)| {
        let mut iot = HashMap::new();
        for (name, v) in [("satellites", sat), ("temp", temp), ("note", note)] {
            if let Some(value) = v {
                iot.insert(
                    name.to_string(),
                    IotValue {
                        value,
                        msg_time: Some(time(1)),
                        srv_time: None,
                    },
                );
            }
        }
        iot
    })
}

/// A fuel series (points minutes ago, litres) and an odometer one.
fn history() -> impl Strategy<Value = Vec<(i64, f64)>> {
    proptest::collection::vec((0..70i64, select(vec![300.0, 280.0, 262.5, 310.0])), 0..6)
}

fn tracker() -> impl Strategy<Value = TrackerState> {
    (
        source_state(),
        source_state(),
        readings(),
        iot(),
        history(),
        (
            select(vec![
                Lifecycle::Active,
                Lifecycle::Blocked,
                Lifecycle::Removed,
            ]),
            any::<bool>(),
            opt(select(vec!["Truck 7", "parked", ""])),
            any::<bool>(),
            opt(0..600i64),
        ),
    )
        .prop_map(|(current, prev, readings, iot, points, info)| {
            let (lifecycle, online, label, long_label, last_data) = info;
            let mut history = crate::state::history::History::default();
            let policy = HistoryPolicy::default();
            let mut points = points;
            points.sort_by_key(|(ago, _)| -ago);
            for (ago, v) in points {
                let at = NOW_MS - ago * 60_000;
                history.record("lls_level_1", at, v, &policy);
                history.record("odometer", at, 1000.0 - v, &policy);
            }
            TrackerState {
                info: Arc::new(TrackerInfo {
                    source: 0,
                    id: 21080,
                    source_id: Some(10284),
                    label: label.map(|l| text(long_label && !l.is_empty(), l).into()),
                    group_id: long_label.then_some(4),
                    blocked: None,
                }),
                lifecycle,
                online,
                current: current.map(Arc::new),
                prev: prev.map(Arc::new),
                readings,
                iot,
                history,
                last_data_at: last_data
                    .and_then(|m| chrono::DateTime::from_timestamp_millis(NOW_MS - m * 60_000)),
                ..TrackerState::default()
            }
        })
}

/// Cases per run: `PROPTEST_CASES`, else enough to cover the grammar in a few seconds.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]
    #[test]
    fn direct_evaluation_agrees_with_rhai(text in expr(), tracker in tracker()) {
        if let Err(e) = agree(&text, &tracker) {
            prop_assert!(false, "{}", e);
        }
    }
}
