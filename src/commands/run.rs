//! `run -c FILE`: the daemon. A bad config or rule set is reported like `check` does and
//! exits 1 before anything starts. SIGHUP reloads the rule set; SIGINT/SIGTERM stop it
//! cleanly (source, engine, a bounded outbox flush, the database) with exit 0, and a
//! second SIGINT/SIGTERM during that stops at once (exit 130: notifications still due
//! stay in the outbox and go out at the next start).

use std::process::ExitCode;

use tokio::sync::oneshot;

use crate::cli::RunArgs;
use crate::config::Config;
use crate::daemon::reload::Trigger;
use crate::daemon::{self, RunOptions, Running};
use crate::rules::RuleSet;

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            let text = std::fs::read_to_string(&args.config).unwrap_or_default();
            eprintln!("error: {}", super::check::describe(&e, &text));
            return Ok(ExitCode::from(1));
        }
    };
    let rules = match RuleSet::load(&config) {
        Ok(rules) => rules,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("navixy-alerts")
        .build()?;
    let (started, running) = oneshot::channel::<Running>();
    runtime.block_on(async move {
        tokio::spawn(reload_on_sighup(running));
        daemon::run(
            config,
            rules,
            RunOptions {
                record: args.record,
                ..RunOptions::default()
            },
            shutdown_signal(),
            Some(started),
        )
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on the first SIGINT or SIGTERM; a second one ends the process at once.
pub async fn shutdown_signal() {
    wait_for_stop_signal().await;
    tracing::info!("Signal received; stopping (a second signal stops at once).");
    tokio::spawn(async {
        wait_for_stop_signal().await;
        tracing::warn!(
            "Second signal: exiting without waiting; due notifications stay in the outbox for the next start."
        );
        std::process::exit(130);
    });
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Reloads the rule set on every SIGHUP once the daemon runs; the outcome is logged by
/// the reloader. The handler is installed before the daemon starts, so an early SIGHUP
/// cannot kill the process: it reloads once the daemon is up.
async fn reload_on_sighup(running: oneshot::Receiver<Running>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot listen for SIGHUP; reload with POST /api/v1/reload.");
                return;
            }
        };
        let Ok(running) = running.await else { return };
        while hangups.recv().await.is_some() {
            let _ = running.reloader.reload(Trigger::Signal).await;
        }
    }
    #[cfg(not(unix))]
    {
        let _ = running;
    }
}
