//! Channel payloads (snapshots: what users receive is visible in review), the Standard
//! Webhooks signature, and how HTTP answers are classified.

use std::collections::BTreeMap;

use chrono::Duration;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::*;
use crate::alert::{AlertStatus, Severity};
use crate::dispatch::notification::Notification;
use crate::dispatch::testing::{firing, resolved, t0};

fn notification(status: AlertStatus) -> Notification {
    let mut first = firing("fuel_drain", 21080);
    first.annotations.insert(
        "description".into(),
        "Fuel dropped while the vehicle was not moving".into(),
    );
    let mut second = firing("fuel_drain", 21081);
    second.severity = Severity::Warning;
    second.tracker.as_mut().unwrap().label = None;
    second.location = None;
    second.value = Some(serde_json::json!("n/a <unknown>"));
    let alerts = match status {
        AlertStatus::Firing => vec![first, second],
        AlertStatus::Resolved => vec![resolved(&first, t0() + Duration::minutes(25))],
    };
    Notification {
        id: "msg_0192f3a0c2b47d8e9f00112233445566".into(),
        receiver: "ops".into(),
        group_key: r#"routes[1]:{rule="fuel_drain"}"#.into(),
        group_labels: BTreeMap::from([("rule".into(), "fuel_drain".into())]),
        status,
        reason: match status {
            AlertStatus::Firing => "first notification".into(),
            AlertStatus::Resolved => "resolved".into(),
        },
        created_at: t0() + Duration::seconds(10),
        alerts,
    }
}

#[test]
fn standard_webhooks_test_vector() {
    let key = webhook::decode_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
    let body = br#"{"email":"test@example.com","username":"test_user"}"#;
    let signature = webhook::sign(&key, "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553, body);
    assert_eq!(signature, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    assert!(webhook::verify(
        &key,
        "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
        1649367553,
        body,
        &format!("v1,bm90IHRoaXMgb25l {signature}"),
    ));
    assert!(!webhook::verify(
        &key,
        "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
        1649367554,
        body,
        &signature
    ));
}

#[test]
fn a_bad_webhook_secret_is_a_config_error() {
    let err = webhook::decode_secret("whsec_not base64!").unwrap_err();
    assert!(err.starts_with("secret: must be `whsec_`"), "{err}");
    let config: crate::config::ChannelConfig = serde_json::from_value(serde_json::json!({
        "type": "webhook", "url": "http://127.0.0.1:1/hook", "secret": "whsec_%%%"
    }))
    .unwrap();
    let http = http_client().unwrap();
    let err = Channel::build("ops", &config, &http)
        .err()
        .unwrap()
        .to_string();
    assert!(err.starts_with("channels.ops: secret:"), "{err}");
}

#[test]
fn webhook_body_is_the_spec_shape() {
    insta::assert_json_snapshot!(
        "webhook_firing",
        notification(AlertStatus::Firing).webhook_body()
    );
    insta::assert_json_snapshot!(
        "webhook_resolved",
        notification(AlertStatus::Resolved).webhook_body()
    );
    // Field order as documented, and compact.
    let body = String::from_utf8(notification(AlertStatus::Firing).webhook_json()).unwrap();
    assert!(
        body.starts_with(r#"{"type":"alert.firing","timestamp":"2026-01-01T10:00:10Z","data":{"receiver":"ops","status":"firing","group_key":"#),
        "{body}"
    );
}

#[test]
fn slack_message() {
    insta::assert_json_snapshot!(
        "slack_firing",
        slack::body(&notification(AlertStatus::Firing))
    );
    insta::assert_json_snapshot!(
        "slack_resolved",
        slack::body(&notification(AlertStatus::Resolved))
    );
}

#[test]
fn alertmanager_alerts() {
    insta::assert_json_snapshot!(
        "alertmanager_firing",
        alertmanager::body(&notification(AlertStatus::Firing))
    );
    insta::assert_json_snapshot!(
        "alertmanager_resolved",
        alertmanager::body(&notification(AlertStatus::Resolved))
    );
}

#[test]
fn email_parts() {
    let templates = email::templates(None).unwrap();
    insta::assert_json_snapshot!(
        "email_firing",
        email::render(&templates, &notification(AlertStatus::Firing))
    );
    insta::assert_json_snapshot!(
        "email_resolved",
        email::render(&templates, &notification(AlertStatus::Resolved))
    );
}

#[test]
fn email_subject_templates() {
    let templates = email::templates(Some(
        "{{ alerts|length }}× {{ status }} on {{ receiver }}: {{ alerts[0].annotations.summary }}",
    ))
    .unwrap();
    let r = email::render(&templates, &notification(AlertStatus::Firing));
    assert_eq!(
        r.subject,
        "2× firing on ops: Truck 21080: 17.2 l of fuel lost in 10 min"
    );
    // A template that fails at render time falls back to the default subject.
    let templates = email::templates(Some("{{ alerts[5].rule.nope() }}")).unwrap();
    let r = email::render(&templates, &notification(AlertStatus::Resolved));
    assert_eq!(r.subject, "[RESOLVED] fuel_drain — Truck 21080");
    // A syntax error is a config error naming the field.
    let err = email::templates(Some("{{ status ")).err().unwrap();
    assert!(err.starts_with("subject: "), "{err}");
}

#[test]
fn email_addresses_are_checked() {
    let smtp: crate::config::SmtpConfig =
        serde_json::from_value(serde_json::json!({"host": "127.0.0.1", "security": "none"}))
            .unwrap();
    let err = email::EmailChannel::new(&smtp, "not an address", &["ops@example.com".into()], None)
        .err()
        .unwrap();
    assert!(err.starts_with("from: `not an address`"), "{err}");
    let err = email::EmailChannel::new(&smtp, "alerts@example.com", &[], None)
        .err()
        .unwrap();
    assert_eq!(err, "to: needs at least one address");
}

#[test]
fn stdout_lines() {
    let n = notification(AlertStatus::Firing);
    assert_eq!(
        stdout::line(&n),
        "2026-01-01T10:00:10Z FIRING ops msg_0192f3a0c2b47d8e9f00112233445566 (first notification) \
         | fuel_drain critical tracker=21080 \"Truck 21080\" value=17.2: Truck 21080: 17.2 l of fuel lost in 10 min \
         | fuel_drain warning tracker=21081 value=\"n/a <unknown>\": Truck 21081: 17.2 l of fuel lost in 10 min"
    );
    let n = notification(AlertStatus::Resolved);
    assert!(stdout::line(&n).starts_with("2026-01-01T10:00:10Z RESOLVED ops "));
}

#[test]
fn http_statuses_are_classified() {
    for code in [500, 502, 503, 408, 429] {
        assert!(is_retryable(StatusCode::from_u16(code).unwrap()), "{code}");
    }
    for code in [400, 401, 403, 404, 410, 422] {
        assert!(!is_retryable(StatusCode::from_u16(code).unwrap()), "{code}");
    }
}

#[test]
fn retry_after_reads_seconds_and_dates() {
    let mut headers = HeaderMap::new();
    assert_eq!(retry_after(&headers, t0()), None);
    headers.insert("retry-after", "120".parse().unwrap());
    assert_eq!(
        retry_after(&headers, t0()),
        Some(std::time::Duration::from_secs(120))
    );
    headers.insert(
        "retry-after",
        "Thu, 01 Jan 2026 10:01:30 GMT".parse().unwrap(),
    );
    assert_eq!(
        retry_after(&headers, t0()),
        Some(std::time::Duration::from_secs(90))
    );
    headers.insert("retry-after", "soon".parse().unwrap());
    assert_eq!(retry_after(&headers, t0()), None);
}

#[test]
fn bad_urls_name_the_channel_and_field() {
    let http = http_client().unwrap();
    let config: crate::config::ChannelConfig =
        serde_json::from_value(serde_json::json!({"type": "alertmanager", "url": "ftp://x"}))
            .unwrap();
    let err = Channel::build("am", &config, &http)
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        err,
        "channels.am: url: `ftp://x` is not a valid http(s) URL"
    );
    let config: crate::config::ChannelConfig = serde_json::from_value(
        serde_json::json!({"type": "slack", "webhook_url": "hooks.slack.com/secret"}),
    )
    .unwrap();
    let err = Channel::build("slack", &config, &http)
        .err()
        .unwrap()
        .to_string();
    assert!(!err.contains("secret"), "the URL is a secret: {err}");
}

#[test]
fn check_reports_the_first_bad_channel_or_route() {
    use crate::dispatch::Dispatcher;
    use crate::dispatch::testing::config;
    assert!(Dispatcher::check(&config(
        "channels: { ops: { type: webhook, url: \"http://127.0.0.1:1/\", secret: \"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\" } }\n"
    ))
    .is_ok());
    let err = Dispatcher::check(&config(
        "channels: { mail: { type: email, smtp: { host: h }, from: a@b.c, to: [x@y.z], subject: \"{{ oops \" } }\n",
    ))
    .err()
    .unwrap()
    .to_string();
    assert!(err.starts_with("channels.mail: subject: "), "{err}");
}
