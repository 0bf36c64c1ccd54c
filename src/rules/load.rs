//! Loading a rule set: the config's globs to files, files to rules, rules to compiled
//! expressions and templates, with every problem collected and reported at once (each
//! naming file, line, column, rule and field).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rhai::{Engine, ParseError};

use super::error::{Place, RuleError};
use super::faults::FaultLog;
use super::file::{RuleFile, RuleMode, RuleSpec, TrackerFilterSpec, TrackerPick};
use super::schedule::{Schedule, ScheduleSpec};
use super::script::engine::{self as script_engine, DynamicNames};
use super::script::fast::FastExpr;
use super::script::fields::FieldMask;
use super::script::scan::{self, Usage};
use super::script::{context, schema, spec};
use super::set::{DataRead, Deps, Expression, Rule, RuleSet, TrackerFilter};
use super::suggest;
use super::zones::Zones;
use crate::alert::Severity;
use crate::config::{Config, parse_duration};
use crate::state::history::HistoryPolicy;
use crate::time_intervals::NamedTimeInterval;

/// Fuel for one annotation render: plenty for a summary line, bounded for a runaway loop.
pub const TEMPLATE_FUEL: u64 = 20_000;

/// Variables whose property paths are checked and whose names are registered.
const ROOTS: [&str; 6] = ["state", "prev", "tracker", "readings", "iot", "params"];

/// Labels the engine sets itself on every alert.
const RESERVED_LABELS: [&str; 4] = ["alertname", "rule", "tracker_id", "severity"];

/// History kept for windows whose length is not a constant.
const DEFAULT_HISTORY: Duration = Duration::from_secs(3600);

/// What a rule set needs besides its files.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Zones `in_zone` may name.
    pub zones: Zones,
    /// Navixy's zones are imported (`zones: { navixy: ... }`): `in_zone` may name a label
    /// the config does not have, since Navixy's zones are only known at run time.
    pub import_zones: bool,
    /// Channel names rules may send to; `None` skips the check (rule tests).
    pub channels: Option<BTreeSet<String>>,
    /// The zone of Navixy's offset-less times, and the default zone of schedules.
    pub time_zone: chrono_tz::Tz,
    /// Param overrides by rule name (rule tests): each key must be a param of the rule.
    pub params: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    /// The config's `time_intervals`, which `schedule: NAME` may name.
    pub time_intervals: BTreeMap<String, NamedTimeInterval>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            zones: Zones::default(),
            import_zones: false,
            channels: None,
            time_zone: chrono_tz::UTC,
            params: BTreeMap::new(),
            time_intervals: BTreeMap::new(),
        }
    }
}

impl LoadOptions {
    /// Zones (reading the config's zone file), channels and the Navixy time zone of a
    /// config.
    pub fn from_config(config: &Config) -> Result<LoadOptions, crate::geofence::GeoJsonError> {
        Ok(LoadOptions {
            zones: Zones::from_config(&config.zones, &config.base_dir)?,
            import_zones: config.zones.navixy.is_some(),
            channels: Some(config.channels.keys().cloned().collect()),
            time_zone: config
                .sources()
                .iter()
                .find_map(|s| s.navixy.as_ref())
                .map_or(chrono_tz::UTC, |n| n.timezone),
            params: BTreeMap::new(),
            time_intervals: config
                .time_intervals
                .iter()
                .map(|t| (t.name.clone(), t.clone()))
                .collect(),
        })
    }
}

impl RuleSet {
    /// Loads the rule files the config names (globs resolved against the config's folder)
    /// with the config's zones, channels and time zone.
    pub fn load(config: &Config) -> Result<RuleSet, Vec<RuleError>> {
        let files = resolve_rule_files(config)?;
        let options = LoadOptions::from_config(config).map_err(|e| vec![e.into()])?;
        RuleSet::from_files(&files, &options)
    }

    /// Loads the given rule files.
    pub fn from_files(files: &[PathBuf], options: &LoadOptions) -> Result<RuleSet, Vec<RuleError>> {
        let mut errors = Vec::new();
        let mut sources = Vec::with_capacity(files.len());
        for path in files {
            match std::fs::read_to_string(path) {
                Ok(text) => sources.push((path.clone(), text)),
                Err(source) => errors.push(RuleError::Read {
                    path: path.clone(),
                    source,
                }),
            }
        }
        match RuleSet::from_sources(&sources, options) {
            Ok(set) if errors.is_empty() => Ok(set),
            Ok(_) => Err(errors),
            Err(more) => {
                errors.extend(more);
                Err(errors)
            }
        }
    }

    /// Loads rule files given as (path for messages, YAML text).
    pub fn from_sources(
        sources: &[(PathBuf, String)],
        options: &LoadOptions,
    ) -> Result<RuleSet, Vec<RuleError>> {
        let mut errors = Vec::new();
        let mut specs: Vec<(PathBuf, RuleSpec)> = Vec::new();
        for (path, text) in sources {
            let (file, problems) = parse_file(path, text);
            if let Some(file) = file {
                specs.extend(file.rules.into_iter().map(|r| (path.clone(), r)));
            }
            errors.extend(
                problems
                    .into_iter()
                    .map(|(place, message)| RuleError::Yaml { place, message }),
            );
        }

        // Names first: duplicates are reported against the first definition.
        let mut seen: HashMap<String, Place> = HashMap::new();
        let mut unique = Vec::with_capacity(specs.len());
        for (path, spec) in specs {
            let place = place(&path, &spec.name);
            if let Some(first) = seen.get(&spec.name.value) {
                errors.push(RuleError::Duplicate {
                    place,
                    rule: spec.name.value.clone(),
                    first: first.clone(),
                });
                continue;
            }
            seen.insert(spec.name.value.clone(), place);
            unique.push((path, spec));
        }
        for rule in options.params.keys() {
            if !seen.contains_key(rule) {
                errors.push(RuleError::Invalid {
                    place: Place {
                        path: PathBuf::from("<params>"),
                        line: 0,
                        column: 0,
                    },
                    rule: rule.clone(),
                    field: "params".into(),
                    message: format!(
                        "params are overridden for a rule that is not loaded{}",
                        suggest::hint(rule, seen.keys().map(String::as_str))
                    ),
                });
            }
        }

        // The engine registers a getter per sensor, iot and additional name the rules read.
        let mut names = DynamicNames::default();
        for (_, spec) in &unique {
            for expr in expressions(spec) {
                collect_names(&scan::analyse(&expr.1.value, &ROOTS), &mut names);
            }
        }
        let engine = script_engine::build(&names);
        let functions = script_engine::function_names(&engine);

        let mut templates = minijinja::Environment::new();
        templates.set_fuel(Some(TEMPLATE_FUEL));
        templates.set_recursion_limit(32);
        templates.add_filter("round", super::render::round_filter);

        let mut rules = Vec::with_capacity(unique.len());
        let mut windows = Windows::default();
        for (path, spec) in unique {
            let compiler = Compiler {
                engine: &engine,
                functions: &functions,
                options,
            };
            match compiler.compile_rule(&mut templates, &path, spec, &mut windows) {
                Ok(rule) => rules.push(rule),
                Err(mut errs) => errors.append(&mut errs),
            }
        }
        if !errors.is_empty() {
            // In file order, so a long list reads top to bottom.
            errors.sort_by(|a, b| {
                let key = |e: &RuleError| e.place().map(|p| (p.path.clone(), p.line, p.column));
                key(a).cmp(&key(b))
            });
            return Err(errors);
        }
        let files: Vec<PathBuf> = {
            let mut seen = HashSet::new();
            sources
                .iter()
                .filter(|(p, _)| seen.insert(p.clone()))
                .map(|(p, _)| p.clone())
                .collect()
        };
        Ok(RuleSet {
            faults: FaultLog::new(rules.len()),
            rules,
            engine,
            templates,
            zones: options.zones.clone(),
            around: crate::rules::around::Around {
                import_zones: options.import_zones,
                publish_positions: windows.positions,
                ..Default::default()
            },
            time_zone: options.time_zone,
            files,
            history: windows.policy(),
        })
    }
}

/// The files the config's `rules` name. A pattern may use `*` and `?` in its file name
/// (`rules/*.yaml`); matches are sorted, and a pattern matching nothing is an error.
pub fn resolve_rule_files(config: &Config) -> Result<Vec<PathBuf>, Vec<RuleError>> {
    expand_patterns(&config.base_dir, &config.rules, &config.path)
}

/// Expands file patterns relative to `base`; `origin` (the file that lists them) is named
/// when a pattern matches nothing.
pub fn expand_patterns(
    base: &Path,
    patterns: &[String],
    origin: &Path,
) -> Result<Vec<PathBuf>, Vec<RuleError>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for pattern in patterns {
        let path = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            base.join(pattern)
        };
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.contains(['*', '?']) {
            if seen.insert(path.clone()) {
                files.push(path);
            }
            continue;
        }
        // `-c cfg.yml` has an empty folder: the current one, named as given.
        let dir = path.parent().unwrap_or(Path::new(""));
        let read_from = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let mut matched: Vec<PathBuf> = match std::fs::read_dir(read_from) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter(|e| e.path().is_file())
                .filter(|e| e.file_name().to_str().is_some_and(|n| glob_match(name, n)))
                .map(|e| dir.join(e.file_name()))
                .collect(),
            Err(_) => Vec::new(),
        };
        if matched.is_empty() {
            errors.push(RuleError::NoMatch {
                config: origin.to_path_buf(),
                pattern: pattern.clone(),
            });
            continue;
        }
        matched.sort();
        for p in matched {
            if seen.insert(p.clone()) {
                files.push(p);
            }
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

/// Matches a file name against a pattern with `*` (any run) and `?` (one character).
///
/// Rules' label patterns (`trackers: [{ label: "Truck*" }]`) run it for every update of
/// every tracker, so it walks both strings in place, a character at a time, and
/// allocates nothing.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let at = |s: &str, i: usize| s[i..].chars().next();
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was and which name position it currently covers up to.
    let mut star: Option<(usize, usize)> = None;
    while let Some(c) = at(name, ni) {
        match at(pattern, pi) {
            Some(p) if p == '?' || p == c => {
                pi += p.len_utf8();
                ni += c.len_utf8();
                continue;
            }
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            _ => {}
        }
        let Some((sp, sn)) = star else {
            return false;
        };
        // The `*` covers one more character of the name; the rest is matched again.
        let covered = sn + at(name, sn).map_or(1, char::len_utf8);
        pi = sp + 1;
        ni = covered;
        star = Some((sp, covered));
    }
    pattern[pi..].chars().all(|c| c == '*')
}

fn place<T>(path: &Path, spanned: &serde_saphyr::Spanned<T>) -> Place {
    Place {
        path: path.to_path_buf(),
        line: spanned.referenced.line(),
        column: spanned.referenced.column(),
    }
}

/// Parses a rule file: the rules, when the file parses once its unknown keys are left
/// out, and the problems (place and message of a `RuleError::Yaml`). An unknown key
/// (`severty`) is reported and its lines blanked, and the file is parsed again, so that
/// one typo does not hide every other error of the file.
fn parse_file(path: &Path, text: &str) -> (Option<RuleFile>, Vec<(Place, String)>) {
    if text.trim().is_empty() {
        return (Some(RuleFile { rules: Vec::new() }), Vec::new());
    }
    let mut text = text.to_string();
    let mut problems = Vec::new();
    let mut blanked: Vec<u64> = Vec::new();
    // Each round removes one unknown key; a file has only so many lines.
    for _ in 0..=text.lines().count() {
        let e = match serde_saphyr::from_str::<RuleFile>(&text) {
            Ok(file) => return (Some(file), problems),
            Err(e) => e,
        };
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let place = Place {
            path: path.to_path_buf(),
            line,
            column,
        };
        let message = yaml_message(&e);
        if message.starts_with("unknown field") && line > 0 && !blanked.contains(&line) {
            // serde's message: unknown field `x`, expected one of `a`, `b`, ...
            let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
            let field = quoted.first().copied().unwrap_or("");
            let known = quoted.iter().skip(1).copied().chain(FILE_KEYS);
            let hint = suggest::hint(field, known);
            problems.push((place, format!("unknown field `{field}`{hint}")));
            blanked.extend(blank_key(&mut text, line, column));
            continue;
        }
        // A syntax error in a line that was blanked is of our making.
        if !blanked.contains(&line) || problems.is_empty() {
            problems.push((place, message));
        }
        break;
    }
    (None, problems)
}

/// The keys of a rule file, its rules and their schedule windows, for "did you mean"
/// (serde's message lists them only sometimes).
const FILE_KEYS: [&str; 21] = [
    "rules",
    "name",
    "description",
    "mode",
    "when",
    "for",
    "keep_firing_for",
    "clear_when",
    "severity",
    "params",
    "trackers",
    "schedule",
    "labels",
    "annotations",
    "value",
    "key",
    "channels",
    "days",
    "from",
    "to",
    "timezone",
];

/// Blanks the key at `line`:`column` (1-based) with its value, and the lines indented
/// under it; returns the blanked line numbers.
fn blank_key(text: &mut String, line: u64, column: u64) -> Vec<u64> {
    let mut out = String::with_capacity(text.len());
    let mut lines = Vec::new();
    let key_indent = column.saturating_sub(1) as usize;
    let mut in_block = false;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        let n = i as u64 + 1;
        let indent = l.chars().count() - l.trim_start().chars().count();
        let blank_from = if n == line {
            in_block = true;
            Some(key_indent)
        } else if in_block && (l.trim().is_empty() || indent > key_indent) {
            Some(0)
        } else {
            in_block = false;
            None
        };
        match blank_from {
            Some(from) => {
                let body = l.trim_end_matches(['\n', '\r']);
                // `from` counts characters; slice at a character boundary.
                let from = body.char_indices().nth(from).map_or(body.len(), |(i, _)| i);
                out.push_str(&body[..from]);
                out.push_str(&" ".repeat(body[from..].chars().count()));
                out.push_str(&l[body.len()..]);
                lines.push(n);
            }
            None => out.push_str(l),
        }
    }
    *text = out;
    lines
}

/// serde-saphyr's message without the location it also prints (the place says it).
pub(crate) fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = e
        .render_with_options(
            serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off },
        )
        .trim()
        .to_string();
    let first = text.lines().next().unwrap_or("").to_string();
    // "<message> at line L, column C" is how the plain renderer ends its first line.
    match first.rfind(" at line ") {
        Some(i) => first[..i].to_string(),
        None => first,
    }
}

/// The expressions of a rule by field name.
fn expressions(spec: &RuleSpec) -> Vec<(&'static str, &serde_saphyr::Spanned<String>)> {
    let mut out = vec![("when", &spec.when)];
    if let Some(e) = &spec.clear_when {
        out.push(("clear_when", e));
    }
    if let Some(e) = &spec.value {
        out.push(("value", e));
    }
    if let Some(e) = &spec.key {
        out.push(("key", e));
    }
    out
}

fn collect_names(usage: &Usage<'_>, names: &mut DynamicNames) {
    for path in &usage.paths {
        let first = path.segments.first().map(|s| s.to_string());
        match (path.root, first) {
            ("readings", Some(name)) => {
                names.readings.insert(name);
            }
            ("iot", Some(name)) => {
                names.iot.insert(name);
            }
            ("state" | "prev", Some(field)) if field == "additional" => {
                if let Some(name) = path.segments.get(1) {
                    names.additional.insert(name.to_string());
                }
            }
            _ => {}
        }
    }
}

/// The longest window and the series the window helpers read.
#[derive(Debug, Default)]
struct Windows {
    longest: Duration,
    /// `None` once a helper names its series with something other than a literal.
    names: Option<BTreeSet<String>>,
    any: bool,
    dynamic_name: bool,
    /// A rule reads other trackers' positions (`nearby`, `distance_to`, or a call by a
    /// computed name): the evaluators publish them.
    positions: bool,
}

impl Windows {
    fn policy(&self) -> HistoryPolicy {
        if !self.any {
            return HistoryPolicy::DISABLED;
        }
        let policy = HistoryPolicy::for_window(self.longest.max(Duration::from_secs(60)));
        match (&self.names, self.dynamic_name) {
            (Some(names), false) => policy.only(names.iter().map(String::as_str)),
            _ => policy,
        }
    }
}

fn duration_field(
    value: &Option<serde_saphyr::Spanned<String>>,
    path: &Path,
    rule: &str,
    field: &str,
    errors: &mut Vec<RuleError>,
) -> Duration {
    let Some(v) = value else {
        return Duration::ZERO;
    };
    let text = v.value.trim();
    if text == "0" {
        return Duration::ZERO;
    }
    parse_duration(text).unwrap_or_else(|message| {
        errors.push(RuleError::Invalid {
            place: place(path, v),
            rule: rule.to_string(),
            field: field.to_string(),
            message,
        });
        Duration::ZERO
    })
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// What compiling a rule reads besides the rule.
struct Compiler<'a> {
    engine: &'a Engine,
    /// Every function and method name the engine knows.
    functions: &'a BTreeSet<String>,
    options: &'a LoadOptions,
}

impl Compiler<'_> {
    /// What is wrong with a call of `name` (`method`: `x.name(...)`) with `arity`
    /// arguments, if anything: an unknown name (with the closest known one), or a
    /// helper given the wrong number of arguments.
    fn call_problem(
        &self,
        name: &str,
        arity: Option<usize>,
        method: bool,
        usage: &Usage<'_>,
    ) -> Option<String> {
        if let (Some(helper), Some(n), false) = (spec::helper(name), arity, method) {
            return (helper.args.len() != n).then(|| {
                format!(
                    "`{name}` takes {} argument{}: {name}({}), not {n}",
                    helper.args.len(),
                    if helper.args.len() == 1 { "" } else { "s" },
                    helper.args.join(", ")
                )
            });
        }
        if self.functions.contains(name)
            || script_engine::KEYWORD_CALLS.contains(&name)
            || usage.defined.contains(name)
        {
            return None;
        }
        let known = self.functions.iter().map(String::as_str).filter(|n| {
            n.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && !n.contains('$')
        });
        let hint = suggest::hint(name, known);
        Some(if method {
            format!("unknown method `.{name}()`{hint}; docs/rules.md lists the string methods")
        } else {
            format!("unknown function `{name}`{hint}; docs/rules.md lists the helpers")
        })
    }

    fn compile_rule(
        &self,
        templates: &mut minijinja::Environment<'static>,
        path: &Path,
        spec: RuleSpec,
        windows: &mut Windows,
    ) -> Result<Rule, Vec<RuleError>> {
        let (engine, options) = (self.engine, self.options);
        let mut errors = Vec::new();
        let name = spec.name.value.clone();
        let rule_place = place(path, &spec.name);
        let invalid = |field: &str, message: String| RuleError::Invalid {
            place: rule_place.clone(),
            rule: name.clone(),
            field: field.to_string(),
            message,
        };

        if !valid_name(&name) {
            errors.push(invalid(
                "name",
                "use letters, digits, `_`, `-` and `.`, starting with a letter or `_`".into(),
            ));
        }
        let for_ = duration_field(&spec.for_, path, &name, "for", &mut errors);
        let keep_firing_for = duration_field(
            &spec.keep_firing_for,
            path,
            &name,
            "keep_firing_for",
            &mut errors,
        );

        // An occurrence has no resolve, so what shapes a resolve has no meaning for it.
        if spec.mode == RuleMode::Event {
            for (field, at) in [
                (
                    "keep_firing_for",
                    spec.keep_firing_for.as_ref().map(|s| place(path, s)),
                ),
                (
                    "clear_when",
                    spec.clear_when.as_ref().map(|s| place(path, s)),
                ),
            ] {
                if let Some(at) = at {
                    errors.push(RuleError::Invalid {
                        place: at,
                        rule: name.clone(),
                        field: field.to_string(),
                        message: format!(
                            "an event rule (`mode: event`) never resolves, so `{field}` does not apply; remove it, or make the rule `mode: state`"
                        ),
                    });
                }
            }
        }

        // Params: the file's, with overrides that must name existing params.
        let mut params: serde_json::Map<String, serde_json::Value> = spec
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(overrides) = options.params.get(&name) {
            for (k, v) in overrides {
                if !params.contains_key(k) {
                    errors.push(invalid(
                        "params",
                        format!(
                            "override of `{k}`, which the rule does not define{} (params: {})",
                            suggest::hint(k, params.keys().map(String::as_str)),
                            key_list(params.keys())
                        ),
                    ));
                }
                params.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in &params {
            if let Some(message) = param_value_problem(k, v) {
                errors.push(invalid("params", message));
            }
        }
        let params_map: rhai::Map = rhai::serde::to_dynamic(&params)
            .ok()
            .and_then(|d| d.try_cast::<rhai::Map>())
            .unwrap_or_default();

        let trackers = match &spec.trackers {
            TrackerFilterSpec::All => TrackerFilter::All,
            TrackerFilterSpec::Selected(list) if list.is_empty() => {
                errors.push(invalid(
                    "trackers",
                    "an empty list watches no tracker; use `all` or list ids and labels".into(),
                ));
                TrackerFilter::All
            }
            TrackerFilterSpec::Selected(list) => {
                let mut ids = HashSet::new();
                let mut labels = HashSet::new();
                let mut patterns = Vec::new();
                for pick in list {
                    match pick {
                        TrackerPick::Id(id) => {
                            ids.insert(*id);
                        }
                        TrackerPick::Label(l) => {
                            labels.insert(l.clone());
                        }
                        TrackerPick::Pattern { label } => patterns.push(label.clone()),
                    }
                }
                TrackerFilter::Selected {
                    ids,
                    labels,
                    patterns,
                }
            }
        };

        let schedule = match &spec.schedule {
            None => None,
            Some(ScheduleSpec::Named(name)) => match options.time_intervals.get(name) {
                Some(interval) => Some(Schedule::named(interval.clone())),
                None => {
                    errors.push(invalid(
                        "schedule",
                        format!(
                            "unknown time interval `{name}` (time_intervals: {})",
                            key_list(options.time_intervals.keys())
                        ),
                    ));
                    None
                }
            },
            Some(ScheduleSpec::Windows(windows)) => {
                match Schedule::compile(windows, options.time_zone) {
                    Ok(s) => Some(s),
                    Err(messages) => {
                        errors.extend(messages.into_iter().map(|m| invalid("schedule", m)));
                        None
                    }
                }
            }
        };

        if let (Some(channels), Some(known)) = (&spec.channels, &options.channels) {
            for ch in channels {
                if !known.contains(ch) {
                    errors.push(invalid(
                        "channels",
                        format!(
                            "unknown channel `{ch}` (channels: {})",
                            key_list(known.iter())
                        ),
                    ));
                }
            }
        }

        for label in spec.labels.keys() {
            if RESERVED_LABELS.contains(&label.as_str()) {
                errors.push(invalid(
                    "labels",
                    format!("`{label}` is set by the engine on every alert"),
                ));
            } else if !label
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                errors.push(invalid(
                    "labels",
                    format!("`{label}` is not a label name (letters, digits and `_`)"),
                ));
            }
        }

        // Expressions: compile, then the static checks Rhai cannot do.
        let mut deps = Deps::default();
        let mut state_fields = FieldMask::NONE;
        let mut state_names = FieldMask::NONE;
        let mut compiled: BTreeMap<&'static str, Expression> = BTreeMap::new();
        let mut data_reads = BTreeSet::new();
        for (field, expr) in expressions(&spec) {
            let text = expr.value.clone();
            let expr_place = place(path, expr);
            let script_error = |offset_or_pos: (usize, usize), message: String| RuleError::Script {
                place: expr_place.clone(),
                rule: name.clone(),
                field: field.to_string(),
                expr_line: offset_or_pos.0,
                expr_column: offset_or_pos.1,
                message,
            };
            if text.trim().is_empty() {
                errors.push(invalid(field, "the expression is empty".into()));
                continue;
            }
            let usage = scan::analyse(&text, &ROOTS);
            let mut expr_ok = true;
            for path in &usage.paths {
                let problem = if path.root == "params" {
                    param_problem(&params, &path.segments).map(|m| (0, m))
                } else {
                    schema::check(path.root, &path.segments).err()
                };
                if let Some((segment, message)) = problem {
                    // The column of the field that is wrong, not of the variable.
                    let at = path
                        .segment_starts
                        .get(segment)
                        .copied()
                        .unwrap_or(path.start);
                    errors.push(script_error(scan::line_col(&text, at), message));
                    expr_ok = false;
                }
            }
            for call in &usage.calls {
                let literal = call_literal(call, &params);
                match (call.name, &literal) {
                    ("in_zone", Some(zone))
                        if !options.import_zones && !options.zones.contains_key(zone) =>
                    {
                        errors.push(script_error(
                            scan::line_col(&text, call.start),
                            format!(
                                "unknown zone `{zone}`{} (zones: {})",
                                suggest::hint(zone, options.zones.iter_names()),
                                options.zones.names()
                            ),
                        ));
                        expr_ok = false;
                    }
                    ("changed", Some(field)) if !context::is_field_path(field) => {
                        errors.push(script_error(
                            scan::line_col(&text, call.start),
                            format!("`{field}` is not a state field changed() can compare"),
                        ));
                        expr_ok = false;
                    }
                    _ => {}
                }
            }
            for call in &usage.calls {
                if let Some(message) =
                    self.call_problem(call.name, Some(call.args.len()), false, &usage)
                {
                    errors.push(script_error(scan::line_col(&text, call.start), message));
                    expr_ok = false;
                }
            }
            for (method, start) in &usage.methods {
                if let Some(message) = self.call_problem(method, None, true, &usage) {
                    errors.push(script_error(scan::line_col(&text, *start), message));
                    expr_ok = false;
                }
            }
            collect_data_reads(&usage, &params, &mut data_reads);
            deps |= deps_of(&usage);
            state_fields |= FieldMask::read_by(&usage);
            state_names |= FieldMask::named_by(&usage);
            record_windows(engine, &usage, &text, &params, &params_map, windows);

            let mut ast = match engine
                .compile_with_scope(&script_engine::compile_scope(params_map.clone()), &text)
            {
                Ok(ast) => ast,
                Err(e) => {
                    errors.push(script_error(parse_position(&e), parse_message(&e)));
                    continue;
                }
            };
            ast.set_source(name.as_str());
            if expr_ok {
                let fast = FastExpr::compile(&text, &params_map);
                compiled.insert(field, Expression { ast, fast });
            }
        }
        if schedule.is_some() {
            deps |= Deps::TIME;
        }

        let mut annotations = Vec::new();
        let mut annotation_sources: Vec<(String, String, Place)> = spec
            .annotations
            .into_iter()
            .map(|(k, v)| {
                let at = place(path, &v);
                (k, v.value, at)
            })
            .collect();
        if let Some(d) = &spec.description
            && !annotation_sources
                .iter()
                .any(|(k, _, _)| k == "description")
        {
            // A description is what a receiver shows under the summary; templates allowed.
            annotation_sources.push(("description".into(), d.clone(), rule_place.clone()));
        }
        for (key, source, at) in annotation_sources {
            let template_name = format!("{name}/{key}");
            let template_error = |message: String| RuleError::Invalid {
                place: at.clone(),
                rule: name.clone(),
                field: format!("annotations.{key}"),
                message,
            };
            match templates.add_template_owned(template_name.clone(), source) {
                Ok(()) => {
                    for problem in template_problems(templates, &template_name, &params) {
                        errors.push(template_error(problem));
                    }
                    annotations.push(key);
                }
                Err(e) => errors.push(template_error(format!(
                    "template error: {}",
                    template_message(&e)
                ))),
            }
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        let Some(when) = compiled.remove("when") else {
            return Err(vec![invalid("when", "did not compile".into())]);
        };
        Ok(Rule {
            name: Arc::from(name.as_str()),
            description: spec.description,
            place: rule_place,
            severity: spec.severity.unwrap_or(Severity::Warning),
            mode: spec.mode,
            for_,
            keep_firing_for,
            when,
            clear_when: compiled.remove("clear_when"),
            value: compiled.remove("value"),
            key: compiled.remove("key"),
            params,
            trackers,
            schedule,
            labels: spec.labels,
            annotations,
            channels: spec.channels,
            deps,
            state_fields,
            state_names,
            data_reads: data_reads.into_iter().collect(),
        })
    }
}

/// What is wrong with reading `params.a.b`: an undefined param (with the closest
/// defined one), or a field of a param (params are flat, see [`param_value_problem`]).
fn param_problem(
    params: &serde_json::Map<String, serde_json::Value>,
    segments: &[&str],
) -> Option<String> {
    let first = segments.first()?;
    if !params.contains_key(*first) {
        return Some(format!(
            "`params.{first}` is not defined{} (params: {})",
            suggest::hint(first, params.keys().map(String::as_str)),
            key_list(params.keys())
        ));
    }
    // A map param is reported where it is defined.
    (segments.len() > 1 && !params.get(*first).is_some_and(|v| v.is_object())).then(|| {
        format!(
            "`params.{}`: a param has no fields; define a flat param such as `{first}_{}` and read `params.{first}_{1}`",
            segments.join("."),
            segments[1],
        )
    })
}

/// What is wrong with a param's value: a map (params are numbers, strings, booleans or
/// lists, so that `params.x` reads the same in conditions, templates and test overrides).
fn param_value_problem(name: &str, value: &serde_json::Value) -> Option<String> {
    let map = value.as_object()?;
    let example = map.keys().next().map_or("name", String::as_str);
    Some(format!(
        "`{name}` is a map; params are flat (numbers, strings, booleans, lists): write `{name}_{example}: ...` and read `params.{name}_{example}`"
    ))
}

fn key_list<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<&str> = keys.map(String::as_str).collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// The readings and history series an expression reads by a literal name.
fn collect_data_reads(
    usage: &Usage<'_>,
    params: &serde_json::Map<String, serde_json::Value>,
    out: &mut BTreeSet<DataRead>,
) {
    for path in usage.paths.iter().filter(|p| p.root == "readings") {
        if let Some(name) = path.segments.first() {
            out.insert(DataRead::Reading(name.to_string()));
        }
    }
    for call in &usage.calls {
        // A helper with alternatives (`distance_km`: odometer or speed) needs neither.
        if let Some(helper) = spec::helper(call.name).filter(|h| h.history)
            && let Some(names) = spec::history_series(helper, call_literal(call, params))
            && let [name] = names.as_slice()
        {
            out.insert(DataRead::Series {
                helper: helper.name,
                name: name.clone(),
            });
        }
    }
}

/// What an expression's inputs are, over-approximated.
fn deps_of(usage: &Usage<'_>) -> Deps {
    let mut deps = Deps::default();
    for name in &usage.names {
        deps |= match *name {
            "state" | "prev" => Deps::STATE,
            "tracker" => Deps::TRACKER,
            "readings" | "iot" => Deps::DATA,
            "now" => Deps::TIME,
            // Function pointers can reach any helper by a computed name.
            "Fn" | "call" | "curry" => Deps::ALL,
            n => spec::helper(n).map_or(Deps::NONE, |h| h.deps),
        };
    }
    deps
}

/// Records the series and window lengths of the window helpers, evaluating constant
/// window arguments such as `minutes(10)` or `minutes(params.window)`.
fn record_windows(
    engine: &Engine,
    usage: &Usage<'_>,
    text: &str,
    params: &serde_json::Map<String, serde_json::Value>,
    params_map: &rhai::Map,
    windows: &mut Windows,
) {
    if usage
        .names
        .iter()
        .any(|n| matches!(*n, "nearby" | "distance_to" | "Fn" | "call" | "curry"))
    {
        windows.positions = true;
    }
    for call in &usage.calls {
        let Some(helper) = spec::helper(call.name).filter(|h| h.history) else {
            continue;
        };
        windows.any = true;
        match spec::history_series(helper, call_literal(call, params)) {
            Some(series) => {
                windows
                    .names
                    .get_or_insert_with(BTreeSet::new)
                    .extend(series);
            }
            None => windows.dynamic_name = true,
        }
        let window = call.args.get(spec::window_arg(helper)).and_then(|(a, b)| {
            let arg = text.get(*a..*b)?;
            let mut scope = script_engine::compile_scope(params_map.clone());
            let v = engine
                .eval_expression_with_scope::<rhai::Dynamic>(&mut scope, arg)
                .ok()?;
            let secs = v
                .as_int()
                .map(|i| i as f64)
                .or_else(|_| v.as_float())
                .ok()?;
            (secs > 0.0 && secs.is_finite()).then(|| Duration::from_secs_f64(secs))
        });
        windows.longest = windows.longest.max(window.unwrap_or(DEFAULT_HISTORY));
    }
}

/// A call's first argument when it is known before evaluation: a string literal, or a
/// string param (`in_zone(params.zone)`).
fn call_literal(
    call: &scan::Call<'_>,
    params: &serde_json::Map<String, serde_json::Value>,
) -> Option<String> {
    if let Some(lit) = &call.literal {
        return Some(lit.clone());
    }
    call.param
        .and_then(|p| params.get(p))
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

fn parse_position(e: &ParseError) -> (usize, usize) {
    let pos = e.position();
    (pos.line().unwrap_or(1), pos.position().unwrap_or(1))
}

fn parse_message(e: &ParseError) -> String {
    e.0.to_string()
}

/// Names templates may use without the context defining them.
const TEMPLATE_GLOBALS: [&str; 7] = [
    "range",
    "dict",
    "namespace",
    "debug",
    "lipsum",
    "cycler",
    "joiner",
];

/// minijinja's built-in filters, for "did you mean" (those the environment lacks are
/// left out when suggesting).
const TEMPLATE_FILTERS: [&str; 44] = [
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "count",
    "d",
    "default",
    "dictsort",
    "e",
    "escape",
    "first",
    "float",
    "format",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "tojson",
    "trim",
];

/// What a template reads that the render context does not have (`{{ trackr.label }}`)
/// and the filters it names that do not exist (`| rond`): both would fail at every
/// render and send the raw template, so `check` reports them.
fn template_problems(
    templates: &minijinja::Environment<'static>,
    template_name: &str,
    params: &serde_json::Map<String, serde_json::Value>,
) -> Vec<String> {
    use super::render::{TEMPLATE_ROOTS, TEMPLATE_RULE_FIELDS, TEMPLATE_TRACKER_FIELDS};
    let Ok(template) = templates.get_template(template_name) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    let mut vars: Vec<String> = template.undeclared_variables(true).into_iter().collect();
    vars.sort();
    for var in vars {
        let segments: Vec<&str> = var.split('.').collect();
        let (root, rest) = (segments[0], &segments[1..]);
        let fields: Option<&[&str]> = match root {
            "tracker" => Some(&TEMPLATE_TRACKER_FIELDS),
            "rule" => Some(&TEMPLATE_RULE_FIELDS),
            _ => None,
        };
        let problem = if TEMPLATE_GLOBALS.contains(&root) {
            None
        } else if !TEMPLATE_ROOTS.contains(&root) {
            Some(format!(
                "the template reads `{root}`, which is not defined{} (variables: {})",
                suggest::hint(root, TEMPLATE_ROOTS),
                TEMPLATE_ROOTS.join(", ")
            ))
        } else if root == "state" {
            schema::check("state", rest).err().map(|(_, m)| m)
        } else if root == "params" {
            rest.first().and_then(|p| param_problem(params, &[p]))
        } else if let (Some(fields), Some(field)) = (fields, rest.first()) {
            (!fields.contains(field)).then(|| {
                format!(
                    "`{root}` has no field `{field}`{} (fields: {})",
                    suggest::hint(field, fields.iter().copied()),
                    fields.join(", ")
                )
            })
        } else {
            None
        };
        problems.extend(problem);
    }
    let exists = |filter: &str| {
        !templates
            .render_str(&format!("{{{{ none | {filter} }}}}"), ())
            .is_err_and(|e| e.kind() == minijinja::ErrorKind::UnknownFilter)
    };
    for filter in filter_names(template.source()) {
        if !exists(&filter) {
            let known = TEMPLATE_FILTERS.iter().copied().filter(|f| exists(f));
            problems.push(format!(
                "unknown filter `{filter}`{}",
                suggest::hint(&filter, known)
            ));
        }
    }
    problems
}

/// The filter names used in a template's tags (`{{ x | round(1) }}`: `round`).
fn filter_names(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(open) = rest.find(['{']) {
        let after = &rest[open + 1..];
        let close = match after.chars().next() {
            Some('{') => "}}",
            Some('%') => "%}",
            _ => {
                rest = after;
                continue;
            }
        };
        let Some(end) = after.find(close) else { break };
        let tag = without_strings(&after[1..end]);
        let mut parts = tag.split('|').skip(1);
        for part in parts.by_ref() {
            let name: String = part
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && !out.contains(&name) {
                out.push(name);
            }
        }
        rest = &after[end + close.len()..];
    }
    out
}

/// A template tag with its string literals emptied, so that `"a|b"` is not a filter.
fn without_strings(tag: &str) -> String {
    let mut out = String::with_capacity(tag.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in tag.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    out.push(c);
                }
            }
            None => {
                if c == '"' || c == '\'' {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

fn template_message(e: &minijinja::Error) -> String {
    let what = e
        .detail()
        .map_or_else(|| e.kind().to_string(), str::to_string);
    match e.line() {
        Some(line) => format!("{what} (line {line} of the template)"),
        None => what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.yaml", "fuel.yaml"));
        assert!(glob_match("fuel?.yaml", "fuel1.yaml"));
        assert!(!glob_match("*.yaml", "fuel.yml"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("**.yaml", "x.yaml"));
        assert!(!glob_match("?", ""));
        assert!(glob_match("Lkw-?*", "Lkw-Müller"));
        assert!(glob_match("?ü?ler", "Müller"));
        assert!(!glob_match("M?ller", "Mller"));
        assert!(glob_match("Грузовик*", "Грузовик 7"));
    }

    /// The matcher as it was, over vectors of characters: the reference.
    fn glob_reference(pattern: &str, name: &str) -> bool {
        let p: Vec<char> = pattern.chars().collect();
        let n: Vec<char> = name.chars().collect();
        let (mut pi, mut ni) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ni < n.len() {
            if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
                pi += 1;
                ni += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ni));
                pi += 1;
            } else if let Some((sp, sn)) = star {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }

    #[test]
    fn globs_agree_with_the_reference_on_every_short_pattern_and_name() {
        // Every pattern of up to 4 and name of up to 4 characters over an alphabet with
        // the two wildcards and characters of 1, 2 and 3 bytes.
        let alphabet = ['a', 'ü', '*', '?', '€'];
        let strings = |max: usize| {
            let mut all = vec![String::new()];
            let mut last = vec![String::new()];
            for _ in 0..max {
                last = last
                    .iter()
                    .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                    .collect();
                all.extend(last.iter().cloned());
            }
            all
        };
        let (patterns, names) = (strings(4), strings(4));
        let mut compared = 0;
        for p in &patterns {
            for n in &names {
                assert_eq!(glob_match(p, n), glob_reference(p, n), "{p:?} on {n:?}");
                compared += 1;
            }
        }
        assert_eq!(compared, 781 * 781);
    }

    #[test]
    fn filters_of_a_template() {
        assert_eq!(
            filter_names(
                "{{ value | round(1) }} {% if x|length > 1 %}{{ \"a|b\" | upper }}{% endif %}"
            ),
            ["round", "length", "upper"]
        );
    }

    #[test]
    fn blanking_an_unknown_key_keeps_the_other_lines() {
        let mut text =
            "rules:\n  - name: a\n    severty:\n      nested: 1\n    when: x\n".to_string();
        assert_eq!(blank_key(&mut text, 3, 5), [3, 4]);
        assert_eq!(
            text,
            "rules:\n  - name: a\n            \n               \n    when: x\n"
        );
        // Columns count characters, and a column past the end blanks nothing.
        let mut text = "- ä: 1\n  é: 2\n".to_string();
        assert_eq!(blank_key(&mut text, 2, 3), [2]);
        assert_eq!(text, "- ä: 1\n      \n");
        let mut text = "ab\n".to_string();
        assert_eq!(blank_key(&mut text, 1, 40), [1]);
        assert_eq!(text, "ab\n");
    }
}
