//! Channel payloads (snapshots: what users receive is visible in review), the Standard
//! Webhooks signature, and how HTTP answers are classified.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Duration;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::*;
use crate::alert::{AlertStatus, Severity};
use crate::dispatch::notification::{Notification, NotificationKind};
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
        alerts: alerts.into_iter().map(Arc::new).collect(),
        kind: NotificationKind::Alerts,
        acks: BTreeMap::new(),
        ack_urls: BTreeMap::new(),
    }
}

/// Two occurrences of an event rule, as one notification; with `mixed`, the first
/// shares it with a firing and a resolved state alert.
fn occurrences(mixed: bool) -> Notification {
    let occurrence = |tracker: i64, minute: i64| {
        let mut t = firing("ignition_on", tracker);
        t.severity = Severity::Info;
        t.value = None;
        t.starts_at = t0() + Duration::minutes(minute);
        t.at = t.starts_at;
        t.occurrence_id = Some(format!(
            "{}:{}",
            t.fingerprint,
            t.starts_at.timestamp_millis()
        ));
        t.annotations =
            BTreeMap::from([("summary".into(), format!("Truck {tracker}: ignition on"))]);
        t
    };
    let mut n = notification(AlertStatus::Firing);
    n.group_key = r#"routes[1]:{rule="ignition_on"}"#.into();
    n.group_labels = BTreeMap::from([("rule".into(), "ignition_on".into())]);
    n.alerts = if mixed {
        let state = notification(AlertStatus::Firing).alerts.remove(0);
        let gone = notification(AlertStatus::Resolved).alerts.remove(0);
        vec![state, Arc::new(occurrence(21080, 1)), gone]
    } else {
        vec![
            Arc::new(occurrence(21080, 1)),
            Arc::new(occurrence(21081, 2)),
        ]
    };
    n
}

#[test]
fn an_occurrence_is_titled_an_event_everywhere_and_a_mixed_group_leads_with_firing() {
    let events = occurrences(false);
    let mixed = occurrences(true);
    let firing = notification(AlertStatus::Firing);
    let resolved = notification(AlertStatus::Resolved);
    let chat = |n: &Notification| title(n, Marks::CHAT);
    assert_eq!(chat(&events), "🔔 [EVENT:2] ignition_on");
    assert_eq!(
        chat(&mixed),
        "🔥 [FIRING:1, EVENT:1, RESOLVED:1] fuel_drain, ignition_on"
    );
    // State alerts keep their titles.
    assert_eq!(chat(&firing), "🔥 [FIRING:2] fuel_drain");
    assert_eq!(chat(&resolved), "✅ [RESOLVED:1] fuel_drain");
    assert_eq!(title(&events, Marks::PLAIN), "[EVENT:2] ignition_on");

    let subject = |n: &Notification| email::render(&email::templates(None).unwrap(), n).subject;
    assert_eq!(subject(&events), "[EVENT:2] ignition_on");
    let mut one = occurrences(false);
    one.alerts.truncate(1);
    assert_eq!(subject(&one), "[EVENT] ignition_on — Truck 21080");
    assert_eq!(subject(&mixed), "[FIRING:3] fuel_drain, ignition_on");
    assert_eq!(subject(&firing), "[FIRING:2] fuel_drain");
    assert_eq!(subject(&resolved), "[RESOLVED] fuel_drain — Truck 21080");

    assert_eq!(
        stdout::line(&events),
        "2026-01-01T10:00:10Z EVENT ops msg_0192f3a0c2b47d8e9f00112233445566 (first notification) \
         | ignition_on info tracker=21080 \"Truck 21080\": Truck 21080: ignition on \
         | ignition_on info tracker=21081 \"Truck 21081\": Truck 21081: ignition on"
    );
    let line = stdout::line(&mixed);
    assert!(
        line.starts_with("2026-01-01T10:00:10Z FIRING ops "),
        "{line}"
    );
    assert!(
        line.contains("| ignition_on info event tracker=21080"),
        "{line}"
    );
    assert!(
        line.contains("| fuel_drain critical resolved tracker=21080"),
        "{line}"
    );
}

#[test]
fn occurrence_payloads() {
    let n = occurrences(false);
    insta::assert_json_snapshot!("slack_event", slack::body(&n));
    insta::assert_json_snapshot!("teams_event", teams::body(&n));
    insta::assert_snapshot!("telegram_event", telegram::messages(&n).join("\n---\n"));
    let templates = email::templates(None).unwrap();
    insta::assert_json_snapshot!("email_event", email::render(&templates, &n));
    insta::assert_json_snapshot!("webhook_event", n.webhook_body());
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

const ROUTING_KEY: &str = "R0UT1NGKEYR0UT1NGKEYR0UT1NGKEY12";

#[test]
fn pagerduty_events() {
    insta::assert_json_snapshot!(
        "pagerduty_firing",
        pagerduty::events(&notification(AlertStatus::Firing), ROUTING_KEY)
    );
    insta::assert_json_snapshot!(
        "pagerduty_resolved",
        pagerduty::events(&notification(AlertStatus::Resolved), ROUTING_KEY)
    );
}

/// What a `send_acks` channel gets when the first alert is acknowledged.
fn acknowledged() -> Notification {
    let alert = firing("fuel_drain", 21080);
    let ack = crate::alert::Ack {
        by: "ana".into(),
        at: t0() + Duration::minutes(5),
        comment: "driver called".into(),
    };
    crate::dispatch::ack::notification(
        "ops",
        r#"routes[1]:{rule="fuel_drain"}"#,
        &alert,
        &ack,
        t0() + Duration::minutes(5),
    )
}

#[test]
fn an_ack_is_an_acknowledge_event_and_an_acknowledged_webhook() {
    let n = acknowledged();
    let events = pagerduty::events(&n, ROUTING_KEY);
    assert_eq!(
        events,
        [serde_json::json!({
            "routing_key": ROUTING_KEY,
            "event_action": "acknowledge",
            "dedup_key": n.alerts[0].fingerprint.0,
        })]
    );
    let body = serde_json::to_value(n.webhook_body()).unwrap();
    assert_eq!(body["type"], "alert.acknowledged");
    assert_eq!(body["data"]["status"], "firing");
    assert_eq!(body["data"]["reason"], "acknowledged by ana: driver called");
    assert_eq!(
        body["data"]["alerts"][0]["ack"],
        serde_json::json!({"by": "ana", "at": "2026-01-01T10:05:00Z", "comment": "driver called"})
    );
    // Through the outbox (JSON) and back, the body is the same.
    let stored: Notification = serde_json::from_str(&serde_json::to_string(&n).unwrap()).unwrap();
    assert_eq!(stored, n);
}

#[test]
fn ack_links_appear_on_the_alerts_that_have_them() {
    let mut n = notification(AlertStatus::Firing);
    let fp = n.alerts[0].fingerprint.0.clone();
    n.ack_urls
        .insert(fp.clone(), "https://alerts.example.com/ack/t".into());
    let body = serde_json::to_value(n.webhook_body()).unwrap();
    let alerts = body["data"]["alerts"].as_array().unwrap();
    assert_eq!(alerts[0]["ack_url"], "https://alerts.example.com/ack/t");
    assert!(alerts[1].get("ack_url").is_none());
    assert!(alerts.iter().all(|a| a["ack"].is_null()));
}

#[test]
fn pagerduty_summary_source_and_severity() {
    let mut n = notification(AlertStatus::Firing);
    // An engine alert: no tracker, no summary.
    Arc::make_mut(&mut n.alerts[1]).tracker = None;
    Arc::make_mut(&mut n.alerts[1]).annotations.clear();
    Arc::make_mut(&mut n.alerts[1]).severity = Severity::Info;
    Arc::make_mut(&mut n.alerts[0])
        .annotations
        .insert("summary".into(), "é".repeat(2000));
    let events = pagerduty::events(&n, ROUTING_KEY);
    let summary = events[0]["payload"]["summary"].as_str().unwrap();
    assert_eq!(summary.chars().count(), 1024);
    assert!(summary.ends_with('…'));
    assert_eq!(events[0]["payload"]["source"], "Truck 21080");
    assert_eq!(events[1]["payload"]["source"], "navixy-alerts");
    assert_eq!(events[1]["payload"]["summary"], "fuel_drain");
    assert_eq!(events[1]["payload"]["severity"], "info");
    Arc::make_mut(&mut n.alerts[1]).tracker = Some(crate::alert::TrackerRef {
        id: 7,
        label: None,
        source_id: None,
    });
    let events = pagerduty::events(&n, ROUTING_KEY);
    assert_eq!(events[1]["payload"]["source"], "7");
    assert_eq!(events[1]["payload"]["summary"], "fuel_drain on 7");
}

#[test]
fn telegram_messages() {
    insta::assert_snapshot!(
        "telegram_firing",
        telegram::messages(&notification(AlertStatus::Firing)).join("\n---\n")
    );
    insta::assert_snapshot!(
        "telegram_resolved",
        telegram::messages(&notification(AlertStatus::Resolved)).join("\n---\n")
    );
}

#[test]
fn telegram_escapes_every_user_string() {
    let mut n = notification(AlertStatus::Firing);
    Arc::make_mut(&mut n.alerts[0])
        .annotations
        .insert("summary".into(), "<b>fuel</b> & <script>".into());
    n.receiver = "ops<&>".into();
    let text = telegram::messages(&n).join("");
    assert!(
        text.contains("&lt;b&gt;fuel&lt;/b&gt; &amp; &lt;script&gt;"),
        "{text}"
    );
    assert!(text.contains("ops&lt;&amp;&gt;"), "{text}");
    assert!(text.contains("n/a &lt;unknown&gt;"), "{text}");
    assert!(!text.contains("<script>"));
}

#[test]
fn telegram_splits_long_groups_between_alerts() {
    let mut n = notification(AlertStatus::Firing);
    let template = n.alerts[0].clone();
    n.alerts = (0..60)
        .map(|i| {
            let mut a = template.clone();
            Arc::make_mut(&mut a).annotations.insert(
                "description".into(),
                format!("alert {i} {}", "x".repeat(150)),
            );
            a
        })
        .collect();
    let messages = telegram::messages(&n);
    assert!(messages.len() > 1, "{}", messages.len());
    let total = messages.len();
    for (i, m) in messages.iter().enumerate() {
        assert!(m.encode_utf16().count() <= telegram::MAX_MESSAGE);
        assert!(m.contains(&format!("({}/{total})", i + 1)), "{m}");
    }
    // Every alert once, in order, none cut in half.
    let all = messages.join("");
    let mut last = 0;
    for i in 0..60 {
        let at = all.find(&format!("alert {i} ")).unwrap();
        assert!(at >= last);
        last = at;
    }
    // One alert longer than a message is shortened, not split.
    n.alerts.truncate(1);
    Arc::make_mut(&mut n.alerts[0])
        .annotations
        .insert("description".into(), "<&>".repeat(5000));
    let messages = telegram::messages(&n);
    assert_eq!(messages.len(), 1);
    assert!(messages[0].encode_utf16().count() <= telegram::MAX_MESSAGE);
    assert!(messages[0].contains("…</i>"), "{}", messages[0]);
}

#[test]
fn teams_card() {
    insta::assert_json_snapshot!(
        "teams_firing",
        teams::body(&notification(AlertStatus::Firing))
    );
    insta::assert_json_snapshot!(
        "teams_resolved",
        teams::body(&notification(AlertStatus::Resolved))
    );
}

#[test]
fn teams_cuts_large_groups() {
    let mut n = notification(AlertStatus::Firing);
    let template = n.alerts[0].clone();
    n.alerts = (0..30)
        .map(|_| {
            let mut a = template.clone();
            Arc::make_mut(&mut a)
                .annotations
                .insert("description".into(), "y".repeat(2000));
            a
        })
        .collect();
    let body = teams::body(&n);
    assert!(body.to_string().len() <= teams::MAX_BYTES);
    let items = body["attachments"][0]["content"]["body"]
        .as_array()
        .unwrap();
    let last = items.last().unwrap()["text"].as_str().unwrap();
    assert!(
        last.starts_with("… and ") && last.ends_with(" more alerts in this group"),
        "{last}"
    );
}

#[test]
fn webhook_body_templates_render_forms_and_check_json() {
    let form = webhook::BodyTemplate::new(
        "to=%2B4915100000&text={{ (alerts[0].annotations.summary ~ ' [' ~ status ~ ']')|urlencode }}",
        Some("application/x-www-form-urlencoded"),
    )
    .unwrap();
    let body = form.render(&notification(AlertStatus::Firing)).unwrap();
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "to=%2B4915100000&text=Truck%2021080%3A%2017.2%20l%20of%20fuel%20lost%20in%2010%20min%20%5Bfiring%5D"
    );
    let json = webhook::BodyTemplate::new(
        r#"{"text": {{ alerts[0].annotations.summary|tojson }}, "n": {{ alerts|length }}}"#,
        None,
    )
    .unwrap();
    let body = json.render(&notification(AlertStatus::Firing)).unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"text": "Truck 21080: 17.2 l of fuel lost in 10 min", "n": 2})
    );
    // Unquoted text is not JSON: caught against the sample, at check and start.
    let err = webhook::BodyTemplate::new(r#"{"text": {{ alerts[0].rule }}}"#, None)
        .err()
        .unwrap();
    assert!(err.starts_with("body: renders invalid JSON"), "{err}");
    let err = webhook::BodyTemplate::new("a\n{{ status | nope }}", Some("text/plain"))
        .err()
        .unwrap();
    assert!(err.starts_with("body: template line 2: "), "{err}");
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn check_names_the_file_and_line_of_a_bad_body() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let text = "source: { simulator: {} }\nchannels:\n  console: { type: stdout }\n  sms:\n    type: webhook\n    url: http://127.0.0.1:1/sms\n    content_type: application/json\n    body: |\n      {\"text\": {{ alerts[0].rule }}}\n";
    std::fs::write(&path, text).unwrap();
    let config = crate::config::Config::load(&path).unwrap();
    let err = validate(&config).unwrap_err();
    assert!(
        err.starts_with(&format!(
            "{}:8:5: channels.sms.body: renders invalid JSON",
            path.display()
        )),
        "{err}"
    );
    // Flow style: the key on the channel's line.
    let text = "source: { simulator: {} }\nchannels:\n  sms: { type: webhook, url: \"http://x/\", body: \"{{ oops \" }\n";
    std::fs::write(&path, text).unwrap();
    let config = crate::config::Config::load(&path).unwrap();
    let err = validate(&config).unwrap_err();
    assert!(
        err.starts_with(&format!(
            "{}:3:43: channels.sms.body: template line 1: syntax error",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn redirects_are_permanent_and_hide_the_location() {
    let e = failure(StatusCode::TEMPORARY_REDIRECT, "", None);
    assert_eq!(
        e,
        SendError::permanent(
            "HTTP 307 Temporary Redirect: the receiver redirects, and redirects are not followed \
             (set the channel's URL to the final address)"
        )
    );
    assert!(matches!(
        failure(StatusCode::TOO_MANY_REQUESTS, "", Some(std::time::Duration::from_secs(3))),
        SendError::Retryable { retry_after: Some(d), .. } if d.as_secs() == 3
    ));
}

#[test]
fn new_channels_check_their_config_without_showing_secrets() {
    let http = http_client().unwrap();
    let build = |v: serde_json::Value| {
        let config: crate::config::ChannelConfig = serde_json::from_value(v).unwrap();
        Channel::build("x", &config, &http)
            .err()
            .map(|e| e.to_string())
    };
    assert_eq!(
        build(serde_json::json!({"type": "telegram", "bot_token": "12:se cret", "chat_id": 5}))
            .unwrap(),
        "channels.x: bot_token: must be the token BotFather gave (`123456:ABC-DEF...`)"
    );
    let err = build(serde_json::json!({"type": "teams", "webhook_url": "sig=secret"})).unwrap();
    assert!(!err.contains("secret"), "{err}");
    assert_eq!(
        build(serde_json::json!({"type": "pagerduty", "routing_key": " "})).unwrap(),
        "channels.x: routing_key: must not be empty (the integration key of an Events API v2 integration)"
    );
    assert!(
        build(serde_json::json!({"type": "telegram", "bot_token": "12:abc", "chat_id": "@fleet"}))
            .is_none()
    );
    assert_eq!(
        build(
            serde_json::json!({"type": "webhook", "url": "http://x/", "content_type": "text/plain"})
        )
        .unwrap(),
        "channels.x: content_type: only with `body:` (the default body is JSON)"
    );
}

#[test]
fn the_documented_body_templates_work() {
    let sms = webhook::BodyTemplate::new(
        "to=%2B4915100000000&text={{ (alerts[0].annotations.summary ~ ' [' ~ status ~ ']')|urlencode }}",
        Some("application/x-www-form-urlencoded"),
    )
    .unwrap();
    assert!(sms.render(&notification(AlertStatus::Resolved)).is_ok());
    let chat = webhook::BodyTemplate::new(
        "{\"text\": {{ (status|upper ~ ': ' ~ alerts|map(attribute='rule')|unique|join(', '))|tojson }},\n \"id\": {{ id|tojson }}}\n",
        None,
    )
    .unwrap();
    let body = chat.render(&notification(AlertStatus::Firing)).unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"text": "FIRING: fuel_drain", "id": "msg_0192f3a0c2b47d8e9f00112233445566"})
    );
}
