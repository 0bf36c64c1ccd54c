//! `simulate`: serves the simulated fleet over a Navixy-compatible API until Ctrl-C.

use std::process::ExitCode;

use anyhow::Context;
use tracing::info;

use crate::cli::SimulateArgs;
use crate::navixy::simulator::{Simulator, SimulatorOptions};

pub fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let options = SimulatorOptions {
        trackers: args.trackers,
        seed: args.seed,
        speed: args.speed,
        chaos: args.chaos,
        documented_shapes: args.documented_shapes,
        first_tracker: args.first_tracker,
        login: args.login,
        password: args.password,
        ..SimulatorOptions::default()
    };
    options
        .validate()
        .map_err(|e| anyhow::anyhow!("simulate: {e}"))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        let simulator = Simulator::new(options);
        let handle = simulator.handle();
        info!(
            trackers = args.trackers,
            seed = args.seed,
            speed = args.speed,
            chaos = args.chaos,
            documented_shapes = args.documented_shapes,
            "Simulating a Navixy fleet."
        );
        // What a client needs to connect; the key is the simulator's own, not a secret.
        eprintln!("REST:      http://{addr}/v2  (user/auth, tracker/list)");
        eprintln!("WebSocket: ws://{addr}/v2/event/subscription");
        eprintln!(
            "API key:   {}   or login `{}` / password `{}`",
            handle.api_key(),
            handle.login(),
            handle.password()
        );
        simulator
            .serve(listener, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("the simulator stopped")?;
        info!("Simulator stopped.");
        Ok(ExitCode::SUCCESS)
    })
}
