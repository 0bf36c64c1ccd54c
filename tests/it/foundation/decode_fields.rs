//! Fields added to the protocol's tables reach every layer: `gps.satellites` and
//! `gps.hdop` decode from a frame, merge in the cache, and are read by a rule, through the
//! direct evaluator and through Rhai, and a misspelt one is named at load.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use navixy_alerts::alert::{AlertStatus, AlertTransition};
use navixy_alerts::engine::ShardEvaluator;
use navixy_alerts::navixy::decode::decode_frame;
use navixy_alerts::navixy::messages::{BatchItem, Frame, SourceState, TrackerInfo};
use navixy_alerts::rules::{Evaluator, LoadOptions, RuleSet, format_transition};
use navixy_alerts::state::Update;
use navixy_alerts::state::cache::ShardCache;

use super::data_text;

fn states() -> Vec<SourceState> {
    let Ok(Frame::StateBatch { items, .. }) = decode_frame(&data_text("navixy/state_gnss.json"))
    else {
        panic!("state_gnss.json is a state_batch");
    };
    items
        .into_iter()
        .map(|i| match i {
            BatchItem::State(s) => *s,
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn satellites_and_hdop_decode() {
    let states = states();
    let gps = |i: usize| states[i].gps.clone().unwrap_or_default();
    assert_eq!((gps(0).satellites, gps(0).hdop), (Some(3), Some(7.5)));
    assert_eq!((gps(1).satellites, gps(1).hdop), (Some(11), Some(0.9)));
    // A wrong type costs only its item, and the error names the field.
    let bad = r#"{"type":"event","event":"state_batch","data":[
        {"type":"source_state_event","state":{"source_id":1,"gps":{"satellites":"many"}}}]}"#;
    let Ok(Frame::StateBatch { items, .. }) = decode_frame(bad) else {
        panic!()
    };
    let BatchItem::Invalid(e) = &items[0] else {
        panic!("{items:?}")
    };
    assert_eq!(e.message, "item 0: `gps.satellites` is not an integer");
}

fn t(s: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap() + chrono::Duration::seconds(s)
}

/// `poor_fix` fires on the first state (3 satellites, HDOP 7.5) and resolves on the second
/// (11, 0.9); `value` reads both fields through Rhai.
const RULES: &str = r#"
rules:
  - name: poor_fix
    when: state.gps.satellites < 4 || state.gps.hdop > 5.0
    value: '`${state.gps.satellites} satellites, HDOP ${state.gps.hdop}`'
"#;

#[test]
fn a_rule_reads_satellites_and_hdop() {
    let set = Arc::new(
        RuleSet::from_sources(
            &[(PathBuf::from("rules.yaml"), RULES.to_string())],
            &LoadOptions::default(),
        )
        .unwrap(),
    );
    let mut cache = ShardCache::new(set.history_policy(), chrono_tz::UTC);
    cache.set_info(TrackerInfo {
        source: 0,
        id: 21080,
        source_id: Some(10284),
        label: Some("Truck 7".into()),
        group_id: None,
        blocked: None,
    });
    let mut eval = Evaluator::new(Arc::clone(&set));
    let mut out: Vec<AlertTransition> = Vec::new();
    for (i, state) in states().into_iter().enumerate() {
        let tracker = cache.apply(Update::State {
            tracker_id: 21080,
            state: Box::new(state),
        });
        eval.on_update(tracker, t(60 * i as i64 + 1), true, &mut out);
    }
    // The second state sent no `signal_level`: the merge kept it, and the new fields
    // replaced the old ones.
    let merged = cache.get(21080).and_then(|t| t.current.clone()).unwrap();
    let gps = merged.gps.clone().unwrap();
    assert_eq!(
        (gps.signal_level, gps.satellites, gps.hdop),
        (Some(40.0), Some(11), Some(0.9))
    );
    let got: Vec<(String, AlertStatus, Option<serde_json::Value>)> = out
        .iter()
        .map(|t| (format_transition(t), t.status, t.value.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                r#"2026-01-05T08:00:01Z poor_fix 21080 "Truck 7" firing 3 satellites, HDOP 7.5"#
                    .to_string(),
                AlertStatus::Firing,
                Some(serde_json::json!("3 satellites, HDOP 7.5")),
            ),
            (
                r#"2026-01-05T08:01:01Z poor_fix 21080 "Truck 7" resolved 11 satellites, HDOP 0.9"#
                    .to_string(),
                AlertStatus::Resolved,
                Some(serde_json::json!("11 satellites, HDOP 0.9")),
            ),
        ]
    );
}

#[test]
fn a_misspelt_field_is_named_with_the_new_ones() {
    let err = RuleSet::from_sources(
        &[(
            PathBuf::from("rules.yaml"),
            "rules:\n  - name: typo\n    when: state.gps.satelites < 4\n".to_string(),
        )],
        &LoadOptions::default(),
    )
    .err()
    .map(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })
    .unwrap_or_default();
    assert!(
        err.contains(
            "`state.gps` has no field `satelites` (did you mean `satellites`?) (fields: updated, signal_level, location, heading, speed, alt, precision, gsm_lbs, satellites, hdop)"
        ),
        "{err}"
    );
}
