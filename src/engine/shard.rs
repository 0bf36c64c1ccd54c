//! One shard: a worker thread that owns its trackers' cache entries and its evaluator,
//! and does everything for them in the order the messages came. Updates and control
//! requests share one channel, so a question asked after some updates sees them applied.

use std::thread::JoinHandle;

use chrono::{DateTime, Utc};
use crossbeam_channel::Receiver;
use tokio::sync::{mpsc, oneshot};

use super::ShardEvaluator;
use crate::rules::alert::AlertTransition;
use crate::state::cache::ShardCache;
use crate::state::history::HistoryPolicy;
use crate::state::{TrackerInfo, TrackerState, Update};

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
    /// The number of trackers the shard holds.
    Len(oneshot::Sender<usize>),
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
    transitions: mpsc::UnboundedSender<AlertTransition>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("shard-{index}"))
        .spawn(move || run(cache, evaluator, inbox, transitions))
}

fn run(
    mut cache: ShardCache,
    mut evaluator: Box<dyn ShardEvaluator>,
    inbox: Receiver<ShardMsg>,
    transitions: mpsc::UnboundedSender<AlertTransition>,
) {
    // Reused for every update: evaluation allocates nothing when nothing changes.
    let mut out: Vec<AlertTransition> = Vec::new();
    // The loop ends on `Stop`, or when every sender is gone.
    while let Ok(msg) = inbox.recv() {
        match msg {
            ShardMsg::Updates(batch) => {
                for RoutedUpdate {
                    update,
                    now,
                    notify,
                } in batch
                {
                    let tracker = cache.apply(update);
                    evaluator.on_update(tracker, now, notify, &mut out);
                }
            }
            ShardMsg::Info(infos) => {
                for info in infos {
                    cache.set_info(info);
                }
            }
            ShardMsg::Tick(now) => evaluator.on_tick(&mut cache.iter(), now, &mut out),
            ShardMsg::Tracker(id, reply) => {
                let _ = reply.send(cache.get(id).cloned());
            }
            ShardMsg::Len(reply) => {
                let _ = reply.send(cache.len());
            }
            ShardMsg::Evaluator(mut new) => {
                // The successor resumes its predecessor's firing alerts here, between two
                // messages, so no update is evaluated by neither or by both.
                new.take_over(evaluator.firing(), &mut out);
                evaluator = new;
            }
            ShardMsg::History(policy) => cache.set_history_policy(policy),
            ShardMsg::Sync(reply) => {
                let _ = reply.send(());
            }
            ShardMsg::Stop => break,
        }
        for t in out.drain(..) {
            // Nobody listening (the caller dropped the receiver): transitions are dropped
            // with it, which is what a caller that does not want them asked for.
            let _ = transitions.send(t);
        }
    }
}
