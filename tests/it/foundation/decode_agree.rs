//! The decoder reads every valid frame as a plain serde derive of the same types does:
//! random source states (every field of the protocol table, present or not), written in
//! the three shapes Navixy sends them and in two key orders, and random readings items,
//! decoded both ways.
//!
//! The states come from the same field tables as the types, so a field added to a table is
//! covered here without a line of this file changing.

use std::collections::BTreeMap;

use navixy_alerts::navixy::decode::decode_frame;
use navixy_alerts::navixy::messages::{
    AdditionalField, BatchItem, Bits, ConnectionStatus, Counter, Frame, Gps, Gsm, Location,
    MovementStatus, NavixyTime, ReadingsItem, SensorInput, SourceState, StateValue, Text,
    VirtualSensor,
};
use proptest::prelude::*;
use serde::Deserialize;

/// A strategy for every value of a type the tables use.
trait Arb: Sized + std::fmt::Debug + Clone + 'static {
    fn arb() -> BoxedStrategy<Self>;
}

impl Arb for f64 {
    fn arb() -> BoxedStrategy<Self> {
        prop_oneof![
            -1000.0..1000.0f64,
            prop::num::f64::NORMAL,
            prop::num::f64::ZERO,
            (-100i32..100).prop_map(f64::from),
        ]
        .boxed()
    }
}

impl Arb for i64 {
    fn arb() -> BoxedStrategy<Self> {
        prop_oneof![any::<i64>(), 0..100_000i64].boxed()
    }
}

impl Arb for bool {
    fn arb() -> BoxedStrategy<Self> {
        any::<bool>().boxed()
    }
}

impl Arb for Text {
    /// Plain words, short enough to be held inline or not, and any text at all (quotes,
    /// escapes, control characters, emoji).
    fn arb() -> BoxedStrategy<Self> {
        prop_oneof!["[A-Za-z0-9 ._-]{0,40}", ".{0,8}"]
            .prop_map(Text::from)
            .boxed()
    }
}

impl Arb for NavixyTime {
    /// Both shapes: wall time (`2018-10-17 12:51:43`) and an instant with `Z`.
    fn arb() -> BoxedStrategy<Self> {
        (
            2000..2040i32,
            1..=12u32,
            1..=28u32,
            0..24u32,
            0..60u32,
            0..60u32,
            any::<bool>(),
        )
            .prop_map(|(y, mo, d, h, mi, s, instant)| {
                let text = if instant {
                    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
                } else {
                    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
                };
                NavixyTime::parse(&text).unwrap_or_else(|| panic!("{text}"))
            })
            .boxed()
    }
}

impl Arb for ConnectionStatus {
    fn arb() -> BoxedStrategy<Self> {
        prop::sample::select(vec![
            ConnectionStatus::SignalLost,
            ConnectionStatus::JustRegistered,
            ConnectionStatus::JustReplaced,
            ConnectionStatus::Offline,
            ConnectionStatus::Idle,
            ConnectionStatus::Active,
            ConnectionStatus::Other,
        ])
        .boxed()
    }
}

impl Arb for MovementStatus {
    fn arb() -> BoxedStrategy<Self> {
        prop::sample::select(vec![
            MovementStatus::Moving,
            MovementStatus::Stopped,
            MovementStatus::Parked,
            MovementStatus::Other,
        ])
        .boxed()
    }
}

impl Arb for Bits {
    /// Up to 20: held inline or not.
    fn arb() -> BoxedStrategy<Self> {
        prop::collection::vec(any::<bool>(), 0..20)
            .prop_map(Bits::from_vec)
            .boxed()
    }
}

impl Arb for Location {
    fn arb() -> BoxedStrategy<Self> {
        (-90.0..90.0f64, -180.0..180.0f64)
            .prop_map(|(lat, lng)| Location { lat, lng })
            .boxed()
    }
}

impl Arb for BTreeMap<Text, AdditionalField> {
    fn arb() -> BoxedStrategy<Self> {
        let field = (
            proptest::option::of(Text::arb()),
            proptest::option::of(NavixyTime::arb()),
        )
            .prop_map(|(value, updated)| AdditionalField { value, updated });
        prop::collection::btree_map("[a-z_]{1,30}".prop_map(Text::from), field, 0..4).boxed()
    }
}

/// A struct of a field table: each field absent or any value of its type.
macro_rules! arb_struct {
    (
        $(#[$smeta:meta])* $name:ident $prefix:literal $expected:literal {
            $( $(#[$meta:meta])* $field:ident : $ty:ty => $kind:ident ),* $(,)?
        }
    ) => {
        impl Arb for $name {
            fn arb() -> BoxedStrategy<Self> {
                let s = Just($name::default()).boxed();
                $(
                    let s = (s, proptest::option::of(<$ty as Arb>::arb()))
                        .prop_map(|(mut v, f)| {
                            v.$field = f;
                            v
                        })
                        .boxed();
                )*
                s
            }
        }
    };
}

navixy_alerts::source_state_fields!(arb_struct);
navixy_alerts::gps_fields!(arb_struct);
navixy_alerts::gsm_fields!(arb_struct);

/// A sensor's or virtual sensor's value: any scalar.
fn arb_value() -> BoxedStrategy<serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        i64::arb().prop_map(serde_json::Value::from),
        f64::arb().prop_map(serde_json::Value::from),
        Text::arb().prop_map(|t| serde_json::Value::from(t.as_str())),
    ]
    .boxed()
}

/// A struct of the readings table: each `opt` field absent or any value of its type, each
/// `json` field any scalar.
macro_rules! arb_readings {
    (@arb opt $ty:ty) => { proptest::option::of(<$ty as Arb>::arb()).boxed() };
    (@arb json $ty:ty) => { arb_value() };
    ($(
        $(#[$smeta:meta])* $name:ident $prefix:literal $expected:literal {
            $( $(#[$meta:meta])* $field:ident $key:literal : $ty:ty => $kind:ident ),* $(,)?
        }
    )*) => {$(
        impl Arb for $name {
            fn arb() -> BoxedStrategy<Self> {
                let s = Just($name::default()).boxed();
                $(
                    let s = (s, arb_readings!(@arb $kind $ty))
                        .prop_map(|(mut v, f)| {
                            v.$field = f;
                            v
                        })
                        .boxed();
                )*
                s
            }
        }
    )*};
}

navixy_alerts::readings_fields!(arb_readings);

impl Arb for ReadingsItem {
    fn arb() -> BoxedStrategy<Self> {
        (
            proptest::option::of(i64::arb()),
            proptest::option::of(NavixyTime::arb()),
            prop::collection::vec(SensorInput::arb(), 0..3),
            prop::collection::vec(StateValue::arb(), 0..3),
            prop::collection::vec(VirtualSensor::arb(), 0..3),
            prop::collection::vec(Counter::arb(), 0..3),
        )
            .prop_map(
                |(tracker_id, timestamp, inputs, states, virtual_sensors, counters)| ReadingsItem {
                    tracker_id,
                    timestamp,
                    inputs,
                    states,
                    virtual_sensors,
                    counters,
                },
            )
            .boxed()
    }
}

/// `state_batch` on the wire: tagged items.
#[derive(Deserialize)]
struct WireBatch {
    data: Vec<WireItem>,
}

#[derive(Deserialize)]
struct WireItem {
    state: SourceState,
}

/// `state_batch` as documented: bare states.
#[derive(Deserialize)]
struct DocumentedBatch {
    data: Vec<SourceState>,
}

/// `state`: one state.
#[derive(Deserialize)]
struct StateEvent {
    data: SourceState,
}

/// A state as JSON, its keys in the struct's order or sorted.
fn json(state: &SourceState, sorted: bool) -> String {
    if sorted {
        let value = serde_json::to_value(state).expect("a state is JSON");
        serde_json::to_string(&value).expect("a state is JSON")
    } else {
        serde_json::to_string(state).expect("a state is JSON")
    }
}

fn lenient_states(frame: &str) -> Vec<SourceState> {
    match decode_frame(frame) {
        Ok(Frame::StateBatch { items, .. }) => items
            .into_iter()
            .map(|item| match item {
                BatchItem::State(s) => *s,
                other => panic!("not a state: {other:?}\n{frame}"),
            })
            .collect(),
        Ok(Frame::State { state, .. }) => vec![*state],
        other => panic!("{other:?}\n{frame}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn lenient_and_serde_derive_agree(
        states in prop::collection::vec(SourceState::arb(), 1..4),
        sorted in any::<bool>(),
    ) {
        let texts: Vec<String> = states.iter().map(|s| json(s, sorted)).collect();

        let wire = format!(
            r#"{{"type":"event","event":"state_batch","data":[{}]}}"#,
            texts
                .iter()
                .map(|t| format!(r#"{{"type":"source_state_event","state":{t}}}"#))
                .collect::<Vec<_>>()
                .join(",")
        );
        let derived: WireBatch = serde_json::from_str(&wire).expect("derive reads it");
        let derived: Vec<SourceState> = derived.data.into_iter().map(|i| i.state).collect();
        prop_assert_eq!(lenient_states(&wire), derived);

        let documented = format!(
            r#"{{"type":"event","event":"state_batch","user_time":"2018-10-17 12:51:55","data":[{}]}}"#,
            texts.join(",")
        );
        let derived: DocumentedBatch = serde_json::from_str(&documented).expect("derive reads it");
        prop_assert_eq!(lenient_states(&documented), derived.data);

        let single = format!(r#"{{"type":"event","event":"state","data":{}}}"#, texts[0]);
        let derived: StateEvent = serde_json::from_str(&single).expect("derive reads it");
        prop_assert_eq!(lenient_states(&single), vec![derived.data]);
    }

    #[test]
    fn readings_and_serde_derive_agree(items in prop::collection::vec(ReadingsItem::arb(), 0..4)) {
        let texts: Vec<String> = items
            .iter()
            .map(|item| {
                let json = serde_json::to_string(item).expect("an item is JSON");
                format!(r#"{{"type":"readings_event",{}"#, &json[1..])
            })
            .collect();
        let frame = format!(
            r#"{{"type":"event","event":"readings_batch","data":[{}]}}"#,
            texts.join(",")
        );
        let derived: Vec<ReadingsItem> = texts
            .iter()
            .map(|t| serde_json::from_str(t).expect("derive reads it"))
            .collect();
        let decoded: Vec<ReadingsItem> = match decode_frame(&frame) {
            Ok(Frame::ReadingsBatch { items, .. }) => items
                .into_iter()
                .map(|item| match item {
                    BatchItem::Readings(r) => *r,
                    other => panic!("not readings: {other:?}\n{frame}"),
                })
                .collect(),
            other => panic!("{other:?}\n{frame}"),
        };
        prop_assert_eq!(decoded, derived);
    }
}
