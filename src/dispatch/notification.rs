//! A notification: one group of alerts for one channel, with the id receivers dedupe on.
//! It is stored in the outbox as JSON when decided and rendered per channel at each
//! attempt; rendering is deterministic, so every retry carries the same body.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::alert::{Ack, AlertStatus, AlertTransition, TrackerRef};
use crate::navixy::messages::Location;
use crate::rfc3339;
use crate::store::{HistoryEntry, HistoryKind};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// `msg_` + a UUIDv7: stable across retries and restarts (the Standard Webhooks
    /// `webhook-id`, the email's Message-ID).
    pub id: String,
    /// The channel's name.
    pub receiver: String,
    /// The route and the `group_by` values, e.g. `routes[0]:{rule="fuel_drain"}`.
    pub group_key: String,
    /// The `group_by` labels and their values.
    pub group_labels: BTreeMap<String, String>,
    /// `firing` when any alert in it is firing, else `resolved`.
    pub status: AlertStatus,
    /// Why it was sent: `first notification`, `new alerts`, `resolved`, `repeat`, with a
    /// `flapping` note when state changes were damped.
    pub reason: String,
    /// When it was decided (engine clock).
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    /// Firing alerts first, then resolved ones; shared with the group members that hold
    /// them.
    pub alerts: Vec<Arc<AlertTransition>>,
    /// What it tells: the alerts' states, or that one was acknowledged.
    #[serde(default, skip_serializing_if = "NotificationKind::is_alerts")]
    pub kind: NotificationKind,
    /// The acks in force of its alerts when it was decided, by fingerprint.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub acks: BTreeMap<String, Ack>,
    /// Each firing alert's signed ack link, by fingerprint (with `server.external_url`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ack_urls: BTreeMap<String, String>,
}

/// What a notification tells its channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// Alerts fired or resolved (or fire still: a repeat).
    #[default]
    Alerts,
    /// A firing alert was acknowledged (`send_acks`); the notification holds it alone.
    Acknowledged,
}

impl NotificationKind {
    fn is_alerts(&self) -> bool {
        *self == NotificationKind::Alerts
    }
}

impl Notification {
    /// `alert.acknowledged` for an ack's own notification; `alert.event` when it carries
    /// only occurrences of event rules; else `alert.firing` or `alert.resolved`.
    pub fn event_type(&self) -> &'static str {
        if self.kind.is_alerts()
            && !self.alerts.is_empty()
            && self.alerts.iter().all(|t| t.is_event())
        {
            return "alert.event";
        }
        match (self.kind, self.status) {
            (NotificationKind::Acknowledged, _) => "alert.acknowledged",
            (NotificationKind::Alerts, AlertStatus::Firing) => "alert.firing",
            (NotificationKind::Alerts, AlertStatus::Resolved) => "alert.resolved",
        }
    }

    /// One history entry per alert it carries (`sent` or `failed`).
    pub fn history(
        &self,
        kind: HistoryKind,
        at: DateTime<Utc>,
        detail: Option<&str>,
    ) -> Vec<HistoryEntry> {
        self.alerts
            .iter()
            .map(|t| HistoryEntry {
                channel: Some(self.receiver.clone()),
                notification_id: Some(self.id.clone()),
                detail: detail.map(str::to_owned),
                ..HistoryEntry::about(t, kind, at)
            })
            .collect()
    }

    /// The ack in force of one of its alerts when it was decided.
    pub fn ack_of(&self, t: &AlertTransition) -> Option<&Ack> {
        self.acks.get(&t.fingerprint.0)
    }

    /// The ack link of one of its alerts.
    pub fn ack_url_of(&self, t: &AlertTransition) -> Option<&str> {
        self.ack_urls.get(&t.fingerprint.0).map(String::as_str)
    }

    /// The JSON body webhooks receive (and `stdout` with `json: true` prints).
    pub fn webhook_body(&self) -> WebhookBody<'_> {
        WebhookBody {
            kind: self.event_type(),
            timestamp: rfc3339::format(self.created_at),
            data: WebhookData {
                receiver: &self.receiver,
                status: self.status.as_str(),
                group_key: &self.group_key,
                reason: &self.reason,
                alerts: self
                    .alerts
                    .iter()
                    .map(|t| WebhookAlert::new(t, self.ack_of(t), self.ack_url_of(t)))
                    .collect(),
            },
        }
    }

    /// The body as bytes.
    pub fn webhook_json(&self) -> Vec<u8> {
        // Serializing borrowed strings, maps and JSON values cannot fail.
        serde_json::to_vec(&self.webhook_body()).unwrap_or_default()
    }
}

/// The webhook body, field for field as `SPEC.md` shows it.
#[derive(Debug, Serialize)]
pub struct WebhookBody<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub timestamp: String,
    pub data: WebhookData<'a>,
}

#[derive(Debug, Serialize)]
pub struct WebhookData<'a> {
    pub receiver: &'a str,
    pub status: &'static str,
    pub group_key: &'a str,
    pub reason: &'a str,
    pub alerts: Vec<WebhookAlert<'a>>,
}

#[derive(Debug, Serialize)]
pub struct WebhookAlert<'a> {
    pub fingerprint: &'a str,
    pub status: &'static str,
    pub rule: &'a str,
    pub severity: &'static str,
    pub tracker: Option<&'a TrackerRef>,
    pub labels: &'a BTreeMap<String, String>,
    pub annotations: &'a BTreeMap<String, String>,
    pub value: Option<&'a serde_json::Value>,
    pub starts_at: String,
    pub ends_at: Option<String>,
    pub location: Option<&'a Location>,
    pub state: &'a serde_json::Map<String, serde_json::Value>,
    /// `true` for an occurrence of an event rule; absent otherwise, so that state
    /// alerts read as they always did.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub event: bool,
    /// An occurrence's own id, `"<fingerprint>:<starts_at in ms>"`; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurrence_id: Option<&'a str>,
    /// Who acknowledged it, when and why; `null` when nobody has.
    pub ack: Option<&'a Ack>,
    /// The signed link to acknowledge it (firing alerts, with `server.external_url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_url: Option<&'a str>,
}

impl<'a> WebhookAlert<'a> {
    fn new(t: &'a AlertTransition, ack: Option<&'a Ack>, ack_url: Option<&'a str>) -> Self {
        WebhookAlert {
            fingerprint: &t.fingerprint.0,
            status: t.status.as_str(),
            rule: &t.rule,
            severity: t.severity.as_str(),
            tracker: t.tracker.as_ref(),
            labels: &t.labels,
            annotations: &t.annotations,
            value: t.value.as_ref(),
            starts_at: rfc3339::format(t.starts_at),
            ends_at: t.ends_at.map(rfc3339::format),
            location: t.location.as_ref(),
            state: &t.state,
            event: t.is_event(),
            occurrence_id: t.occurrence_id.as_deref(),
            ack,
            ack_url,
        }
    }
}
