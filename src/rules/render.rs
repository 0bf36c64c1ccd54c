//! What a transition carries besides its identity: the tracker, its position and key state
//! fields, and annotations rendered with minijinja. Runs only at transitions, but a fleet
//! has many (every input flip, every ignition): the template context holds only what the
//! rule's templates read, and is serialized straight into minijinja's values.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::set::{Rule, RuleSet};
use crate::alert::{AlertStatus, TrackerRef};
use crate::navixy::messages::{Location, SourceState, Text};
use crate::state::TrackerState;

pub(crate) fn tracker_ref(tracker: &TrackerState) -> TrackerRef {
    TrackerRef {
        id: tracker.info.id,
        label: tracker.info.label.clone(),
        source_id: tracker.info.source_id,
    }
}

pub(crate) fn location(tracker: &TrackerState) -> Option<Location> {
    tracker
        .current
        .as_deref()
        .and_then(|s| s.gps.as_ref())
        .and_then(|g| g.location)
}

/// The state fields receivers show next to an alert; absent ones are left out.
pub(crate) fn state_summary(tracker: &TrackerState) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(s) = tracker.current.as_deref() {
        if let Some(speed) = s.gps.as_ref().and_then(|g| g.speed) {
            out.insert("speed".into(), json!(speed));
        }
        if let Some(v) = s.ignition {
            out.insert("ignition".into(), json!(v));
        }
        if let Some(v) = s.movement_status {
            out.insert("movement_status".into(), json!(v.as_str()));
        }
        if let Some(v) = s.connection_status {
            out.insert("connection_status".into(), json!(v.as_str()));
        }
        if let Some(v) = s.battery_level {
            out.insert("battery_level".into(), json!(v));
        }
    }
    out.insert("online".into(), json!(tracker.online));
    out.insert("lifecycle".into(), json!(tracker.lifecycle.as_str()));
    out
}

/// The readings as templates see them: every reading by the name rules use (an input
/// over a counter of the same name, as before).
fn readings_json(tracker: &TrackerState) -> Map<String, Value> {
    fn put<V: Serialize>(out: &mut Map<String, Value>, readings: &HashMap<Text, V>) {
        for (name, v) in readings {
            out.insert(
                name.to_string(),
                serde_json::to_value(v).unwrap_or(Value::Null),
            );
        }
    }
    let r = &tracker.readings;
    let mut out = Map::new();
    put(&mut out, &r.counters);
    put(&mut out, &r.virtual_sensors);
    put(&mut out, &r.states);
    put(&mut out, &r.inputs);
    out
}

/// Which parts of the context a rule's templates read. Serializing a whole state and
/// every reading for each transition was most of a transition's cost, and most templates
/// read neither: they are left out (as `none`) when no template of the rule names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TemplateReads {
    pub state: bool,
    pub readings: bool,
}

impl TemplateReads {
    pub const ALL: TemplateReads = TemplateReads {
        state: true,
        readings: true,
    };

    /// What the templates of `rule` read, from their undeclared variables. A template that
    /// may reach other templates or dump its whole context is taken to read everything.
    pub(crate) fn of(set: &RuleSet, rule: &Rule) -> TemplateReads {
        let mut reads = TemplateReads::default();
        for name in &rule.annotations {
            let Ok(template) = set.templates.get_template(&template_name(rule, name)) else {
                continue;
            };
            let source = template.source();
            if ["include", "import", "extends", "debug"]
                .iter()
                .any(|word| source.contains(word))
            {
                return TemplateReads::ALL;
            }
            let vars = template.undeclared_variables(false);
            reads.state |= vars.contains("state");
            reads.readings |= vars.contains("readings");
        }
        reads
    }
}

fn template_name(rule: &Rule, annotation: &str) -> String {
    format!("{}/{}", rule.name, annotation)
}

/// Everything a transition's annotations may need.
pub(crate) struct RenderInput<'a> {
    pub rule: &'a Rule,
    pub tracker: &'a TrackerState,
    pub value: Option<&'a Value>,
    pub key: Option<&'a str>,
    pub status: AlertStatus,
    pub starts_at: DateTime<Utc>,
    /// What the rule's templates read (see [`TemplateReads::of`]).
    pub reads: TemplateReads,
}

/// The `round` filter, as Jinja's: always a float, so `{{ value | round(1) }}` shows
/// `35.0` for a value of 35 (alert values that are whole numbers arrive as integers,
/// whose built-in `round` would print `35`).
pub(crate) fn round_filter(value: f64, precision: Option<i32>) -> f64 {
    let factor = 10f64.powi(precision.unwrap_or(0).clamp(0, 12));
    (value * factor).round() / factor
}

/// What templates may read, for `check`: the roots of [`Context`] and the fields of its
/// fixed objects (`state` follows the state's schema; `readings` and `labels` take any
/// name). A test keeps these in step with the structs.
pub(crate) const TEMPLATE_ROOTS: [&str; 10] = [
    "tracker",
    "state",
    "readings",
    "value",
    "key",
    "params",
    "labels",
    "status",
    "starts_at",
    "rule",
];
pub(crate) const TEMPLATE_TRACKER_FIELDS: [&str; 10] = [
    "id",
    "source",
    "label",
    "source_id",
    "group_id",
    "lifecycle",
    "online",
    "group",
    "tags",
    "driver",
];
pub(crate) const TEMPLATE_RULE_FIELDS: [&str; 3] = ["name", "severity", "description"];

/// The template context, serialized straight into minijinja values (no JSON between).
#[derive(Serialize)]
struct Context<'a> {
    tracker: TrackerContext<'a>,
    state: Option<&'a SourceState>,
    readings: Option<Map<String, Value>>,
    value: Option<&'a Value>,
    key: Option<&'a str>,
    params: &'a Map<String, Value>,
    labels: &'a BTreeMap<String, String>,
    status: &'static str,
    starts_at: String,
    rule: RuleContext<'a>,
}

#[derive(Serialize)]
struct TrackerContext<'a> {
    id: i64,
    /// The tracker's source (`sources:` name).
    source: &'a str,
    label: Option<&'a str>,
    source_id: Option<i64>,
    group_id: Option<i64>,
    lifecycle: &'static str,
    online: bool,
    /// Navixy's group title, tag names and driver (`{id, name, phone}`).
    group: Option<&'a str>,
    tags: Vec<&'a str>,
    driver: Option<DriverContext<'a>>,
}

#[derive(Serialize)]
struct DriverContext<'a> {
    id: i64,
    name: &'a str,
    phone: Option<&'a str>,
}

#[derive(Serialize)]
struct RuleContext<'a> {
    name: &'a str,
    severity: &'static str,
    description: Option<&'a str>,
}

/// Renders a rule's annotations. A template that fails (out of fuel, bad filter input)
/// yields its source text, so the alert still goes out; the errors are returned for the
/// fault counter.
pub(crate) fn annotations(
    set: &RuleSet,
    input: &RenderInput<'_>,
) -> (BTreeMap<String, String>, Vec<(String, String)>) {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    if input.rule.annotations.is_empty() {
        return (out, errors);
    }
    let t = input.tracker;
    let navixy = set.around.context(t.info.source).load();
    let navixy = &navixy.context;
    let ctx = minijinja::Value::from_serialize(Context {
        tracker: TrackerContext {
            id: t.info.id,
            source: set.around.source_name(t.info.source),
            label: t.info.label.as_deref(),
            source_id: t.info.source_id,
            group_id: t.info.group_id,
            lifecycle: t.lifecycle.as_str(),
            online: t.online,
            group: navixy.group_title(t.info.group_id),
            tags: navixy.tracker_tags(t.info.id),
            driver: navixy.driver(t.info.id).map(|d| DriverContext {
                id: d.id,
                name: &d.name,
                phone: d.phone.as_deref(),
            }),
        },
        state: t.current.as_deref().filter(|_| input.reads.state),
        readings: input.reads.readings.then(|| readings_json(t)),
        value: input.value,
        key: input.key,
        params: &input.rule.params,
        labels: &input.rule.labels,
        status: input.status.as_str(),
        starts_at: input
            .starts_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        rule: RuleContext {
            name: &input.rule.name,
            severity: input.rule.severity.as_str(),
            description: input.rule.description.as_deref(),
        },
    });
    for name in &input.rule.annotations {
        let Ok(template) = set.templates.get_template(&template_name(input.rule, name)) else {
            continue;
        };
        match template.render(&ctx) {
            Ok(text) => {
                out.insert(name.clone(), text);
            }
            Err(e) => {
                out.insert(name.clone(), template.source().to_string());
                errors.push((name.clone(), e.to_string()));
            }
        }
    }
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_keeps_its_decimal() {
        let mut env = minijinja::Environment::new();
        env.add_filter("round", round_filter);
        let render = |v: Value| {
            env.render_str(
                "{{ value | round(1) }} {{ value | round }}",
                json!({ "value": v }),
            )
            .unwrap()
        };
        assert_eq!(render(json!(35)), "35.0 35.0");
        assert_eq!(render(json!(17.24)), "17.2 17.0");
    }

    /// The lists `check` uses are the context's fields.
    #[test]
    fn template_names_match_the_context() {
        let params = Map::new();
        let labels = BTreeMap::new();
        let ctx = serde_json::to_value(Context {
            tracker: TrackerContext {
                source: "navixy",
                id: 1,
                label: None,
                source_id: None,
                group_id: None,
                lifecycle: "active",
                online: true,
                group: None,
                tags: Vec::new(),
                driver: None,
            },
            state: None,
            readings: None,
            value: None,
            key: None,
            params: &params,
            labels: &labels,
            status: "firing",
            starts_at: String::new(),
            rule: RuleContext {
                name: "r",
                severity: "warning",
                description: None,
            },
        })
        .unwrap();
        let keys = |v: &Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let sorted = |l: &[&str]| -> Vec<String> {
            let mut k: Vec<String> = l.iter().map(|s| s.to_string()).collect();
            k.sort();
            k
        };
        assert_eq!(keys(&ctx), sorted(&TEMPLATE_ROOTS));
        assert_eq!(keys(&ctx["tracker"]), sorted(&TEMPLATE_TRACKER_FIELDS));
        assert_eq!(keys(&ctx["rule"]), sorted(&TEMPLATE_RULE_FIELDS));
    }
}
