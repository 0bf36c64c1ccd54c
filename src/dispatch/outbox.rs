//! Delivery from the outbox: one sender task per channel takes the channel's pending
//! notifications in order and delivers them, retrying with exponential backoff and jitter
//! (or as `Retry-After` asks) for up to `notify.retry_for`.
//!
//! One at a time, in order, per channel: a receiver sees a group's resolve after its
//! firing, and an outage of one channel never delays another. Every outcome is written
//! back to the outbox row: sent, retried (attempts, next attempt, last error) or failed
//! for good, which stays visible for the admin API (`Store::list_failed`). Outcomes are
//! written behind the lanes, many to a transaction ([`Outcomes`]).
//!
//! An admin's "retry now" ([`RetryNow`]) reaches the sender itself, the only owner of its
//! queues: a waiting notification becomes due at once, a failed one goes back to pending
//! with the same id, and one whose attempt is under way is left alone, so that retrying
//! never sends a second copy.
//!
//! In a cluster, [`claimed`] delivers instead, from the shared outbox, judging each
//! attempt the same way ([`RetryPolicy::judge`]).

pub mod claimed;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::channels::{Channel, SendError};
use super::group::after;
use super::notification::Notification;
use crate::backoff;
use crate::clock::Clock;
use crate::store::{self, Durability, FeedEvent, HistoryEntry, HistoryKind, OutboxEntry, Store};
use crate::telemetry;

/// When to try again after a retryable failure.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// The first delay; it doubles with every attempt...
    pub initial_backoff: Duration,
    /// ...up to this.
    pub max_backoff: Duration,
    /// A `Retry-After` longer than this is cut to it.
    pub max_retry_after: Duration,
    /// Give up this long after the notification was created (`notify.retry_for`).
    pub retry_for: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            max_retry_after: Duration::from_secs(3600),
            retry_for: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The delay after the `attempts`-th failed attempt (1 for the first): the crate's
    /// [`backoff::exponential`], so that notifications failing together do not retry
    /// together, yet the delay still grows. `jitter` is in `[0, 1)`.
    pub fn backoff(&self, attempts: u32, jitter: f64) -> Duration {
        backoff::exponential(self.initial_backoff, self.max_backoff, attempts, jitter)
    }

    /// The delay before the next attempt: what `Retry-After` asks (within bounds), or the
    /// backoff.
    pub fn delay(&self, attempts: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        match retry_after {
            Some(ra) => ra.clamp(self.initial_backoff, self.max_retry_after),
            None => self.backoff(attempts, jitter),
        }
    }
}

/// What became of one attempt, for the outbox row.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Sent,
    /// Stays pending: tried again after `delay`, at `next_attempt_at`.
    Retry {
        delay: Duration,
        next_attempt_at: DateTime<Utc>,
        message: String,
    },
    /// Failed for good (a permanent error, or `retry_for` is over).
    Failed(String),
}

/// A channel's delivery counters, registered once per channel: an attempt neither
/// allocates the `channel` label nor looks the series up again. Made after the metrics
/// recorder is installed (the daemon installs it first), as every handle is.
#[derive(Clone)]
pub struct Counters {
    sent: metrics::Counter,
    retried: metrics::Counter,
    failed: metrics::Counter,
}

impl Counters {
    pub fn new(channel: &str) -> Counters {
        let label = || channel.to_owned();
        Counters {
            sent: metrics::counter!(telemetry::NOTIFICATIONS_SENT, "channel" => label()),
            retried: metrics::counter!(telemetry::NOTIFICATIONS_RETRIED, "channel" => label()),
            failed: metrics::counter!(telemetry::NOTIFICATIONS_FAILED, "channel" => label()),
        }
    }
}

impl RetryPolicy {
    /// Judges the `attempts`-th attempt of `n` on `channel`, ended at `now`, and counts
    /// (on the channel's `counters`) and logs it: one place for both senders (this
    /// module's and [`claimed`]'s).
    pub fn judge(
        &self,
        channel: &str,
        counters: &Counters,
        n: &Notification,
        attempts: u32,
        result: Result<(), SendError>,
        now: DateTime<Utc>,
    ) -> Verdict {
        let verdict = match result {
            Ok(()) => Verdict::Sent,
            Err(SendError::Permanent { message }) => Verdict::Failed(message),
            Err(SendError::Retryable {
                message,
                retry_after,
            }) => {
                let deadline = after(n.created_at, self.retry_for);
                if now >= deadline {
                    Verdict::Failed(format!(
                        "gave up after {attempts} attempts over {}s: {message}",
                        self.retry_for.as_secs()
                    ))
                } else {
                    // The last attempt is at the deadline, not after it.
                    let delay = self
                        .delay(attempts, retry_after, fastrand::f64())
                        .min((deadline - now).to_std().unwrap_or(Duration::ZERO));
                    Verdict::Retry {
                        delay,
                        next_attempt_at: after(now, delay),
                        message,
                    }
                }
            }
        };
        match &verdict {
            Verdict::Sent => {
                counters.sent.increment(1);
                tracing::debug!(channel, id = %n.id, attempts, "Notification sent.");
            }
            Verdict::Retry {
                next_attempt_at,
                message,
                ..
            } => {
                counters.retried.increment(1);
                tracing::warn!(
                    channel,
                    id = %n.id,
                    attempts,
                    retry_in_ms = (*next_attempt_at - now).num_milliseconds(),
                    error = %message,
                    "Notification not delivered; will retry."
                );
            }
            Verdict::Failed(message) => {
                counters.failed.increment(1);
                tracing::error!(
                    channel,
                    id = %n.id,
                    attempts,
                    error = %message,
                    "Notification failed; kept in the outbox as failed."
                );
            }
        }
        verdict
    }
}

/// A pending notification on its way to one channel.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub seq: i64,
    pub notification: Arc<Notification>,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
}

impl Delivery {
    /// A pending row as stored (after a restart); `None` if its payload is unreadable.
    pub fn from_entry(e: &OutboxEntry) -> Result<Delivery, String> {
        let notification: Notification = serde_json::from_str(&e.payload)
            .map_err(|err| format!("unreadable notification in the outbox: {err}"))?;
        Ok(Delivery {
            seq: e.seq,
            notification: Arc::new(notification),
            attempts: e.attempts,
            next_attempt_at: e.next_attempt_at,
        })
    }
}

/// Outbox depth shared by the dispatcher and the senders, mirrored to the gauge (whose
/// handle is taken once, when the depth is made).
#[derive(Debug, Clone)]
pub struct Depth(Arc<(AtomicI64, metrics::Gauge)>);

impl Default for Depth {
    fn default() -> Self {
        Depth(Arc::new((
            AtomicI64::new(0),
            metrics::gauge!(telemetry::OUTBOX_DEPTH),
        )))
    }
}

impl Depth {
    pub fn add(&self, n: i64) {
        let now = self.0.0.fetch_add(n, Ordering::AcqRel) + n;
        self.0.1.set(now.max(0) as f64);
    }
    pub fn get(&self) -> i64 {
        self.0.0.load(Ordering::Acquire)
    }
    /// Sets the depth as counted in the database (a shared outbox, where other instances
    /// deliver too).
    pub fn set(&self, n: i64) {
        self.0.0.store(n, Ordering::Release);
        self.0.1.set(n.max(0) as f64);
    }
}

/// An admin's "retry now", for one channel's sender.
#[derive(Debug)]
pub struct RetryNow {
    pub target: RetryTarget,
    pub reply: oneshot::Sender<Result<Retried, String>>,
}

/// What to try at once.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryTarget {
    /// One notification, by id.
    Notification(String),
    /// Every waiting and failed notification of the channel.
    Channel,
}

/// What a retry did, by notification id.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Retried {
    /// The channel whose sender took the retry.
    pub channel: String,
    /// Waiting for a later attempt; due now (behind its group's earlier notifications).
    pub due: Vec<String>,
    /// Failed; pending again with the same id, and due now.
    pub requeued: Vec<String>,
    /// An attempt is under way: left alone, so that it is not sent twice.
    pub in_flight: Vec<String>,
    /// Sent already: nothing to do.
    pub sent: Vec<String>,
}

/// One channel's sender.
pub struct Sender {
    pub name: Arc<str>,
    pub channel: Arc<Channel>,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub policy: RetryPolicy,
    pub depth: Depth,
    /// How long to keep delivering after shutdown.
    pub drain_timeout: Duration,
    /// Told when a notification is done with (sent or failed).
    pub undelivered: super::group::Undelivered,
}

/// Completes once shutdown is asked for (or its sender is gone). The dispatcher's tasks
/// wait on it too; it lives here, below the dispatcher, so that the senders need nothing
/// of the dispatcher.
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across other awaits.
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

/// Attempts in flight per channel at most, across its groups.
const MAX_IN_FLIGHT: usize = 16;

/// One outcome to write to an outbox row.
type OutcomeWrite =
    Box<dyn FnOnce(&crate::store::Conn) -> Result<(), store::StoreError> + Send + 'static>;

/// What the outcome writer is handed.
enum OutcomeJob {
    /// An outcome's row, its history entries (appended in the same transaction), and
    /// whether the notification leaves the outbox (sent or failed): the depth counts it
    /// out once its row is written, so that a depth of 0 means every row is marked.
    Outcome {
        write: OutcomeWrite,
        history: Vec<HistoryEntry>,
        settled: bool,
    },
    /// Told once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// A channel's delivery outcomes on their way to the outbox rows, written behind the
/// lanes: a lane moves on as soon as its attempt is over, and one writer task takes every
/// outcome waiting and writes them in one (relaxed) transaction, their history entries
/// with a few multi-row statements. A busy channel thus pays one commit for hundreds of
/// outcomes, not one for each handful in flight. A crash before the write sends those
/// notifications again under their ids (delivery is at-least-once); what reads the
/// outbox rows in the sender first waits for the writer ([`Outcomes::flush`]).
#[derive(Clone)]
struct Outcomes {
    writes: mpsc::UnboundedSender<OutcomeJob>,
    channel: Arc<str>,
}

/// The most outcomes written in one transaction.
const MAX_OUTCOMES_PER_COMMIT: usize = 1024;

impl Outcomes {
    /// Starts the writer of channel `name`; it ends once every clone of the returned
    /// handle is gone and what was queued is written.
    fn start(store: Store, channel: Arc<str>, depth: Depth) -> Outcomes {
        let (writes, mut rx) = mpsc::unbounded_channel::<OutcomeJob>();
        let name = channel.clone();
        tokio::spawn(async move {
            let feed = store.feed().clone();
            let mut batch = Vec::new();
            while rx.recv_many(&mut batch, MAX_OUTCOMES_PER_COMMIT).await > 0 {
                let mut fs = Vec::with_capacity(batch.len());
                let mut histories = Vec::with_capacity(batch.len());
                let mut barriers = Vec::new();
                let mut settled = 0;
                for job in batch.drain(..) {
                    match job {
                        OutcomeJob::Outcome {
                            write,
                            history,
                            settled: leaves,
                        } => {
                            fs.push(write);
                            histories.push(history);
                            settled += i64::from(leaves);
                        }
                        OutcomeJob::Flush(done) => barriers.push(done),
                    }
                }
                let written = store
                    .call(move |db| {
                        let tx = db.write(Durability::Relaxed)?;
                        // One outcome that cannot be written does not undo the others;
                        // the history of those written follows them.
                        let each: Vec<Result<(), String>> = fs
                            .into_iter()
                            .map(|f| tx.isolated(f).map_err(|e| e.to_string()))
                            .collect();
                        let history = each
                            .iter()
                            .zip(&histories)
                            .filter(|(result, _)| result.is_ok())
                            .flat_map(|(_, entries)| entries);
                        store::history::append_all(&tx, history)?;
                        tx.commit()?;
                        Ok((each, histories))
                    })
                    .await;
                match written {
                    Ok((each, histories)) => {
                        for (result, history) in each.into_iter().zip(histories) {
                            match result {
                                Ok(()) if feed.is_listened() => {
                                    feed.publish_all(history.into_iter().map(FeedEvent::History))
                                }
                                Ok(()) => {}
                                Err(e) => {
                                    tracing::error!(channel = %name, error = %e, "Cannot record a delivery outcome.")
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(channel = %name, error = %e, "Cannot record delivery outcomes.")
                    }
                }
                depth.add(-settled);
                for done in barriers {
                    let _ = done.send(());
                }
            }
        });
        Outcomes { writes, channel }
    }

    /// Queues an outcome, with its `history` entries for the same transaction (told to
    /// the feed once committed); `settled`: the notification leaves the outbox (sent or
    /// failed). The caller does not wait. Losing it only repeats work (a re-send with the
    /// same id, or one more attempt), so the write is relaxed and a failure is logged, not
    /// fatal.
    fn queue<F>(&self, history: Vec<HistoryEntry>, settled: bool, write: F)
    where
        F: FnOnce(&crate::store::Conn) -> Result<(), store::StoreError> + Send + 'static,
    {
        let job = OutcomeJob::Outcome {
            write: Box::new(write),
            history,
            settled,
        };
        if self.writes.send(job).is_err() {
            tracing::error!(channel = %self.channel, "Cannot record a delivery outcome: the outcome writer has stopped.");
        }
    }

    /// Returns once every outcome queued before the call is written (or has failed).
    async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.writes.send(OutcomeJob::Flush(done)).is_ok() {
            let _ = written.await;
        }
    }
}

/// One group's queue on one channel: delivered strictly in order, head first.
struct Lane {
    queue: VecDeque<Delivery>,
    /// When the head may be tried.
    due: Instant,
    /// The id of the head while an attempt of it is in flight.
    in_flight: Option<String>,
}

/// The lanes of one channel, and which of them have a head to try: those due now in a
/// queue, the others by due time. Starting the next head or finding the next wake-up
/// costs the same with ten lanes as with ten thousand (a burst of alerts on a slow
/// receiver makes thousands), where a scan of every lane on every wake made the sender
/// quadratic.
///
/// The queue and the timers are hints: a lane is checked again when it comes out of them
/// (it may be gone, in flight, or due later by now), so a lane may be listed twice.
#[derive(Default)]
struct Lanes {
    by_group: HashMap<Arc<str>, Lane>,
    ready: VecDeque<Arc<str>>,
    timers: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
}

impl Lanes {
    /// Lists `key` for its next head: in the queue when due by `now`, else by its due time.
    fn schedule(&mut self, key: Arc<str>, now: Instant) {
        let Some(lane) = self.by_group.get(&key) else {
            return;
        };
        if lane.due <= now {
            self.ready.push_back(key);
        } else {
            self.timers.push(Reverse((lane.due, key)));
        }
    }

    /// The next lane whose head may be tried at `now`, its head taken out and marked in
    /// flight.
    fn next_head(&mut self, now: Instant) -> Option<(Arc<str>, Delivery)> {
        while let Some(Reverse((due, _))) = self.timers.peek()
            && *due <= now
        {
            if let Some(Reverse((_, key))) = self.timers.pop() {
                self.ready.push_back(key);
            }
        }
        while let Some(key) = self.ready.pop_front() {
            let Some(lane) = self.by_group.get_mut(&key) else {
                continue;
            };
            if lane.in_flight.is_some() {
                continue;
            }
            if lane.due > now {
                self.timers.push(Reverse((lane.due, key)));
                continue;
            }
            let Some(head) = lane.queue.pop_front() else {
                continue;
            };
            lane.in_flight = Some(head.notification.id.clone());
            return Some((key, head));
        }
        None
    }

    /// When the earliest lane waiting for its due time is due.
    fn next_due(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((due, _))| *due)
    }

    /// The attempt of `key`'s head is over: put back for a retry after `retry`, or done.
    fn finished(&mut self, key: Arc<str>, head: Delivery, retry: Option<Duration>) {
        let now = Instant::now();
        let Some(lane) = self.by_group.get_mut(&key) else {
            return;
        };
        lane.in_flight = None;
        if let Some(delay) = retry {
            lane.due = now + delay;
            lane.queue.push_front(head);
        }
        if lane.queue.is_empty() {
            self.by_group.remove(&key);
        } else {
            self.schedule(key, now);
        }
    }

    fn is_empty(&self) -> bool {
        self.by_group.is_empty()
    }
}

enum Wake {
    Done(Arc<str>, Delivery, Option<Duration>),
    New(Option<Delivery>),
    Retry(Option<RetryNow>),
    Due,
    Shutdown,
}

impl RetryTarget {
    fn covers(&self, id: &str) -> bool {
        match self {
            RetryTarget::Notification(wanted) => wanted == id,
            RetryTarget::Channel => true,
        }
    }
}

impl Sender {
    /// Delivers until shutdown, then drains for at most `drain_timeout`.
    ///
    /// Notifications of one group go strictly in order (a resolve never overtakes its
    /// firing); different groups go independently, so a notification that a receiver
    /// keeps refusing holds up only its own group. Waits are measured on tokio's clock,
    /// not by re-reading the engine clock: a clock that stands still (replay, tests)
    /// must not stop retries.
    pub async fn run(
        self,
        mut rx: mpsc::UnboundedReceiver<Delivery>,
        mut retries: mpsc::UnboundedReceiver<RetryNow>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let this = Arc::new(self);
        let outcomes = Outcomes::start(this.store.clone(), this.name.clone(), this.depth.clone());
        let counters = Counters::new(&this.name);
        let mut lanes = Lanes::default();
        let mut in_flight = tokio::task::JoinSet::new();
        let mut rx_open = true;
        let mut retries_open = true;
        let mut drain_until: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let drain_over = drain_until.is_some_and(|d| now >= d);
            if drain_over
                || (drain_until.is_some() && in_flight.is_empty() && lanes.is_empty() && !rx_open)
            {
                break;
            }
            // Start every due head, within the in-flight bound.
            while in_flight.len() < MAX_IN_FLIGHT
                && let Some((key, mut head)) = lanes.next_head(now)
            {
                let this = this.clone();
                let (outcomes, counters) = (outcomes.clone(), counters.clone());
                in_flight.spawn(async move {
                    let retry = this.attempt(&mut head, &outcomes, &counters).await;
                    (key, head, retry)
                });
            }
            let next_due = lanes.next_due().filter(|_| in_flight.len() < MAX_IN_FLIGHT);
            let wake = tokio::select! {
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => match done {
                    Ok((key, d, retry)) => Wake::Done(key, d, retry),
                    Err(e) => {
                        // Its row stays pending and is tried after the next start.
                        tracing::error!(channel = %this.name, error = %e, "A delivery attempt panicked.");
                        Wake::Due
                    }
                },
                d = rx.recv(), if rx_open => Wake::New(d),
                r = retries.recv(), if retries_open => Wake::Retry(r),
                _ = tokio::time::sleep_until(next_due.unwrap_or(now)), if next_due.is_some() => Wake::Due,
                _ = stopped(&mut shutdown), if drain_until.is_none() => Wake::Shutdown,
                _ = tokio::time::sleep_until(drain_until.unwrap_or(now)), if drain_until.is_some() => Wake::Due,
            };
            match wake {
                Wake::Done(key, d, retry) => lanes.finished(key, d, retry),
                Wake::New(Some(d)) => this.enqueue(&mut lanes, d),
                Wake::New(None) => rx_open = false,
                Wake::Retry(Some(r)) => {
                    let result = this.retry_now(&mut lanes, &outcomes, &r.target).await;
                    let _ = r.reply.send(result);
                }
                Wake::Retry(None) => retries_open = false,
                Wake::Due => {}
                Wake::Shutdown => drain_until = Some(Instant::now() + this.drain_timeout),
            }
        }
        // Attempts still in flight are abandoned when `in_flight` drops; their rows stay
        // pending and go out after the next start (the receiver may see the id twice).
        // The outcomes of those that ended are written before the sender stops.
        drop(in_flight);
        outcomes.flush().await;
        let left: usize = lanes
            .by_group
            .values()
            .map(|l| l.queue.len() + usize::from(l.in_flight.is_some()))
            .sum();
        if left > 0 {
            tracing::info!(
                channel = %this.name,
                pending = left,
                "Stopping with notifications still pending; they are sent after the next start."
            );
        }
    }

    /// Queues a delivery in its group's lane; a new lane is due at the delivery's stored
    /// next attempt time.
    fn enqueue(&self, lanes: &mut Lanes, d: Delivery) {
        let wait = (d.next_attempt_at - self.clock.now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        let key: Arc<str> = Arc::from(d.notification.group_key.as_str());
        let now = Instant::now();
        let mut new = false;
        let lane = lanes.by_group.entry(key.clone()).or_insert_with(|| {
            new = true;
            Lane {
                queue: VecDeque::new(),
                due: now + wait,
                in_flight: None,
            }
        });
        lane.queue.push_back(d);
        if new {
            lanes.schedule(key, now);
        }
    }

    /// An admin's "retry now": what waits in a lane is due at once; what failed goes
    /// back to pending (same id, attempts kept) and into its group's lane, due at once;
    /// what is in flight is left alone. Runs in the sender's loop, the only place that
    /// knows what is in flight, so a retry and an attempt never race.
    ///
    /// A requeued notification keeps its `created_at`: past `notify.retry_for` it gets
    /// this one attempt, and fails again if the receiver still refuses it.
    async fn retry_now(
        &self,
        lanes: &mut Lanes,
        outcomes: &Outcomes,
        target: &RetryTarget,
    ) -> Result<Retried, String> {
        let mut retried = Retried {
            channel: self.name.to_string(),
            ..Retried::default()
        };
        let now = Instant::now();
        let mut sooner = Vec::new();
        for (key, lane) in lanes.by_group.iter_mut() {
            if let Some(id) = &lane.in_flight
                && target.covers(id)
            {
                retried.in_flight.push(id.clone());
            }
            let waiting: Vec<String> = lane
                .queue
                .iter()
                .map(|d| d.notification.id.clone())
                .filter(|id| target.covers(id))
                .collect();
            if !waiting.is_empty() {
                lane.due = lane.due.min(now);
                retried.due.extend(waiting);
                sooner.push(key.clone());
            }
        }
        for key in sooner {
            lanes.schedule(key, now);
        }
        let found = !(retried.due.is_empty() && retried.in_flight.is_empty());
        if found && matches!(target, RetryTarget::Notification(_)) {
            return Ok(retried);
        }
        // Not in a lane: failed, sent, on its way here, or unknown; the rows are read
        // once the outcomes queued so far are written.
        outcomes.flush().await;
        let channel = self.name.clone();
        let at = self.clock.now();
        let ids: Vec<String> = match target {
            RetryTarget::Notification(id) => vec![id.clone()],
            RetryTarget::Channel => self
                .store
                .call(move |db| store::failed_ids(db.conn(), &channel))
                .await
                .map_err(|e| e.to_string())?,
        };
        for id in ids {
            let found = {
                let id = id.clone();
                self.store
                    .call(move |db| {
                        let tx = db.write(Durability::Full)?;
                        let requeued = store::requeue_failed(&tx, &id, at)?;
                        let row = match requeued {
                            Some(row) => Some((true, row)),
                            None => store::outbox_entry(&tx, &id)?.map(|row| (false, row)),
                        };
                        tx.commit()?;
                        Ok(row)
                    })
                    .await
                    .map_err(|e| e.to_string())?
            };
            match found {
                Some((true, row)) => {
                    let mut d = Delivery::from_entry(&row)?;
                    d.next_attempt_at = at;
                    self.depth.add(1);
                    self.undelivered.add(&row.channel, &row.group_key);
                    tracing::info!(channel = %self.name, id = %id, attempts = row.attempts, "A failed notification is queued again (retry now).");
                    let key: Arc<str> = Arc::from(row.group_key.as_str());
                    self.enqueue(lanes, d);
                    if let Some(lane) = lanes.by_group.get_mut(&key) {
                        lane.due = lane.due.min(now);
                    }
                    lanes.schedule(key, now);
                    retried.requeued.push(id);
                }
                Some((false, row)) if row.status == store::OutboxStatus::Sent => {
                    retried.sent.push(id)
                }
                // Pending but not in a lane yet: the dispatcher has just handed it over,
                // and a new notification is due at once anyway.
                Some((false, row)) if row.status == store::OutboxStatus::Pending => {
                    retried.due.push(id)
                }
                _ => {}
            }
        }
        Ok(retried)
    }

    /// One attempt; `Some(delay)` when the notification stays pending, to be tried
    /// again after `delay`.
    async fn attempt(
        &self,
        d: &mut Delivery,
        outcomes: &Outcomes,
        counters: &Counters,
    ) -> Option<Duration> {
        let n = &d.notification;
        let started = self.clock.now();
        let result = self.channel.send(n, started).await;
        let now = self.clock.now();
        d.attempts = d.attempts.saturating_add(1);
        match self
            .policy
            .judge(&self.name, counters, n, d.attempts, result, now)
        {
            Verdict::Sent => {
                let (id, attempts) = (n.id.clone(), d.attempts);
                let history = n.history(HistoryKind::Sent, now, None);
                outcomes.queue(history, true, move |tx| {
                    store::mark_sent(tx, &id, attempts, now)
                });
                None
            }
            Verdict::Failed(message) => {
                self.fail(d, outcomes, now, message);
                None
            }
            Verdict::Retry {
                delay,
                next_attempt_at,
                message,
            } => {
                d.next_attempt_at = next_attempt_at;
                let (id, attempts, next) = (n.id.clone(), d.attempts, d.next_attempt_at);
                outcomes.queue(Vec::new(), false, move |tx| {
                    store::mark_retry(tx, &id, attempts, next, &message)
                });
                Some(delay)
            }
        }
    }

    fn fail(&self, d: &Delivery, outcomes: &Outcomes, now: DateTime<Utc>, message: String) {
        let (id, attempts) = (d.notification.id.clone(), d.attempts);
        let history = d
            .notification
            .history(HistoryKind::Failed, now, Some(&message));
        outcomes.queue(history, true, move |tx| {
            store::mark_failed(tx, &id, attempts, now, &message)
        });
        self.undelivered.done(&self.name, &d.notification.group_key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// While the database thread is held, queued outcomes wait and the depth still
    /// counts their notifications; once written, both leave the depth, the row written is
    /// marked with its history entry, and the outcome that failed leaves its row and
    /// writes no history.
    #[tokio::test]
    async fn outcomes_are_written_behind_the_lanes_and_counted_out_once_written() {
        use crate::dispatch::testing::{firing, t0};
        use crate::store::{HistoryQuery, OutboxStatus, StoreError};

        let store = Store::open_in_memory().unwrap();
        store
            .call(|db| {
                let tx = db.write(Durability::Full)?;
                for id in ["msg_a", "msg_b"] {
                    store::insert_outbox(&tx, id, "hook", "g", t0(), "{}")?;
                }
                tx.commit()
            })
            .await
            .unwrap();
        let depth = Depth::default();
        depth.set(2);
        let outcomes = Outcomes::start(store.clone(), Arc::from("hook"), depth.clone());

        let (started, running) = oneshot::channel();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let holder = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .call(move |_| {
                        let _ = started.send(());
                        let _ = held.recv();
                        Ok(())
                    })
                    .await
            }
        });
        running.await.unwrap();
        let sent = HistoryEntry::transition(&firing("fuel_drain", 1));
        outcomes.queue(vec![sent], true, |tx| {
            store::mark_sent(tx, "msg_a", 1, t0())
        });
        let refused = HistoryEntry::transition(&firing("fuel_drain", 2));
        outcomes.queue(vec![refused], true, |_| {
            Err(StoreError::Invalid("refused".into()))
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(depth.get(), 2, "counted out before its row was written");

        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        outcomes.flush().await;
        assert_eq!(depth.get(), 0);
        let mut rows: Vec<(String, OutboxStatus)> = store
            .list_outbox(None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.id, r.status))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            rows,
            [
                ("msg_a".to_owned(), OutboxStatus::Sent),
                ("msg_b".to_owned(), OutboxStatus::Pending)
            ]
        );
        let history = store
            .history(HistoryQuery {
                limit: 10,
                ..HistoryQuery::default()
            })
            .await
            .unwrap();
        let trackers: Vec<Option<i64>> = history.entries.iter().map(|e| e.tracker_id).collect();
        assert_eq!(trackers, [Some(1)]);
    }

    fn delivery(group: &str, id: &str) -> Delivery {
        let notification: Notification = serde_json::from_value(serde_json::json!({
            "id": id, "receiver": "hook", "group_key": group, "group_labels": {},
            "status": "firing", "reason": "new alerts",
            "created_at": "2026-01-01T00:00:00Z", "alerts": []
        }))
        .expect("a notification");
        Delivery {
            seq: 0,
            notification: Arc::new(notification),
            attempts: 0,
            next_attempt_at: Utc::now(),
        }
    }

    fn lane(due: Instant, ids: &[(&str, &str)]) -> Lane {
        Lane {
            queue: ids.iter().map(|(g, id)| delivery(g, id)).collect(),
            due,
            in_flight: None,
        }
    }

    fn add(lanes: &mut Lanes, group: &str, due: Instant, ids: &[&str], now: Instant) {
        let ids: Vec<(&str, &str)> = ids.iter().map(|id| (group, *id)).collect();
        lanes.by_group.insert(Arc::from(group), lane(due, &ids));
        lanes.schedule(Arc::from(group), now);
    }

    fn id(next: Option<(Arc<str>, Delivery)>) -> Option<String> {
        next.map(|(_, d)| d.notification.id.clone())
    }

    /// One head per lane at a time, lanes in the order they became ready; a lane's next
    /// head only once its attempt is over; an emptied lane is gone.
    #[tokio::test(start_paused = true)]
    async fn lanes_give_one_head_at_a_time_in_order() {
        let now = Instant::now();
        let mut lanes = Lanes::default();
        add(&mut lanes, "a", now, &["a1", "a2"], now);
        add(&mut lanes, "b", now, &["b1"], now);
        let (key, a1) = lanes.next_head(now).expect("a's head");
        assert_eq!(a1.notification.id, "a1");
        assert_eq!(id(lanes.next_head(now)), Some("b1".into()));
        // `a` is in flight and `b` is empty: nothing more until an attempt ends.
        assert_eq!(id(lanes.next_head(now)), None);
        lanes.schedule(key.clone(), now); // a duplicate hint is harmless
        assert_eq!(id(lanes.next_head(now)), None);
        lanes.finished(key, a1, None);
        assert_eq!(id(lanes.next_head(now)), Some("a2".into()));
        lanes.finished(Arc::from("b"), delivery("b", "b1"), None);
        assert!(!lanes.by_group.contains_key("b"));
        assert!(!lanes.is_empty());
        lanes.finished(Arc::from("a"), delivery("a", "a2"), None);
        assert!(lanes.is_empty());
    }

    /// A lane due later, or a head put back for a retry, waits for its time and says
    /// when that is.
    #[tokio::test(start_paused = true)]
    async fn lanes_wait_for_their_due_time() {
        let now = Instant::now();
        let later = now + Duration::from_secs(30);
        let mut lanes = Lanes::default();
        add(&mut lanes, "late", later, &["l1"], now);
        add(&mut lanes, "now", now, &["n1"], now);
        assert_eq!(lanes.next_due(), Some(later));
        let (key, n1) = lanes.next_head(now).expect("the due lane");
        assert_eq!(n1.notification.id, "n1");
        assert_eq!(id(lanes.next_head(now)), None);
        lanes.finished(key, n1, Some(Duration::from_secs(10)));
        let retry_at = Instant::now() + Duration::from_secs(10);
        assert_eq!(lanes.next_due(), Some(retry_at));
        assert_eq!(id(lanes.next_head(now + Duration::from_secs(9))), None);
        assert_eq!(id(lanes.next_head(retry_at)), Some("n1".into()));
        assert_eq!(id(lanes.next_head(later)), Some("l1".into()));
        assert_eq!(id(lanes.next_head(later)), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_in_the_upper_half_and_caps() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(500));
        assert_eq!(p.backoff(1, 0.5), Duration::from_millis(750));
        assert_eq!(p.backoff(2, 0.0), Duration::from_secs(1));
        assert_eq!(p.backoff(4, 0.5), Duration::from_secs(6));
        assert_eq!(p.backoff(20, 0.0), Duration::from_secs(150));
        assert_eq!(p.backoff(u32::MAX, 1.0), Duration::from_secs(300));
    }

    #[test]
    fn retry_after_wins_within_bounds() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(30)), 0.0),
            Duration::from_secs(30)
        );
        assert_eq!(
            p.delay(9, Some(Duration::ZERO), 0.0),
            Duration::from_secs(1)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(86400)), 0.0),
            Duration::from_secs(3600)
        );
    }
}
