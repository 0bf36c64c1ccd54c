//! The daemon behind `run`: wires source → engine → dispatcher and owns their lifetimes.
//!
//! ```text
//! source task ──SourceEvent──> engine thread ──transitions──> forwarder task ──> dispatcher
//!   (tokio)      (bounded)     (decode, route     (unbounded)   (batches and     (SQLite, outbox,
//!                               to shard workers)                submits)         channels)
//! ```
//! The engine's front runs on a thread of its own because routing to the shards may block
//! on a full shard queue, which must push back on the source rather than stall the async
//! runtime. Shutdown goes in data-flow order: stop the source, let the engine apply what
//! it has and stop its workers, submit the last transitions, then let the dispatcher
//! deliver what is due for a bounded time.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::dispatch::{Dispatcher, DispatcherHandle};
use crate::engine::{
    Engine, EngineClock, EngineHandle, EngineOptions, ShardEvaluator, shard_index,
};
use crate::navixy::simulator::SimulatorHandle;
use crate::rules::alert::{AlertRecord, AlertStatus, AlertTransition};
use crate::rules::{Evaluator, RuleSet};
use crate::source::SourceEvent;
use crate::source::navixy::{NavixySource, SourceHealth, simulated};
use crate::source::recording::Recorder;
use crate::store::Store;

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
    pub rules: Arc<RuleSet>,
    pub clock: Arc<dyn Clock>,
    /// The in-process simulator's address when `source.simulator` is used.
    pub simulator_api: Option<String>,
}

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
    let rules = Arc::new(rules);
    let store = Store::open(&config).context("opening the store")?;
    let records = store
        .load_live_alerts()
        .await
        .context("loading live alerts")?;

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
    let (resumable, orphaned): (Vec<AlertRecord>, Vec<AlertRecord>) =
        records.into_iter().partition(|r| {
            r.status == AlertStatus::Firing
                && r.tracker_id.is_some()
                && rules.get(&r.rule).is_some()
        });
    let factory = {
        let rules = rules.clone();
        move |index: usize| -> Box<dyn ShardEvaluator> {
            let mut evaluator = Evaluator::new(rules.clone());
            let mine: Vec<AlertRecord> = resumable
                .iter()
                .filter(|r| {
                    r.tracker_id
                        .is_some_and(|id| shard_index(id, workers) == index)
                })
                .cloned()
                .collect();
            evaluator.restore(&mine);
            Box::new(evaluator)
        }
    };
    let (engine, transitions) = Engine::start(engine_options, &factory)?;
    let engine_handle = engine.handle();

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
    let forwarder = tokio::spawn(forward(transitions, alerts_rx, dispatcher.clone()));

    if let Some(started) = started {
        let _ = started.send(Running {
            engine: engine_handle,
            dispatcher: dispatcher.clone(),
            store: store.clone(),
            health: health.clone(),
            rules: rules.clone(),
            clock: clock.clone(),
            simulator_api: simulator.as_ref().map(SimulatorHandle::api_url),
        });
    }
    info!(rules = rules.len(), workers, "Engine running.");

    shutdown.await;
    info!("Shutting down: stopping the source.");
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
    if let Some(stats) = stats {
        info!(
            frames = stats.frames,
            updates = stats.updates(),
            "Engine stopped."
        );
    }
    let _ = forwarder.await;
    let _ = dispatch_stop.send(());
    dispatcher.stopped().await;
    if let Some(sim) = simulator {
        sim.shutdown().await;
    }
    info!("Stopped.");
    Ok(())
}

/// The engine's front: frames in, routed updates out; a timer reads the clock so that
/// silent fleets are still evaluated on the ticker.
fn engine_loop(
    mut engine: Engine,
    mut events: mpsc::Receiver<SourceEvent>,
    alerts: mpsc::UnboundedSender<AlertTransition>,
    poll: Duration,
) -> crate::engine::EngineStats {
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
            return engine.shutdown();
        }
    };
    runtime.block_on(async {
        let mut ticker = tokio::time::interval(poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => {
                        handle_event(&mut engine, event, &alerts);
                        // Batch while frames queue up; send as soon as the queue is empty,
                        // so a lone frame is evaluated at once.
                        if events.is_empty() {
                            engine.flush();
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
    engine.shutdown()
}

fn handle_event(
    engine: &mut Engine,
    event: SourceEvent,
    alerts: &mpsc::UnboundedSender<AlertTransition>,
) {
    match event {
        SourceEvent::Frame { received_at, text } => {
            // Decode errors are counted and logged by the engine; the stream goes on.
            let _ = engine.ingest_text(&text, Some(received_at));
        }
        SourceEvent::Trackers(infos) => engine.set_trackers(infos),
        SourceEvent::Alert(t) => {
            let _ = alerts.send(*t);
        }
    }
}

/// Hands transitions to the dispatcher, as many per commit as are waiting.
async fn forward(
    mut transitions: mpsc::UnboundedReceiver<AlertTransition>,
    mut alerts: mpsc::UnboundedReceiver<AlertTransition>,
    dispatcher: DispatcherHandle,
) {
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
        let n = batch.len();
        if let Err(e) = dispatcher.submit_batch(std::mem::take(&mut batch)).await {
            warn!(error = %e, transitions = n, "Transitions could not be committed.");
        }
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
        let _ = alerts.send(resolved(record, clock.now()));
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
            let _ = alerts.send(resolved(record, clock.now()));
        }
    });
}

fn resolved(record: AlertRecord, now: chrono::DateTime<Utc>) -> AlertTransition {
    let mut t = record.last;
    t.status = AlertStatus::Resolved;
    t.ends_at = Some(now);
    t.at = now;
    t
}
