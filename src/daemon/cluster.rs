//! The daemon in a cluster (`cluster:`): a standby until it holds a source's lease, then
//! an owner running the sources it holds exactly as a start runs them.
//!
//! ```text
//! leases task ── every renew: renew, take free leases ──> ClusterView (watch)
//!                                                            │
//! standby: small admin server (/healthz, /readyz, /metrics)  │ a lease taken
//!   └─> owner: run_owner(the sources held) ◄─────────────────┘
//!         ├─ another lease taken: stop as a clean stop does, run again with it too
//!         └─ a lease lost: stop as after a fault; the process exits non-zero
//! ```
//! Running a source restores its state the way a restart does (live alerts, the pending
//! alerts a clean stop kept, escalations, groups), because it *is* a start of the
//! sources held. A lost lease is never taken back by the same process: it exits, and its
//! supervisor (`Restart=always`) starts it again as a standby. At a clean stop the leases
//! are released after the run's last commit, so a standby takes over at once.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use futures_util::FutureExt as _;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use super::{Clustered, Owner, RunOptions, Running, run_owner};
use crate::clock::SystemClock;
use crate::cluster::{ClusterView, Leases, fence};
use crate::config::{Config, human_duration};
use crate::dispatch::outbox::claimed::{ClaimOptions, Claimed};
use crate::rules::RuleSet;
use crate::server::Auth;
use crate::server::cluster::{StandbyState, run_standby};
use crate::store::Feed;

/// Runs the instance in its cluster until `shutdown` completes or a lease is lost.
pub(super) async fn run(
    config: Config,
    rules: RuleSet,
    options: RunOptions,
    shutdown: impl Future<Output = ()> + Send,
    started: Option<oneshot::Sender<Running>>,
    admin: Option<TcpListener>,
    metrics: Option<PrometheusHandle>,
) -> anyhow::Result<()> {
    let cluster = config.cluster.clone().context("cluster: not configured")?;
    let url = database_url(&config)?;
    // The store's migrations make the leases table: run them before the first round.
    drop(crate::store::Store::open(&config).context("opening the store")?);
    // Any live instance delivers the shared outbox, a standby too.
    let (stop_delivery, delivery_stopped) = watch::channel(false);
    let claimed = Claimed::from_config(
        ClaimOptions {
            instance: Some(cluster.instance.clone()),
            ..ClaimOptions::new(&url, cluster.lease)
        },
        &config,
        Arc::new(SystemClock),
        Feed::default(),
        delivery_stopped,
    )
    .await?;
    let names: Vec<String> = config
        .sources()
        .iter()
        .map(|s| s.name().to_owned())
        .collect();
    let (leases, view) = Leases::new(&url, &cluster, names);
    let (events, _) = mpsc::unbounded_channel();
    let (stop_leases, leases_stopped) = watch::channel(false);
    let lease_task = tokio::spawn(leases.run(events, leases_stopped));
    // Kept as a std listener: each phase (standby, owner) serves on a copy of it, so that
    // the address stays bound from the start to the end.
    let admin = admin
        .map(|l| l.into_std())
        .transpose()
        .context("the admin listener")?;
    info!(
        instance = %cluster.instance,
        lease = %human_duration(cluster.lease),
        renew = %human_duration(cluster.renew_every()),
        "Cluster: standby until this instance holds a source's lease."
    );

    let mut shutdown = std::pin::pin!(shutdown.fuse());
    let mut started = started;
    let mut rules = Some(rules);
    let result: anyhow::Result<()> = loop {
        // The sources held and their epochs, read once: the run, its fence and its
        // watch for a loss all go by this one reading.
        let epochs = held_epochs(&view.borrow());
        let held: BTreeSet<String> = epochs.iter().map(|(s, _)| s.clone()).collect();
        if held.is_empty() {
            let listener = match copy(admin.as_ref()) {
                Ok(listener) => listener,
                Err(e) => break Err(e),
            };
            match standby(
                listener,
                &config,
                view.clone(),
                metrics.clone(),
                &mut shutdown,
            )
            .await
            {
                Ok(true) => continue,
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
        }
        info!(sources = ?held, "Cluster: this instance runs these sources now.");
        let mut run_config = config.clone();
        run_config.sources = Some(
            config
                .sources()
                .iter()
                .filter(|s| held.contains(s.name()))
                .cloned()
                .collect(),
        );
        // The rule set loaded at start the first time, read again for a later run (as a
        // restart reads it).
        let rule_set = match rules.take() {
            Some(r) => r,
            None => match RuleSet::load(&config) {
                Ok(r) => r,
                Err(errors) => {
                    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
                    break Err(anyhow::anyhow!(
                        "the rule files no longer load: {}",
                        errors.join("; ")
                    ));
                }
            },
        };
        let grew = Arc::new(AtomicBool::new(false));
        let run_shutdown = {
            let mut more = view.clone();
            let held = held.clone();
            let grew = grew.clone();
            let shutdown = &mut shutdown;
            async move {
                tokio::select! {
                    () = shutdown => {}
                    _ = more.wait_for(|v| v.owns.iter().any(|s| !held.contains(s))) => {
                        info!("Cluster: another source's lease taken; restarting the engine with it, as a restart does.");
                        grew.store(true, Ordering::Release);
                    }
                }
            }
        };
        let listener = match copy(admin.as_ref()) {
            Ok(listener) => listener,
            Err(e) => break Err(e),
        };
        let owner = Owner {
            admin: listener,
            metrics: metrics.clone(),
            cluster: Some(Clustered {
                view: view.clone(),
                lost: lost(view.clone(), held.clone()).boxed(),
                fence: fence::guard(&cluster.instance, epochs),
                others: config
                    .sources()
                    .iter()
                    .map(|s| s.name().to_owned())
                    .filter(|name| !held.contains(name))
                    .collect(),
                claimed: claimed.clone(),
            }),
        };
        let outcome = run_owner(
            run_config,
            rule_set,
            options.clone(),
            run_shutdown,
            started.take(),
            owner,
        )
        .await;
        match outcome {
            Ok(()) if grew.load(Ordering::Acquire) => continue,
            Ok(()) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    let _ = stop_delivery.send(true);
    claimed.stopped().await;
    // After the run's last commit: a standby takes the sources at its next round.
    let _ = stop_leases.send(true);
    if let Err(e) = lease_task.await {
        warn!(error = %e, "The lease task failed; the leases expire on their own.");
    }
    result
}

/// `storage.postgres.url`: the leases live in the database the instances share.
fn database_url(config: &Config) -> anyhow::Result<String> {
    match &config.storage.postgres {
        Some(pg) => Ok(pg.url.clone()),
        None => anyhow::bail!(
            "{}: cluster: needs storage.postgres (the instances share one PostgreSQL database)",
            config.path.display()
        ),
    }
}

/// A copy of the admin listener for one phase.
fn copy(admin: Option<&std::net::TcpListener>) -> anyhow::Result<Option<TcpListener>> {
    admin
        .map(|l| {
            let copy = l.try_clone()?;
            copy.set_nonblocking(true)?;
            TcpListener::from_std(copy)
        })
        .transpose()
        .context("the admin listener")
}

/// Serves the standby's admin routes until this instance holds a lease (`true`) or
/// `shutdown` completes (`false`).
async fn standby(
    listener: Option<TcpListener>,
    config: &Config,
    mut view: watch::Receiver<ClusterView>,
    metrics: Option<PrometheusHandle>,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> anyhow::Result<bool> {
    let (stop, stopped) = watch::channel(false);
    let server = listener.map(|listener| {
        let state = StandbyState {
            cluster: view.clone(),
            metrics,
            auth: Auth::from_config(&config.server),
        };
        let mut stopped = stopped.clone();
        tokio::spawn(run_standby(
            listener,
            state,
            config.server.clone(),
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        ))
    });
    let holds = tokio::select! {
        () = shutdown => false,
        held = view.wait_for(|v| !v.owns.is_empty()) => held.is_ok(),
    };
    let _ = stop.send(true);
    if let Some(server) = server {
        match server.await {
            Ok(Err(e)) => warn!(error = %e, "The standby's admin server stopped with an error."),
            Err(e) => warn!(error = %e, "The standby's admin server failed."),
            Ok(Ok(())) => {}
        }
    }
    Ok(holds)
}

/// Completes when a source of `held` is no longer this instance's, saying which, to whom
/// and how.
async fn lost(mut view: watch::Receiver<ClusterView>, held: BTreeSet<String>) -> String {
    let gone = |v: &ClusterView| held.iter().any(|s| !v.holds(s));
    match view.wait_for(gone).await {
        Ok(v) => {
            let why = v.lost.clone().unwrap_or_else(|| {
                let source = held
                    .iter()
                    .find(|s| !v.holds(s))
                    .cloned()
                    .unwrap_or_default();
                format!("source {source}: lease lost")
            });
            format!("{why}; exiting so that this instance starts again as a standby")
        }
        Err(_) => "the lease task ended; the leases can no longer be renewed".into(),
    }
}

/// The sources this instance holds, with their epochs.
fn held_epochs(view: &ClusterView) -> Vec<(String, i64)> {
    view.sources
        .iter()
        .filter(|s| s.held)
        .map(|s| (s.source.clone(), s.epoch))
        .collect()
}
