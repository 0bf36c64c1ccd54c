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
//! The daemon is never half alive: a part that ends on its own while the daemon runs (the
//! engine thread, a shard worker, the source, the forwarder, the dispatcher, the admin
//! server, a panic in any of them) is a [`Fault`]. It is logged as an error, the rest is
//! stopped in the same order, and [`run`] returns the fault as its error, so the process
//! exits non-zero and its supervisor restarts it.
//!
//! - [`reload`]: hot reload of the rule set. [`watch`]: reload on rule file change.

mod cluster;
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
use futures_util::FutureExt as _;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use self::reload::{AlertGauges, Reloader};
use crate::alert::{AlertRecord, AlertStatus, AlertTransition, Fingerprint, PendingAlert};
use crate::clock::{Clock, ManualClock, SystemClock};
use crate::config::Config;
use crate::dispatch::{DispatchError, Dispatcher, DispatcherHandle};
use crate::engine::{
    Engine, EngineClock, EngineHandle, EngineOptions, ShardEvaluator, shard_index,
};
use crate::navixy::context::SharedContext;
use crate::navixy::simulator::SimulatorHandle;
use crate::rules::RuleSet;
use crate::server::{self, AppState, Auth};
use crate::source::SourceEvent;
use crate::source::navixy::{ContextRefresh, NavixySource, SourceHealth, simulated};
use crate::source::recording::Recorder;
use crate::store::{Store, StoreError};
use crate::telemetry;

/// What `run` takes besides the config.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Append every received frame to this JSONL file (`--record`).
    pub record: Option<PathBuf>,
    /// The clock the engine, the dispatcher and the admin API run on instead of the
    /// source's: tests move it by hand. The source keeps its own.
    pub clock: Option<ManualClock>,
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
/// How often the engine asks each shard whether its worker is alive. Any question ends a
/// shard's sliced tick at once, so not on every tick.
const SHARD_PROBE_EVERY: Duration = Duration::from_secs(5);
/// How often the evaluation latency is sampled (a sample costs one round trip to every
/// shard, so not on every frame).
const LATENCY_SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Frames the source may read ahead of the engine. The socket (and the kernel's buffer
/// behind it) holds the rest: a frame is up to a few hundred KB, and a thousand of them
/// queued kept 100 MB in flight, cycling through memory the allocator had returned to
/// the OS, so that every new frame buffer was a page fault. A few dozen absorb the jitter
/// between the two sides and stay in the cache.
const SOURCE_QUEUE_FRAMES: usize = 32;

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
    if config.cluster.is_some() {
        return cluster::run(config, rules, options, shutdown, started, admin, metrics).await;
    }
    let owner = Owner {
        admin,
        metrics,
        cluster: None,
    };
    run_owner(config, rules, options, shutdown, started, owner).await
}

/// What a run of the sources gets from the start-up path: the bound admin listener, the
/// metrics recorder, and in a cluster the leases it runs by.
pub(crate) struct Owner {
    admin: Option<TcpListener>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    cluster: Option<Clustered>,
}

/// A run in a cluster: `config.sources()` are the sources whose leases this instance
/// holds.
pub(crate) struct Clustered {
    /// Who holds what, for `/readyz` and the console.
    view: tokio::sync::watch::Receiver<crate::cluster::ClusterView>,
    /// Completes, saying which source went to whom, when a lease held is lost: the run
    /// then stops as after a fault.
    lost: futures_util::future::BoxFuture<'static, String>,
    /// The configured sources this instance does not hold: their alerts are left alone.
    others: Vec<String>,
    /// Refuses this run's commits once it no longer holds its leases.
    fence: crate::store::CommitGuard,
    /// Delivery from the shared outbox, by this instance whatever its role.
    claimed: crate::dispatch::outbox::claimed::Claimed,
}

/// Runs `config`'s sources until `shutdown` completes, then stops in data-flow order.
async fn run_owner(
    config: Config,
    rules: RuleSet,
    options: RunOptions,
    shutdown: impl Future<Output = ()> + Send,
    started: Option<oneshot::Sender<Running>>,
    owner: Owner,
) -> anyhow::Result<()> {
    let Owner {
        admin,
        metrics,
        cluster,
    } = owner;
    let (cluster_view, lost, others, fence, claimed) = match cluster {
        Some(c) => (
            Some(c.view),
            Some(c.lost),
            c.others,
            Some(c.fence),
            Some(c.claimed),
        ),
        None => (None, None, Vec::new(), None, None),
    };
    let (faults, mut faulted) = mpsc::unbounded_channel::<Fault>();
    let ending = Arc::new(AtomicBool::new(false));
    let supervisor = Supervisor {
        faults,
        stopping: ending.clone(),
    };

    // Each source's Navixy context (zones, groups, tags, drivers): the source fills it,
    // rules read it for that source's trackers.
    let contexts: Vec<(String, Arc<SharedContext>)> = config
        .sources()
        .iter()
        .map(|entry| (entry.name().to_string(), SharedContext::new()))
        .collect();
    let names: Vec<String> = contexts.iter().map(|(name, _)| name.clone()).collect();
    let rules = Arc::new(rules.with_sources(contexts.clone()));
    let store = Store::open(&config).context("opening the store")?;
    if let Some(fence) = fence {
        store.set_commit_guard(fence);
    }
    let records = store
        .load_live_alerts()
        .await
        .context("loading live alerts")?;
    // In a cluster, only those of the sources this instance runs.
    let clustered = cluster_view.is_some();
    let pending = if clustered {
        store.take_pending_alerts_of(names.clone()).await
    } else {
        store.take_pending_alerts().await
    }
    .context("loading pending alerts")?;
    // Another instance's sources' alerts are that instance's to resume or resolve.
    let records = without_sources(records, &others);
    // The store keeps Navixy's tracker ids; the engine keys trackers by source too.
    let (records, of_no_source) = rekey_records(records, &names);
    let pending = rekey_pending(pending, &names);

    // The sources, and the clock everything runs on: the (first) simulator's own (so that
    // `for: 5m` takes five simulated minutes in the demo), else the wall clock.
    if options.record.is_some() && config.sources().len() > 1 {
        anyhow::bail!(
            "{}: --record takes the frames of one source; this config has {} (`sources:`)",
            config.path.display(),
            config.sources().len()
        );
    }
    let mut sources = Vec::new();
    let mut simulators: Vec<SimulatorHandle> = Vec::new();
    let mut sim_clock: Option<Arc<dyn Clock>> = None;
    let system: Arc<dyn Clock> = Arc::new(SystemClock);
    for (index, entry) in config.sources().iter().enumerate() {
        let name = entry.name();
        let source = match (&entry.navixy, &entry.simulator) {
            (Some(navixy), _) => NavixySource::new(navixy.clone(), system.clone())?,
            (None, Some(sim)) => {
                let (source, handle) = simulated(sim)
                    .await
                    .with_context(|| format!("source {name}: starting the simulator"))?;
                info!(source = name, api = %handle.api_url(), trackers = sim.trackers, seed = sim.seed, speed = sim.speed, "Simulator started.");
                sim_clock.get_or_insert_with(|| Arc::new(handle.clock()));
                simulators.push(handle);
                source
            }
            (None, None) => anyhow::bail!(
                "{}: source {name}: set one of `navixy` or `simulator`",
                config.path.display()
            ),
        };
        let index =
            crate::navixy::messages::SourceIx::try_from(index).context("too many sources")?;
        let mut source = source
            .with_source(index, name)
            .with_context(context_refresh(
                &config,
                entry,
                contexts[usize::from(index)].1.clone(),
            ));
        if let Some(path) = &options.record {
            let recorder = Recorder::create(path)
                .with_context(|| format!("{}: cannot record", path.display()))?;
            source = source.with_recorder(recorder);
        }
        sources.push(source);
    }
    let clock = sim_clock.unwrap_or(system);
    let clock: Arc<dyn Clock> = match &options.clock {
        Some(manual) => Arc::new(manual.clone()),
        None => clock,
    };
    let healths: Vec<Arc<SourceHealth>> = sources.iter().map(NavixySource::health).collect();
    let health = match healths.as_slice() {
        [one] => one.clone(),
        _ => Arc::new(SourceHealth::group(healths.clone(), clock.now())),
    };

    // The engine, with every shard resuming the alerts of its own trackers.
    let mut engine_options = EngineOptions::from_config(&config, EngineClock::Wall(clock.clone()));
    engine_options.history = rules.history_policy();
    let workers = engine_options.workers.max(1);
    if metrics.is_some() {
        server::metrics::register(&config, &rules, engine_options.source);
    }
    let engine_names = names.clone();
    // A firing alert of a rule that is now an event rule has nothing left to resolve it:
    // it is resolved with the orphans.
    let (resumable, mut orphaned): (Vec<AlertRecord>, Vec<AlertRecord>) =
        records.into_iter().partition(|r| {
            r.status == AlertStatus::Firing
                && r.tracker_id.is_some()
                && rules
                    .get(&r.rule)
                    .is_some_and(|rule| rule.mode == crate::rules::RuleMode::State)
        });
    orphaned.extend(of_no_source);
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
    let (mut engine, transitions) = Engine::start(engine_options, &factory)?;
    engine.set_source_names(&engine_names);
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
    // In a cluster the shared outbox is delivered by the instance's own loops; the
    // dispatcher only nudges them.
    if let Some(claimed) = &claimed {
        claimed.set_feed(store.feed().clone());
    }
    let dispatch_options = crate::dispatch::DispatchOptions {
        claimed,
        ..Default::default()
    };
    let dispatcher = Dispatcher::start_with(
        &config,
        store.clone(),
        clock.clone(),
        async move {
            let _ = dispatch_stopped.await;
        },
        dispatch_options,
    )
    .await?;

    // Source alerts reach the dispatcher beside the engine's transitions.
    let (alerts_tx, alerts_rx) = mpsc::unbounded_channel::<AlertTransition>();
    resolve_orphans(orphaned, &alerts_tx, &health, &clock);

    let (events_tx, events_rx) = mpsc::channel::<SourceEvent>(SOURCE_QUEUE_FRAMES);
    let (source_stop, source_stopped) = tokio::sync::watch::channel(false);
    let source_run = run_sources(sources, events_tx, source_stopped);
    #[cfg(debug_assertions)]
    let source_run = injected::source_fault(source_run, health.clone());
    let source_task = tokio::spawn(supervisor.watch("source", source_run));
    let poll = config.engine.eval_interval.min(Duration::from_secs(1));
    let engine_faults = supervisor.clone();
    let engine_thread = std::thread::Builder::new()
        .name("engine".into())
        .spawn(move || {
            let run = std::panic::AssertUnwindSafe(|| {
                engine_loop(engine, events_rx, alerts_tx, poll, SHARD_PROBE_EVERY)
            });
            match std::panic::catch_unwind(run) {
                Ok(Ok(stopped)) => Some(stopped),
                Ok(Err(message)) => {
                    engine_faults.fault("engine", message);
                    None
                }
                Err(panic) => {
                    engine_faults.fault("engine", format!("panicked: {}", panic_message(&*panic)));
                    None
                }
            }
        })?;
    // The admin server and the rule file watcher stop first at shutdown.
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let forwarder = tokio::spawn(supervisor.watch(
        "forwarder",
        forward(
            transitions,
            alerts_rx,
            dispatcher.clone(),
            firing,
            gauges,
            stopping.clone(),
        ),
    ));
    let dispatcher_task = {
        let dispatcher = dispatcher.clone();
        tokio::spawn(supervisor.watch("dispatcher", async move {
            dispatcher.stopped().await;
        }))
    };

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
                dispatcher: dispatcher.clone(),
                metrics,
                auth: Auth::from_config(&config.server),
                server: config.server.clone(),
                cluster: cluster_view.clone(),
            };
            let open = !state.auth.required();
            if let Some(addr) = addr {
                info!(%addr, token = if open { "none" } else { "required" }, "Admin API listening.");
                if open && !addr.ip().is_loopback() {
                    warn!(%addr, "The admin API listens beyond loopback without server.token: anyone who reaches it can add silences and reload rules.");
                }
            }
            Some(tokio::spawn(supervisor.watch(
                "admin server",
                server::run(listener, state, stopped()),
            )))
        }
        None => None,
    };
    let watcher_task = (!config.rules.is_empty()).then(|| {
        tokio::spawn(supervisor.watch("rule file watcher", watch::run(reloader.clone(), stopped())))
    });

    if let Some(started) = started {
        let _ = started.send(Running {
            engine: engine_handle,
            dispatcher: dispatcher.clone(),
            store: store.clone(),
            health: health.clone(),
            rules: rules.clone(),
            clock: clock.clone(),
            simulator_api: simulators.first().map(SimulatorHandle::api_url),
            reloader: reloader.clone(),
            admin_addr,
        });
    }
    info!(rules = rules.len(), workers, "Engine running.");

    let lost = async move {
        match lost {
            Some(lost) => lost.await,
            None => std::future::pending().await,
        }
    };
    let fault = tokio::select! {
        () = shutdown => None,
        fault = faulted.recv() => fault,
        why = lost => Some(Fault { part: "cluster lease".into(), message: why }),
    };
    ending.store(true, Ordering::Release);
    match &fault {
        Some(fault) => {
            error!(part = fault.part, error = %fault.message, "A part of the daemon stopped while running; stopping the rest (the process exits with an error).")
        }
        None => info!("Shutting down: stopping the admin API and the source."),
    }
    let _ = stopping_tx.send(true);
    if let Some(task) = server_task {
        match tokio::time::timeout(SERVER_STOP_TIMEOUT, task).await {
            Ok(Ok(Some(Err(e)))) => warn!(error = %e, "The admin server stopped with an error."),
            Err(_) => warn!("The admin server did not stop in time; its requests are dropped."),
            _ => {}
        }
    }
    if let Some(task) = watcher_task {
        let _ = task.await;
    }
    let _ = source_stop.send(true);
    match source_task.await {
        Ok(Some(Err(e))) => warn!(error = %e, "The source stopped with an error."),
        Err(e) => warn!(error = %e, "The source task failed."),
        Ok(_) => {}
    }
    // The source's sender is gone: the engine drains, stops its workers, and closes the
    // transition channel, which ends the forwarder after its last submit.
    let stats = tokio::task::spawn_blocking(move || engine_thread.join())
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
    if let Some((stats, pending)) = stats {
        info!(
            frames = stats.frames,
            updates = stats.updates(),
            "Engine stopped."
        );
        let count = pending.len();
        let saved = if clustered {
            store.save_pending_alerts_of(names.clone(), pending).await
        } else {
            store.save_pending_alerts(pending).await
        };
        match saved {
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
    let uncommitted = forwarder.await.ok().flatten().unwrap_or(0);
    info!("Delivering what is due before stopping.");
    let _ = dispatch_stop.send(());
    dispatcher.stopped().await;
    let _ = dispatcher_task.await;
    let checkpointed = checkpoint(&store).await;
    for sim in simulators {
        sim.shutdown().await;
    }
    if let Some(fault) = fault {
        error!("Stopped after a fault.");
        return Err(anyhow::anyhow!("{}: {}", fault.part, fault.message));
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

/// A part of the daemon that stopped while the daemon was running.
#[derive(Debug)]
pub struct Fault {
    /// `engine`, `shard 3`, `source`, `forwarder`, `dispatcher`, `admin server`, ...
    pub part: String,
    pub message: String,
}

/// Where the parts report their end. Before shutdown, any end is a fault.
#[derive(Clone)]
struct Supervisor {
    faults: mpsc::UnboundedSender<Fault>,
    stopping: Arc<AtomicBool>,
}

impl Supervisor {
    fn fault(&self, part: &str, message: String) {
        if !self.stopping.load(Ordering::Acquire) {
            let _ = self.faults.send(Fault {
                part: part.to_owned(),
                message,
            });
        }
    }

    /// Runs a part's future as a task: its output, or `None` if it panicked. Ending (or
    /// panicking) before the daemon stops is reported as a fault.
    fn watch<F>(
        &self,
        part: &'static str,
        future: F,
    ) -> impl Future<Output = Option<F::Output>> + use<F>
    where
        F: Future + Send,
        F::Output: Describe,
    {
        let supervisor = self.clone();
        async move {
            match std::panic::AssertUnwindSafe(future).catch_unwind().await {
                Ok(output) => {
                    supervisor.fault(part, output.describe());
                    Some(output)
                }
                Err(panic) => {
                    supervisor.fault(part, format!("panicked: {}", panic_message(&*panic)));
                    None
                }
            }
        }
    }
}

/// How a part's result reads in a fault: a part that ended without an error still ended.
trait Describe {
    fn describe(&self) -> String;
}

impl Describe for () {
    fn describe(&self) -> String {
        "ended on its own".into()
    }
}

impl<E: std::fmt::Display> Describe for Result<(), E> {
    fn describe(&self) -> String {
        match self {
            Ok(()) => "ended on its own".into(),
            Err(e) => format!("ended with an error: {e}"),
        }
    }
}

/// The forwarder's count of transitions it gave up on at the stop.
impl Describe for usize {
    fn describe(&self) -> String {
        "ended on its own".into()
    }
}

/// The text of a panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Faults on demand, for the tests of the supervision through the real binary: only in
/// debug builds, from `NAVIXY_ALERTS_INJECT_FAULT` (`engine` or `source`), once the source
/// is connected.
#[cfg(debug_assertions)]
mod injected {
    use super::*;

    fn wanted(part: &str) -> bool {
        std::env::var("NAVIXY_ALERTS_INJECT_FAULT").is_ok_and(|p| p == part)
    }

    pub(super) fn engine_fault(engine: &Engine) {
        if engine.stats().frames > 0 && wanted("engine") {
            panic!("injected fault in the engine thread");
        }
    }

    pub(super) async fn source_fault<F: Future>(run: F, health: Arc<SourceHealth>) -> F::Output {
        if !wanted("source") {
            return run.await;
        }
        tokio::select! {
            output = run => output,
            () = health.wait_until(|h| h.is_connected()) => panic!("injected fault in the source task"),
        }
    }
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
    // The first thing the demo prints: where to look.
    if let Ok(addr) = listener.local_addr() {
        let url = format!("http://{addr}/");
        info!(console = %url, "Console: {url}");
    }
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
    let result = match store.checkpoint_truncate().await {
        Ok(None) => return Ok(()),
        Ok(Some(busy)) => Ok(busy),
        Err(e) => Err(e),
    };
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

/// Runs every source at once, each under a span with its name (so that its logs say
/// which account they are about), until `stop` turns true. Each sends its events with
/// its index straight into the engine's channel: several accounts add no hop. A source
/// that ends while the others run ends the whole (the supervisor makes it a fault).
async fn run_sources(
    sources: Vec<NavixySource>,
    events: mpsc::Sender<SourceEvent>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), crate::source::navixy::SourceError> {
    use futures_util::StreamExt as _;
    use tracing::Instrument as _;
    let mut runs: futures_util::stream::FuturesUnordered<_> = sources
        .into_iter()
        .map(|source| {
            let span = tracing::info_span!("source", name = %source.name());
            let mut stop = stop.clone();
            source
                .run(events.clone(), async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .instrument(span)
        })
        .collect();
    drop(events);
    let first = runs.next().await.unwrap_or(Ok(()));
    if *stop.borrow() {
        while runs.next().await.is_some() {}
    }
    first
}

/// The alerts (as the store keeps them) of none of the sources `others`: a tracker's by
/// the source its fingerprint was made with, an engine alert by its `source` label.
fn without_sources(records: Vec<AlertRecord>, others: &[String]) -> Vec<AlertRecord> {
    if others.is_empty() {
        return records;
    }
    records
        .into_iter()
        .filter(|r| match r.tracker_id {
            Some(id) => r
                .fingerprint
                .source_among(others, &r.rule, id, r.key.as_deref())
                .is_none(),
            None => !r
                .last
                .labels
                .get("source")
                .is_some_and(|s| others.contains(s)),
        })
        .collect()
}

/// Firing alerts as the store keeps them (Navixy's tracker ids), keyed as the engine keys
/// trackers: each goes to the source whose name its fingerprint was made with. Returns
/// them, and apart those of no configured source (renamed or removed), which nothing will
/// evaluate again: they are resolved as orphans. Engine alerts (no tracker) pass as they
/// are.
fn rekey_records(
    records: Vec<AlertRecord>,
    names: &[String],
) -> (Vec<AlertRecord>, Vec<AlertRecord>) {
    let mut known = Vec::with_capacity(records.len());
    let mut unknown = Vec::new();
    for mut r in records {
        let Some(id) = r.tracker_id else {
            known.push(r);
            continue;
        };
        match r
            .fingerprint
            .source_among(names, &r.rule, id, r.key.as_deref())
        {
            Some(source) => {
                r.tracker_id = Some(crate::navixy::messages::tracker_key(source, id));
                known.push(r);
            }
            None => unknown.push(r),
        }
    }
    (known, unknown)
}

/// [`rekey_records`] for alerts inside their `for`; one of no configured source is
/// dropped.
fn rekey_pending(pending: Vec<PendingAlert>, names: &[String]) -> Vec<PendingAlert> {
    pending
        .into_iter()
        .filter_map(|mut p| {
            let source =
                p.fingerprint
                    .source_among(names, &p.rule, p.tracker_id, p.key.as_deref())?;
            p.tracker_id = crate::navixy::messages::tracker_key(source, p.tracker_id);
            Some(p)
        })
        .collect()
}

/// How a source keeps its Navixy context: refreshed with the tracker list, and at least
/// every `zones.navixy.refresh` when Navixy's zones are imported.
fn context_refresh(
    config: &Config,
    entry: &crate::config::SourceEntry,
    shared: Arc<SharedContext>,
) -> ContextRefresh {
    let trackers = entry
        .navixy
        .as_ref()
        .map_or(Duration::from_secs(600), |n| n.tracker_refresh);
    let every = match &config.zones.navixy {
        Some(zones) => zones.refresh.min(trackers),
        None => trackers,
    };
    ContextRefresh { shared, every }
}

/// The engine's front: frames in, routed updates out; a timer reads the clock so that
/// silent fleets are still evaluated on the ticker.
/// Ends with an error if a shard's worker died.
fn engine_loop(
    mut engine: Engine,
    mut events: mpsc::Receiver<SourceEvent>,
    alerts: mpsc::UnboundedSender<AlertTransition>,
    poll: Duration,
    probe_every: Duration,
) -> Result<(crate::engine::EngineStats, Vec<PendingAlert>), String> {
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
            return Ok(stop_engine(engine));
        }
    };
    runtime.block_on(async {
        let mut ticker = tokio::time::interval(poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut latency = LatencySampler::default();
        let mut probes = ShardProbes::new(probe_every);
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
                    probes.check(&engine)?;
                    #[cfg(debug_assertions)]
                    injected::engine_fault(&engine);
                }
            }
        }
        Ok::<(), String>(())
    })?;
    Ok(stop_engine(engine))
}

/// Asks every shard a question now and then. Sending to a shard whose worker died fails
/// (its inbox has no receiver any more), which drops the question at once: an answer
/// channel already closed right after the send means a dead shard. A busy shard's question
/// just waits in its inbox.
struct ShardProbes {
    every: Duration,
    next: Instant,
}

impl ShardProbes {
    fn new(every: Duration) -> ShardProbes {
        ShardProbes {
            every,
            next: Instant::now(),
        }
    }

    fn check(&mut self, engine: &Engine) -> Result<(), String> {
        if Instant::now() < self.next {
            return Ok(());
        }
        self.next = Instant::now() + self.every;
        let handle = engine.handle();
        for index in 0..engine.workers() {
            // Tracker `index` lives on shard `index` (ids are spread by remainder).
            let mut answer = handle.tracker(index as crate::navixy::messages::TrackerId);
            if let Err(oneshot::error::TryRecvError::Closed) = answer.try_recv() {
                return Err(format!(
                    "shard {index}'s worker thread stopped (its panic is logged above)"
                ));
            }
        }
        Ok(())
    }
}

/// Stops the engine once it applied everything, with the alerts still inside their `for`
/// (for the next start).
/// They carry Navixy's tracker ids: the next start keys them again by the source their
/// fingerprint names ([`rekey_pending`]).
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
        SourceEvent::RawFrame {
            source,
            received_at,
            text,
        } => {
            // Decode errors are counted and logged by the engine; the stream goes on.
            let _ = engine.ingest_text_from(source, &text, Some(received_at));
        }
        SourceEvent::Trackers(source, infos) => engine.set_trackers_of(source, infos),
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
/// succeeds (see [`commit_until_done`]); nothing new is taken meanwhile, so the engine's
/// bounded channel fills and the shards wait (back-pressure up to the source). A batch
/// takes at most a channel's worth of transitions, so at most two channels' worth are
/// held in memory. Returns how many transitions were given up at the stop, after draining
/// the channel until the engine closes it (no shard is left waiting in a send).
async fn forward(
    mut transitions: mpsc::Receiver<AlertTransition>,
    mut alerts: mpsc::UnboundedReceiver<AlertTransition>,
    dispatcher: DispatcherHandle,
    mut firing: HashSet<Fingerprint>,
    gauges: Arc<AlertGauges>,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> usize {
    gauges.set_firing(firing.len() as i64);
    let limit = transitions.max_capacity();
    let mut batch = Vec::new();
    let mut transitions_open = true;
    let mut alerts_open = true;
    while transitions_open || alerts_open {
        tokio::select! {
            n = transitions.recv_many(&mut batch, limit), if transitions_open => {
                if n == 0 {
                    transitions_open = false;
                }
            },
            a = alerts.recv(), if alerts_open => match a {
                Some(a) => batch.push(a),
                None => alerts_open = false,
            },
        }
        while batch.len() < limit
            && let Ok(t) = transitions.try_recv()
        {
            batch.push(t);
        }
        while let Ok(a) = alerts.try_recv() {
            batch.push(a);
        }
        if batch.is_empty() {
            continue;
        }
        // Counted per batch: one counter lookup per rule and status, not per transition.
        let mut counts: Vec<(&Arc<str>, &str, u64)> = Vec::new();
        for t in &batch {
            // An occurrence is counted as `event` and a wait as `pending`: neither is a
            // firing alert.
            let status = t.kind();
            match counts
                .iter_mut()
                .find(|(rule, s, _)| **rule == t.rule && *s == status)
            {
                Some((_, _, n)) => *n += 1,
                None => counts.push((&t.rule, status, 1)),
            }
            // An occurrence is not a firing alert: nothing will resolve it.
            if t.tracker.is_some() && !t.is_event() && !t.pending {
                match t.status {
                    AlertStatus::Firing => firing.insert(t.fingerprint.clone()),
                    AlertStatus::Resolved => firing.remove(&t.fingerprint),
                };
            }
        }
        for (rule, status, n) in counts {
            metrics::counter!(telemetry::ALERT_TRANSITIONS, "rule" => rule.to_string(), "status" => status)
                .increment(n);
        }
        gauges.set_firing(firing.len() as i64);
        if let Err(given_up) =
            commit_until_done(&dispatcher, std::mem::take(&mut batch), &stopping).await
        {
            // Refused by the lease fence: nothing more will commit. Ending here is a fault
            // (the supervisor stops the daemon, which exits non-zero).
            if given_up.fenced {
                return given_up.count;
            }
            let lost = given_up.count;
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

/// A batch [`commit_until_done`] gave up on.
struct GivenUp {
    count: usize,
    /// Refused by the lease fence (a cluster's deposed owner), not for want of time.
    fenced: bool,
}

/// Commits `batch`, again and again with backoff while the store refuses it, so that no
/// transition the engine made is lost once the disk has room again. Gives up (returning
/// the batch's size) only when the dispatcher has stopped, or when the daemon has been
/// stopping for [`COMMIT_RETRY_AT_STOP`].
async fn commit_until_done(
    dispatcher: &DispatcherHandle,
    batch: Vec<AlertTransition>,
    stopping: &tokio::sync::watch::Receiver<bool>,
) -> Result<(), GivenUp> {
    let n = batch.len();
    let given_up = |fenced| GivenUp { count: n, fenced };
    // Shared, so that an attempt copies no transition.
    let batch: Vec<Arc<AlertTransition>> = batch.into_iter().map(Arc::new).collect();
    let mut wait = COMMIT_RETRY_FIRST;
    let mut attempts = 0u32;
    let mut give_up_at = None;
    loop {
        attempts += 1;
        match dispatcher.submit_shared(batch.clone()).await {
            Ok(()) => {
                if attempts > 1 {
                    info!(
                        transitions = n,
                        attempts, "Alert transitions committed after failed attempts."
                    );
                }
                return Ok(());
            }
            Err(DispatchError::Stopped) => return Err(given_up(false)),
            // A deposed owner: nothing it commits counts any more.
            Err(DispatchError::Fenced(why)) => {
                error!(transitions = n, error = %why, "Alert transitions refused by the lease fence: this instance no longer runs the source; stopping.");
                return Err(given_up(true));
            }
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
                return Err(given_up(false));
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(COMMIT_RETRY_MAX);
    }
}

/// Alerts a previous run left firing that nothing will resolve: those of rules that are
/// gone (or now event rules) resolve now; engine alerts of the source resolve once it works again (if it is
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
        info!(rule = %record.rule, fingerprint = %record.fingerprint, "Resolving an alert whose rule or source is gone, or whose rule is now an event rule.");
        let _ = alerts.send(record.last.resolved_at(clock.now()));
    }
    if engine_alerts.is_empty() {
        return;
    }
    // Each waits for its own source (by its `source` label; all of them if none says).
    for record in engine_alerts {
        let name = record.last.labels.get("source");
        let health = health
            .members()
            .iter()
            .find(|m| Some(m.name()) == name.map(String::as_str))
            .unwrap_or(health)
            .clone();
        let alerts = alerts.clone();
        let clock = clock.clone();
        tokio::spawn(async move {
            health.wait_until(|h| h.is_connected()).await;
            let _ = alerts.send(record.last.resolved_at(clock.now()));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::testing::{config, firing, resolved, t0};
    use crate::engine::TRANSITION_CAPACITY;
    use crate::state::TrackerState;
    use chrono::{DateTime, Utc};

    /// Restored alerts go back to the source whose name made their fingerprint; those
    /// of a source no longer configured are set apart, to be resolved.
    #[test]
    fn restored_alerts_are_keyed_by_the_source_that_made_them() {
        use crate::navixy::messages::tracker_key;
        let record = |source: &str, id: i64| {
            let mut last = firing("seen", id);
            last.fingerprint = Fingerprint::of_source("seen", source, Some(id), None);
            AlertRecord {
                fingerprint: last.fingerprint.clone(),
                rule: "seen".into(),
                tracker_id: Some(id),
                key: None,
                status: AlertStatus::Firing,
                starts_at: t0(),
                last,
            }
        };
        let names = ["navixy".to_string(), "south".to_string()];
        let (known, unknown) = rekey_records(
            vec![
                record("navixy", 42),
                record("south", 42),
                record("east", 42),
            ],
            &names,
        );
        let keys: Vec<Option<i64>> = known.iter().map(|r| r.tracker_id).collect();
        assert_eq!(keys, [Some(42), Some(tracker_key(1, 42))]);
        assert_eq!(unknown.len(), 1);
        assert_eq!(
            unknown[0].fingerprint,
            Fingerprint::of_source("seen", "east", Some(42), None)
        );
        // The list's order may change between runs: south's alert follows its name.
        let swapped = ["south".to_string(), "navixy".to_string()];
        let (known, _) = rekey_records(vec![record("south", 42), record("navixy", 42)], &swapped);
        let keys: Vec<Option<i64>> = known.iter().map(|r| r.tracker_id).collect();
        assert_eq!(keys, [Some(42), Some(tracker_key(1, 42))]);
        let pending = rekey_pending(
            vec![PendingAlert {
                fingerprint: Fingerprint::of_source("seen", "south", Some(42), None),
                rule: "seen".into(),
                tracker_id: 42,
                key: None,
                since: t0(),
            }],
            &names,
        );
        assert_eq!(pending[0].tracker_id, tracker_key(1, 42));
        assert!(rekey_pending(pending, &["navixy".to_string()]).is_empty());
    }

    /// In a cluster, the alerts of a source another instance holds are neither resumed
    /// nor resolved here: by tracker fingerprint, and engine alerts by their label.
    #[test]
    fn another_instances_sources_alerts_are_left_alone() {
        let record = |source: &str, id: Option<i64>| {
            let mut last = firing("seen", id.unwrap_or(0));
            last.fingerprint = Fingerprint::of_source("seen", source, id, None);
            last.labels.insert("source".into(), source.into());
            AlertRecord {
                fingerprint: last.fingerprint.clone(),
                rule: "seen".into(),
                tracker_id: id,
                key: None,
                status: AlertStatus::Firing,
                starts_at: t0(),
                last,
            }
        };
        let all = vec![
            record("north", Some(1)),
            record("south", Some(1)),
            record("south", None),
            record("north", None),
            record("gone", Some(2)),
        ];
        let kept = without_sources(all.clone(), &["south".to_string()]);
        let kept: Vec<&Fingerprint> = kept.iter().map(|r| &r.fingerprint).collect();
        assert_eq!(
            kept,
            [
                &all[0].fingerprint,
                &all[3].fingerprint,
                &all[4].fingerprint
            ]
        );
        assert_eq!(without_sources(all.clone(), &[]).len(), 5);
    }

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
                db.conn().query_one(
                    &format!("PRAGMA max_page_count = {pages}"),
                    crate::store::params![],
                    |_| Ok(()),
                )?;
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
        let (transitions_tx, transitions) = mpsc::channel(TRANSITION_CAPACITY);
        let (_alerts_tx, alerts) = mpsc::unbounded_channel();
        for tracker in 1..=300 {
            transitions_tx
                .try_send(firing("fuel_drain", tracker))
                .unwrap();
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
            .try_send(resolved(&firing("fuel_drain", 1), t0()))
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

    /// Fires an alert on a tracker's first update and resolves it on the next, counting
    /// every transition it makes.
    struct FiresThenResolves {
        made: Arc<std::sync::atomic::AtomicUsize>,
        firing: HashSet<i64>,
    }

    impl ShardEvaluator for FiresThenResolves {
        fn on_update(
            &mut self,
            tracker: &TrackerState,
            _: DateTime<Utc>,
            _: bool,
            out: &mut Vec<AlertTransition>,
        ) {
            let id = tracker.info.id;
            let fired = firing("fuel_drain", id);
            out.push(if self.firing.remove(&id) {
                resolved(&fired, t0())
            } else {
                self.firing.insert(id);
                fired
            });
            self.made.fetch_add(1, Ordering::SeqCst);
        }
        fn on_tick(
            &mut self,
            _: &mut dyn Iterator<Item = &TrackerState>,
            _: DateTime<Utc>,
            _: &mut Vec<AlertTransition>,
        ) {
        }
    }

    /// A full disk stops the engine instead of filling memory: the forwarder holds one
    /// batch, the bounded channel fills, the shard waits in its send and the engine's
    /// `sync` does not return, however many updates are still to come. Once space
    /// returns, every transition commits, in order, and the engine finishes its input.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_database_stops_the_engine_instead_of_filling_memory() {
        const CAPACITY: usize = 16;
        const TRACKERS: i64 = 300;
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
        max_pages(&store, 1).await;

        let made = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut options = EngineOptions::new(EngineClock::EventTime);
        options.workers = 1;
        options.batch_size = 1;
        options.eval_interval = Duration::ZERO;
        options.transition_capacity = CAPACITY;
        let evaluator_made = made.clone();
        let (mut engine, transitions) = Engine::start(options, &move |_| {
            Box::new(FiresThenResolves {
                made: evaluator_made.clone(),
                firing: HashSet::new(),
            })
        })
        .unwrap();
        let (alerts_tx, alerts) = mpsc::unbounded_channel();
        let (_stopping_tx, stopping) = tokio::sync::watch::channel(false);
        let forwarder = tokio::spawn(forward(
            transitions,
            alerts,
            dispatcher.clone(),
            HashSet::new(),
            Arc::new(AlertGauges::new(1)),
            stopping,
        ));
        // Every tracker fires, then tracker 1 resolves: far more transitions than the
        // channel and the forwarder's batch together hold.
        let synced = Arc::new(AtomicBool::new(false));
        let engine_synced = synced.clone();
        let engine_thread = std::thread::spawn(move || {
            let frame = |id: i64| {
                format!(
                    r#"{{"type":"event","event":"state_batch","data":[{{"type":"source_state_event","state":{{"source_id":{id},"last_update":"2026-01-05T08:00:00Z","gps":{{"speed":0}}}}}}]}}"#
                )
            };
            for id in (1..=TRACKERS).chain([1]) {
                engine.ingest_text(&frame(id), None).unwrap();
            }
            engine.sync();
            engine_synced.store(true, Ordering::SeqCst);
            engine.shutdown()
        });

        eventually("a refused commit and a full channel", || {
            let store = store.clone();
            let made = made.load(Ordering::SeqCst);
            async move { made > CAPACITY && store.check_writable().await.is_err() }
        })
        .await;
        // Through a few more refused commits (the first retries come 100, 200 ms apart)
        // the shard stays where the channel stopped it: what is not committed is the
        // forwarder's batch, the channel, and the one transition the shard waits to
        // send. (The first few may commit into pages the file already has.)
        tokio::time::sleep(COMMIT_RETRY_FIRST * 4).await;
        let committed = store.load_live_alerts().await.unwrap().len();
        let held = made.load(Ordering::SeqCst) - committed;
        let bound = 2 * CAPACITY + 1;
        assert!(held <= bound, "{held} transitions held, over {bound}");
        assert!(
            !synced.load(Ordering::SeqCst),
            "sync returned on a full disk"
        );
        assert!(
            committed < TRACKERS as usize,
            "{committed} committed on a full disk"
        );

        // Space returns: the engine finishes its input and every transition commits.
        max_pages(&store, 1 << 30).await;
        let stats = tokio::task::spawn_blocking(move || engine_thread.join().unwrap())
            .await
            .unwrap();
        assert_eq!(stats.updates(), TRACKERS as u64 + 1);
        assert_eq!(made.load(Ordering::SeqCst), TRACKERS as usize + 1);
        // The engine is gone (its sender with it) and so is the source's: the forwarder
        // ends after its last commit.
        drop(alerts_tx);
        assert_eq!(forwarder.await.unwrap(), 0, "nothing given up");
        // Tracker 1's resolve came after its firing, so it is no longer live.
        let live = store.load_live_alerts().await.unwrap();
        let mut trackers: Vec<i64> = live.iter().filter_map(|r| r.tracker_id).collect();
        trackers.sort_unstable();
        assert_eq!(trackers, (2..=TRACKERS).collect::<Vec<_>>());
        store.check_writable().await.unwrap();
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
        let (transitions_tx, transitions) = mpsc::channel(TRANSITION_CAPACITY);
        let (_alerts_tx, alerts) = mpsc::unbounded_channel();
        for tracker in 1..=300 {
            transitions_tx
                .try_send(firing("fuel_drain", tracker))
                .unwrap();
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

    /// Evaluates nothing; its shard's worker panics when asked for its pending alerts.
    struct PanicsOnPending;

    impl ShardEvaluator for PanicsOnPending {
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
        fn pending(&self) -> Vec<PendingAlert> {
            panic!("a shard's evaluator failed");
        }
    }

    /// A shard whose worker died stops the engine loop with an error naming the shard,
    /// instead of leaving the engine running without it.
    #[test]
    fn a_dead_shard_stops_the_engine_with_an_error() {
        let options = EngineOptions::new(EngineClock::Wall(Arc::new(SystemClock)));
        let (engine, _transitions) =
            Engine::start(options, &|_| Box::new(PanicsOnPending)).unwrap();
        let handle = engine.handle();
        let (_events_tx, events_rx) = mpsc::channel::<SourceEvent>(1);
        let (alerts_tx, _alerts_rx) = mpsc::unbounded_channel();
        let engine_thread = std::thread::spawn(move || {
            engine_loop(
                engine,
                events_rx,
                alerts_tx,
                Duration::from_millis(10),
                Duration::from_millis(10),
            )
        });
        // Both shards' workers panic on the question; nobody answers it.
        assert!(handle.pending_blocking().is_empty());
        let ended = engine_thread.join().unwrap();
        assert_eq!(
            ended.err().as_deref(),
            Some("shard 0's worker thread stopped (its panic is logged above)")
        );
    }

    #[test]
    fn a_part_that_ends_or_panics_while_running_is_a_fault() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (faults, mut faulted) = mpsc::unbounded_channel();
        let stopping = Arc::new(AtomicBool::new(false));
        let supervisor = Supervisor {
            faults,
            stopping: stopping.clone(),
        };
        runtime.block_on(async {
            let ended = supervisor
                .watch("source", async { Err::<(), _>("auth refused") })
                .await;
            assert!(matches!(ended, Some(Err("auth refused"))));
            let panicked = supervisor
                .watch("dispatcher", async {
                    if stopping.load(Ordering::Acquire) {
                        return;
                    }
                    panic!("boom")
                })
                .await;
            assert!(panicked.is_none());
            // Once stopping, ends are expected.
            stopping.store(true, Ordering::Release);
            supervisor.watch("forwarder", async {}).await;
        });
        let mut seen = Vec::new();
        while let Ok(Fault { part, message }) = faulted.try_recv() {
            seen.push(format!("{part}: {message}"));
        }
        assert_eq!(
            seen,
            [
                "source: ended with an error: auth refused",
                "dispatcher: panicked: boom"
            ]
        );
    }
}
