//! Event rules end to end: the daemon reads a simulated Navixy stream and a webhook
//! receiver on loopback hears each occurrence of `ignition_on` (`mode: event`) exactly
//! once, however briefly the ignition stayed on, typed `alert.event`.
//!
//! The flips are wire frames injected on the live connection for one tracker of a fleet
//! that hardly moves (a thousandth of real speed); a `probe` marker behind the first
//! frames proves the snapshot and the ignition-off state were processed, and only
//! occurrences that start after it are counted.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use navixy_alerts::alert::Fingerprint;
use navixy_alerts::navixy::simulator::SimulatorHandle;

use super::chaos::{Answer, Daemon, Hook, bounded, contains, eventually, sim_options, simulator};
use super::support::OpsConfig;

fn rules(tracker_id: i64) -> String {
    format!(
        r#"rules:
  - name: ignition_on
    mode: event
    when: state.ignition == true
    trackers: [{tracker_id}]
    severity: info
    annotations:
      summary: "{{{{ tracker.label }}}}: ignition on"
  - name: probe
    when: state.additional.probe.value == "on"
    trackers: [{tracker_id}]
"#
    )
}

/// The ops config with these rules, and a `group_wait` long enough that flips in quick
/// succession share a notification.
fn config(api_url: &str, hook_url: &str, dir: &std::path::Path) -> String {
    OpsConfig::new(api_url, hook_url, &dir.join("alerts.db"))
        .rules(&dir.join("rules.yaml"))
        .group_wait("2s")
        .yaml()
}

/// A wire `state_batch` with one state of `source_id` that sets these fields.
fn state_frame(source_id: i64, fields: &str) -> String {
    format!(
        r#"{{"type":"event","event":"state_batch","data":[{{"type":"source_state_event","state":{{"source_id":{source_id},{fields}}}}}]}}"#
    )
}

/// Every `ignition_on` alert the receiver accepted that started at or after `since`, with
/// the id of the notification that carried it and its `type`.
fn occurrences(hook: &Hook, since: DateTime<Utc>) -> Vec<(String, String, Value)> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for r in hook.requests() {
        if !r.ok() || !seen.insert(r.id.clone()) {
            continue;
        }
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        for alert in body["data"]["alerts"].as_array().unwrap() {
            let starts_at: DateTime<Utc> = alert["starts_at"].as_str().unwrap().parse().unwrap();
            if alert["rule"] == "ignition_on" && starts_at >= since {
                out.push((
                    r.id.clone(),
                    body["type"].as_str().unwrap().to_owned(),
                    alert.clone(),
                ));
            }
        }
    }
    out
}

async fn wait_occurrences(hook: &Hook, since: DateTime<Utc>, n: usize) {
    eventually(&format!("{n} occurrences"), Duration::from_secs(30), || {
        occurrences(hook, since).len() >= n
    })
    .await;
}

/// Sends the marker and waits until its alert arrived: every frame before it is done.
async fn probe(sim: &SimulatorHandle, hook: &Hook, source_id: i64) {
    sim.send_raw(state_frame(
        source_id,
        r#""additional":{"probe":{"value":"on"}}"#,
    ));
    hook.wait("the probe's alert", Duration::from_secs(30), |r| {
        r.iter()
            .any(|r| r.ok() && contains(&r.body, r#""rule":"probe""#))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ignition_on_for_one_update_is_one_occurrence_and_two_flips_are_two() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let sim = simulator(sim_options(31, 0.001)).await;
        let tracker = sim.trackers()[0].clone();
        let source_id = tracker.source_id.expect("a source id");
        std::fs::write(dir.path().join("rules.yaml"), rules(tracker.id)).unwrap();
        let hook = Hook::start(Answer::Accept).await;
        let daemon =
            Daemon::start(dir.path(), &config(&sim.api_url(), &hook.url(), dir.path())).await;

        eventually("a subscription", Duration::from_secs(30), || {
            sim.stats().subscriptions >= 1
        })
        .await;
        sim.send_raw(state_frame(source_id, r#""ignition":false"#));
        probe(&sim, &hook, source_id).await;
        // Whole milliseconds, as `starts_at` has them.
        let since = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();

        // Off -> on -> off, all within one group_wait: the "on" held for one update.
        sim.send_raw(state_frame(source_id, r#""ignition":true"#));
        sim.send_raw(state_frame(source_id, r#""ignition":false"#));
        wait_occurrences(&hook, since, 1).await;
        let first = occurrences(&hook, since);

        // Two more flips, again within one group_wait.
        for ignition in [true, false, true, false] {
            sim.send_raw(state_frame(source_id, &format!(r#""ignition":{ignition}"#)));
        }
        wait_occurrences(&hook, since, 3).await;
        daemon.stop().await;
        sim.shutdown().await;

        let all = occurrences(&hook, since);
        assert_eq!(first.len(), 1, "one flip, one occurrence: {first:?}");
        assert_eq!(all.len(), 3, "{all:#?}");
        let fingerprint = Fingerprint::new("ignition_on", Some(tracker.id), None);
        let mut per_occurrence: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (notification, kind, alert) in &all {
            assert_eq!(kind, "alert.event");
            let starts_at: DateTime<Utc> = alert["starts_at"].as_str().unwrap().parse().unwrap();
            let id = format!("{fingerprint}:{}", starts_at.timestamp_millis());
            assert_eq!(alert["occurrence_id"], id.as_str());
            assert_eq!(alert["status"], "firing");
            assert_eq!(alert["event"], true);
            assert_eq!(alert["ends_at"], Value::Null);
            assert_eq!(alert["fingerprint"], fingerprint.0.as_str());
            assert_eq!(alert["tracker"]["id"], tracker.id);
            assert_eq!(alert["severity"], "info");
            assert_eq!(
                alert["annotations"]["summary"],
                format!(
                    "{}: ignition on",
                    tracker.label.as_deref().unwrap_or_default()
                )
            );
            per_occurrence
                .entry(id)
                .or_default()
                .push(notification.clone());
        }
        // Three different occurrence ids, each in exactly one notification.
        assert_eq!(per_occurrence.len(), 3, "{per_occurrence:#?}");
        assert!(
            per_occurrence.values().all(|n| n.len() == 1),
            "{per_occurrence:#?}"
        );
        // Nothing but occurrences and the probe was sent: no resolve of anything.
        for r in hook.requests().iter().filter(|r| r.ok()) {
            assert!(!contains(&r.body, r#""status":"resolved""#));
        }
    })
    .await;
}

/// A stock rule that was a state rule (`ignition_on` before it became an event) may have
/// left an alert firing in the store: the next start resolves it, as nothing else will.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_resolves_what_a_rule_that_became_an_event_left_firing() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let sim = simulator(sim_options(32, 0.001)).await;
        let tracker = sim.trackers()[0].clone();
        let source_id = tracker.source_id.expect("a source id");
        let as_state = rules(tracker.id).replace("    mode: event\n", "");
        std::fs::write(dir.path().join("rules.yaml"), as_state).unwrap();
        let hook = Hook::start(Answer::Accept).await;
        let yaml = config(&sim.api_url(), &hook.url(), dir.path());
        let daemon = Daemon::start(dir.path(), &yaml).await;
        eventually("a subscription", Duration::from_secs(30), || {
            sim.stats().subscriptions >= 1
        })
        .await;
        sim.send_raw(state_frame(source_id, r#""ignition":true"#));
        let fired = r#""type":"alert.firing""#;
        hook.wait("the state alert", Duration::from_secs(30), |r| {
            r.iter().any(|r| {
                r.ok() && contains(&r.body, fired) && contains(&r.body, r#""rule":"ignition_on""#)
            })
        })
        .await;
        daemon.stop().await;

        std::fs::write(dir.path().join("rules.yaml"), rules(tracker.id)).unwrap();
        let daemon = Daemon::start(dir.path(), &yaml).await;
        // The resolve may share a notification with an occurrence of the new event rule
        // (the simulated ignition may be on): look for the alert, not the type.
        hook.wait("the resolve", Duration::from_secs(30), |r| {
            r.iter()
                .any(|r| r.ok() && contains(&r.body, r#""status":"resolved","rule":"ignition_on""#))
        })
        .await;
        let live = daemon.running.store.load_live_alerts().await.unwrap();
        assert!(live.iter().all(|r| r.rule != "ignition_on"), "{live:?}");
        daemon.stop().await;
        sim.shutdown().await;
    })
    .await;
}
