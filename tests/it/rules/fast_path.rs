//! Which evaluator answers the stock rules: a day of one truck's data through the real
//! cache and evaluator, then per rule the count of expressions the direct evaluator
//! answered and of those left to Rhai, in `RuleStats` and in
//! `navixy_alerts_rule_fast_path_total{rule, outcome}`.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use navixy_alerts::alert::AlertTransition;
use navixy_alerts::engine::ShardEvaluator;
use navixy_alerts::navixy::messages::TrackerInfo;
use navixy_alerts::navixy::messages::{
    LifecycleKind, NavixyTime, ReadingsItem, SensorInput, SourceState,
};
use navixy_alerts::rules::{Evaluator, LoadOptions, RuleSet};
use navixy_alerts::state::Update;
use navixy_alerts::state::cache::ShardCache;
use serde_json::json;

/// How a stock rule's expressions are answered.
#[derive(Debug, PartialEq)]
enum Expect {
    /// Every expression, every time, by the direct evaluator (`proximity_violation`'s
    /// value, `nearby`'s array, goes to Rhai, but only at a transition, which a lone
    /// truck never has).
    Fast,
}

/// Every stock rule, named: a rule that starts falling back fails here, and so does a
/// new stock rule not listed.
const STOCK: &[(&str, Expect)] = &[
    ("tracker_offline", Expect::Fast),
    ("low_battery", Expect::Fast),
    ("fuel_drain", Expect::Fast),
    ("refuel", Expect::Fast),
    ("geofence_enter", Expect::Fast),
    ("geofence_exit", Expect::Fast),
    ("ignition_on", Expect::Fast),
    ("ignition_after_hours", Expect::Fast),
    ("input_on", Expect::Fast),
    ("input_off", Expect::Fast),
    ("output_on", Expect::Fast),
    ("output_off", Expect::Fast),
    ("tracker_blocked", Expect::Fast),
    ("tracker_removed", Expect::Fast),
    ("excessive_parking", Expect::Fast),
    ("idling", Expect::Fast),
    ("board_voltage_out_of_range", Expect::Fast),
    ("speeding", Expect::Fast),
    ("proximity_violation", Expect::Fast),
    ("distance_moving_away", Expect::Fast),
    ("distance_approaching", Expect::Fast),
];

const TRACKER: i64 = 21080;

/// A Saturday, inside `ignition_after_hours`' schedule.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 10, 8, 0, 0).unwrap()
}

fn stock_rules() -> Arc<RuleSet> {
    let options = LoadOptions {
        zones: super::loading::depot(),
        ..LoadOptions::default()
    };
    Arc::new(RuleSet::from_files(&super::stock_rule_files(), &options).unwrap())
}

struct Truck {
    cache: ShardCache,
    eval: Evaluator,
    out: Vec<AlertTransition>,
}

impl Truck {
    fn state(&mut self, minute: i64, v: serde_json::Value) {
        let at = t0() + Duration::minutes(minute);
        let mut s: SourceState = serde_json::from_value(v).unwrap();
        s.last_update = Some(NavixyTime::Instant(at));
        let tracker = self.cache.apply(Update::State {
            tracker_id: TRACKER,
            state: Box::new(s),
        });
        self.eval.on_update(tracker, at, true, &mut self.out);
    }

    fn readings(&mut self, minute: i64, fuel: f64, voltage: f64) {
        let at = t0() + Duration::minutes(minute);
        let sensor = |name: &str, value: f64| SensorInput {
            name: Some(name.into()),
            value: Some(value),
            update_time: Some(NavixyTime::Instant(at)),
            ..SensorInput::default()
        };
        let tracker = self.cache.apply(Update::Readings {
            tracker_id: TRACKER,
            readings: Box::new(ReadingsItem {
                tracker_id: Some(TRACKER),
                timestamp: Some(NavixyTime::Instant(at)),
                inputs: vec![
                    sensor("lls_level_1", fuel),
                    sensor("board_voltage", voltage),
                ],
                ..ReadingsItem::default()
            }),
        });
        self.eval.on_update(tracker, at, true, &mut self.out);
    }

    fn lifecycle(&mut self, minute: i64, kind: LifecycleKind) {
        let at = t0() + Duration::minutes(minute);
        let tracker = self.cache.apply(Update::Lifecycle {
            tracker_id: TRACKER,
            kind,
            at: Some(at),
        });
        self.eval.on_update(tracker, at, true, &mut self.out);
    }

    fn tick(&mut self, minute: i64) {
        let at = t0() + Duration::minutes(minute);
        self.eval.on_tick(&mut self.cache.iter(), at, &mut self.out);
    }
}

#[test]
fn the_stock_rules_run_on_the_direct_evaluator() {
    let set = stock_rules();
    let mut names: Vec<&str> = set.rules().iter().map(|r| &*r.name).collect();
    let mut listed: Vec<&str> = STOCK.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    listed.sort_unstable();
    assert_eq!(names, listed, "every stock rule is listed");

    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let truck = metrics::with_local_recorder(&recorder, || {
        let mut cache = ShardCache::new(set.history_policy(), chrono_tz::UTC);
        cache.set_info(TrackerInfo {
            source: 0,
            id: TRACKER,
            source_id: Some(10284),
            label: Some("Truck 7".into()),
            group_id: None,
            blocked: None,
        });
        let mut truck = Truck {
            cache,
            eval: Evaluator::new(Arc::clone(&set)),
            out: Vec::new(),
        };
        let parked_since = NavixyTime::Instant(t0() - Duration::hours(6));
        // In the depot, speeding with a flat battery and a low board voltage.
        truck.state(
            0,
            json!({"ignition": true, "movement_status": "moving", "battery_level": 10.0,
                   "gps": {"speed": 120.0, "location": {"lat": 52.52, "lng": 13.40}},
                   "inputs": [false, false], "outputs": [false]}),
        );
        truck.readings(0, 300.0, 20.0);
        truck.tick(1);
        // Out of the depot; an input and an output flip.
        truck.state(
            2,
            json!({"ignition": true, "movement_status": "moving", "battery_level": 10.0,
                   "gps": {"speed": 95.0, "location": {"lat": 52.60, "lng": 13.40}},
                   "inputs": [true, false], "outputs": [true]}),
        );
        // Parked for hours with the engine running, while the tank drains.
        truck.state(
            3,
            json!({"ignition": true, "movement_status": "parked",
                   "movement_status_update": parked_since, "battery_level": 50.0,
                   "gps": {"speed": 0.0, "location": {"lat": 52.60, "lng": 13.40}},
                   "inputs": [true, true], "outputs": [false]}),
        );
        for minute in 4..12 {
            truck.readings(minute, 300.0 - 6.0 * (minute - 3) as f64, 24.0);
            truck.tick(minute);
        }
        // Refuelled, then blocked, then silent for an hour.
        truck.readings(12, 390.0, 24.0);
        truck.lifecycle(13, LifecycleKind::Block);
        truck.tick(14);
        truck.lifecycle(15, LifecycleKind::Unblock);
        truck.tick(80);
        truck
    });
    assert!(!truck.out.is_empty(), "some stock rules fired");

    let metrics = handle.render();
    for (rule, expect) in STOCK {
        let stats = truck.eval.rule_stats(rule).unwrap();
        match expect {
            Expect::Fast => assert_eq!(stats.fallbacks, 0, "{rule}: {stats:?}"),
        }
        for (outcome, n) in [("fast", stats.fast), ("fallback", stats.fallbacks)] {
            let line = format!(
                "navixy_alerts_rule_fast_path_total{{rule=\"{rule}\",outcome=\"{outcome}\"}} {n}"
            );
            assert!(
                metrics.contains(&line) || n == 0,
                "{line} not in:\n{metrics}"
            );
        }
    }
}
