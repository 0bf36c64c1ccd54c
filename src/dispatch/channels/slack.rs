//! Slack: an incoming-webhook message with Block Kit. A header and a context line at the
//! top; one attachment per alert, coloured by severity (resolved in green), holding the
//! summary and the fields an on-call person needs first.

use std::time::Duration;

use serde_json::{Value, json};

use super::{JsonEndpoint, SendError, parse_url};
use crate::alert::{AlertStatus, AlertTransition, Severity};
use crate::config::Secret;
use crate::dispatch::notification::Notification;
use crate::rfc3339;

/// Slack allows 50 blocks and 100 attachments; a group beyond this many alerts is cut with
/// a note of how many more there are.
const MAX_ALERTS: usize = 20;

pub struct SlackChannel(JsonEndpoint);

impl SlackChannel {
    pub fn new(
        http: reqwest::Client,
        webhook_url: &Secret,
        timeout: Duration,
    ) -> Result<SlackChannel, String> {
        // The URL is the secret: it must not appear in the error.
        let url = parse_url("webhook_url", webhook_url.expose())
            .map_err(|_| "webhook_url: not a valid http(s) URL".to_owned())?;
        Ok(SlackChannel(JsonEndpoint { http, url, timeout }))
    }

    pub async fn send(&self, n: &Notification) -> Result<(), SendError> {
        self.0.post(&body(n)).await
    }
}

/// Slack's colours: red, amber, blue; green for resolved.
fn colour(t: &AlertTransition) -> &'static str {
    match (t.status, t.severity) {
        (AlertStatus::Resolved, _) => "#2EB67D",
        (_, Severity::Critical) => "#E01E5A",
        (_, Severity::Warning) => "#ECB22E",
        (_, Severity::Info) => "#36C5F0",
    }
}

/// Slack's mrkdwn treats `&`, `<` and `>` as control characters.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn tracker_name(t: &AlertTransition) -> Option<String> {
    t.tracker.as_ref().map(|tr| match &tr.label {
        Some(label) => format!("{label} ({})", tr.id),
        None => tr.id.to_string(),
    })
}

fn alert_attachment(t: &AlertTransition) -> Value {
    let headline = t
        .annotations
        .get("summary")
        .cloned()
        .unwrap_or_else(|| t.rule.to_string());
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*Rule*\n{}", escape(&t.rule))}),
        json!({"type": "mrkdwn", "text": format!("*Severity*\n{}", t.severity.as_str())}),
    ];
    if let Some(tracker) = tracker_name(t) {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Tracker*\n{}", escape(&tracker))}));
    }
    if let Some(value) = &t.value {
        let value = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        fields.push(json!({"type": "mrkdwn", "text": format!("*Value*\n{}", escape(&value))}));
    }
    fields.push(
        json!({"type": "mrkdwn", "text": format!("*Started*\n{}", rfc3339::format(t.starts_at))}),
    );
    if let Some(ends_at) = t.ends_at {
        fields.push(
            json!({"type": "mrkdwn", "text": format!("*Resolved*\n{}", rfc3339::format(ends_at))}),
        );
    }
    let mut blocks = vec![json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": format!("*{}*", escape(&headline))},
        "fields": fields,
    })];
    if let Some(description) = t.annotations.get("description") {
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": escape(description)}],
        }));
    }
    json!({"color": colour(t), "blocks": blocks})
}

/// The message body.
pub fn body(n: &Notification) -> Value {
    let title = super::title(n, super::Marks::CHAT);
    let mut attachments: Vec<Value> = n
        .alerts
        .iter()
        .take(MAX_ALERTS)
        .map(|t| alert_attachment(t))
        .collect();
    if n.alerts.len() > MAX_ALERTS {
        attachments.push(json!({
            "color": "#AAAAAA",
            "blocks": [{"type": "context", "elements": [{"type": "mrkdwn",
                "text": format!("… and {} more alerts in this group", n.alerts.len() - MAX_ALERTS)}]}],
        }));
    }
    json!({
        // The text of the phone notification, and what clients without blocks show.
        "text": title,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": true}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
                "*{}* · {} · `{}`", escape(&n.receiver), escape(&n.reason), n.id)}]},
        ],
        "attachments": attachments,
    })
}
