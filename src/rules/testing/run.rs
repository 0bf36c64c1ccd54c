//! Running rule tests: each test's input goes through the same path as live data (a
//! single-shard [`ShardCache`] and an [`Evaluator`]) on an event-time clock, with a tick
//! every `evaluation_interval`; the transitions that come out are compared with the
//! expected ones.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value};
use serde_saphyr::Spanned;

use super::file::{
    Expected, ExpectedStatus, InputEvent, InputSeries, TestCase, TestFile, TimeSpec,
};
use crate::alert::AlertTransition;
use crate::config::human_duration;
use crate::config::parse_duration;
use crate::engine::ShardEvaluator;
use crate::engine::ids::IdMap;
use crate::engine::router::{self, FrameCounts};
use crate::navixy::decode::decode_frame;
use crate::navixy::messages::TrackerInfo;
use crate::navixy::messages::{
    IotTrackerValues, IotValue, LifecycleKind, NavixyTime, ReadingsItem, SensorInput, SourceState,
    StateValue, Text, TrackerId,
};
use crate::rules::faults::Fault;
use crate::rules::format::value_text;
use crate::rules::load::{LoadOptions, expand_patterns, yaml_message};
use crate::rules::set::DataRead;
use crate::rules::zones::Zones;
use crate::rules::{Evaluator, RuleSet};
use crate::source::replay::Recording;
use crate::state::Update;
use crate::state::cache::ShardCache;

/// Totals over all files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
}

impl Summary {
    pub fn ok(&self) -> bool {
        self.failed == 0
    }
}

/// Runs every test of every file, printing PASS/FAIL per test and a diff for failures.
pub fn run_files(paths: &[PathBuf], out: &mut dyn Write) -> io::Result<Summary> {
    let mut total = Summary::default();
    for path in paths {
        writeln!(out, "{}", path.display())?;
        let s = run_file(path, out)?;
        total.passed += s.passed;
        total.failed += s.failed;
    }
    writeln!(out, "{} passed, {} failed", total.passed, total.failed)?;
    Ok(total)
}

/// Runs one test file. A file that cannot be read or whose rules do not load counts as
/// one failure, with the reason printed.
pub fn run_file(path: &Path, out: &mut dyn Write) -> io::Result<Summary> {
    let fail = |out: &mut dyn Write, message: String| -> io::Result<Summary> {
        writeln!(out, "  ERROR {message}")?;
        Ok(Summary {
            passed: 0,
            failed: 1,
        })
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return fail(out, format!("{}: cannot read: {e}", path.display())),
    };
    let file: TestFile = match serde_saphyr::from_str(&text) {
        Ok(f) => f,
        Err(e) => {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            return fail(
                out,
                format!("{}:{line}:{column}: {}", path.display(), yaml_message(&e)),
            );
        }
    };
    let suite = match Suite::new(path, &file) {
        Ok(s) => s,
        Err(messages) => return fail(out, messages.join("\n        ")),
    };
    let mut summary = Summary::default();
    for case in &file.tests {
        match suite.run(case) {
            Ok(report) if report.passed() => {
                summary.passed += 1;
                writeln!(out, "  PASS  {}", case.name)?;
            }
            Ok(report) => {
                summary.failed += 1;
                writeln!(out, "  FAIL  {}", case.name)?;
                report.print(out)?;
            }
            Err(messages) => {
                summary.failed += 1;
                writeln!(out, "  FAIL  {}", case.name)?;
                for m in messages {
                    writeln!(out, "        {m}")?;
                }
            }
        }
    }
    Ok(summary)
}

/// What every test of a file shares.
struct Suite {
    path: PathBuf,
    sources: Vec<(PathBuf, String)>,
    options: LoadOptions,
    start: DateTime<Utc>,
    tz: chrono_tz::Tz,
    interval: Duration,
    max_event_age: Duration,
}

impl Suite {
    fn new(path: &Path, file: &TestFile) -> Result<Suite, Vec<String>> {
        let base = path.parent().unwrap_or(Path::new("."));
        let mut errors = Vec::new();
        let at = |v: &Spanned<String>| format!("{}:{}", path.display(), v.referenced.line());
        let tz = match &file.timezone {
            None => chrono_tz::UTC,
            Some(name) => name.value.parse().unwrap_or_else(|_| {
                errors.push(format!(
                    "{}: timezone: unknown time zone `{}`",
                    at(name),
                    name.value
                ));
                chrono_tz::UTC
            }),
        };
        let mut duration = |field: &str, v: &Option<Spanned<String>>, default: Duration| match v {
            None => default,
            Some(text) => parse_duration(&text.value).unwrap_or_else(|e| {
                errors.push(format!("{}: {field}: {e}", at(text)));
                default
            }),
        };
        let interval = duration(
            "evaluation_interval",
            &file.evaluation_interval,
            Duration::from_secs(10),
        );
        let max_event_age = duration(
            "max_event_age",
            &file.max_event_age,
            Duration::from_secs(15 * 60),
        );
        if interval.is_zero()
            && let Some(v) = &file.evaluation_interval
        {
            errors.push(format!(
                "{}: evaluation_interval: must be more than 0s",
                at(v)
            ));
        }
        let default_start = Utc
            .with_ymd_and_hms(2026, 1, 5, 8, 0, 0)
            .single()
            .unwrap_or_default();
        let start = match &file.start {
            None => default_start,
            Some(text) => match NavixyTime::parse(&text.value) {
                Some(t) => t.to_utc(tz),
                None => {
                    errors.push(format!(
                        "{}: start: `{}` is not a time like 2026-01-05T08:00:00Z",
                        at(text),
                        text.value
                    ));
                    default_start
                }
            },
        };
        let mut sources = Vec::new();
        match expand_patterns(base, &file.rule_files, path) {
            Ok(files) => {
                for f in files {
                    match std::fs::read_to_string(&f) {
                        Ok(text) => sources.push((f, text)),
                        Err(e) => {
                            errors.push(format!("{}: cannot read rule file: {e}", f.display()))
                        }
                    }
                }
            }
            Err(errs) => errors.extend(errs.iter().map(ToString::to_string)),
        }
        if file.rule_files.is_empty() {
            errors.push("rule_files: list at least one rule file".into());
        }
        for (name, zone) in &file.zones {
            if let Err(e) = zone.validate() {
                errors.push(format!("zones.{name}{e}"));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Suite {
            path: path.to_path_buf(),
            sources,
            options: LoadOptions {
                zones: Zones::local(&file.zones),
                import_zones: false,
                channels: None,
                time_zone: tz,
                params: file.params.clone(),
                time_intervals: Default::default(),
            },
            start,
            tz,
            interval,
            max_event_age,
        })
    }

    /// `file:line` of a spanned value of the test file.
    fn line_of<T>(&self, spanned: &Spanned<T>) -> String {
        format!("{}:{}", self.path.display(), spanned.referenced.line())
    }

    fn time(&self, spec: &TimeSpec) -> Result<DateTime<Utc>, String> {
        match spec {
            TimeSpec::Seconds(s) if s.is_finite() => {
                Ok(self.start + chrono::Duration::milliseconds((s * 1000.0) as i64))
            }
            TimeSpec::Seconds(s) => Err(format!("`{s}` is not a time")),
            TimeSpec::Text(text) => {
                // `-2h`: before the start (a buffered upload's own time, say).
                if let Some(before) = text.trim().strip_prefix('-')
                    && let Ok(d) = parse_duration(before)
                {
                    return Ok(self.start - chrono::Duration::from_std(d).unwrap_or_default());
                }
                if let Ok(d) = parse_duration(text) {
                    return Ok(self.start + chrono::Duration::from_std(d).unwrap_or_default());
                }
                if text.trim() == "0" {
                    return Ok(self.start);
                }
                NavixyTime::parse(text)
                    .map(|t| t.to_utc(self.tz))
                    .ok_or_else(|| {
                        format!(
                            "`{text}` is not an offset like 5m or a time like 2026-01-05T08:05:00Z"
                        )
                    })
            }
        }
    }

    /// A time as the report shows it: the offset from `start` (when after it) and the local
    /// time in the file's `timezone`, since expectations may be written either way:
    /// `4d15h (Fri 2026-01-09 23:00:00)`.
    fn show(&self, t: DateTime<Utc>) -> String {
        self.show_aligned(t, 0)
    }

    /// [`Suite::show`] with the offset right-aligned to `width`, for columns.
    fn show_aligned(&self, t: DateTime<Utc>, width: usize) -> String {
        let local = t.with_timezone(&self.tz).format("%a %Y-%m-%d %H:%M:%S");
        match (t - self.start).to_std() {
            Ok(d) => format!("{:>width$} ({local})", human_duration(d)),
            Err(_) => format!("{local}"),
        }
    }

    fn run(&self, case: &TestCase) -> Result<Report, Vec<String>> {
        let mut options = self.options.clone();
        for (rule, params) in &case.params {
            let entry = options.params.entry(rule.clone()).or_default();
            for (k, v) in params {
                entry.insert(k.clone(), v.clone());
            }
        }
        let set = RuleSet::from_sources(&self.sources, &options)
            .map_err(|errs| errs.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        let mut errors = Vec::new();
        if let Some(rules) = &case.rules {
            for r in rules {
                if set.get(r).is_none() {
                    errors.push(format!(
                        "rules: `{r}` is not a loaded rule{}",
                        loaded_rules(&set, r)
                    ));
                }
            }
        }

        let timeline = self.timeline(case, &mut errors);
        let tracker_ids: HashSet<TrackerId> = case.input.iter().filter_map(|s| s.tracker).collect();
        let single = (tracker_ids.len() == 1)
            .then(|| tracker_ids.iter().next().copied())
            .flatten();
        let mut expected = Vec::new();
        for (i, e) in case.expect.iter().enumerate() {
            let line = self.line_of(&e.at);
            let at = self
                .time(&e.at.value)
                .map_err(|m| format!("{line}: expect[{i}].at: {m}"));
            let tracker = e.tracker.or(single);
            if set.get(&e.rule.value).is_none() {
                errors.push(format!(
                    "{}: expect[{i}]: `{}` is not a loaded rule{}",
                    self.line_of(&e.rule),
                    e.rule.value,
                    loaded_rules(&set, &e.rule.value)
                ));
            }
            match (at, tracker) {
                (Ok(at), Some(tracker)) => expected.push(Want { at, tracker, e }),
                (Err(m), _) => errors.push(m),
                (_, None) => errors.push(format!(
                    "{line}: expect[{i}]: set `tracker` (the test has {} trackers)",
                    tracker_ids.len()
                )),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        // The end: `until`, else one interval after the last event or expectation.
        let last = timeline
            .iter()
            .map(|e| e.at)
            .chain(expected.iter().map(|w| w.at))
            .max()
            .unwrap_or(self.start);
        let end = match &case.until {
            Some(u) => self.time(u).map_err(|m| vec![format!("until: {m}")])?,
            None => last + chrono::Duration::from_std(self.interval).unwrap_or_default(),
        };

        let mut cache = ShardCache::new(set.history_policy(), self.tz);
        for series in &case.input {
            if let Some(id) = series.tracker {
                cache.set_info(TrackerInfo {
                    id,
                    source_id: series.source_id,
                    label: series.label.clone(),
                    group_id: series.group_id,
                    blocked: None,
                    source: 0,
                });
            }
        }
        let set = Arc::new(set);
        let mut evaluator = Evaluator::new(Arc::clone(&set));
        evaluator.record_faults();
        let mut faults = FaultReport::default();
        let mut got: Vec<AlertTransition> = Vec::new();
        let step = chrono::Duration::from_std(self.interval)
            .unwrap_or_else(|_| chrono::Duration::seconds(10));
        let mut next_tick = self.start;
        let mut events = timeline.into_iter().peekable();
        loop {
            let next_event = events.peek().map(|e| e.at);
            let tick_due = next_tick <= end;
            match next_event {
                Some(at) if !tick_due || at <= next_tick => {
                    let Some(event) = events.next() else { break };
                    let notify = (event.at - event.event_time)
                        .to_std()
                        .map_or(true, |age| age <= self.max_event_age);
                    let tracker = cache.apply(event.update);
                    evaluator.on_update(tracker, event.at, notify, &mut got);
                    faults.add(self, evaluator.take_faults(), &event.step);
                }
                _ if tick_due => {
                    evaluator.on_tick(&mut cache.iter(), next_tick, &mut got);
                    faults.add(self, evaluator.take_faults(), "the tick");
                    next_tick += step;
                }
                _ => break,
            }
        }

        let only: Option<HashSet<&str>> = case
            .rules
            .as_ref()
            .map(|r| r.iter().map(String::as_str).collect());
        got.retain(|t| only.as_ref().is_none_or(|o| o.contains(&*t.rule)));
        let unread = unprovided_reads(&set, case, &cache);
        let mut report = Report::compare(self, expected, got);
        report.faults = faults
            .lines
            .into_iter()
            .filter(|(rule, _)| only.as_ref().is_none_or(|o| o.contains(&**rule)))
            .map(|(_, line)| line)
            .collect();
        report.faults.extend(unread);
        Ok(report)
    }

    /// Every input event as updates on one time line, in time order (input order breaks ties).
    fn timeline(&self, case: &TestCase, errors: &mut Vec<String>) -> Vec<Timed> {
        let ids = IdMap::with_fallback(
            case.input
                .iter()
                .filter_map(|s| Some((s.source_id?, s.tracker?))),
        );
        let mut out = Vec::new();
        for (si, series) in case.input.iter().enumerate() {
            let mut events: Vec<(DateTime<Utc>, usize, &InputEvent)> = Vec::new();
            for (ei, e) in series.events.iter().enumerate() {
                match self.time(&e.at.value) {
                    Ok(at) => events.push((at, ei, e)),
                    Err(m) => errors.push(format!(
                        "{}: input[{si}].events[{ei}].at: {m}",
                        self.line_of(&e.at)
                    )),
                }
            }
            events.sort_by_key(|(at, ei, _)| (*at, *ei));
            let mut memory = SnippetMemory::default();
            for (at, ei, event) in events {
                let line = self.line_of(&event.at);
                match self.event_updates(series, event, at, &ids, &mut memory) {
                    Ok(updates) => out.extend(updates.into_iter().map(|mut t| {
                        t.step = format!("input[{si}].events[{ei}] ({line})");
                        t
                    })),
                    Err(m) => errors.push(format!("{line}: input[{si}].events[{ei}]: {m}")),
                }
            }
            if let Some(rec) = &series.recording {
                let base = self.path.parent().unwrap_or(Path::new("."));
                match self.recording(&base.join(rec), &ids) {
                    Ok(updates) => out.extend(updates.into_iter().map(|mut t| {
                        t.step = format!("input[{si}].recording");
                        t
                    })),
                    Err(m) => errors.push(format!("input[{si}].recording: {m}")),
                }
            }
        }
        for (i, t) in out.iter_mut().enumerate() {
            t.seq = i;
        }
        out.sort_by_key(|t| (t.at, t.seq));
        out
    }

    fn event_updates(
        &self,
        series: &InputSeries,
        e: &InputEvent,
        at: DateTime<Utc>,
        ids: &IdMap,
        memory: &mut SnippetMemory,
    ) -> Result<Vec<Timed>, String> {
        let event_time = match &e.event_time {
            Some(t) => self.time(t)?,
            None => at,
        };
        let kinds = [
            e.state.is_some(),
            e.readings.is_some(),
            e.lifecycle.is_some(),
            e.iot.is_some(),
            e.frame.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err("set exactly one of state, readings, lifecycle, iot, frame".into());
        }
        if let Some(frame) = &e.frame {
            let mut updates = Vec::new();
            frame_updates(&frame.to_string(), ids, self.tz, &mut updates)?;
            return Ok(updates
                .into_iter()
                .map(|(u, t)| Timed::new(at, t.unwrap_or(event_time), u))
                .collect());
        }
        let tracker_id = series
            .tracker
            .ok_or("only `frame` events may leave out the series' `tracker`")?;
        let stamp = Value::String(event_time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        let update = if let Some(snippet) = &e.state {
            let mut v = snippet.clone();
            let obj = v
                .as_object_mut()
                .ok_or("state: expected a map of state fields")?;
            memory.stamp(obj, &stamp);
            if let (Some(src), false) = (series.source_id, obj.contains_key("source_id")) {
                obj.insert("source_id".into(), Value::from(src));
            }
            let state: SourceState =
                serde_json::from_value(v).map_err(|err| format!("state: {err}"))?;
            Update::State {
                tracker_id,
                state: Box::new(state),
            }
        } else if let Some(readings) = &e.readings {
            Update::Readings {
                tracker_id,
                readings: Box::new(readings_item(readings, tracker_id, &stamp)?),
            }
        } else if let Some(kind) = &e.lifecycle {
            let kind = match kind.as_str() {
                "block" => LifecycleKind::Block,
                "unblock" => LifecycleKind::Unblock,
                "remove" | "corrupt" => LifecycleKind::Corrupt,
                other => {
                    return Err(format!(
                        "lifecycle: `{other}` (use block, unblock or remove)"
                    ));
                }
            };
            Update::Lifecycle {
                tracker_id,
                kind,
                at: Some(event_time),
            }
        } else if let Some(iot) = &e.iot {
            let mut values = IotTrackerValues {
                tracker_id: Some(tracker_id),
                ..IotTrackerValues::default()
            };
            for (name, value) in iot {
                values.nonnull_fields.insert(
                    name.clone(),
                    vec![IotValue {
                        value: value.clone(),
                        msg_time: Some(NavixyTime::Instant(event_time)),
                        srv_time: Some(NavixyTime::Instant(event_time)),
                    }],
                );
            }
            Update::Iot {
                tracker_id,
                values: Box::new(values),
            }
        } else {
            return Err("empty event".into());
        };
        Ok(vec![Timed::new(at, event_time, update)])
    }

    /// Frames recorded by `run --record`: `{"at": ..., "frame": ...}` or bare frames, read
    /// by replay's reader. A frame arrives at its `at`, else at its own event time.
    fn recording(&self, path: &Path, ids: &IdMap) -> Result<Vec<Timed>, String> {
        let mut recording =
            Recording::open(path, self.tz).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut out = Vec::new();
        let mut updates = Vec::new();
        let mut clock = self.start;
        while let Some(next) = recording.next_frame() {
            let frame = next
                .map_err(|e| format!("{}: {e}", path.display()))?
                .map_err(|bad| format!("{}:{}: {}", path.display(), bad.line, bad.message))?;
            // Bad frames are skipped, as the live path counts and skips them.
            if frame_updates(&frame.text, ids, self.tz, &mut updates).is_err() {
                continue;
            }
            for (u, event_time) in updates.drain(..) {
                let at = frame.at.or(event_time).unwrap_or(clock);
                clock = clock.max(at);
                out.push(Timed::new(at, event_time.unwrap_or(at), u));
            }
        }
        Ok(out)
    }
}

/// One update on the time line.
struct Timed {
    /// The engine clock when it arrives.
    at: DateTime<Utc>,
    /// The device's time for it (older than `at` for buffered data).
    event_time: DateTime<Utc>,
    seq: usize,
    update: Update,
    /// The input step it comes from (`input[0].events[2] (file:line)`), for messages.
    step: String,
}

impl Timed {
    fn new(at: DateTime<Utc>, event_time: DateTime<Utc>, update: Update) -> Timed {
        Timed {
            at,
            event_time,
            seq: 0,
            update,
            step: String::new(),
        }
    }
}

/// What a series' earlier snippets set, so that `*_update` times move only when their
/// field changes, as Navixy's do.
#[derive(Default)]
struct SnippetMemory {
    last: HashMap<&'static str, Value>,
}

impl SnippetMemory {
    /// Fills in the times a snippet leaves out: `last_update`, `gps.updated` and
    /// `battery_update` are the event time; `movement_status_update`, `ignition_update`,
    /// `inputs_update` and `outputs_update` are the event time only when their field
    /// changed.
    fn stamp(&mut self, obj: &mut Map<String, Value>, stamp: &Value) {
        obj.entry("last_update").or_insert_with(|| stamp.clone());
        if let Some(Value::Object(gps)) = obj.get_mut("gps") {
            gps.entry("updated").or_insert_with(|| stamp.clone());
        }
        if obj.contains_key("battery_level") {
            obj.entry("battery_update").or_insert_with(|| stamp.clone());
        }
        for (field, update) in [
            ("movement_status", "movement_status_update"),
            ("ignition", "ignition_update"),
            ("inputs", "inputs_update"),
            ("outputs", "outputs_update"),
        ] {
            let Some(v) = obj.get(field).cloned() else {
                continue;
            };
            if self.last.get(field) != Some(&v) && !obj.contains_key(update) {
                obj.insert(update.into(), stamp.clone());
            }
            self.last.insert(field, v);
        }
    }
}

/// `{lls_level_1: 180.5, obd_mil_status: true}` (numbers are metering sensors, other
/// values state fields) or a full readings item.
fn readings_item(v: &Value, tracker_id: TrackerId, stamp: &Value) -> Result<ReadingsItem, String> {
    let obj = v.as_object().ok_or("readings: expected a map")?;
    let full = ["inputs", "states", "virtual_sensors", "counters"]
        .iter()
        .any(|k| obj.get(*k).is_some_and(Value::is_array));
    if full {
        let loose: Vec<&str> = obj
            .keys()
            .map(String::as_str)
            .filter(|k| {
                !matches!(
                    *k,
                    "inputs"
                        | "states"
                        | "virtual_sensors"
                        | "counters"
                        | "timestamp"
                        | "tracker_id"
                )
            })
            .collect();
        if !loose.is_empty() {
            return Err(format!(
                "readings: `{}` beside a full readings item (inputs, states, virtual_sensors, counters) would be dropped; put it in `inputs` or in an event of its own",
                loose.join("`, `")
            ));
        }
        let mut item: ReadingsItem =
            serde_json::from_value(v.clone()).map_err(|e| format!("readings: {e}"))?;
        item.tracker_id = Some(tracker_id);
        if item.timestamp.is_none() {
            item.timestamp = stamp.as_str().and_then(NavixyTime::parse);
        }
        return Ok(item);
    }
    let time = stamp.as_str().and_then(NavixyTime::parse);
    let mut item = ReadingsItem {
        tracker_id: Some(tracker_id),
        timestamp: time,
        ..ReadingsItem::default()
    };
    for (name, value) in obj {
        match value {
            Value::Number(n) => item.inputs.push(SensorInput {
                name: Some(name.as_str().into()),
                value: n.as_f64(),
                update_time: time,
                ..SensorInput::default()
            }),
            other => item.states.push(StateValue {
                field: Some(name.as_str().into()),
                value: other.clone(),
                update_time: time,
            }),
        }
    }
    Ok(item)
}

/// A frame's updates with their event times, mapped as the engine maps them (state and
/// lifecycle items by source id, readings and iot by tracker id); a source id the test
/// does not map stands for itself.
fn frame_updates(
    text: &str,
    ids: &IdMap,
    tz: chrono_tz::Tz,
    out: &mut Vec<(Update, Option<DateTime<Utc>>)>,
) -> Result<(), String> {
    let frame = decode_frame(text).map_err(|e| format!("frame: {e}"))?;
    router::frame_updates(frame, ids, tz, out, &mut FrameCounts::default());
    Ok(())
}

/// The faults of a test run, one line per (rule, field, message): a rule that faults
/// fails its test, since live it would be skipped on every evaluation.
#[derive(Default)]
struct FaultReport {
    seen: HashSet<(Arc<str>, String, String)>,
    /// The rule and the line.
    lines: Vec<(Arc<str>, String)>,
}

impl FaultReport {
    fn add(&mut self, suite: &Suite, faults: Vec<Fault>, step: &str) {
        for f in faults {
            if !self
                .seen
                .insert((Arc::clone(&f.rule), f.field.clone(), f.message.clone()))
            {
                continue;
            }
            let line = format!(
                "rule `{}` faulted at {} on {step}, tracker {}: {}: {}",
                f.rule,
                suite.show(f.at),
                f.tracker_id,
                f.field,
                f.message
            );
            self.lines.push((f.rule, line));
        }
    }
}

/// The readings and history series that rules the test expects transitions of read,
/// but that no input step gave any tracker: a misspelt name reads `()` forever.
fn unprovided_reads(set: &RuleSet, case: &TestCase, cache: &ShardCache) -> Vec<String> {
    let expected: HashSet<&str> = case.expect.iter().map(|e| e.rule.value.as_str()).collect();
    let mut readings: Vec<&str> = Vec::new();
    let mut series: Vec<&str> = Vec::new();
    for t in cache.iter() {
        let r = &t.readings;
        readings.extend(r.inputs.keys().map(Text::as_str));
        readings.extend(r.states.keys().map(Text::as_str));
        readings.extend(r.virtual_sensors.keys().map(Text::as_str));
        readings.extend(r.counters.keys().map(Text::as_str));
        series.extend(t.history.names());
    }
    readings.sort_unstable();
    readings.dedup();
    series.sort_unstable();
    series.dedup();
    let mut out = Vec::new();
    for rule in set.rules().iter().filter(|r| expected.contains(&*r.name)) {
        for read in &rule.data_reads {
            let (name, given) = match read {
                DataRead::Reading(name) => (name, &readings),
                DataRead::Series { name, .. } => (name, &series),
            };
            if given.contains(&name.as_str()) {
                continue;
            }
            out.push(format!(
                "rule `{}` read {read}, which no input step provided{} (given: {})",
                rule.name,
                crate::rules::suggest::hint(name, given.iter().copied()),
                if given.is_empty() {
                    "none".to_string()
                } else {
                    given.join(", ")
                }
            ));
        }
    }
    out
}

/// ` (did you mean ...?; loaded rules: a, b)`, for a rule name that is not loaded.
fn loaded_rules(set: &RuleSet, name: &str) -> String {
    let names: Vec<&str> = set.rules().iter().map(|r| &*r.name).collect();
    format!(
        "{}; loaded rules: {}",
        crate::rules::suggest::hint(name, names.iter().copied()),
        names.join(", ")
    )
}

/// An expected transition with its time and tracker resolved.
struct Want<'a> {
    at: DateTime<Utc>,
    tracker: TrackerId,
    e: &'a Expected,
}

/// The outcome of one test: what was expected and not emitted, emitted and not expected,
/// and matched with a wrong value or annotation.
struct Report {
    missing: Vec<String>,
    unexpected: Vec<String>,
    mismatched: Vec<String>,
    /// Rule faults and reads no input provided: each fails the test.
    faults: Vec<String>,
}

impl Report {
    fn passed(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.mismatched.is_empty()
            && self.faults.is_empty()
    }

    fn compare(suite: &Suite, expected: Vec<Want<'_>>, got: Vec<AlertTransition>) -> Report {
        let mut used = vec![false; got.len()];
        let mut report = Report {
            missing: Vec::new(),
            unexpected: Vec::new(),
            mismatched: Vec::new(),
            faults: Vec::new(),
        };
        let line = |at: DateTime<Utc>,
                    status: ExpectedStatus,
                    rule: &str,
                    tracker: TrackerId,
                    key: Option<String>| {
            let key = key.map(|k| format!("[{k}]")).unwrap_or_default();
            format!(
                "{}  {:8}  {rule}{key}  tracker {tracker}",
                suite.show_aligned(at, 7),
                status.as_str()
            )
        };
        for want in &expected {
            let want_key = want.e.key.as_ref().map(value_text);
            let found = got.iter().enumerate().position(|(i, t)| {
                !used[i]
                    && t.at == want.at
                    && *t.rule == *want.e.rule.value
                    && ExpectedStatus::of(t) == want.e.status
                    && t.tracker.as_ref().map(|x| x.id) == Some(want.tracker)
                    && want_key.as_ref().is_none_or(|k| t.key.as_ref() == Some(k))
            });
            let head = line(
                want.at,
                want.e.status,
                &want.e.rule.value,
                want.tracker,
                want_key.clone(),
            );
            let Some(i) = found else {
                report.missing.push(format!("{head}{}", details(want.e)));
                continue;
            };
            used[i] = true;
            let t = &got[i];
            if let Some(v) = &want.e.value
                && !values_match(v, t.value.as_ref())
            {
                report.mismatched.push(format!(
                    "{head}: value: expected {}, got {}",
                    value_text(v),
                    t.value.as_ref().map_or_else(|| "none".into(), value_text)
                ));
            }
            if let Some(anns) = &want.e.annotations {
                for (k, v) in anns {
                    let actual = t.annotations.get(k);
                    if actual != Some(v) {
                        report.mismatched.push(format!(
                            "{head}: annotations.{k}: expected {v:?}, got {}",
                            actual.map_or_else(|| "none".into(), |a| format!("{a:?}"))
                        ));
                    }
                }
            }
        }
        for (i, t) in got.iter().enumerate() {
            if used[i] {
                continue;
            }
            let value = t
                .value
                .as_ref()
                .map(|v| format!("  value={}", value_text(v)))
                .unwrap_or_default();
            report.unexpected.push(format!(
                "{}{value}",
                line(
                    t.at,
                    ExpectedStatus::of(t),
                    &t.rule,
                    t.tracker.as_ref().map_or(0, |x| x.id),
                    t.key.clone()
                )
            ));
        }
        report
    }

    fn print(&self, out: &mut dyn Write) -> io::Result<()> {
        if !self.missing.is_empty() || !self.unexpected.is_empty() {
            writeln!(
                out,
                "        transitions (- expected, not emitted; + emitted, not expected):"
            )?;
            for m in &self.missing {
                writeln!(out, "        - {m}")?;
            }
            for u in &self.unexpected {
                writeln!(out, "        + {u}")?;
            }
        }
        if !self.mismatched.is_empty() {
            writeln!(out, "        emitted with different details:")?;
            for m in &self.mismatched {
                writeln!(out, "        ~ {m}")?;
            }
        }
        for f in &self.faults {
            writeln!(out, "        ! {f}")?;
        }
        Ok(())
    }
}

fn details(e: &Expected) -> String {
    let mut s = String::new();
    if let Some(v) = &e.value {
        s.push_str(&format!("  value={}", value_text(v)));
    }
    if let Some(a) = &e.annotations {
        let parts: BTreeMap<_, _> = a.iter().collect();
        for (k, v) in parts {
            s.push_str(&format!("  {k}={v:?}"));
        }
    }
    s
}

/// Numbers match within 1e-6 (relative for large ones); strings match their text.
fn values_match(want: &Value, got: Option<&Value>) -> bool {
    let Some(got) = got else {
        return want.is_null();
    };
    match (want.as_f64(), got.as_f64()) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0),
        _ => value_text(want) == value_text(got),
    }
}
