//! What a transition carries besides its identity: the tracker, its position and key state
//! fields, and annotations rendered with minijinja. Runs only at transitions (rare), so it
//! may build JSON freely.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::alert::{AlertStatus, TrackerRef};
use super::set::{Rule, RuleSet};
use crate::navixy::messages::Location;
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

/// The readings as templates see them: every reading by the name rules use.
fn readings_json(tracker: &TrackerState) -> Map<String, Value> {
    let r = &tracker.readings;
    let mut out = Map::new();
    for (k, v) in &r.counters {
        out.insert(k.clone(), serde_json::to_value(v).unwrap_or(Value::Null));
    }
    for (k, v) in &r.virtual_sensors {
        out.insert(k.clone(), serde_json::to_value(v).unwrap_or(Value::Null));
    }
    for (k, v) in &r.states {
        out.insert(k.clone(), serde_json::to_value(v).unwrap_or(Value::Null));
    }
    for (k, v) in &r.inputs {
        out.insert(k.clone(), serde_json::to_value(v).unwrap_or(Value::Null));
    }
    out
}

/// Everything a transition's annotations may need.
pub(crate) struct RenderInput<'a> {
    pub rule: &'a Rule,
    pub tracker: &'a TrackerState,
    pub value: Option<&'a Value>,
    pub key: Option<&'a str>,
    pub status: AlertStatus,
    pub starts_at: DateTime<Utc>,
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
    let ctx = json!({
        "tracker": {
            "id": t.info.id,
            "label": t.info.label,
            "source_id": t.info.source_id,
            "group_id": t.info.group_id,
            "lifecycle": t.lifecycle.as_str(),
            "online": t.online,
        },
        "state": t.current.as_deref().map(|s| serde_json::to_value(s).unwrap_or(Value::Null)),
        "readings": readings_json(t),
        "value": input.value,
        "key": input.key,
        "params": input.rule.params,
        "labels": input.rule.labels,
        "status": input.status.as_str(),
        "starts_at": input.starts_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "rule": {
            "name": &*input.rule.name,
            "severity": input.rule.severity.as_str(),
            "description": input.rule.description,
        },
    });
    let ctx = minijinja::Value::from_serialize(&ctx);
    for name in &input.rule.annotations {
        let template_name = format!("{}/{}", input.rule.name, name);
        let Ok(template) = set.templates.get_template(&template_name) else {
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
