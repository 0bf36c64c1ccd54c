//! Chaos: the whole daemon (`daemon::run`) against a simulator that drops its connections
//! and floods it with malformed frames, and against a webhook receiver that fails, goes
//! away and comes back. Each test ends with the same verdict, by notification id, at a
//! real receiver on loopback: nothing lost, nothing doubled, no alert fired twice.
//!
//! The rig lives here too and `crash.rs` and `snapshot.rs` use it: [`Hook`] (the
//! receiver), [`Daemon`] (an in-process daemon, on a config from `support.rs`), and the
//! verdicts ([`settle`], [`assert_no_refire`], [`assert_same_body_per_id`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use navixy_alerts::alert::AlertStatus;
use navixy_alerts::config::Config;
use navixy_alerts::daemon::{self, RunOptions, Running};
use navixy_alerts::navixy::simulator::{SimulatorHandle, SimulatorOptions};
use navixy_alerts::rules::RuleSet;
use navixy_alerts::store::{OutboxEntry, OutboxStatus, Outcome, Store};

use super::support::OpsConfig;

/// Every test here is bounded by this, on a loaded two-core machine too.
pub const LIMIT: Duration = Duration::from_secs(90);

/// Runs a test body within [`LIMIT`].
pub async fn bounded<T>(body: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, body)
        .await
        .unwrap_or_else(|_| panic!("the test did not finish within {LIMIT:?}"))
}

/// Polls `check` every 20 ms until it holds; panics naming `what` after `within`.
pub async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A simulated fleet of 20 on a fixed seed, starting now (so that its times are fresh on
/// the daemon's wall clock), `speed` simulated seconds per real second.
pub fn sim_options(seed: u64, speed: f64) -> SimulatorOptions {
    SimulatorOptions {
        trackers: 20,
        seed,
        speed,
        ..SimulatorOptions::default()
    }
}

/// The simulator on a free loopback port (the source tests' own).
pub use crate::source::simulator;

// ---------------------------------------------------------------------------------------
// The receiver

/// How the receiver answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200 to everything.
    Accept,
    /// This status to everything.
    Status(u16),
    /// 200 to bodies containing the text, 503 to the others.
    AcceptContaining(String),
    /// The listener is closed (connection refused). A request that still comes on a
    /// kept-alive connection gets a 503 and `connection: close`.
    Down,
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Request {
    /// `webhook-id`.
    pub id: String,
    pub body: Bytes,
    /// What it was answered.
    pub status: u16,
}

impl Request {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

struct HookState {
    answer: Answer,
    requests: Vec<Request>,
}

/// A webhook receiver on 127.0.0.1 that records every request and answers as told; it
/// can go down (its port refuses connections) and come back on the same port.
#[derive(Clone)]
pub struct Hook {
    addr: SocketAddr,
    state: Arc<Mutex<HookState>>,
    changed: Arc<Notify>,
    server: Arc<Mutex<Option<JoinHandle<()>>>>,
}

async fn receive(State(hook): State<Hook>, headers: HeaderMap, body: Bytes) -> Response {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let answer = {
        let mut state = hook.state.lock();
        let status = match &state.answer {
            Answer::Accept => 200,
            Answer::Status(s) => *s,
            Answer::AcceptContaining(text) => {
                if contains(&body, text) {
                    200
                } else {
                    503
                }
            }
            Answer::Down => 503,
        };
        state.requests.push(Request { id, body, status });
        (status, state.answer == Answer::Down)
    };
    hook.changed.notify_waiters();
    let status = StatusCode::from_u16(answer.0).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if answer.1 {
        (status, [(header::CONNECTION, "close")]).into_response()
    } else {
        status.into_response()
    }
}

pub fn contains(body: &[u8], text: &str) -> bool {
    body.windows(text.len()).any(|w| w == text.as_bytes())
}

impl Hook {
    pub async fn start(answer: Answer) -> Hook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = Hook {
            addr: listener.local_addr().unwrap(),
            state: Arc::new(Mutex::new(HookState {
                answer,
                requests: Vec::new(),
            })),
            changed: Arc::default(),
            server: Arc::default(),
        };
        hook.serve(listener);
        hook
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(self.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        *self.server.lock() = Some(task);
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn answer(&self, answer: Answer) {
        self.state.lock().answer = answer;
    }

    /// Closes the listener: new connections are refused.
    pub async fn down(&self) {
        self.answer(Answer::Down);
        let task = self.server.lock().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn up(&self, answer: Answer) {
        // The port was ours a moment ago; rebinding it may need a retry.
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
            }
        };
        self.answer(answer);
        self.serve(listener);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().requests.clone()
    }

    /// Waits (at most `within`) until `done` holds for the requests so far.
    pub async fn wait(&self, what: &str, within: Duration, done: impl Fn(&[Request]) -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let changed = self.changed.notified();
            if done(&self.state.lock().requests) {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                let n = self.state.lock().requests.len();
                panic!("timed out waiting for {what} ({n} requests so far)");
            }
        }
    }

    /// Requests answered with a 2xx so far.
    pub fn ok_count(&self) -> usize {
        self.state.lock().requests.iter().filter(|r| r.ok()).count()
    }

    /// Waits until more than `n` requests were accepted.
    pub async fn wait_ok_beyond(&self, n: usize, what: &str) {
        self.wait(what, Duration::from_secs(30), |r| {
            r.iter().filter(|r| r.ok()).count() > n
        })
        .await;
    }

    /// Each notification once, as the receiver first accepted it, in that order.
    pub fn delivered(&self) -> Vec<Delivered> {
        let mut seen = BTreeSet::new();
        self.requests()
            .into_iter()
            .filter(|r| r.ok() && seen.insert(r.id.clone()))
            .map(|r| Delivered::parse(&r))
            .collect()
    }

    /// How often each notification id was accepted.
    pub fn accepted_per_id(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for r in self.requests().iter().filter(|r| r.ok()) {
            *out.entry(r.id.clone()).or_default() += 1;
        }
        out
    }
}

/// What a webhook body says about each alert.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub id: String,
    /// (fingerprint, rule, tracker id, status)
    pub alerts: Vec<(String, String, Option<i64>, String)>,
}

impl Delivered {
    /// A delivered webhook request's id and alerts.
    pub fn parse(r: &Request) -> Delivered {
        let body: serde_json::Value =
            serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{}: not JSON: {e}", r.id));
        let alerts = body["data"]["alerts"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no alerts: {body}", r.id))
            .iter()
            .map(|a| {
                (
                    a["fingerprint"].as_str().unwrap_or_default().to_owned(),
                    a["rule"].as_str().unwrap_or_default().to_owned(),
                    a["tracker"]["id"].as_i64(),
                    a["status"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        Delivered {
            id: r.id.clone(),
            alerts,
        }
    }
}

/// Every attempt of a notification carries the same body: the id names one message.
pub fn assert_same_body_per_id(requests: &[Request]) {
    let mut first: BTreeMap<&str, &Bytes> = BTreeMap::new();
    for r in requests {
        assert!(!r.id.is_empty(), "a request without webhook-id");
        let body = first.entry(&r.id).or_insert(&r.body);
        assert_eq!(
            *body, &r.body,
            "{}: the body changed between attempts",
            r.id
        );
    }
}

/// No alert fires twice without a resolve in between, and none resolves before it fired:
/// per fingerprint, the receiver hears firing, resolved, firing, ... in that order.
pub fn assert_no_refire(delivered: &[Delivered]) {
    let mut last: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for d in delivered {
        for (fingerprint, rule, tracker, status) in &d.alerts {
            let before = last.insert(fingerprint, (status, &d.id));
            match (before, status.as_str()) {
                (None | Some(("resolved", _)), "firing") | (Some(("firing", _)), "resolved") => {}
                (before, now) => panic!(
                    "{rule} tracker {tracker:?} ({fingerprint}): {now} in {} after {before:?}",
                    d.id
                ),
            }
        }
    }
}

/// What the receiver believes is firing now.
pub fn firing_at_receiver(delivered: &[Delivered]) -> BTreeSet<String> {
    let mut state: BTreeMap<&str, &str> = BTreeMap::new();
    for d in delivered {
        for (fingerprint, _, _, status) in &d.alerts {
            state.insert(fingerprint, status);
        }
    }
    state
        .into_iter()
        .filter(|(_, s)| *s == "firing")
        .map(|(f, _)| f.to_owned())
        .collect()
}

/// Firing alerts of trackers, as the store keeps them.
pub async fn firing_in_store(store: &Store) -> BTreeSet<String> {
    store
        .load_live_alerts()
        .await
        .expect("live alerts")
        .into_iter()
        .filter(|r| r.status == AlertStatus::Firing && r.tracker_id.is_some())
        .map(|r| r.fingerprint.0)
        .collect()
}

/// Alerts that flap damping held at some point: the receiver may lag behind them.
async fn held(store: &Store) -> BTreeSet<String> {
    store
        .recent_log(100_000)
        .await
        .expect("the notification log")
        .into_iter()
        .filter(|e| e.outcome == Outcome::Held)
        .map(|e| e.fingerprint)
        .collect()
}

/// The whole outbox, oldest first.
pub async fn outbox(store: &Store) -> Vec<OutboxEntry> {
    let mut rows = store.list_outbox(None, 100_000).await.expect("the outbox");
    rows.reverse();
    rows
}

/// Once the stream has stopped: waits until the receiver knows exactly the alerts the
/// store has firing (so no transition was lost between the engine and the receiver).
pub async fn wait_receiver_agrees(store: &Store, hook: &Hook) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let held = held(store).await;
        let live: BTreeSet<String> = firing_in_store(store)
            .await
            .difference(&held)
            .cloned()
            .collect();
        let told: BTreeSet<String> = firing_at_receiver(&hook.delivered())
            .difference(&held)
            .cloned()
            .collect();
        if live == told {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the receiver does not know what is firing:\n only in the store: {:?}\n only at the receiver: {:?}",
            live.difference(&told).collect::<Vec<_>>(),
            told.difference(&live).collect::<Vec<_>>(),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The verdict by notification id: every notification in the outbox was sent and accepted;
/// none was accepted twice except those in `may_repeat` (in flight at a crash), each
/// attempt carried the same body, and no alert fired twice.
pub fn assert_outbox_delivered(rows: &[OutboxEntry], hook: &Hook, may_repeat: &BTreeSet<String>) {
    assert!(!rows.is_empty(), "no notification at all");
    let unsent: Vec<_> = rows
        .iter()
        .filter(|r| r.status != OutboxStatus::Sent)
        .map(|r| (&r.id, r.status, &r.last_error))
        .collect();
    assert!(unsent.is_empty(), "not delivered: {unsent:?}");
    let accepted = hook.accepted_per_id();
    let decided: BTreeSet<&String> = rows.iter().map(|r| &r.id).collect();
    let received: BTreeSet<&String> = accepted.keys().collect();
    assert_eq!(
        decided, received,
        "the receiver accepted exactly the notifications of the outbox"
    );
    let doubled: Vec<_> = accepted
        .iter()
        .filter(|(id, n)| **n > 1 && !may_repeat.contains(*id))
        .collect();
    assert!(doubled.is_empty(), "accepted more than once: {doubled:?}");
    let requests = hook.requests();
    assert_same_body_per_id(&requests);
    assert_no_refire(&hook.delivered());
}

/// Stops the stream once the receiver has heard a resolve (so that the order of both
/// edges is put to the test): the simulator shuts down, the source sees no more frames.
pub async fn settle_stream(sim: SimulatorHandle, hook: &Hook) {
    hook.wait("a resolve", Duration::from_secs(60), |r| {
        r.iter()
            .any(|r| r.ok() && contains(&r.body, r#""status":"resolved""#))
    })
    .await;
    sim.shutdown().await;
}

/// Ends a chaos test: stops the stream, waits until the receiver agrees with the store,
/// stops the daemon and checks the outbox against the receiver. Returns the outbox.
pub async fn settle(sim: SimulatorHandle, daemon: Daemon, hook: &Hook) -> Vec<OutboxEntry> {
    let store = daemon.running.store.clone();
    settle_stream(sim, hook).await;
    wait_receiver_agrees(&store, hook).await;
    daemon.stop().await;
    let rows = outbox(&store).await;
    assert_outbox_delivered(&rows, hook, &BTreeSet::new());
    if std::env::var_os("OPS_DEBUG").is_some() {
        debug_dump(&rows, hook);
    }
    rows
}

/// With `OPS_DEBUG` set: what was decided and what arrived.
pub fn debug_dump(rows: &[OutboxEntry], hook: &Hook) {
    for r in rows {
        eprintln!(
            "{} {} attempts={} err={:?}",
            r.id, r.group_key, r.attempts, r.last_error
        );
    }
    let (mut firing, mut resolved) = (0, 0);
    for d in hook.delivered() {
        for a in &d.alerts {
            if a.3 == "firing" {
                firing += 1
            } else {
                resolved += 1
            }
        }
    }
    eprintln!(
        "requests {} notifications {} firing {firing} resolved {resolved}",
        hook.requests().len(),
        rows.len()
    );
}

// ---------------------------------------------------------------------------------------
// The daemon

/// `daemon::run` in this process, as `run -c` starts it.
pub struct Daemon {
    pub running: Running,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Daemon {
    /// Starts the daemon on `yaml` as if read from `dir/config.yaml`.
    pub async fn start(dir: &Path, yaml: &str) -> Daemon {
        let config = Config::from_yaml(yaml, &dir.join("config.yaml"), |_| None)
            .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        Daemon::run(config).await
    }

    /// Starts the daemon on a loaded config, with the rules it names.
    pub async fn run(config: Config) -> Daemon {
        Daemon::run_with(config, RunOptions::default()).await
    }

    /// [`Daemon::run`] with these options (a clock the test moves).
    pub async fn run_with(config: Config, options: RunOptions) -> Daemon {
        let rules = RuleSet::load(&config).unwrap_or_else(|e| panic!("{e:?}"));
        let (stop, stopped) = oneshot::channel::<()>();
        let (started_tx, started) = oneshot::channel();
        let task = tokio::spawn(daemon::run(
            config,
            rules,
            options,
            async move {
                let _ = stopped.await;
            },
            Some(started_tx),
        ));
        let running = match tokio::time::timeout(LIMIT, started).await {
            Ok(Ok(running)) => running,
            Ok(Err(_)) => panic!("the daemon did not start: {:?}", task.await),
            Err(_) => panic!("the daemon did not start within {LIMIT:?}"),
        };
        Daemon {
            running,
            stop: Some(stop),
            task,
        }
    }

    /// Stops it as SIGTERM does and waits (bounded) until it has.
    pub async fn stop(self) {
        if let Err(e) = self.finish().await {
            panic!("the daemon stopped badly: {e:?}");
        }
    }

    /// Stops it as SIGTERM does; what the run returned (a stop may rightly fail).
    pub async fn finish(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("the daemon stops within 30 s")
            .expect("the daemon task does not panic")
    }
}

/// A simulator, a receiver and a daemon between them.
pub async fn rig(
    seed: u64,
    speed: f64,
    answer: Answer,
) -> (tempfile::TempDir, SimulatorHandle, Hook, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator(sim_options(seed, speed)).await;
    let hook = Hook::start(answer).await;
    let yaml = OpsConfig::new(&sim.api_url(), &hook.url(), &dir.path().join("alerts.db")).yaml();
    let daemon = Daemon::start(dir.path(), &yaml).await;
    (dir, sim, hook, daemon)
}

// ---------------------------------------------------------------------------------------
// The tests

/// The simulator drops every connection, again and again, without a close frame: the
/// client reconnects, resubscribes and gets a fresh snapshot each time; alerts go on, and
/// no notification is lost, doubled, or fires an alert that is already firing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_connection_drops_lose_and_double_nothing() {
    bounded(async {
        let (_dir, sim, hook, daemon) = rig(7, 600.0, Answer::Accept).await;
        hook.wait_ok_beyond(0, "the first notification").await;
        const DROPS: u64 = 6;
        for round in 1..=DROPS {
            // Subscribed again, and alerts flowing, before each drop.
            eventually("a subscription", Duration::from_secs(30), || {
                sim.stats().subscriptions >= round
            })
            .await;
            let before = hook.ok_count();
            hook.wait_ok_beyond(before + 1, "alerts after a reconnect")
                .await;
            sim.drop_connections();
        }
        eventually("the last reconnect", Duration::from_secs(30), || {
            sim.stats().subscriptions > DROPS
        })
        .await;
        let before = hook.ok_count();
        hook.wait_ok_beyond(before, "alerts after the last reconnect")
            .await;
        assert!(sim.stats().connections > DROPS);
        let health = daemon.running.health.clone();
        assert!(health.reconnects() >= DROPS, "{:?}", health.snapshot());
        let rows = settle(sim, daemon, &hook).await;
        assert!(rows.len() >= 6, "{} notifications", rows.len());
    })
    .await;
}

/// Floods of malformed frames (broken JSON, HTML, wrong types, unknown events and items)
/// are skipped: the connection stays up, the other frames are read, alerts go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_malformed_frames_change_nothing() {
    bounded(async {
        let (_dir, sim, hook, daemon) = rig(8, 600.0, Answer::Accept).await;
        hook.wait_ok_beyond(0, "the first notification").await;
        let frames_before = daemon.running.health.frames_received();
        for _ in 0..5 {
            sim.send_malformed(300);
            let before = hook.ok_count();
            hook.wait_ok_beyond(before + 1, "alerts after a flood")
                .await;
        }
        // Alerts after the last flood may come from frames sent before it: wait until the
        // flood itself has been read, on the same connection.
        let health = daemon.running.health.clone();
        eventually(
            "every malformed frame read",
            Duration::from_secs(30),
            || health.frames_received() >= frames_before + 1500,
        )
        .await;
        assert_eq!(sim.stats().connections, 1, "the connection stayed up");
        assert!(health.is_connected());
        settle(sim, daemon, &hook).await;
    })
    .await;
}

/// The receiver answers 500, then 503, then refuses connections, then comes back: every
/// notification arrives, with the same id and body on every attempt, once accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_then_up_gets_every_notification_once() {
    bounded(async {
        let (_dir, sim, hook, daemon) = rig(9, 600.0, Answer::Status(500)).await;
        let store = daemon.running.store.clone();
        // Each phase lasts until the daemon has decided more notifications meanwhile, so
        // that new alerts queue behind refused ones.
        let rows_now = || async { outbox(&store).await.len() };
        for answer in [Answer::Status(500), Answer::Status(503)] {
            hook.answer(answer.clone());
            let Answer::Status(status) = answer else {
                unreachable!()
            };
            let rows = rows_now().await;
            hook.wait("a refusal", Duration::from_secs(30), |r| {
                r.iter().any(|r| r.status == status)
            })
            .await;
            wait_for_rows(&store, rows + 3).await;
        }
        hook.down().await;
        let rows = rows_now().await;
        wait_for_rows(&store, rows + 3).await;
        // Down: the dispatcher records why it could not deliver.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let pending = store
                .list_outbox(Some(OutboxStatus::Pending), 1000)
                .await
                .unwrap();
            if pending.iter().any(|r| {
                r.last_error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("cannot connect"))
            }) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no connection error recorded: {pending:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        hook.up(Answer::Accept).await;
        let rows = settle(sim, daemon, &hook).await;

        let requests = hook.requests();
        for status in [500, 503] {
            assert!(requests.iter().any(|r| r.status == status), "no {status}");
        }
        let refused: BTreeSet<&String> =
            requests.iter().filter(|r| !r.ok()).map(|r| &r.id).collect();
        let accepted: BTreeSet<&String> =
            requests.iter().filter(|r| r.ok()).map(|r| &r.id).collect();
        assert!(
            refused.is_subset(&accepted),
            "every refused notification arrived"
        );
        assert!(rows.iter().any(|r| r.attempts >= 2), "{rows:#?}");
    })
    .await;
}

/// Waits until the outbox holds at least `n` notifications.
async fn wait_for_rows(store: &Store, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while outbox(store).await.len() < n {
        assert!(Instant::now() < deadline, "fewer than {n} notifications");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
