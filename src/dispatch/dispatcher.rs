//! The dispatcher: takes transitions from the rule engine, commits them, and feeds the
//! channels' senders.
//!
//! One task owns the flow. It takes a batch of submitted transitions (whatever has queued
//! up, so a burst costs one commit), and on the database thread, in one `synchronous=FULL`
//! transaction: records each transition (live alert state, group membership, log; a
//! pending one, an alert starting its `for`, only in the history), flushes
//! the groups that are due, and writes their notifications to the outbox. The history,
//! group and live alert rows of the batch are held back to its end and written there with
//! a few multi-row statements, still before the commit. Only after the commit does
//! `submit` return, and only then do the notifications go to their senders. A commit that
//! fails leaves the groups in memory ahead of the database; the next one rebuilds them
//! from it first.
//! Between submissions it wakes for the next due group (`group_wait`, `group_interval`,
//! repeats).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use super::ack::AckLinks;
use super::channels::{self, Channel, ChannelError};
use super::group::{AckSetup, Groups, Queued, Undelivered};
use super::outbox::claimed::Claimed;
use super::outbox::{
    Delivery, Depth, Retried, RetryNow, RetryPolicy, RetryTarget, Sender, stopped,
};
use super::routes::{RouteError, Router};
use super::stages::StoreHistory;
use super::stages::history::Unpublished;
use crate::alert::AlertTransition;
use crate::clock::Clock;
use crate::config::Config;
use crate::store::{self, Durability, FeedEvent, HistoryEntry, Store, StoreError, TransitionEvent};

/// Why the dispatcher cannot start, naming what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Http(String),
}

/// Why a submission was not acknowledged. The transitions were not recorded; the caller
/// may submit them again.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DispatchError {
    #[error("cannot record alert transitions: {0}")]
    Store(String),
    /// The commit guard refused: this instance no longer holds its lease (a cluster). Not
    /// to be retried.
    #[error("alert transitions refused: {0}")]
    Fenced(String),
    #[error("the dispatcher has stopped")]
    Stopped,
}

/// Why a "retry now" did nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RetryError {
    #[error("no notification with id `{0}` is in the outbox")]
    UnknownNotification(String),
    #[error("no channel is named `{0}`")]
    UnknownChannel(String),
    #[error("the dispatcher has stopped")]
    Stopped,
    #[error("cannot read or write the outbox: {0}")]
    Store(String),
}

/// Tunables that are not in the config file (tests shorten them).
#[derive(Debug, Clone)]
pub struct DispatchOptions {
    /// How long senders keep delivering after shutdown before they stop.
    pub drain_timeout: Duration,
    /// Retry delays; `retry_for` is taken from `notify.retry_for`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How long sent notifications and log entries are kept in the database.
    pub retention: Duration,
    /// A cluster's delivery from the shared outbox: the dispatcher only nudges it, and
    /// starts no senders of its own.
    pub claimed: Option<Claimed>,
}

impl Default for DispatchOptions {
    fn default() -> Self {
        let retry = RetryPolicy::default();
        DispatchOptions {
            drain_timeout: Duration::from_secs(10),
            initial_backoff: retry.initial_backoff,
            max_backoff: retry.max_backoff,
            retention: Duration::from_secs(7 * 24 * 3600),
            claimed: None,
        }
    }
}

/// The most transitions committed in one transaction.
const MAX_BATCH: usize = 1024;
/// The longest the dispatcher sleeps without looking at the clock, so that a clock that
/// jumps (event time) is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// How often old rows are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

struct Submit {
    transitions: Vec<Arc<AlertTransition>>,
    ack: oneshot::Sender<Result<(), DispatchError>>,
}

/// The running dispatcher. Cheap to clone.
#[derive(Clone)]
pub struct DispatcherHandle {
    submits: mpsc::Sender<Submit>,
    /// Each channel's sender, for "retry now".
    retries: Arc<BTreeMap<Arc<str>, mpsc::UnboundedSender<RetryNow>>>,
    store: Store,
    depth: Depth,
    stopped: watch::Receiver<bool>,
    /// Delivery from the shared outbox, in a cluster.
    claimed: Option<Claimed>,
}

/// Namespace for [`Dispatcher::start`].
pub struct Dispatcher;

impl Dispatcher {
    /// Checks what `start` would refuse, without starting anything or touching the
    /// network: route matchers compile and every channel can be built (URLs, webhook
    /// secrets, email addresses, subject templates). For `check -c FILE`.
    pub fn check(config: &Config) -> Result<(), StartError> {
        Router::new(config)?;
        let http = channels::http_client().map_err(StartError::Http)?;
        for (name, channel) in &config.channels {
            Channel::build(name, channel, &http)?;
        }
        Ok(())
    }

    /// Starts the dispatcher: compiles the routes, builds the channels, restores the
    /// groups and resumes every pending notification of a previous run (with its original
    /// id). It runs until `shutdown` completes; then it stops taking transitions and the
    /// senders deliver what is due for at most the drain timeout.
    pub async fn start(
        config: &Config,
        store: Store,
        clock: Arc<dyn Clock>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<DispatcherHandle, StartError> {
        Dispatcher::start_with(config, store, clock, shutdown, DispatchOptions::default()).await
    }

    /// [`Dispatcher::start`] with explicit options.
    pub async fn start_with(
        config: &Config,
        store: Store,
        clock: Arc<dyn Clock>,
        shutdown: impl Future<Output = ()> + Send + 'static,
        options: DispatchOptions,
    ) -> Result<DispatcherHandle, StartError> {
        let router = Arc::new(Router::new(config)?);
        let http = channels::http_client().map_err(StartError::Http)?;
        let mut built: BTreeMap<Arc<str>, Arc<Channel>> = BTreeMap::new();
        for (name, channel) in &config.channels {
            built.insert(
                Arc::from(name.as_str()),
                Arc::new(Channel::build(name, channel, &http)?),
            );
        }
        let names: Arc<Vec<Arc<str>>> = Arc::new(built.keys().cloned().collect());

        let now = clock.now();
        let retention = options.retention;
        let external_url = config.server.external_url.clone();
        let (loaded, pending, links) = {
            let router = router.clone();
            let names = names.clone();
            store
                .call(move |db| {
                    prune(db, now, retention)?;
                    let groups = Groups::load(db.conn(), router, &names)?;
                    let pending = store::load_pending(db.conn())?;
                    let links = match external_url {
                        Some(url) => {
                            let tx = db.write(Durability::Full)?;
                            let key = store::ack_key(&tx)?;
                            tx.commit()?;
                            Some(AckLinks::new(&url, &key))
                        }
                        None => None,
                    };
                    Ok((groups, pending, links))
                })
                .await?
        };
        let acks = AckSetup {
            send_acks: config
                .channels
                .iter()
                .filter(|(_, c)| c.send_acks())
                .map(|(name, _)| Arc::from(name.as_str()))
                .collect(),
            links,
        };
        let undelivered = options
            .claimed
            .as_ref()
            .map_or_else(Undelivered::default, Claimed::undelivered);
        let unpublished = Unpublished::default();
        let rebuild = GroupsFrom {
            router,
            names,
            undelivered: undelivered.clone(),
            unpublished: unpublished.clone(),
            acks,
        };
        let groups = Arc::new(Mutex::new(rebuild.equip(loaded)));

        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });

        let depth = options
            .claimed
            .as_ref()
            .map_or_else(Depth::default, Claimed::depth);
        let policy = RetryPolicy {
            initial_backoff: options.initial_backoff,
            max_backoff: options.max_backoff,
            retry_for: config.notify.retry_for,
            ..RetryPolicy::default()
        };
        let mut senders = BTreeMap::new();
        let mut retries = BTreeMap::new();
        let mut tasks = Vec::new();
        for (name, channel) in &built {
            let (tx, mut rx) = mpsc::unbounded_channel::<Delivery>();
            if let Some(claimed) = &options.claimed {
                // The shared outbox is delivered by whichever instance claims the channel;
                // a notification queued here only tells this instance's loop to look.
                let (claimed, nudged) = (claimed.clone(), name.clone());
                tokio::spawn(async move {
                    while rx.recv().await.is_some() {
                        claimed.nudge(&nudged);
                    }
                });
                senders.insert(name.clone(), tx);
                continue;
            }
            let (retry_tx, retry_rx) = mpsc::unbounded_channel();
            let sender = Sender {
                name: name.clone(),
                channel: channel.clone(),
                store: store.clone(),
                clock: clock.clone(),
                policy: policy.clone(),
                depth: depth.clone(),
                drain_timeout: options.drain_timeout,
                undelivered: undelivered.clone(),
            };
            tasks.push(tokio::spawn(sender.run(rx, retry_rx, stop_rx.clone())));
            senders.insert(name.clone(), tx);
            retries.insert(name.clone(), retry_tx);
        }

        // Resume what a previous run left pending, in order (in a cluster, the shared
        // outbox's loops do).
        let pending = if options.claimed.is_some() {
            Vec::new()
        } else {
            pending
        };
        let handed = pending.iter().map(|e| e.seq).max().unwrap_or(0);
        let orphans = resume(&pending, &senders, &depth, &undelivered);
        if !pending.is_empty() {
            tracing::info!(
                pending = pending.len() - orphans.len(),
                "Resuming notifications pending from the previous run."
            );
        }
        if !orphans.is_empty() {
            for (id, _, why) in &orphans {
                tracing::error!(id = %id, error = %why, "Pending notification cannot be delivered; marked failed.");
                metrics::counter!(crate::telemetry::NOTIFICATIONS_FAILED, "channel" => "unknown")
                    .increment(1);
            }
            store
                .call(move |db| {
                    let tx = db.write(Durability::Full)?;
                    for (id, attempts, why) in &orphans {
                        store::mark_failed(&tx, id, *attempts, now, why)?;
                    }
                    tx.commit()?;
                    Ok(())
                })
                .await?;
        }

        let (submit_tx, submit_rx) = mpsc::channel(4096);
        let flow = Flow {
            groups,
            groups_stale: AtomicBool::new(false),
            rebuild,
            handed: options.claimed.is_none().then_some(AtomicI64::new(handed)),
            store: store.clone(),
            clock,
            senders,
            depth: depth.clone(),
            undelivered,
            unpublished,
            retention,
            transitions_failing: AtomicBool::new(false),
            prune_history: Arc::default(),
            ack_generation: AtomicU64::new(u64::MAX),
        };
        // Once now, then whenever the flow prunes its own tables.
        flow.prune_history.notify_one();
        tokio::spawn(prune_history_when_told(
            store.clone(),
            flow.clock.clone(),
            config.storage.history_retention,
            flow.prune_history.clone(),
            stop_rx.clone(),
        ));
        tasks.push(tokio::spawn(flow.run(submit_rx, stop_rx)));

        let (done_tx, done_rx) = watch::channel(false);
        tokio::spawn(async move {
            for task in tasks {
                if let Err(e) = task.await {
                    tracing::error!(error = %e, "A dispatcher task ended abnormally.");
                }
            }
            let _ = done_tx.send(true);
        });

        Ok(DispatcherHandle {
            submits: submit_tx,
            retries: Arc::new(retries),
            store,
            depth,
            stopped: done_rx,
            claimed: options.claimed,
        })
    }
}

impl DispatcherHandle {
    /// Records one transition. Returns once it is committed to SQLite: from then on a
    /// crash loses neither the alert state nor the notifications it causes.
    pub async fn submit(&self, transition: AlertTransition) -> Result<(), DispatchError> {
        self.submit_batch(vec![transition]).await
    }

    /// Records several transitions in one transaction, in order.
    pub async fn submit_batch(
        &self,
        transitions: Vec<AlertTransition>,
    ) -> Result<(), DispatchError> {
        self.submit_shared(transitions.into_iter().map(Arc::new).collect())
            .await
    }

    /// [`Self::submit_batch`] of transitions the caller keeps a share of, to submit them
    /// again after a failure without copying them.
    pub async fn submit_shared(
        &self,
        transitions: Vec<Arc<AlertTransition>>,
    ) -> Result<(), DispatchError> {
        if transitions.is_empty() {
            return Ok(());
        }
        let (ack, done) = oneshot::channel();
        self.submits
            .send(Submit { transitions, ack })
            .await
            .map_err(|_| DispatchError::Stopped)?;
        done.await.map_err(|_| DispatchError::Stopped)?
    }

    /// Tries notification `id` at once (an admin's "retry now"): due now if it waits
    /// for a later attempt, pending again (same id) if it failed, left alone if an
    /// attempt is under way. See [`Retried`].
    pub async fn retry_notification(&self, id: &str) -> Result<Retried, RetryError> {
        let wanted = id.to_owned();
        let row = self
            .store
            .call(move |db| store::outbox_entry(db.conn(), &wanted))
            .await
            .map_err(|e| RetryError::Store(e.to_string()))?
            .ok_or_else(|| RetryError::UnknownNotification(id.to_owned()))?;
        self.retry(&row.channel, RetryTarget::Notification(id.to_owned()))
            .await
    }

    /// Tries every waiting and failed notification of `channel` at once.
    pub async fn retry_channel(&self, channel: &str) -> Result<Retried, RetryError> {
        self.retry(channel, RetryTarget::Channel).await
    }

    async fn retry(&self, channel: &str, target: RetryTarget) -> Result<Retried, RetryError> {
        if let Some(claimed) = &self.claimed {
            if !claimed.has_channel(channel) {
                return Err(RetryError::UnknownChannel(channel.to_owned()));
            }
            return claimed
                .retry(channel, target)
                .await
                .map_err(RetryError::Store);
        }
        let sender = self
            .retries
            .get(channel)
            .ok_or_else(|| RetryError::UnknownChannel(channel.to_owned()))?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(RetryNow { target, reply })
            .map_err(|_| RetryError::Stopped)?;
        answer
            .await
            .map_err(|_| RetryError::Stopped)?
            .map_err(RetryError::Store)
    }

    /// The store the dispatcher writes to (silences, failed notifications, the log).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Notifications waiting in the outbox.
    pub fn outbox_depth(&self) -> i64 {
        self.depth.get()
    }

    /// Waits until every dispatcher task has ended (after shutdown and the drain).
    pub async fn stopped(&self) {
        let mut stopped = self.stopped.clone();
        let _ = stopped.wait_for(|done| *done).await;
    }
}

/// The task that turns transitions into committed state and outbox rows.
struct Flow {
    groups: Arc<Mutex<Groups>>,
    /// A commit failed: the groups in memory may be ahead of the rolled-back database
    /// (a member told of a firing whose outbox row is gone), so the next commit rebuilds
    /// them from the database before its transaction, and fails if it cannot.
    groups_stale: AtomicBool,
    rebuild: GroupsFrom,
    /// The newest outbox row handed to the senders (none in a cluster, whose senders
    /// read the shared outbox). A commit reported as failed may have been made all the
    /// same (the connection to PostgreSQL lost during its COMMIT): its rows are pending
    /// and newer than this, and the rebuild after the failure hands them over.
    handed: Option<AtomicI64>,
    store: Store,
    clock: Arc<dyn Clock>,
    senders: BTreeMap<Arc<str>, mpsc::UnboundedSender<Delivery>>,
    depth: Depth,
    undelivered: Undelivered,
    /// History entries and transitions of the transaction in progress, for the feed.
    unpublished: Unpublished,
    retention: Duration,
    /// The last failed commit carried transitions: a timer flush that succeeds meanwhile
    /// (it may need no new page of a full database) does not make the store ready.
    transitions_failing: AtomicBool,
    /// Told when the alert history is due for pruning (see [`prune_history_when_told`]).
    prune_history: Arc<tokio::sync::Notify>,
    /// The store's ack generation at the last commit that announced acks (`MAX`: none
    /// yet, so the first commit announces what a previous run left).
    ack_generation: AtomicU64,
}

impl Flow {
    async fn run(self, mut submits: mpsc::Receiver<Submit>, mut shutdown: watch::Receiver<bool>) {
        // Escalation steps and acks a previous run left due go out now.
        let mut next_due = self.commit(Vec::new()).await;
        let mut last_prune = tokio::time::Instant::now();
        loop {
            let wait = next_due
                .map(|t| (t - self.clock.now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(MAX_SLEEP)
                .min(MAX_SLEEP);
            tokio::select! {
                biased;
                _ = stopped(&mut shutdown) => break,
                submit = submits.recv() => {
                    let Some(submit) = submit else { break };
                    let mut batch = vec![submit];
                    let mut count = batch[0].transitions.len();
                    while count < MAX_BATCH {
                        match submits.try_recv() {
                            Ok(s) => {
                                count += s.transitions.len();
                                batch.push(s);
                            }
                            Err(_) => break,
                        }
                    }
                    next_due = self.commit(batch).await;
                }
                _ = self.store.acks_changed().notified() => {
                    next_due = self.commit(Vec::new()).await;
                }
                _ = tokio::time::sleep(wait) => {
                    let now = self.clock.now();
                    if next_due.is_some_and(|t| t <= now) {
                        next_due = self.commit(Vec::new()).await;
                    }
                    if last_prune.elapsed() >= PRUNE_EVERY {
                        last_prune = tokio::time::Instant::now();
                        let retention = self.retention;
                        if let Err(e) = self.store.call(move |db| prune(db, now, retention)).await {
                            tracing::warn!(error = %e, "Cannot prune old notifications.");
                        }
                        self.prune_history.notify_one();
                    }
                }
            }
        }
        // Stop taking transitions; record those already handed over, so that every
        // caller gets an answer.
        submits.close();
        let mut rest = Vec::new();
        while let Some(s) = submits.recv().await {
            rest.push(s);
        }
        if !rest.is_empty() {
            self.commit(rest).await;
        }
    }

    /// Commits a batch (possibly empty: a timer flush), acknowledges it and hands the
    /// new notifications to their senders. Returns the next flush time.
    async fn commit(&self, batch: Vec<Submit>) -> Option<DateTime<Utc>> {
        let now = self.clock.now();
        let carries_transitions = !batch.is_empty();
        let mut acks = Vec::with_capacity(batch.len());
        let mut transitions = Vec::new();
        for s in batch {
            transitions.extend(s.transitions);
            acks.push(s.ack);
        }
        let groups = self.groups.clone();
        let stale = self.groups_stale.load(Ordering::Acquire);
        let rebuild = stale.then(|| self.rebuild.clone());
        let handed = self.handed.as_ref().map(|h| h.load(Ordering::Acquire));
        let unpublished = self.unpublished.clone();
        // A transition's own feed event is a copy of it: made only for a listener.
        let listened = self.store.feed().is_listened();
        // Read before the commit: an ack made meanwhile bumps it again.
        let ack_generation = self.store.ack_generation();
        let announce = self.ack_generation.swap(ack_generation, Ordering::AcqRel) != ack_generation;
        let result = self
            .store
            .call(move |db| {
                let generation = db.silence_generation();
                let mut groups = groups.lock();
                let mut made_anyway = Vec::new();
                if let Some(rebuild) = rebuild {
                    *groups = rebuild.load(db.conn())?;
                    if let Some(handed) = handed {
                        made_anyway = store::load_pending_after(db.conn(), handed)?;
                    }
                }
                let tx = db.write_guarded(Durability::Full)?;
                for t in transitions {
                    let entry = HistoryEntry::transition(&t);
                    if listened {
                        unpublished.push(FeedEvent::Transition(TransitionEvent::of(&t)));
                    }
                    unpublished.push(FeedEvent::History(entry));
                    // A wait is history only: nothing is notified, grouped or kept for it.
                    if !t.pending {
                        groups.apply(&tx, t, now)?;
                    }
                }
                let mut queued = Vec::new();
                if announce {
                    groups.announce_acks(&tx, now, &mut queued)?;
                }
                // Ends with the group and live alert rows held back for the end of the
                // batch; then the history entries: a few statements for all.
                groups.flush_due(&tx, now, generation, &mut queued)?;
                unpublished.write(&tx)?;
                tx.commit()?;
                Ok((made_anyway, queued, groups.next_due()))
            })
            .await;
        match result {
            Ok((made_anyway, queued, next_due)) => {
                self.groups_stale.store(false, Ordering::Release);
                self.unpublished.publish(self.store.feed());
                if carries_transitions || !self.transitions_failing.load(Ordering::Acquire) {
                    self.transitions_failing.store(false, Ordering::Release);
                    if self.store.note_commit(Ok(())) {
                        tracing::info!("Alert transitions commit again; ready.");
                    }
                }
                for ack in acks {
                    let _ = ack.send(Ok(()));
                }
                self.hand_over_made_anyway(made_anyway);
                self.hand_over(queued, now);
                next_due
            }
            Err(e) => {
                self.unpublished.discard();
                self.groups_stale.store(true, Ordering::Release);
                // Announce again at the next commit.
                self.ack_generation.store(u64::MAX, Ordering::Release);
                if carries_transitions {
                    self.transitions_failing.store(true, Ordering::Release);
                }
                if self.store.note_commit(Err(&e)) {
                    tracing::error!(error = %e, "Cannot record alert transitions; not ready until a commit succeeds.");
                }
                let refusal = match &e {
                    store::StoreError::Fenced(why) => DispatchError::Fenced(why.clone()),
                    e => DispatchError::Store(e.to_string()),
                };
                for ack in acks {
                    let _ = ack.send(Err(refusal.clone()));
                }
                // Try again soon rather than sleeping on a stale schedule.
                Some(now + chrono::Duration::seconds(1))
            }
        }
    }

    /// Hands the rows of a commit reported as failed but made over to their senders,
    /// oldest first, with their ids (see [`Flow::handed`]).
    fn hand_over_made_anyway(&self, rows: Vec<store::OutboxEntry>) {
        if rows.is_empty() {
            return;
        }
        tracing::warn!(
            notifications = rows.len(),
            "A commit reported as failed was made all the same; its notifications go out now."
        );
        for entry in &rows {
            self.note_handed(entry.seq);
        }
        for (id, _, why) in resume(&rows, &self.senders, &self.depth, &self.undelivered) {
            tracing::error!(id = %id, error = %why, "Pending notification cannot be delivered.");
        }
    }

    fn note_handed(&self, seq: i64) {
        if let Some(handed) = &self.handed {
            handed.fetch_max(seq, Ordering::AcqRel);
        }
    }

    fn hand_over(&self, queued: Vec<Queued>, now: DateTime<Utc>) {
        for q in queued {
            self.note_handed(q.seq);
            let Some(tx) = self.senders.get(q.notification.receiver.as_str()) else {
                continue;
            };
            self.depth.add(1);
            self.undelivered
                .add(&q.notification.receiver, &q.notification.group_key);
            let _ = tx.send(Delivery {
                seq: q.seq,
                notification: q.notification,
                attempts: 0,
                next_attempt_at: now,
            });
        }
    }
}

/// Hands pending outbox rows to their channels' senders, in order, with their ids and
/// attempts: at a start, and after a commit reported as failed but made. Returns the
/// rows that cannot go, `(id, attempts, why)`: their channel is gone or their payload
/// unreadable.
fn resume(
    rows: &[store::OutboxEntry],
    senders: &BTreeMap<Arc<str>, mpsc::UnboundedSender<Delivery>>,
    depth: &Depth,
    undelivered: &Undelivered,
) -> Vec<(String, u32, String)> {
    let mut orphans = Vec::new();
    for entry in rows {
        match (
            senders.get(entry.channel.as_str()),
            Delivery::from_entry(entry),
        ) {
            (Some(tx), Ok(d)) => {
                depth.add(1);
                undelivered.add(&entry.channel, &entry.group_key);
                let _ = tx.send(d);
            }
            (None, _) => orphans.push((
                entry.id.clone(),
                entry.attempts,
                format!("channel `{}` is no longer configured", entry.channel),
            )),
            (_, Err(e)) => orphans.push((entry.id.clone(), entry.attempts, e)),
        }
    }
    orphans
}

/// What the groups in memory are built from: the database's rows, and the parts they
/// share with the rest of the dispatcher.
#[derive(Clone)]
struct GroupsFrom {
    router: Arc<Router>,
    names: Arc<Vec<Arc<str>>>,
    undelivered: Undelivered,
    unpublished: Unpublished,
    acks: AckSetup,
}

impl GroupsFrom {
    /// The groups as the database has them.
    fn load(&self, conn: &store::Conn) -> Result<Groups, StoreError> {
        Groups::load(conn, self.router.clone(), &self.names).map(|groups| self.equip(groups))
    }

    /// Groups loaded, sharing the senders' undelivered record, the history and the acks.
    fn equip(&self, mut groups: Groups) -> Groups {
        groups.set_undelivered(self.undelivered.clone());
        groups.set_history(Box::new(StoreHistory::new(self.unpublished.clone())));
        groups.set_acks(self.acks.clone());
        groups
    }
}

/// History entries deleted per transaction: a few milliseconds of the writer's time.
const HISTORY_PRUNE_BATCH: usize = 500;

/// Prunes the alert history older than `retention`, at start and then every
/// [`PRUNE_EVERY`], in small batches between which transitions commit as usual.
/// Prunes the alert history in small batches whenever `told` (by the flow, every
/// [`PRUNE_EVERY`]), off the flow's own task: a long prune never holds up a commit. It
/// keeps no timer of its own, so that a paused test clock is never advanced by it.
async fn prune_history_when_told(
    store: Store,
    clock: Arc<dyn Clock>,
    retention: Duration,
    told: Arc<tokio::sync::Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => return,
            _ = told.notified() => {}
        }
        let before = chrono::Duration::from_std(retention)
            .ok()
            .and_then(|r| clock.now().checked_sub_signed(r))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        match store.prune_history(before, HISTORY_PRUNE_BATCH).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deleted = n, "Old alert history pruned."),
            Err(e) => tracing::warn!(error = %e, "Cannot prune the alert history."),
        }
    }
}

fn prune(db: &mut store::Db, now: DateTime<Utc>, retention: Duration) -> Result<(), StoreError> {
    let before = chrono::Duration::from_std(retention)
        .ok()
        .and_then(|r| now.checked_sub_signed(r))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let tx = db.write(Durability::Relaxed)?;
    store::prune_log(&tx, before)?;
    store::prune_outbox(&tx, before)?;
    tx.commit()?;
    Ok(())
}
