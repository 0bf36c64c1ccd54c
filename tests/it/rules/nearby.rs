//! `nearby` and `distance_to` through the real engine: trackers on different shards see
//! each other at the positions their shards published at the last tick, and a reload's
//! evaluators take over the publishing.

use std::path::PathBuf;
use std::sync::Arc;

use navixy_alerts::alert::{AlertStatus, AlertTransition};
use navixy_alerts::engine::{Engine, EngineClock, EngineOptions, shard_index};
use navixy_alerts::rules::{LoadOptions, RuleSet, evaluator_factory};
use tokio::sync::mpsc::Receiver;

const RULES: &str = r#"rules:
  - name: close
    when: nearby(50).len() > 0
    value: nearby(50)
  - name: far_from_lead
    when: distance_to(1) > 1000
    value: distance_to(1).to_int()
"#;

fn rules() -> Arc<RuleSet> {
    Arc::new(
        RuleSet::from_sources(
            &[(PathBuf::from("rules.yaml"), RULES.to_string())],
            &LoadOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{e:?}")),
    )
}

/// A state of source (= tracker, no list loaded) `id` at `lat`, at second `s` after 08:00.
fn state(id: i64, s: u32, lat: f64) -> String {
    format!(
        r#"{{"type":"event","event":"state_batch","data":[{{"type":"source_state_event","state":{{"source_id":{id},"last_update":"2026-01-05T08:{:02}:{:02}Z","gps":{{"location":{{"lat":{lat},"lng":13.4}}}}}}}}]}}"#,
        s / 60,
        s % 60
    )
}

fn drain(rx: &mut Receiver<AlertTransition>) -> Vec<(String, i64, AlertStatus, String)> {
    let mut out = Vec::new();
    while let Ok(t) = rx.try_recv() {
        out.push((
            t.rule.to_string(),
            t.tracker.map_or(0, |x| x.id),
            t.status,
            t.value.map(|v| v.to_string()).unwrap_or_default(),
        ));
    }
    out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    out
}

#[test]
fn trackers_on_different_shards_see_each_other_after_a_tick() {
    let set = rules();
    let factory = evaluator_factory(Arc::clone(&set));
    let mut options = EngineOptions::new(EngineClock::EventTime);
    options.workers = 2;
    options.eval_interval = std::time::Duration::from_secs(10);
    let (mut engine, mut rx) = Engine::start(options, &|_| factory()).unwrap();
    assert_ne!(
        shard_index(1, 2),
        shard_index(2, 2),
        "the two trackers share no shard"
    );

    // 30 m apart; tracker 3 is 2 km north, alone.
    engine.ingest_text(&state(1, 1, 52.52000), None).unwrap();
    engine.ingest_text(&state(2, 1, 52.52027), None).unwrap();
    engine.ingest_text(&state(3, 1, 52.53800), None).unwrap();
    engine.sync();
    // Before any tick nothing is published: nobody sees anybody.
    assert_eq!(drain(&mut rx), []);

    // Crossing the ticks at 08:00:10 and 08:00:20: each shard publishes its trackers at a
    // tick, then evaluates; a shard that ticks before another reads that one's positions of
    // the tick before, so within two ticks every tracker sees every other.
    // (Shards run independently: each tick is synced so that one shard cannot run two
    // ticks ahead of the other, as ten live seconds between ticks see to.)
    engine.ingest_text(&state(3, 12, 52.53800), None).unwrap();
    engine.sync();
    engine.ingest_text(&state(3, 22, 52.53800), None).unwrap();
    engine.sync();
    assert_eq!(
        drain(&mut rx),
        [
            ("close".into(), 1, AlertStatus::Firing, "[2]".into()),
            ("close".into(), 2, AlertStatus::Firing, "[1]".into()),
            (
                "far_from_lead".into(),
                3,
                AlertStatus::Firing,
                "2001".into()
            ),
        ]
    );

    // Tracker 2 leaves: it reads its own position at once; tracker 1 sees it within two
    // ticks.
    engine.ingest_text(&state(2, 25, 52.53000), None).unwrap();
    engine.sync();
    assert_eq!(
        drain(&mut rx),
        [
            ("close".into(), 2, AlertStatus::Resolved, "[]".into()),
            (
                "far_from_lead".into(),
                2,
                AlertStatus::Firing,
                "1111".into()
            ),
        ]
    );
    engine.ingest_text(&state(3, 31, 52.53800), None).unwrap();
    engine.sync();
    engine.ingest_text(&state(3, 41, 52.53800), None).unwrap();
    engine.sync();
    assert_eq!(
        drain(&mut rx),
        [("close".into(), 1, AlertStatus::Resolved, "[]".into())]
    );
    engine.shutdown();
}

/// With two accounts, `nearby` and `distance_to` see only the tracker's own account:
/// north's tracker 1 is not south's tracker 1, even at the same place.
#[test]
fn neighbours_are_of_the_same_source() {
    use navixy_alerts::navixy::context::SharedContext;
    let set = Arc::new(
        RuleSet::from_sources(
            &[(PathBuf::from("rules.yaml"), RULES.to_string())],
            &LoadOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{e:?}"))
        .with_sources(vec![
            ("north".into(), SharedContext::new()),
            ("south".into(), SharedContext::new()),
        ]),
    );
    let factory = evaluator_factory(Arc::clone(&set));
    let mut options = EngineOptions::new(EngineClock::EventTime);
    options.workers = 2;
    options.eval_interval = std::time::Duration::from_secs(10);
    let (mut engine, mut rx) = Engine::start(options, &|_| factory()).unwrap();
    // North: 1 at the depot, 3 two km north. South: 1 where north's 3 is, 2 thirty
    // metres from north's 1.
    let feed = |engine: &mut Engine, s: u32| {
        engine
            .ingest_text_from(0, &state(1, s, 52.52000), None)
            .unwrap();
        engine
            .ingest_text_from(0, &state(3, s, 52.53800), None)
            .unwrap();
        engine
            .ingest_text_from(1, &state(1, s, 52.53800), None)
            .unwrap();
        engine
            .ingest_text_from(1, &state(2, s, 52.52027), None)
            .unwrap();
        engine.sync();
    };
    for s in [1, 12, 22] {
        feed(&mut engine, s);
    }
    let mut got = Vec::new();
    while let Ok(t) = rx.try_recv() {
        got.push((
            t.rule.to_string(),
            t.labels["source"].clone(),
            t.tracker.map_or(0, |x| x.id),
            t.value.and_then(|v| v.as_i64()).unwrap_or(-1),
        ));
    }
    got.sort();
    let far: Vec<(String, i64)> = got
        .iter()
        .filter(|g| g.0 == "far_from_lead")
        .map(|g| (g.1.clone(), g.2))
        .collect();
    // Nobody is within 50 m of a tracker of its own account.
    assert!(got.iter().all(|g| g.0 != "close"), "{got:?}");
    // Each account's tracker far from its own tracker 1 (about 2 km), measured to it.
    assert_eq!(far, [("north".into(), 3), ("south".into(), 2)], "{got:?}");
    assert!(
        got.iter()
            .filter(|g| g.0 == "far_from_lead")
            .all(|g| (1900..2100).contains(&g.3)),
        "{got:?}"
    );
    engine.shutdown();
}
