//! Inhibition and mute time intervals through the real dispatcher: a SQLite file, a
//! loopback webhook receiver and a manual clock. What the receiver gets, and when: an
//! inhibited alert is held while its source fires and sent when the source resolves; a
//! mute holds a group's notifications and releases, at its end (not a `group_interval`
//! later), the alerts still firing, and not those that resolved meanwhile.

use std::sync::Arc;
use std::time::Duration;

use chrono::Duration as Span;

use navixy_alerts::alert::Severity;
use navixy_alerts::clock::ManualClock;
use navixy_alerts::dispatch::{DispatchOptions, Dispatcher, DispatcherHandle};
use navixy_alerts::store::{Outcome, Store};

use super::support::{Receiver, config, eventually, firing, resolved, shutdown, t0};

fn options() -> DispatchOptions {
    DispatchOptions {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        drain_timeout: Duration::ZERO,
        ..DispatchOptions::default()
    }
}

/// `(status, rule, tracker id)` of each alert of each notification the hook received.
fn notifications(rx: &Receiver) -> Vec<Vec<(String, String, i64)>> {
    rx.received("/hook")
        .iter()
        .map(|r| {
            let body = r.json();
            body["data"]["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    (
                        a["status"].as_str().unwrap().to_owned(),
                        a["rule"].as_str().unwrap().to_owned(),
                        a["tracker"]["id"].as_i64().unwrap(),
                    )
                })
                .collect()
        })
        .collect()
}

fn alert(status: &str, rule: &str, tracker: i64) -> (String, String, i64) {
    (status.to_owned(), rule.to_owned(), tracker)
}

/// The log's `(outcome, rule, tracker, detail)`, oldest first.
async fn log(d: &DispatcherHandle) -> Vec<(Outcome, String, Option<i64>, Option<String>)> {
    let mut entries = d.store().recent_log(100).await.unwrap();
    entries.reverse();
    entries
        .into_iter()
        .map(|e| (e.outcome, e.rule, e.tracker_id, e.detail))
        .collect()
}

async fn start(yaml: &str, rx: &Receiver) -> (tempfile::TempDir, ManualClock, DispatcherHandle) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "channels:\n  ops: {{ type: webhook, url: \"{}/hook\" }}\n{yaml}storage: {{ path: alerts.db }}\n",
            rx.base
        ),
    );
    let store = Store::open(&cfg).unwrap();
    let clock = ManualClock::new(t0());
    let (stop, on_stop) = shutdown();
    std::mem::forget(stop);
    let d = Dispatcher::start_with(&cfg, store, Arc::new(clock.clone()), on_stop, options())
        .await
        .unwrap();
    (dir, clock, d)
}

#[tokio::test]
async fn an_inhibited_alert_is_held_while_its_source_fires_and_sent_when_it_resolves() {
    let rx = Receiver::start().await;
    let (_dir, clock, d) = start(
        r#"routes: [{ channels: [ops] }]
notify: { group_by: [rule, tracker_id], group_wait: 0s, group_interval: 1m }
inhibit_rules:
  - source_matchers: { rule: tracker_offline }
    target_matchers: ["severity=~warning|info"]
    equal: [tracker_id]
"#,
        &rx,
    )
    .await;
    let offline = firing("tracker_offline", 1);
    let warning = |rule: &str, tracker: i64| {
        let mut t = firing(rule, tracker);
        t.severity = Severity::Warning;
        t
    };
    let (fuel_1, fuel_2) = (warning("fuel_low", 1), warning("fuel_low", 2));
    d.submit(offline.clone()).await.unwrap();
    // Tracker 1's warning is inhibited; tracker 2's is not (its tracker_id differs).
    d.submit_batch(vec![fuel_1.clone(), fuel_2.clone()])
        .await
        .unwrap();
    rx.wait_ok("/hook", 2).await;
    assert_eq!(
        notifications(&rx),
        [
            vec![alert("firing", "tracker_offline", 1)],
            vec![alert("firing", "fuel_low", 2)],
        ]
    );
    let inhibited: Vec<_> = log(&d)
        .await
        .into_iter()
        .filter(|e| e.0 == Outcome::Inhibited)
        .collect();
    assert_eq!(
        inhibited,
        [(
            Outcome::Inhibited,
            "fuel_low".into(),
            Some(1),
            Some(format!("inhibited by {}", offline.fingerprint))
        )]
    );

    // The source resolves: at the groups' next flush, the resolve and the warning that
    // still fires go out.
    clock.advance(Span::seconds(30));
    d.submit(resolved(&offline, clock_now(&clock)))
        .await
        .unwrap();
    clock.advance(Span::seconds(30));
    rx.wait_ok("/hook", 4).await;
    let got = notifications(&rx);
    assert_eq!(got.len(), 4, "{got:?}");
    let mut released = got[2..].to_vec();
    released.sort();
    assert_eq!(
        released,
        [
            vec![alert("firing", "fuel_low", 1)],
            vec![alert("resolved", "tracker_offline", 1)],
        ]
    );
}

fn clock_now(clock: &ManualClock) -> chrono::DateTime<chrono::Utc> {
    use navixy_alerts::clock::Clock;
    clock.now()
}

#[tokio::test]
async fn a_mute_holds_notifications_and_releases_the_still_firing_ones_at_its_end() {
    let rx = Receiver::start().await;
    // t0 is 2026-01-01T10:00Z: a maintenance window until 10:30, a group interval far
    // longer, so that only the mute's end can release the alerts at 10:30.
    let (_dir, clock, d) = start(
        r#"notify: { group_by: [rule], group_wait: 0s, group_interval: 1h }
time_intervals:
  - name: maintenance
    time_intervals:
      - times: [{ start_time: "09:00", end_time: "10:30" }]
routes:
  - channels: [ops]
    mute_time_intervals: [maintenance]
"#,
        &rx,
    )
    .await;
    let (a, b, c) = (
        firing("fuel_drain", 1),
        firing("fuel_drain", 2),
        firing("fuel_drain", 3),
    );
    d.submit_batch(vec![a.clone(), b.clone(), c.clone()])
        .await
        .unwrap();
    // Muted, logged once each, with the end of the mute.
    let mut muted: Vec<_> = log(&d)
        .await
        .into_iter()
        .filter(|e| e.0 == Outcome::Muted)
        .map(|e| (e.2, e.3))
        .collect();
    muted.sort();
    let detail = Some("time interval maintenance until 2026-01-01T10:30:00+00:00".to_owned());
    assert_eq!(
        muted,
        [
            (Some(1), detail.clone()),
            (Some(2), detail.clone()),
            (Some(3), detail)
        ]
    );

    // Tracker 2 resolves during the mute: never told, so never sent.
    clock.advance(Span::minutes(10));
    d.submit(resolved(&b, clock_now(&clock))).await.unwrap();

    clock.advance(Span::minutes(20));
    rx.wait_ok("/hook", 1).await;
    assert_eq!(
        notifications(&rx),
        [vec![
            alert("firing", "fuel_drain", 1),
            alert("firing", "fuel_drain", 3)
        ]]
    );
    // Nothing else is on its way: the outbox empties and stays at one notification.
    eventually("the outbox to empty", || async { d.outbox_depth() == 0 }).await;
    assert_eq!(rx.received("/hook").len(), 1);
}
