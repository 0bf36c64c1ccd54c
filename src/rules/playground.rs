//! Trying a condition out: compiled with the rule set's own engine (its helpers, zones
//! and sandbox limits), evaluated once against each tracker's state as it is, or made a
//! one-rule set (with its `for`) and run over a recording on the event-time clock, through
//! the engine and evaluator `replay` uses. For the console's playground; the live engine
//! never calls it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::script::{self, context, engine as script_engine};
use super::{Evaluator, LoadOptions, RuleSet};
use crate::alert::AlertStatus;
use crate::engine::{Engine, EngineClock, EngineOptions, ShardEvaluator};
use crate::navixy::messages::TrackerId;
use crate::source::replay::Recording;
use crate::state::TrackerState;

/// The longest condition taken, in bytes: a playground is for one expression.
pub const MAX_CONDITION_BYTES: usize = 4096;

/// What a condition gave for one tracker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tried {
    /// Navixy's id.
    pub tracker_id: TrackerId,
    /// The engine's key (the source and the id, see `navixy::messages::tracker_key`).
    pub key: TrackerId,
    /// True when the value is the boolean `true`: the condition holds.
    pub holds: bool,
    /// The value as JSON (`None` for `()`).
    pub value: Option<serde_json::Value>,
    /// Why the evaluation failed (a fault a rule would log).
    pub error: Option<String>,
}

/// The most recording lines one run reads: a playground answers in seconds.
pub const MAX_RECORDING_LINES: u64 = 500_000;
/// The longest one run over a recording takes before it stops where it is.
pub const MAX_RECORDING_RUN: Duration = Duration::from_secs(10);
/// The firings listed (all are counted).
pub const MAX_FIRINGS_LISTED: usize = 50;

/// What a condition would have done over a recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordingRun {
    /// Recording lines read, and of them not recording lines.
    pub lines: u64,
    pub bad_lines: u64,
    /// Why the run stopped before the recording's end, if it did.
    pub stopped: Option<String>,
    /// The event-time span read.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Times it fired and resolved, and the trackers it fired for.
    pub firings: u64,
    pub resolves: u64,
    pub trackers: usize,
    /// The first [`MAX_FIRINGS_LISTED`] firings, in order.
    pub first: Vec<RecordedFiring>,
}

/// One firing over a recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedFiring {
    pub tracker_id: Option<TrackerId>,
    /// When it fired (after its `for`), on the recording's clock.
    pub at: DateTime<Utc>,
}

impl RuleSet {
    /// Runs `condition` (held for `hold_for`, e.g. `5m`, when given) over the recording
    /// at `path` as a one-rule set with this set's zones, time zone and Navixy context:
    /// the engine on the event-time clock, fed line by line as `replay` feeds it. Stops
    /// at [`MAX_RECORDING_LINES`] or [`MAX_RECORDING_RUN`]. An error when the condition
    /// or the `for` does not load (the message says where) or the file cannot be read.
    pub fn try_over_recording(
        &self,
        condition: &str,
        hold_for: Option<&str>,
        path: &Path,
    ) -> Result<RecordingRun, String> {
        if condition.trim().is_empty() {
            return Err("type a condition, e.g. `state.gps.speed > 80`".into());
        }
        if condition.len() > MAX_CONDITION_BYTES {
            return Err(format!(
                "the condition is longer than {MAX_CONDITION_BYTES} bytes"
            ));
        }
        // JSON strings are YAML double-quoted scalars: the text stays as typed.
        let quoted = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let hold_for = hold_for.map(str::trim).filter(|f| !f.is_empty());
        let yaml = format!(
            "rules:\n  - name: playground\n    when: {}\n{}    severity: info\n",
            quoted(condition),
            hold_for.map_or(String::new(), |f| format!("    for: {}\n", quoted(f)))
        );
        let options = LoadOptions {
            zones: self.zones.clone(),
            // Navixy's zones are known at run time only.
            import_zones: true,
            time_zone: self.time_zone,
            ..LoadOptions::default()
        };
        let set = RuleSet::from_sources(&[(PathBuf::from("playground"), yaml)], &options)
            .map_err(|errors| {
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            })?
            .with_navixy_context(self.navixy_context());
        let set = Arc::new(set);
        let mut recording = Recording::open(path, self.time_zone)
            .map_err(|e| format!("{}: cannot open the recording: {e}", path.display()))?;

        let mut engine_options = EngineOptions::new(EngineClock::EventTime);
        engine_options.workers = 1;
        engine_options.timezone = self.time_zone;
        engine_options.history = set.history_policy();
        engine_options.batch_size = 1024;
        engine_options.source = "replay";
        let factory = {
            let set = set.clone();
            move |_: usize| -> Box<dyn ShardEvaluator> { Box::new(Evaluator::new(set.clone())) }
        };
        let (mut engine, mut transitions) = Engine::start(engine_options, &factory)
            .map_err(|e| format!("cannot start the engine workers: {e}"))?;
        // Read beside the engine: its channel is bounded.
        let reader = std::thread::Builder::new()
            .name("playground".into())
            .spawn(move || {
                let mut run = (0u64, 0u64, std::collections::BTreeSet::new(), Vec::new());
                while let Some(t) = transitions.blocking_recv() {
                    if t.status == AlertStatus::Resolved {
                        run.1 += 1;
                        continue;
                    }
                    run.0 += 1;
                    let tracker_id = t.tracker.as_ref().map(|r| r.id);
                    run.2.insert(tracker_id);
                    if run.3.len() < MAX_FIRINGS_LISTED {
                        run.3.push(RecordedFiring {
                            tracker_id,
                            at: t.at,
                        });
                    }
                }
                run
            })
            .map_err(|e| format!("cannot start the playground's reader: {e}"))?;

        let started = Instant::now();
        let (mut lines, mut bad_lines, mut from, mut stopped) = (0u64, 0u64, None, None);
        while let Some(next) = recording.next_frame() {
            if lines >= MAX_RECORDING_LINES {
                stopped = Some(format!("stopped after {MAX_RECORDING_LINES} lines"));
                break;
            }
            if started.elapsed() > MAX_RECORDING_RUN {
                stopped = Some(format!(
                    "stopped after {} s, at line {lines}",
                    MAX_RECORDING_RUN.as_secs()
                ));
                break;
            }
            lines += 1;
            let frame = match next {
                Ok(Ok(frame)) => frame,
                Ok(Err(_)) => {
                    bad_lines += 1;
                    continue;
                }
                Err(e) => {
                    stopped = Some(format!("read error at line {lines}: {e}"));
                    break;
                }
            };
            from = from.or(frame.at);
            // A frame that does not decode counts in the engine's stats, as in `replay`.
            let _ = engine.ingest_text(&frame.text, frame.at);
        }
        engine.sync();
        let to = engine.now();
        engine.shutdown();
        let (firings, resolves, trackers, first) = reader
            .join()
            .map_err(|_| "the playground's reader failed".to_string())?;
        Ok(RecordingRun {
            lines,
            bad_lines,
            stopped,
            from,
            to,
            firings,
            resolves,
            trackers: trackers.len(),
            first,
        })
    }

    /// Compiles `condition` and evaluates it for each of `trackers` at `now`. An error
    /// when it does not compile (the message says where).
    pub fn try_condition(
        &self,
        condition: &str,
        trackers: &[TrackerState],
        now: DateTime<Utc>,
    ) -> Result<Vec<Tried>, String> {
        if condition.trim().is_empty() {
            return Err("type a condition, e.g. `state.gps.speed > 80`".into());
        }
        if condition.len() > MAX_CONDITION_BYTES {
            return Err(format!(
                "the condition is longer than {MAX_CONDITION_BYTES} bytes"
            ));
        }
        let ast = self
            .engine
            .compile_with_scope(&script_engine::compile_scope(rhai::Map::new()), condition)
            .map_err(|e| e.to_string())?;
        let now_ms = now.timestamp_millis();
        let mut scope = script_engine::eval_scope();
        Ok(trackers
            .iter()
            .map(|tracker| {
                let navixy = self.around.context(tracker.info.source).load();
                script::set_now(&mut scope, now_ms.div_euclid(1000));
                let frame = context::ScriptFrame {
                    tracker,
                    now_ms,
                    time_zone: self.time_zone,
                    zones: &self.zones,
                    navixy: &navixy,
                    around: &self.around,
                };
                let result =
                    context::enter(&frame, || script::eval_rhai(&self.engine, &mut scope, &ast));
                match result {
                    Ok(v) => Tried {
                        tracker_id: tracker.info.id,
                        key: tracker.info.key(),
                        holds: v.as_bool() == Ok(true),
                        value: script::to_json(&v),
                        error: None,
                    },
                    Err(e) => Tried {
                        tracker_id: tracker.info.id,
                        key: tracker.info.key(),
                        holds: false,
                        value: None,
                        error: Some(e.to_string()),
                    },
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::config::{Circle, ZoneConfig};
    use crate::navixy::messages::SourceState;
    use crate::rules::LoadOptions;
    use crate::rules::zones::Zones;
    use crate::state::Update;
    use crate::state::cache::ShardCache;

    fn rules() -> RuleSet {
        let zones = [(
            "depot".to_string(),
            ZoneConfig {
                circle: Some(Circle {
                    lat: 52.52,
                    lng: 13.40,
                    radius_m: 300.0,
                }),
                polygon: None,
                sausage: None,
            },
        )]
        .into_iter()
        .collect();
        let options = LoadOptions {
            zones: Zones::local(&zones),
            ..LoadOptions::default()
        };
        let yaml = "rules:\n  - name: r\n    when: \"false\"\n".to_string();
        RuleSet::from_sources(&[(PathBuf::from("rules/r.yaml"), yaml)], &options)
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    /// Two trackers: 1 at the depot doing 20 km/h, 2 elsewhere doing 95.
    fn fleet() -> Vec<TrackerState> {
        let mut cache = ShardCache::new(Default::default(), chrono_tz::UTC);
        for (id, lat, speed) in [(1, 52.52, 20.0), (2, 52.60, 95.0)] {
            let state: SourceState = serde_json::from_value(json!({
                "gps": { "location": { "lat": lat, "lng": 13.40 }, "speed": speed }
            }))
            .unwrap();
            cache.apply(Update::State {
                tracker_id: id,
                state: Box::new(state),
            });
        }
        let mut all: Vec<TrackerState> = cache.iter().cloned().collect();
        all.sort_by_key(|t| t.info.id);
        all
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap()
    }

    #[test]
    fn a_condition_holds_for_the_trackers_it_is_true_of() {
        let tried = rules()
            .try_condition("state.gps.speed > 80", &fleet(), now())
            .unwrap();
        let holds: Vec<(TrackerId, bool)> = tried.iter().map(|t| (t.tracker_id, t.holds)).collect();
        assert_eq!(holds, [(1, false), (2, true)]);
    }

    #[test]
    fn conditions_see_the_rules_zones_and_values_are_kept() {
        let set = rules();
        let tried = set
            .try_condition("in_zone(\"depot\")", &fleet(), now())
            .unwrap();
        assert_eq!(
            tried.iter().map(|t| t.holds).collect::<Vec<_>>(),
            [true, false]
        );
        let speeds = set
            .try_condition("state.gps.speed", &fleet(), now())
            .unwrap();
        assert_eq!(speeds[1].value, Some(json!(95)));
        assert!(!speeds[1].holds);
    }

    /// A recording: tracker 7 speeds (95 km/h) from 08:00:10 to 08:00:40, tracker 8
    /// stays at 20; one state of each every 10 s.
    fn recording(dir: &std::path::Path) -> PathBuf {
        let mut text = String::new();
        for step in 0..7 {
            let at = now() + chrono::Duration::seconds(step * 10);
            let fast = (1..=4).contains(&step);
            let frame = json!({
                "type": "event", "event": "state_batch",
                "data": [
                    { "source_id": 7, "gps": { "location": { "lat": 52.6, "lng": 13.4 },
                        "speed": if fast { 95 } else { 20 },
                        "updated": at.format("%Y-%m-%d %H:%M:%S").to_string() } },
                    { "source_id": 8, "gps": { "location": { "lat": 52.6, "lng": 13.4 },
                        "speed": 20, "updated": at.format("%Y-%m-%d %H:%M:%S").to_string() } }
                ]
            });
            crate::source::recording::write_line(at, &frame.to_string(), &mut text);
        }
        let path = dir.join("fleet.jsonl");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn over_a_recording_it_fires_where_and_when_it_held_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let path = recording(dir.path());
        let set = rules();
        let run = set
            .try_over_recording("state.gps.speed > 80", None, &path)
            .unwrap();
        assert_eq!(
            (run.lines, run.bad_lines, run.stopped.clone()),
            (7, 0, None)
        );
        assert_eq!((run.firings, run.resolves, run.trackers), (1, 1, 1));
        assert_eq!(run.first.len(), 1);
        assert_eq!(run.first[0].at, now() + chrono::Duration::seconds(10));
        assert_eq!(run.from, Some(now()));

        // To be held for 25 s: it fires on the first state past that, at 08:00:40.
        let run = set
            .try_over_recording("state.gps.speed > 80", Some("25s"), &path)
            .unwrap();
        assert_eq!(run.firings, 1);
        assert_eq!(run.first[0].at, now() + chrono::Duration::seconds(40));
        // Held for longer than it ever did: nothing.
        let run = set
            .try_over_recording("state.gps.speed > 80", Some("1m"), &path)
            .unwrap();
        assert_eq!(run.firings, 0);

        // What does not load says so; nothing is run.
        let error = set
            .try_over_recording("state.gps.speed >", None, &path)
            .unwrap_err();
        assert!(error.contains("playground"), "{error}");
        let error = set
            .try_over_recording("true", Some("soon"), &path)
            .unwrap_err();
        assert!(error.contains("for"), "{error}");
        let error = set
            .try_over_recording("true", None, &dir.path().join("none.jsonl"))
            .unwrap_err();
        assert!(error.contains("cannot open the recording"), "{error}");
    }

    #[test]
    fn a_condition_that_does_not_compile_says_so() {
        let set = rules();
        assert!(
            set.try_condition("state.gps.speed >", &fleet(), now())
                .is_err()
        );
        assert!(set.try_condition("nope > 1", &fleet(), now()).is_err());
        assert_eq!(
            set.try_condition("  ", &fleet(), now()).unwrap_err(),
            "type a condition, e.g. `state.gps.speed > 80`"
        );
    }
}
