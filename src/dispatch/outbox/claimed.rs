//! Delivery from a shared PostgreSQL outbox by any live instance of a cluster.
//!
//! Each channel has a row in `outbox_channels`. An instance delivers a channel's
//! notifications only while it holds that row, locked `FOR UPDATE SKIP LOCKED`, in one
//! short transaction that reads the channel's pending rows in `seq` order, sends the
//! first due one and writes its outcome (with its history entries), then commits. Whoever holds the row is the channel's only sender, so order per channel holds
//! across instances, and whoever is alive takes the row: an instance that dies releases it
//! with its connection, one that freezes loses it when PostgreSQL ends its idle
//! transaction after `idle_in_transaction_session_timeout` (the lease), which also makes
//! its late writes fail. The connection is checked before every send, so a thawed
//! instance sends nothing more; a duplicate is then only a request that was in flight at
//! the fault, under the same notification id.
//!
//! Every instance polls each channel (so a notification queued by an instance that died is
//! picked up within [`ClaimOptions::poll`]), and the local dispatcher nudges its channel
//! when it queues one, so that delivery on one instance does not wait for the poll.
//!
//! Retries, `Retry-After` and giving up after `notify.retry_for` are judged as the
//! in-process sender judges them ([`RetryPolicy::judge`]); a notification that waits for
//! its next attempt holds up only its own group. "Retry now" is a write to the shared rows
//! ([`Claimed::retry`]), so any instance can take it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};
use tokio_postgres::{Client, NoTls, Transaction};

use super::{Counters, Depth, Retried, RetryPolicy, RetryTarget, Verdict, stopped};
use crate::clock::Clock;
use crate::config::Config;
use crate::dispatch::channels::{self, Channel};
use crate::dispatch::group::Undelivered;
use crate::dispatch::notification::Notification;
use crate::store::{Feed, FeedEvent, HistoryEntry, HistoryKind};

/// Where the shared outbox is and how long a claim may outlive its holder.
#[derive(Debug, Clone)]
pub struct ClaimOptions {
    /// `storage.postgres.url`.
    pub url: String,
    /// `cluster.lease`: a frozen instance's claim is released after this.
    pub lease: Duration,
    /// How often every instance looks at every channel.
    pub poll: Duration,
    /// `cluster.instance`: the connections' `application_name` is
    /// `navixy-alerts delivery INSTANCE`, so that `pg_stat_activity` tells who holds what.
    pub instance: Option<String>,
}

impl ClaimOptions {
    pub fn new(url: impl Into<String>, lease: Duration) -> ClaimOptions {
        ClaimOptions {
            url: url.into(),
            lease,
            poll: Duration::from_millis(500),
            instance: None,
        }
    }
}

/// The most pending rows read per claim (rows of groups that wait are skipped).
const MAX_READ: i64 = 512;
/// The longest wait between reconnection attempts.
const MAX_RECONNECT: Duration = Duration::from_secs(5);

/// The running delivery loops. Cheap to clone.
#[derive(Clone)]
pub struct Claimed {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Claimed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claimed")
            .field("channels", &self.inner.nudges.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

struct Inner {
    options: ClaimOptions,
    clock: Arc<dyn Clock>,
    nudges: BTreeMap<Arc<str>, Arc<Notify>>,
    depth: Depth,
    undelivered: Undelivered,
    stopped: watch::Receiver<bool>,
    /// Where the `sent`/`failed` history entries are told once committed: the running
    /// store's feed (it changes when an owner's run opens its store).
    feed: parking_lot::Mutex<Feed>,
}

/// Why delivery cannot start.
#[derive(Debug, thiserror::Error)]
#[error("shared outbox: {0}")]
pub struct ClaimError(String);

impl Claimed {
    /// Adds the claim rows of `channels` (to `outbox_channels`, which the store's
    /// migrations create) and starts one delivery loop per channel; they
    /// run until `shutdown` is set (a send under way is finished and recorded first).
    pub async fn start(
        options: ClaimOptions,
        channels: BTreeMap<Arc<str>, Arc<Channel>>,
        policy: RetryPolicy,
        clock: Arc<dyn Clock>,
        feed: Feed,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Claimed, ClaimError> {
        let client = connect(&options)
            .await
            .map_err(|e| ClaimError(format!("storage.postgres.url: {e}")))?;
        for name in channels.keys() {
            client
                .execute(
                    "INSERT INTO outbox_channels (channel) VALUES ($1) ON CONFLICT DO NOTHING",
                    &[&&**name],
                )
                .await
                .map_err(|e| ClaimError(e.to_string()))?;
        }
        drop(client);

        let (done_tx, done_rx) = watch::channel(false);
        let nudges: BTreeMap<Arc<str>, Arc<Notify>> = channels
            .keys()
            .map(|name| (name.clone(), Arc::new(Notify::new())))
            .collect();
        let inner = Arc::new(Inner {
            options,
            clock,
            nudges,
            depth: Depth::default(),
            undelivered: Undelivered::default(),
            stopped: done_rx,
            feed: parking_lot::Mutex::new(feed),
        });
        let mut tasks = Vec::new();
        for (name, channel) in channels {
            let nudge = inner.nudges.get(&name).cloned().unwrap_or_default();
            let lane = Lane {
                counters: Counters::new(&name),
                name,
                channel,
                policy: policy.clone(),
                inner: inner.clone(),
                nudge,
            };
            tasks.push(tokio::spawn(lane.run(shutdown.clone())));
        }
        tasks.push(tokio::spawn(count_pending(inner.clone(), shutdown)));
        tokio::spawn(async move {
            for task in tasks {
                if let Err(e) = task.await {
                    tracing::error!(error = %e, "A delivery loop ended abnormally.");
                }
            }
            let _ = done_tx.send(true);
        });
        Ok(Claimed { inner })
    }

    /// [`Claimed::start`] for the channels of `config`, with its `notify.retry_for`.
    pub async fn from_config(
        options: ClaimOptions,
        config: &Config,
        clock: Arc<dyn Clock>,
        feed: Feed,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Claimed, ClaimError> {
        let http = channels::http_client().map_err(ClaimError)?;
        let mut built = BTreeMap::new();
        for (name, channel) in &config.channels {
            let channel =
                Channel::build(name, channel, &http).map_err(|e| ClaimError(e.to_string()))?;
            built.insert(Arc::<str>::from(name.as_str()), Arc::new(channel));
        }
        let policy = RetryPolicy {
            retry_for: config.notify.retry_for,
            ..RetryPolicy::default()
        };
        Claimed::start(options, built, policy, clock, feed, shutdown).await
    }

    /// Tells `channel`'s loop that a notification was queued (by this instance).
    pub fn nudge(&self, channel: &str) {
        if let Some(n) = self.inner.nudges.get(channel) {
            n.notify_one();
        }
    }

    /// Tells the history entries of deliveries to `feed` from now on (the store of the
    /// run that has started).
    pub fn set_feed(&self, feed: Feed) {
        *self.inner.feed.lock() = feed;
    }

    /// Pending notifications in the shared outbox, as last counted.
    pub fn depth(&self) -> Depth {
        self.inner.depth.clone()
    }

    /// The groups with a notification not yet delivered, for the local dispatcher: the
    /// loops tell it what they deliver.
    pub fn undelivered(&self) -> Undelivered {
        self.inner.undelivered.clone()
    }

    /// Whether `channel` is one of the delivered channels.
    pub fn has_channel(&self, channel: &str) -> bool {
        self.inner.nudges.contains_key(channel)
    }

    /// Waits until every loop has stopped (after shutdown).
    pub async fn stopped(&self) {
        let mut stopped = self.inner.stopped.clone();
        let _ = stopped.wait_for(|done| *done).await;
    }

    /// An admin's "retry now" on the shared rows: what waits for a later attempt is due
    /// now, what failed is pending again (same id, attempts kept) and due now. Whichever
    /// instance holds the channel then sends it; an attempt under way is never doubled,
    /// since only the holder of the channel sends.
    pub async fn retry(&self, channel: &str, target: RetryTarget) -> Result<Retried, String> {
        let mut client = connect(&self.inner.options)
            .await
            .map_err(|e| e.to_string())?;
        let now = self.inner.clock.now().timestamp_millis();
        let mut retried = Retried {
            channel: channel.to_owned(),
            ..Retried::default()
        };
        let tx = client.transaction().await.map_err(|e| e.to_string())?;
        let only: Option<&str> = match &target {
            RetryTarget::Notification(id) => Some(id),
            RetryTarget::Channel => None,
        };
        // Pending rows become due now; failed rows pending again. `$3` is the one id, or
        // NULL for the whole channel.
        let rows = tx
            .query(
                "WITH hit AS (
                     SELECT id, status, group_key, seq FROM outbox
                     WHERE channel = $1
                       AND ($3::TEXT IS NULL AND status IN ('pending', 'failed') OR id = $3)
                     ORDER BY seq FOR UPDATE
                 ), changed AS (
                     UPDATE outbox o SET
                         status = 'pending',
                         next_attempt_at = LEAST(o.next_attempt_at, $2),
                         finished_at = CASE WHEN o.status = 'failed' THEN NULL ELSE o.finished_at END
                     FROM hit WHERE o.id = hit.id AND hit.status IN ('pending', 'failed')
                 )
                 SELECT id, status, group_key FROM hit ORDER BY seq",
                &[&channel, &now, &only],
            )
            .await
            .map_err(|e| e.to_string())?;
        tx.commit().await.map_err(|e| e.to_string())?;
        for row in rows {
            let id: String = row.get(0);
            let status: String = row.get(1);
            let group_key: String = row.get(2);
            match status.as_str() {
                "pending" => retried.due.push(id),
                "failed" => {
                    self.inner.undelivered.add(channel, &group_key);
                    tracing::info!(channel, id = %id, "A failed notification is queued again (retry now).");
                    retried.requeued.push(id);
                }
                "sent" if only.is_some() => retried.sent.push(id),
                _ => {}
            }
        }
        self.nudge(channel);
        Ok(retried)
    }
}

/// Opens a delivery connection: its idle transactions end after the lease.
async fn connect(options: &ClaimOptions) -> Result<Client, String> {
    let mut config: tokio_postgres::Config = options.url.parse().map_err(|e| format!("{e}"))?;
    config.application_name(match &options.instance {
        Some(name) => format!("navixy-alerts delivery {name}"),
        None => "navixy-alerts delivery".to_owned(),
    });
    let connecting = config.connect(NoTls);
    let (client, connection) = tokio::time::timeout(options.lease, connecting)
        .await
        .map_err(|_| format!("no connection within {:?}", options.lease))?
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "A delivery connection ended.");
        }
    });
    let lease_ms = options.lease.as_millis().max(1);
    client
        .batch_execute(&format!(
            "SET idle_in_transaction_session_timeout = {lease_ms}"
        ))
        .await
        .map_err(|e| e.to_string())?;
    Ok(client)
}

/// Counts the shared outbox's pending rows every poll, for the depth gauge and
/// `/readyz` (other instances deliver too, so local counting would drift).
async fn count_pending(inner: Arc<Inner>, mut shutdown: watch::Receiver<bool>) {
    let mut client: Option<Client> = None;
    loop {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = connect(&inner.options).await.ok();
        }
        if let Some(c) = &client {
            match c
                .query_one("SELECT count(*) FROM outbox WHERE status = 'pending'", &[])
                .await
            {
                Ok(row) => inner.depth.set(row.get::<_, i64>(0)),
                Err(e) => {
                    tracing::debug!(error = %e, "Cannot count the pending notifications.");
                    client = None;
                }
            }
        }
        if let Some(c) = &client
            && let Err(e) = forget_delivered(&inner.undelivered, c).await
        {
            tracing::debug!(error = %e, "Cannot look for groups delivered elsewhere.");
            client = None;
        }
        tokio::select! {
            _ = tokio::time::sleep(inner.options.poll) => {}
            _ = stopped(&mut shutdown) => break,
        }
    }
}

/// Forgets the groups counted as undelivered that have no pending row any more: another
/// instance delivered them, and this one's dispatcher would otherwise hold their repeats
/// back for good. Only groups counted before the query are forgotten, so that one queued
/// meanwhile is not.
async fn forget_delivered(
    undelivered: &Undelivered,
    c: &Client,
) -> Result<(), tokio_postgres::Error> {
    let counted = undelivered.groups();
    if counted.is_empty() {
        return Ok(());
    }
    let pending: HashSet<(String, String)> = c
        .query(
            "SELECT DISTINCT channel, group_key FROM outbox WHERE status = 'pending'",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for id in counted {
        if !pending.contains(&(id.channel.to_string(), id.key.to_string())) {
            undelivered.forget(&id);
        }
    }
    Ok(())
}

/// One channel's delivery loop.
struct Lane {
    name: Arc<str>,
    channel: Arc<Channel>,
    counters: Counters,
    policy: RetryPolicy,
    inner: Arc<Inner>,
    nudge: Arc<Notify>,
}

/// What one claim did.
#[derive(Debug, PartialEq)]
enum Round {
    /// Another instance holds the channel.
    Busy,
    /// Attempts were made; look again at once.
    Worked,
    /// Nothing due; the earliest later attempt, if any.
    Idle(Option<DateTime<Utc>>),
}

/// Rows as the claim reads them (the payload only of the one it sends).
const PENDING: &str = "SELECT seq, id, group_key, attempts, next_attempt_at
    FROM outbox WHERE channel = $1 AND status = 'pending' ORDER BY seq LIMIT $2";

impl Lane {
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut client: Option<Client> = None;
        let mut failures = 0u32;
        let mut last = std::time::Instant::now();
        loop {
            if *shutdown.borrow() {
                break;
            }
            // More than a lease since the last turn: this process was frozen (or a send
            // outlasted the lease), and its claims are gone. It sends nothing for one more
            // lease: an owner deposed meanwhile learns it from its lease and exits first.
            if last.elapsed() > self.inner.options.lease {
                tracing::warn!(channel = %self.name, gap_ms = last.elapsed().as_millis(), "Delivery paused for one lease after a gap longer than the lease.");
                client = None;
                tokio::select! {
                    _ = tokio::time::sleep(self.inner.options.lease) => {}
                    _ = stopped(&mut shutdown) => break,
                }
            }
            last = std::time::Instant::now();
            let wait = match self.connected(&mut client).await {
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(channel = %self.name, error = %e, "Cannot connect to the shared outbox; retrying.");
                    self.reconnect_delay(failures)
                }
                Ok(c) => match self.round(c).await {
                    Ok(Round::Worked) => {
                        failures = 0;
                        continue;
                    }
                    Ok(Round::Busy) => {
                        failures = 0;
                        self.inner.options.poll
                    }
                    Ok(Round::Idle(next)) => {
                        failures = 0;
                        let poll = self.inner.options.poll;
                        next.map_or(poll, |at| {
                            (at - self.inner.clock.now())
                                .to_std()
                                .unwrap_or(Duration::ZERO)
                                .min(poll)
                        })
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        tracing::warn!(channel = %self.name, error = %e, "Delivery interrupted: the claim is given up and taken again.");
                        client = None;
                        self.reconnect_delay(failures)
                    }
                },
            };
            tokio::select! {
                _ = self.nudge.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stopped(&mut shutdown) => break,
            }
        }
    }

    fn reconnect_delay(&self, failures: u32) -> Duration {
        crate::backoff::exponential(
            Duration::from_millis(100),
            MAX_RECONNECT.min(self.inner.options.lease),
            failures,
            fastrand::f64(),
        )
    }

    async fn connected<'c>(
        &self,
        client: &'c mut Option<Client>,
    ) -> Result<&'c mut Client, String> {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            *client = None;
            *client = Some(connect(&self.inner.options).await?);
        }
        client
            .as_mut()
            .ok_or_else(|| "no delivery connection".to_owned())
    }

    /// Claims the channel, sends the first notification that is due (in `seq` order,
    /// skipping groups that wait for a later attempt), records its outcome, commits.
    /// One send per transaction: a fault repeats at most the request in flight.
    async fn round(&self, client: &mut Client) -> Result<Round, tokio_postgres::Error> {
        let tx = client.transaction().await?;
        let claimed = tx
            .query_opt(
                "SELECT channel FROM outbox_channels WHERE channel = $1 FOR UPDATE SKIP LOCKED",
                &[&&*self.name],
            )
            .await?;
        if claimed.is_none() {
            tx.rollback().await?;
            return Ok(Round::Busy);
        }
        let rows = tx.query(PENDING, &[&&*self.name, &MAX_READ]).await?;
        let now = self.inner.clock.now();
        let mut waiting: HashSet<String> = HashSet::new();
        let mut next_due: Option<DateTime<Utc>> = None;
        let mut head = None;
        for row in rows {
            let group_key: String = row.get(2);
            if waiting.contains(&group_key) {
                continue;
            }
            let next_attempt_at = crate::store::from_ms(row.get(4));
            if next_attempt_at > now {
                next_due = Some(next_due.map_or(next_attempt_at, |d| d.min(next_attempt_at)));
                waiting.insert(group_key);
                continue;
            }
            head = Some((
                row.get::<_, i64>(0),
                row.get::<_, String>(1),
                group_key,
                row.get::<_, i64>(3),
            ));
            break;
        }
        let Some((seq, id, group_key, attempts)) = head else {
            tx.commit().await?;
            return Ok(Round::Idle(next_due));
        };
        let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
        // Read last, just before the send: a connection PostgreSQL has ended (this
        // instance froze past the lease) fails here, and nothing is sent.
        let payload: String = tx
            .query_one("SELECT payload FROM outbox WHERE seq = $1", &[&seq])
            .await?
            .get(0);
        let n: Notification = match serde_json::from_str(&payload) {
            Ok(n) => n,
            Err(e) => {
                let why = format!("unreadable notification in the outbox: {e}");
                tracing::error!(channel = %self.name, id = %id, error = %why, "Pending notification cannot be delivered; marked failed.");
                mark_failed(&tx, &id, attempts, now, &why).await?;
                tx.commit().await?;
                return Ok(Round::Worked);
            }
        };
        let result = self.channel.send(&n, self.inner.clock.now()).await;
        let now = self.inner.clock.now();
        let attempts = attempts.saturating_add(1);
        let verdict = self
            .policy
            .judge(&self.name, &self.counters, &n, attempts, result, now);
        let (history, finished) = match verdict {
            Verdict::Sent => {
                tx.execute(
                    "UPDATE outbox SET status = 'sent', attempts = $2, finished_at = $3,
                     last_error = NULL
                 WHERE id = $1",
                    &[&id, &i64::from(attempts), &now.timestamp_millis()],
                )
                .await?;
                (n.history(HistoryKind::Sent, now, None), true)
            }
            Verdict::Failed(message) => {
                mark_failed(&tx, &id, attempts, now, &message).await?;
                (n.history(HistoryKind::Failed, now, Some(&message)), true)
            }
            Verdict::Retry {
                next_attempt_at,
                message,
                ..
            } => {
                tx.execute(
                    "UPDATE outbox SET attempts = $2, next_attempt_at = $3, last_error = $4
                 WHERE id = $1",
                    &[
                        &id,
                        &i64::from(attempts),
                        &next_attempt_at.timestamp_millis(),
                        &message,
                    ],
                )
                .await?;
                (Vec::new(), false)
            }
        };
        for e in &history {
            append_history(&tx, e).await?;
        }
        tx.commit().await?;
        if finished {
            self.inner.undelivered.done(&self.name, &group_key);
        }
        let feed = self.inner.feed.lock().clone();
        feed.publish_all(history.into_iter().map(FeedEvent::History));
        Ok(Round::Worked)
    }
}

async fn mark_failed(
    tx: &Transaction<'_>,
    id: &str,
    attempts: u32,
    at: DateTime<Utc>,
    error: &str,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "UPDATE outbox SET status = 'failed', attempts = $2, finished_at = $3, last_error = $4
         WHERE id = $1",
        &[&id, &i64::from(attempts), &at.timestamp_millis(), &error],
    )
    .await?;
    Ok(())
}

/// `store::history::append` on the delivery connection.
async fn append_history(
    tx: &Transaction<'_>,
    e: &HistoryEntry,
) -> Result<(), tokio_postgres::Error> {
    let value = e.value.as_ref().map(|v| v.to_string());
    tx.execute(
        "INSERT INTO history
             (at, fingerprint, rule, tracker_id, kind, channel, notification_id, by_name,
              comment, value, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &[
            &e.at.timestamp_millis(),
            &e.fingerprint,
            &e.rule,
            &e.tracker_id,
            &e.kind.as_str(),
            &e.channel,
            &e.notification_id,
            &e.by,
            &e.comment,
            &value,
            &e.detail,
        ],
    )
    .await?;
    Ok(())
}
