//! PagerDuty against a loopback Events API v2: the documented event shape (routing key,
//! action, dedup key, payload limits), one event per alert, trigger then resolve on the
//! same dedup key, and the documented answers (202, 400 permanent, 429 and 5xx retried).

use std::sync::Arc;

use chrono::Duration as Span;
use serde_json::{Value, json};

use navixy_alerts::alert::{AlertStatus, Severity};
use navixy_alerts::dispatch::SendError;
use navixy_alerts::dispatch::channels::sample_notification;

use super::channel_support::{Answer, Provider, Request, channel, json};
use super::support::{firing, resolved, t0};

const KEY: &str = "0123456789abcdef0123456789abcdef";

/// What PagerDuty checks of an event, as its docs say; `Err` is its 400 message.
fn validate(r: &Request) -> Result<Value, String> {
    if r.method != "POST" || r.path != "/v2/enqueue" {
        return Err(format!("{} {}", r.method, r.path));
    }
    if !r.header("content-type").starts_with("application/json") {
        return Err("content-type".into());
    }
    let e = r.json();
    if e["routing_key"].as_str().map(str::len) != Some(32) {
        return Err("Length of 'routing_key' is incorrect (should be 32 characters)".into());
    }
    let dedup = e["dedup_key"].as_str().ok_or("dedup_key missing")?;
    if dedup.is_empty() || dedup.len() > 255 {
        return Err("dedup_key".into());
    }
    match e["event_action"].as_str() {
        Some("trigger") => {
            let p = &e["payload"];
            let summary = p["summary"]
                .as_str()
                .ok_or("'payload.summary' is missing")?;
            if summary.is_empty() || summary.chars().count() > 1024 {
                return Err("payload.summary".into());
            }
            if p["source"].as_str().is_none_or(str::is_empty) {
                return Err("'payload.source' is missing".into());
            }
            if !matches!(
                p["severity"].as_str(),
                Some("critical" | "error" | "warning" | "info")
            ) {
                return Err("'payload.severity' is invalid".into());
            }
            if !p["custom_details"].is_object() {
                return Err("custom_details".into());
            }
        }
        Some("acknowledge" | "resolve") => {}
        _ => return Err("'event_action' is invalid".into()),
    }
    Ok(e)
}

fn pagerduty(r: &Request) -> Answer {
    match validate(r) {
        Ok(e) => json(
            202,
            json!({"status": "success", "message": "Event processed", "dedup_key": e["dedup_key"]}),
        ),
        Err(why) => json(
            400,
            json!({"status": "invalid event", "message": "Event object is invalid", "errors": [why]}),
        ),
    }
}

fn config(base: &str) -> String {
    format!("{{ type: pagerduty, routing_key: {KEY}, url: \"{base}/v2/enqueue\" }}")
}

#[tokio::test]
async fn each_alert_triggers_then_resolves_its_own_incident() {
    let pd = Provider::start(|r, _| pagerduty(r)).await;
    let ch = channel("pager", &config(&pd.base));
    let mut a = firing("fuel_drain", 21080);
    let mut b = firing("fuel_drain", 21081);
    b.severity = Severity::Warning;
    b.annotations.clear();
    let mut n = sample_notification("pager", t0());
    n.alerts = vec![Arc::new(a.clone()), Arc::new(b.clone())];
    ch.send(&n, t0()).await.unwrap();

    a = resolved(&a, t0() + Span::minutes(5));
    b = resolved(&b, t0() + Span::minutes(5));
    n.status = AlertStatus::Resolved;
    n.alerts = vec![Arc::new(a.clone()), Arc::new(b.clone())];
    ch.send(&n, t0()).await.unwrap();

    let events: Vec<Value> = pd.requests().iter().map(Request::json).collect();
    assert_eq!(events.len(), 4, "one event per alert");
    let actions: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["event_action"].as_str().unwrap(),
                e["dedup_key"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("trigger", &*a.fingerprint.0),
            ("trigger", &*b.fingerprint.0),
            ("resolve", &*a.fingerprint.0),
            ("resolve", &*b.fingerprint.0),
        ]
    );
    assert_eq!(
        events[0]["payload"]["summary"],
        "Truck 21080: 17.2 l of fuel lost in 10 min"
    );
    assert_eq!(events[0]["payload"]["source"], "Truck 21080");
    assert_eq!(events[0]["payload"]["severity"], "critical");
    assert_eq!(
        events[0]["payload"]["custom_details"]["tracker"]["id"],
        21080
    );
    assert_eq!(events[1]["payload"]["summary"], "fuel_drain on Truck 21081");
    assert_eq!(events[1]["payload"]["severity"], "warning");
    assert_eq!(
        events[2],
        json!({"routing_key": KEY, "event_action": "resolve", "dedup_key": a.fingerprint.0})
    );
}

#[tokio::test]
async fn answers_are_classified_and_never_show_the_routing_key() {
    // A 400 that quotes the key back.
    let pd = Provider::start(|r, i| match i {
        0 => json(400, json!({"status": "invalid event", "errors": [format!("bad key {}", r.json()["routing_key"])]})),
        1 => (429, vec![], String::new()),
        2 => (503, vec![("retry-after", "7".into())], String::new()),
        _ => pagerduty(r),
    })
    .await;
    let ch = channel("pager", &config(&pd.base));
    let n = sample_notification("pager", t0());
    let err = ch.send(&n, t0()).await.unwrap_err();
    assert!(matches!(err, SendError::Permanent { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("HTTP 400 Bad Request: "),
        "{err}"
    );
    assert!(!err.to_string().contains(KEY), "{err}");
    let err = ch.send(&n, t0()).await.unwrap_err();
    assert!(
        matches!(
            err,
            SendError::Retryable {
                retry_after: None,
                ..
            }
        ),
        "{err:?}"
    );
    let err = ch.send(&n, t0()).await.unwrap_err();
    assert!(
        matches!(err, SendError::Retryable { retry_after: Some(d), .. } if d.as_secs() == 7),
        "{err:?}"
    );
    ch.send(&n, t0()).await.unwrap();
    assert_eq!(pd.requests().len(), 4);
}
