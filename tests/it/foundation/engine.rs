//! The engine: routing by tracker id, id mapping, the event-time clock, staleness,
//! ticks, the control path and the output channel, with a recording evaluator.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use navixy_alerts::alert::{AlertStatus, AlertTransition, Fingerprint, Severity, TrackerRef};
use navixy_alerts::clock::ManualClock;
use navixy_alerts::engine::{Engine, EngineClock, EngineOptions, ShardEvaluator, tracker_infos};
use navixy_alerts::navixy::decode::decode_tracker_list;
use navixy_alerts::state::TrackerState;
use parking_lot::Mutex;

use super::data_text;

/// What an evaluator was called with.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Update {
        shard: usize,
        tracker: i64,
        label: Option<String>,
        now: DateTime<Utc>,
        notify: bool,
    },
    Tick {
        shard: usize,
        now: DateTime<Utc>,
        trackers: usize,
    },
}

/// Records every call; fires an alert for speeds over 100 (to test the output channel).
struct Recorder {
    shard: usize,
    generation: u32,
    calls: Arc<Mutex<Vec<(u32, Call)>>>,
}

impl ShardEvaluator for Recorder {
    fn on_update(
        &mut self,
        tracker: &TrackerState,
        now: DateTime<Utc>,
        notify: bool,
        out: &mut Vec<AlertTransition>,
    ) {
        self.calls.lock().push((
            self.generation,
            Call::Update {
                shard: self.shard,
                tracker: tracker.info.id,
                label: tracker.info.label.clone(),
                now,
                notify,
            },
        ));
        let speed = tracker
            .current
            .as_ref()
            .and_then(|s| s.gps.as_ref())
            .and_then(|g| g.speed);
        if notify && speed.is_some_and(|s| s > 100.0) {
            out.push(AlertTransition {
                fingerprint: Fingerprint::new("speeding", Some(tracker.info.id), None),
                rule: "speeding".into(),
                status: AlertStatus::Firing,
                severity: Severity::Warning,
                tracker: Some(TrackerRef {
                    id: tracker.info.id,
                    label: tracker.info.label.clone(),
                    source_id: tracker.info.source_id,
                }),
                key: None,
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
                value: speed.map(|s| serde_json::json!(s)),
                starts_at: now,
                ends_at: None,
                at: now,
                location: None,
                state: serde_json::Map::new(),
                channels: None,
                occurrence_id: None,
                pending: false,
            });
        }
    }

    fn on_tick(
        &mut self,
        trackers: &mut dyn Iterator<Item = &TrackerState>,
        now: DateTime<Utc>,
        _: &mut Vec<AlertTransition>,
    ) {
        let trackers = trackers.count();
        self.calls.lock().push((
            self.generation,
            Call::Tick {
                shard: self.shard,
                now,
                trackers,
            },
        ));
    }
}

type Transitions = tokio::sync::mpsc::Receiver<AlertTransition>;
type Calls = Arc<Mutex<Vec<(u32, Call)>>>;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn options(workers: usize, clock: EngineClock) -> EngineOptions {
    let mut o = EngineOptions::new(clock);
    o.workers = workers;
    o.batch_size = 4;
    o.eval_interval = std::time::Duration::from_secs(10);
    o.max_event_age = std::time::Duration::from_secs(15 * 60);
    o
}

fn start(o: EngineOptions) -> (Engine, Transitions, Calls) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let c = calls.clone();
    let factory = move |shard: usize| -> Box<dyn ShardEvaluator> {
        Box::new(Recorder {
            shard,
            generation: 1,
            calls: c.clone(),
        })
    };
    let (engine, rx) = Engine::start(o, &factory).unwrap();
    (engine, rx, calls)
}

fn state_frame(source_id: i64, last_update: &str, speed: f64) -> String {
    format!(
        r#"{{"type":"event","event":"state_batch","data":[{{"type":"source_state_event","state":{{"source_id":{source_id},"last_update":"{last_update}","gps":{{"speed":{speed}}}}}}}]}}"#
    )
}

fn updates(calls: &[(u32, Call)]) -> Vec<Call> {
    calls
        .iter()
        .filter(|(_, c)| matches!(c, Call::Update { .. }))
        .map(|(_, c)| c.clone())
        .collect()
}

#[test]
fn routes_each_tracker_to_its_shard_in_order() {
    let (mut engine, _rx, calls) = start(options(3, EngineClock::EventTime));
    for round in 0..3 {
        for source in 0..10 {
            let at = format!("2026-01-01T10:00:{:02}Z", round * 3 + 1);
            engine
                .ingest_text(&state_frame(source, &at, 10.0), None)
                .unwrap();
        }
    }
    engine.sync();
    let calls = updates(&calls.lock());
    assert_eq!(calls.len(), 30);
    for c in &calls {
        let Call::Update { shard, tracker, .. } = c else {
            unreachable!()
        };
        assert_eq!(*shard as i64, tracker % 3, "{c:?}");
    }
    // Per tracker, updates arrive in the order the frames came.
    let of_7: Vec<DateTime<Utc>> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Update {
                tracker: 7, now, ..
            } => Some(*now),
            _ => None,
        })
        .collect();
    assert_eq!(
        of_7,
        [
            t("2026-01-01T10:00:01Z"),
            t("2026-01-01T10:00:04Z"),
            t("2026-01-01T10:00:07Z")
        ]
    );
    assert_eq!(engine.handle().tracker_count_blocking(), 10);
    assert_eq!(engine.stats().states, 30);
    assert_eq!(engine.shard_of(-4), 2);
}

#[test]
fn maps_source_ids_through_the_tracker_list() {
    let (mut engine, _rx, calls) = start(options(2, EngineClock::EventTime));
    let list = decode_tracker_list(&data_text("navixy/tracker_list.json")).unwrap();
    engine.set_trackers(tracker_infos(&list));
    // source 10284 is tracker 21080 ("Truck 7"); readings carry the tracker id itself.
    engine
        .ingest_text(&state_frame(10284, "2025-02-11 15:12:50", 0.0), None)
        .unwrap();
    engine
        .ingest_text(&data_text("navixy/readings_batch_wire.json"), None)
        .unwrap();
    // Not in the list: counted, not guessed.
    engine
        .ingest_text(&state_frame(999, "2025-02-11 15:12:50", 0.0), None)
        .unwrap();
    engine.sync();
    let state = engine
        .handle()
        .tracker(21080)
        .blocking_recv()
        .unwrap()
        .expect("tracker 21080");
    assert_eq!(state.info.label.as_deref(), Some("Truck 7"));
    assert_eq!(state.info.source_id, Some(10284));
    assert!(state.current.is_some());
    assert_eq!(state.readings.inputs["lls_level_1"].value, Some(262.9138));
    // The readings frame also unblocks source 10284, i.e. tracker 21080.
    assert_eq!(state.lifecycle, navixy_alerts::state::Lifecycle::Active);
    assert!(
        engine
            .handle()
            .tracker(10284)
            .blocking_recv()
            .unwrap()
            .is_none()
    );
    assert!(
        engine
            .handle()
            .tracker(999)
            .blocking_recv()
            .unwrap()
            .is_none()
    );
    let stats = engine.stats().clone();
    assert_eq!(
        (
            stats.states,
            stats.readings,
            stats.lifecycle,
            stats.unmapped
        ),
        (1, 1, 1, 1)
    );
    let labels: Vec<Option<String>> = updates(&calls.lock())
        .into_iter()
        .map(|c| match c {
            Call::Update { tracker, label, .. } => {
                assert_eq!(tracker, 21080);
                label
            }
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(labels, vec![Some("Truck 7".to_string()); 3]);
}

#[test]
fn without_a_list_the_source_id_stands_in() {
    let (mut engine, _rx, _calls) = start(options(2, EngineClock::EventTime));
    engine
        .ingest_text(&data_text("navixy/state.json"), None)
        .unwrap();
    engine
        .ingest_text(&data_text("navixy/lifecycle.json"), None)
        .unwrap();
    engine.sync();
    let state = engine
        .handle()
        .tracker(10284)
        .blocking_recv()
        .unwrap()
        .unwrap();
    assert_eq!(state.info.source_id, Some(10284));
    let blocked = engine
        .handle()
        .tracker(123456)
        .blocking_recv()
        .unwrap()
        .unwrap();
    assert_eq!(blocked.lifecycle, navixy_alerts::state::Lifecycle::Blocked);
}

#[test]
fn old_updates_change_state_but_do_not_notify() {
    let (mut engine, mut rx, calls) = start(options(1, EngineClock::EventTime));
    let at = t("2026-01-01T10:00:00Z");
    // 20 minutes old against the recording's arrival time: stale.
    engine
        .ingest_text(&state_frame(1, "2026-01-01T09:40:00Z", 120.0), Some(at))
        .unwrap();
    // One minute old: fresh, and fast enough for the recorder to fire.
    engine
        .ingest_text(&state_frame(2, "2026-01-01T09:59:00Z", 120.0), Some(at))
        .unwrap();
    // No `at`: the clock stays at the newest time seen (10:00), so 09:44 is stale too.
    engine
        .ingest_text(&state_frame(3, "2026-01-01T09:44:00Z", 120.0), None)
        .unwrap();
    engine.sync();
    let notify: Vec<(i64, bool)> = updates(&calls.lock())
        .into_iter()
        .map(|c| match c {
            Call::Update {
                tracker,
                notify,
                now,
                ..
            } => {
                assert_eq!(now, at);
                (tracker, notify)
            }
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(notify, [(1, false), (2, true), (3, false)]);
    assert_eq!(engine.stats().stale, 2);
    let fired = rx.try_recv().unwrap();
    assert_eq!(
        (fired.rule.as_ref(), fired.tracker.as_ref().map(|t| t.id)),
        ("speeding", Some(2))
    );
    assert!(rx.try_recv().is_err());
    // The stale update still changed the state.
    let one = engine.handle().tracker(1).blocking_recv().unwrap().unwrap();
    assert_eq!(
        one.current.unwrap().gps.as_ref().unwrap().speed,
        Some(120.0)
    );
}

#[test]
fn ticks_follow_event_time_across_each_interval() {
    let (mut engine, _rx, calls) = start(options(2, EngineClock::EventTime));
    engine
        .ingest_text(&state_frame(1, "2026-01-01T10:00:05Z", 1.0), None)
        .unwrap();
    engine
        .ingest_text(&state_frame(2, "2026-01-01T10:00:09Z", 1.0), None)
        .unwrap();
    // Crosses 10:00:10 and 10:00:20: two ticks before this update is applied.
    engine
        .ingest_text(&state_frame(3, "2026-01-01T10:00:25Z", 1.0), None)
        .unwrap();
    engine.sync();
    let calls = calls.lock().clone();
    let shard1: Vec<Call> = calls
        .into_iter()
        .map(|(_, c)| c)
        .filter(|c| {
            matches!(
                c,
                Call::Update { shard: 1, .. } | Call::Tick { shard: 1, .. }
            )
        })
        .collect();
    assert_eq!(
        shard1,
        [
            Call::Update {
                shard: 1,
                tracker: 1,
                label: None,
                now: t("2026-01-01T10:00:05Z"),
                notify: true
            },
            Call::Tick {
                shard: 1,
                now: t("2026-01-01T10:00:10Z"),
                trackers: 1
            },
            Call::Tick {
                shard: 1,
                now: t("2026-01-01T10:00:20Z"),
                trackers: 1
            },
            Call::Update {
                shard: 1,
                tracker: 3,
                label: None,
                now: t("2026-01-01T10:00:25Z"),
                notify: true
            },
        ]
    );
    assert_eq!(engine.stats().ticks, 2);
}

#[test]
fn a_long_gap_does_not_tick_every_interval() {
    let (mut engine, _rx, _calls) = start(options(1, EngineClock::EventTime));
    engine
        .ingest_text(&state_frame(1, "2026-01-01T00:00:01Z", 1.0), None)
        .unwrap();
    engine
        .ingest_text(&state_frame(1, "2026-01-02T00:00:01Z", 1.0), None)
        .unwrap();
    // 64 one by one, then one at the newest boundary.
    assert_eq!(engine.stats().ticks, 65);
}

#[test]
fn live_clock_and_control_path() {
    let clock = ManualClock::new(t("2026-01-01T10:00:00Z"));
    let (mut engine, _rx, calls) = start(options(2, EngineClock::Wall(Arc::new(clock.clone()))));
    engine
        .ingest_text(&state_frame(4, "2026-01-01T09:59:59Z", 1.0), None)
        .unwrap();
    clock.advance(Duration::seconds(15));
    engine.poll_clock();
    // An hour-old update by the wall clock.
    engine
        .ingest_text(&state_frame(5, "2026-01-01T09:00:00Z", 1.0), None)
        .unwrap();
    engine.sync();
    let mut got = calls.lock().clone();
    got.sort_by_key(|(_, c)| format!("{c:?}"));
    let got: Vec<Call> = got.into_iter().map(|(_, c)| c).collect();
    assert_eq!(
        got,
        [
            Call::Tick {
                shard: 0,
                now: t("2026-01-01T10:00:10Z"),
                trackers: 1
            },
            Call::Tick {
                shard: 1,
                now: t("2026-01-01T10:00:10Z"),
                trackers: 0
            },
            Call::Update {
                shard: 0,
                tracker: 4,
                label: None,
                now: t("2026-01-01T10:00:00Z"),
                notify: true
            },
            Call::Update {
                shard: 1,
                tracker: 5,
                label: None,
                now: t("2026-01-01T10:00:15Z"),
                notify: false
            },
        ]
    );

    // Hot reload: the next updates go to the new evaluators; the cache is kept.
    calls.lock().clear();
    let c2 = calls.clone();
    let factory = move |shard: usize| -> Box<dyn ShardEvaluator> {
        Box::new(Recorder {
            shard,
            generation: 2,
            calls: c2.clone(),
        })
    };
    engine.handle().replace_evaluators(&factory);
    engine
        .ingest_text(&state_frame(4, "2026-01-01T10:00:14Z", 1.0), None)
        .unwrap();
    engine.handle().tick(t("2026-01-01T10:00:16Z"));
    engine.sync();
    let got = calls.lock().clone();
    assert!(
        got.iter().all(|(generation, _)| *generation == 2),
        "{got:?}"
    );
    assert_eq!(got.len(), 3);
    let four = engine.handle().tracker(4).blocking_recv().unwrap().unwrap();
    assert_eq!(four.version, 2);
    let stats = engine.shutdown();
    assert_eq!(stats.states, 3);
}

#[test]
fn decode_errors_are_counted_by_kind_and_bad_items_alone() {
    let (mut engine, _rx, _calls) = start(options(1, EngineClock::EventTime));
    assert!(engine.ingest_text("{not json", None).is_err());
    assert!(
        engine
            .ingest_text(r#"{"type":"event","event":"new_thing"}"#, None)
            .is_ok()
    );
    let dropped = engine
        .ingest_text(
            r#"{"type":"event","event":"state_batch","data":[{"source_id":1,"gps":{"speed":"fast"}},{"source_id":2},{"type":"new_item"}]}"#,
            None,
        )
        .unwrap();
    assert_eq!(dropped, 1);
    engine.ingest_text("X", None).unwrap();
    let s = engine.stats();
    assert_eq!(s.frames, 4);
    assert_eq!(s.decode_errors, [1, 1, 0, 0]);
    assert_eq!(
        (s.states, s.unknown_events, s.unknown_items, s.control),
        (1, 1, 1, 1)
    );
}

/// Records ticks (trackers per call) and updates in order; its first tick waits for the
/// test to open the gate.
struct Gated {
    log: Arc<Mutex<Vec<String>>>,
    gate: Option<crossbeam_channel::Receiver<()>>,
}

impl ShardEvaluator for Gated {
    fn on_update(
        &mut self,
        tracker: &TrackerState,
        _: DateTime<Utc>,
        _: bool,
        _: &mut Vec<AlertTransition>,
    ) {
        self.log.lock().push(format!("update {}", tracker.info.id));
    }

    fn on_tick(
        &mut self,
        trackers: &mut dyn Iterator<Item = &TrackerState>,
        now: DateTime<Utc>,
        _: &mut Vec<AlertTransition>,
    ) {
        let ids: Vec<String> = trackers.map(|t| t.info.id.to_string()).collect();
        self.log
            .lock()
            .push(format!("tick {} at {}", ids.join(","), now.format("%S")));
        if let Some(gate) = self.gate.take() {
            gate.recv().unwrap();
        }
    }
}

#[test]
fn a_live_tick_lets_updates_through_between_slices() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (open, gate) = crossbeam_channel::bounded(1);
    let mut o = options(1, EngineClock::EventTime);
    o.tick_slice = 2;
    o.batch_size = 1;
    // Only the test ticks.
    o.eval_interval = std::time::Duration::ZERO;
    let (l, g) = (log.clone(), Mutex::new(Some(gate)));
    let factory = move |_: usize| -> Box<dyn ShardEvaluator> {
        Box::new(Gated {
            log: l.clone(),
            gate: g.lock().take(),
        })
    };
    let (mut engine, _rx) = Engine::start(o, &factory).unwrap();
    for source in 1..=5 {
        engine
            .ingest_text(&state_frame(source, "2026-01-01T10:00:01Z", 10.0), None)
            .unwrap();
    }
    engine.sync();
    log.lock().clear();
    // The first slice holds the shard until the update is queued behind the tick.
    engine.handle().tick(t("2026-01-01T10:00:10Z"));
    engine
        .ingest_text(&state_frame(9, "2026-01-01T10:00:12Z", 10.0), None)
        .unwrap();
    engine.flush();
    open.send(()).unwrap();
    engine.sync();
    let log = log.lock().clone();
    let mut ticked: Vec<&str> = log
        .iter()
        .filter_map(|l| l.strip_prefix("tick "))
        .flat_map(|l| l.split(' ').next().unwrap().split(','))
        .collect();
    ticked.sort_unstable();
    // Every tracker of the tick once, two at a time, and the update after the first
    // slice; the later slices do not go back before the update's clock.
    assert_eq!(ticked, ["1", "2", "3", "4", "5"], "{log:?}");
    assert_eq!(log.len(), 4, "{log:?}");
    assert!(
        log[0].starts_with("tick ") && log[0].ends_with(" at 10"),
        "{log:?}"
    );
    assert_eq!(log[1], "update 9");
    assert!(
        log[2].ends_with(" at 12") && log[3].ends_with(" at 12"),
        "{log:?}"
    );
}
