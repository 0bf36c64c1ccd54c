//! Evaluation through the real cache: faults are counted and logged once a minute, a
//! restart resumes firing alerts without re-firing, stale data pages no one, and a
//! transition carries exactly what receivers need.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};
use navixy_alerts::alert::{AlertStatus, AlertTransition, Fingerprint};
use navixy_alerts::engine::ShardEvaluator;
use navixy_alerts::navixy::messages::TrackerInfo;
use navixy_alerts::navixy::messages::{NavixyTime, SourceState};
use navixy_alerts::rules::{Evaluator, LoadOptions, RuleSet, evaluator_factory, format_transition};
use navixy_alerts::state::Update;
use navixy_alerts::state::cache::ShardCache;
use serde_json::json;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap()
}

fn rules(yaml: &str) -> Arc<RuleSet> {
    let options = LoadOptions {
        zones: super::loading::depot(),
        channels: Some(["ops".to_string()].into_iter().collect()),
        ..LoadOptions::default()
    };
    Arc::new(
        RuleSet::from_sources(&[(PathBuf::from("rules.yaml"), yaml.to_string())], &options)
            .unwrap(),
    )
}

/// A cache and an evaluator of one shard.
struct Shard {
    cache: ShardCache,
    eval: Box<dyn ShardEvaluator>,
    out: Vec<AlertTransition>,
}

impl Shard {
    fn new(set: &Arc<RuleSet>, eval: Box<dyn ShardEvaluator>) -> Shard {
        let mut cache = ShardCache::new(set.history_policy(), chrono_tz::UTC);
        cache.set_info(TrackerInfo {
            source: 0,
            id: 21080,
            source_id: Some(10284),
            label: Some("Truck 7".into()),
            group_id: Some(3),
            blocked: None,
        });
        Shard {
            cache,
            eval,
            out: Vec::new(),
        }
    }

    fn state(&mut self, at: DateTime<Utc>, now: DateTime<Utc>, notify: bool, v: serde_json::Value) {
        let mut s: SourceState = serde_json::from_value(v).unwrap();
        s.last_update = Some(NavixyTime::Instant(at));
        let tracker = self.cache.apply(Update::State {
            tracker_id: 21080,
            state: Box::new(s),
        });
        self.eval.on_update(tracker, now, notify, &mut self.out);
    }

    fn tick(&mut self, now: DateTime<Utc>) {
        self.eval
            .on_tick(&mut self.cache.iter(), now, &mut self.out);
    }

    fn take(&mut self) -> Vec<(String, AlertStatus)> {
        self.out
            .drain(..)
            .map(|t| (format_transition(&t), t.status))
            .collect()
    }
}

// `endless` and `ignition_on` read the speed, which every state below changes, so each
// state evaluates them again (rules whose fields did not change are skipped).
const FAULTY: &str = r#"
rules:
  - name: endless
    when: "while state.ignition == true && state.gps.speed >= 0 { } ; true"
  - name: missing_sensor_arithmetic
    when: readings.lls_level_1.value * 2 > 10
  - name: ignition_on
    when: state.ignition == true && state.gps.speed >= 0
"#;

#[test]
fn a_failing_rule_is_counted_per_kind_and_the_others_go_on() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let set = rules(FAULTY);
    let mut out = Vec::new();
    metrics::with_local_recorder(&recorder, || {
        let mut shard = Shard::new(&set, Box::new(Evaluator::new(Arc::clone(&set))));
        for s in 0..3 {
            let at = t0() + Duration::seconds(s * 20);
            shard.state(at, at, true, json!({"ignition": true, "gps": {"speed": s}}));
        }
        shard.tick(t0() + Duration::minutes(1));
        out = shard.take();
    });
    // The healthy rule fired once.
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].0,
        r#"2026-01-05T08:00:00Z ignition_on 21080 "Truck 7" firing"#
    );
    let metrics = handle.render();
    for line in [
        r#"navixy_alerts_rule_errors_total{rule="endless",kind="operations"} 3"#,
        r#"navixy_alerts_rule_errors_total{rule="missing_sensor_arithmetic",kind="runtime"} 1"#,
        r#"navixy_alerts_rule_evaluations_total{rule="ignition_on"} 3"#,
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
}

/// A log writer tests can read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_rule_is_logged_at_most_once_a_minute() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let set = rules(FAULTY);
    tracing::subscriber::with_default(subscriber, || {
        let mut shard = Shard::new(&set, Box::new(Evaluator::new(Arc::clone(&set))));
        // Every 15 s for 2.5 minutes: 11 failures of `endless`.
        for s in 0..11 {
            let at = t0() + Duration::seconds(s * 15);
            shard.state(at, at, true, json!({"ignition": true, "gps": {"speed": s}}));
        }
    });
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let endless: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("rule=endless") && l.contains("Rule failed"))
        .collect();
    // At 0s, 60s and 120s.
    assert_eq!(endless.len(), 3, "{logs}");
    assert!(endless[0].contains("kind=\"operations\""), "{}", endless[0]);
    assert!(endless[0].contains("tracker_id=21080"), "{}", endless[0]);
}

const SPEEDING: &str = r#"
rules:
  - name: speeding
    when: state.gps.speed > params.max
    params: { max: 90 }
    value: state.gps.speed
    severity: critical
    labels: { team: logistics }
    channels: [ops]
    annotations:
      summary: "{{ tracker.label }}: {{ value }} km/h over {{ params.max }}"
"#;

#[test]
fn a_transition_carries_what_receivers_show() {
    let set = rules(SPEEDING);
    let mut shard = Shard::new(&set, Box::new(Evaluator::new(Arc::clone(&set))));
    let at = t0();
    shard.state(
        at,
        at,
        true,
        json!({"gps": {"speed": 104, "location": {"lat": 52.5, "lng": 13.4}}, "ignition": true,
               "movement_status": "moving", "connection_status": "active"}),
    );
    let later = at + Duration::minutes(3);
    shard.state(later, later, true, json!({"gps": {"speed": 60}}));
    let t: Vec<serde_json::Value> = shard
        .out
        .iter()
        .map(|t| serde_json::to_value(t).unwrap())
        .collect();
    let fingerprint = Fingerprint::new("speeding", Some(21080), None).0;
    assert_eq!(
        t[0],
        json!({
            "fingerprint": fingerprint,
            "rule": "speeding",
            "status": "firing",
            "severity": "critical",
            "tracker": {"id": 21080, "label": "Truck 7", "source_id": 10284},
            "key": null,
            "labels": {"source": "navixy", "team": "logistics"},
            "annotations": {"summary": "Truck 7: 104 km/h over 90"},
            "value": 104,
            "starts_at": "2026-01-05T08:00:00Z",
            "ends_at": null,
            "at": "2026-01-05T08:00:00Z",
            "location": {"lat": 52.5, "lng": 13.4},
            "state": {"speed": 104.0, "ignition": true, "movement_status": "moving",
                      "connection_status": "active", "online": true, "lifecycle": "active"},
            "channels": ["ops"],
        })
    );
    assert_eq!(t[1]["status"], "resolved");
    assert_eq!(t[1]["value"], 60);
    assert_eq!(t[1]["starts_at"], "2026-01-05T08:00:00Z");
    assert_eq!(t[1]["ends_at"], "2026-01-05T08:03:00Z");
    assert_eq!(t[1]["annotations"]["summary"], "Truck 7: 60 km/h over 90");
}

#[test]
fn a_restart_resumes_firing_alerts_without_firing_again() {
    let set = rules(SPEEDING);
    let mut before = Evaluator::new(Arc::clone(&set));
    let mut shard = Shard::new(&set, Box::new(Evaluator::new(Arc::clone(&set))));
    let at = t0();
    let tracker = {
        let mut s: SourceState = serde_json::from_value(json!({"gps": {"speed": 120}})).unwrap();
        s.last_update = Some(NavixyTime::Instant(at));
        shard.cache.apply(Update::State {
            tracker_id: 21080,
            state: Box::new(s),
        })
    };
    let mut out = Vec::new();
    before.on_update(tracker, at, true, &mut out);
    assert_eq!(out.len(), 1);
    let records = before.firing();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].rule, "speeding");

    // A new process: the snapshot Navixy sends after subscribing still shows speeding.
    let mut after = Evaluator::new(Arc::clone(&set));
    let restored = after.restore(&records);
    assert_eq!(restored.resumed, 1);
    assert!(restored.orphaned.is_empty());
    let mut shard = Shard::new(&set, Box::new(after));
    let later = at + Duration::minutes(5);
    shard.state(later, later, true, json!({"gps": {"speed": 118}}));
    shard.tick(later + Duration::seconds(10));
    assert!(shard.take().is_empty());
    let end = later + Duration::minutes(1);
    shard.state(end, end, true, json!({"gps": {"speed": 50}}));
    let resolved = shard.out.pop().unwrap();
    assert_eq!(resolved.status, AlertStatus::Resolved);
    assert_eq!(resolved.fingerprint, records[0].fingerprint);
    assert_eq!(resolved.starts_at, at);
}

const BLOCKED: &str = r#"
rules:
  - name: speeding
    when: state.gps.speed > 90
  - name: blocked
    when: tracker.lifecycle == "blocked"
"#;

#[test]
fn after_a_restart_a_tracker_that_sent_nothing_keeps_its_alerts_until_it_does() {
    let set = rules(BLOCKED);
    let start = t0();
    // Before the restart: speeding, then blocked.
    let mut before = Evaluator::new(Arc::clone(&set));
    let mut cache = ShardCache::new(set.history_policy(), chrono_tz::UTC);
    let mut out = Vec::new();
    let mut s: SourceState = serde_json::from_value(json!({"gps": {"speed": 120}})).unwrap();
    s.last_update = Some(NavixyTime::Instant(start));
    let tracker = cache.apply(Update::State {
        tracker_id: 21080,
        state: Box::new(s),
    });
    before.on_update(tracker, start, true, &mut out);
    let tracker = cache.apply(Update::Lifecycle {
        tracker_id: 21080,
        kind: navixy_alerts::navixy::messages::LifecycleKind::Block,
        at: None,
    });
    before.on_update(tracker, start, true, &mut out);
    assert_eq!(out.len(), 2);
    let records = before.firing();
    assert_eq!(records.len(), 2);

    // A new process: tracker/list says the tracker is blocked, so it sends no state.
    let mut after = Evaluator::new(Arc::clone(&set));
    assert_eq!(after.restore(&records).resumed, 2);
    let mut shard = Shard::new(&set, Box::new(after));
    shard.tick(start + Duration::minutes(5));
    assert!(
        shard.take().is_empty(),
        "nothing known yet: nothing resolves"
    );
    shard.cache.set_info(TrackerInfo {
        source: 0,
        id: 21080,
        source_id: Some(10284),
        label: Some("Truck 7".into()),
        group_id: Some(3),
        blocked: Some(true),
    });
    shard.tick(start + Duration::minutes(6));
    assert!(
        shard.take().is_empty(),
        "still blocked, speed unknown: both keep firing"
    );
    assert_eq!(
        shard.cache.get(21080).unwrap().lifecycle,
        navixy_alerts::state::Lifecycle::Blocked
    );
    // Unblocked, and its first state says it is parked: both resolve.
    shard.cache.apply(Update::Lifecycle {
        tracker_id: 21080,
        kind: navixy_alerts::navixy::messages::LifecycleKind::Unblock,
        at: None,
    });
    let end = start + Duration::minutes(7);
    shard.state(end, end, true, json!({"gps": {"speed": 0}}));
    let mut got = shard.take();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            (
                r#"2026-01-05T08:07:00Z blocked 21080 "Truck 7" resolved"#.to_string(),
                AlertStatus::Resolved
            ),
            (
                r#"2026-01-05T08:07:00Z speeding 21080 "Truck 7" resolved"#.to_string(),
                AlertStatus::Resolved
            )
        ]
    );
}

#[test]
fn records_of_rules_no_longer_loaded_are_handed_back() {
    let set = rules(SPEEDING);
    let mut eval = Evaluator::new(Arc::clone(&set));
    let mut out = Vec::new();
    let mut cache = ShardCache::new(set.history_policy(), chrono_tz::UTC);
    let mut s: SourceState = serde_json::from_value(json!({"gps": {"speed": 120}})).unwrap();
    s.last_update = Some(NavixyTime::Instant(t0()));
    let tracker = cache.apply(Update::State {
        tracker_id: 1,
        state: Box::new(s),
    });
    eval.on_update(tracker, t0(), true, &mut out);
    let mut records = eval.firing();
    records[0].rule = "renamed_rule".into();
    let restored = Evaluator::new(rules(SPEEDING)).restore(&records);
    assert_eq!(restored.resumed, 0);
    assert_eq!(restored.orphaned.len(), 1);
}

#[test]
fn stale_updates_move_alerts_silently() {
    let set = rules(SPEEDING);
    let factory = evaluator_factory(Arc::clone(&set));
    let mut shard = Shard::new(&set, factory());
    let now = t0() + Duration::hours(2);
    // A buffered upload from two hours ago: over the limit, then back under.
    shard.state(t0(), now, false, json!({"gps": {"speed": 120}}));
    shard.state(
        t0() + Duration::minutes(1),
        now,
        false,
        json!({"gps": {"speed": 50}}),
    );
    assert!(shard.take().is_empty());
    // Stale data fires silently; fresh data still over the limit announces it.
    shard.state(
        t0() + Duration::minutes(2),
        now,
        false,
        json!({"gps": {"speed": 130}}),
    );
    assert!(shard.take().is_empty());
    shard.tick(now + Duration::seconds(10));
    assert!(
        shard.take().is_empty(),
        "a tick repeats the stale result: still silent"
    );
    let fresh = now + Duration::seconds(20);
    shard.state(fresh, fresh, true, json!({"gps": {"speed": 125}}));
    assert_eq!(
        shard.take(),
        [(
            r#"2026-01-05T10:00:20Z speeding 21080 "Truck 7" firing 125"#.to_string(),
            AlertStatus::Firing
        )]
    );
}

#[test]
fn keyed_rules_have_one_alert_per_key() {
    let set = rules(
        r#"
rules:
  - name: event
    when: state.additional.event_code.value != ()
    key: state.additional.event_code.value
"#,
    );
    let mut shard = Shard::new(&set, Box::new(Evaluator::new(Arc::clone(&set))));
    let code = |c: &str| json!({"additional": {"event_code": {"value": c}}});
    shard.state(t0(), t0(), true, code("42"));
    let one = t0() + Duration::minutes(1);
    shard.state(one, one, true, code("7"));
    let t: Vec<(String, Option<String>, String)> = shard
        .out
        .iter()
        .map(|t| {
            (
                t.status.as_str().to_string(),
                t.key.clone(),
                t.fingerprint.0.clone(),
            )
        })
        .collect();
    assert_eq!(
        t,
        [
            (
                "firing".into(),
                Some("42".into()),
                Fingerprint::new("event", Some(21080), Some("42")).0
            ),
            (
                "resolved".into(),
                Some("42".into()),
                Fingerprint::new("event", Some(21080), Some("42")).0
            ),
            (
                "firing".into(),
                Some("7".into()),
                Fingerprint::new("event", Some(21080), Some("7")).0
            ),
        ]
    );
}

#[test]
fn a_stale_pending_alert_fires_silently_on_the_ticker() {
    let set = rules(
        r#"
rules:
  - name: speeding
    when: state.gps.speed > 90
    for: 1m
"#,
    );
    let mut shard = Shard::new(&set, Box::new(Evaluator::new(Arc::clone(&set))));
    let now = t0() + Duration::hours(2);
    // The last point of a buffered upload is over the limit.
    shard.state(t0(), now, false, json!({"gps": {"speed": 120}}));
    shard.tick(now + Duration::minutes(1));
    shard.tick(now + Duration::minutes(5));
    assert!(shard.take().is_empty());
}

#[test]
fn a_stale_update_leaves_the_resolve_of_an_announced_alert_to_the_ticker() {
    let set = rules(SPEEDING);
    let mut shard = Shard::new(&set, Box::new(Evaluator::new(Arc::clone(&set))));
    shard.state(t0(), t0(), true, json!({"gps": {"speed": 120}}));
    assert_eq!(shard.take().len(), 1);
    // Data from before the engine saw it firing arrives late and says it ended.
    let now = t0() + Duration::minutes(30);
    shard.state(
        t0() - Duration::minutes(10),
        now,
        false,
        json!({"gps": {"speed": 40}}),
    );
    assert!(shard.take().is_empty());
    shard.tick(now + Duration::seconds(10));
    assert_eq!(
        shard.take(),
        [(
            r#"2026-01-05T08:30:10Z speeding 21080 "Truck 7" resolved 40"#.to_string(),
            AlertStatus::Resolved
        )]
    );
}

const IDLING: &str = r#"
rules:
  - name: idling
    when: state.ignition == true && state.gps.speed < 5
    for: 10m
"#;

#[test]
fn a_restart_resumes_the_wait_of_pending_alerts() {
    let set = rules(IDLING);
    let start = t0();
    let idle = json!({"ignition": true, "gps": {"speed": 0}});
    // Before the stop: idling for 7 of its 10 minutes.
    let mut before = Evaluator::new(Arc::clone(&set));
    let mut cache = ShardCache::new(set.history_policy(), chrono_tz::UTC);
    let mut out = Vec::new();
    let mut s: SourceState = serde_json::from_value(idle.clone()).unwrap();
    s.last_update = Some(NavixyTime::Instant(start));
    let tracker = cache.apply(Update::State {
        tracker_id: 21080,
        state: Box::new(s),
    });
    before.on_update(tracker, start, true, &mut out);
    before.on_tick(&mut cache.iter(), start + Duration::minutes(7), &mut out);
    assert!(out.is_empty());
    let pending = before.pending();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (
            pending[0].rule.as_str(),
            pending[0].tracker_id,
            pending[0].since
        ),
        ("idling", 21080, start)
    );

    // The next start: the snapshot still shows it idling at minute 8; it fires at
    // minute 10 of the wait, not 10 minutes after the restart.
    let mut after = Evaluator::new(Arc::clone(&set));
    assert_eq!(after.restore_pending(&pending), 1);
    let mut shard = Shard::new(&set, Box::new(after));
    let m = |n| start + Duration::minutes(n);
    shard.state(m(8), m(8), true, idle.clone());
    shard.tick(m(9));
    assert!(shard.take().is_empty());
    shard.tick(m(10));
    assert_eq!(
        shard.take(),
        vec![(
            r#"2026-01-05T08:10:00Z idling 21080 "Truck 7" firing"#.to_string(),
            AlertStatus::Firing
        )]
    );

    // A pending alert whose condition no longer holds after the restart ends silently.
    let mut after = Evaluator::new(Arc::clone(&set));
    after.restore_pending(&pending);
    let mut shard = Shard::new(&set, Box::new(after));
    shard.state(
        m(8),
        m(8),
        true,
        json!({"ignition": false, "gps": {"speed": 0}}),
    );
    shard.tick(m(20));
    assert!(shard.take().is_empty());
}

#[test]
fn a_reload_keeps_the_wait_of_pending_alerts() {
    use navixy_alerts::engine::{Engine, EngineClock, EngineOptions};
    let set = rules(IDLING);
    let factory = evaluator_factory(Arc::clone(&set));
    let mut options = EngineOptions::new(EngineClock::EventTime);
    options.workers = 1;
    let (mut engine, _rx) = Engine::start(options, &|_| factory()).unwrap();
    let frame = |at: &str| {
        format!(
            r#"{{"type":"event","event":"state_batch","data":[{{"type":"source_state_event","state":{{"source_id":21080,"last_update":"{at}","ignition":true,"gps":{{"speed":0}}}}}}]}}"#
        )
    };
    engine
        .ingest_text(&frame("2026-01-05T08:00:00Z"), None)
        .unwrap();
    engine.sync();
    let before = engine.handle().pending_blocking();
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].since, t0());
    // The new rule set's evaluators take over between two updates.
    let reloaded = evaluator_factory(rules(IDLING));
    engine.handle().replace_evaluators(&|_| reloaded());
    engine
        .ingest_text(&frame("2026-01-05T08:05:00Z"), None)
        .unwrap();
    engine.sync();
    assert_eq!(engine.handle().pending_blocking(), before);
}
