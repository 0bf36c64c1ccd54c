//! Real parts for the cluster tests: a database of the shared PostgreSQL server with the
//! store's tables, outbox rows as the dispatcher writes them, and a client to look.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_postgres::{Client, NoTls};

use navixy_alerts::alert::AlertStatus;
use navixy_alerts::dispatch::Notification;
use navixy_alerts::dispatch::testing::firing;
use navixy_alerts::store::Store;
use navixy_alerts::store::testing::shared_or_skip;

/// A fresh database on the shared server with the store's tables (its migrations); its
/// URL. `None` (the test returns) without PostgreSQL.
pub async fn database(test: &str) -> Option<String> {
    let url = shared_or_skip(test)?.create_database();
    let migrated = url.clone();
    tokio::task::spawn_blocking(move || Store::open_postgres(&migrated).map(drop))
        .await
        .unwrap()
        .unwrap();
    Some(url)
}

pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A firing notification `id` for `channel` in group `group`, decided at `at`.
pub fn notification(id: &str, channel: &str, group: &str, at: DateTime<Utc>) -> Notification {
    let mut alert = firing("fuel_drain", 7);
    alert.at = at;
    alert.starts_at = at;
    Notification {
        id: id.to_owned(),
        receiver: channel.to_owned(),
        group_key: group.to_owned(),
        group_labels: BTreeMap::new(),
        status: AlertStatus::Firing,
        reason: "first notification".to_owned(),
        created_at: at,
        alerts: vec![Arc::new(alert)],
        kind: Default::default(),
        acks: BTreeMap::new(),
        ack_urls: BTreeMap::new(),
    }
}

/// Queues `n` in the outbox, due now, as the dispatcher does; its `seq`.
pub async fn queue(db: &Client, n: &Notification) -> i64 {
    let at = n.created_at.timestamp_millis();
    db.query_one(
        "INSERT INTO outbox (id, channel, group_key, created_at, payload, status, next_attempt_at)
         VALUES ($1, $2, $3, $4, $5, 'pending', $4) RETURNING seq",
        &[
            &n.id,
            &n.receiver,
            &n.group_key,
            &at,
            &serde_json::to_string(n).unwrap(),
        ],
    )
    .await
    .unwrap()
    .get(0)
}

/// `(id, status, attempts)` of every outbox row, in `seq` order.
pub async fn rows(db: &Client) -> Vec<(String, String, i64)> {
    db.query("SELECT id, status, attempts FROM outbox ORDER BY seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// `(kind, notification id)` of every history entry, in order.
pub async fn history(db: &Client) -> Vec<(String, String)> {
    db.query(
        "SELECT kind, notification_id FROM history ORDER BY seq",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}
