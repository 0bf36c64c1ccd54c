//! The engine's front: decodes frames, maps them to per-tracker updates, keeps the engine
//! clock and the ticker, and routes each update to the shard `tracker_id mod workers` in
//! batches (one channel message per batch keeps the per-update cost of crossing threads
//! small).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use crossbeam_channel::Sender;
use tokio::sync::{mpsc, oneshot};

use super::ShardEvaluator;
use super::ids::IdMap;
use super::shard::{self, RoutedUpdate, ShardMsg};
use super::stats::{EngineStats, ErrorLog};
use crate::alert::{AlertTransition, PendingAlert};
use crate::clock::Clock;
use crate::config::Config;
use crate::navixy::decode::{DecodeError, DecodeOptions, decode_frame_with};
use crate::navixy::messages::TrackerInfo;
use crate::navixy::messages::{BatchItem, Frame, SourceIx, TrackerId, tracker_key};
use crate::state::cache::ShardCache;
use crate::state::history::HistoryPolicy;
use crate::state::{TrackerState, Update};
use crate::telemetry;

/// Builds the evaluator of shard `index` (called once per shard, and again on reload).
pub type EvaluatorFactory<'a> = &'a (dyn Fn(usize) -> Box<dyn ShardEvaluator> + Sync);

/// What "now" is for the engine.
#[derive(Clone)]
pub enum EngineClock {
    /// Replay and rule tests: the recording's arrival time when it has one, else the
    /// newest event time seen. Only moves forward.
    EventTime,
    /// Live: wall time (or a manual clock in tests).
    Wall(Arc<dyn Clock>),
}

impl std::fmt::Debug for EngineClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineClock::EventTime => f.write_str("EventTime"),
            EngineClock::Wall(_) => f.write_str("Wall"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Tracker shards, one worker thread each.
    pub workers: usize,
    /// Updates older than this (against the engine clock) do not notify.
    pub max_event_age: Duration,
    /// The ticker period on the engine clock; zero disables ticks.
    pub eval_interval: Duration,
    /// Zone of Navixy's offset-less times.
    pub timezone: Tz,
    /// History windows kept per tracker.
    pub history: HistoryPolicy,
    pub clock: EngineClock,
    /// Frame size limit and the source-state fields to decode (the rules may read few).
    pub decode: DecodeOptions,
    /// Updates per shard message.
    pub batch_size: usize,
    /// The `source` label of source 0's frame and update counters: its name live
    /// ([`crate::config::DEFAULT_SOURCE`] for the shorthand), `replay` in replay. The
    /// other sources' names come with [`Engine::set_source_names`].
    pub source: &'static str,
    /// Trackers a shard re-evaluates between two batches of updates during a tick, so
    /// that no update waits for a whole tick; 0 evaluates a tick at once, in order with
    /// the updates (replay, tests: the same input gives the same output).
    pub tick_slice: usize,
    /// Transitions made and not yet taken by the receiver's reader; past that a shard
    /// waits in its send. [`TRANSITION_CAPACITY`] by default; `usize::MAX` for no bound
    /// (tokio's largest), which only a caller that reads the transitions after
    /// [`Engine::sync`], on the thread that drives the engine, needs.
    pub transition_capacity: usize,
}

impl EngineOptions {
    pub fn new(clock: EngineClock) -> EngineOptions {
        EngineOptions {
            workers: 2,
            max_event_age: Duration::from_secs(15 * 60),
            eval_interval: Duration::from_secs(10),
            timezone: chrono_tz::UTC,
            history: HistoryPolicy::default(),
            clock,
            decode: DecodeOptions::default(),
            batch_size: 256,
            source: "navixy",
            tick_slice: 0,
            transition_capacity: TRANSITION_CAPACITY,
        }
    }

    /// The `engine:` section and the source's zone and frame limit.
    pub fn from_config(config: &Config, clock: EngineClock) -> EngineOptions {
        let mut o = EngineOptions::new(clock);
        o.workers = config.engine.worker_count();
        o.max_event_age = config.engine.max_event_age;
        o.eval_interval = config.engine.eval_interval;
        if matches!(o.clock, EngineClock::Wall(_)) {
            o.tick_slice = TICK_SLICE;
        }
        // One zone for offset-less times (the first account's: the source asks for
        // offsets, so they are rare) and the largest frame any source accepts.
        let navixy = config.sources().iter().filter_map(|s| s.navixy.as_ref());
        if let Some(n) = navixy.clone().next() {
            o.timezone = n.timezone;
        }
        if let Some(max) = navixy.map(|n| n.max_frame_bytes).max() {
            o.decode.max_frame_bytes = max;
        }
        o.source = crate::config::DEFAULT_SOURCE;
        o
    }
}

/// Live ticks in slices of this many trackers: at the `rules/ticks` rate (about a
/// million trackers per second) a slice takes a quarter of a millisecond, where a whole
/// tick of 10,000 trackers stalls the shard's updates for 10 ms.
const TICK_SLICE: usize = 256;

/// Transitions the engine holds for a reader that does not take them. While the store
/// refuses commits (a full disk) the forwarder takes none, so the shards stop at this
/// many, the routing stops at their full queues, and the source stops reading the socket:
/// memory stays flat through an outage instead of growing with every held-back
/// transition. A few thousand covers a burst (a zone rule firing for a whole shard on one
/// tick) without stopping the shards while one commit runs.
pub const TRANSITION_CAPACITY: usize = 4096;

/// How many ticks one jump of the clock may emit one by one; past that the ticker skips
/// to the newest boundary (a recording with a day's gap would otherwise evaluate every
/// tracker 8,640 times for nothing: conditions compare against `now`, so one tick at the
/// end of the gap fires what the skipped ones would have).
const MAX_TICKS_PER_JUMP: u32 = 64;

/// The engine: owned by the loop that receives frames.
pub struct Engine {
    shards: Vec<Sender<ShardMsg>>,
    workers: Vec<JoinHandle<()>>,
    pending: Vec<Vec<RoutedUpdate>>,
    /// Each source's source id -> tracker id map, by source index.
    ids: Vec<IdMap>,
    /// Each source's `source` label, by source index (the first is `options.source`).
    labels: Vec<&'static str>,
    options: EngineOptions,
    now: Option<DateTime<Utc>>,
    next_tick: Option<DateTime<Utc>>,
    stats: EngineStats,
    errors: ErrorLog,
    /// Reused per frame: the frame's updates with their event times.
    scratch: Vec<(Update, Option<DateTime<Utc>>)>,
}

/// A cheap, cloneable way to talk to the shards from elsewhere (admin API, reload).
#[derive(Clone)]
pub struct EngineHandle {
    shards: Vec<Sender<ShardMsg>>,
}

impl Engine {
    /// Starts one worker per shard; transitions come out of the returned receiver, which
    /// must be read (or dropped) while the engine runs: a shard waits once
    /// [`EngineOptions::transition_capacity`] transitions are unread.
    pub fn start(
        options: EngineOptions,
        factory: EvaluatorFactory<'_>,
    ) -> std::io::Result<(Engine, mpsc::Receiver<AlertTransition>)> {
        let workers_n = options.workers.max(1);
        // Bounded: a reader that takes nothing (commits failing) stops the shards.
        let (tx, rx) = mpsc::channel(
            options
                .transition_capacity
                .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
        );
        let mut shards = Vec::with_capacity(workers_n);
        let mut workers = Vec::with_capacity(workers_n);
        for index in 0..workers_n {
            // Bounded: a slow shard pushes back on the reader instead of growing memory.
            let (shard_tx, shard_rx) = crossbeam_channel::bounded(64);
            let cache = ShardCache::new(options.history.clone(), options.timezone);
            workers.push(shard::spawn(
                index,
                cache,
                factory(index),
                shard_rx,
                tx.clone(),
                options.tick_slice,
            )?);
            shards.push(shard_tx);
        }
        let engine = Engine {
            pending: (0..workers_n)
                .map(|_| Vec::with_capacity(options.batch_size))
                .collect(),
            shards,
            workers,
            ids: vec![IdMap::default()],
            labels: vec![options.source],
            options: EngineOptions {
                workers: workers_n,
                batch_size: options.batch_size.max(1),
                ..options
            },
            now: None,
            next_tick: None,
            stats: EngineStats::default(),
            errors: ErrorLog::default(),
            scratch: Vec::new(),
        };
        Ok((engine, rx))
    }

    pub fn handle(&self) -> EngineHandle {
        EngineHandle {
            shards: self.shards.clone(),
        }
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The engine clock as of the last frame (event time in replay).
    pub fn now(&self) -> Option<DateTime<Utc>> {
        self.now
    }

    pub fn workers(&self) -> usize {
        self.shards.len()
    }

    /// The shard of a tracker.
    pub fn shard_of(&self, tracker_id: TrackerId) -> usize {
        shard_index(tracker_id, self.shards.len())
    }

    /// The `source` label of each source's counters, by source index (live, several
    /// accounts). Each name is leaked once: a few bytes per configured source, so that
    /// counting a frame costs no string.
    pub fn set_source_names(&mut self, names: &[String]) {
        self.labels = names
            .iter()
            .map(|n| &*Box::leak(n.clone().into_boxed_str()))
            .collect();
        if self.labels.is_empty() {
            self.labels.push(self.options.source);
        }
    }

    /// Loads a tracker list of source 0: the source -> tracker map and each tracker's label.
    pub fn set_trackers(&mut self, infos: Vec<TrackerInfo>) {
        self.set_trackers_of(0, infos);
    }

    /// Loads the tracker list of one source (by its index among the configured ones).
    pub fn set_trackers_of(&mut self, source: SourceIx, mut infos: Vec<TrackerInfo>) {
        let ix = usize::from(source);
        if self.ids.len() <= ix {
            self.ids.resize_with(ix + 1, IdMap::default);
        }
        for info in &mut infos {
            info.source = source;
        }
        self.ids[ix] = IdMap::from_infos(&infos);
        self.flush();
        let mut per_shard: Vec<Vec<TrackerInfo>> = vec![Vec::new(); self.shards.len()];
        for info in infos {
            per_shard[shard_index(info.key(), self.shards.len())].push(info);
        }
        for (shard, infos) in self.shards.iter().zip(per_shard) {
            if !infos.is_empty() {
                let _ = shard.send(ShardMsg::Info(infos));
            }
        }
    }

    /// Decodes and applies one text frame that arrived at `at` (`None`: unknown, live
    /// frames take the wall clock). Returns how many batch items were dropped for a wrong
    /// type. A decode error is counted and logged, and returned so that a caller can say
    /// where it was (replay's line numbers).
    pub fn ingest_text(
        &mut self,
        text: &str,
        at: Option<DateTime<Utc>>,
    ) -> Result<u64, DecodeError> {
        self.ingest_text_from(0, text, at)
    }

    /// [`Engine::ingest_text`] for a frame of source `source`: its ids are read with that
    /// source's tracker list, and its trackers are that source's.
    pub fn ingest_text_from(
        &mut self,
        source: SourceIx,
        text: &str,
        at: Option<DateTime<Utc>>,
    ) -> Result<u64, DecodeError> {
        self.stats.frames += 1;
        metrics::counter!(telemetry::FRAMES, "source" => self.label(source)).increment(1);
        match decode_frame_with(text, &self.options.decode) {
            Ok(frame) => {
                let before = self.stats.decode_errors_total();
                self.apply_frame(source, frame, at, text);
                Ok(self.stats.decode_errors_total() - before)
            }
            Err(e) => {
                self.errors.record(&mut self.stats, &e, text);
                Err(e)
            }
        }
    }

    /// Applies one decoded frame (the simulator and tests hand frames over directly).
    pub fn ingest_frame(&mut self, frame: Frame, at: Option<DateTime<Utc>>) {
        self.stats.frames += 1;
        metrics::counter!(telemetry::FRAMES, "source" => self.options.source).increment(1);
        self.apply_frame(0, frame, at, "");
    }

    fn label(&self, source: SourceIx) -> &'static str {
        self.labels
            .get(usize::from(source))
            .copied()
            .unwrap_or(self.options.source)
    }

    fn apply_frame(
        &mut self,
        source: SourceIx,
        frame: Frame,
        at: Option<DateTime<Utc>>,
        text: &str,
    ) {
        let mut scratch = std::mem::take(&mut self.scratch);
        self.collect_updates(source, frame, text, &mut scratch);
        self.advance_clock(at, &scratch);
        if let Some(now) = self.now {
            let max_age = chrono::Duration::from_std(self.options.max_event_age)
                .unwrap_or(chrono::Duration::MAX);
            for (update, event_time) in scratch.drain(..) {
                let notify = event_time.is_none_or(|t| now - t <= max_age);
                if !notify {
                    self.stats.stale += 1;
                }
                self.route(RoutedUpdate {
                    update,
                    now,
                    notify,
                });
            }
        } else {
            // No clock yet (no `at`, no event time in any update so far): nothing can be
            // judged stale, and the epoch is the only honest "now".
            for (update, _) in scratch.drain(..) {
                self.route(RoutedUpdate {
                    update,
                    now: DateTime::<Utc>::UNIX_EPOCH,
                    notify: true,
                });
            }
        }
        self.scratch = scratch;
    }

    /// Maps a frame to updates, counting what it holds.
    fn collect_updates(
        &mut self,
        source: SourceIx,
        frame: Frame,
        text: &str,
        out: &mut Vec<(Update, Option<DateTime<Utc>>)>,
    ) {
        let mut counts = FrameCounts::default();
        let ix = usize::from(source);
        if self.ids.len() <= ix {
            // A source whose list has not come yet: its source ids stand for themselves.
            self.ids.resize_with(ix + 1, IdMap::default);
        }
        frame_updates_from(
            source,
            frame,
            &self.ids[ix],
            self.options.timezone,
            out,
            &mut counts,
        );
        for e in counts.invalid.drain(..) {
            self.errors.record(&mut self.stats, &e, text);
        }
        let stats = &mut self.stats;
        stats.states += counts.states;
        stats.readings += counts.readings;
        stats.lifecycle += counts.lifecycle;
        stats.iot += counts.iot;
        stats.unmapped += counts.unmapped;
        stats.unknown_events += counts.unknown_events;
        stats.unknown_items += counts.unknown_items;
        stats.control += counts.control;
        let source = self.label(source);
        for (kind, n) in [
            ("state", counts.states),
            ("readings", counts.readings),
            ("lifecycle", counts.lifecycle),
            ("iot", counts.iot),
        ] {
            if n > 0 {
                metrics::counter!(telemetry::UPDATES, "kind" => kind, "source" => source)
                    .increment(n);
            }
        }
    }

    /// Moves the engine clock for a frame and sends the ticks it crossed.
    fn advance_clock(
        &mut self,
        at: Option<DateTime<Utc>>,
        updates: &[(Update, Option<DateTime<Utc>>)],
    ) {
        let candidate = match &self.options.clock {
            EngineClock::Wall(clock) => Some(clock.now()),
            EngineClock::EventTime => at.or_else(|| updates.iter().filter_map(|(_, t)| *t).max()),
        };
        if let Some(t) = candidate
            && self.now.is_none_or(|now| t > now)
        {
            self.now = Some(t);
        }
        self.emit_due_ticks();
    }

    /// Live: reads the clock and sends the ticks that are due. Call it from a timer so
    /// that silent fleets are still evaluated (frames call it too).
    pub fn poll_clock(&mut self) {
        self.advance_clock(None, &[]);
    }

    fn emit_due_ticks(&mut self) {
        let Some(now) = self.now else { return };
        let Ok(interval) = chrono::Duration::from_std(self.options.eval_interval) else {
            return;
        };
        if interval <= chrono::Duration::zero() {
            return;
        }
        let boundary_at_or_before = |t: DateTime<Utc>| {
            let step = interval.num_milliseconds().max(1);
            let ms = t.timestamp_millis().div_euclid(step) * step;
            DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or(t)
        };
        let mut next = match self.next_tick {
            Some(next) => next,
            None => {
                // The first tick is the first boundary after the clock started.
                self.next_tick = Some(boundary_at_or_before(now) + interval);
                return;
            }
        };
        if next > now {
            return;
        }
        // Updates before the tick must be applied before it: same channel, in order.
        self.flush();
        let mut sent = 0;
        while next <= now {
            if sent == MAX_TICKS_PER_JUMP {
                next = boundary_at_or_before(now);
            }
            self.send_tick(next);
            sent += 1;
            next += interval;
        }
        self.next_tick = Some(next);
    }

    fn send_tick(&mut self, at: DateTime<Utc>) {
        self.stats.ticks += 1;
        for shard in &self.shards {
            let _ = shard.send(ShardMsg::Tick(at));
        }
    }

    fn route(&mut self, routed: RoutedUpdate) {
        let i = shard_index(routed.update.tracker_id(), self.shards.len());
        let batch = &mut self.pending[i];
        batch.push(routed);
        if batch.len() >= self.options.batch_size {
            let full = std::mem::replace(batch, Vec::with_capacity(self.options.batch_size));
            // A send fails only when the worker is gone (it panicked): nothing to deliver to.
            let _ = self.shards[i].send(ShardMsg::Updates(full));
        }
    }

    /// Sends every buffered update to its shard. Call when the input goes quiet (live: after
    /// each read that returned no more frames) so that nothing waits for a full batch.
    pub fn flush(&mut self) {
        for (i, batch) in self.pending.iter_mut().enumerate() {
            if !batch.is_empty() {
                let full = std::mem::replace(batch, Vec::with_capacity(self.options.batch_size));
                let _ = self.shards[i].send(ShardMsg::Updates(full));
            }
        }
    }

    /// Flushes and waits until every shard has applied everything sent so far.
    pub fn sync(&mut self) {
        self.flush();
        self.handle().sync_blocking();
    }

    /// Sends a tick now at the engine clock (tests, and a final evaluation).
    pub fn tick_now(&mut self) {
        if let Some(now) = self.now {
            self.flush();
            self.send_tick(now);
        }
    }

    /// Flushes, stops the workers once they drained their queues, and returns the counts.
    pub fn shutdown(mut self) -> EngineStats {
        self.stop();
        std::mem::take(&mut self.stats)
    }

    fn stop(&mut self) {
        self.flush();
        for shard in &self.shards {
            let _ = shard.send(ShardMsg::Stop);
        }
        self.shards.clear();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

impl EngineHandle {
    /// A copy of one tracker's state by its key (`navixy::messages::tracker_key`; the id
    /// for source 0). `None`: unknown tracker, or the engine stopped.
    pub fn tracker(&self, id: TrackerId) -> oneshot::Receiver<Option<TrackerState>> {
        let (tx, rx) = oneshot::channel();
        let _ = self.shards[shard_index(id, self.shards.len())].send(ShardMsg::Tracker(id, tx));
        rx
    }

    /// A copy of every tracker's state, shard by shard (blocking, like
    /// [`EngineHandle::pending_blocking`]); trackers of a stopped shard are missing.
    pub fn trackers_blocking(&self) -> Vec<TrackerState> {
        self.ask_all(ShardMsg::All)
            .into_iter()
            .filter_map(|rx| rx.blocking_recv().ok())
            .flatten()
            .collect()
    }

    /// Replaces every shard's evaluator (hot reload); trackers' state is kept.
    pub fn replace_evaluators(&self, factory: EvaluatorFactory<'_>) {
        for (i, shard) in self.shards.iter().enumerate() {
            let _ = shard.send(ShardMsg::Evaluator(factory(i)));
        }
    }

    /// New history windows for every shard.
    pub fn set_history(&self, policy: HistoryPolicy) {
        for shard in &self.shards {
            let _ = shard.send(ShardMsg::History(policy.clone()));
        }
    }

    /// Asks every shard to evaluate every tracker at `now`.
    pub fn tick(&self, now: DateTime<Utc>) {
        for shard in &self.shards {
            let _ = shard.send(ShardMsg::Tick(now));
        }
    }

    /// Waits (blocking) until every shard has done everything sent to it so far. Not for
    /// async code: use [`EngineHandle::sync`] there.
    pub fn sync_blocking(&self) {
        for rx in self.sync_requests() {
            let _ = rx.blocking_recv();
        }
    }

    /// Waits until every shard has done everything sent to it so far.
    pub async fn sync(&self) {
        for rx in self.sync_requests() {
            let _ = rx.await;
        }
    }

    fn sync_requests(&self) -> Vec<oneshot::Receiver<()>> {
        self.ask_all(ShardMsg::Sync)
    }

    /// Every shard's alerts inside their `for`, after what was sent before (blocking),
    /// with Navixy's tracker ids (the fingerprint tells two accounts' trackers apart).
    pub fn pending_blocking(&self) -> Vec<PendingAlert> {
        self.ask_all(ShardMsg::Pending)
            .into_iter()
            .filter_map(|rx| rx.blocking_recv().ok())
            .flatten()
            .map(|mut p| {
                p.tracker_id = crate::navixy::messages::key_parts(p.tracker_id).1;
                p
            })
            .collect()
    }

    /// How many trackers the shards hold, all together.
    pub fn tracker_count_blocking(&self) -> usize {
        self.ask_all(ShardMsg::Len)
            .into_iter()
            .filter_map(|rx| rx.blocking_recv().ok())
            .sum()
    }

    /// Sends every shard a question (all first, so they answer in parallel); the answers
    /// come on the returned receivers, in shard order.
    fn ask_all<T>(
        &self,
        question: impl Fn(oneshot::Sender<T>) -> ShardMsg,
    ) -> Vec<oneshot::Receiver<T>> {
        self.shards
            .iter()
            .map(|shard| {
                let (tx, rx) = oneshot::channel();
                let _ = shard.send(question(tx));
                rx
            })
            .collect()
    }
}

/// `tracker_id mod workers`, for negative ids too.
pub fn shard_index(tracker_id: TrackerId, workers: usize) -> usize {
    tracker_id.rem_euclid(workers.max(1) as i64) as usize
}

/// What one frame held, as [`frame_updates`] counts it.
#[derive(Debug, Default)]
pub struct FrameCounts {
    /// Source states (from `state` and `state_batch`).
    pub states: u64,
    pub readings: u64,
    pub lifecycle: u64,
    /// iot_monitor tracker values.
    pub iot: u64,
    /// Handshakes, heartbeats, responses, errors and logouts.
    pub control: u64,
    /// Events whose source id the [`IdMap`] does not map, or without any id.
    pub unmapped: u64,
    /// Events of an unknown name (also counted in the unknown-events metric).
    pub unknown_events: u64,
    /// Batch items of an unknown type (also counted in the unknown-events metric).
    pub unknown_items: u64,
    /// Batch items dropped for a wrong type: the caller counts and logs them.
    pub invalid: Vec<DecodeError>,
}

/// Maps a decoded frame to per-tracker updates, each with its own event time (`tz` reads
/// offset-less times), appended to `out`. State and lifecycle events name a source id,
/// which `ids` maps to a tracker; readings and iot events name the tracker. What the
/// frame held is added to `counts`.
///
/// The one mapping of frames to updates: the engine's, and the rule tests' (`frame` and
/// `recording` inputs), so a test sees a frame exactly as the live path does.
pub fn frame_updates(
    frame: Frame,
    ids: &IdMap,
    tz: Tz,
    out: &mut Vec<(Update, Option<DateTime<Utc>>)>,
    counts: &mut FrameCounts,
) {
    frame_updates_from(0, frame, ids, tz, out, counts);
}

/// [`frame_updates`] for a frame of source `source`: every update's tracker is keyed
/// with it ([`tracker_key`], which leaves source 0's ids as they are).
pub fn frame_updates_from(
    source: SourceIx,
    frame: Frame,
    ids: &IdMap,
    tz: Tz,
    out: &mut Vec<(Update, Option<DateTime<Utc>>)>,
    counts: &mut FrameCounts,
) {
    let mut push = |update: Update| {
        let t = update.event_time(tz);
        out.push((update, t));
    };
    let items = match frame {
        Frame::State { state, .. } => {
            map_item(source, BatchItem::State(state), ids, tz, &mut push, counts);
            return;
        }
        Frame::StateBatch { items, .. } | Frame::ReadingsBatch { items, .. } => items,
        Frame::IotMonitor { values } => {
            for v in values {
                match v.tracker_id {
                    Some(tracker_id) => {
                        counts.iot += 1;
                        push(Update::Iot {
                            tracker_id: tracker_key(source, tracker_id),
                            values: Box::new(v),
                        });
                    }
                    None => counts.unmapped += 1,
                }
            }
            return;
        }
        Frame::Lifecycle(item) => {
            map_item(
                source,
                BatchItem::Lifecycle(item),
                ids,
                tz,
                &mut push,
                counts,
            );
            return;
        }
        Frame::UnknownEvent { event } => {
            counts.unknown_events += 1;
            metrics::counter!(telemetry::UNKNOWN_EVENTS, "type" => event).increment(1);
            return;
        }
        Frame::Handshake { .. }
        | Frame::Heartbeat
        | Frame::Logout { .. }
        | Frame::Response(_)
        | Frame::Error(_) => {
            counts.control += 1;
            return;
        }
    };
    for item in items {
        map_item(source, item, ids, tz, &mut push, counts);
    }
}

fn map_item(
    source: SourceIx,
    item: BatchItem,
    ids: &IdMap,
    tz: Tz,
    push: &mut impl FnMut(Update),
    counts: &mut FrameCounts,
) {
    match item {
        BatchItem::State(state) => match state.source_id.and_then(|s| ids.tracker_of(s)) {
            Some(tracker_id) => {
                counts.states += 1;
                push(Update::State {
                    tracker_id: tracker_key(source, tracker_id),
                    state,
                });
            }
            None => counts.unmapped += 1,
        },
        BatchItem::Readings(readings) => match readings.tracker_id {
            Some(tracker_id) => {
                counts.readings += 1;
                push(Update::Readings {
                    tracker_id: tracker_key(source, tracker_id),
                    readings,
                });
            }
            None => counts.unmapped += 1,
        },
        BatchItem::Lifecycle(item) => match item.source_id.and_then(|s| ids.tracker_of(s)) {
            Some(tracker_id) => {
                counts.lifecycle += 1;
                push(Update::Lifecycle {
                    tracker_id: tracker_key(source, tracker_id),
                    kind: item.lifecycle_event,
                    at: item.timestamp.map(|t| t.to_utc(tz)),
                });
            }
            None => counts.unmapped += 1,
        },
        BatchItem::Unknown { item_type } => {
            counts.unknown_items += 1;
            metrics::counter!(telemetry::UNKNOWN_EVENTS, "type" => item_type).increment(1);
        }
        BatchItem::Invalid(e) => counts.invalid.push(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::NoRules;
    use crate::navixy::messages::key_parts;

    fn listed(id: TrackerId, source_id: i64, label: &str) -> TrackerInfo {
        TrackerInfo {
            id,
            source_id: Some(source_id),
            label: Some(label.into()),
            ..TrackerInfo::default()
        }
    }

    /// Two accounts' tracker 42, both with device 100: two trackers, each mapped by its
    /// own account's list, and source 0's keyed by its bare id as before.
    #[test]
    fn two_sources_keep_the_same_ids_apart() {
        let factory = |_: usize| -> Box<dyn ShardEvaluator> { Box::new(NoRules) };
        let (mut engine, _transitions) =
            Engine::start(EngineOptions::new(EngineClock::EventTime), &factory).unwrap();
        engine.set_source_names(&["north".into(), "south".into()]);
        engine.set_trackers_of(0, vec![listed(42, 100, "North 42")]);
        engine.set_trackers_of(1, vec![listed(42, 100, "South 42")]);
        let frame = |speed: u32| {
            format!(
                r#"{{"type":"event","event":"state_batch","data":[{{"type":"source_state_event","state":{{"source_id":100,"last_update":"2026-01-05T08:00:00Z","gps":{{"speed":{speed}}}}}}}]}}"#
            )
        };
        engine.ingest_text_from(0, &frame(10), None).unwrap();
        engine.ingest_text_from(1, &frame(90), None).unwrap();
        engine.sync();
        /// Key, source, id, label and speed of a tracker.
        type Seen = (TrackerId, u16, TrackerId, Option<String>, Option<f64>);
        let mut seen: Vec<Seen> = engine
            .handle()
            .trackers_blocking()
            .into_iter()
            .map(|t| {
                let speed = t.current.as_ref().and_then(|s| s.gps.as_ref()?.speed);
                (
                    t.info.key(),
                    t.info.source,
                    t.info.id,
                    t.info.label.clone(),
                    speed,
                )
            })
            .collect();
        seen.sort_by_key(|s| s.0);
        assert_eq!(
            seen,
            [
                (42, 0, 42, Some("North 42".into()), Some(10.0)),
                (
                    tracker_key(1, 42),
                    1,
                    42,
                    Some("South 42".into()),
                    Some(90.0)
                ),
            ]
        );
        assert_eq!(key_parts(seen[1].0), (1, 42));
        assert_eq!(engine.stats().unmapped, 0);
        engine.shutdown();
    }
}
