//! A Navixy-compatible server for demos and tests: WebSocket `/v2/event/subscription`
//! (Atmosphere line, heartbeats, subscribe/response/error, logout) and REST
//! `/v2/user/auth` and `/v2/tracker/list`, serving a simulated fleet that is deterministic
//! for a seed (`fleet`), in the wire or the documented shapes (`frames`); and the
//! account's context (`context`): `zone/list`, `zone/point/list`, `tracker/group/list`,
//! `tag/list`, `employee/list` and `tracker/employee/read`.
//!
//! [`Simulator::bind`] starts it on an address and returns a [`SimulatorHandle`] whose
//! hooks let tests drop connections, log sessions out, refuse subscriptions or flood a
//! client with malformed frames. The simulated clock runs `speed` times faster than the
//! real one (tokio's clock, so paused-time tests control it too); [`SimClock`] exposes it
//! as a [`Clock`] so that an engine fed by the simulator can run on simulated time.

mod context;
mod fleet;
mod frames;
mod server;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

use crate::clock::Clock;
use crate::config::SimulatorConfig;
use crate::navixy::messages::TrackerInfo;

pub use context::{CORRIDOR_RADIUS_M, DEPOT_RADIUS_M, SimContext, SimZone, ZoneGeometry};
pub use fleet::{Activity, DEPOT};

/// Login and password the simulator accepts by default.
pub const DEMO_LOGIN: &str = "demo";
pub const DEMO_PASSWORD: &str = "demo";

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimulatorOptions {
    pub trackers: u32,
    pub seed: u64,
    /// Simulated seconds per real second.
    pub speed: f64,
    /// Malformed frames, wrong types and abrupt drops, now and then.
    pub chaos: bool,
    /// With `chaos`: real time between two abrupt drops of a connection, drawn uniformly
    /// from this range.
    pub chaos_drop_after: (Duration, Duration),
    /// Bare states and separate lifecycle events instead of the wire's tagged items.
    pub documented_shapes: bool,
    /// The heartbeat announced in the Atmosphere line; the server also sends `X` at it.
    pub heartbeat: Duration,
    /// Simulated second 0; default: now, to the second.
    pub start: Option<DateTime<Utc>>,
    pub login: String,
    pub password: String,
    /// The API key that always works (until revoked); default: derived from the seed.
    pub api_key: Option<String>,
    /// The first vehicle's tracker id (the others follow): a second simulated account
    /// may start where the first one's ids are, so that both have a tracker 21004.
    pub first_tracker: i64,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        SimulatorOptions {
            trackers: 20,
            seed: 42,
            speed: 60.0,
            chaos: false,
            chaos_drop_after: (Duration::from_secs(20), Duration::from_secs(90)),
            documented_shapes: false,
            heartbeat: Duration::from_secs(30),
            start: None,
            login: DEMO_LOGIN.into(),
            password: DEMO_PASSWORD.into(),
            api_key: None,
            first_tracker: FIRST_TRACKER,
        }
    }
}

/// The first simulated tracker id by default.
pub const FIRST_TRACKER: i64 = 21_001;

impl From<&SimulatorConfig> for SimulatorOptions {
    fn from(c: &SimulatorConfig) -> Self {
        SimulatorOptions {
            trackers: c.trackers,
            seed: c.seed,
            speed: c.speed,
            chaos: c.chaos,
            documented_shapes: c.documented_shapes,
            first_tracker: c.first_tracker,
            ..SimulatorOptions::default()
        }
    }
}

impl SimulatorOptions {
    /// Rejects settings the simulator cannot run with, naming the flag.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.speed.is_finite() && self.speed > 0.0) {
            return Err(format!(
                "speed must be a positive number, not {}",
                self.speed
            ));
        }
        if self.trackers > 1_000_000 {
            return Err(format!("at most 1000000 trackers, not {}", self.trackers));
        }
        let (lo, hi) = self.chaos_drop_after;
        if lo.is_zero() || hi < lo {
            return Err("chaos_drop_after must be a non-empty range of positive durations".into());
        }
        if self.heartbeat.is_zero() {
            return Err("heartbeat must be positive".into());
        }
        Ok(())
    }
}

/// The simulated clock: `start + speed × (real time since the simulator started)`.
#[derive(Debug, Clone)]
pub struct SimClock {
    start: DateTime<Utc>,
    origin: tokio::time::Instant,
    speed: f64,
}

impl SimClock {
    fn new(start: DateTime<Utc>, speed: f64) -> SimClock {
        SimClock {
            start,
            origin: tokio::time::Instant::now(),
            speed,
        }
    }

    /// Whole simulated seconds since the start.
    pub fn seconds(&self) -> i64 {
        (self.origin.elapsed().as_secs_f64() * self.speed).floor() as i64
    }

    /// Real time for `simulated` to pass.
    pub fn real(&self, simulated: Duration) -> Duration {
        simulated.div_f64(self.speed)
    }
}

impl Clock for SimClock {
    fn now(&self) -> DateTime<Utc> {
        let ms = (self.origin.elapsed().as_secs_f64() * self.speed * 1000.0) as i64;
        self.start + chrono::Duration::milliseconds(ms)
    }
}

/// A hook sent to every open WebSocket connection.
#[derive(Debug, Clone)]
enum Hook {
    /// Close the TCP connection without a close frame.
    Drop,
    /// Send `logout` and forget the subscription.
    Logout,
    /// Send this many malformed frames.
    Malformed(usize),
    /// Send this text as it is.
    Raw(String),
}

/// What the simulator counts, for tests and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimulatorStats {
    /// WebSocket connections accepted.
    pub connections: u64,
    /// WebSocket connections open now.
    pub open_connections: u64,
    /// Subscribes answered with a response (not an error).
    pub subscriptions: u64,
    /// Subscribes refused with an error frame.
    pub refused_subscriptions: u64,
    /// `user/auth` calls that returned a hash.
    pub auths: u64,
    /// `tracker/list` calls answered.
    pub tracker_lists: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    open_connections: AtomicU64,
    subscriptions: AtomicU64,
    refused_subscriptions: AtomicU64,
    auths: AtomicU64,
    tracker_lists: AtomicU64,
}

/// Everything the routes and connections share.
struct Shared {
    options: SimulatorOptions,
    api_key: String,
    clock: SimClock,
    fleet: Mutex<fleet::Fleet>,
    /// Zones, groups, tags and drivers; a test may change them mid-run.
    context: Mutex<context::SimContext>,
    /// While set, `zone/list` is refused with this code (a failed context refresh).
    context_failure: Mutex<Option<i64>>,
    /// Session hashes from `user/auth`; a logout ends them all.
    sessions: Mutex<Vec<String>>,
    api_key_valid: AtomicBool,
    /// The password `user/auth` accepts now (a user may change it).
    password: Mutex<String>,
    /// While set, every subscribe is refused with this code.
    refuse: Mutex<Option<i64>>,
    session_rng: Mutex<fastrand::Rng>,
    hooks: broadcast::Sender<Hook>,
    shutdown: watch::Sender<bool>,
    counters: Counters,
}

impl Shared {
    /// Whether a hash may subscribe or call REST: Navixy's code and description if not.
    fn check_hash(&self, hash: &str) -> Result<(), (i64, &'static str)> {
        if hash.len() != 32 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err((3, "Wrong hash"));
        }
        if hash == self.api_key && self.api_key_valid.load(Ordering::Relaxed) {
            return Ok(());
        }
        if self.sessions.lock().iter().any(|s| s == hash) {
            return Ok(());
        }
        Err((4, "User or API key not found or session ended"))
    }

    fn trackers(&self) -> Vec<TrackerInfo> {
        self.fleet
            .lock()
            .vehicles
            .iter()
            .map(|v| TrackerInfo {
                id: v.tracker_id,
                source: 0,
                source_id: Some(v.source_id),
                label: Some(v.label.clone()),
                group_id: Some(v.group_id),
                blocked: Some(v.blocked),
            })
            .collect()
    }
}

/// The simulator before it serves.
pub struct Simulator {
    shared: Arc<Shared>,
}

impl Simulator {
    /// A simulator with its fleet at simulated second 0.
    pub fn new(options: SimulatorOptions) -> Simulator {
        let start = options.start.unwrap_or_else(Utc::now).trunc_subsecs(0);
        let api_key = options
            .api_key
            .clone()
            .unwrap_or_else(|| fleet::hash_from(options.seed, 0xA11));
        let mut fleet = fleet::Fleet::new(options.trackers, options.seed, start);
        fleet.number_from(options.first_tracker);
        let context = context::SimContext::new(options.seed, &fleet);
        let (hooks, _) = broadcast::channel(64);
        let (shutdown, _) = watch::channel(false);
        Simulator {
            shared: Arc::new(Shared {
                clock: SimClock::new(start, options.speed.max(f64::MIN_POSITIVE)),
                session_rng: Mutex::new(fastrand::Rng::with_seed(options.seed ^ 0x5E55)),
                api_key,
                fleet: Mutex::new(fleet),
                context: Mutex::new(context),
                context_failure: Mutex::new(None),
                sessions: Mutex::new(Vec::new()),
                api_key_valid: AtomicBool::new(true),
                password: Mutex::new(options.password.clone()),
                refuse: Mutex::new(None),
                hooks,
                shutdown,
                counters: Counters::default(),
                options,
            }),
        }
    }

    /// The hooks and facts of this simulator.
    pub fn handle(&self) -> SimulatorHandle {
        SimulatorHandle {
            shared: self.shared.clone(),
            addr: None,
            task: Arc::new(Mutex::new(None)),
        }
    }

    /// Serves on `listener` until `shutdown` completes; then closes every WebSocket.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let shared = self.shared;
        let stop = shared.clone();
        let mut stopped = shared.shutdown.subscribe();
        let app = server::router(shared);
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    () = shutdown => {}
                    () = async { let _ = stopped.wait_for(|s| *s).await; } => {}
                }
                stop.shutdown.send_replace(true);
            })
            .await
    }

    /// Binds `addr` (use port 0 for any) and serves in a task until the handle's
    /// [`SimulatorHandle::shutdown`].
    pub async fn bind(
        addr: SocketAddr,
        options: SimulatorOptions,
    ) -> std::io::Result<(SocketAddr, SimulatorHandle)> {
        options
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let simulator = Simulator::new(options);
        let mut handle = simulator.handle();
        handle.addr = Some(local);
        let task = tokio::spawn(simulator.serve(listener, std::future::pending()));
        *handle.task.lock() = Some(task);
        Ok((local, handle))
    }
}

/// Facts about a running simulator, and the hooks tests drive it with. Cheap to clone.
#[derive(Clone)]
pub struct SimulatorHandle {
    shared: Arc<Shared>,
    addr: Option<SocketAddr>,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<std::io::Result<()>>>>>,
}

impl SimulatorHandle {
    /// The bound address (after [`Simulator::bind`]).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// The REST base, `http://ADDR/v2`.
    pub fn api_url(&self) -> String {
        match self.addr {
            Some(addr) => format!("http://{addr}/v2"),
            None => "http://127.0.0.1/v2".into(),
        }
    }

    /// The API key that works until revoked.
    pub fn api_key(&self) -> String {
        self.shared.api_key.clone()
    }

    pub fn login(&self) -> &str {
        &self.shared.options.login
    }

    /// The password `user/auth` accepts now.
    pub fn password(&self) -> String {
        self.shared.password.lock().clone()
    }

    /// Changes the password, as a user who changes theirs (sessions keep working until
    /// a [`Self::logout`]).
    pub fn set_password(&self, password: impl Into<String>) {
        *self.shared.password.lock() = password.into();
    }

    pub fn options(&self) -> &SimulatorOptions {
        &self.shared.options
    }

    /// The simulated clock.
    pub fn clock(&self) -> SimClock {
        self.shared.clock.clone()
    }

    /// The fleet as `tracker/list` reports it.
    pub fn trackers(&self) -> Vec<TrackerInfo> {
        self.shared.trackers()
    }

    pub fn stats(&self) -> SimulatorStats {
        let c = &self.shared.counters;
        SimulatorStats {
            connections: c.connections.load(Ordering::Relaxed),
            open_connections: c.open_connections.load(Ordering::Relaxed),
            subscriptions: c.subscriptions.load(Ordering::Relaxed),
            refused_subscriptions: c.refused_subscriptions.load(Ordering::Relaxed),
            auths: c.auths.load(Ordering::Relaxed),
            tracker_lists: c.tracker_lists.load(Ordering::Relaxed),
        }
    }

    /// Drops every WebSocket connection abruptly: no close frame, as a network loss does.
    pub fn drop_connections(&self) {
        let _ = self.shared.hooks.send(Hook::Drop);
    }

    /// Sends `logout` on every connection and ends every session hash from `user/auth`.
    /// The API key keeps working unless [`Self::set_api_key_valid`] revoked it.
    pub fn logout(&self) {
        self.shared.sessions.lock().clear();
        let _ = self.shared.hooks.send(Hook::Logout);
    }

    /// Revokes or restores the API key (a revoked key gets error 4).
    pub fn set_api_key_valid(&self, valid: bool) {
        self.shared.api_key_valid.store(valid, Ordering::Relaxed);
    }

    /// The context (zones, groups, tags, drivers) the REST lists serve now.
    pub fn context(&self) -> context::SimContext {
        self.shared.context.lock().clone()
    }

    /// Changes what the context lists serve from now on: a zone moved, a driver
    /// reassigned, as an operator would in Navixy's UI.
    pub fn update_context(&self, change: impl FnOnce(&mut context::SimContext)) {
        change(&mut self.shared.context.lock());
    }

    /// While `Some(code)`, `zone/list` answers that Navixy error code, so a context
    /// refresh fails; `None` serves it again.
    pub fn fail_context(&self, code: Option<i64>) {
        *self.shared.context_failure.lock() = code;
    }

    /// While `Some(code)`, every subscribe gets an error frame with that code (3 is
    /// "Wrong hash"); `None` accepts them again.
    pub fn refuse_subscriptions(&self, code: Option<i64>) {
        *self.shared.refuse.lock() = code;
    }

    /// Sends `n` malformed frames on every connection.
    pub fn send_malformed(&self, n: usize) {
        let _ = self.shared.hooks.send(Hook::Malformed(n));
    }

    /// Sends a text frame as it is on every connection.
    pub fn send_raw(&self, text: impl Into<String>) {
        let _ = self.shared.hooks.send(Hook::Raw(text.into()));
    }

    /// Stops serving, closes every connection and waits for the server task.
    pub async fn shutdown(self) {
        self.shared.shutdown.send_replace(true);
        let task = self.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}
