//! The database lost under the dispatcher (a private PostgreSQL server, stopped and
//! started again): a flush whose commit failed half-way, after it had told its group's
//! new member in memory, is made again once the database is back, and the member is
//! notified, once. And a commit reported as failed that the database made all the same
//! (its COMMIT's answer lost with the connection) has its notifications sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Duration as Span;
use serde_json::Value;

use navixy_alerts::clock::ManualClock;
use navixy_alerts::config::Config;
use navixy_alerts::dispatch::{DispatchOptions, Dispatcher, DispatcherHandle};
use navixy_alerts::store::testing::{PgServer, shared_or_skip};
use navixy_alerts::store::{self, Store, StoreError, Tx};

use super::support::{Receiver, eventually, firing, shutdown, t0, webhook_config};

/// How many times the test submits a firing before it gives up on the database.
const ATTEMPTS: usize = 600;

/// A connection of the test's own.
async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A dispatcher on `store` with `clock`, retrying fast, and its stop.
async fn start(
    cfg: &Config,
    store: Store,
    clock: &ManualClock,
) -> (DispatcherHandle, tokio::sync::oneshot::Sender<()>) {
    let (stop, on_stop) = shutdown();
    let options = DispatchOptions {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        drain_timeout: Duration::ZERO,
        ..DispatchOptions::default()
    };
    let dispatcher = Dispatcher::start_with(cfg, store, Arc::new(clock.clone()), on_stop, options)
        .await
        .unwrap();
    (dispatcher, stop)
}

/// The first `i64` of a query's one row.
async fn count(db: &tokio_postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

/// The (tracker id, status) of each alert a notification carries.
fn alerts(body: &Value) -> Vec<(i64, String)> {
    body["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["tracker"]["id"].as_i64().unwrap_or_default(),
                a["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_flush_rolled_back_with_the_database_is_made_again_when_it_is_back() {
    let test = "dispatch::database_loss::a_flush_rolled_back_with_the_database";
    if shared_or_skip(test).is_none() {
        return;
    }
    // A server of its own: this test stops it.
    let server = PgServer::start().expect("a private PostgreSQL server");
    let url = server.create_database();
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let cfg = webhook_config(
        dir.path(),
        &format!("{}/ops", rx.base),
        &format!(r#"{{ postgres: {{ url: "{url}" }} }}"#),
    );
    let store = Store::open(&cfg).unwrap();
    let clock = ManualClock::new(t0());
    let (dispatcher, stop) = start(&cfg, store, &clock).await;

    // Truck 1 is told at once; truck 2 joins its group and waits for `group_interval`.
    dispatcher.submit(firing("fuel_drain", 1)).await.unwrap();
    rx.wait_ok("/ops", 1).await;
    let second = firing("fuel_drain", 2);
    dispatcher.submit(second.clone()).await.unwrap();
    let watcher = connect(&url).await;
    eventually("the first notification marked sent", || async {
        count(
            &watcher,
            "SELECT count(*) FROM outbox WHERE status = 'sent'",
        )
        .await
            == 1
    })
    .await;

    // The group falls due. The dispatcher's timer flushes it, telling truck 2 in memory,
    // and its commit waits on a lock on the history, its last write. The database goes
    // away under it.
    let locker = connect(&url).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE history IN EXCLUSIVE MODE")
        .await
        .unwrap();
    clock.advance(Span::seconds(1));
    eventually("the flush waiting for the history's lock", || async {
        let waiting = "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'
               AND query LIKE 'INSERT INTO history%'";
        count(&watcher, waiting).await > 0
    })
    .await;
    server.stop();
    // Taken after the failed flush and whatever followed it; still no database.
    let refused = dispatcher.submit(second.clone()).await;
    assert!(refused.is_err(), "{refused:?}");
    // The store runs its jobs in order: whatever this failure led the dispatcher to ask
    // of the database (reading the groups back at once, say) has run, and failed, before
    // the database is back.
    let _ = dispatcher.store().call(|_| Ok(())).await;

    // Back. The same firing is submitted until it commits, as the engine does; truck 2
    // reaches the channel.
    server.start_again();
    let mut committed = false;
    for _ in 0..ATTEMPTS {
        if dispatcher.submit(second.clone()).await.is_ok() {
            committed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(committed, "no commit after the database came back");
    let got = rx.wait_ok("/ops", 2).await;
    let body = got[1].json();
    assert_eq!(body["type"], "alert.firing");
    assert!(
        alerts(&body).contains(&(2, "firing".to_owned())),
        "{body:#}"
    );

    // Once: the channel delivers in order, so a second notification of truck 2 would come
    // before the next one's.
    clock.advance(Span::minutes(1));
    dispatcher.submit(firing("fuel_drain", 3)).await.unwrap();
    let got = rx.wait_ok("/ops", 3).await;
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(
        alerts(&got[2].json()).contains(&(3, "firing".to_owned())),
        "{:#}",
        got[2].json()
    );
    let _ = stop.send(());
    dispatcher.stopped().await;
}

#[tokio::test]
async fn a_commit_reported_as_failed_but_made_has_its_notifications_sent() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let cfg = webhook_config(
        dir.path(),
        &format!("{}/ops", rx.base),
        "{ path: alerts.db }",
    );
    let store = Store::open(&cfg).unwrap();
    let refuse = Arc::new(AtomicBool::new(false));
    let refusing = refuse.clone();
    store.set_commit_guard(Arc::new(move |_: &Tx<'_>| {
        if refusing.load(Ordering::Acquire) {
            Err(StoreError::Fenced("refused by the test".into()))
        } else {
            Ok(())
        }
    }));
    let clock = ManualClock::new(t0());
    let (dispatcher, stop) = start(&cfg, store.clone(), &clock).await;
    dispatcher.submit(firing("fuel_drain", 1)).await.unwrap();
    let first = rx.wait_ok("/ops", 1).await[0]
        .header("webhook-id")
        .to_owned();

    // A commit is refused; the database kept its notification all the same, as when the
    // answer to a COMMIT is lost with the connection: a pending row newer than any sent.
    refuse.store(true, Ordering::Release);
    let refused = dispatcher.submit(firing("speeding", 2)).await;
    assert!(refused.is_err(), "{refused:?}");
    store
        .call(move |db| {
            let row = store::outbox_entry(db.conn(), &first)?.expect("the first notification");
            let mut payload: Value = serde_json::from_str(&row.payload).unwrap();
            payload["id"] = "msg_made_anyway".into();
            let tx = db.write(store::Durability::Full)?;
            store::insert_outbox(
                &tx,
                "msg_made_anyway",
                &row.channel,
                &row.group_key,
                row.created_at,
                &payload.to_string(),
            )?;
            tx.commit()
        })
        .await
        .unwrap();

    // The next commit hands it to the channel, once, under its id.
    refuse.store(false, Ordering::Release);
    clock.advance(Span::seconds(1));
    dispatcher.submit(firing("fuel_drain", 3)).await.unwrap();
    let got = rx.wait_ok("/ops", 3).await;
    let ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(
        ids.iter().filter(|id| **id == "msg_made_anyway").count(),
        1,
        "{ids:?}"
    );
    assert_eq!(ids[1], "msg_made_anyway", "{ids:?}");
    let _ = stop.send(());
    dispatcher.stopped().await;
}
