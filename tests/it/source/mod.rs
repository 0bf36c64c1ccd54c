//! Integration tests: source. The real WebSocket and REST clients against the simulator on
//! loopback, driven through the simulator's hooks.

mod accounts;
mod context;
mod daemon_context;
mod limits;
mod live_context;
mod recording;
mod rest;
mod session;
mod subscribe;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeZone;
use navixy_alerts::alert::AlertTransition;
use navixy_alerts::clock::SystemClock;
use navixy_alerts::config::{Config, NavixyConfig};
use navixy_alerts::navixy::client::ConnectionOptions;
use navixy_alerts::navixy::decode::decode_frame;
use navixy_alerts::navixy::messages::Frame;
use navixy_alerts::navixy::simulator::{Simulator, SimulatorHandle, SimulatorOptions};
use navixy_alerts::source::SourceEvent;
use navixy_alerts::source::navixy::{NavixySource, SourceError, SourceHealth, SourceOptions};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Every test is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(30);

/// Runs a test body within [`LIMIT`].
pub async fn bounded<T>(body: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, body)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {LIMIT:?}"))
}

pub fn sim_options() -> SimulatorOptions {
    SimulatorOptions {
        trackers: 20,
        seed: 42,
        speed: 60.0,
        start: Some(chrono::Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap()),
        ..SimulatorOptions::default()
    }
}

pub async fn simulator(options: SimulatorOptions) -> SimulatorHandle {
    let (_, handle) = Simulator::bind("127.0.0.1:0".parse().unwrap(), options)
        .await
        .expect("bind the simulator");
    handle
}

/// A `source.navixy` section for the simulator, as a user writes it, plus `extra` lines
/// (each indented by four spaces).
pub fn config(sim: &SimulatorHandle, extra: &str) -> NavixyConfig {
    let yaml = format!(
        "source:\n  navixy:\n    api_url: {}\n    max_backoff: 200ms\n{extra}",
        sim.api_url()
    );
    match Config::from_yaml(&yaml, Path::new("test.yaml"), |_| None) {
        Ok(config) => config.sources()[0].navixy.clone().expect("a navixy source"),
        Err(e) => panic!("{e}\n{yaml}"),
    }
}

/// The `hash:` line with the simulator's API key.
pub fn api_key(sim: &SimulatorHandle) -> String {
    format!("    hash: {}\n", sim.api_key())
}

/// Short timings: the first retry within tens of milliseconds.
pub fn fast() -> SourceOptions {
    SourceOptions {
        initial_backoff: Duration::from_millis(20),
        request_timeout: Duration::from_secs(5),
        connection: ConnectionOptions {
            max_frame_bytes: 16 * 1024 * 1024,
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(2),
        },
        close_timeout: Duration::from_secs(1),
    }
}

/// A running source and the simulator it talks to.
pub struct Running {
    pub sim: SimulatorHandle,
    pub health: Arc<SourceHealth>,
    pub events: mpsc::Receiver<SourceEvent>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), SourceError>>,
}

pub async fn start(sim: SimulatorHandle, config: NavixyConfig) -> Running {
    let mut options = fast();
    options.connection.max_frame_bytes = config.max_frame_bytes;
    let source = NavixySource::new(config, Arc::new(SystemClock))
        .expect("a valid source")
        .with_options(options);
    start_source(sim, source)
}

pub fn start_source(sim: SimulatorHandle, source: NavixySource) -> Running {
    let health = source.health();
    // Roomy, so that a test waiting on health never stalls the source.
    let (tx, events) = mpsc::channel(100_000);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(source.run(tx, async {
        let _ = stopped.await;
    }));
    Running {
        sim,
        health,
        events,
        stop: Some(stop),
        task,
    }
}

impl Running {
    pub async fn next(&mut self) -> SourceEvent {
        self.events.recv().await.expect("the source stopped")
    }

    /// The next data frame, decoded (skipping tracker lists and alerts).
    pub async fn next_frame(&mut self) -> Frame {
        loop {
            if let SourceEvent::RawFrame { text, .. } = self.next().await {
                return decode_frame(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
            }
        }
    }

    /// The next engine alert, asserting no frame-less surprise in between.
    pub async fn next_alert(&mut self) -> AlertTransition {
        loop {
            if let SourceEvent::Alert(alert) = self.next().await {
                return *alert;
            }
        }
    }

    /// Everything received so far without waiting.
    pub fn drain(&mut self) -> Vec<SourceEvent> {
        let mut out = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            out.push(event);
        }
        out
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = (&mut self.task).await.expect("the source task panicked");
        assert!(result.is_ok(), "{result:?}");
        self.sim.clone().shutdown().await;
    }
}
