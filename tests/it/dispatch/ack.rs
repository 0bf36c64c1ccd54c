//! Acknowledgement and escalation through the real dispatcher: webhook receivers on
//! loopback, a SQLite file, a manual clock moved by hand. An ack stops repeats and
//! escalation and tells the `send_acks` channel at once; an unacknowledged alert
//! escalates once per step, also when the step fell due while the dispatcher was down;
//! the resolve reaches every channel told of the firing.

use std::sync::Arc;
use std::time::Duration;

use chrono::Duration as Span;
use serde_json::{Value, json};

use navixy_alerts::alert::Ack;
use navixy_alerts::clock::{Clock, ManualClock};
use navixy_alerts::dispatch::{DispatchOptions, Dispatcher, DispatcherHandle};
use navixy_alerts::store::{Outcome, Store};

use super::support::{Receiver, config, eventually, firing, resolved, shutdown, t0};

fn fast() -> DispatchOptions {
    DispatchOptions {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        drain_timeout: Duration::ZERO,
        ..DispatchOptions::default()
    }
}

/// `ops` (told of acks) and `pd` (PagerDuty: told of acks by default) first, `pager` 15
/// min after the firing, `boss` after 1 h.
fn yaml(base: &str, repeat: &str) -> String {
    format!(
        r#"
channels:
  ops: {{ type: webhook, url: "{base}/ops", send_acks: true }}
  pager: {{ type: webhook, url: "{base}/pager" }}
  boss: {{ type: webhook, url: "{base}/boss" }}
  pd: {{ type: pagerduty, routing_key: "R0UT1NGKEY0123456789ABCDEFGHIJKL", url: "{base}/pd" }}
routes:
  - channels: [ops, pd]
    escalate:
      - {{ after: 15m, channels: [pager] }}
      - {{ after: 1h, channels: [boss] }}
notify: {{ group_by: [rule], group_wait: 0s, group_interval: 1s, repeat_interval: {repeat} }}
storage: {{ path: alerts.db }}
"#
    )
}

async fn start(
    cfg: &navixy_alerts::config::Config,
    store: &Store,
    clock: &ManualClock,
) -> (DispatcherHandle, tokio::sync::oneshot::Sender<()>) {
    let (stop, on_stop) = shutdown();
    let dispatcher =
        Dispatcher::start_with(cfg, store.clone(), Arc::new(clock.clone()), on_stop, fast())
            .await
            .unwrap();
    (dispatcher, stop)
}

/// (type, status of the first alert, its ack) of every body a path accepted.
fn seen(rx: &Receiver, path: &str) -> Vec<(String, String, Value)> {
    rx.received(path)
        .iter()
        .filter(|r| r.ok())
        .map(|r| {
            let body = r.json();
            let alert = &body["data"]["alerts"][0];
            (
                body["type"].as_str().unwrap_or_default().to_owned(),
                alert["status"].as_str().unwrap_or_default().to_owned(),
                alert["ack"].clone(),
            )
        })
        .collect()
}

fn advance(clock: &ManualClock, by: Span) {
    clock.advance(by);
}

#[tokio::test]
async fn an_ack_stops_repeats_and_escalation_and_tells_the_send_acks_channel() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let cfg = config(dir.path(), &yaml(&rx.base, "30m"));
    let store = Store::open(&cfg).unwrap();
    let clock = ManualClock::new(t0());
    let (dispatcher, stop) = start(&cfg, &store, &clock).await;

    let alert = firing("fuel_drain", 21080);
    dispatcher.submit(alert.clone()).await.unwrap();
    rx.wait_ok("/ops", 1).await;
    assert_eq!(
        seen(&rx, "/ops"),
        [("alert.firing".into(), "firing".into(), Value::Null)]
    );

    advance(&clock, Span::minutes(5));
    let ack = Ack {
        by: "ana".into(),
        at: clock.now(),
        comment: "driver called".into(),
    };
    store
        .acknowledge(alert.fingerprint.clone(), ack, None, clock.now())
        .await
        .unwrap();
    let got = rx.wait_ok("/ops", 2).await;
    let body = got[1].json();
    let first_id = got[0].header("webhook-id").to_owned();
    assert_ne!(
        got[1].header("webhook-id"),
        first_id,
        "a notification of its own"
    );
    assert_eq!(body["type"], "alert.acknowledged");
    assert_eq!(body["data"]["status"], "firing");
    assert_eq!(body["data"]["reason"], "acknowledged by ana: driver called");
    let alerts = body["data"]["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["fingerprint"], alert.fingerprint.0.as_str());
    assert_eq!(
        alerts[0]["ack"],
        json!({"by": "ana", "at": "2026-01-01T10:05:00Z", "comment": "driver called"})
    );

    // PagerDuty's incident is acknowledged too, on the alert's dedup key.
    let pd = rx.wait_ok("/pd", 2).await;
    let actions: Vec<(String, String)> = pd
        .iter()
        .map(|r| {
            let event = r.json();
            (
                event["event_action"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                event["dedup_key"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let key = alert.fingerprint.0.clone();
    assert_eq!(
        actions,
        [
            ("trigger".to_owned(), key.clone()),
            ("acknowledge".to_owned(), key)
        ]
    );

    // Past both steps and two repeat intervals: nothing more, and the steps are logged
    // as not run.
    for _ in 0..4 {
        advance(&clock, Span::minutes(20));
        let at = clock.now();
        eventually("the dispatcher's timer at the new time", || async {
            dispatcher_saw(&store, at).await
        })
        .await;
    }
    assert_eq!(seen(&rx, "/ops").len(), 2, "no repeat while acknowledged");
    assert!(
        rx.received("/pager").is_empty(),
        "no escalation while acknowledged"
    );
    assert!(rx.received("/boss").is_empty());
    let log = store.recent_log(50).await.unwrap();
    let skipped: Vec<_> = log
        .iter()
        .filter(|e| e.outcome == Outcome::Dropped)
        .filter_map(|e| e.detail.clone())
        .collect();
    assert_eq!(
        skipped,
        [
            "routes[0].escalate[1] (after 1h): not run, the alert is acknowledged",
            "routes[0].escalate[0] (after 15m): not run, the alert is acknowledged",
        ]
    );

    // The resolve still reaches `ops`, with no ack (it ended with the firing), at the
    // group's next flush: the dispatcher's timer may have flushed the group at this very
    // time already, so the next one is a `group_interval` on.
    dispatcher
        .submit(resolved(&alert, clock.now()))
        .await
        .unwrap();
    advance(&clock, Span::seconds(1));
    rx.wait_ok("/ops", 3).await;
    assert_eq!(
        seen(&rx, "/ops")[2],
        ("alert.resolved".into(), "resolved".into(), Value::Null)
    );
    let _ = stop.send(());
    dispatcher.stopped().await;
}

/// True once no escalation step due at `at` is left: the dispatcher's timer has run at
/// `at` or later (it looks at the clock at least every second).
async fn dispatcher_saw(store: &Store, at: chrono::DateTime<chrono::Utc>) -> bool {
    let due: Vec<_> = store
        .call(|db| navixy_alerts::store::load_escalations(db.conn()))
        .await
        .unwrap();
    due.iter().all(|s| s.due_at > at)
}

#[tokio::test]
async fn an_unacknowledged_alert_escalates_once_per_step_across_a_restart_and_resolves_everywhere()
{
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let cfg = config(dir.path(), &yaml(&rx.base, "4h"));
    let store = Store::open(&cfg).unwrap();
    let clock = ManualClock::new(t0());
    let (dispatcher, stop) = start(&cfg, &store, &clock).await;

    let alert = firing("fuel_drain", 21080);
    dispatcher.submit(alert.clone()).await.unwrap();
    rx.wait_ok("/ops", 1).await;

    // 15 min after it started firing: the pager hears of it, once.
    advance(&clock, Span::minutes(15));
    rx.wait_ok("/pager", 1).await;
    assert_eq!(
        seen(&rx, "/pager"),
        [("alert.firing".into(), "firing".into(), Value::Null)]
    );
    // The same firing again (an evaluator restarted) plans nothing new.
    dispatcher.submit(alert.clone()).await.unwrap();
    advance(&clock, Span::minutes(10));
    let at = clock.now();
    eventually("the timer", || async { dispatcher_saw(&store, at).await }).await;

    // Down before the 1 h step; it falls due meanwhile and runs at the next start.
    let _ = stop.send(());
    dispatcher.stopped().await;
    advance(&clock, Span::minutes(50));
    let (dispatcher, stop) = start(&cfg, &store, &clock).await;
    rx.wait_ok("/boss", 1).await;
    assert_eq!(
        seen(&rx, "/boss"),
        [("alert.firing".into(), "firing".into(), Value::Null)]
    );
    let escalated: Vec<_> = store
        .recent_log(50)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.outcome == Outcome::Escalated)
        .map(|e| (e.channel.unwrap_or_default(), e.detail.unwrap_or_default()))
        .collect();
    assert_eq!(
        escalated,
        [
            (
                "boss".to_owned(),
                "routes[0].escalate[1] (after 1h)".to_owned()
            ),
            (
                "pager".to_owned(),
                "routes[0].escalate[0] (after 15m)".to_owned()
            ),
        ]
    );

    // The resolve reaches all three channels, each once, at their groups' next flush.
    dispatcher
        .submit(resolved(&alert, clock.now()))
        .await
        .unwrap();
    advance(&clock, Span::seconds(1));
    for path in ["/ops", "/pager", "/boss"] {
        let got = rx
            .wait_for(path, |r| {
                r.iter()
                    .any(|r| r.ok() && r.json()["type"] == "alert.resolved")
            })
            .await;
        let types: Vec<String> = got
            .iter()
            .filter(|r| r.ok())
            .map(|r| r.json()["type"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(
            types.last().map(String::as_str),
            Some("alert.resolved"),
            "{path}"
        );
    }
    assert_eq!(seen(&rx, "/pager").len(), 2, "one firing, one resolve");
    assert_eq!(seen(&rx, "/boss").len(), 2, "one firing, one resolve");
    let _ = stop.send(());
    dispatcher.stopped().await;
}
