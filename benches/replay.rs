//! The engine end to end: a generated fleet's frames (75% state items, 25% readings
//! items) decoded, mapped through the tracker list, routed to two shards and applied to
//! the cache, without rules and with the stock rules (decoding only the fields they read,
//! as `replay` does); beside it, decoding the same frames alone. Time is the whole
//! process's CPU time (every thread), so `engine / decode_only` is the cost of everything
//! after decoding, whatever else runs on the machine. The allocator is the binary's
//! (mimalloc): states are allocated by the reader and freed by the shards.
//!
//! `cargo bench --bench replay`

use std::hint::black_box;
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use navixy_alerts::engine::{
    Engine, EngineClock, EngineOptions, EngineStats, NoRules, ShardEvaluator, tracker_infos,
};
use navixy_alerts::navixy::decode::{decode_frame, decode_tracker_list};
use navixy_alerts::navixy::messages::TrackerInfo;
use navixy_alerts::rules::Evaluator;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/cpu_time.rs"]
#[allow(dead_code)]
mod cpu_time;
#[path = "support/fleet.rs"]
#[allow(dead_code)]
mod fleet;
#[path = "support/stock_rules.rs"]
mod stock_rules;

use cpu_time::ProcessCpuTime;
use stock_rules::stock_rules;

const TRACKERS: usize = 2000;
const ROUNDS: usize = 4;

/// (arrival time, frame) for `ROUNDS` rounds of the whole fleet, readings every other round.
fn recording() -> (Vec<(chrono::DateTime<Utc>, String)>, String, usize) {
    let mut fleet = fleet::Fleet::new(TRACKERS, 3);
    let start = Utc.with_ymd_and_hms(2026, 1, 5, 6, 0, 0).unwrap();
    let mut frames = Vec::new();
    let mut updates = 0;
    for round in 0..ROUNDS {
        let at = start + Duration::seconds(5 * round as i64);
        for i in 0..TRACKERS {
            fleet.step(i, 5.0);
        }
        for first in (0..TRACKERS).step_by(100) {
            frames.push((at, fleet.state_batch(first..first + 100, at)));
            updates += 100;
            if round % 2 == 0 && first % 200 == 0 {
                frames.push((at, fleet.readings_batch(first..first + 200, at)));
                updates += 200;
            }
        }
    }
    (frames, fleet.tracker_list(), updates)
}

/// Runs every frame through an engine of two shards with `evaluator`s, to the end.
fn run_engine(
    frames: &[(chrono::DateTime<Utc>, String)],
    infos: &[TrackerInfo],
    updates: usize,
    configure: impl FnOnce(&mut EngineOptions),
    evaluator: &(dyn Fn(usize) -> Box<dyn ShardEvaluator> + Sync),
) -> EngineStats {
    let mut options = EngineOptions::new(EngineClock::EventTime);
    options.workers = 2;
    options.batch_size = 1024;
    // Nothing reads the transitions while the engine runs: no bound, or the shards
    // would wait for a reader.
    options.transition_capacity = usize::MAX;
    configure(&mut options);
    let (mut engine, _transitions) = Engine::start(options, evaluator).unwrap();
    engine.set_trackers(infos.to_vec());
    for (at, f) in frames {
        let _ = engine.ingest_text(f, Some(*at));
    }
    engine.sync();
    assert_eq!(engine.stats().updates(), updates as u64);
    engine.shutdown()
}

fn replay(c: &mut Criterion<ProcessCpuTime>) {
    let (frames, list, updates) = recording();
    let infos = tracker_infos(&decode_tracker_list(&list).unwrap());
    let rules = Arc::new(stock_rules());
    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(updates as u64));
    group.sample_size(20);
    group.bench_function("decode_only", |b| {
        b.iter(|| {
            for (_, f) in &frames {
                black_box(decode_frame(f).is_ok());
            }
        })
    });
    group.bench_function("engine_no_rules", |b| {
        let no_rules = |_: usize| -> Box<dyn ShardEvaluator> { Box::new(NoRules) };
        b.iter(|| run_engine(&frames, &infos, updates, |_| {}, &no_rules))
    });
    group.bench_function("engine_stock_rules", |b| {
        let stock =
            |_: usize| -> Box<dyn ShardEvaluator> { Box::new(Evaluator::new(Arc::clone(&rules))) };
        b.iter(|| {
            let configure = |o: &mut EngineOptions| {
                o.history = rules.history_policy();
                o.decode.state_fields = rules.decode_fields();
            };
            run_engine(&frames, &infos, updates, configure, &stock)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ProcessCpuTime::default());
    targets = replay
}
criterion_main!(benches);
