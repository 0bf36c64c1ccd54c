//! `run -c FILE`: the daemon. A bad config or rule set is reported like `check` does and
//! exits 1 before anything starts; SIGINT/SIGTERM stop it cleanly with exit 0.

use std::process::ExitCode;

use crate::cli::RunArgs;
use crate::config::Config;
use crate::daemon::{self, RunOptions};
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
    runtime.block_on(daemon::run(
        config,
        rules,
        RunOptions {
            record: args.record,
        },
        shutdown_signal(),
        None,
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
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
    tracing::info!("Signal received.");
}
