//! The decoder never panics: random bytes, random JSON-ish text, and every fixture with
//! bytes flipped, cut or spliced.

use navixy_alerts::navixy::decode::decode_frame;
use proptest::prelude::*;

use super::data_text;

const FIXTURES: &[&str] = &[
    "navixy/state.json",
    "navixy/state_batch_documented.json",
    "navixy/state_batch_wire.json",
    "navixy/readings_batch_wire.json",
    "navixy/iot_monitor.json",
    "navixy/lifecycle.json",
    "navixy/logout.json",
    "navixy/subscribe_response.json",
    "navixy/subscribe_response_wire.json",
    "navixy/error.json",
    "navixy/handshake.txt",
];

fn fixtures() -> Vec<String> {
    FIXTURES.iter().map(|f| data_text(f)).collect()
}

/// Pieces that make decoders take unusual paths.
const SPLICES: &[&str] = &[
    "\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "null",
    "true",
    "\"x\"",
    "-1e999",
    "1e309",
    "18446744073709551616",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "{\"type\":1}",
    "[[[[",
    "\"2018-13-45 99:99:99\"",
    "\"state\"",
    "\"source_state_event\"",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = decode_frame(&text);
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in 0..FIXTURES.len(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>(), 0..SPLICES.len()), 1..8),
    ) {
        let mut text = fixtures().swap_remove(which).into_bytes();
        for (at, op, byte, splice) in edits {
            if text.is_empty() {
                break;
            }
            let i = at.index(text.len());
            match op {
                0 => text[i] = byte,
                1 => text.truncate(i),
                2 => { text.remove(i); }
                _ => {
                    let s = SPLICES[splice].as_bytes();
                    text.splice(i..i, s.iter().copied());
                }
            }
        }
        let text = String::from_utf8_lossy(&text);
        let _ = decode_frame(&text);
    }

    #[test]
    fn json_values_in_any_field_never_panic(
        which in 0..FIXTURES.len() - 1,
        replacement in prop_oneof![
            Just("null".to_string()), Just("\"s\"".to_string()), Just("[]".to_string()), Just("{}".to_string()),
            Just("[true,1,\"x\",null,{}]".to_string()), any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| f.to_string()),
        ],
        nth in any::<prop::sample::Index>(),
    ) {
        // Replace the value after one `:` with another JSON value: wrong types everywhere.
        let text = fixtures().swap_remove(which);
        let colons: Vec<usize> = text.match_indices(':').map(|(i, _)| i).collect();
        if colons.is_empty() {
            return Ok(());
        }
        let at = colons[nth.index(colons.len())] + 1;
        let rest = &text[at..];
        let end = rest.find([',', '}', ']']).unwrap_or(rest.len());
        let mutated = format!("{}{}{}", &text[..at], replacement, &rest[end..]);
        let _ = decode_frame(&mutated);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// The byte-by-byte time parser agrees with chrono on everything shaped like a Navixy
    /// time, valid or not (month 13, February 30, hour 25, offsets past a day).
    #[test]
    fn time_parser_agrees_with_chrono(
        s in r"[0-9]{4}-[0-1][0-9]-[0-3][0-9][ T][0-2][0-9]:[0-5][0-9]:[0-6][0-9](\.[0-9]{1,9})?(Z|[+-][0-2][0-9]:[0-5][0-9])?"
    ) {
        use chrono::{DateTime, NaiveDateTime, Utc};
        use navixy_alerts::navixy::time::NavixyTime;
        let ours = NavixyTime::parse(&s);
        let with_offset = s.ends_with('Z') || s[19..].contains(['+', '-']);
        let chrono = if with_offset {
            DateTime::parse_from_rfc3339(&s.replacen(' ', "T", 1))
                .ok()
                .map(|t| NavixyTime::Instant(t.with_timezone(&Utc)))
        } else {
            NaiveDateTime::parse_from_str(&s.replacen('T', " ", 1), "%Y-%m-%d %H:%M:%S%.f")
                .ok()
                .map(NavixyTime::Local)
        };
        // chrono accepts leap second 60; Navixy never sends one and we refuse it on the
        // fast path, then chrono's slow path takes it: the results agree either way.
        prop_assert_eq!(ours, chrono, "{}", s);
    }
}
