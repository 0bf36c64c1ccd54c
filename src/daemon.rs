//! The daemon behind `run`: wires source → engine → dispatcher, serves the admin API, and
//! owns their lifetimes.
//!
//! ```text
//! source task ──SourceEvent──> engine thread ──transitions──> forwarder task ──> dispatcher
//!   (tokio)      (bounded)     (decode, route     (unbounded)   (batches and     (SQLite, outbox,
//!                               to shard workers)                submits)         channels)
//!
//! admin server (tokio) ── reads the store, asks the engine, reloads through the reloader
//! rule file watcher    ── reloads through the reloader
//! ```
//! The engine's front runs on a thread of its own because routing to the shards may block
//! on a full shard queue, which must push back on the source rather than stall the async
//! runtime. Shutdown goes in data-flow order: stop the admin server and the watcher, stop
//! the source, let the engine apply what it has and stop its workers, submit the last
//! transitions, let the dispatcher deliver what is due for a bounded time, and checkpoint
//! the database so that its file is complete on its own.
//!
//! A transition counts as handed over only once committed: when a commit fails (a full
//! disk), the forwarder commits the same batch again with backoff and takes no new
//! transitions meanwhile, so they wait in order in the engine's channel; `/readyz` says
//! not ready until a commit succeeds. The run ends with an error when transitions could
//! not be committed before the stop, or when the database file was lost.
//!
//! - [`reload`]: hot reload of the rule set. [`watch`]: reload on rule file change.

pub mod reload;
pub mod watch;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use self::reload::{AlertGauges, Reloader};
use crate::alert::{AlertRecord, AlertStatus, AlertTransition, Fingerprint, PendingAlert};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::dispatch::{DispatchError, Dispatcher, DispatcherHandle};
use crate::engine::{
    Engine, EngineClock, EngineHandle, EngineOptions, ShardEvaluator, shard_index,
};
use crate::navixy::simulator::SimulatorHandle;
use crate::rules::RuleSet;
use crate::server::{self, AppState, Token};
use crate::source::SourceEvent;
use crate::source::navixy::{NavixySource, SourceHealth, simulated};
use crate::source::recording::Recorder;
use crate::store::{Store, StoreError};
use crate::telemetry;

/// What `run` takes besides the config.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Append every received frame to this JSONL file (`--record`).
    pub record: Option<PathBuf>,
}

/// The running parts, for the admin API and tests.
#[derive(Clone)]
pub struct Running {
    pub engine: EngineHandle,
    pub dispatcher: DispatcherHandle,
    pub store: Store,
    pub health: Arc<SourceHealth>,
    /// The rule set loaded at start; [`Reloader::rules`] is the one in force.
    pub rules: Arc<RuleSet>,
    pub clock: Arc<dyn Clock>,
    /// The in-process simulator's address when `source.simulator` is used.
    pub simulator_api: Option<String>,
    /// Reloads the rule set (what SIGHUP, the API and the file watcher call).
    pub reloader: Arc<Reloader>,
    /// Where the admin API listens; `None` when `server.listen` is empty.
    pub admin_addr: Option<SocketAddr>,
}

/// How long the admin server may take to finish its requests at shutdown.
const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the evaluation latency is sampled (a sample costs one round trip to every
/// shard, so not on every frame).
const LATENCY_SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Runs the daemon until `shutdown` completes, then stops in data-flow order.
/// `started` receives the running parts once everything is up.
pub async fn run(
    config: Config,
    rules: RuleSet,
    options: RunOptions,
    shutdown: impl Future<Output = ()> + Send,
    started: Option<oneshot::Sender<Running>>,
) -> anyhow::Result<()> {
    crate::navixy::rest::install_crypto_provider();
    // Before anything creates a counter: a counter made before the recorder stays a no-op.
    let admin = bind_admin(&config).await?;
    let metrics = admin.as_ref().and_then(|_| server::metrics::install());

    let rules = Arc::new(rules);
    let store = Store::open(&config).context("opening the store")?;
    let records = store
        .load_live_alerts()
        .await
        .context("loading live alerts")?;
    let pending = store
        .take_pending_alerts()
        .await
        .context("loading pending alerts")?;

    // The source, and the clock everything runs on: the simulator's own (so that `for: 5m`
    // takes five simulated minutes in the demo), else the wall clock.
    let (mut source, simulator, clock): (NavixySource, Option<SimulatorHandle>, Arc<dyn Clock>) =
        match (&config.source.navixy, &config.source.simulator) {
            (Some(navixy), _) => {
                let clock: Arc<dyn Clock> = Arc::new(SystemClock);
                let source = NavixySource::new(navixy.clone(), clock.clone())?;
                (source, None, clock)
            }
            (None, Some(sim)) => {
                let (source, handle) = simulated(sim).await.context("starting the simulator")?;
                info!(api = %handle.api_url(), trackers = sim.trackers, seed = sim.seed, speed = sim.speed, "Simulator started.");
                let clock: Arc<dyn Clock> = Arc::new(handle.clock());
                (source, Some(handle), clock)
            }
            (None, None) => anyhow::bail!(
                "{}: source: set one of `navixy` or `simulator`",
                config.path.display()
            ),
        };
    if let Some(path) = &options.record {
        let recorder =
            Recorder::create(path).with_context(|| format!("{}: cannot record", path.display()))?;
        source = source.with_recorder(recorder);
    }
    let health = source.health();

    // The engine, with every shard resuming the alerts of its own trackers.
    let mut engine_options = EngineOptions::from_config(&config, EngineClock::Wall(clock.clone()));
    engine_options.history = rules.history_policy();
    let workers = engine_options.workers.max(1);
    if metrics.is_some() {
        server::metrics::register(&config, &rules, engine_options.source);
    }
    let (resumable, orphaned): (Vec<AlertRecord>, Vec<AlertRecord>) =
        records.into_iter().partition(|r| {
            r.status == AlertStatus::Firing
                && r.tracker_id.is_some()
                && rules.get(&r.rule).is_some()
        });
    let firing: HashSet<Fingerprint> = resumable.iter().map(|r| r.fingerprint.clone()).collect();
    let gauges = Arc::new(AlertGauges::new(workers));
    let factory = {
        let rules = rules.clone();
        let clock = clock.clone();
        let gauges = gauges.clone();
        move |index: usize| -> Box<dyn ShardEvaluator> {
            let mine: Vec<AlertRecord> = resumable
                .iter()
                .filter(|r| {
                    r.tracker_id
                        .is_some_and(|id| shard_index(id, workers) == index)
                })
                .cloned()
                .collect();
            let mine_pending: Vec<PendingAlert> = pending
                .iter()
                .filter(|p| shard_index(p.tracker_id, workers) == index)
                .cloned()
                .collect();
            Box::new(Reloader::evaluator(
                rules.clone(),
                clock.clone(),
                gauges.clone(),
                index,
                &mine,
                &mine_pending,
            ))
        }
    };
    let (engine, transitions) = Engine::start(engine_options, &factory)?;
    let engine_handle = engine.handle();
    let reloader = Arc::new(Reloader::new(
        config.clone(),
        rules.clone(),
        engine_handle.clone(),
        clock.clone(),
        gauges.clone(),
    ));

    // The dispatcher stops when told, after the last transitions are submitted.
    let (dispatch_stop, dispatch_stopped) = oneshot::channel::<()>();
    let dispatcher = Dispatcher::start(&config, store.clone(), clock.clone(), async move {
        let _ = dispatch_stopped.await;
    })
    .await?;

    // Source alerts reach the dispatcher beside the engine's transitions.
    let (alerts_tx, alerts_rx) = mpsc::unbounded_channel::<AlertTransition>();
    resolve_orphans(orphaned, &alerts_tx, &health, &clock);

    let (events_tx, events_rx) = mpsc::channel::<SourceEvent>(1024);
    let (source_stop, source_stopped) = oneshot::channel::<()>();
    let source_task = tokio::spawn(source.run(events_tx, async move {
        let _ = source_stopped.await;
    }));
    let poll = config.engine.eval_interval.min(Duration::from_secs(1));
    let engine_thread = std::thread::Builder::new()
        .name("engine".into())
        .spawn(move || engine_loop(engine, events_rx, alerts_tx, poll))?;
    // The admin server and the rule file watcher stop first at shutdown.
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let forwarder = tokio::spawn(forward(
        transitions,
        alerts_rx,
        dispatcher.clone(),
        firing,
        gauges,
        stopping.clone(),
    ));
    let stopped = move || {
        let mut stopping = stopping.clone();
        async move {
            let _ = stopping.wait_for(|s| *s).await;
        }
    };
    let mut admin_addr = None;
    let server_task = match admin {
        Some(listener) => {
            let addr = listener.local_addr().ok();
            admin_addr = addr;
            let state = AppState {
                engine: engine_handle.clone(),
                store: store.clone(),
                health: health.clone(),
                clock: clock.clone(),
                reloader: reloader.clone(),
                metrics,
                token: Token::from_config(config.server.token.as_ref()),
                server: config.server.clone(),
            };
            let open = state.token.is_none();
            if let Some(addr) = addr {
                info!(%addr, token = if open { "none" } else { "required" }, "Admin API listening.");
                if open && !addr.ip().is_loopback() {
                    warn!(%addr, "The admin API listens beyond loopback without server.token: anyone who reaches it can add silences and reload rules.");
                }
            }
            Some(tokio::spawn(server::run(listener, state, stopped())))
        }
        None => None,
    };
    let watcher_task =
        (!config.rules.is_empty()).then(|| tokio::spawn(watch::run(reloader.clone(), stopped())));

    if let Some(started) = started {
        let _ = started.send(Running {
            engine: engine_handle,
            dispatcher: dispatcher.clone(),
            store: store.clone(),
            health: health.clone(),
            rules: rules.clone(),
            clock: clock.clone(),
            simulator_api: simulator.as_ref().map(SimulatorHandle::api_url),
            reloader: reloader.clone(),
            admin_addr,
        });
    }
    info!(rules = rules.len(), workers, "Engine running.");

    shutdown.await;
    info!("Shutting down: stopping the admin API and the source.");
    let _ = stopping_tx.send(true);
    if let Some(task) = server_task {
        match tokio::time::timeout(SERVER_STOP_TIMEOUT, task).await {
            Ok(Ok(Err(e))) => warn!(error = %e, "The admin server stopped with an error."),
            Err(_) => warn!("The admin server did not stop in time; its requests are dropped."),
            _ => {}
        }
    }
    if let Some(task) = watcher_task {
        let _ = task.await;
    }
    let _ = source_stop.send(());
    match source_task.await {
        Ok(Err(e)) => warn!(error = %e, "The source stopped with an error."),
        Err(e) => warn!(error = %e, "The source task failed."),
        Ok(Ok(())) => {}
    }
    // The source's sender is gone: the engine drains, stops its workers, and closes the
    // transition channel, which ends the forwarder after its last submit.
    let stats = tokio::task::spawn_blocking(move || engine_thread.join())
        .await
        .ok()
        .and_then(Result::ok);
    if let Some((stats, pending)) = stats {
        info!(
            frames = stats.frames,
            updates = stats.updates(),
            "Engine stopped."
        );
        let count = pending.len();
        match store.save_pending_alerts(pending).await {
            Ok(()) if count > 0 => {
                info!(
                    count,
                    "Pending alerts kept: the next start resumes their wait."
                );
            }
            Ok(()) => {}
            Err(e) => {
                warn!(error = %e, count, "Pending alerts could not be kept; the next start waits their `for` again.");
            }
        }
    }
    let uncommitted = forwarder.await.unwrap_or(0);
    info!("Delivering what is due before stopping.");
    let _ = dispatch_stop.send(());
    dispatcher.stopped().await;
    let checkpointed = checkpoint(&store).await;
    if let Some(sim) = simulator {
        sim.shutdown().await;
    }
    checkpointed?;
    if uncommitted > 0 {
        anyhow::bail!(
            "storage {}: {uncommitted} alert transitions could not be committed before the stop; \
             the next start evaluates their trackers anew",
            store.location()
        );
    }
    info!("Stopped.");
    Ok(())
}

/// Binds `server.listen` (empty: no admin server). Done first, so that an address in use
/// stops the start before anything connects.
async fn bind_admin(config: &Config) -> anyhow::Result<Option<TcpListener>> {
    let listen = config.server.listen.trim();
    if listen.is_empty() {
        info!("Admin API disabled (server.listen is empty).");
        return Ok(None);
    }
    let listener = TcpListener::bind(listen).await.with_context(|| {
        format!(
            "{}: server.listen: cannot listen on `{listen}`",
            config.path.display()
        )
    })?;
    Ok(Some(listener))
}

/// Moves everything in the write-ahead log into the database file and empties the log,
/// so that the file is complete on its own once the process exits (a copy or a backup
/// taken then needs no `-wal` beside it, and the next start has no recovery to do).
/// Fails, without checkpointing, when the database file was removed or replaced: what
/// this run recorded is gone, and the stop must say so.
async fn checkpoint(store: &Store) -> Result<(), StoreError> {
    if store.location() == ":memory:" {
        return Ok(());
    }
    if let Err(e) = store.check_file() {
        tracing::error!(path = %store.location(), "Database lost: the file was removed or replaced while in use; not checkpointed.");
        return Err(e);
    }
    let result = store
        .call(|db| {
            db.conn()
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                    row.get::<_, i64>(0)
                })
                .map_err(StoreError::from)
        })
        .await;
    match result {
        Ok(0) => info!(path = %store.location(), "Database checkpointed."),
        Ok(_) => {
            warn!(path = %store.location(), "Database checkpoint incomplete (a reader holds the log); the next start completes it.")
        }
        Err(e) => {
            warn!(path = %store.location(), error = %e, "Database checkpoint failed; the next start completes it.")
        }
    }
    Ok(())
}

/// The engine's front: frames in, routed updates out; a timer reads the clock so that
/// silent fleets are still evaluated on the ticker.
fn engine_loop(
    mut engine: Engine,
    mut events: mpsc::Receiver<SourceEvent>,
    alerts: mpsc::UnboundedSender<AlertTransition>,
    poll: Duration,
) -> (crate::engine::EngineStats, Vec<PendingAlert>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            warn!(error = %e, "Cannot start the engine's timer; evaluating on frames only.");
            while let Some(event) = events.blocking_recv() {
                handle_event(&mut engine, event, &alerts);
                engine.flush();
            }
            return stop_engine(engine);
        }
    };
    runtime.block_on(async {
        let mut ticker = tokio::time::interval(poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut latency = LatencySampler::default();
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => {
                        latency.arrived();
                        handle_event(&mut engine, event, &alerts);
                        // Batch while frames queue up; send as soon as the queue is empty,
                        // so a lone frame is evaluated at once.
                        if events.is_empty() {
                            engine.flush();
                            latency.flushed(&engine);
                        }
                    }
                    None => break,
                },
                _ = ticker.tick() => {
                    engine.poll_clock();
                    engine.flush();
                }
            }
        }
    });
    stop_engine(engine)
}

/// Stops the engine once it applied everything, with the alerts still inside their `for`
/// (for the next start).
fn stop_engine(mut engine: Engine) -> (crate::engine::EngineStats, Vec<PendingAlert>) {
    engine.flush();
    let pending = engine.handle().pending_blocking();
    (engine.shutdown(), pending)
}

/// Samples the evaluation latency: from the arrival of the first frame of a batch to
/// every shard having evaluated it, once per [`LATENCY_SAMPLE_EVERY`]. The wait runs as a
/// task beside the engine loop, which goes on taking frames.
struct LatencySampler {
    batch_started: Option<Instant>,
    next_sample: Instant,
    in_flight: Arc<AtomicBool>,
}

impl Default for LatencySampler {
    fn default() -> Self {
        LatencySampler {
            batch_started: None,
            next_sample: Instant::now(),
            in_flight: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl LatencySampler {
    fn arrived(&mut self) {
        if self.batch_started.is_none() {
            self.batch_started = Some(Instant::now());
        }
    }

    fn flushed(&mut self, engine: &Engine) {
        let Some(started) = self.batch_started.take() else {
            return;
        };
        if started < self.next_sample || self.in_flight.swap(true, Ordering::AcqRel) {
            return;
        }
        self.next_sample = started + LATENCY_SAMPLE_EVERY;
        let handle = engine.handle();
        let in_flight = self.in_flight.clone();
        tokio::spawn(async move {
            handle.sync().await;
            metrics::histogram!(telemetry::EVAL_LATENCY).record(started.elapsed().as_secs_f64());
            in_flight.store(false, Ordering::Release);
        });
    }
}

fn handle_event(
    engine: &mut Engine,
    event: SourceEvent,
    alerts: &mpsc::UnboundedSender<AlertTransition>,
) {
    match event {
        SourceEvent::RawFrame { received_at, text } => {
            // Decode errors are counted and logged by the engine; the stream goes on.
            let _ = engine.ingest_text(&text, Some(received_at));
        }
        SourceEvent::Trackers(infos) => engine.set_trackers(infos),
        SourceEvent::Alert(t) => {
            let _ = alerts.send(*t);
        }
    }
}

/// The first wait before a refused batch is committed again; it doubles on each failure
/// up to [`COMMIT_RETRY_MAX`].
const COMMIT_RETRY_FIRST: Duration = Duration::from_millis(100);
const COMMIT_RETRY_MAX: Duration = Duration::from_secs(5);
/// How long a stopping daemon goes on retrying a refused batch before it gives up on it.
const COMMIT_RETRY_AT_STOP: Duration = Duration::from_secs(10);

/// Hands transitions to the dispatcher, as many per commit as are waiting, and counts
/// them (`navixy_alerts_alert_transitions_total`, and the firing gauge from `firing`: the
/// tracker alerts firing now). A batch whose commit fails is committed again until it
/// succeeds (see [`commit_until_done`]); nothing new is taken meanwhile. Returns how many
/// transitions were given up at the stop.
async fn forward(
    mut transitions: mpsc::UnboundedReceiver<AlertTransition>,
    mut alerts: mpsc::UnboundedReceiver<AlertTransition>,
    dispatcher: DispatcherHandle,
    mut firing: HashSet<Fingerprint>,
    gauges: Arc<AlertGauges>,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> usize {
    gauges.set_firing(firing.len() as i64);
    let mut batch = Vec::new();
    let mut transitions_open = true;
    let mut alerts_open = true;
    while transitions_open || alerts_open {
        tokio::select! {
            t = transitions.recv(), if transitions_open => match t {
                Some(t) => batch.push(t),
                None => transitions_open = false,
            },
            a = alerts.recv(), if alerts_open => match a {
                Some(a) => batch.push(a),
                None => alerts_open = false,
            },
        }
        while let Ok(t) = transitions.try_recv() {
            batch.push(t);
        }
        while let Ok(a) = alerts.try_recv() {
            batch.push(a);
        }
        if batch.is_empty() {
            continue;
        }
        for t in &batch {
            metrics::counter!(telemetry::ALERT_TRANSITIONS, "rule" => t.rule.to_string(), "status" => t.status.as_str())
                .increment(1);
            if t.tracker.is_some() {
                match t.status {
                    AlertStatus::Firing => firing.insert(t.fingerprint.clone()),
                    AlertStatus::Resolved => firing.remove(&t.fingerprint),
                };
            }
        }
        gauges.set_firing(firing.len() as i64);
        if let Err(lost) =
            commit_until_done(&dispatcher, std::mem::take(&mut batch), &stopping).await
        {
            // The dispatcher has stopped, or the stop came while the disk stayed full:
            // count what is left until the engine closes its side.
            tracing::error!(
                transitions = lost,
                "Alert transitions given up uncommitted; the next start evaluates their trackers anew."
            );
            let mut rest = lost;
            while transitions.recv().await.is_some() {
                rest += 1;
            }
            while alerts.try_recv().is_ok() {
                rest += 1;
            }
            return rest;
        }
    }
    0
}

/// Commits `batch`, again and again with backoff while the store refuses it, so that no
/// transition the engine made is lost once the disk has room again. Gives up (returning
/// the batch's size) only when the dispatcher has stopped, or when the daemon has been
/// stopping for [`COMMIT_RETRY_AT_STOP`].
async fn commit_until_done(
    dispatcher: &DispatcherHandle,
    batch: Vec<AlertTransition>,
    stopping: &tokio::sync::watch::Receiver<bool>,
) -> Result<(), usize> {
    let n = batch.len();
    let mut wait = COMMIT_RETRY_FIRST;
    let mut attempts = 0u32;
    let mut give_up_at = None;
    loop {
        attempts += 1;
        match dispatcher.submit_batch(batch.clone()).await {
            Ok(()) => {
                if attempts > 1 {
                    info!(
                        transitions = n,
                        attempts, "Alert transitions committed after failed attempts."
                    );
                }
                return Ok(());
            }
            Err(DispatchError::Stopped) => return Err(n),
            Err(e @ DispatchError::Store(_)) => {
                if attempts == 1 {
                    warn!(error = %e, transitions = n, "Alert transitions could not be committed; retrying, and taking no new ones meanwhile.");
                }
            }
        }
        let now = tokio::time::Instant::now();
        if *stopping.borrow() {
            let at = *give_up_at.get_or_insert(now + COMMIT_RETRY_AT_STOP);
            if now >= at {
                return Err(n);
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(COMMIT_RETRY_MAX);
    }
}

/// Alerts a previous run left firing that nothing will resolve: those of rules that are
/// gone resolve now; engine alerts of the source resolve once it works again (if it is
/// still down, it raises them anew itself).
fn resolve_orphans(
    orphaned: Vec<AlertRecord>,
    alerts: &mpsc::UnboundedSender<AlertTransition>,
    health: &Arc<SourceHealth>,
    clock: &Arc<dyn Clock>,
) {
    let (engine_alerts, gone): (Vec<_>, Vec<_>) = orphaned
        .into_iter()
        .filter(|r| r.status == AlertStatus::Firing)
        .partition(|r| r.tracker_id.is_none());
    for record in gone {
        info!(rule = %record.rule, fingerprint = %record.fingerprint, "Resolving an alert whose rule is gone.");
        let _ = alerts.send(record.last.resolved_at(clock.now()));
    }
    if engine_alerts.is_empty() {
        return;
    }
    let alerts = alerts.clone();
    let health = health.clone();
    let clock = clock.clone();
    tokio::spawn(async move {
        health.wait_until(|h| h.is_connected()).await;
        for record in engine_alerts {
            let _ = alerts.send(record.last.resolved_at(clock.now()));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::dispatch::testing::{config, firing, resolved, t0};

    /// Polls `check` until it holds (at most 60 s of real time).
    async fn eventually<F, Fut>(what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !check().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Caps the database at `pages` pages (at least its current size): SQLite's own
    /// "database or disk is full" for every commit that needs a new page.
    async fn max_pages(store: &Store, pages: i64) {
        store
            .call(move |db| {
                db.conn()
                    .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
                Ok(())
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_full_database_holds_transitions_back_until_they_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_path(&dir.path().join("alerts.db")).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let dispatcher = Dispatcher::start(
            &config("notify: { group_wait: 0s }"),
            store.clone(),
            Arc::new(ManualClock::new(t0())),
            async move {
                let _ = stopped.await;
            },
        )
        .await
        .unwrap();
        store.check_writable().await.unwrap();

        // The disk is full: no page beyond those in use.
        max_pages(&store, 1).await;
        let (transitions_tx, transitions) = mpsc::unbounded_channel();
        let (_alerts_tx, alerts) = mpsc::unbounded_channel();
        for tracker in 1..=300 {
            transitions_tx.send(firing("fuel_drain", tracker)).unwrap();
        }
        let (_stopping_tx, stopping) = tokio::sync::watch::channel(false);
        let forwarder = tokio::spawn(forward(
            transitions,
            alerts,
            dispatcher.clone(),
            HashSet::new(),
            Arc::new(AlertGauges::new(1)),
            stopping,
        ));

        eventually("not ready", || {
            let store = store.clone();
            async move { store.check_writable().await.is_err() }
        })
        .await;
        let why = store.check_writable().await.unwrap_err().to_string();
        assert!(
            why.contains("alert transitions cannot be committed")
                && why.contains("database or disk is full"),
            "{why}"
        );
        assert!(store.load_live_alerts().await.unwrap().is_empty());
        // The engine goes on meanwhile: tracker 1 resolves while the disk is full.
        transitions_tx
            .send(resolved(&firing("fuel_drain", 1), t0()))
            .unwrap();
        assert!(!forwarder.is_finished());

        // Space returns: everything commits, in order, and the store is ready again.
        max_pages(&store, 1 << 30).await;
        eventually("every transition committed", || {
            let store = store.clone();
            async move { store.load_live_alerts().await.unwrap().len() == 299 }
        })
        .await;
        let live = store.load_live_alerts().await.unwrap();
        let mut trackers: Vec<i64> = live.iter().filter_map(|r| r.tracker_id).collect();
        trackers.sort_unstable();
        assert_eq!(trackers, (2..=300).collect::<Vec<_>>());
        store.check_writable().await.unwrap();

        drop(transitions_tx);
        drop(_alerts_tx);
        assert_eq!(forwarder.await.unwrap(), 0, "nothing given up");
        let _ = stop.send(());
        dispatcher.stopped().await;
    }

    #[tokio::test]
    async fn a_stop_while_the_disk_stays_full_gives_up_and_counts_what_is_lost() {
        tokio::time::pause();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_path(&dir.path().join("alerts.db")).unwrap();
        let (_stop, stopped) = oneshot::channel::<()>();
        let dispatcher = Dispatcher::start(
            &config("notify: { group_wait: 0s }"),
            store.clone(),
            Arc::new(ManualClock::new(t0())),
            async move {
                let _ = stopped.await;
            },
        )
        .await
        .unwrap();
        max_pages(&store, 1).await;
        let (transitions_tx, transitions) = mpsc::unbounded_channel();
        let (_alerts_tx, alerts) = mpsc::unbounded_channel();
        for tracker in 1..=300 {
            transitions_tx.send(firing("fuel_drain", tracker)).unwrap();
        }
        drop(transitions_tx);
        let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
        stopping_tx.send(true).unwrap();
        let lost = forward(
            transitions,
            alerts,
            dispatcher.clone(),
            HashSet::new(),
            Arc::new(AlertGauges::new(1)),
            stopping,
        )
        .await;
        assert_eq!(lost, 300);
        assert!(store.load_live_alerts().await.unwrap().is_empty());
    }
}
