//! Teams against a loopback Workflows webhook: a `message` with one Adaptive Card 1.4
//! attachment, within Teams' size limit, coloured by severity; answers classified, and the
//! secret URL never in an error.

use std::sync::Arc;

use chrono::Duration as Span;
use serde_json::Value;

use navixy_alerts::alert::{AlertStatus, Severity};
use navixy_alerts::dispatch::SendError;
use navixy_alerts::dispatch::channels::sample_notification;

use super::channel_support::{Answer, Provider, Request, channel};
use super::support::{firing, resolved, t0};

const PATH: &str = "/workflows/abc/triggers/manual/paths/invoke";
const SIG: &str = "sIgNaTuRe0123";

/// What a Workflows trigger accepts; anything else is a 400.
fn workflows(r: &Request) -> Answer {
    let bad = |why: &str| (400, vec![], why.to_owned());
    if r.method != "POST" || r.path != PATH {
        return bad("path");
    }
    if !r.header("content-type").starts_with("application/json") {
        return bad("content-type");
    }
    if r.body.len() > 28 * 1024 {
        return bad("too large");
    }
    let m = r.json();
    if m["type"] != "message" || m["attachments"].as_array().map(Vec::len) != Some(1) {
        return bad("not a message with one attachment");
    }
    let a = &m["attachments"][0];
    if a["contentType"] != "application/vnd.microsoft.card.adaptive" {
        return bad("contentType");
    }
    let card = &a["content"];
    if card["type"] != "AdaptiveCard" || card["version"] != "1.4" || !card["body"].is_array() {
        return bad("not an Adaptive Card 1.4");
    }
    (202, vec![], String::new())
}

fn containers(r: &Request) -> Vec<Value> {
    r.json()["attachments"][0]["content"]["body"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "Container")
        .cloned()
        .collect()
}

fn facts(container: &Value) -> Vec<(String, String)> {
    container["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "FactSet")
        .unwrap()["facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["title"].as_str().unwrap().into(),
                f["value"].as_str().unwrap().into(),
            )
        })
        .collect()
}

#[tokio::test]
async fn firing_and_resolved_cards() {
    let teams = Provider::start(|r, _| workflows(r)).await;
    let ch = channel(
        "teams",
        &format!(
            "{{ type: teams, webhook_url: \"{}{PATH}?api-version=1&sig={SIG}\" }}",
            teams.base
        ),
    );
    let a = firing("fuel_drain", 21080);
    let mut b = firing("fuel_drain", 21081);
    b.severity = Severity::Warning;
    let mut n = sample_notification("teams", t0());
    n.alerts = vec![Arc::new(a.clone()), Arc::new(b)];
    ch.send(&n, t0()).await.unwrap();
    n.status = AlertStatus::Resolved;
    n.alerts = vec![Arc::new(resolved(&a, t0() + Span::minutes(25)))];
    ch.send(&n, t0()).await.unwrap();

    let got = teams.requests();
    assert_eq!(got.len(), 2);
    let first = containers(&got[0]);
    assert_eq!(first.len(), 2);
    assert_eq!(first[0]["style"], "attention");
    assert_eq!(first[1]["style"], "warning");
    assert_eq!(
        facts(&first[0]),
        [
            ("Rule".into(), "fuel_drain (critical)".into()),
            ("Tracker".into(), "Truck 21080 (21080)".into()),
            ("Value".into(), "17.2".into()),
            ("Since".into(), "2026-01-01T10:00:00Z".into()),
        ]
    );
    let second = containers(&got[1]);
    assert_eq!(second[0]["style"], "good");
    assert_eq!(
        facts(&second[0])[4],
        ("Resolved".into(), "2026-01-01T10:25:00Z".into())
    );
}

#[tokio::test]
async fn refusals_are_classified_without_the_secret_url() {
    let teams = Provider::start(|_, i| match i {
        0 => (400, vec![], "bad card".into()),
        _ => (502, vec![], String::new()),
    })
    .await;
    let ch = channel(
        "teams",
        &format!(
            "{{ type: teams, webhook_url: \"{}{PATH}?sig={SIG}\" }}",
            teams.base
        ),
    );
    let n = sample_notification("teams", t0());
    let err = ch.send(&n, t0()).await.unwrap_err();
    assert_eq!(err, SendError::permanent("HTTP 400 Bad Request: bad card"));
    let err = ch.send(&n, t0()).await.unwrap_err();
    assert!(matches!(err, SendError::Retryable { .. }), "{err:?}");
    // Nobody listening: the network error names no URL.
    let ch = channel(
        "teams",
        &format!("{{ type: teams, webhook_url: \"http://127.0.0.1:1{PATH}?sig={SIG}\" }}"),
    );
    let err = ch.send(&n, t0()).await.unwrap_err().to_string();
    assert!(err.starts_with("cannot connect"), "{err}");
    assert!(!err.contains(SIG) && !err.contains("workflows"), "{err}");
}
