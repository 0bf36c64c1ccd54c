//! `loadtest throughput --node-red`: the same recording through a Node-RED flow that does
//! the two bench rules by hand (`node-red/flows.json`: log in, subscribe, parse each
//! frame, keep two answers per tracker, one webhook request per change; no durability, no
//! grouping, no signing), served and received as `run` is, its CPU read the same way
//! (`/proc/PID/stat` of the Node-RED process once it has gone quiet).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::net::TcpListener;

use super::super::{DaemonProcess, process_cpu, serve_navixy, start_rest};
use super::{IDLE_CPU, NAVIXY_EVENTS, QUIET, Received, peak_rss_kib, serve_fleet, start_counter};

/// The flow's figures.
pub(super) struct Flowed {
    pub frames: u64,
    pub wall: Duration,
    pub cpu: Duration,
    pub peak_rss_kib: Option<u64>,
    pub received: Arc<Received>,
}

/// Runs `node_red` (its launcher, `node_modules/.bin/node-red`) with the flow in a user
/// directory under `dir`, serves it `fleet`, and measures it.
pub(super) async fn flow(
    node_red: &Path,
    dir: &Path,
    fleet: &Path,
    list: String,
    ids: Vec<u64>,
) -> anyhow::Result<Flowed> {
    let received = Arc::new(Received::default());
    let receiver = start_counter(received.clone()).await?;
    let rest = start_rest(list).await?;
    let ws_listener = TcpListener::bind("127.0.0.1:0").await?;
    let ws = ws_listener.local_addr()?;
    // Node-RED listens even without its editor: a free port now, its own a moment later.
    let port = TcpListener::bind("127.0.0.1:0").await?.local_addr()?.port();

    let user_dir = dir.join("node-red");
    std::fs::create_dir_all(&user_dir)?;
    let flow_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/loadtest/node-red");
    for file in ["flows.json", "settings.js"] {
        std::fs::copy(flow_dir.join(file), user_dir.join(file))
            .with_context(|| format!("{}: cannot copy", flow_dir.join(file).display()))?;
    }
    let log_path = dir.join("node-red.log");
    let mut process = DaemonProcess::start_logged(
        "node-red",
        Command::new(node_red)
            .arg("--settings")
            .arg(user_dir.join("settings.js"))
            .arg("--userDir")
            .arg(&user_dir)
            .args(["--port", &port.to_string()])
            .env("NAVIXY_API", format!("http://{rest}/v2"))
            .env("NAVIXY_WS", format!("ws://{ws}/v2/event/subscription"))
            .env("HOOK_URL", format!("http://{receiver}/hook")),
        &log_path,
    )?;
    let pid = process.0.id();
    let (mut conn_rx, connections) = serve_navixy(ws_listener, ids, NAVIXY_EVENTS);
    let (frames, started) = serve_fleet(&mut conn_rx, fleet, "node-red", &log_path).await?;

    // Done once it has stayed quiet for QUIET: no CPU beyond IDLE_CPU, no new request.
    let poll = Duration::from_millis(250);
    let mut last = (Duration::ZERO, 0u64);
    let mut done = Instant::now();
    loop {
        let cpu = process_cpu(pid).context("node-red exited")?;
        let now = (cpu, received.total());
        let busy = now.1 != last.1
            || (cpu.saturating_sub(last.0)).as_secs_f64() > IDLE_CPU * poll.as_secs_f64();
        last = now;
        if busy {
            done = Instant::now();
        } else if done.elapsed() >= QUIET {
            break;
        }
        tokio::time::sleep(poll).await;
    }
    let flowed = Flowed {
        frames,
        wall: done.saturating_duration_since(started),
        cpu: process_cpu(pid).context("node-red exited")?,
        peak_rss_kib: peak_rss_kib(pid),
        received,
    };
    process.stop();
    let connections = connections.load(Ordering::Relaxed);
    if connections != 1 {
        bail!(
            "node-red connected {connections} times: a reconnect re-reads the stream, the figures do not hold"
        );
    }
    Ok(flowed)
}
