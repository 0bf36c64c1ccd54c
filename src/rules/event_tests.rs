//! Unit tests of event rules (`mode: event`): loading, occurrences, restore.

use chrono::Duration;
use serde_json::json;

use super::tests::{Harness, errors, load, t0};
use crate::alert::{AlertStatus, Fingerprint};
use crate::engine::ShardEvaluator;

const IGNITION: &str = r#"
rules:
  - name: ignition_on
    mode: event
    when: state.ignition == true
"#;

/// `(minute, rule, status, event?, occurrence_id, ends_at set?)` of the transitions so far.
fn take(h: &mut Harness) -> Vec<(i64, String, AlertStatus, Option<String>, bool)> {
    h.out
        .drain(..)
        .map(|t| {
            (
                (t.at - t0()).num_minutes(),
                t.rule.to_string(),
                t.status,
                t.occurrence_id.clone(),
                t.ends_at.is_some(),
            )
        })
        .collect()
}

fn occurrence(minute: i64) -> String {
    let fp = Fingerprint::new("ignition_on", Some(1), None);
    let ms = (t0() + Duration::minutes(minute)).timestamp_millis();
    format!("{fp}:{ms}")
}

#[test]
fn each_start_of_holding_is_one_occurrence_and_stopping_sends_nothing() {
    let mut h = Harness::new(IGNITION);
    h.state(1, 0, json!({"ignition": false}));
    h.state(1, 1, json!({"ignition": true}));
    h.state(1, 2, json!({"ignition": true, "gps": {"speed": 30}}));
    h.tick(3);
    h.state(1, 4, json!({"ignition": false}));
    h.tick(5);
    h.state(1, 6, json!({"ignition": true}));
    assert_eq!(
        take(&mut h),
        vec![
            (
                1,
                "ignition_on".into(),
                AlertStatus::Firing,
                Some(occurrence(1)),
                false
            ),
            (
                6,
                "ignition_on".into(),
                AlertStatus::Firing,
                Some(occurrence(6)),
                false
            ),
        ]
    );
}

#[test]
fn holding_for_one_update_is_an_occurrence_and_never_evaluated_counts_as_not_holding() {
    let mut h = Harness::new(IGNITION);
    // First seen with the ignition on: an occurrence.
    h.state(1, 0, json!({"ignition": true}));
    h.state(1, 1, json!({"ignition": false}));
    h.state(1, 2, json!({"ignition": true}));
    h.state(1, 3, json!({"ignition": false}));
    let got = take(&mut h);
    assert_eq!(
        got.iter().map(|t| t.3.clone()).collect::<Vec<_>>(),
        vec![Some(occurrence(0)), Some(occurrence(2))]
    );
    // The machine is gone once the condition stops holding: nothing is live.
    assert_eq!(h.eval.live_count(), 0);
}

#[test]
fn for_delays_the_occurrence_and_a_shorter_hold_occurs_not_at_all() {
    let mut h = Harness::new(
        r#"
rules:
  - name: ignition_on
    mode: event
    when: state.ignition == true
    for: 2m
"#,
    );
    h.state(1, 0, json!({"ignition": true}));
    h.tick(1);
    h.state(1, 1, json!({"ignition": false}));
    h.tick(4);
    h.state(1, 5, json!({"ignition": true}));
    h.tick(6);
    h.tick(7);
    h.tick(8);
    let got = take(&mut h);
    // Held from 5m, occurred at the first evaluation two minutes later; starts_at is then.
    assert_eq!(
        got,
        vec![(
            7,
            "ignition_on".into(),
            AlertStatus::Firing,
            Some(occurrence(7)),
            false
        )]
    );
}

#[test]
fn an_event_rules_wait_is_reported_like_a_state_rules() {
    let mut h = Harness::new(
        r#"
rules:
  - name: ignition_on
    mode: event
    when: state.ignition == true
    for: 2m
"#,
    );
    h.eval.report_pending();
    h.state(1, 0, json!({"ignition": true}));
    h.tick(1);
    h.state(1, 1, json!({"ignition": false}));
    h.state(1, 5, json!({"ignition": true}));
    h.tick(7);
    let got: Vec<_> = h
        .out
        .drain(..)
        .map(|t| {
            (
                (t.at - t0()).num_minutes(),
                t.kind(),
                t.occurrence_id.clone(),
            )
        })
        .collect();
    // Each wait is reported (the dropped one too, when it began); only the second
    // occurs.
    assert_eq!(
        got,
        vec![
            (0, "pending", None),
            (5, "pending", None),
            (7, "event", Some(occurrence(7)))
        ]
    );
}

#[test]
fn a_stale_occurrence_is_never_announced_not_even_later() {
    let mut h = Harness::new(IGNITION);
    h.state(1, 0, json!({"ignition": false}));
    let state: crate::navixy::messages::SourceState =
        serde_json::from_value(json!({"ignition": true})).unwrap();
    let at = t0() + Duration::minutes(1);
    let tracker = h.cache.apply(crate::state::Update::State {
        tracker_id: 1,
        state: Box::new(state),
    });
    h.eval.on_update(tracker, at, false, &mut h.out);
    // Fresh data still holds: the occurrence was in the past, nothing is sent.
    h.tick(2);
    h.state(1, 3, json!({"ignition": true, "gps": {"speed": 5}}));
    assert!(take(&mut h).is_empty());
    // Off and on again, fresh: a new occurrence.
    h.state(1, 4, json!({"ignition": false}));
    h.state(1, 5, json!({"ignition": true}));
    assert_eq!(take(&mut h).len(), 1);
}

#[test]
fn two_flips_in_one_millisecond_are_two_occurrences_with_their_own_ids() {
    let mut h = Harness::new(IGNITION);
    h.state(1, 0, json!({"ignition": false}));
    let at = t0() + Duration::minutes(1);
    for ignition in [true, false, true, false] {
        let state: crate::navixy::messages::SourceState =
            serde_json::from_value(json!({ "ignition": ignition })).unwrap();
        let tracker = h.cache.apply(crate::state::Update::State {
            tracker_id: 1,
            state: Box::new(state),
        });
        h.eval.on_update(tracker, at, true, &mut h.out);
    }
    let ms = at.timestamp_millis();
    let fp = Fingerprint::new("ignition_on", Some(1), None);
    let got: Vec<_> = h
        .out
        .drain(..)
        .map(|t| (t.occurrence_id, t.starts_at.timestamp_millis()))
        .collect();
    assert_eq!(
        got,
        vec![
            (Some(format!("{fp}:{ms}")), ms),
            (Some(format!("{fp}:{}", ms + 1)), ms + 1),
        ]
    );
}

#[test]
fn keys_keep_one_bit_each() {
    let mut h = Harness::new(
        r#"
rules:
  - name: code
    mode: event
    when: state.additional.event_code.value != ()
    key: state.additional.event_code.value
"#,
    );
    let code = |c: &str| json!({"additional": {"event_code": {"value": c}}});
    h.state(1, 0, code("a"));
    h.state(1, 1, code("b"));
    h.state(1, 2, code("b"));
    h.state(1, 3, code("a"));
    let keys: Vec<_> = h.out.drain(..).map(|t| t.key).collect();
    assert_eq!(
        keys,
        vec![Some("a".into()), Some("b".into()), Some("a".into())]
    );
}

#[test]
fn a_reload_keeps_the_held_bit_and_forgets_it_for_a_state_rule() {
    let mut h = Harness::new(IGNITION);
    h.state(1, 0, json!({"ignition": true}));
    assert_eq!(take(&mut h).len(), 1);
    // The held bit is kept, but it is no live alert for the gauges.
    assert_eq!(h.eval.live_count(), 0);
    let held = h.eval.firing();
    assert_eq!(held.len(), 1);
    assert!(held[0].last.is_event());

    // The same rule set takes over: still held, nothing occurs again.
    let mut next = super::Evaluator::new(std::sync::Arc::clone(h.eval.rules()));
    let restored = next.restore(&held);
    assert_eq!((restored.resumed, restored.orphaned.len()), (1, 0));
    h.eval = next;
    h.state(1, 1, json!({"ignition": true, "gps": {"speed": 3}}));
    assert!(take(&mut h).is_empty());

    // The rule became a state rule: the held occurrence is neither resumed nor resolved.
    let state_rules = std::sync::Arc::new(
        load("rules:\n  - name: ignition_on\n    when: state.ignition == true\n").unwrap(),
    );
    let mut next = super::Evaluator::new(state_rules);
    let restored = next.restore(&held);
    assert_eq!((restored.resumed, restored.orphaned.len()), (0, 0));
}

#[test]
fn a_firing_alert_of_a_rule_that_became_an_event_is_handed_back_to_resolve() {
    let mut h = Harness::new("rules:\n  - name: ignition_on\n    when: state.ignition == true\n");
    h.state(1, 0, json!({"ignition": true}));
    let firing = h.eval.firing();
    assert_eq!(firing.len(), 1);
    let mut next = super::Evaluator::new(std::sync::Arc::new(load(IGNITION).unwrap()));
    let restored = next.restore(&firing);
    assert_eq!(restored.resumed, 0);
    assert_eq!(restored.orphaned.len(), 1);
}

#[test]
fn event_rules_refuse_what_only_a_resolve_uses() {
    let errs = errors(
        r#"
rules:
  - name: ignition_on
    mode: event
    when: state.ignition == true
    keep_firing_for: 5m
    clear_when: state.ignition == false
"#,
    );
    assert_eq!(
        errs,
        vec![
            "rules/test.yaml:6:22: rule `ignition_on`: keep_firing_for: an event rule (`mode: event`) never resolves, so `keep_firing_for` does not apply; remove it, or make the rule `mode: state`",
            "rules/test.yaml:7:17: rule `ignition_on`: clear_when: an event rule (`mode: event`) never resolves, so `clear_when` does not apply; remove it, or make the rule `mode: state`",
        ]
    );
}

#[test]
fn a_mode_that_is_neither_is_an_error_with_its_place() {
    let errs = errors(
        r#"
rules:
  - name: ignition_on
    mode: edge
    when: state.ignition == true
"#,
    );
    assert_eq!(
        errs,
        ["rules/test.yaml:4:11: unknown variant `edge`, expected one of state, event"]
    );
}

#[test]
fn the_summary_marks_event_rules() {
    let set = load(IGNITION).unwrap();
    assert!(
        set.summary()
            .to_string()
            .contains("ignition_on  warning   event")
    );
}
