//! What a client sends on the event stream: `subscribe` and `unsubscribe` messages.
//!
//! The `hash` travels inside each message (there is no header or cookie on the
//! WebSocket), so these types hold it as a plain string only for the moment they are
//! serialized; nothing here logs them. The simulator deserializes the same types, which
//! keeps both ends of the loopback tests honest about the shape. See `PROTOCOL.md`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{NavixyConfig, StateFormat, Subscription, TrackerSelection};

use super::messages::TrackerId;

/// Navixy accepts at most this many trackers in one `state` request.
pub const MAX_STATE_TRACKERS: usize = 100;
/// Navixy accepts at most this many trackers in one `iot_monitor` request.
pub const MAX_IOT_TRACKERS: usize = 10;

/// Which trackers a request covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Target {
    All,
    Selected { tracker_ids: Vec<TrackerId> },
}

impl Target {
    /// Whether `id` is covered.
    pub fn covers(&self, id: TrackerId) -> bool {
        match self {
            Target::All => true,
            Target::Selected { tracker_ids } => tracker_ids.contains(&id),
        }
    }
}

/// One entry of `requests` in a `subscribe` message, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SubscribeRequest {
    StateBatch {
        target: Target,
        /// A duration string such as `"5s"` (Navixy publishes no grammar; see [`rate_limit`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate_limit: Option<String>,
        #[serde(default)]
        format: StateFormat,
    },
    ReadingsBatch {
        target: Target,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate_limit: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sensor_type: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        include_components: Option<bool>,
    },
    /// One `state` event per tracker change; at most [`MAX_STATE_TRACKERS`] trackers.
    State {
        trackers: Vec<TrackerId>,
        #[serde(default)]
        format: StateFormat,
    },
    /// The Data Stream Analyzer; at most [`MAX_IOT_TRACKERS`] trackers.
    IotMonitor {
        target: Target,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate_limit: Option<String>,
    },
}

impl SubscribeRequest {
    /// The event name this request subscribes to (`state_batch`, ...).
    pub fn event(&self) -> &'static str {
        match self {
            SubscribeRequest::StateBatch { .. } => "state_batch",
            SubscribeRequest::ReadingsBatch { .. } => "readings_batch",
            SubscribeRequest::State { .. } => "state",
            SubscribeRequest::IotMonitor { .. } => "iot_monitor",
        }
    }
}

/// A client frame, tagged by `action`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ClientMessage {
    Subscribe {
        hash: String,
        #[serde(default)]
        requests: Vec<SubscribeRequest>,
        /// Asks for ISO-8601 times with an offset instead of offset-less local times.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        iso_datetime: bool,
    },
    /// Both the request form and the legacy documented form (`events` + `trackers`).
    Unsubscribe {
        hash: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        requests: Vec<SubscribeRequest>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        events: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        trackers: Vec<TrackerId>,
    },
}

impl ClientMessage {
    /// The JSON text of this message.
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail: no maps with non-string keys, no
        // custom serializers that error.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Formats a `rate_limit` the way Navixy's samples write it: `"5s"`, or `"500ms"` below a
/// second or for fractions.
pub fn rate_limit(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis().max(1))
    }
}

/// Builds the `subscribe` message for a source config.
///
/// `known_trackers` is the latest `tracker/list` (tracker ids): `state` and `iot_monitor`
/// take explicit ids with a cap, so with `trackers: all` they use the first ids of the
/// list. Returns the message and warnings for the caller to log (caps applied, requests
/// dropped for want of ids).
pub fn subscribe_message(
    config: &NavixyConfig,
    hash: &str,
    known_trackers: &[TrackerId],
) -> (ClientMessage, Vec<String>) {
    let mut warnings = Vec::new();
    let target = match &config.trackers {
        TrackerSelection::All => Target::All,
        TrackerSelection::Selected(ids) => Target::Selected {
            tracker_ids: ids.clone(),
        },
    };
    let explicit_ids = |cap: usize, event: &str, warnings: &mut Vec<String>| -> Vec<TrackerId> {
        let ids: &[TrackerId] = match &config.trackers {
            TrackerSelection::All => known_trackers,
            TrackerSelection::Selected(ids) => ids,
        };
        if ids.len() > cap {
            warnings.push(format!(
                "`{event}` takes at most {cap} trackers; subscribing the first {cap} of {} (use state_batch for more)",
                ids.len()
            ));
        }
        ids.iter().take(cap).copied().collect()
    };
    let rate = Some(rate_limit(config.rate_limit));
    let mut requests = Vec::with_capacity(config.subscribe.len());
    for subscription in &config.subscribe {
        let request = match subscription {
            Subscription::StateBatch => SubscribeRequest::StateBatch {
                target: target.clone(),
                rate_limit: rate.clone(),
                format: config.format,
            },
            Subscription::ReadingsBatch => SubscribeRequest::ReadingsBatch {
                target: target.clone(),
                rate_limit: rate.clone(),
                sensor_type: None,
                include_components: None,
            },
            Subscription::State => {
                let trackers = explicit_ids(MAX_STATE_TRACKERS, "state", &mut warnings);
                if trackers.is_empty() {
                    warnings.push("`state` needs tracker ids and none are known yet; skipped until the tracker list loads".into());
                    continue;
                }
                SubscribeRequest::State {
                    trackers,
                    format: config.format,
                }
            }
            Subscription::IotMonitor => {
                let ids = explicit_ids(MAX_IOT_TRACKERS, "iot_monitor", &mut warnings);
                if ids.is_empty() {
                    warnings.push("`iot_monitor` needs tracker ids and none are known yet; skipped until the tracker list loads".into());
                    continue;
                }
                SubscribeRequest::IotMonitor {
                    target: Target::Selected { tracker_ids: ids },
                    rate_limit: rate.clone(),
                }
            }
        };
        requests.push(request);
    }
    (
        ClientMessage::Subscribe {
            hash: hash.to_string(),
            requests,
            iso_datetime: true,
        },
        warnings,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config(yaml: &str) -> NavixyConfig {
        let text = format!("source:\n  navixy:\n{yaml}");
        let config = Config::from_yaml(&text, std::path::Path::new("t.yaml"), |_| None);
        match config {
            Ok(c) => c.sources()[0]
                .navixy
                .clone()
                .unwrap_or_else(|| panic!("no navixy")),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn default_subscribe_matches_the_documented_shape() {
        let c = config("    api_url: https://api.eu.navixy.com/v2\n    hash: abc\n");
        let (msg, warnings) = subscribe_message(&c, "f4bf1b754034213653dad99c78c4b237", &[]);
        assert!(warnings.is_empty());
        let json: serde_json::Value = serde_json::from_str(&msg.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "action": "subscribe",
                "hash": "f4bf1b754034213653dad99c78c4b237",
                "requests": [
                    {"type": "state_batch", "target": {"type": "all"}, "rate_limit": "5s", "format": "full"},
                    {"type": "readings_batch", "target": {"type": "all"}, "rate_limit": "5s"}
                ],
                "iso_datetime": true
            })
        );
    }

    #[test]
    fn selected_trackers_and_caps() {
        let ids: Vec<String> = (1..=12).map(|i| i.to_string()).collect();
        let c = config(&format!(
            "    api_url: http://x/v2\n    hash: abc\n    trackers: [{}]\n    subscribe: [state, iot_monitor, readings_batch]\n    format: compact\n    rate_limit: 1500ms\n",
            ids.join(", ")
        ));
        let (msg, warnings) = subscribe_message(&c, "h", &[]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let ClientMessage::Subscribe { requests, .. } = msg else {
            panic!("not a subscribe")
        };
        assert_eq!(
            requests[0],
            SubscribeRequest::State {
                trackers: (1..=12).collect(),
                format: StateFormat::Compact
            }
        );
        assert_eq!(
            requests[1],
            SubscribeRequest::IotMonitor {
                target: Target::Selected {
                    tracker_ids: (1..=10).collect()
                },
                rate_limit: Some("1500ms".into())
            }
        );
        assert_eq!(requests[2].event(), "readings_batch");
    }

    #[test]
    fn state_with_all_uses_the_tracker_list_or_waits_for_it() {
        let c = config("    api_url: http://x/v2\n    hash: abc\n    subscribe: [state]\n");
        let (msg, warnings) = subscribe_message(&c, "h", &[]);
        assert_eq!(warnings.len(), 1);
        let ClientMessage::Subscribe { requests, .. } = msg else {
            panic!()
        };
        assert!(requests.is_empty());
        let (msg, _) = subscribe_message(&c, "h", &[7, 8]);
        let ClientMessage::Subscribe { requests, .. } = msg else {
            panic!()
        };
        assert_eq!(
            requests,
            vec![SubscribeRequest::State {
                trackers: vec![7, 8],
                format: StateFormat::Full
            }]
        );
    }

    #[test]
    fn both_unsubscribe_forms_parse() {
        let legacy: ClientMessage = serde_json::from_str(
            r#"{"action":"unsubscribe","hash":"h","events":["state"],"trackers":[15568]}"#,
        )
        .unwrap();
        assert_eq!(
            legacy,
            ClientMessage::Unsubscribe {
                hash: "h".into(),
                requests: vec![],
                events: vec!["state".into()],
                trackers: vec![15568]
            }
        );
    }

    #[test]
    fn rate_limit_strings() {
        assert_eq!(rate_limit(Duration::from_secs(5)), "5s");
        assert_eq!(rate_limit(Duration::from_millis(500)), "500ms");
        assert_eq!(rate_limit(Duration::ZERO), "1ms");
    }
}
