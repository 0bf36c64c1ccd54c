//! The leases of one instance: a row per source in `leases`, on a PostgreSQL connection
//! of its own.
//!
//! ```text
//! leases(source TEXT PRIMARY KEY, owner TEXT, epoch BIGINT, expires_at BIGINT /* ms */)
//! ```
//! (created by the store's migrations, which the daemon runs before the first round).
//! Every time is the database's clock (`clock_timestamp()`), never an instance's: two
//! instances whose clocks disagree still agree on who holds a source. A round (every
//! `cluster.renew`) renews the leases held and takes any free or expired one:
//! - **acquire**: an expired row (or none) becomes `owner = me, epoch + 1`, in one
//!   statement, so two instances racing for it cannot both win;
//! - **renew**: only while `owner = me`, the epoch is the one acquired, and the lease has
//!   not run out; no row updated means the lease is lost (another owner, or expired);
//! - **lost without an answer**: when the database cannot be reached, the lease counts as
//!   lost once a whole lease has passed since the last renewal that succeeded was *sent*
//!   (the database set its expiry no earlier than that), measured on this machine's
//!   monotonic clock;
//! - **release** on a clean stop: `expires_at = now`, so a standby takes over at its next
//!   round instead of waiting for the expiry.
//!
//! A lost lease is never taken back by the same process: the daemon exits, and its
//! supervisor starts it again as a standby.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_postgres::{Client, NoTls};
use tracing::{error, info, warn};

use super::view::{ClusterView, SourceLease, rfc3339_ms};
use crate::config::ClusterConfig;
use crate::telemetry;

/// The shortest time between two rounds that retry an unreachable database.
const RETRY_FLOOR: Duration = Duration::from_millis(50);

/// The database's clock in milliseconds: `clock_timestamp()` moves within a transaction,
/// `now()` would not.
pub const DB_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// What changed in a round, for the daemon.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaseEvent {
    /// This instance now holds `source`; `from` held it before (`None`: nobody ever did).
    Acquired {
        source: String,
        epoch: i64,
        from: Option<String>,
    },
    /// This instance no longer holds `source`: `owner` holds it now (`None`: unknown, or
    /// nobody yet), `why` says how it was noticed.
    Lost {
        source: String,
        epoch: i64,
        owner: Option<String>,
        why: String,
    },
}

/// A lease this instance holds.
#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: i64,
    /// The lease may have run out after this (see the module's doc).
    deadline: Instant,
}

/// This instance's leases and the connection they are kept on.
pub struct Leases {
    url: String,
    instance: String,
    lease: Duration,
    renew: Duration,
    /// Every configured source, in config order.
    sources: Vec<String>,
    /// `None` until connected, and again after the connection failed.
    client: Option<Client>,
    /// The task driving the connection, aborted with it.
    connection: Option<tokio::task::JoinHandle<()>>,
    held: BTreeMap<String, Held>,
    /// Set by the first loss, saying which and how: a deposed instance takes nothing more.
    deposed: Option<String>,
    view: watch::Sender<ClusterView>,
}

impl Leases {
    /// The leases of `sources` for this instance, on the database at `url`; nothing is
    /// held until the first [`Leases::round`].
    pub fn new(
        url: &str,
        cluster: &ClusterConfig,
        sources: Vec<String>,
    ) -> (Leases, watch::Receiver<ClusterView>) {
        let (view, seen) = watch::channel(ClusterView::starting(&cluster.instance, &sources));
        // From the first scrape on, so that `increase()` sees the first takeover.
        metrics::counter!(telemetry::LEASE_TAKEOVERS).increment(0);
        let leases = Leases {
            url: url.to_owned(),
            instance: cluster.instance.clone(),
            lease: cluster.lease,
            renew: cluster.renew_every(),
            sources,
            client: None,
            connection: None,
            held: BTreeMap::new(),
            deposed: None,
            view,
        };
        (leases, seen)
    }

    /// The sources held and their epochs.
    pub fn held(&self) -> Vec<(String, i64)> {
        self.held
            .iter()
            .map(|(source, held)| (source.clone(), held.epoch))
            .collect()
    }

    /// One round: renew what is held, notice what was lost, take what is free (unless
    /// deposed), then publish the view. Never fails: a database that cannot be reached is
    /// a lease that may run out, said in the view.
    pub async fn round(&mut self) -> Vec<LeaseEvent> {
        let mut events = Vec::new();
        let mut failure = None;
        if let Err(e) = self.connect().await {
            failure = Some(e);
        }
        let held: Vec<(String, Held)> = self.held.iter().map(|(s, h)| (s.clone(), *h)).collect();
        for (source, lease) in held {
            if failure.is_none() {
                let sent = Instant::now();
                match self.renew_one(&source, lease.epoch).await {
                    Ok(true) => {
                        if let Some(h) = self.held.get_mut(&source) {
                            h.deadline = sent + self.lease;
                        }
                        continue;
                    }
                    Ok(false) => {
                        let owner = self.owner_of(&source).await;
                        events.push(self.lose(
                            &source,
                            lease.epoch,
                            owner,
                            "the renewal found the lease taken or expired".into(),
                        ));
                        continue;
                    }
                    Err(e) => failure = Some(e),
                }
            }
            if Instant::now() >= lease.deadline {
                let why = format!(
                    "no renewal for a whole lease ({}): {}",
                    crate::config::human_duration(self.lease),
                    failure.as_deref().unwrap_or("the database did not answer")
                );
                events.push(self.lose(&source, lease.epoch, None, why));
            }
        }
        if failure.is_none() && self.deposed.is_none() {
            for source in self.sources.clone() {
                if self.held.contains_key(&source) {
                    continue;
                }
                let sent = Instant::now();
                match self.acquire_one(&source).await {
                    Ok(Some((epoch, from))) => {
                        self.held.insert(
                            source.clone(),
                            Held {
                                epoch,
                                deadline: sent + self.lease,
                            },
                        );
                        info!(source, epoch, from = from.as_deref().unwrap_or("(nobody)"), instance = %self.instance, "Lease acquired: this instance runs the source.");
                        if from.is_some() {
                            metrics::counter!(telemetry::LEASE_TAKEOVERS).increment(1);
                        }
                        events.push(LeaseEvent::Acquired {
                            source,
                            epoch,
                            from,
                        });
                    }
                    Ok(None) => {}
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
        }
        if failure.is_some() {
            self.disconnect();
        }
        self.publish(failure).await;
        events
    }

    /// Gives up every lease held, so that a standby takes them at its next round.
    pub async fn release(&mut self) {
        if self.held.is_empty() {
            return;
        }
        if let Err(e) = self.connect().await {
            warn!(error = %e, "Leases not released (the database cannot be reached); a standby takes them when they expire.");
            return;
        }
        let sql = format!(
            "UPDATE leases SET expires_at = {DB_NOW_MS} \
             WHERE source = $1 AND owner = $2 AND epoch = $3 AND expires_at > {DB_NOW_MS}"
        );
        for (source, held) in std::mem::take(&mut self.held) {
            let result = match &self.client {
                Some(client) => {
                    tokio::time::timeout(
                        self.renew,
                        client.execute(&sql, &[&source, &self.instance, &held.epoch]),
                    )
                    .await
                }
                None => continue,
            };
            match result {
                Ok(Ok(_)) => info!(source, epoch = held.epoch, "Lease released."),
                Ok(Err(e)) => {
                    warn!(source, error = %e, "Lease not released; it expires on its own.")
                }
                Err(_) => warn!(source, "Lease not released in time; it expires on its own."),
            }
        }
        self.publish(None).await;
    }

    /// Rounds every `cluster.renew` until `stop` turns true, sending what changed to
    /// `events`; then releases what is held. While leases are held and a round could not
    /// reach the database, the next comes after a quarter of `renew` (see
    /// [`Leases::next_round_in`]).
    pub async fn run(
        mut self,
        events: mpsc::UnboundedSender<LeaseEvent>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let started = Instant::now();
            for event in self.round().await {
                let _ = events.send(event);
            }
            wait = self.next_round_in().saturating_sub(started.elapsed());
        }
        self.release().await;
        self.disconnect();
    }

    /// The time from one round's start to the next: `renew`, or a quarter of it while a
    /// lease is held and the last round could not reach the database (it disconnects),
    /// so that an outage shorter than the lease, a database restarting, does not cost the
    /// lease for want of a try after the database is back.
    fn next_round_in(&self) -> Duration {
        if self.client.is_none() && !self.held.is_empty() {
            (self.renew / 4).max(RETRY_FLOOR)
        } else {
            self.renew
        }
    }

    async fn connect(&mut self) -> Result<(), String> {
        if self.client.is_some() {
            return Ok(());
        }
        let mut config: tokio_postgres::Config = self
            .url
            .parse()
            .map_err(|e| format!("cluster: the database URL: {e}"))?;
        config.connect_timeout(self.renew).keepalives(true);
        let (client, connection) = tokio::time::timeout(self.renew, config.connect(NoTls))
            .await
            .map_err(|_| "cluster: the database did not answer in time".to_string())?
            .map_err(|e| format!("cluster: cannot connect to the database: {e}"))?;
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                warn!(error = %e, "The cluster's database connection ended.");
            }
        });
        self.client = Some(client);
        self.connection = Some(task);
        Ok(())
    }

    fn disconnect(&mut self) {
        self.client = None;
        if let Some(task) = self.connection.take() {
            task.abort();
        }
    }

    fn client(&self) -> Result<&Client, String> {
        self.client
            .as_ref()
            .ok_or_else(|| "cluster: not connected to the database".to_string())
    }

    /// Runs a query with the round's time limit.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, String> {
        let client = self.client()?;
        match tokio::time::timeout(self.renew, client.query(sql, params)).await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(e)) => Err(format!("cluster: the database refused a lease query: {e}")),
            Err(_) => Err("cluster: the database did not answer in time".into()),
        }
    }

    /// Takes `source` when free or expired: its new epoch and who held it before.
    async fn acquire_one(&self, source: &str) -> Result<Option<(i64, Option<String>)>, String> {
        let sql = format!(
            "WITH prior AS (SELECT owner FROM leases WHERE source = $1)
             INSERT INTO leases (source, owner, epoch, expires_at)
             VALUES ($1, $2, 1, {DB_NOW_MS} + $3)
             ON CONFLICT (source) DO UPDATE
                SET owner = EXCLUDED.owner, epoch = leases.epoch + 1, expires_at = EXCLUDED.expires_at
                WHERE leases.expires_at <= {DB_NOW_MS}
             RETURNING epoch, (SELECT owner FROM prior)"
        );
        let rows = self
            .query(&sql, &[&source, &self.instance, &self.lease_ms()])
            .await?;
        Ok(rows.first().map(|row| (row.get(0), row.get(1))))
    }

    /// Extends `source`'s lease; `false` when it is no longer ours.
    async fn renew_one(&self, source: &str, epoch: i64) -> Result<bool, String> {
        let sql = format!(
            "UPDATE leases SET expires_at = {DB_NOW_MS} + $4
             WHERE source = $1 AND owner = $2 AND epoch = $3 AND expires_at > {DB_NOW_MS}
             RETURNING expires_at"
        );
        let rows = self
            .query(&sql, &[&source, &self.instance, &epoch, &self.lease_ms()])
            .await?;
        Ok(!rows.is_empty())
    }

    /// Who holds `source` now, when it can be read and is not us.
    async fn owner_of(&self, source: &str) -> Option<String> {
        let rows = self
            .query("SELECT owner FROM leases WHERE source = $1", &[&source])
            .await
            .ok()?;
        rows.first()
            .map(|row| row.get::<_, String>(0))
            .filter(|owner| *owner != self.instance)
    }

    fn lose(&mut self, source: &str, epoch: i64, owner: Option<String>, why: String) -> LeaseEvent {
        self.held.remove(source);
        let to = owner
            .as_deref()
            .map_or_else(|| "nobody yet".to_string(), |o| format!("`{o}`"));
        self.deposed.get_or_insert_with(|| {
            format!("source {source}: lease (epoch {epoch}) lost, now held by {to}: {why}")
        });
        error!(source, epoch, owner = owner.as_deref().unwrap_or("(unknown)"), why, instance = %self.instance, "Lease lost: this instance no longer runs the source.");
        LeaseEvent::Lost {
            source: source.to_owned(),
            epoch,
            owner,
            why,
        }
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }

    /// Reads every configured source's row and publishes the view (and the metrics).
    async fn publish(&mut self, failure: Option<String>) {
        let sql = format!(
            "SELECT source, owner, epoch, expires_at, {DB_NOW_MS} FROM leases WHERE source = ANY($1)"
        );
        let mut error = failure;
        let rows = if error.is_none() {
            match self.query(&sql, &[&self.sources]).await {
                Ok(rows) => rows,
                Err(e) => {
                    error = Some(e);
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let before = self.view.borrow().clone();
        match (&before.error, &error) {
            (None, Some(e)) => {
                warn!(error = %e, "The leases cannot be read or renewed; retrying.")
            }
            (Some(_), None) => info!("The leases can be read and renewed again."),
            _ => {}
        }
        let mut sources = Vec::with_capacity(self.sources.len());
        for source in &self.sources {
            let held = self.held.get(source);
            let row = rows
                .iter()
                .find(|row| row.get::<_, &str>(0) == source.as_str());
            let lease = match row {
                Some(row) => {
                    let expires: i64 = row.get(3);
                    let now: i64 = row.get(4);
                    SourceLease {
                        source: source.clone(),
                        owner: Some(row.get(1)),
                        epoch: row.get(2),
                        expires_at: Some(rfc3339_ms(expires)),
                        live: expires > now,
                        held: held.is_some(),
                    }
                }
                // Unread: what was seen before, with this instance's own part.
                None => match before.source(source) {
                    Some(seen) if error.is_some() => SourceLease {
                        held: held.is_some(),
                        ..seen.clone()
                    },
                    _ => SourceLease {
                        source: source.clone(),
                        owner: None,
                        epoch: 0,
                        expires_at: None,
                        live: false,
                        held: held.is_some(),
                    },
                },
            };
            // Ours: the epoch we acquired, whatever the last read said.
            let lease = match held {
                Some(h) => SourceLease {
                    epoch: h.epoch,
                    ..lease
                },
                None => lease,
            };
            metrics::gauge!(telemetry::LEASE_HELD, "source" => source.clone()).set(if lease.held {
                1.0
            } else {
                0.0
            });
            metrics::gauge!(telemetry::LEASE_EPOCH, "source" => source.clone())
                .set(lease.epoch as f64);
            sources.push(lease);
        }
        let owns: Vec<String> = sources
            .iter()
            .filter(|s| s.held)
            .map(|s| s.source.clone())
            .collect();
        self.view.send_replace(ClusterView {
            instance: self.instance.clone(),
            role: if owns.is_empty() { "standby" } else { "owner" }.into(),
            owns,
            sources,
            lost: self.deposed.clone(),
            error,
        });
    }
}

impl Drop for Leases {
    fn drop(&mut self) {
        self.disconnect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::shared_or_skip;

    fn cluster(instance: &str) -> ClusterConfig {
        ClusterConfig {
            instance: instance.into(),
            lease: Duration::from_secs(15),
            renew: None,
        }
    }

    /// A new database with the store's schema (the leases table included).
    fn database(pg: &crate::store::testing::PgServer) -> String {
        let url = pg.create_database();
        drop(crate::store::Store::open_postgres(&url).unwrap());
        url
    }

    fn leases(url: &str, instance: &str) -> (Leases, watch::Receiver<ClusterView>) {
        Leases::new(url, &cluster(instance), vec!["navixy".into()])
    }

    /// Runs `sql` on the database at `url`, as an operator (or the passing of time) would.
    async fn by_hand(url: &str, sql: &str) {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
        let task = tokio::spawn(connection);
        client.batch_execute(sql).await.unwrap();
        drop(client);
        let _ = task.await;
    }

    /// The lease runs out on the database's clock, as if `lease` had passed unrenewed.
    async fn expire(url: &str) {
        by_hand(
            url,
            &format!("UPDATE leases SET expires_at = {DB_NOW_MS} - 1 WHERE source = 'navixy'"),
        )
        .await;
    }

    fn acquired(epoch: i64, from: Option<&str>) -> LeaseEvent {
        LeaseEvent::Acquired {
            source: "navixy".into(),
            epoch,
            from: from.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn one_holds_the_other_waits_then_takes_over_an_expired_lease_and_the_first_notices() {
        let Some(pg) = shared_or_skip("cluster::lease") else {
            return;
        };
        let url = database(pg);
        let (mut a, seen_a) = leases(&url, "a");
        let (mut b, seen_b) = leases(&url, "b");

        assert_eq!(a.round().await, vec![acquired(1, None)]);
        assert_eq!(b.round().await, vec![], "b waits while a holds it");
        let view = seen_b.borrow().clone();
        assert_eq!((view.role.as_str(), view.owns.len()), ("standby", 0));
        let lease = view.source("navixy").unwrap();
        assert_eq!(
            (lease.owner.as_deref(), lease.epoch, lease.live, lease.held),
            (Some("a"), 1, true, false)
        );
        let view = seen_a.borrow().clone();
        assert_eq!(
            (view.role.as_str(), view.owns.clone()),
            ("owner", vec!["navixy".to_string()])
        );
        assert!(view.source("navixy").unwrap().held);

        // A renewal keeps it, and the epoch.
        assert_eq!(a.round().await, vec![]);
        assert_eq!(a.held(), vec![("navixy".to_string(), 1)]);
        assert_eq!(b.round().await, vec![]);

        // a stops renewing; once the lease has run out b takes it, one epoch up.
        expire(&url).await;
        assert_eq!(b.round().await, vec![acquired(2, Some("a"))]);
        assert_eq!(b.held(), vec![("navixy".to_string(), 2)]);

        // a's next renewal finds b there: lost, and never taken back by a.
        let events = a.round().await;
        assert_eq!(events.len(), 1, "{events:?}");
        let LeaseEvent::Lost {
            source,
            epoch,
            owner,
            why,
        } = &events[0]
        else {
            panic!("{events:?}")
        };
        assert_eq!(
            (source.as_str(), *epoch, owner.as_deref()),
            ("navixy", 1, Some("b"))
        );
        assert!(why.contains("taken or expired"), "{why}");
        assert!(a.held().is_empty());
        assert_eq!(seen_a.borrow().role, "standby");
        expire(&url).await;
        assert_eq!(a.round().await, vec![], "a deposed instance takes nothing");
    }

    #[tokio::test]
    async fn a_released_lease_is_taken_at_once() {
        let Some(pg) = shared_or_skip("cluster::lease") else {
            return;
        };
        let url = database(pg);
        let (mut a, _) = leases(&url, "a");
        let (mut b, seen_b) = leases(&url, "b");
        assert_eq!(a.round().await, vec![acquired(1, None)]);
        a.release().await;
        assert!(a.held().is_empty());
        assert_eq!(b.round().await, vec![acquired(2, Some("a"))]);
        let view = seen_b.borrow().clone();
        let lease = view.source("navixy").unwrap();
        assert_eq!((lease.owner.as_deref(), lease.live), (Some("b"), true));
    }

    #[tokio::test]
    async fn an_unreachable_database_loses_the_lease_only_after_a_whole_lease() {
        let Some(pg) = shared_or_skip("cluster::lease") else {
            return;
        };
        let url = database(pg);
        let (mut a, seen) = leases(&url, "a");
        assert_eq!(a.round().await, vec![acquired(1, None)]);
        let renew = Duration::from_secs(5);
        assert_eq!(a.next_round_in(), renew, "a third of the lease");
        // The database goes away (a port nothing listens on).
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = dead.local_addr().unwrap().port();
        drop(dead);
        a.url = format!("postgres://navixy@127.0.0.1:{port}/x");
        a.disconnect();
        assert_eq!(a.round().await, vec![], "within the lease: still held");
        assert_eq!(a.held().len(), 1);
        assert_eq!(
            a.next_round_in(),
            renew / 4,
            "tried again sooner while held"
        );
        assert!(
            seen.borrow()
                .error
                .as_deref()
                .unwrap()
                .contains("cannot connect")
        );
        // A whole lease after the last renewal was sent (instead of waiting it out).
        a.held.get_mut("navixy").unwrap().deadline = Instant::now();
        let events = a.round().await;
        let [
            LeaseEvent::Lost {
                owner: None, why, ..
            },
        ] = events.as_slice()
        else {
            panic!("{events:?}")
        };
        assert!(
            why.starts_with("no renewal for a whole lease (15s): cluster: cannot connect"),
            "{why}"
        );
        assert!(a.held().is_empty());
        assert_eq!(a.next_round_in(), renew, "nothing held: no hurry");
    }
}
