//! Email to a real SMTP server (aiosmtpd, started as a subprocess on a free loopback
//! port): subject, envelope, headers, and the text and HTML parts as a mail client sees
//! them. The server starts after the first attempt, so delivery also has to retry.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use navixy_alerts::alert::Fingerprint;
use navixy_alerts::clock::ManualClock;
use navixy_alerts::dispatch::{DispatchOptions, Dispatcher};
use navixy_alerts::store::{OutboxStatus, Store};

use super::support::{config, eventually, firing, shutdown, t0};

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the SMTP sink; killed when the handle is dropped.
async fn smtp_sink(port: u16, outdir: &Path) -> Child {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/dispatch/smtp_sink.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .arg(outdir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 is needed for the email tests");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    let read = tokio::time::timeout(
        Duration::from_secs(30),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await;
    assert!(
        matches!(read, Ok(Ok(n)) if n > 0) && line.trim() == "ready",
        "the SMTP sink did not start (is aiosmtpd installed? `python3 -m pip install aiosmtpd==1.4.6`)"
    );
    child
}

#[tokio::test]
async fn an_email_reaches_a_real_smtp_server() {
    let dir = tempfile::tempdir().unwrap();
    let outdir = dir.path().join("mail");
    std::fs::create_dir_all(&outdir).unwrap();
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
    let _sink = smtp_sink(port, &outdir).await;

    eventually("the message", || {
        let outdir = outdir.clone();
        async move { outdir.join("0001.json").exists() }
    })
    .await;
    let mail: serde_json::Value =
        serde_json::from_slice(&std::fs::read(outdir.join("0001.json")).unwrap()).unwrap();
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

    assert_eq!(mail["mail_from"], "alerts@example.com");
    assert_eq!(
        mail["rcpt_tos"],
        serde_json::json!(["ops@example.com", "oncall@example.com"])
    );
    assert_eq!(mail["subject"], "[FIRING] fuel_drain — Truck 21080");
    assert_eq!(mail["from"], "Fleet alerts <alerts@example.com>");
    assert_eq!(mail["to"], "ops@example.com, oncall@example.com");
    assert_eq!(mail["message_id"], format!("<{id}@navixy-alerts>"));
    assert_eq!(mail["content_type"], "multipart/alternative");
    let fingerprint = Fingerprint::new("fuel_drain", Some(21080), None);
    let text = mail["text"].as_str().unwrap().replace("\r\n", "\n");
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
    let html = mail["html"].as_str().unwrap().replace("\r\n", "\n");
    assert!(html.starts_with("<!DOCTYPE html>\n<html>"), "{html}");
    for part in [
        "<p>1 alert for <b>mail</b> (first notification).</p>",
        "<h3 style=\"border-left: 6px solid #E01E5A; padding-left: 8px\">[FIRING] fuel_drain (critical) on Truck 21080 (tracker 21080)</h3>",
        "<p>Truck 21080: 17.2 l of fuel lost in 10 min</p>",
        "<tr><th align=\"left\">value</th><td>17.2</td></tr>",
    ] {
        assert!(html.contains(part), "missing {part} in {html}");
    }
    assert!(
        !outdir.join("0002.json").exists(),
        "one message, not a duplicate"
    );
}
