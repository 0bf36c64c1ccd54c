//! The fast path against the lenient decoder: on every frame it reads, the same frame
//! (compared through `Debug`, so a float's sign and last bit count); on every frame the
//! lenient decoder refuses or reads with an invalid item, nothing.

use super::*;
use crate::navixy::decode::{StateFields, decode_object};

/// A full state as Navixy's wire sends it, `{id}`, `{lat}`, `{speed}` varied.
fn state(id: i64, lat: &str, speed: &str) -> String {
    format!(
        r#"{{"source_id":{id},"gps":{{"updated":"2026-12-07T05:50:06+00:00","signal_level":80,"location":{{"lat":{lat},"lng":-13.493586123456789}},"heading":294,"speed":{speed},"alt":30,"precision":5}},"connection_status":"active","movement_status":"parked","movement_status_update":"2026-12-07 05:40:07","ignition":false,"ignition_update":"2026-12-07T05:35:07+00:00","gsm":{{"updated":"2026-12-07T05:50:06+00:00","signal_level":80,"network_name":"Телеком","roaming":false}},"last_update":"2026-12-07T05:50:06Z","battery_level":90.5,"battery_update":"2026-12-07T05:49:07+00:00","inputs":[false,false,false,true,false,false,false,false],"inputs_update":"2026-12-07T05:35:07+00:00","outputs":[],"outputs_update":"2026-12-07T05:35:07+00:00","additional":{{"event_code":{{"value":"240","updated":"2026-12-07T05:50:06+00:00"}},"hardware_key":{{"value":7,"updated":null}},"gone":null}},"actual_track_update":"2026-12-07T05:40:07+00:00"}}"#
    )
}

/// A compact state: what Navixy sends between full ones.
fn compact(id: i64) -> String {
    format!(
        r#"{{"source_id":{id},"gps":{{"updated":"2026-12-07 05:50:16","location":{{"lat":52.5,"lng":13.25}},"speed":12.5}},"connection_status":"idle","movement_status":"moving","last_update":"2026-12-07 05:50:17"}}"#
    )
}

fn frame(states: &[String]) -> String {
    let items: Vec<String> = states
        .iter()
        .map(|s| format!(r#"{{"type":"source_state_event","state":{s}}}"#))
        .collect();
    format!(
        r#"{{"type":"event","event":"state_batch","data":[{}]}}"#,
        items.join(",")
    )
}

fn sample() -> String {
    frame(&[state(10284, "52.790800", "0"), compact(10285)])
}

/// A readings item as Navixy's wire sends it: two sensors, a state, a virtual sensor and
/// two counters; `{value}` is the fuel level.
fn readings(tracker: i64, value: &str) -> String {
    format!(
        r#"{{"type":"readings_event","tracker_id":{tracker},"timestamp":"2025-02-11 15:12:58","inputs":[{{"sensor_id":501,"label":"Fuel tank","name":"lls_level_1","type":"fuel","value":{value},"units":"l","units_type":"litre","update_time":"2025-02-11 15:12:58","min_value":0,"max_value":400}},{{"sensor_id":502,"label":"Board voltage","name":"board_voltage","type":"power","value":27.4,"units":"V","units_type":"volt","update_time":"2025-02-11T15:12:58Z","converted_value":-1.5}}],"states":[{{"field":"obd_mil_status","value":false,"update_time":"2025-02-11 15:12:58"}},{{"field":"gear","value":-3}},{{"field":"mode","value":"eco","update_time":null}}],"virtual_sensors":[{{"sensor_id":610,"label":"Door","value":"Closed","type":"state","update_time":"2025-02-11 15:10:02"}},{{"sensor_id":611,"label":"Load","value":12.25}},{{"sensor_id":612,"value":null}}],"counters":[{{"type":"odometer","value":182344.2,"update_time":"2025-02-11 15:12:58"}},{{"type":"engine_hours","value":5120,"update_time":"2025-02-11 15:12:58"}}]}}"#
    )
}

fn readings_frame(items: &[String]) -> String {
    format!(
        r#"{{"type":"event","event":"readings_batch","data":[{}]}}"#,
        items.join(",")
    )
}

fn readings_sample() -> String {
    readings_frame(&[
        readings(21080, "262.9138"),
        r#"{"type":"readings_event","tracker_id":21081,"inputs":null,"states":[],"counters":[{"type":"odometer","value":12}]}"#.into(),
        r#"{"type":"readings_event"}"#.into(),
    ])
}

/// A pretty-printed sample of the protocol (`tests/data/navixy/{name}`) without its last
/// item, a lifecycle item.
fn without_lifecycle(name: &str) -> String {
    let path = format!("{}/tests/data/navixy/{name}", env!("CARGO_MANIFEST_DIR"));
    let wire = std::fs::read_to_string(&path).expect(&path);
    let (items, _) = wire
        .split_once(",\n    {\n      \"type\": \"lifecycle_event\"")
        .expect("a lifecycle item");
    format!("{items}]}}")
}

/// Whether the fast path read `text`; panics when it read it otherwise than the lenient
/// decoder, or read what the lenient decoder refuses.
fn agrees(text: &str, skip: u32) -> bool {
    let t = text.trim();
    let Some(direct) = batch(t, skip) else {
        return false;
    };
    let lenient = decode_object(t, skip);
    assert_eq!(
        Ok(format!("{direct:?}")),
        lenient.as_ref().map(|f| format!("{f:?}")),
        "{text}"
    );
    let items = match lenient {
        Ok(Frame::StateBatch { items, .. } | Frame::ReadingsBatch { items, .. }) => items,
        _ => unreachable!(),
    };
    assert!(
        items
            .iter()
            .all(|i| matches!(i, BatchItem::State(_) | BatchItem::Readings(_))),
        "{text}"
    );
    true
}

#[test]
fn reads_wire_state_batches_as_the_lenient_decoder_does() {
    assert!(agrees(&sample(), 0));
    assert!(agrees(&frame(&[]), 0));
    assert!(agrees(
        &format!(
            " \n{}\n ",
            sample()
                .replace(",\"", " ,\n\t\"")
                .replace("\":", "\" :\r ")
                .replace('{', "{ ")
                .replace('}', " }")
        ),
        0
    ));
    let rule_fields = StateFields::only(["gps", "ignition", "inputs"]).unwrap();
    assert!(agrees(&sample(), rule_fields.skip));
    // The protocol's sample, pretty-printed, without its lifecycle item (below).
    assert!(agrees(&without_lifecycle("state_batch_wire.json"), 0));
    let Some(Frame::StateBatch { items, .. }) = batch(&sample(), 0) else {
        panic!()
    };
    let BatchItem::State(s) = &items[0] else {
        panic!()
    };
    assert_eq!(s.source_id, Some(10284));
    assert_eq!(
        s.gsm.as_ref().unwrap().network_name.as_deref(),
        Some("Телеком")
    );
    let additional = s.additional.as_ref().unwrap();
    assert_eq!(additional["hardware_key"].value.as_deref(), Some("7"));
    assert!(!additional.contains_key("gone"));
}

#[test]
fn reads_wire_readings_batches_as_the_lenient_decoder_does() {
    assert!(agrees(&readings_sample(), 0));
    assert!(agrees(&readings_frame(&[]), 0));
    // A sensor's key it does not know is skipped, as the lenient decoder skips it; keys out
    // of Navixy's order, and a key given twice (the last one wins), are read as it reads
    // them.
    let item = readings(1, "1")
        .replacen(
            r#""units":"l","#,
            r#""units":"l","precision":{"x":[2]},"#,
            1,
        )
        .replacen(
            r#""field":"gear","value":-3"#,
            r#""value":-3,"field":"gear","value":-4"#,
            1,
        );
    assert!(agrees(&readings_frame(&[item]), 0));
    assert!(agrees(
        &readings_sample()
            .replace(",\"", " ,\n\t\"")
            .replace("\":", "\" :\r ")
            .replace('[', "[ ")
            .replace(']', " ]"),
        0
    ));
    // The protocol's sample, pretty-printed, without its lifecycle item (below).
    assert!(agrees(&without_lifecycle("readings_batch_wire.json"), 0));
    let Some(Frame::ReadingsBatch { items, .. }) = batch(&readings_sample(), 0) else {
        panic!()
    };
    let BatchItem::Readings(r) = &items[0] else {
        panic!()
    };
    assert_eq!(r.tracker_id, Some(21080));
    assert_eq!(r.inputs[0].value, Some(262.9138));
    assert_eq!(r.inputs[1].units.as_deref(), Some("V"));
    assert_eq!(r.states[1].value, serde_json::json!(-3));
    assert_eq!(r.virtual_sensors[0].value, serde_json::json!("Closed"));
    assert_eq!(r.virtual_sensors[2].value, serde_json::Value::Null);
    assert_eq!(r.counters[1].value, Some(5120.0));
    let BatchItem::Readings(r) = &items[1] else {
        panic!()
    };
    assert!(r.inputs.is_empty());
    assert_eq!(r.counters[0].value, Some(12.0));
}

#[test]
fn leaves_readings_of_other_shapes_to_the_lenient_decoder() {
    let item = readings(1, "1");
    for (from, to) in [
        // A key of the item's own the lenient decoder does not know (it reads it as a
        // state's field).
        (r#""tracker_id":1,"#, r#""tracker_id":1,"source_id":2,"#),
        // No tag (the lenient decoder takes the item for a readings item all the same).
        (r#""type":"readings_event","#, ""),
        // A null or another type inside an array, an array for a value.
        (r#""inputs":["#, r#""inputs":[null,"#),
        (r#""counters":["#, r#""counters":[7,"#),
        (r#""value":"Closed""#, r#""value":["Closed"]"#),
        (r#""value":false"#, r#""value":{"on":false}"#),
        // A trailing comma.
        (
            r#""update_time":"2025-02-11 15:10:02"}"#,
            r#""update_time":"2025-02-11 15:10:02",}"#,
        ),
    ] {
        let changed = item.replacen(from, to, 1);
        assert!(changed != item, "{from}");
        let text = readings_frame(&[changed]);
        assert!(!agrees(&text, 0), "{text}");
    }
    // A trailing comma after the last item, and after the last field of an item.
    assert!(!agrees(&readings_frame(&[item.clone(), String::new()]), 0));
    let last_field = item.strip_suffix('}').unwrap();
    assert!(!agrees(&readings_frame(&[format!("{last_field},}}")]), 0));
}

#[test]
fn leaves_other_frames_and_shapes_to_the_lenient_decoder() {
    let readings = include_str!("../../../../tests/data/navixy/readings_batch_wire.json");
    // A lifecycle item among the states.
    let mixed = include_str!("../../../../tests/data/navixy/state_batch_wire.json");
    let documented = include_str!("../../../../tests/data/navixy/state_batch_documented.json");
    for text in [
        readings,
        mixed,
        documented,
        r#"{"event":"state_batch","type":"event","data":[]}"#,
        r#"{"type":"event","event":"state_batch","user_time":"2026-01-01 00:00:00","data":[]}"#,
        r#"{"type":"event","event":"state_batch","data":[{"state":{},"type":"source_state_event"}]}"#,
        r#"{"type":"event","event":"state_batch","data":[{"type":"source_state_event","state":null}]}"#,
        r#"{"type":"event","event":"state_batch","data":[]} x"#,
    ] {
        assert!(!agrees(text, 0), "{text}");
    }
}

#[test]
fn numbers_read_to_the_same_bits_or_not_at_all() {
    let read = [
        "0",
        "-0",
        "0.0",
        "-0.0",
        "7",
        "-7",
        "1.5",
        "-2.25",
        "14.330065796228606",
        "0.1",
        "0.30000000000000004",
        "123456789.123456789",
        "9007199254740993",
        // Read one unit in the last place away from the nearest double, by serde_json as
        // by the fast path (its `float_roundtrip` would round them correctly, and fail here).
        "64.708321257442331",
        "4.0257678620673558",
        "18446744073709551615",
        "-9223372036854775808",
        // Below i64: serde_json reads it as a float, and so does the fast path.
        "-9223372036854775809",
        "0.0000000000000000000001",
    ];
    let refused = [
        "1e3",
        "1E-3",
        "1.5e2",
        "18446744073709551616",
        "0.00000000000000000000001",
        "1.8446744073709551616",
        "01",
        "1.",
        ".5",
        "-",
        "+1",
        "\"5\"",
        "true",
        "[5]",
    ];
    for n in read {
        assert!(agrees(&frame(&[state(1, n, n)]), 0), "{n}");
    }
    for n in refused {
        assert!(!agrees(&frame(&[state(1, n, n)]), 0), "{n}");
    }
    // Ids: integers, and doubles without a fraction as the lenient decoder takes them.
    for (id, read) in [("10284.0", true), ("-0", true), ("1.5", false)] {
        let text = frame(&[state(1, "1", "1").replacen("1", id, 1)]);
        assert_eq!(agrees(&text, 0), read, "{id}");
    }
}

/// A random piece of JSON, or of something that is not.
const PIECES: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "-0",
    "1.5",
    "1e3",
    "10284.0",
    "18446744073709551616",
    "\"x\"",
    "\"a\\\"b\"",
    "\"\\u0041\"",
    "\"moving\"",
    "\"warp\"",
    "\"2026-01-01 00:00:00\"",
    "\"2026-13-01 00:00:00\"",
    "[]",
    "{}",
    "[true,null]",
    "{\"a\":[1,{\"b\":null}]}",
    " ",
    ",",
    ":",
    "\"",
    "{",
    "}",
    "[",
    "]",
    "\\",
    "\u{1}",
];

/// The end of the JSON value that starts at `start`.
fn value_end(text: &[u8], start: usize) -> usize {
    let (mut depth, mut in_str, mut i) = (0i32, false, start);
    while i < text.len() {
        match (in_str, text[i]) {
            (true, b'\\') => i += 1,
            (true, b'"') => in_str = false,
            (false, b'"') => in_str = true,
            (false, b'{' | b'[') => depth += 1,
            (false, b'}' | b']') if depth == 0 => return i,
            (false, b'}' | b']') => depth -= 1,
            (false, b',') if depth == 0 => return i,
            _ => {}
        }
        i += 1;
    }
    i.min(text.len())
}

fn mutate(text: &str, rng: &mut fastrand::Rng) -> String {
    let mut t = text.to_owned();
    for _ in 0..rng.usize(1..=3) {
        let b = t.as_bytes();
        let piece = PIECES[rng.usize(..PIECES.len())];
        let at = rng.usize(..b.len());
        if !t.is_char_boundary(at) {
            continue;
        }
        match rng.u8(..5) {
            // A value of another type (or another value of the same).
            0 | 1 => {
                let colons: Vec<usize> = (0..b.len()).filter(|&i| b[i] == b':').collect();
                let start = colons[rng.usize(..colons.len())] + 1;
                let end = value_end(b, start);
                t.replace_range(start..end, piece);
            }
            // A key again, or one nobody knows, at the start of an object.
            2 => {
                let opens: Vec<usize> = (0..b.len()).filter(|&i| b[i] == b'{').collect();
                let at = opens[rng.usize(..opens.len())] + 1;
                let keys = [
                    "\"speed\"",
                    "\"gps\"",
                    "\"inputs\"",
                    "\"zzz\"",
                    "\"type\"",
                    "\"value\"",
                    "\"counters\"",
                ];
                let key = keys[rng.usize(..keys.len())];
                t.insert_str(at, &format!("{key}:{piece},"));
            }
            3 => t.insert_str(at, piece),
            _ => {
                let end = (at + rng.usize(1..8)).min(t.len());
                if t.is_char_boundary(end) {
                    t.replace_range(at..end, "");
                }
            }
        }
    }
    t
}

#[test]
fn mutated_frames_are_read_as_the_lenient_decoder_reads_them_or_left_to_it() {
    let mut rng = fastrand::Rng::with_seed(20261207);
    let rule_fields = StateFields::only(["gps", "movement_status"]).unwrap().skip;
    // Both ways are exercised: many mutations keep a frame the fast path reads (fewer of
    // a readings frame, where any key it does not know gives up).
    for (base, least) in [(sample(), 400), (readings_sample(), 100)] {
        let (read, left) = mutated(&base, &mut rng, rule_fields);
        assert!(
            read > least && left > 400,
            "read {read}, left {left}: {base}"
        );
    }
}

/// How many of 4,000 mutations of `base` the fast path read, and how many it left.
fn mutated(base: &str, rng: &mut fastrand::Rng, rule_fields: u32) -> (u32, u32) {
    let (mut read, mut left) = (0, 0);
    for i in 0..4000 {
        let text = mutate(base, rng);
        let skip = if i % 4 == 0 { rule_fields } else { 0 };
        if agrees(&text, skip) {
            read += 1;
        } else {
            left += 1;
        }
    }
    (read, left)
}

#[test]
fn an_escape_or_a_control_character_anywhere_in_a_string_is_left_to_the_lenient_decoder() {
    let with_name = |name: &str| frame(&[state(1, "1", "1").replace("Телеком", name)]);
    for len in 0..24 {
        assert!(agrees(&with_name(&"é".repeat(len)), 0), "{len}");
        for at in 0..len {
            for odd in ["\\n", "\\\"", "\\u0041", "\u{1}", "\t"] {
                let mut name = "a".repeat(len);
                name.insert_str(at, odd);
                assert!(!agrees(&with_name(&name), 0), "{name:?}");
            }
        }
    }
}

#[test]
fn a_time_is_read_whole_whatever_follows_it() {
    // After a 19-byte time, `","abc":` puts a quote where a 25-byte time would end.
    for text in [
        r#""hardware_key":{"updated":"2026-01-01 00:00:00","abc":1,"value":"0"}"#,
        r#""hardware_key":{"updated":"2026-01-01T00:00:00Z","abcd":1,"value":"0"}"#,
        r#""hardware_key":{"updated":"2026-01-01 00:00:00.250","value":"0"}"#,
        r#""hardware_key":{"updated":" 2026-01-01 00:00:00","value":"0"}"#,
    ] {
        let state =
            state(1, "1", "1").replace(r#""hardware_key":{"value":7,"updated":null}"#, text);
        assert!(state.contains(text));
        assert!(agrees(&frame(&[state]), 0), "{text}");
    }
}

/// The words every state repeats (`additional`'s keys and values, the operator) and its
/// inputs and outputs are held inline, read by either path: decoding them allocates
/// nothing and the shard that drops the state frees nothing for them.
#[test]
fn the_short_words_and_the_bits_of_a_state_are_held_inline_on_both_paths() {
    let text = sample();
    for frame in [batch(&text, 0), decode_object(&text, 0).ok()] {
        let Some(Frame::StateBatch { items, .. }) = frame else {
            panic!("{frame:?}")
        };
        let BatchItem::State(state) = &items[0] else {
            panic!("{items:?}")
        };
        let additional = state.additional.as_ref().expect("additional");
        assert_eq!(additional.len(), 2, "{additional:?}");
        for (key, field) in additional {
            let value = field.value.as_ref().expect("a value");
            assert!(!key.is_heap_allocated(), "{key}");
            assert!(!value.is_heap_allocated(), "{key}: {value}");
        }
        let gsm = state.gsm.as_ref().expect("gsm");
        let operator = gsm.network_name.as_ref().expect("network_name");
        assert!(!operator.is_heap_allocated(), "{operator}");
        let inputs = state.inputs.as_ref().expect("inputs");
        assert_eq!(inputs.len(), 8);
        assert!(!inputs.spilled(), "{inputs:?}");
    }
}

/// A reading's words (sensor names, labels, units, counter types) are held inline, read by
/// either path: decoding them allocates nothing.
#[test]
fn the_short_words_of_readings_are_held_inline_on_both_paths() {
    let text = without_lifecycle("readings_batch_wire.json");
    for frame in [batch(&text, 0), decode_object(&text, 0).ok()] {
        let Some(Frame::ReadingsBatch { items, .. }) = frame else {
            panic!("{frame:?}")
        };
        let BatchItem::Readings(r) = &items[0] else {
            panic!("{items:?}")
        };
        let words: Vec<&Text> = (r.inputs.iter())
            .flat_map(|i| [&i.label, &i.name, &i.kind, &i.units, &i.units_type])
            .chain(r.states.iter().map(|s| &s.field))
            .chain(r.virtual_sensors.iter().flat_map(|v| [&v.label, &v.kind]))
            .chain(r.counters.iter().map(|c| &c.kind))
            .flatten()
            .collect();
        assert_eq!(words.len(), 15, "{words:?}");
        for word in words {
            assert!(!word.is_heap_allocated(), "{word}");
        }
    }
}
