//! The engine: routes updates to tracker shards, each owned by one worker, which applies
//! them to its part of the state cache and hands each changed tracker to the rule
//! evaluator; a ticker re-evaluates silent trackers. Transitions flow out to the
//! dispatcher.
//!
//! - [`router`]: decode, id mapping, the engine clock and ticker, batching per shard.
//! - [`shard`]: the worker that owns a shard's cache and evaluator.
//! - [`ids`]: source id -> tracker id from `tracker/list`.
//! - [`stats`]: counters for `replay --stats` and the metrics facade.
//!
//! It knows nothing of rules (it calls a [`ShardEvaluator`]) or of where frames come from.
//!
//! # Use
//! ```text
//! let (mut engine, transitions) = Engine::start(EngineOptions::from_config(&config, clock), &factory)?;
//! engine.set_trackers(tracker_infos(&list));          // after each tracker/list
//! engine.ingest_text(frame_text, arrival_time);       // per frame (None live: wall clock)
//! engine.flush();                                     // when the input goes quiet
//! engine.poll_clock();                                // live: on a timer, for ticks
//! let handle = engine.handle();                       // admin API, reload: Clone + Send
//! handle.tracker(id).await;  handle.replace_evaluators(&factory);  handle.sync().await;
//! ```
//! `Engine` is owned by the loop that reads frames; sending to a shard blocks while that
//! shard's queue is full (back-pressure, by design). The `*_blocking` methods and
//! [`Engine::sync`] must not be called from async code (tokio forbids blocking receives
//! there); use [`EngineHandle::sync`] instead. Transitions arrive on a bounded tokio
//! channel ([`TRANSITION_CAPACITY`]): `recv().await` in the dispatcher, `blocking_recv()`
//! in a plain thread. A reader that stops taking them stops the shards, then the routing,
//! then the source: read them beside the engine, not after it (or ask for
//! [`EngineOptions::transition_capacity`] `usize::MAX`).

pub mod ids;
pub mod router;
pub mod shard;
pub mod stats;

pub use ids::{IdMap, tracker_infos};
pub use router::{
    Engine, EngineClock, EngineHandle, EngineOptions, EvaluatorFactory, TRANSITION_CAPACITY,
    shard_index,
};
pub use stats::EngineStats;

use chrono::{DateTime, Utc};

use crate::alert::{AlertRecord, AlertTransition, PendingAlert};
use crate::state::TrackerState;

/// What a shard does with its trackers once the cache is up to date: the rule evaluator
/// implements it; the foundation's replay uses [`NoRules`].
///
/// `now` is the engine clock: event time in replay, wall time live. `notify` is false for
/// updates older than `max_event_age`: they change alert state but emit no transition.
pub trait ShardEvaluator: Send {
    /// One tracker's data changed.
    fn on_update(
        &mut self,
        tracker: &TrackerState,
        now: DateTime<Utc>,
        notify: bool,
        out: &mut Vec<AlertTransition>,
    );
    /// The ticker fired: re-evaluate time-based conditions of silent trackers.
    fn on_tick(
        &mut self,
        trackers: &mut dyn Iterator<Item = &TrackerState>,
        now: DateTime<Utc>,
        out: &mut Vec<AlertTransition>,
    );

    /// The alerts this evaluator has announced as firing: what a successor takes over on
    /// a hot reload. The default has none.
    fn firing(&self) -> Vec<AlertRecord> {
        Vec::new()
    }

    /// Hot reload: called on the new evaluator, in the shard's thread, with what the one
    /// it replaces had firing ([`ShardEvaluator::firing`]), before any update reaches it,
    /// so that nothing happens between the two. It resumes those alerts (no second
    /// firing) and may emit transitions for the ones it cannot resume (their rule is gone).
    /// The default takes over nothing.
    fn take_over(&mut self, firing: Vec<AlertRecord>, out: &mut Vec<AlertTransition>) {
        let _ = (firing, out);
    }

    /// The alerts inside their `for`: what a reload's successor and the next start resume
    /// ([`ShardEvaluator::take_over_pending`]). The default has none.
    fn pending(&self) -> Vec<PendingAlert> {
        Vec::new()
    }

    /// Resumes a predecessor's (or the last run's) pending alerts, their wait going on.
    /// The default drops them.
    fn take_over_pending(&mut self, pending: Vec<PendingAlert>) {
        let _ = pending;
    }
}

/// Evaluates nothing: the cache alone.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRules;

impl ShardEvaluator for NoRules {
    fn on_update(
        &mut self,
        _: &TrackerState,
        _: DateTime<Utc>,
        _: bool,
        _: &mut Vec<AlertTransition>,
    ) {
    }
    fn on_tick(
        &mut self,
        _: &mut dyn Iterator<Item = &TrackerState>,
        _: DateTime<Utc>,
        _: &mut Vec<AlertTransition>,
    ) {
    }
}
