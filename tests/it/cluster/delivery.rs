//! Delivery from the shared outbox (`dispatch::outbox::claimed`): instances on one
//! PostgreSQL database and one webhook receiver; each notification arrives once, in
//! `seq` order per channel, whoever delivers it; a claim a frozen instance holds is
//! skipped, and released after the lease.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::watch;

use navixy_alerts::clock::{Clock, SystemClock};
use navixy_alerts::config::Config;
use navixy_alerts::dispatch::group::GroupId;
use navixy_alerts::dispatch::outbox::RetryTarget;
use navixy_alerts::dispatch::outbox::claimed::{ClaimOptions, Claimed};
use navixy_alerts::store::Feed;

use super::support::{connect, database, history, notification, queue, rows};
use crate::dispatch::support::{Receiver, Reply, config, eventually};

/// One instance's delivery loops on `url`, for the channels of `cfg`.
async fn instance(url: &str, lease: Duration, cfg: &Config) -> (Claimed, watch::Sender<bool>) {
    let (stop, stopped) = watch::channel(false);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let claimed = Claimed::from_config(
        ClaimOptions::new(url, lease),
        cfg,
        clock,
        Feed::default(),
        stopped,
    )
    .await
    .unwrap();
    (claimed, stop)
}

fn webhook_config(dir: &std::path::Path, receiver: &Receiver, channels: &[&str]) -> Config {
    let channels: Vec<String> = channels
        .iter()
        .map(|c| format!("{c}: {{ type: webhook, url: \"{}/{c}\" }}", receiver.base))
        .collect();
    config(
        dir,
        &format!(
            "channels: {{ {} }}\nroutes: [{{ channels: [{}] }}]\n",
            channels.join(", "),
            channels
                .iter()
                .map(|c| c.split(':').next().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

fn ids(received: &[crate::dispatch::support::Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_deliver_200_notifications_of_one_channel_once_each_in_seq_order() {
    let Some(url) = database("cluster::delivery::two_instances").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let cfg = webhook_config(dir.path(), &receiver, &["hook"]);
    let db = connect(&url).await;
    let (a, _stop_a) = instance(&url, Duration::from_secs(5), &cfg).await;
    let (b, _stop_b) = instance(&url, Duration::from_secs(5), &cfg).await;

    // Queued in bursts from both sides, as two owners' dispatchers would, in five groups.
    let now = Utc::now();
    let mut expected = Vec::new();
    for i in 0..200 {
        let id = format!("msg_{i:03}");
        let n = notification(&id, "hook", &format!("g{}", i % 5), now);
        queue(&db, &n).await;
        expected.push(id);
        if i % 10 == 9 {
            if i % 20 == 9 { &a } else { &b }.nudge("hook");
        }
    }

    let received = receiver.wait_ok("/hook", 200).await;
    assert_eq!(ids(&received), expected, "each once, in seq order");
    eventually("every row marked sent", || async {
        rows(&db)
            .await
            .iter()
            .all(|(_, status, attempts)| status == "sent" && *attempts == 1)
    })
    .await;
    let sent: Vec<String> = history(&db)
        .await
        .into_iter()
        .filter(|(kind, _)| kind == "sent")
        .map(|(_, id)| id)
        .collect();
    assert_eq!(sent, expected, "one `sent` history entry per notification");
    assert_eq!(receiver.received("/hook").len(), 200, "no request twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_held_by_a_frozen_connection_is_skipped_and_released_after_the_lease() {
    let Some(url) = database("cluster::delivery::frozen_claim").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let cfg = webhook_config(dir.path(), &receiver, &["hook", "other"]);
    let lease = Duration::from_secs(2);
    let db = connect(&url).await;
    let now = Utc::now();
    for i in 0..3 {
        queue(&db, &notification(&format!("msg_h{i}"), "hook", "g", now)).await;
        queue(&db, &notification(&format!("msg_o{i}"), "other", "g", now)).await;
    }
    db.execute(
        "INSERT INTO outbox_channels (channel) VALUES ('hook'), ('other')",
        &[],
    )
    .await
    .unwrap();
    // A frozen instance: it claimed `hook` (on a delivery connection, ending idle
    // transactions after the lease) and stopped answering.
    let mut frozen = connect(&url).await;
    frozen
        .batch_execute(&format!(
            "SET idle_in_transaction_session_timeout = {}",
            lease.as_millis()
        ))
        .await
        .unwrap();
    let tx = frozen.transaction().await.unwrap();
    tx.query_one(
        "SELECT channel FROM outbox_channels WHERE channel = 'hook' FOR UPDATE",
        &[],
    )
    .await
    .unwrap();
    let frozen_at = Instant::now();

    let (_live, _stop) = instance(&url, lease, &cfg).await;
    // The other channel goes at once; `hook` is skipped, not waited on.
    receiver.wait_ok("/other", 3).await;
    assert!(receiver.received("/hook").is_empty());
    let waiting: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(waiting, 0, "no instance waits on the held claim");

    // Released after the lease: then `hook` is delivered, in order.
    let hook = receiver.wait_ok("/hook", 3).await;
    let waited = frozen_at.elapsed();
    println!("the frozen claim was taken over after {waited:?} (lease {lease:?})");
    assert!(
        waited >= lease,
        "delivered only once the claim was released"
    );
    assert_eq!(ids(&hook), ["msg_h0", "msg_h1", "msg_h2"].map(String::from));
    // The frozen instance's late writes fail: its session is gone.
    let late = tx
        .execute(
            "UPDATE outbox SET status = 'failed' WHERE id = 'msg_h0'",
            &[],
        )
        .await;
    assert!(late.is_err(), "a write after the lease must fail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_give_ups_and_retry_now_behave_as_the_in_process_sender() {
    let Some(url) = database("cluster::delivery::retries").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let cfg = webhook_config(dir.path(), &receiver, &["hook"]);
    let db = connect(&url).await;
    // First a 503 asking for one second, then a 400 (permanent): the second notification
    // fails for good; the first is sent on its second attempt.
    receiver.script("/hook", [Reply::RetryAfter(503, 1), Reply::Status(400)]);
    let now = Utc::now();
    queue(&db, &notification("msg_a", "hook", "g1", now)).await;
    queue(&db, &notification("msg_b", "hook", "g2", now)).await;
    let (claimed, _stop) = instance(&url, Duration::from_secs(5), &cfg).await;
    claimed.nudge("hook");

    let got = receiver
        .wait_for("/hook", |r| r.iter().any(|r| r.ok()))
        .await;
    assert_eq!(ids(&got), ["msg_a", "msg_b", "msg_a"].map(String::from));
    assert_eq!(
        got.iter().map(|r| r.status).collect::<Vec<_>>(),
        [503, 400, 200],
        "the other group is not held up by the retry"
    );
    eventually("the outcomes recorded", || async {
        rows(&db).await
            == [
                ("msg_a".to_owned(), "sent".to_owned(), 2),
                ("msg_b".to_owned(), "failed".to_owned(), 1),
            ]
    })
    .await;
    let kinds: BTreeSet<(String, String)> = history(&db).await.into_iter().collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            ("failed".to_owned(), "msg_b".to_owned()),
            ("sent".to_owned(), "msg_a".to_owned()),
        ])
    );

    // Retry now: the failed one is pending again under its id and goes out.
    let retried = claimed
        .retry("hook", RetryTarget::Notification("msg_b".to_owned()))
        .await
        .unwrap();
    assert_eq!(retried.requeued, ["msg_b"]);
    let got = receiver.wait_ok("/hook", 2).await;
    assert_eq!(ids(&got[3..]), ["msg_b"]);
    let retried = claimed
        .retry("hook", RetryTarget::Notification("msg_a".to_owned()))
        .await
        .unwrap();
    assert_eq!(retried.sent, ["msg_a"]);
    eventually("msg_b sent on its second attempt", || async {
        rows(&db).await[1] == ("msg_b".to_owned(), "sent".to_owned(), 2)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_delivered_by_another_instance_no_longer_holds_back_its_repeats_here() {
    let Some(url) = database("cluster::delivery::undelivered").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let cfg = webhook_config(dir.path(), &receiver, &["hook"]);
    let db = connect(&url).await;
    // This instance's dispatcher queued a notification of group `g`; another instance
    // delivered it (the row is sent), so this one never hears of it from its own loop.
    let n = notification("msg_x", "hook", "g", Utc::now());
    queue(&db, &n).await;
    db.execute("UPDATE outbox SET status = 'sent'", &[])
        .await
        .unwrap();
    let (here, _stop) = instance(&url, Duration::from_secs(5), &cfg).await;
    let undelivered = here.undelivered();
    let group = GroupId::new("hook", "g");
    undelivered.add("hook", "g");
    eventually("the group forgotten", || async {
        !undelivered.contains(&group)
    })
    .await;
    assert!(receiver.received("/hook").is_empty());
}
