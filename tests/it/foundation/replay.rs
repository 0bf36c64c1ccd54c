//! `replay` end to end through the real binary, and the library entry point.

use std::process::Command;

use navixy_alerts::commands::replay::{ReplayOptions, TransitionOutput, replay};
use navixy_alerts::config::Config;
use navixy_alerts::engine::{NoRules, ShardEvaluator};

use super::data;

#[test]
fn stats_on_a_recording_with_malformed_lines() {
    let out = Command::new(env!("CARGO_BIN_EXE_navixy-alerts"))
        .args(["replay", "--stats", "-c"])
        .arg(data("replay.yaml"))
        .arg(data("small_recording.jsonl"))
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    // Everything but the timing line is exact.
    let mut lines: Vec<&str> = stdout.lines().collect();
    let updates = lines.remove(lines.len() - 2);
    assert!(updates.starts_with("updates: 6 in "), "{updates}");
    assert!(updates.ends_with(" updates/s)"), "{updates}");
    assert_eq!(
        lines,
        [
            "lines: 12 (bad: 1)",
            "frames: 11",
            "states: 2",
            "readings: 1",
            "lifecycle: 3",
            "iot: 0",
            "control frames: 3",
            "decode errors: 3 (malformed 2, wrong_type 1, oversized 0, unknown_shape 0)",
            "unknown events: 1, unknown items: 1, unmapped: 0, stale: 3",
            "transitions: 0",
        ]
    );
    let file = data("small_recording.jsonl");
    let file = file.display();
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            format!("{file}:4: wrong_type: 1 batch item(s) dropped"),
            format!("{file}:5: malformed: EOF while parsing an object at line 1 column 60"),
            format!("{file}:6: malformed: not JSON"),
            format!("{file}:8: `at` is not a time: `last tuesday`"),
        ]
    );
}

#[test]
fn tracker_list_maps_the_recording() {
    let out = Command::new(env!("CARGO_BIN_EXE_navixy-alerts"))
        .args(["replay", "--stats", "--trackers"])
        .arg(data("navixy/tracker_list.json"))
        .arg("-c")
        .arg(data("replay.yaml"))
        .arg(data("small_recording.jsonl"))
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    // Only source 10284 (tracker 21080) is in the list: the other sources are unmapped.
    assert!(
        stdout.contains("states: 0\nreadings: 1\nlifecycle: 1\n"),
        "{stdout}"
    );
    assert!(stdout.contains("unmapped: 4"), "{stdout}");
}

#[test]
fn a_missing_recording_is_an_error_naming_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_navixy-alerts"))
        .args(["replay", "-c"])
        .arg(data("replay.yaml"))
        .arg(data("no_such_recording.jsonl"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no_such_recording.jsonl: cannot open the recording"),
        "{stderr}"
    );
}

#[test]
fn library_entry_point_takes_an_evaluator_factory() {
    let config = Config::load(&data("replay.yaml")).unwrap();
    let factory = |_: usize| -> Box<dyn ShardEvaluator> { Box::new(NoRules) };
    let stats = replay(
        &config,
        &data("small_recording.jsonl"),
        ReplayOptions {
            output: TransitionOutput::Collect,
            ..ReplayOptions::default()
        },
        &factory,
    )
    .unwrap();
    assert_eq!(
        (stats.lines, stats.bad_lines, stats.engine.updates()),
        (12, 1, 6)
    );
    assert_eq!(
        stats.end_time,
        Some("2025-10-08T23:28:00Z".parse().unwrap())
    );
    assert!(stats.transitions.is_empty());
}
