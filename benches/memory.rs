//! Resident memory of the state cache for a large fleet with an hour of fuel history.
//!
//! `cargo bench --bench memory` (env `TRACKERS`, default 100000; `INTERVAL_S`, default 10)
//! fills one cache the way a live engine would: a full state per tracker, then an hour
//! of readings (fuel with noise, board voltage, odometer) and compact states, and prints
//! the process's resident memory. The SPEC's target: under 1 GiB for 100,000 trackers.

use std::time::Duration;

use navixy_alerts::navixy::messages::*;
use navixy_alerts::state::Update;
use navixy_alerts::state::cache::ShardCache;
use navixy_alerts::state::history::HistoryPolicy;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; run only when invoked as a bench, not under `cargo test`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let trackers = env_or("TRACKERS", 100_000) as i64;
    let interval = env_or("INTERVAL_S", 10) as i64;
    let t0 = 1_767_225_600i64; // 2026-01-01T00:00:00Z
    let at = |s: i64| {
        Some(NavixyTime::Instant(
            chrono::DateTime::from_timestamp(t0 + s, 0).unwrap_or_default(),
        ))
    };
    for (label, policy) in [
        (
            "fuel series only (what the stock rules read)",
            HistoryPolicy::for_window(Duration::from_secs(3600)).only(["lls_level_1"]),
        ),
        (
            "every numeric series",
            HistoryPolicy::for_window(Duration::from_secs(3600)),
        ),
    ] {
        let before = rss_mib();
        let mut cache = ShardCache::new(policy, chrono_tz::UTC);
        let mut rng = fastrand::Rng::with_seed(7);
        for id in 0..trackers {
            let state = SourceState {
                source_id: Some(id + 1_000_000),
                gps: Some(Gps {
                    updated: at(0),
                    signal_level: Some(100.0),
                    location: Some(Location {
                        lat: 52.5,
                        lng: 13.4,
                    }),
                    heading: Some(90.0),
                    speed: Some(0.0),
                    alt: Some(40.0),
                    ..Gps::default()
                }),
                connection_status: Some(ConnectionStatus::Active),
                movement_status: Some(MovementStatus::Parked),
                ignition: Some(false),
                last_update: at(0),
                inputs: Some(Bits::from_elem(false, 8)),
                outputs: Some(Bits::from_elem(false, 4)),
                ..SourceState::default()
            };
            cache.apply(Update::State {
                tracker_id: id,
                state: Box::new(state),
            });
        }
        for step in 0..(3600 / interval) {
            let s = step * interval;
            for id in 0..trackers {
                let fuel = 300.0 - s as f64 * 0.01 + rng.f64() * 0.5;
                let readings = ReadingsItem {
                    tracker_id: Some(id),
                    timestamp: at(s),
                    inputs: vec![SensorInput {
                        name: Some("lls_level_1".into()),
                        value: Some(fuel),
                        update_time: at(s),
                        ..SensorInput::default()
                    }],
                    counters: vec![Counter {
                        kind: Some("odometer".into()),
                        value: Some(1000.0 + s as f64 * 0.01),
                        update_time: at(s),
                    }],
                    ..ReadingsItem::default()
                };
                cache.apply(Update::Readings {
                    tracker_id: id,
                    readings: Box::new(readings),
                });
                let compact = SourceState {
                    gps: Some(Gps {
                        updated: at(s),
                        speed: Some(rng.f64() * 90.0),
                        location: Some(Location {
                            lat: 52.5,
                            lng: 13.4,
                        }),
                        ..Gps::default()
                    }),
                    last_update: at(s),
                    ..SourceState::default()
                };
                cache.apply(Update::State {
                    tracker_id: id,
                    state: Box::new(compact),
                });
            }
        }
        let points: usize = cache
            .iter()
            .map(|t| t.history.names().count())
            .sum::<usize>();
        println!(
            "{trackers} trackers, 1 h at {interval} s, {label}: {:.0} MiB resident ({} series)",
            rss_mib() - before,
            points
        );
        drop(cache);
    }
}
