//! Email to a real SMTP server (the in-process sink of [`super::smtp_sink`], on a free
//! loopback port): subject, envelope, headers, and the text and HTML parts as a mail
//! client sees them. The server starts after the first attempt, so delivery also has to
//! retry.

use crate::system::free_port;
use std::sync::Arc;
use std::time::Duration;

use navixy_alerts::alert::Fingerprint;
use navixy_alerts::clock::ManualClock;
use navixy_alerts::dispatch::{DispatchOptions, Dispatcher};
use navixy_alerts::store::{OutboxStatus, Store};

use super::smtp_sink::SmtpSink;
use super::support::{config, eventually, firing, shutdown, t0};

#[tokio::test]
async fn an_email_reaches_a_real_smtp_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(
        dir.path(),
        &format!(
            r#"
channels:
  mail:
    type: email
    smtp: {{ host: 127.0.0.1, port: {port}, security: none, timeout: 5s }}
    from: "Fleet alerts <alerts@example.com>"
    to: [ops@example.com, oncall@example.com]
routes:
  - channels: [mail]
notify: {{ group_wait: 0s }}
storage: {{ path: ":memory:" }}
"#
        ),
    );
    let store = Store::open(&cfg).unwrap();
    let (_stop, on_stop) = shutdown();
    let dispatcher = Dispatcher::start_with(
        &cfg,
        store.clone(),
        Arc::new(ManualClock::new(t0())),
        on_stop,
        DispatchOptions {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            drain_timeout: Duration::ZERO,
            ..DispatchOptions::default()
        },
    )
    .await
    .unwrap();
    dispatcher
        .submit(firing("fuel_drain", 21080))
        .await
        .unwrap();

    // No server yet: the first attempt fails and is kept for a retry.
    eventually("a failed first attempt", || {
        let store = store.clone();
        async move {
            let pending = store
                .list_outbox(Some(OutboxStatus::Pending), 10)
                .await
                .unwrap();
            pending.first().is_some_and(|e| e.attempts >= 1)
        }
    })
    .await;
    let sink = SmtpSink::start(port).await;

    eventually("the message", || {
        let count = sink.mails().len();
        async move { count >= 1 }
    })
    .await;
    eventually("the outbox row marked sent", || {
        let store = store.clone();
        async move {
            store
                .list_outbox(Some(OutboxStatus::Sent), 10)
                .await
                .unwrap()
                .len()
                == 1
        }
    })
    .await;
    let id = store
        .list_outbox(Some(OutboxStatus::Sent), 10)
        .await
        .unwrap()[0]
        .id
        .clone();

    let mail = sink.mails()[0].clone();
    assert_eq!(mail.mail_from, "alerts@example.com");
    assert_eq!(mail.rcpt_to, ["ops@example.com", "oncall@example.com"]);
    let shown = mail.shown();
    assert_eq!(
        shown.subject.as_deref(),
        Some("[FIRING] fuel_drain — Truck 21080")
    );
    assert_eq!(
        shown.from.as_deref(),
        Some("\"Fleet alerts\" <alerts@example.com>")
    );
    assert_eq!(
        shown.to.as_deref(),
        Some("ops@example.com, oncall@example.com")
    );
    assert_eq!(
        shown.message_id.as_deref(),
        Some(format!("<{id}@navixy-alerts>").as_str())
    );
    assert_eq!(shown.content_type, "multipart/alternative");
    let fingerprint = Fingerprint::new("fuel_drain", Some(21080), None);
    let text = shown.text.unwrap().replace("\r\n", "\n");
    assert_eq!(
        text,
        format!(
            "1 alert for mail (first notification).\n\
             \n\
             [FIRING] fuel_drain (critical) on Truck 21080 (tracker 21080)\n\
             \x20 Truck 21080: 17.2 l of fuel lost in 10 min\n\
             \x20 value: 17.2\n\
             \x20 started: 2026-01-01T10:00:00Z\n\
             \x20 location: 52.5, 13.4\n\
             \x20 state: ignition=false, speed=0\n\
             \x20 labels: team=logistics\n\
             \x20 fingerprint: {fingerprint}\n\
             \n\
             --\n\
             navixy-alerts notification {id}\n"
        )
    );
    let html = shown.html.unwrap().replace("\r\n", "\n");
    assert!(html.starts_with("<!DOCTYPE html>\n<html>"), "{html}");
    for part in [
        "<p>1 alert for <b>mail</b> (first notification).</p>",
        "<h3 style=\"border-left: 6px solid #E01E5A; padding-left: 8px\">[FIRING] fuel_drain (critical) on Truck 21080 (tracker 21080)</h3>",
        "<p>Truck 21080: 17.2 l of fuel lost in 10 min</p>",
        "<tr><th align=\"left\">value</th><td>17.2</td></tr>",
    ] {
        assert!(html.contains(part), "missing {part} in {html}");
    }
    assert_eq!(sink.mails().len(), 1, "one message, not a duplicate");
}
