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

/// Whether the fast path read `text`; panics when it read it otherwise than the lenient
/// decoder, or read what the lenient decoder refuses.
fn agrees(text: &str, skip: u32) -> bool {
    let t = text.trim();
    let Some(direct) = state_batch(t, skip) else {
        return false;
    };
    let lenient = decode_object(t, skip);
    assert_eq!(
        Ok(format!("{direct:?}")),
        lenient.as_ref().map(|f| format!("{f:?}")),
        "{text}"
    );
    let Ok(Frame::StateBatch { items, .. }) = lenient else {
        unreachable!()
    };
    assert!(
        items.iter().all(|i| matches!(i, BatchItem::State(_))),
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
    let wire = include_str!("../../../../tests/data/navixy/state_batch_wire.json");
    let (states, _) = wire
        .split_once(",\n    {\n      \"type\": \"lifecycle_event\"")
        .unwrap();
    assert!(agrees(&format!("{states}]}}"), 0));
    let Some(Frame::StateBatch { items, .. }) = state_batch(&sample(), 0) else {
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
    i
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
                let key =
                    ["\"speed\"", "\"gps\"", "\"inputs\"", "\"zzz\"", "\"type\""][rng.usize(..5)];
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
    let base = sample();
    let rule_fields = StateFields::only(["gps", "movement_status"]).unwrap().skip;
    let (mut read, mut left) = (0, 0);
    for i in 0..4000 {
        let text = mutate(&base, &mut rng);
        let skip = if i % 4 == 0 { rule_fields } else { 0 };
        if agrees(&text, skip) {
            read += 1;
        } else {
            left += 1;
        }
    }
    // Both ways are exercised: many mutations keep a frame the fast path reads.
    assert!(read > 400 && left > 400, "read {read}, left {left}");
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
    for frame in [state_batch(&text, 0), decode_object(&text, 0).ok()] {
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
