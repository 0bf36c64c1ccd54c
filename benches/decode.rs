//! Decoder throughput on generated `state_batch` frames of 100 full states each (the wire
//! shape, times with offsets), reported as states per second: every field
//! (`decode_frame`), only the fields a typical rule set reads (`decode_frame_rule_fields`),
//! and a plain serde derive of the same frames into the same types for comparison. And on
//! `readings_batch` frames of 100 readings items each (two sensors and a counter, as the
//! generated fleets send), reported as items per second.
//!
//! Time is the benchmark thread's CPU time (see `support/cpu_time.rs`), so the figure is
//! per core even while other processes share the machine. Allocations go through mimalloc,
//! as in the daemon.
//!
//! `cargo bench --bench decode`

use std::hint::black_box;

use chrono::{TimeZone, Utc};
use cpu_time::ThreadCpuTime;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use navixy_alerts::navixy::decode::{DecodeOptions, StateFields, decode_frame_with};
use navixy_alerts::navixy::messages::{BatchItem, Frame, SourceState};

/// The daemon's allocator (`src/main.rs`): a full state is a handful of small allocations
/// (the box, inputs, outputs, the operator's name, `additional`), so the allocator is part
/// of what is measured.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/cpu_time.rs"]
#[allow(dead_code)]
mod cpu_time;
#[path = "support/fleet.rs"]
#[allow(dead_code)]
mod fleet;

const TRACKERS: usize = 1000;
const PER_FRAME: usize = 100;

/// The fleet's `state_batch` and `readings_batch` frames.
fn frames() -> (Vec<String>, Vec<String>) {
    let mut fleet = fleet::Fleet::new(TRACKERS, 7);
    let at = Utc.with_ymd_and_hms(2026, 1, 1, 8, 0, 0).unwrap();
    for i in 0..TRACKERS {
        fleet.step(i, 30.0);
    }
    let ranges = || (0..TRACKERS / PER_FRAME).map(|f| f * PER_FRAME..(f + 1) * PER_FRAME);
    (
        ranges().map(|r| fleet.state_batch(r, at)).collect(),
        ranges().map(|r| fleet.readings_batch(r, at)).collect(),
    )
}

/// The same frame decoded by serde's derive (what a straightforward client would do).
#[derive(serde::Deserialize)]
struct DeriveFrame {
    #[allow(dead_code)]
    r#type: String,
    #[allow(dead_code)]
    event: String,
    data: Vec<DeriveItem>,
}

#[derive(serde::Deserialize)]
struct DeriveItem {
    #[allow(dead_code)]
    r#type: String,
    state: Option<SourceState>,
}

/// Decodes every frame with `options` and counts the states and readings items read (all
/// of them, or the bench is wrong).
fn decode_all(frames: &[String], options: &DecodeOptions) -> usize {
    let mut read = 0;
    for f in frames {
        if let Ok(Frame::StateBatch { items, .. } | Frame::ReadingsBatch { items, .. }) =
            decode_frame_with(black_box(f), options)
        {
            read += items
                .iter()
                .filter(|i| matches!(i, BatchItem::State(_) | BatchItem::Readings(_)))
                .count();
        }
    }
    assert_eq!(read, TRACKERS);
    read
}

fn decode(c: &mut Criterion<ThreadCpuTime>) {
    let (frames, readings) = frames();
    let bytes: usize = frames.iter().map(String::len).sum();
    eprintln!(
        "{} frames of {PER_FRAME} full states, {} bytes per state on average",
        frames.len(),
        bytes / TRACKERS
    );
    let mut group = c.benchmark_group("state_batch");
    group.throughput(Throughput::Elements(TRACKERS as u64));
    let every_field = DecodeOptions::default();
    group.bench_function("decode_frame", |b| {
        b.iter(|| decode_all(&frames, &every_field))
    });
    // What a typical rule set reads: position, speed, ignition, movement, I/O, battery.
    let selected = DecodeOptions {
        state_fields: StateFields::only([
            "gps",
            "connection_status",
            "movement_status",
            "ignition",
            "last_update",
            "battery_level",
            "inputs",
            "outputs",
        ])
        .expect("known fields"),
        ..DecodeOptions::default()
    };
    group.bench_function("decode_frame_rule_fields", |b| {
        b.iter(|| decode_all(&frames, &selected))
    });
    group.bench_function("serde_derive", |b| {
        b.iter(|| {
            let mut states = 0;
            for f in &frames {
                let frame: DeriveFrame = serde_json::from_str(black_box(f)).unwrap();
                states += frame.data.iter().filter(|i| i.state.is_some()).count();
            }
            assert_eq!(states, TRACKERS);
            states
        })
    });
    group.finish();

    let mut group = c.benchmark_group("readings_batch");
    group.throughput(Throughput::Elements(TRACKERS as u64));
    group.bench_function("decode_frame", |b| {
        b.iter(|| decode_all(&readings, &every_field))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime::default());
    targets = decode
}
criterion_main!(benches);
