//! Writes a recording of a generated fleet for `replay`: `state_batch` frames of full
//! states (wire shape, 100 per frame) and `readings_batch` frames (fuel, voltage,
//! odometer), each line `{"at": ..., "frame": ...}`, plus the fleet's `tracker/list`.
//!
//! ```text
//! cargo run --release --example gen_fleet -- --trackers 10000 --updates 1000000 \
//!     --out /tmp/fleet.jsonl --tracker-list /tmp/fleet-trackers.json
//! cargo run --release -- replay -c tests/data/replay.yaml --stats --quiet \
//!     --trackers /tmp/fleet-trackers.json /tmp/fleet.jsonl
//! ```

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use chrono::{Duration, TimeZone, Utc};
use clap::Parser;

#[path = "../benches/support/fleet.rs"]
mod fleet;

#[derive(Parser)]
struct Args {
    /// Vehicles in the fleet.
    #[arg(long, default_value_t = 10_000)]
    trackers: usize,
    /// Stop after this many updates (state items + readings items).
    #[arg(long, default_value_t = 1_000_000)]
    updates: usize,
    /// Stop after this many minutes of event time instead (rounds of `--interval`).
    #[arg(long, conflicts_with = "updates")]
    minutes: Option<i64>,
    /// The event time of the first round (RFC 3339); default: 2026-01-05T06:00:00Z.
    #[arg(long)]
    start: Option<chrono::DateTime<Utc>>,
    /// States (or readings) per frame.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Every Nth round also sends readings for every vehicle; 0 for none.
    #[arg(long, default_value_t = 3)]
    readings_every: usize,
    /// Simulated seconds between rounds (Navixy's rate_limit).
    #[arg(long, default_value_t = 5)]
    interval: i64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The recording to write.
    #[arg(long)]
    out: PathBuf,
    /// Also write the fleet's tracker/list response here.
    #[arg(long)]
    tracker_list: Option<PathBuf>,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let mut fleet = fleet::Fleet::new(args.trackers, args.seed);
    if let Some(path) = &args.tracker_list {
        std::fs::write(path, fleet.tracker_list())?;
    }
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&args.out)?);
    let start = args.start.unwrap_or_else(|| {
        Utc.with_ymd_and_hms(2026, 1, 5, 6, 0, 0)
            .single()
            .expect("a valid start")
    });
    let batch = args.batch.max(1);
    let interval = args.interval.max(1);
    let (limit, rounds) = match args.minutes {
        Some(minutes) => (usize::MAX, (minutes.max(0) * 60 / interval) as usize),
        None => (args.updates, usize::MAX),
    };
    let (mut written, mut frames, mut round) = (0usize, 0usize, 0usize);
    while written < limit && round < rounds {
        let at = start + Duration::seconds(interval * round as i64);
        for i in 0..args.trackers {
            fleet.step(i, interval as f64);
        }
        let mut emit = |frame: String, n: usize, written: &mut usize| -> std::io::Result<()> {
            writeln!(
                out,
                r#"{{"at":"{}","frame":{frame}}}"#,
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )?;
            *written += n;
            frames += 1;
            Ok(())
        };
        let mut first = 0;
        while first < args.trackers && written < limit {
            let end = (first + batch)
                .min(args.trackers)
                .min(first.saturating_add(limit - written));
            emit(fleet.state_batch(first..end, at), end - first, &mut written)?;
            first = end;
        }
        if args.readings_every > 0 && round % args.readings_every == 0 {
            let mut first = 0;
            while first < args.trackers && written < limit {
                let end = (first + batch)
                    .min(args.trackers)
                    .min(first.saturating_add(limit - written));
                emit(
                    fleet.readings_batch(first..end, at),
                    end - first,
                    &mut written,
                )?;
                first = end;
            }
        }
        round += 1;
    }
    out.flush()?;
    eprintln!(
        "{}: {written} updates in {frames} frames, {round} rounds of {} trackers",
        args.out.display(),
        args.trackers
    );
    Ok(())
}
