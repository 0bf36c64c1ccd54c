//! A loaded rule set: compiled rules, the one engine they share, their annotation
//! templates, the zones they may name. Immutable once built and shared by every shard
//! behind an `Arc`; a reload builds a new one.

use crate::config::human_duration;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rhai::{AST, Engine};

use super::around::Around;
use super::error::Place;
use super::faults::FaultLog;
use super::file::RuleMode;
use super::schedule::Schedule;
use super::script::fast::FastExpr;
use super::script::fields::FieldMask;
use super::zones::Zones;
use crate::alert::Severity;
use crate::navixy::context::SharedContext;
use crate::navixy::messages::TrackerInfo;
use crate::state::history::HistoryPolicy;

/// What a rule's expressions read, so evaluation can skip a rule whose inputs did not
/// change since it last ran for a tracker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Deps(u8);

impl Deps {
    /// `state`, `prev`, `changed`, `in_zone`.
    pub const STATE: Deps = Deps(1);
    /// `tracker`.
    pub const TRACKER: Deps = Deps(2);
    /// `readings`, `iot`.
    pub const DATA: Deps = Deps(4);
    /// `now`, `since`, the history windows, a schedule: may change with time alone.
    pub const TIME: Deps = Deps(8);
    pub const ALL: Deps = Deps(15);
    pub const NONE: Deps = Deps(0);

    /// `self | other`, in constants.
    pub const fn union(self, other: Deps) -> Deps {
        Deps(self.0 | other.0)
    }

    pub fn contains(self, other: Deps) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn intersects(self, other: Deps) -> bool {
        self.0 & other.0 != 0
    }
    pub fn without(self, other: Deps) -> Deps {
        Deps(self.0 & !other.0)
    }
}

impl std::ops::BitOr for Deps {
    type Output = Deps;
    fn bitor(self, rhs: Deps) -> Deps {
        Deps(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Deps {
    fn bitor_assign(&mut self, rhs: Deps) {
        self.0 |= rhs.0;
    }
}

/// Which trackers a rule watches.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) enum TrackerFilter {
    #[default]
    All,
    Selected {
        ids: HashSet<i64>,
        labels: HashSet<String>,
        /// Label patterns (`Reefer*`).
        patterns: Vec<String>,
    },
}

impl TrackerFilter {
    pub fn matches(&self, info: &TrackerInfo) -> bool {
        match self {
            TrackerFilter::All => true,
            TrackerFilter::Selected {
                ids,
                labels,
                patterns,
            } => {
                ids.contains(&info.id)
                    || info.label.as_ref().is_some_and(|l| {
                        labels.contains(l) || patterns.iter().any(|p| super::load::glob_match(p, l))
                    })
            }
        }
    }
}

/// One compiled expression: the Rhai AST, and the same expression for the direct
/// evaluator when it is in its subset (most conditions are).
#[derive(Debug, Clone)]
pub(crate) struct Expression {
    pub ast: AST,
    pub fast: Option<FastExpr>,
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: Arc<str>,
    pub description: Option<String>,
    /// Where the rule is defined.
    pub place: Place,
    pub severity: Severity,
    /// State (fires and resolves) or event (occurs, once per start of holding).
    pub mode: RuleMode,
    pub for_: Duration,
    pub keep_firing_for: Duration,
    pub(crate) when: Expression,
    pub(crate) clear_when: Option<Expression>,
    pub(crate) value: Option<Expression>,
    pub(crate) key: Option<Expression>,
    /// The effective params (file values with overrides applied).
    pub params: serde_json::Map<String, serde_json::Value>,
    pub(crate) trackers: TrackerFilter,
    pub(crate) schedule: Option<Schedule>,
    pub labels: BTreeMap<String, String>,
    /// Annotation names, each a template `"{rule}/{name}"` in the set's environment.
    pub(crate) annotations: Vec<String>,
    pub channels: Option<Vec<String>>,
    pub(crate) deps: Deps,
    /// The source-state fields the expressions read (with [`Deps::STATE`]).
    pub(crate) state_fields: FieldMask,
    /// The source-state fields the expressions name, through `state` or `prev`.
    pub(crate) state_names: FieldMask,
    /// The readings and history series the expressions read by a literal name.
    pub(crate) data_reads: Vec<DataRead>,
}

/// A reading or history series a rule reads by name: `test` tells a test whose input
/// never provides it (a misspelt sensor name reads `()` forever).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum DataRead {
    /// `readings.NAME`.
    Reading(String),
    /// `helper("NAME", ...)`: the history of a series.
    Series { helper: &'static str, name: String },
}

impl fmt::Display for DataRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataRead::Reading(name) => write!(f, "readings.{name}"),
            DataRead::Series { helper, name } => write!(f, "{helper}(\"{name}\", ...)"),
        }
    }
}

impl Rule {
    pub fn has_schedule(&self) -> bool {
        self.schedule.is_some()
    }
    pub fn applies_to_all(&self) -> bool {
        self.trackers == TrackerFilter::All
    }
}

/// A whole rule set, ready to evaluate.
pub struct RuleSet {
    pub(crate) rules: Vec<Rule>,
    pub(crate) engine: Engine,
    pub(crate) templates: minijinja::Environment<'static>,
    pub(crate) zones: Zones,
    /// Navixy's context and the fleet's positions (see [`Around`]).
    pub(crate) around: Around,
    pub(crate) time_zone: chrono_tz::Tz,
    pub(crate) files: Vec<PathBuf>,
    pub(crate) history: HistoryPolicy,
    pub(crate) faults: FaultLog,
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleSet")
            .field(
                "rules",
                &self.rules.iter().map(|r| &*r.name).collect::<Vec<_>>(),
            )
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl RuleSet {
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The faults of the `index`-th rule (as [`RuleSet::rules`] lists them) since this
    /// set was loaded.
    pub fn faults_of(&self, index: usize) -> super::faults::RuleFaults {
        self.faults.of(index)
    }

    pub fn get(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| &*r.name == name)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule files loaded, in load order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    pub fn zones(&self) -> &Zones {
        &self.zones
    }

    /// Reads Navixy's context from `shared` (the source's, which its refresher swaps),
    /// whose zones the config's own zones shadow.
    pub fn with_navixy_context(mut self, shared: Arc<SharedContext>) -> RuleSet {
        shared.set_local_labels(self.zones.iter_names());
        self.around.navixy = shared;
        self
    }

    /// The Navixy context this set reads: a reload passes it on to its successor.
    pub fn navixy_context(&self) -> Arc<SharedContext> {
        self.around.navixy.clone()
    }

    /// Reads each source's own Navixy context: `sources` are the names and contexts by
    /// source index (the config's order). Trackers of source `i` see `sources[i]`'s
    /// zones, groups, tags and drivers, and their alerts carry its name as label `source`.
    pub fn with_sources(mut self, sources: Vec<(String, Arc<SharedContext>)>) -> RuleSet {
        let sources: Vec<(Arc<str>, Arc<SharedContext>)> = sources
            .into_iter()
            .map(|(name, shared)| {
                shared.set_local_labels(self.zones.iter_names());
                (Arc::from(name), shared)
            })
            .collect();
        if let Some((_, first)) = sources.first() {
            self.around.navixy = first.clone();
        }
        self.around.sources = Arc::from(sources);
        self
    }

    /// The sources this set reads ([`RuleSet::with_sources`]): a reload passes them on.
    pub fn sources(&self) -> Vec<(String, Arc<SharedContext>)> {
        self.around
            .sources
            .iter()
            .map(|(name, shared)| (name.to_string(), shared.clone()))
            .collect()
    }

    /// The zone offset-less Navixy times are read in.
    pub fn time_zone(&self) -> chrono_tz::Tz {
        self.time_zone
    }

    /// How much history the state cache must keep for these rules: the longest window
    /// any window helper uses, of only the series they name (all series when a name is
    /// not a literal). Disabled when no rule uses a window.
    pub fn history_policy(&self) -> HistoryPolicy {
        self.history.clone()
    }

    /// The source-state fields worth decoding for these rules: those their expressions
    /// name, every field when a template reads `state`, and what the cache and alert
    /// payloads always use (position, speed, ignition, statuses, battery, times, and the
    /// history series kept). Decoding only those is the decoder's fast path; the rest of
    /// a state would be parsed, merged and freed for nothing.
    pub fn decode_fields(&self) -> crate::navixy::decode::StateFields {
        use crate::navixy::decode::StateFields;
        let mut names = FieldMask::NONE;
        for rule in &self.rules {
            if super::render::TemplateReads::of(self, rule).state {
                return StateFields::ALL;
            }
            names |= rule.state_names;
        }
        let Some(mut names) = names.top_level_names() else {
            return StateFields::ALL;
        };
        names.extend([
            "gps",
            "connection_status",
            "movement_status",
            "ignition",
            "battery_level",
            "last_update",
        ]);
        if self.history.keeps("battery_level") {
            names.push("battery_update");
        }
        if self.history.keeps("gsm_signal") {
            names.push("gsm");
        }
        StateFields::only(names).unwrap_or(StateFields::ALL)
    }

    /// What `check` prints: files, rules and their main settings.
    pub fn summary(&self) -> RuleSummary<'_> {
        RuleSummary(self)
    }
}

/// The human summary of a rule set, one line per rule.
pub struct RuleSummary<'a>(&'a RuleSet);

impl fmt::Display for RuleSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self.0;
        let mut by_severity: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &set.rules {
            *by_severity.entry(r.severity.as_str()).or_default() += 1;
        }
        let counts: Vec<String> = by_severity
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        writeln!(
            f,
            "{} rule{} in {} file{}{}",
            set.rules.len(),
            if set.rules.len() == 1 { "" } else { "s" },
            set.files.len(),
            if set.files.len() == 1 { "" } else { "s" },
            if counts.is_empty() {
                String::new()
            } else {
                format!(" ({})", counts.join(", "))
            }
        )?;
        let width = set.rules.iter().map(|r| r.name.len()).max().unwrap_or(0);
        let mut files_seen = BTreeSet::new();
        for r in &set.rules {
            if files_seen.insert(r.place.path.clone()) {
                writeln!(f, "  {}", r.place.path.display())?;
            }
            let mut extras = Vec::new();
            if r.mode == RuleMode::Event {
                extras.push("event".into());
            }
            if !r.for_.is_zero() {
                extras.push(format!("for {}", human_duration(r.for_)));
            }
            if !r.keep_firing_for.is_zero() {
                extras.push(format!("keep {}", human_duration(r.keep_firing_for)));
            }
            if r.clear_when.is_some() {
                extras.push("clear_when".into());
            }
            if r.key.is_some() {
                extras.push("keyed".into());
            }
            if r.schedule.is_some() {
                extras.push("scheduled".into());
            }
            if r.trackers != TrackerFilter::All {
                extras.push("selected trackers".into());
            }
            if let Some(ch) = &r.channels {
                extras.push(format!("channels {}", ch.join(",")));
            }
            writeln!(
                f,
                "    {:width$}  {:8}  {}",
                r.name,
                r.severity.as_str(),
                extras.join(", "),
                width = width
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_back() {
        assert_eq!(human_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(human_duration(Duration::from_secs(3600 * 26)), "1d2h");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(human_duration(Duration::ZERO), "0s");
    }
}
