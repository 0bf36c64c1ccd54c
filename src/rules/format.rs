//! One line per transition, for `replay` and the rule tests:
//! `2026-01-05T08:12:00Z fuel_drain 21080 "Truck 7" firing 17.2`; an occurrence of an
//! event rule reads `event` where a state alert reads `firing` or `resolved`.

use std::fmt::Write;

use crate::alert::AlertTransition;

/// Event time, rule (with its key in brackets), tracker id and label, status (`event` for
/// an occurrence), value.
pub fn format_transition(t: &AlertTransition) -> String {
    let mut line = t.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    line.push(' ');
    line.push_str(&t.rule);
    if let Some(key) = &t.key {
        let _ = write!(line, "[{key}]");
    }
    match &t.tracker {
        Some(tr) => {
            let _ = write!(line, " {}", tr.id);
            if let Some(label) = &tr.label {
                let _ = write!(line, " {label:?}");
            }
        }
        None => line.push_str(" -"),
    }
    line.push(' ');
    line.push_str(t.kind());
    if let Some(v) = &t.value {
        let _ = write!(line, " {}", value_text(v));
    }
    line
}

/// A value as users write it: strings without JSON quotes.
pub(crate) fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertStatus, Fingerprint, Severity, TrackerRef};
    use chrono::TimeZone;

    #[test]
    fn one_line() {
        let at = chrono::Utc.with_ymd_and_hms(2026, 1, 5, 8, 12, 0).unwrap();
        let t = AlertTransition {
            fingerprint: Fingerprint::new("fuel_drain", Some(21080), None),
            rule: "fuel_drain".into(),
            status: AlertStatus::Firing,
            severity: Severity::Critical,
            tracker: Some(TrackerRef {
                id: 21080,
                label: Some("Truck 7".into()),
                source_id: Some(10284),
            }),
            key: None,
            labels: Default::default(),
            annotations: Default::default(),
            value: Some(serde_json::json!(17.2)),
            starts_at: at,
            ends_at: None,
            at,
            location: None,
            state: Default::default(),
            channels: None,
            occurrence_id: None,
            pending: false,
        };
        assert_eq!(
            format_transition(&t),
            r#"2026-01-05T08:12:00Z fuel_drain 21080 "Truck 7" firing 17.2"#
        );
        let occurrence = AlertTransition {
            occurrence_id: Some(format!("{}:{}", t.fingerprint, at.timestamp_millis())),
            value: None,
            ..t
        };
        assert_eq!(
            format_transition(&occurrence),
            r#"2026-01-05T08:12:00Z fuel_drain 21080 "Truck 7" event"#
        );
    }
}
