//! The rule test file format (like `promtool test rules`): rule files, a timed input
//! series per tracker, and the transitions expected at given times. `docs/rules.md`
//! documents it with examples.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::alert::{AlertStatus, AlertTransition};
use crate::config::ZoneConfig;

/// One test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// Rule files, relative to the test file.
    pub rule_files: Vec<String>,
    /// The ticker's interval (default 10s).
    pub evaluation_interval: Option<Spanned<String>>,
    /// The time `0s` stands for (default 2026-01-05T08:00:00Z, a Monday).
    pub start: Option<Spanned<String>>,
    /// Zone of offset-less times (in the input and in schedules), default UTC.
    pub timezone: Option<Spanned<String>>,
    /// Events older than this when they arrive update state but do not notify (default 15m).
    pub max_event_age: Option<Spanned<String>>,
    /// Zones for `in_zone`.
    #[serde(default)]
    pub zones: BTreeMap<String, ZoneConfig>,
    /// Param overrides by rule name, for every test of the file.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    pub tests: Vec<TestCase>,
}

/// One test: input series and the transitions they must produce.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    /// Param overrides for this test (over the file's).
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    /// Compare only these rules' transitions (default: every rule's).
    pub rules: Option<Vec<String>>,
    /// Run the ticker until this time (default: one interval after the last event or
    /// expectation).
    pub until: Option<TimeSpec>,
    #[serde(default)]
    pub input: Vec<InputSeries>,
    /// Every transition expected, in any order. Transitions not listed fail the test.
    #[serde(default)]
    pub expect: Vec<Expected>,
}

/// A time: an offset from `start` (`0s`, `90s`, `5m`, `1h30m`, or a number of seconds),
/// or an absolute time (`2026-01-05T08:05:00Z`, `2026-01-05 08:05:00` in `timezone`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum TimeSpec {
    Seconds(f64),
    Text(String),
}

/// One tracker's events, or a recorded JSONL file of frames.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSeries {
    /// The tracker id; may be left out when the events are only frames.
    pub tracker: Option<i64>,
    pub label: Option<String>,
    /// The device id state frames carry (`frame` events map it to `tracker`).
    pub source_id: Option<i64>,
    pub group_id: Option<i64>,
    #[serde(default)]
    pub events: Vec<InputEvent>,
    /// A recording (`run --record`), relative to the test file: one frame a line, or
    /// `{"at": "...", "frame": {...}}`.
    pub recording: Option<String>,
}

/// One event: exactly one of `state`, `readings`, `lifecycle`, `iot`, `frame`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputEvent {
    /// When it arrives: the engine clock at this event.
    pub at: Spanned<TimeSpec>,
    /// The device's own time for it, when older than `at` (a buffered upload).
    pub event_time: Option<TimeSpec>,
    /// A source state snippet, e.g. `{ignition: true, gps: {speed: 95}}`; merged onto the
    /// tracker's state like a compact state.
    pub state: Option<serde_json::Value>,
    /// Sensor values by name (`{lls_level_1: 180.5}`) or a full readings item
    /// (`{inputs: [...], states: [...], counters: [...]}`).
    pub readings: Option<serde_json::Value>,
    /// `block`, `unblock` or `remove`.
    pub lifecycle: Option<String>,
    /// iot_monitor values by attribute (`{satellites: 9}`).
    pub iot: Option<serde_json::Map<String, serde_json::Value>>,
    /// A whole Navixy frame, as the WebSocket sends it.
    pub frame: Option<serde_json::Value>,
}

/// One expected transition.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    pub at: Spanned<TimeSpec>,
    pub rule: Spanned<String>,
    /// May be left out when the test has a single tracker.
    pub tracker: Option<i64>,
    /// `firing` or `resolved` for a state rule's alert, `event` for an occurrence of an
    /// event rule.
    pub status: ExpectedStatus,
    /// Checked when given.
    pub key: Option<serde_json::Value>,
    /// Checked when given (numbers within 1e-6).
    pub value: Option<serde_json::Value>,
    /// Checked when given: each listed annotation must render exactly so.
    pub annotations: Option<BTreeMap<String, String>>,
}

/// What an expected transition is: a state alert firing or resolving, or an occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedStatus {
    Firing,
    Resolved,
    Event,
}

impl ExpectedStatus {
    /// What `t` is, in these terms.
    pub fn of(t: &AlertTransition) -> ExpectedStatus {
        match t.status {
            _ if t.is_event() => ExpectedStatus::Event,
            AlertStatus::Firing => ExpectedStatus::Firing,
            AlertStatus::Resolved => ExpectedStatus::Resolved,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExpectedStatus::Firing => "firing",
            ExpectedStatus::Resolved => "resolved",
            ExpectedStatus::Event => "event",
        }
    }
}
