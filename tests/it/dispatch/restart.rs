//! Restart: notifications pending when the dispatcher stops are delivered by the next one
//! on the same SQLite file, with their original ids, exactly once; groups waiting for
//! `group_wait` resume; firing alerts are neither forgotten nor notified again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use navixy_alerts::clock::SystemClock;
use navixy_alerts::dispatch::{DispatchOptions, Dispatcher};
use navixy_alerts::store::{OutboxStatus, Store};

use super::support::{Receiver, Reply, config, eventually, firing, shutdown};

#[tokio::test]
async fn pending_notifications_survive_a_restart_with_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let cfg = config(
        dir.path(),
        &format!(
            r#"
channels:
  ops: {{ type: webhook, url: "{base}/hook", secret: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD" }}
routes:
  - match: {{ rule: slow }}
    channels: [ops]
    group_wait: 500ms
  - channels: [ops]
notify: {{ group_wait: 0s, group_interval: 1s }}
storage: {{ path: state/alerts.db }}
"#,
            base = rx.base
        ),
    );
    let options = DispatchOptions {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        drain_timeout: Duration::ZERO,
        ..DispatchOptions::default()
    };

    // First run: the receiver is down.
    rx.set_default(Reply::Status(503));
    let store = Store::open(&cfg).unwrap();
    assert!(dir.path().join("state/alerts.db").exists());
    let (stop, on_stop) = shutdown();
    let first = Dispatcher::start_with(
        &cfg,
        store.clone(),
        Arc::new(SystemClock),
        on_stop,
        options.clone(),
    )
    .await
    .unwrap();
    first
        .submit_batch(vec![
            firing("fuel_drain", 1),
            firing("speeding", 2),
            firing("slow", 3),
        ])
        .await
        .unwrap();
    // Both immediate notifications were tried and refused.
    let tried = rx
        .wait_for("/hook", |r| {
            r.iter()
                .map(|r| r.header("webhook-id").to_owned())
                .collect::<BTreeSet<_>>()
                .len()
                == 2
        })
        .await;
    let _ = stop.send(());
    first.stopped().await;
    drop(first);
    let pending: BTreeSet<String> = store
        .list_outbox(Some(OutboxStatus::Pending), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    drop(store);
    let tried: BTreeSet<String> = tried
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    assert_eq!(pending, tried, "what was tried is still pending");
    assert!(rx.received("/hook").iter().all(|r| !r.ok()));

    // Second run on the same file: the receiver works again.
    rx.set_default(Reply::Status(200));
    let store = Store::open(&cfg).unwrap();
    let (_stop, on_stop) = shutdown();
    let second =
        Dispatcher::start_with(&cfg, store.clone(), Arc::new(SystemClock), on_stop, options)
            .await
            .unwrap();
    // Live alerts are there for the rule evaluator to restore.
    let live: BTreeSet<String> = store
        .load_live_alerts()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.rule)
        .collect();
    assert_eq!(
        live,
        BTreeSet::from(["fuel_drain".into(), "slow".into(), "speeding".into()])
    );
    // An evaluator that did not restore fires one again: it is not news.
    second.submit(firing("fuel_drain", 1)).await.unwrap();

    let delivered = rx.wait_ok("/hook", 3).await;
    eventually("the outbox to empty", || {
        let d = second.clone();
        async move { d.outbox_depth() == 0 }
    })
    .await;
    let ok: Vec<String> = rx
        .received("/hook")
        .iter()
        .filter(|r| r.ok())
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    let unique: BTreeSet<String> = ok.iter().cloned().collect();
    assert_eq!(ok.len(), 3, "nothing duplicated: {ok:?}");
    assert_eq!(unique.len(), 3);
    assert!(
        pending.is_subset(&unique),
        "the original ids: {pending:?} in {unique:?}"
    );
    // The third is the `slow` group, which waited out its group_wait across the restart.
    let slow = delivered
        .iter()
        .filter(|r| r.ok())
        .find(|r| !pending.contains(r.header("webhook-id")))
        .unwrap();
    assert_eq!(slow.json()["data"]["alerts"][0]["rule"], "slow");
    assert_eq!(slow.json()["data"]["reason"], "first notification");
    let sent = store
        .list_outbox(Some(OutboxStatus::Sent), 100)
        .await
        .unwrap();
    assert_eq!(sent.len(), 3);
}
