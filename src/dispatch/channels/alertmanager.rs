//! Alertmanager: `POST {url}/api/v2/alerts` with the alerts in Alertmanager's own shape,
//! so an existing Alertmanager can route, group and silence them.
//!
//! Labels are `alertname`, `tracker_id` (not for engine alerts), `severity`, `alert_key`
//! (when the rule has a `key`) and the rule's labels; ours win over a rule label of the
//! same name. `endsAt` is set on resolve. Alertmanager resolves an alert by itself once
//! `resolve_timeout` passes without a resend, so set its `resolve_timeout` above the
//! route's `repeat_interval` (see docs/delivery.md).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::{JsonEndpoint, SendError, parse_url};
use crate::alert::{AlertStatus, AlertTransition};
use crate::dispatch::notification::Notification;
use crate::rfc3339;

pub struct AlertmanagerChannel(JsonEndpoint);

impl AlertmanagerChannel {
    pub fn new(
        http: reqwest::Client,
        url: &str,
        timeout: Duration,
    ) -> Result<AlertmanagerChannel, String> {
        let endpoint = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
        let url = parse_url("url", &endpoint)
            .map_err(|_| format!("url: `{url}` is not a valid http(s) URL"))?;
        Ok(AlertmanagerChannel(JsonEndpoint { http, url, timeout }))
    }

    pub async fn send(&self, n: &Notification) -> Result<(), SendError> {
        self.0.post(&body(n)).await
    }
}

/// One alert of `postableAlerts`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert<'a> {
    pub labels: BTreeMap<&'a str, String>,
    pub annotations: &'a BTreeMap<String, String>,
    pub starts_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
}

fn alert(t: &AlertTransition) -> PostableAlert<'_> {
    let mut labels: BTreeMap<&str, String> = t
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    labels.insert("alertname", t.rule.to_string());
    labels.insert("severity", t.severity.as_str().to_owned());
    if let Some(tracker) = &t.tracker {
        labels.insert("tracker_id", tracker.id.to_string());
    }
    if let Some(key) = &t.key {
        labels.insert("alert_key", key.clone());
    }
    let ends_at = match t.status {
        AlertStatus::Resolved => Some(rfc3339::format(t.ends_at.unwrap_or(t.at))),
        AlertStatus::Firing => None,
    };
    PostableAlert {
        labels,
        annotations: &t.annotations,
        starts_at: rfc3339::format(t.starts_at),
        ends_at,
    }
}

/// The request body: a JSON array of alerts.
pub fn body(n: &Notification) -> Vec<PostableAlert<'_>> {
    n.alerts.iter().map(|t| alert(t)).collect()
}
