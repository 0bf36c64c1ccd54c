//! The rule file format (`rules: [...]`), as serde types. Field doc comments are the user
//! documentation; `docs/rules.md` explains them at length.
//!
//! Fields whose errors are found after parsing (durations, expressions) keep their
//! position in the file (`Spanned`), so every error can name file:line:column.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

use super::schedule::ScheduleSpec;
use crate::alert::Severity;

/// A rule file: a list of rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// One rule as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique across all rule files; part of each alert's identity.
    pub name: Spanned<String>,
    pub description: Option<String>,
    /// `state` (default): an alert that fires while `when` holds and resolves when it
    /// stops. `event`: each time `when` starts to hold is one occurrence, notified once,
    /// never resolved (`keep_firing_for` and `clear_when` do not apply).
    #[serde(default)]
    pub mode: RuleMode,
    /// Rhai: the condition, evaluated per tracker; `true` holds, `false` or `()` does not.
    pub when: Spanned<String>,
    /// How long `when` must hold before the alert fires (default 0).
    #[serde(rename = "for")]
    pub for_: Option<Spanned<String>>,
    /// How long a firing alert stays firing after `when` stops holding.
    pub keep_firing_for: Option<Spanned<String>>,
    /// Rhai: with it, a firing alert resolves only once this holds (hysteresis).
    pub clear_when: Option<Spanned<String>>,
    /// `info`, `warning` (default) or `critical`.
    pub severity: Option<Severity>,
    /// Constants the expressions read as `params.name`; `test` files may override them.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// `all` (default) or a list of tracker ids and labels.
    #[serde(default)]
    pub trackers: TrackerFilterSpec,
    /// Weekly windows, or the name of a config time interval, outside of which the rule
    /// is not evaluated.
    pub schedule: Option<ScheduleSpec>,
    /// Added to every alert of the rule (routing matches on them).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// minijinja templates rendered at each transition (`summary`, `description`, ...).
    #[serde(default)]
    pub annotations: BTreeMap<String, Spanned<String>>,
    /// Rhai: the alert's `value` (a number, string or bool).
    pub value: Option<Spanned<String>>,
    /// Rhai: splits a rule's alerts per tracker further (one alert per key value).
    pub key: Option<Spanned<String>>,
    /// Channels that receive this rule's alerts directly, bypassing the routes.
    pub channels: Option<Vec<String>>,
}

/// What a rule's alerts are: states that fire and resolve, or events that occur.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleMode {
    /// Level-triggered: inactive -> pending (`for`) -> firing -> resolved.
    #[default]
    State,
    /// Edge-triggered: each time `when` starts to hold (after `for`) is one occurrence,
    /// notified once and never resolved.
    Event,
}

impl RuleMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleMode::State => "state",
            RuleMode::Event => "event",
        }
    }
}

/// Which trackers a rule watches.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum TrackerFilterSpec {
    #[default]
    All,
    /// Tracker ids and labels.
    Selected(Vec<TrackerPick>),
}

/// One entry of a `trackers` list: an id, an exact label, or `{label: "Reefer*"}`, a
/// label pattern with `*` (any run) and `?` (one character).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum TrackerPick {
    Id(i64),
    Label(String),
    Pattern { label: String },
}

impl<'de> Deserialize<'de> for TrackerFilterSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            List(Vec<TrackerPick>),
        }
        match Raw::deserialize(d)? {
            Raw::Word(w) if w == "all" => Ok(TrackerFilterSpec::All),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "trackers must be `all` or a list of tracker ids and labels, not `{w}`"
            ))),
            Raw::List(list) => Ok(TrackerFilterSpec::Selected(list)),
        }
    }
}
