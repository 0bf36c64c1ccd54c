//! PagerDuty: Events API v2, one event per alert of the notification, POSTed to the
//! enqueue URL.
//!
//! `dedup_key` is the alert's fingerprint, so PagerDuty keeps one incident per alert: a
//! retry or a repeat of a trigger lands on the open incident, an ack notification
//! (`send_acks`, on by default for PagerDuty) acknowledges it, and the resolve closes it.
//! `payload.severity` is the rule's (PagerDuty's `info`, `warning`, `critical`),
//! `payload.source` the tracker (or `navixy-alerts` for engine alerts), `payload.summary`
//! the `summary` annotation or rule and tracker, cut to PagerDuty's 1024 characters.
//!
//! Answers (PagerDuty's documented codes): 202 accepted; 400 an invalid event, permanent;
//! 429 and 5xx retried. A retry sends every event of the notification again, which
//! `dedup_key` makes harmless.

use std::time::Duration;

use serde_json::{Value, json};

use super::{JsonEndpoint, SendError, parse_url, redact};
use crate::alert::{AlertStatus, AlertTransition};
use crate::config::Secret;
use crate::dispatch::notification::{Notification, NotificationKind};
use crate::rfc3339;

/// PagerDuty truncates nothing: a longer summary is an invalid event.
const MAX_SUMMARY: usize = 1024;

pub struct PagerdutyChannel {
    endpoint: JsonEndpoint,
    routing_key: Secret,
}

/// What an event does to the incident of its `dedup_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventAction {
    Trigger,
    /// An acknowledgement notification (the channel's `send_acks`, on by default here).
    Acknowledge,
    Resolve,
}

impl EventAction {
    pub fn as_str(self) -> &'static str {
        match self {
            EventAction::Trigger => "trigger",
            EventAction::Acknowledge => "acknowledge",
            EventAction::Resolve => "resolve",
        }
    }

    /// The action an alert of a notification asks for.
    pub fn of(n: &Notification, t: &AlertTransition) -> EventAction {
        match (n.kind, t.status) {
            (NotificationKind::Acknowledged, AlertStatus::Firing) => EventAction::Acknowledge,
            (_, AlertStatus::Firing) => EventAction::Trigger,
            (_, AlertStatus::Resolved) => EventAction::Resolve,
        }
    }
}

impl PagerdutyChannel {
    pub fn new(
        http: reqwest::Client,
        routing_key: &Secret,
        url: &str,
        timeout: Duration,
    ) -> Result<PagerdutyChannel, String> {
        if routing_key.expose().trim().is_empty() {
            return Err("routing_key: must not be empty (the integration key of an Events API v2 integration)".into());
        }
        let url = parse_url("url", url)?;
        Ok(PagerdutyChannel {
            endpoint: JsonEndpoint { http, url, timeout },
            routing_key: routing_key.clone(),
        })
    }

    pub async fn send(&self, n: &Notification) -> Result<(), SendError> {
        for event in events(n, self.routing_key.expose()) {
            self.endpoint
                .post(&event)
                .await
                .map_err(|e| redact_error(e, self.routing_key.expose()))?;
        }
        Ok(())
    }
}

/// PagerDuty's 400 names the fields it refuses, and may quote the routing key.
fn redact_error(e: SendError, secret: &str) -> SendError {
    match e {
        SendError::Retryable {
            message,
            retry_after,
        } => SendError::Retryable {
            message: redact(&message, secret),
            retry_after,
        },
        SendError::Permanent { message } => SendError::permanent(redact(&message, secret)),
    }
}

/// The events of a notification, in its order (firing alerts first).
pub fn events(n: &Notification, routing_key: &str) -> Vec<Value> {
    let details = n.webhook_body().data.alerts;
    n.alerts
        .iter()
        .zip(details)
        .map(|(t, detail)| {
            let action = EventAction::of(n, t);
            let mut event = json!({
                "routing_key": routing_key,
                "event_action": action.as_str(),
                "dedup_key": t.fingerprint.0,
            });
            if action == EventAction::Trigger {
                event["client"] = json!("navixy-alerts");
                event["payload"] = json!({
                    "summary": summary(t),
                    "source": source(t),
                    "severity": t.severity.as_str(),
                    "timestamp": rfc3339::format(t.starts_at),
                    "class": &*t.rule,
                    "group": n.group_key,
                    // The alert as the webhook carries it: tracker, value, labels,
                    // annotations, location, state.
                    "custom_details": detail,
                });
            }
            event
        })
        .collect()
}

/// The tracker's label, else its id; `navixy-alerts` for engine alerts.
fn source(t: &AlertTransition) -> String {
    match &t.tracker {
        Some(tracker) => match &tracker.label {
            Some(label) if !label.is_empty() => label.clone(),
            _ => tracker.id.to_string(),
        },
        None => "navixy-alerts".into(),
    }
}

fn summary(t: &AlertTransition) -> String {
    let text = match t.annotations.get("summary") {
        Some(summary) if !summary.trim().is_empty() => summary.clone(),
        _ => match &t.tracker {
            Some(_) => format!("{} on {}", t.rule, source(t)),
            None => t.rule.to_string(),
        },
    };
    if text.chars().count() <= MAX_SUMMARY {
        return text;
    }
    let mut cut: String = text.chars().take(MAX_SUMMARY - 1).collect();
    cut.push('…');
    cut
}
