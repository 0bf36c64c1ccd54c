//! Occurrences of event rules through grouping, dedup, flap damping and silences: each
//! is told exactly once per channel, none is coalesced away, none repeats or resolves.

use std::sync::Arc;

use super::tests::{CONFIG, Harness, secs};
use super::*;
use crate::dispatch::testing::{config, firing, t0};
use crate::store::SilenceMatcher;

/// An occurrence of `rule` on `tracker` that started at `at` seconds.
fn occurrence(rule: &str, tracker: i64, at: i64) -> AlertTransition {
    let mut t = firing(rule, tracker);
    t.starts_at = secs(at);
    t.at = secs(at);
    t.occurrence_id = Some(format!("{}:{}", t.fingerprint, secs(at).timestamp_millis()));
    t
}

fn ids(n: &Notification) -> Vec<&str> {
    n.alerts
        .iter()
        .map(|a| a.occurrence_id.as_deref().unwrap_or("-"))
        .collect()
}

#[test]
fn two_occurrences_of_one_alert_within_group_wait_are_two_entries_of_one_notification() {
    let mut h = Harness::new(CONFIG);
    let first = occurrence("ignition_on", 1, 0);
    let second = occurrence("ignition_on", 1, 3);
    assert_ne!(first.occurrence_id, second.occurrence_id);
    h.submit(first.clone(), secs(0));
    h.submit(second.clone(), secs(3));
    assert_eq!(h.groups.size(), (1, 2), "a second entry, not a replacement");

    let sent = h.run(0, 20);
    assert_eq!(sent.len(), 1);
    let (at, n) = &sent[0];
    assert_eq!(*at, 10);
    assert_eq!(n.event_type(), "alert.event");
    assert_eq!(n.status, AlertStatus::Firing);
    assert_eq!(
        ids(n),
        [
            first.occurrence_id.as_deref().unwrap(),
            second.occurrence_id.as_deref().unwrap()
        ]
    );
    // Told: they left the group, which went with them; nothing repeats or resolves.
    assert_eq!(h.groups.size(), (0, 0));
    assert!(h.run(21, 5 * 3600).is_empty());
    assert!(store::load_live_alerts(&h.conn).unwrap().is_empty());
}

#[test]
fn an_occurrence_after_the_notification_is_sent_in_the_next_one() {
    let mut h = Harness::new(CONFIG);
    h.submit(occurrence("ignition_on", 1, 0), secs(0));
    assert_eq!(h.run(0, 10).len(), 1);
    h.submit(occurrence("ignition_on", 1, 15), secs(15));
    let sent = h.run(11, 30);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, 25, "a new group waits group_wait again");
    assert_eq!(ids(&sent[0].1).len(), 1);
}

#[test]
fn flap_damping_never_holds_an_occurrence() {
    let mut h = Harness::new(CONFIG);
    let mut told = 0;
    for i in 0..(FLAP_LIMIT as i64 * 2) {
        let at = i * 120;
        h.submit(occurrence("ignition_on", 1, at), secs(at));
        let sent = h.run(at, at + 60);
        assert_eq!(sent.len(), 1, "occurrence {i}");
        told += sent[0].1.alerts.len();
        assert!(
            !sent[0].1.reason.contains("flapping"),
            "{}",
            sent[0].1.reason
        );
    }
    assert_eq!(told, FLAP_LIMIT * 2);
}

#[test]
fn a_state_alert_of_the_same_group_is_not_an_event_notification() {
    let mut h = Harness::new(
        r#"
channels:
  ops: { type: stdout }
routes:
  - channels: [ops]
notify: { group_by: [], group_wait: 10s, group_interval: 1m, repeat_interval: 4h }
"#,
    );
    h.submit(occurrence("ignition_on", 1, 0), secs(0));
    h.submit(firing("fuel_drain", 2), secs(1));
    let sent = h.run(0, 10);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.alerts.len(), 2);
    assert_eq!(sent[0].1.event_type(), "alert.firing");
    // The occurrence left; the state alert stays, told.
    assert_eq!(h.groups.size(), (1, 1));
}

#[test]
fn a_silenced_occurrence_is_dropped_not_sent_when_the_silence_ends() {
    let mut h = Harness::new(CONFIG);
    h.silence(
        vec![SilenceMatcher {
            name: "rule".into(),
            value: "ignition_on".into(),
            is_regex: false,
            is_equal: true,
        }],
        0,
        60,
    );
    h.submit(occurrence("ignition_on", 1, 0), secs(0));
    assert!(h.run(0, 20).is_empty());
    assert_eq!(h.groups.size(), (0, 0));
    assert!(h.run(21, 300).is_empty());
    let log = h.log();
    assert!(
        log.iter().any(|(outcome, _, _)| outcome == "silenced"),
        "{log:?}"
    );
}

#[test]
fn waiting_occurrences_survive_a_restart() {
    let mut h = Harness::new(CONFIG);
    h.submit(occurrence("ignition_on", 1, 0), secs(0));
    h.submit(occurrence("ignition_on", 1, 2), secs(2));
    let router = Arc::new(Router::new(&config(CONFIG)).unwrap());
    h.groups = Groups::load(&h.conn, router, &[Arc::from("ops")]).unwrap();
    assert_eq!(h.groups.size(), (1, 2));
    // The same occurrence submitted again (a retried submit) is the same entry.
    h.submit(occurrence("ignition_on", 1, 2), secs(4));
    assert_eq!(h.groups.size(), (1, 2));
    let sent = h.run(0, 20);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.alerts.len(), 2);
    assert_eq!(h.groups.size(), (0, 0));
}

#[test]
fn the_webhook_body_of_an_occurrence() {
    let mut h = Harness::new(CONFIG);
    let t = occurrence("ignition_on", 1, 0);
    h.submit(t.clone(), secs(0));
    let sent = h.run(0, 10);
    let body: serde_json::Value = serde_json::from_slice(&sent[0].1.webhook_json()).unwrap();
    assert_eq!(body["type"], "alert.event");
    let alert = &body["data"]["alerts"][0];
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["event"], true);
    assert_eq!(alert["ends_at"], serde_json::Value::Null);
    assert_eq!(
        alert["occurrence_id"],
        format!("{}:{}", t.fingerprint, t0().timestamp_millis())
    );
    assert_eq!(alert["starts_at"], "2026-01-01T10:00:00Z");
    // A state alert's body has neither field.
    let state = Notification {
        alerts: vec![Arc::new(firing("fuel_drain", 2))],
        ..(*sent[0].1).clone()
    };
    let body: serde_json::Value = serde_json::from_slice(&state.webhook_json()).unwrap();
    let alert = body["data"]["alerts"][0].as_object().unwrap();
    assert!(!alert.contains_key("event") && !alert.contains_key("occurrence_id"));
    assert_eq!(body["type"], "alert.firing");
}
