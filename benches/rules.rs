//! Condition evaluations per second with the stock rules over a generated fleet.
//!
//! `conditions`: every stock rule's `when` on every tracker (no skipping), the raw cost of
//! the conditions and the context readers. `updates`: a state update through the cache and
//! the evaluator (skip logic, alert machines). `ticks`: the ticker over the fleet.
//!
//! Run: `cargo bench --bench rules`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use navixy_alerts::engine::ShardEvaluator;
use navixy_alerts::navixy::messages::TrackerInfo;
use navixy_alerts::navixy::messages::{
    Bits, Gps, Location, MovementStatus, NavixyTime, ReadingsItem, SensorInput, SourceState,
};
use navixy_alerts::rules::{Evaluator, RuleSet};
use navixy_alerts::state::Update;
use navixy_alerts::state::cache::ShardCache;

#[path = "support/stock_rules.rs"]
mod stock_rules;

use stock_rules::stock_rules;

const TRACKERS: i64 = 2_000;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap()
}

/// A deterministic state for tracker `i` at minute `m`.
fn state(i: i64, m: i64) -> SourceState {
    let at = t0() + chrono::Duration::minutes(m);
    let moving = (i + m) % 3 == 0;
    SourceState {
        source_id: Some(10_000 + i),
        gps: Some(Gps {
            updated: Some(NavixyTime::Instant(at)),
            location: Some(Location {
                lat: 52.52 + (i % 50) as f64 * 0.001,
                lng: 13.40 + (m % 7) as f64 * 0.001,
            }),
            speed: Some(if moving {
                40.0 + ((i * 7 + m) % 70) as f64
            } else {
                0.0
            }),
            heading: Some(90.0),
            signal_level: Some(100.0),
            ..Gps::default()
        }),
        connection_status: Some(navixy_alerts::navixy::messages::ConnectionStatus::Active),
        movement_status: Some(if moving {
            MovementStatus::Moving
        } else {
            MovementStatus::Parked
        }),
        movement_status_update: Some(NavixyTime::Instant(at - chrono::Duration::minutes(30))),
        ignition: Some(moving || i % 4 == 0),
        ignition_update: Some(NavixyTime::Instant(at)),
        last_update: Some(NavixyTime::Instant(at)),
        battery_level: Some((i % 100) as f64),
        inputs: Some(Bits::from_slice(&[i % 2 == 0, m % 2 == 0, false, false])),
        outputs: Some(Bits::from_slice(&[false, false])),
        ..SourceState::default()
    }
}

fn readings(i: i64, m: i64) -> ReadingsItem {
    let at = NavixyTime::Instant(t0() + chrono::Duration::minutes(m));
    ReadingsItem {
        tracker_id: Some(i),
        timestamp: Some(at),
        inputs: vec![
            SensorInput {
                name: Some("lls_level_1".into()),
                value: Some(300.0 - (m as f64) * if i % 10 == 0 { 5.0 } else { 0.3 }),
                update_time: Some(at),
                ..SensorInput::default()
            },
            SensorInput {
                name: Some("board_voltage".into()),
                value: Some(27.0 + (i % 5) as f64 * 0.2),
                update_time: Some(at),
                ..SensorInput::default()
            },
        ],
        ..ReadingsItem::default()
    }
}

/// A shard cache with a fleet: ten minutes of states and readings per tracker.
fn fleet(rules: &RuleSet) -> ShardCache {
    let mut cache = ShardCache::new(rules.history_policy(), chrono_tz::UTC);
    for i in 0..TRACKERS {
        cache.set_info(TrackerInfo {
            id: i,
            source_id: Some(10_000 + i),
            label: Some(format!("Truck {i}")),
            group_id: Some(i % 10),
            blocked: None,
            source: 0,
        });
        for m in 0..10 {
            cache.apply(Update::State {
                tracker_id: i,
                state: Box::new(state(i, m)),
            });
            cache.apply(Update::Readings {
                tracker_id: i,
                readings: Box::new(readings(i, m)),
            });
        }
    }
    cache
}

fn bench(c: &mut Criterion) {
    let rules = Arc::new(stock_rules());
    let cache = fleet(&rules);
    let now = t0() + chrono::Duration::minutes(10);
    let per_tracker = rules.len() as u64;

    let mut group = c.benchmark_group("rules");
    group.measurement_time(Duration::from_secs(8));

    let mut evaluator = Evaluator::new(Arc::clone(&rules));
    group.throughput(Throughput::Elements(TRACKERS as u64 * per_tracker));
    group.bench_function("conditions", |b| {
        b.iter(|| {
            let mut held = 0;
            for t in cache.iter() {
                held += evaluator.evaluate_conditions(t, now);
            }
            held
        })
    });

    // The whole path of a state update: the cache merges it, the evaluator runs the
    // rules whose inputs changed and moves the alert machines. Each update is a new
    // position report with the same statuses, the common case (no transitions).
    let mut cache2 = fleet(&rules);
    let mut evaluator = Evaluator::new(Arc::clone(&rules));
    let mut out = Vec::new();
    let mut second = 0i64;
    group.throughput(Throughput::Elements(TRACKERS as u64));
    group.bench_function("updates", |b| {
        b.iter(|| {
            second += 1;
            let at = now + chrono::Duration::seconds(second);
            for i in 0..TRACKERS {
                let mut s = state(i, 10);
                s.last_update = Some(NavixyTime::Instant(at));
                if let Some(gps) = s.gps.as_mut() {
                    gps.updated = Some(NavixyTime::Instant(at));
                }
                let tracker = cache2.apply(Update::State {
                    tracker_id: i,
                    state: Box::new(s),
                });
                evaluator.on_update(tracker, at, true, &mut out);
            }
            out.clear();
        })
    });

    // A tick over the fleet: rules that read the time run, the others only move their
    // alerts' clocks.
    let mut evaluator = Evaluator::new(Arc::clone(&rules));
    evaluator.on_tick(&mut cache.iter(), now, &mut out);
    let mut second = 0i64;
    group.bench_function("ticks", |b| {
        b.iter(|| {
            second += 10;
            let at = now + chrono::Duration::seconds(second);
            evaluator.on_tick(&mut cache.iter(), at, &mut out);
            out.clear();
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
