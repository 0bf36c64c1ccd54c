//! Microsoft Teams: a Workflows webhook ("When a Teams webhook request is received")
//! posting one message with an Adaptive Card (1.4) per notification.
//!
//! The card has a title, a context line, and a container per alert whose `style` says the
//! severity (critical `attention`, warning `warning`, info `accent`; resolved `good`),
//! holding the summary and a fact set: tracker, value, since (and resolved). Teams takes
//! messages up to about 28 KB: beyond [`MAX_ALERTS`] alerts, or that size, the card is cut
//! with a note of how many more there are. The webhook URL carries its signature (`sig=`):
//! it is a secret, never in errors. Workflows answer 202; 400 is permanent, 429 and 5xx
//! are retried.

use std::time::Duration;

use serde_json::{Value, json};

use super::{JsonEndpoint, SendError, parse_url};
use crate::alert::{AlertStatus, AlertTransition, Severity};
use crate::config::Secret;
use crate::dispatch::notification::Notification;
use crate::rfc3339;

/// Alerts shown on one card.
pub const MAX_ALERTS: usize = 20;
/// Teams refuses messages above about 28 KB; stay under it.
pub const MAX_BYTES: usize = 27_000;

pub struct TeamsChannel(JsonEndpoint);

impl TeamsChannel {
    pub fn new(
        http: reqwest::Client,
        webhook_url: &Secret,
        timeout: Duration,
    ) -> Result<TeamsChannel, String> {
        // The URL is the secret: it must not appear in the error.
        let url = parse_url("webhook_url", webhook_url.expose())
            .map_err(|_| "webhook_url: not a valid http(s) URL".to_owned())?;
        Ok(TeamsChannel(JsonEndpoint { http, url, timeout }))
    }

    pub async fn send(&self, n: &Notification) -> Result<(), SendError> {
        self.0.post(&body(n)).await
    }
}

/// The container style (the card's colour) of an alert.
fn style(t: &AlertTransition) -> &'static str {
    match (t.status, t.severity) {
        (AlertStatus::Resolved, _) => "good",
        (_, Severity::Critical) => "attention",
        (_, Severity::Warning) => "warning",
        (_, Severity::Info) => "accent",
    }
}

fn alert_container(t: &AlertTransition) -> Value {
    let headline = t
        .annotations
        .get("summary")
        .cloned()
        .unwrap_or_else(|| t.rule.to_string());
    let mut facts =
        vec![json!({"title": "Rule", "value": format!("{} ({})", t.rule, t.severity.as_str())})];
    if let Some(tracker) = &t.tracker {
        let name = match &tracker.label {
            Some(label) => format!("{label} ({})", tracker.id),
            None => tracker.id.to_string(),
        };
        facts.push(json!({"title": "Tracker", "value": name}));
    }
    if let Some(value) = &t.value {
        let value = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        facts.push(json!({"title": "Value", "value": value}));
    }
    facts.push(json!({"title": "Since", "value": rfc3339::format(t.starts_at)}));
    if let Some(ends_at) = t.ends_at {
        facts.push(json!({"title": "Resolved", "value": rfc3339::format(ends_at)}));
    }
    let mut items = vec![
        json!({"type": "TextBlock", "text": headline, "weight": "Bolder", "wrap": true}),
        json!({"type": "FactSet", "facts": facts}),
    ];
    if let Some(description) = t.annotations.get("description") {
        items.push(
            json!({"type": "TextBlock", "text": description, "isSubtle": true, "wrap": true}),
        );
    }
    json!({"type": "Container", "style": style(t), "bleed": true, "items": items})
}

fn message(n: &Notification, shown: usize) -> Value {
    let mut body = vec![
        json!({"type": "TextBlock", "text": super::title(n, super::Marks::PLAIN), "size": "Large", "weight": "Bolder", "wrap": true}),
        json!({"type": "TextBlock", "text": format!("{} · {} · {}", n.receiver, n.reason, n.id),
               "isSubtle": true, "spacing": "None", "wrap": true}),
    ];
    body.extend(n.alerts.iter().take(shown).map(|t| alert_container(t)));
    if n.alerts.len() > shown {
        body.push(json!({"type": "TextBlock", "isSubtle": true, "wrap": true,
            "text": format!("… and {} more alerts in this group", n.alerts.len() - shown)}));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "msteams": {"width": "Full"},
                "body": body,
            },
        }],
    })
}

/// The message body: the card with as many alerts as fit.
pub fn body(n: &Notification) -> Value {
    let mut shown = n.alerts.len().min(MAX_ALERTS);
    loop {
        let m = message(n, shown);
        if shown == 0 || m.to_string().len() <= MAX_BYTES {
            return m;
        }
        shown -= 1;
    }
}
