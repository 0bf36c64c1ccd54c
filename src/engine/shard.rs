//! One shard: a worker thread that owns its trackers' cache entries and its evaluator,
//! and does everything for them in the order the messages came. Updates and control
//! requests share one channel, so a question asked after some updates sees them applied.

use std::thread::JoinHandle;

use chrono::{DateTime, Utc};
use crossbeam_channel::{Receiver, TryRecvError};
use tokio::sync::{mpsc, oneshot};

use super::ShardEvaluator;
use crate::alert::{AlertTransition, PendingAlert};
use crate::navixy::messages::TrackerId;
use crate::navixy::messages::TrackerInfo;
use crate::state::cache::ShardCache;
use crate::state::history::HistoryPolicy;
use crate::state::{TrackerState, Update};

/// An update on its way to a shard, with the engine clock at its arrival.
#[derive(Debug)]
pub struct RoutedUpdate {
    pub update: Update,
    /// The engine clock when the frame came in.
    pub now: DateTime<Utc>,
    /// False for stale updates (older than `max_event_age`): they change state only.
    pub notify: bool,
}

/// What a shard is asked to do.
pub enum ShardMsg {
    /// A batch of updates, applied in order.
    Updates(Vec<RoutedUpdate>),
    /// Labels and source ids from `tracker/list`.
    Info(Vec<TrackerInfo>),
    /// Re-evaluate every tracker at `now` (engine clock).
    Tick(DateTime<Utc>),
    /// A copy of one tracker's state, for the admin API.
    Tracker(
        crate::navixy::messages::TrackerId,
        oneshot::Sender<Option<TrackerState>>,
    ),
    /// A copy of every tracker's state, for the console's lists and playground.
    All(oneshot::Sender<Vec<TrackerState>>),
    /// The number of trackers the shard holds.
    Len(oneshot::Sender<usize>),
    /// The alerts inside their `for` ([`ShardEvaluator::pending`]).
    Pending(oneshot::Sender<Vec<PendingAlert>>),
    /// A new evaluator (hot reload); the cache is kept, and the new evaluator takes over
    /// the old one's firing alerts ([`ShardEvaluator::take_over`]).
    Evaluator(Box<dyn ShardEvaluator>),
    /// New history windows (a new rule set may read longer ones).
    History(HistoryPolicy),
    /// Answers once everything sent before it is done.
    Sync(oneshot::Sender<()>),
    /// Ends the worker after what was sent before (handles may still hold senders).
    Stop,
}

pub(crate) fn spawn(
    index: usize,
    cache: ShardCache,
    evaluator: Box<dyn ShardEvaluator>,
    inbox: Receiver<ShardMsg>,
    transitions: mpsc::Sender<AlertTransition>,
    tick_slice: usize,
) -> std::io::Result<JoinHandle<()>> {
    let worker = Worker {
        cache,
        evaluator,
        transitions,
        out: Vec::new(),
        tick: None,
        tick_slice,
        latest: None,
    };
    std::thread::Builder::new()
        .name(format!("shard-{index}"))
        .spawn(move || worker.run(inbox))
}

/// A tick under way, evaluated a slice of trackers at a time between update batches.
struct Tick {
    now: DateTime<Utc>,
    /// The shard's trackers when the tick began; the ones after `next` are still due.
    ids: Vec<TrackerId>,
    next: usize,
}

struct Worker {
    cache: ShardCache,
    evaluator: Box<dyn ShardEvaluator>,
    transitions: mpsc::Sender<AlertTransition>,
    /// Reused for every update: evaluation allocates nothing when nothing changes.
    out: Vec<AlertTransition>,
    tick: Option<Tick>,
    /// Trackers per slice of a tick; 0: a tick at once.
    tick_slice: usize,
    /// The newest engine clock an update brought: a slice evaluated after it does not
    /// go back in time.
    latest: Option<DateTime<Utc>>,
}

impl Worker {
    fn run(mut self, inbox: Receiver<ShardMsg>) {
        // The loop ends on `Stop`, or when every sender is gone.
        loop {
            let msg = if self.tick.is_some() {
                match inbox.try_recv() {
                    Ok(msg) => Some(msg),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => Some(ShardMsg::Stop),
                }
            } else {
                match inbox.recv() {
                    Ok(msg) => Some(msg),
                    Err(_) => Some(ShardMsg::Stop),
                }
            };
            let stop = msg.is_some_and(|msg| self.handle(msg));
            // One slice per message at least, so a busy shard still finishes its ticks.
            if !stop {
                self.tick_slice_step(self.tick_slice);
            }
            self.send_transitions();
            if stop {
                break;
            }
        }
    }

    /// Does what one message asks; true to stop. Anything but updates first finishes the
    /// tick under way, so what it asks or answers sees the tick done.
    fn handle(&mut self, msg: ShardMsg) -> bool {
        if !matches!(msg, ShardMsg::Updates(_)) {
            self.tick_slice_step(usize::MAX);
        }
        match msg {
            ShardMsg::Updates(batch) => {
                for RoutedUpdate {
                    update,
                    now,
                    notify,
                } in batch
                {
                    let tracker = self.cache.apply(update);
                    self.evaluator
                        .on_update(tracker, now, notify, &mut self.out);
                    // At once, not after the batch: an alert does not wait for the
                    // updates behind it.
                    self.send_transitions();
                    if self.latest.is_none_or(|l| now > l) {
                        self.latest = Some(now);
                    }
                }
            }
            ShardMsg::Info(infos) => {
                for info in infos {
                    self.cache.set_info(info);
                }
            }
            ShardMsg::Tick(now) if self.tick_slice == 0 => {
                self.evaluator
                    .on_tick(&mut self.cache.iter(), now, &mut self.out);
            }
            ShardMsg::Tick(now) => {
                self.tick = Some(Tick {
                    now,
                    ids: self.cache.iter().map(|t| t.info.key()).collect(),
                    next: 0,
                });
            }
            ShardMsg::Tracker(id, reply) => {
                let _ = reply.send(self.cache.get(id).cloned());
            }
            ShardMsg::All(reply) => {
                let _ = reply.send(self.cache.iter().cloned().collect());
            }
            ShardMsg::Len(reply) => {
                let _ = reply.send(self.cache.len());
            }
            ShardMsg::Pending(reply) => {
                let _ = reply.send(self.evaluator.pending());
            }
            ShardMsg::Evaluator(mut new) => {
                // The successor resumes its predecessor's firing alerts here, between two
                // messages, so no update is evaluated by neither or by both.
                new.take_over(self.evaluator.firing(), &mut self.out);
                new.take_over_pending(self.evaluator.pending());
                self.evaluator = new;
            }
            ShardMsg::History(policy) => self.cache.set_history_policy(policy),
            ShardMsg::Sync(reply) => {
                let _ = reply.send(());
            }
            ShardMsg::Stop => return true,
        }
        false
    }

    fn send_transitions(&mut self) {
        for t in self.out.drain(..) {
            // Waits while the channel is full: the back-pressure of a reader that cannot
            // keep up (the store refusing commits). A worker is a plain thread, where
            // blocking is allowed. Nobody listening (the caller dropped the receiver):
            // transitions are dropped with it, which is what a caller that does not want
            // them asked for.
            let _ = self.transitions.blocking_send(t);
        }
    }

    /// Evaluates up to `n` more trackers of the tick under way.
    fn tick_slice_step(&mut self, n: usize) {
        let Some(tick) = &mut self.tick else {
            return;
        };
        let end = tick.ids.len().min(tick.next.saturating_add(n));
        let now = self.latest.map_or(tick.now, |l| l.max(tick.now));
        let cache = &self.cache;
        let mut due = tick.ids[tick.next..end]
            .iter()
            .filter_map(|id| cache.get(*id));
        self.evaluator.on_tick(&mut due, now, &mut self.out);
        tick.next = end;
        if end == tick.ids.len() {
            self.tick = None;
        }
    }
}
