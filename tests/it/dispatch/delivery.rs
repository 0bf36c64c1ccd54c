//! Delivery over real HTTP: a receiver that fails (500, 503 with Retry-After, a hang past
//! the timeout) and recovers gets every notification, with one id across retries, the
//! exact body and a valid signature. Also Slack and Alertmanager, permanent failures and
//! giving up.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::Duration as Span;
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::json;

use navixy_alerts::clock::{ManualClock, SystemClock};
use navixy_alerts::dispatch::channels::webhook;
use navixy_alerts::dispatch::{DispatchOptions, Dispatcher};
use navixy_alerts::store::{NewSilence, OutboxStatus, Outcome, SilenceMatcher, Store};

use super::support::{
    Receiver, Reply, config, eventually, firing, resolved, shutdown, t0, webhook_config,
};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn fast() -> DispatchOptions {
    DispatchOptions {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        drain_timeout: Duration::ZERO,
        ..DispatchOptions::default()
    }
}

fn expected_alert(tracker: i64, status: &str, ends_at: serde_json::Value) -> serde_json::Value {
    json!({
        "fingerprint": navixy_alerts::alert::Fingerprint::new("fuel_drain", Some(tracker), None).0,
        "status": status,
        "rule": "fuel_drain",
        "severity": "critical",
        "tracker": {"id": tracker, "label": format!("Truck {tracker}"), "source_id": 10_000 + tracker},
        "labels": {"team": "logistics"},
        "annotations": {"summary": format!("Truck {tracker}: 17.2 l of fuel lost in 10 min")},
        "value": 17.2,
        "starts_at": "2026-01-01T10:00:00Z",
        "ends_at": ends_at,
        "location": {"lat": 52.5, "lng": 13.4},
        "state": {"ignition": false, "speed": 0},
        "ack": null
    })
}

#[tokio::test]
async fn a_failing_receiver_gets_every_notification_once_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let cfg = config(
        dir.path(),
        &format!(
            r#"
channels:
  ops: {{ type: webhook, url: "{base}/hook", secret: "{SECRET}", timeout: 300ms, headers: {{ x-team: fleet }} }}
  slack: {{ type: slack, webhook_url: "{base}/slack" }}
  am: {{ type: alertmanager, url: "{base}/" }}
routes:
  - channels: [ops, slack, am]
notify: {{ group_by: [rule], group_wait: 0s, group_interval: 1s }}
storage: {{ path: alerts.db }}
"#,
            base = rx.base
        ),
    );
    rx.script(
        "/hook",
        [
            Reply::Status(500),
            Reply::RetryAfter(503, 1),
            Reply::Hang(Duration::from_secs(5)),
        ],
    );
    rx.script("/api/v2/alerts", [Reply::Status(502)]);

    let store = Store::open(&cfg).unwrap();
    let clock = ManualClock::new(t0());
    let (stop, on_stop) = shutdown();
    let dispatcher = Dispatcher::start_with(
        &cfg,
        store.clone(),
        Arc::new(clock.clone()),
        on_stop,
        fast(),
    )
    .await
    .unwrap();

    // Two alerts in one batch: one group, one notification (group_wait 0).
    let (a, b) = (firing("fuel_drain", 21080), firing("fuel_drain", 21081));
    dispatcher
        .submit_batch(vec![a.clone(), b.clone()])
        .await
        .unwrap();
    // Acknowledged means committed: the live alerts are in the database already.
    assert_eq!(store.load_live_alerts().await.unwrap().len(), 2);

    let hook = rx.wait_ok("/hook", 1).await;
    let statuses: Vec<u16> = hook.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [500, 503, 0, 200],
        "500, 503, a hang, then success"
    );
    let id = hook[0].header("webhook-id").to_owned();
    assert!(id.starts_with("msg_"), "{id}");
    let key = webhook::decode_secret(SECRET).unwrap();
    for r in &hook {
        assert_eq!(r.header("webhook-id"), id, "the same id on every retry");
        assert_eq!(r.header("webhook-timestamp"), t0().timestamp().to_string());
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(r.header("x-team"), "fleet");
        assert!(webhook::verify(
            &key,
            &id,
            t0().timestamp(),
            &r.body,
            r.header("webhook-signature")
        ));
        // The same bytes every time.
        assert_eq!(r.body, hook[0].body);
    }
    // And the signature is what Standard Webhooks computes, independently.
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&key).unwrap();
    hmac::Mac::update(&mut mac, format!("{id}.{}.", t0().timestamp()).as_bytes());
    hmac::Mac::update(&mut mac, &hook[0].body);
    let expected_sig =
        base64::engine::general_purpose::STANDARD.encode(hmac::Mac::finalize(mac).into_bytes());
    assert_eq!(
        hook[0].header("webhook-signature"),
        format!("v1,{expected_sig}")
    );
    assert_eq!(
        hook[0].json(),
        json!({
            "type": "alert.firing",
            "timestamp": "2026-01-01T10:00:00Z",
            "data": {
                "receiver": "ops",
                "status": "firing",
                "group_key": "routes[0]:{rule=\"fuel_drain\"}",
                "reason": "first notification",
                "alerts": [
                    expected_alert(21080, "firing", json!(null)),
                    expected_alert(21081, "firing", json!(null)),
                ]
            }
        })
    );

    // One resolves after the group interval: a second notification, a new id.
    clock.advance(Span::seconds(2));
    dispatcher
        .submit(resolved(&a, t0() + Span::seconds(2)))
        .await
        .unwrap();
    assert_eq!(store.load_live_alerts().await.unwrap().len(), 1);
    let hook = rx.wait_ok("/hook", 2).await;
    let last = hook.last().unwrap();
    assert_ne!(last.header("webhook-id"), id);
    assert_eq!(
        last.json(),
        json!({
            "type": "alert.resolved",
            "timestamp": "2026-01-01T10:00:02Z",
            "data": {
                "receiver": "ops",
                "status": "resolved",
                "group_key": "routes[0]:{rule=\"fuel_drain\"}",
                "reason": "resolved",
                "alerts": [expected_alert(21080, "resolved", json!("2026-01-01T10:00:02Z"))]
            }
        })
    );

    // Slack and Alertmanager got the same two notifications, in order.
    let slack = rx.wait_ok("/slack", 2).await;
    assert_eq!(slack.len(), 2);
    assert_eq!(slack[0].json()["text"], "🔥 [FIRING:2] fuel_drain");
    assert_eq!(slack[1].json()["text"], "✅ [RESOLVED:1] fuel_drain");
    assert_eq!(slack[1].json()["attachments"][0]["color"], "#2EB67D");
    let am = rx.wait_ok("/api/v2/alerts", 2).await;
    let statuses: Vec<u16> = am.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [502, 200, 200]);
    assert_eq!(
        am[2].json(),
        json!([{
            "labels": {"alertname": "fuel_drain", "severity": "critical", "team": "logistics", "tracker_id": "21080"},
            "annotations": {"summary": "Truck 21080: 17.2 l of fuel lost in 10 min"},
            "startsAt": "2026-01-01T10:00:00Z",
            "endsAt": "2026-01-01T10:00:02Z"
        }])
    );

    eventually("the outbox to empty", || {
        let d = dispatcher.clone();
        async move { d.outbox_depth() == 0 }
    })
    .await;
    let sent = store
        .list_outbox(Some(OutboxStatus::Sent), 100)
        .await
        .unwrap();
    assert_eq!(
        sent.len(),
        6,
        "two notifications for each of three channels"
    );
    let ops_first = sent.iter().find(|e| e.id == id).unwrap();
    assert_eq!(ops_first.attempts, 4);
    assert_eq!(ops_first.channel, "ops");

    let _ = stop.send(());
    dispatcher.stopped().await;
    assert!(dispatcher.submit(firing("x", 1)).await.is_err());
}

#[tokio::test]
async fn permanent_failures_and_give_ups_stay_visible() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    // The test runtime is single-threaded: every dispatcher task records here.
    let _guard = metrics::set_default_local_recorder(&recorder);

    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let cfg = config(
        dir.path(),
        &format!(
            r#"
channels:
  rejecting: {{ type: webhook, url: "{base}/reject" }}
  down: {{ type: webhook, url: "{base}/down" }}
routes:
  - match: {{ rule: bad_payload }}
    channels: [rejecting]
  - channels: [down]
notify: {{ group_wait: 0s, retry_for: 500ms }}
storage: {{ path: ":memory:" }}
"#,
            base = rx.base
        ),
    );
    rx.script("/reject", [Reply::Status(422)]);
    rx.script("/down", std::iter::repeat_n(Reply::Status(503), 1000));

    let store = Store::open(&cfg).unwrap();
    let (_stop, on_stop) = shutdown();
    let dispatcher =
        Dispatcher::start_with(&cfg, store.clone(), Arc::new(SystemClock), on_stop, fast())
            .await
            .unwrap();
    dispatcher
        .submit_batch(vec![firing("bad_payload", 1), firing("fuel_drain", 2)])
        .await
        .unwrap();

    eventually("both notifications to fail", || {
        let store = store.clone();
        async move { store.list_failed(10).await.unwrap().len() == 2 }
    })
    .await;
    let failed = store.list_failed(10).await.unwrap();
    let rejected = failed.iter().find(|e| e.channel == "rejecting").unwrap();
    assert_eq!(rejected.attempts, 1, "a 422 is not retried");
    assert_eq!(
        rejected.last_error.as_deref(),
        Some("HTTP 422 Unprocessable Entity")
    );
    let gave_up = failed.iter().find(|e| e.channel == "down").unwrap();
    assert!(gave_up.attempts >= 3, "{gave_up:?}");
    let error = gave_up.last_error.as_deref().unwrap();
    assert!(
        error.starts_with(&format!(
            "gave up after {} attempts over 0s: HTTP 503",
            gave_up.attempts
        )),
        "{error}"
    );
    let down = rx.received("/down");
    assert_eq!(down.len() as u32, gave_up.attempts);
    assert!(down.iter().all(|r| r.header("webhook-id") == gave_up.id));
    assert!(
        down.iter()
            .all(|r| r.headers.get("webhook-signature").is_none()),
        "no secret, no signature"
    );

    let text = metrics.render();
    for line in [
        "navixy_alerts_notifications_failed_total{channel=\"rejecting\"} 1".to_owned(),
        "navixy_alerts_notifications_failed_total{channel=\"down\"} 1".to_owned(),
        format!(
            "navixy_alerts_notifications_retried_total{{channel=\"down\"}} {}",
            gave_up.attempts - 1
        ),
        "navixy_alerts_outbox_depth 0".to_owned(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in\n{text}"
        );
    }
}

#[tokio::test]
async fn a_refused_group_holds_up_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let cfg = webhook_config(
        dir.path(),
        &format!("{}/hook", rx.base),
        r#"{ path: ":memory:" }"#,
    );
    // The receiver chokes on one rule's notifications only.
    rx.refuse_containing("/hook", "\"rule\":\"stuck\"");
    let store = Store::open(&cfg).unwrap();
    let clock = ManualClock::new(t0());
    let (_stop, on_stop) = shutdown();
    let dispatcher = Dispatcher::start_with(&cfg, store, Arc::new(clock.clone()), on_stop, fast())
        .await
        .unwrap();
    let stuck = firing("stuck", 1);
    dispatcher.submit(stuck.clone()).await.unwrap();
    rx.wait_for("/hook", |r| r.len() >= 3).await;
    // Other groups go through while `stuck` is retried...
    dispatcher.submit(firing("fuel_drain", 2)).await.unwrap();
    dispatcher.submit(firing("speeding", 3)).await.unwrap();
    let ok = rx.wait_ok("/hook", 2).await;
    let rules: Vec<String> = ok
        .iter()
        .filter(|r| r.ok())
        .map(|r| {
            r.json()["data"]["alerts"][0]["rule"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(rules.len(), 2);
    assert!(rules.contains(&"fuel_drain".to_owned()) && rules.contains(&"speeding".to_owned()));
    // ...while within the stuck group, the resolve waits behind its firing.
    clock.advance(Span::seconds(2));
    dispatcher
        .submit(resolved(&stuck, t0() + Span::seconds(2)))
        .await
        .unwrap();
    rx.wait_for("/hook", |r| r.len() >= 12).await;
    let stuck_requests: Vec<_> = rx
        .received("/hook")
        .into_iter()
        .filter(|r| r.json()["data"]["alerts"][0]["rule"] == "stuck")
        .collect();
    assert!(
        stuck_requests
            .iter()
            .all(|r| r.json()["type"] == "alert.firing")
    );
    assert_eq!(
        dispatcher.outbox_depth(),
        2,
        "the stuck firing and its resolve"
    );
}

#[tokio::test]
async fn silences_added_through_the_store_apply_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let cfg = webhook_config(
        dir.path(),
        &format!("{}/hook", rx.base),
        r#"{ path: ":memory:" }"#,
    );
    let store = Store::open(&cfg).unwrap();
    let clock = ManualClock::new(t0());
    let (_stop, on_stop) = shutdown();
    let dispatcher = Dispatcher::start_with(
        &cfg,
        store.clone(),
        Arc::new(clock.clone()),
        on_stop,
        fast(),
    )
    .await
    .unwrap();
    let silence = store
        .add_silence(
            NewSilence {
                matchers: vec![SilenceMatcher {
                    name: "rule".into(),
                    value: "fuel_.*".into(),
                    is_regex: true,
                    is_equal: true,
                }],
                starts_at: None,
                ends_at: t0() + Span::hours(1),
                created_by: "ops".into(),
                comment: "refuelling".into(),
            },
            t0(),
        )
        .await
        .unwrap();
    dispatcher
        .submit_batch(vec![firing("fuel_drain", 1), firing("speeding", 2)])
        .await
        .unwrap();
    let ok = rx.wait_ok("/hook", 1).await;
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].json()["data"]["alerts"][0]["rule"], "speeding");
    let log = store.recent_log(10).await.unwrap();
    let silenced = log
        .iter()
        .find(|e| e.outcome == Outcome::Silenced)
        .expect("a silenced entry");
    assert_eq!(silenced.rule, "fuel_drain");
    assert_eq!(silenced.channel.as_deref(), Some("ops"));
    assert_eq!(
        silenced.detail.as_deref(),
        Some(&*format!("silence {}", silence.id))
    );

    // Deleted: the still-firing alert goes out at its group's next flush.
    assert!(store.delete_silence(&silence.id).await.unwrap());
    // One `group_interval` later (1 s).
    clock.advance(Span::seconds(1));
    let ok = rx.wait_ok("/hook", 2).await;
    assert_eq!(ok.len(), 2, "the speeding group had nothing new to send");
    assert_eq!(ok[1].json()["data"]["alerts"][0]["rule"], "fuel_drain");
    // Its group had never notified before.
    assert_eq!(ok[1].json()["data"]["reason"], "first notification");
}
