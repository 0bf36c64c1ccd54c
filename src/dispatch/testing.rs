//! Fixtures shared by the tests and benches (unit and integration): a firing transition
//! as the rule engine emits it, its resolve, a config. Not part of the API.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};

use crate::alert::{AlertStatus, AlertTransition, Fingerprint, Severity, TrackerRef};
use crate::config::Config;
use crate::navixy::messages::Location;

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap()
}

/// A config with a simulator source and the given YAML (channels, routes, notify).
pub fn config(yaml: &str) -> Config {
    let text = format!("source: {{ simulator: {{}} }}\n{yaml}");
    Config::from_yaml(&text, Path::new("/etc/navixy-alerts/config.yaml"), |_| None).unwrap()
}

/// A firing transition of `rule` on tracker `tracker`, as the rule engine would emit it.
pub fn firing(rule: &str, tracker: i64) -> AlertTransition {
    let mut state = serde_json::Map::new();
    state.insert("speed".into(), serde_json::json!(0));
    state.insert("ignition".into(), serde_json::json!(false));
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "summary".into(),
        format!("Truck {tracker}: 17.2 l of fuel lost in 10 min"),
    );
    AlertTransition {
        fingerprint: Fingerprint::new(rule, Some(tracker), None),
        rule: Arc::from(rule),
        status: AlertStatus::Firing,
        severity: Severity::Critical,
        tracker: Some(TrackerRef {
            id: tracker,
            label: Some(format!("Truck {tracker}")),
            source_id: Some(10_000 + tracker),
        }),
        key: None,
        labels: BTreeMap::from([("team".to_owned(), "logistics".to_owned())]),
        annotations,
        value: Some(serde_json::json!(17.2)),
        starts_at: t0(),
        ends_at: None,
        at: t0(),
        location: Some(Location {
            lat: 52.5,
            lng: 13.4,
        }),
        state,
        channels: None,
        occurrence_id: None,
        pending: false,
    }
}

/// The resolve of `t` at `at`.
pub fn resolved(t: &AlertTransition, at: DateTime<Utc>) -> AlertTransition {
    t.resolved_at(at)
}
