//! The live Navixy source: keeps one working subscription to Navixy's event stream for as
//! long as the daemon runs, and hands every data frame to the engine as raw text.
//!
//! One attempt is: a hash (the configured one, or `user/auth` with login + password), the
//! tracker list (`tracker/list`, sent on as [`SourceEvent::Trackers`] before any frame of
//! the new connection), the WebSocket, the Atmosphere line, `subscribe`. The subscription
//! *works* once Navixy answers it (or sends data). Any close, error or silence ends the
//! attempt; the next one waits an exponential backoff with jitter capped at
//! `max_backoff`, and starts over from the hash. After a `logout` the source
//! re-authenticates when it has login + password; without them it raises the engine alert
//! `navixy_session_closed` and retries slowly. No working subscription for
//! `source_down_after` raises `navixy_source_down`. Both resolve when a subscription works
//! again.
//!
//! [`SourceHealth`] shows all this to `/readyz` and metrics without locks on the hot path.
//! This module decodes control frames only; data frames are the engine's.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::RwLock;
use serde::Serialize;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};
use url::Url;

use super::SourceEvent;
use super::recording::Recorder;
use crate::clock::Clock;
use crate::config::{NavixyConfig, Secret, SimulatorConfig};
use crate::navixy::client::{
    self, ClientError, Connection, ConnectionOptions, Incoming, LiveStream,
};
use crate::navixy::messages::{Frame, SubscribeResponse, TrackerId};
use crate::navixy::requests::subscribe_message;
use crate::navixy::rest::{RestClient, RestError};
use crate::navixy::simulator::{Simulator, SimulatorHandle, SimulatorOptions};
use crate::rules::alert::{AlertStatus, AlertTransition, Fingerprint, Severity};
use crate::state::TrackerInfo;
use crate::telemetry;

/// Engine alert: a `logout` arrived and the session could not be renewed.
pub const SESSION_CLOSED_ALERT: &str = "navixy_session_closed";
/// Engine alert: no working subscription for `source_down_after`.
pub const SOURCE_DOWN_ALERT: &str = "navixy_source_down";

/// The source could not start (a config problem); everything later is retried instead.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source.navixy: {0}")]
    Url(#[from] ClientError),
    #[error("source.navixy: {0}")]
    Rest(#[from] RestError),
}

/// Timings that are not in the config file (tests shorten them).
#[derive(Debug, Clone, Copy)]
pub struct SourceOptions {
    /// The first reconnect delay; it doubles per failure up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Bound of each REST call.
    pub request_timeout: Duration,
    /// Limits and timeouts of each WebSocket connection.
    pub connection: ConnectionOptions,
    /// How long shutdown waits for the connection to close politely.
    pub close_timeout: Duration,
}

impl SourceOptions {
    pub fn for_config(config: &NavixyConfig) -> SourceOptions {
        SourceOptions {
            initial_backoff: Duration::from_secs(1).min(config.max_backoff),
            request_timeout: Duration::from_secs(30),
            connection: ConnectionOptions {
                max_frame_bytes: config.max_frame_bytes,
                ..ConnectionOptions::default()
            },
            close_timeout: Duration::from_secs(3),
        }
    }
}

/// A tracker's status in the answer to `subscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TrackerStatus {
    Normal,
    /// No states until unblocked; lifecycle events still come.
    Blocked,
    /// Not this account's tracker.
    Unknown,
    /// Not allowed for this session.
    Disallowed,
    Other(String),
}

impl TrackerStatus {
    pub fn parse(s: &str) -> TrackerStatus {
        match s {
            "normal" => TrackerStatus::Normal,
            "blocked" => TrackerStatus::Blocked,
            "unknown" => TrackerStatus::Unknown,
            "disallowed" => TrackerStatus::Disallowed,
            other => TrackerStatus::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            TrackerStatus::Normal => "normal",
            TrackerStatus::Blocked => "blocked",
            TrackerStatus::Unknown => "unknown",
            TrackerStatus::Disallowed => "disallowed",
            TrackerStatus::Other(s) => s,
        }
    }
}

impl Serialize for TrackerStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Statuses per subscribed event, per tracker id, from the latest `subscribe` answer.
pub type SubscriptionStatuses = BTreeMap<String, BTreeMap<TrackerId, TrackerStatus>>;

/// The source's health, shared with `/readyz` and metrics. Reading the counters is a
/// few atomic loads; the rarely changing parts sit behind a read-mostly lock.
#[derive(Debug)]
pub struct SourceHealth {
    connected: AtomicBool,
    /// Milliseconds since the epoch (engine clock) of the last change of `connected`.
    since_ms: AtomicI64,
    reconnects: AtomicU64,
    frames: AtomicU64,
    skipped: AtomicU64,
    session_closed: AtomicBool,
    detail: RwLock<HealthDetail>,
    /// Woken on every change, for [`SourceHealth::wait_until`].
    changed: Notify,
}

#[derive(Debug, Default, Clone)]
struct HealthDetail {
    last_error: Option<String>,
    subscriptions: SubscriptionStatuses,
}

/// A copy of [`SourceHealth`] at one moment, for the admin API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthSnapshot {
    /// A subscription works now.
    pub connected: bool,
    /// Since when `connected` has its value.
    pub since: Option<DateTime<Utc>>,
    /// Reconnect attempts since start.
    pub reconnects: u64,
    /// Frames received (data and control).
    pub frames: u64,
    /// Frames skipped here (oversized, binary).
    pub skipped_frames: u64,
    /// A logout ended the session and it could not be renewed.
    pub session_closed: bool,
    /// The last reason an attempt failed.
    pub last_error: Option<String>,
    pub subscriptions: SubscriptionStatuses,
}

impl SourceHealth {
    /// A source that has not connected yet, as of `now`.
    pub fn new(now: DateTime<Utc>) -> SourceHealth {
        SourceHealth {
            connected: AtomicBool::new(false),
            since_ms: AtomicI64::new(now.timestamp_millis()),
            reconnects: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            session_closed: AtomicBool::new(false),
            detail: RwLock::new(HealthDetail::default()),
            changed: Notify::new(),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Since when the source is connected (or not).
    pub fn since(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(self.since_ms.load(Ordering::Acquire))
    }

    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    pub fn frames_received(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    pub fn frames_skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    pub fn session_closed(&self) -> bool {
        self.session_closed.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.detail.read().last_error.clone()
    }

    pub fn subscriptions(&self) -> SubscriptionStatuses {
        self.detail.read().subscriptions.clone()
    }

    /// Trackers any subscribed event reports blocked.
    pub fn blocked_trackers(&self) -> Vec<TrackerId> {
        let detail = self.detail.read();
        let mut ids: Vec<TrackerId> = detail
            .subscriptions
            .values()
            .flat_map(|m| m.iter())
            .filter(|(_, s)| **s == TrackerStatus::Blocked)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        let detail = self.detail.read().clone();
        HealthSnapshot {
            connected: self.is_connected(),
            since: self.since(),
            reconnects: self.reconnects(),
            frames: self.frames_received(),
            skipped_frames: self.frames_skipped(),
            session_closed: self.session_closed(),
            last_error: detail.last_error,
            subscriptions: detail.subscriptions,
        }
    }

    /// Waits until `condition` holds (checked at once and after every change).
    pub async fn wait_until(&self, condition: impl Fn(&SourceHealth) -> bool) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if condition(self) {
                return;
            }
            notified.await;
        }
    }

    fn set_connected(&self, connected: bool, at: DateTime<Utc>) {
        if self.connected.swap(connected, Ordering::AcqRel) != connected {
            self.since_ms
                .store(at.timestamp_millis(), Ordering::Release);
            metrics::gauge!(telemetry::SOURCE_UP).set(if connected { 1.0 } else { 0.0 });
        }
        self.changed.notify_waiters();
    }

    fn set_session_closed(&self, closed: bool) {
        self.session_closed.store(closed, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    fn set_error(&self, error: String) {
        self.detail.write().last_error = Some(error);
        self.changed.notify_waiters();
    }

    fn set_subscriptions(&self, statuses: SubscriptionStatuses) {
        self.detail.write().subscriptions = statuses;
        self.changed.notify_waiters();
    }

    fn bump_reconnects(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(telemetry::WS_RECONNECTS).increment(1);
        self.changed.notify_waiters();
    }

    /// Health only: the engine counts the frames it is handed in `telemetry::FRAMES`,
    /// so counting them here too would double them.
    fn bump_frames(&self) {
        self.frames.fetch_add(1, Ordering::Relaxed);
    }

    fn bump_skipped(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }
}

/// Exponential backoff with "equal jitter": each delay is uniform in [d/2, d], where d
/// doubles from `initial` up to `max`. The jitter spreads a fleet of clients that lost
/// the same server; the floor keeps a single client from retrying in a tight loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Backoff {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The next delay; each call doubles the base until the cap.
    pub fn next_delay(&mut self) -> Duration {
        let base = self
            .initial
            .saturating_mul(2u32.saturating_pow(self.attempt))
            .min(self.max);
        self.attempt = (self.attempt + 1).min(31);
        self.jitter(base)
    }

    /// A delay at the cap: for failures that only a person can fix.
    pub fn slow(&mut self) -> Duration {
        self.jitter(self.max)
    }

    /// After a success: the next failure starts from `initial` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    fn jitter(&mut self, base: Duration) -> Duration {
        let half = base / 2;
        half + half.mul_f64(self.rng.f64())
    }
}

/// Whether a subscription works, as the alert watchdog sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Link {
    Working,
    /// No working subscription since `since`; `session_closed` after a logout that could
    /// not be renewed.
    Down {
        since: Instant,
        session_closed: bool,
    },
}

/// The live Navixy source. Build it, keep [`NavixySource::health`], then
/// [`NavixySource::run`] it.
pub struct NavixySource {
    config: NavixyConfig,
    clock: Arc<dyn Clock>,
    health: Arc<SourceHealth>,
    recorder: Option<Recorder>,
    options: SourceOptions,
    url: Url,
}

impl NavixySource {
    /// Checks the URLs; connects nothing yet.
    pub fn new(config: NavixyConfig, clock: Arc<dyn Clock>) -> Result<NavixySource, SourceError> {
        let url = client::subscription_url(&config.api_url, config.ws_url.as_deref())?;
        let options = SourceOptions::for_config(&config);
        let health = Arc::new(SourceHealth::new(clock.now()));
        Ok(NavixySource {
            config,
            clock,
            health,
            recorder: None,
            options,
            url,
        })
    }

    /// Replaces the timings (tests use short ones).
    pub fn with_options(mut self, options: SourceOptions) -> NavixySource {
        self.options = options;
        self
    }

    /// Also appends every received frame (data and control) to a recording.
    pub fn with_recorder(mut self, recorder: Recorder) -> NavixySource {
        self.recorder = Some(recorder);
        self
    }

    /// The health handle; clone it before `run` consumes the source.
    pub fn health(&self) -> Arc<SourceHealth> {
        self.health.clone()
    }

    /// The WebSocket URL this source connects to.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Runs until `shutdown` completes or the engine drops its receiver. Never gives up
    /// on its own: every failure is retried (see the module doc).
    pub async fn run(
        self,
        tx: mpsc::Sender<SourceEvent>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), SourceError> {
        let rest = RestClient::new(&self.config.api_url, self.options.request_timeout)?;
        metrics::gauge!(telemetry::SOURCE_UP).set(0.0);
        let started = Instant::now();
        let (link_tx, link_rx) = watch::channel(Link::Down {
            since: started,
            session_closed: false,
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let alerts = EngineAlerts {
            clock: self.clock.clone(),
            tx: tx.clone(),
            health: self.health.clone(),
            down_after: self.config.source_down_after,
            session_closed_since: None,
            down_since: None,
        };
        let seed = self.clock.now().timestamp_nanos_opt().unwrap_or_default() as u64;
        let runner = Runner {
            backoff: Backoff::new(self.options.initial_backoff, self.config.max_backoff, seed),
            config: self.config,
            clock: self.clock,
            health: self.health,
            recorder: self.recorder,
            record_failed: false,
            options: self.options,
            url: self.url,
            rest,
            tx,
            link: link_tx,
            stop: stop_rx,
            hash: None,
            logged_out: false,
            session_closed: false,
            listed: Vec::new(),
            reported: HashSet::new(),
            down_since: started,
        };
        let close_timeout = runner.options.close_timeout;
        let runner = runner.run();
        let alerts = alerts.watch(link_rx);
        tokio::pin!(runner, alerts, shutdown);
        tokio::select! {
            () = &mut shutdown => {}
            () = &mut runner => return Ok(()),
            () = &mut alerts => return Ok(()),
        }
        // Let the connection close politely, within bounds.
        stop_tx.send_replace(true);
        let _ = tokio::time::timeout(close_timeout, runner).await;
        Ok(())
    }
}

/// Binds the simulator on a loopback port and returns a source connected to it through
/// the real client (login + password, so `user/auth` is exercised too), on the
/// simulator's clock, with the simulator's handle (keep it; shut it down at exit). Feed
/// the engine `handle.clock()` as well, so that rule durations pass at simulated speed.
pub async fn simulated(
    config: &SimulatorConfig,
) -> std::io::Result<(NavixySource, SimulatorHandle)> {
    let options = SimulatorOptions::from(config);
    let (_, handle) = Simulator::bind(SocketAddr::from(([127, 0, 0, 1], 0)), options).await?;
    let navixy: NavixyConfig = serde_json::from_value(serde_json::json!({
        "api_url": handle.api_url(),
        "login": handle.login(),
        "password": handle.password(),
    }))
    .map_err(std::io::Error::other)?;
    let source =
        NavixySource::new(navixy, Arc::new(handle.clock())).map_err(std::io::Error::other)?;
    Ok((source, handle))
}

/// How long to wait before the next attempt.
#[derive(Debug, Clone, Copy)]
enum Wait {
    Backoff,
    /// The backoff, but at least this (a server's `Retry-After`).
    AtLeast(Duration),
    /// The cap: only a person can fix this.
    Slow,
}

enum Outcome {
    /// The engine is gone, or shutdown was asked.
    Stopped,
    Retry {
        /// The subscription had worked before this attempt ended.
        working: bool,
        wait: Wait,
        error: String,
    },
}

/// The reconnect loop's state.
struct Runner {
    config: NavixyConfig,
    clock: Arc<dyn Clock>,
    health: Arc<SourceHealth>,
    recorder: Option<Recorder>,
    record_failed: bool,
    options: SourceOptions,
    url: Url,
    rest: RestClient,
    tx: mpsc::Sender<SourceEvent>,
    link: watch::Sender<Link>,
    stop: watch::Receiver<bool>,
    backoff: Backoff,
    /// The hash in use: the configured one, or a session hash from `user/auth`.
    hash: Option<Secret>,
    /// A logout arrived and no subscription has worked since.
    logged_out: bool,
    /// A logout arrived and the session could not be renewed.
    session_closed: bool,
    /// Tracker ids of the latest list, for requests that need explicit ids.
    /// The last tracker list, amended by the subscription's per-tracker statuses.
    listed: Vec<TrackerInfo>,
    /// Trackers already reported as unknown or disallowed.
    reported: HashSet<TrackerId>,
    down_since: Instant,
}

impl Runner {
    fn can_login(&self) -> bool {
        self.config.login.is_some() && self.config.password.is_some()
    }

    async fn run(mut self) {
        let mut first = true;
        loop {
            if !first {
                self.health.bump_reconnects();
            }
            first = false;
            let (working, wait, error) = match self.attempt().await {
                Outcome::Stopped => return,
                Outcome::Retry {
                    working,
                    wait,
                    error,
                } => (working, wait, error),
            };
            let now = self.clock.now();
            if working {
                // The delay after a working subscription starts from the beginning.
                self.backoff.reset();
                self.down_since = Instant::now();
                self.health.set_connected(false, now);
            }
            self.health.set_error(error.clone());
            self.health.set_session_closed(self.session_closed);
            self.link.send_replace(Link::Down {
                since: self.down_since,
                session_closed: self.session_closed,
            });
            let delay = match wait {
                Wait::Backoff => self.backoff.next_delay(),
                Wait::AtLeast(d) => self.backoff.next_delay().max(d),
                Wait::Slow => self.backoff.slow(),
            };
            if self.session_closed {
                error!(error = %error, retry_in = ?delay, "Navixy session closed and not renewable; retrying slowly.");
            } else {
                warn!(error = %error, retry_in = ?delay, "Navixy connection lost; reconnecting.");
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = stopped(&mut self.stop) => return,
            }
        }
    }

    /// One attempt: hash, tracker list, connect, subscribe, stream until it ends.
    async fn attempt(&mut self) -> Outcome {
        let hash = match self.hash.clone() {
            Some(hash) => hash,
            None => match self.obtain_hash().await {
                Ok(hash) => hash,
                Err(outcome) => return outcome,
            },
        };
        let mut refresh_in = self.config.tracker_refresh;
        match self.rest.tracker_list(&hash).await {
            Ok(list) => {
                info!(trackers = list.len(), "Tracker list loaded.");
                self.listed = list.clone();
                if self.tx.send(SourceEvent::Trackers(list)).await.is_err() {
                    return Outcome::Stopped;
                }
            }
            // An expired session hash: get a new one on the next attempt.
            Err(e) if e.is_auth() && self.can_login() => {
                self.hash = None;
                return retry_after_rest(e);
            }
            Err(e) => {
                // Try again soon rather than at the next periodic refresh.
                let soon = e
                    .retry_after()
                    .unwrap_or_default()
                    .max(self.config.max_backoff);
                refresh_in = refresh_in.min(soon);
                warn!(error = %e, retry_in = ?refresh_in, "Tracker list unavailable; keeping the previous one.");
            }
        }
        let mut conn = match client::connect(&self.url, self.options.connection).await {
            Ok(conn) => conn,
            Err(e) => {
                return Outcome::Retry {
                    working: false,
                    wait: Wait::Backoff,
                    error: e.to_string(),
                };
            }
        };
        let ids: Vec<TrackerId> = self.listed.iter().map(|t| t.id).collect();
        let (message, warnings) = subscribe_message(&self.config, hash.expose(), &ids);
        for warning in warnings {
            warn!("source.navixy: {warning}");
        }
        if let Err(e) = conn.send(&message).await {
            return self.failed(e, false);
        }
        debug!(heartbeat = ?conn.heartbeat(), "Subscribe sent.");
        let refresh = refresh_trackers(
            self.rest.clone(),
            hash,
            refresh_in,
            self.config.tracker_refresh,
            self.tx.clone(),
            Backoff::new(self.options.initial_backoff, self.config.max_backoff, 7),
        );
        tokio::select! {
            outcome = self.session(&mut conn) => {
                if matches!(outcome, Outcome::Stopped) {
                    let _ = tokio::time::timeout(self.options.close_timeout, conn.close()).await;
                }
                outcome
            }
            () = refresh => Outcome::Stopped,
        }
    }

    /// `user/auth` with the configured login, or the configured hash.
    async fn obtain_hash(&mut self) -> Result<Secret, Outcome> {
        let (Some(login), Some(password)) = (&self.config.login, &self.config.password) else {
            let hash = self.config.hash.clone().unwrap_or_default();
            self.hash = Some(hash.clone());
            return Ok(hash);
        };
        match self.rest.auth(login, password).await {
            Ok(hash) => {
                info!(login = %login, "Authenticated with Navixy.");
                self.hash = Some(hash.clone());
                Ok(hash)
            }
            Err(e) => {
                // Refused outright (not a network error) after a logout: the session
                // cannot be renewed until someone fixes the login.
                if self.logged_out && matches!(e, RestError::Navixy { .. }) {
                    self.session_closed = true;
                }
                Err(retry_after_rest(e))
            }
        }
    }

    /// Streams one connection until it fails or the source stops.
    async fn session(&mut self, conn: &mut Connection<LiveStream>) -> Outcome {
        let mut working = false;
        loop {
            let incoming = tokio::select! {
                incoming = conn.next() => incoming,
                () = stopped(&mut self.stop) => return Outcome::Stopped,
            };
            let incoming = match incoming {
                Ok(incoming) => incoming,
                Err(e) => return self.failed(e, working),
            };
            match incoming {
                Incoming::Data(text) => {
                    let at = self.clock.now();
                    self.health.bump_frames();
                    self.record(at, &text);
                    if !working {
                        // Data proves the subscription, answered or not.
                        working = true;
                        self.working();
                    }
                    let event = SourceEvent::Frame {
                        received_at: at,
                        text: text.as_str().to_owned(),
                    };
                    if self.tx.send(event).await.is_err() {
                        return Outcome::Stopped;
                    }
                }
                Incoming::Control { frame, text } => {
                    let at = self.clock.now();
                    self.health.bump_frames();
                    self.record(at, &text);
                    match frame {
                        Frame::Response(response) => {
                            if self.apply_response(&response)
                                && self
                                    .tx
                                    .send(SourceEvent::Trackers(self.listed.clone()))
                                    .await
                                    .is_err()
                            {
                                return Outcome::Stopped;
                            }
                            let subscribe = response.action.as_deref().is_none_or(|a| {
                                a.ends_with("subscribe") && !a.ends_with("unsubscribe")
                            });
                            if subscribe && !working {
                                working = true;
                                self.working();
                            }
                        }
                        Frame::Error(frame) => {
                            let error = ClientError::refused(&frame);
                            let about_subscribe = frame
                                .action
                                .as_deref()
                                .is_none_or(|a| a.contains("subscribe"));
                            if about_subscribe || error.is_auth() {
                                return self.failed(error, working);
                            }
                            warn!(error = %error, "Navixy answered with an error; the subscription goes on.");
                        }
                        Frame::Logout { reason } => {
                            return self.failed(ClientError::Logout { reason }, working);
                        }
                        other => debug!(frame = ?other, "Control frame ignored."),
                    }
                }
                Incoming::Skipped { .. } => self.health.bump_skipped(),
            }
        }
    }

    /// A subscription works: clear the failure state and tell the watchdog.
    fn working(&mut self) {
        info!(url = %crate::navixy::client::shown_url(self.url.as_str()), "Navixy subscription working.");
        self.logged_out = false;
        self.session_closed = false;
        self.backoff.reset();
        self.health.set_session_closed(false);
        self.health.set_connected(true, self.clock.now());
        self.link.send_replace(Link::Working);
    }

    /// Decides what an ended connection means for the session and the next delay.
    fn failed(&mut self, error: ClientError, working: bool) -> Outcome {
        let wait = match &error {
            ClientError::Logout { .. } => {
                self.logged_out = true;
                if self.can_login() {
                    self.hash = None;
                    Wait::Backoff
                } else {
                    self.session_closed = true;
                    Wait::Slow
                }
            }
            ClientError::Refused { code, .. } if code.is_auth() => {
                if self.can_login() {
                    self.hash = None;
                } else if self.logged_out {
                    self.session_closed = true;
                }
                Wait::Backoff
            }
            _ => Wait::Backoff,
        };
        Outcome::Retry {
            working,
            wait,
            error: error.to_string(),
        }
    }

    /// Keeps per-tracker statuses; logs blocked trackers, and unknown ones once each.
    /// Returns whether the statuses changed whether a listed tracker is blocked (a block
    /// or unblock between `tracker/list` and the subscription): the list is then sent again.
    fn apply_response(&mut self, response: &SubscribeResponse) -> bool {
        let mut statuses = SubscriptionStatuses::new();
        let mut blocked = Vec::new();
        for (event, status) in &response.data {
            if status.success == Some(false) {
                warn!(event = %event, "Navixy did not accept the subscription to this event.");
            }
            let mut by_id = BTreeMap::new();
            for (id, s) in &status.value {
                let Ok(id) = id.parse::<TrackerId>() else {
                    continue;
                };
                let s = TrackerStatus::parse(s);
                match &s {
                    TrackerStatus::Blocked => blocked.push(id),
                    TrackerStatus::Unknown | TrackerStatus::Disallowed
                        if self.reported.insert(id) =>
                    {
                        warn!(
                            tracker_id = id,
                            status = s.as_str(),
                            event = %event,
                            "Navixy does not stream this tracker to this account (check source.navixy.trackers)."
                        );
                    }
                    _ => {}
                }
                by_id.insert(id, s);
            }
            statuses.insert(event.clone(), by_id);
        }
        blocked.sort_unstable();
        blocked.dedup();
        if !blocked.is_empty() {
            info!(
                count = blocked.len(),
                trackers = ?&blocked[..blocked.len().min(20)],
                "Blocked trackers: no states until they are unblocked."
            );
        }
        let changed = amend_blocked(&mut self.listed, &statuses);
        self.health.set_subscriptions(statuses);
        changed
    }

    fn record(&mut self, at: DateTime<Utc>, text: &str) {
        let Some(recorder) = &mut self.recorder else {
            return;
        };
        if let Err(e) = recorder.record(at, text)
            && !self.record_failed
        {
            error!(error = %e, "Recording failed; frames are still processed.");
            self.record_failed = true;
        }
    }
}

/// Sets each listed tracker's `blocked` to what the subscription's statuses say of it
/// (`blocked` or `normal`; other statuses say nothing); true if any changed.
fn amend_blocked(listed: &mut [TrackerInfo], statuses: &SubscriptionStatuses) -> bool {
    let mut changed = false;
    for info in listed {
        let said = statuses
            .values()
            .find_map(|by_id| match by_id.get(&info.id) {
                Some(TrackerStatus::Blocked) => Some(true),
                Some(TrackerStatus::Normal) => Some(false),
                _ => None,
            });
        if said.is_some() && said != info.blocked {
            info.blocked = said;
            changed = true;
        }
    }
    changed
}

fn retry_after_rest(e: RestError) -> Outcome {
    let wait = match e.retry_after() {
        Some(d) => Wait::AtLeast(d),
        None => Wait::Backoff,
    };
    Outcome::Retry {
        working: false,
        wait,
        error: e.to_string(),
    }
}

/// Completes when the stop flag is set (never if its sender is gone without setting it).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Refreshes the tracker list after `first`, then every `every`, while a connection
/// lives; returns only when the engine is gone. Failures are retried with a backoff that
/// honours `Retry-After`.
async fn refresh_trackers(
    rest: RestClient,
    hash: Secret,
    first: Duration,
    every: Duration,
    tx: mpsc::Sender<SourceEvent>,
    mut backoff: Backoff,
) {
    let every = every.max(Duration::from_millis(100));
    let mut delay = first.max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(delay).await;
        match rest.tracker_list(&hash).await {
            Ok(list) => {
                debug!(trackers = list.len(), "Tracker list refreshed.");
                if tx.send(SourceEvent::Trackers(list)).await.is_err() {
                    return;
                }
                backoff.reset();
                delay = every;
            }
            Err(e) => {
                delay = backoff
                    .next_delay()
                    .max(e.retry_after().unwrap_or_default())
                    .min(every);
                warn!(error = %e, retry_in = ?delay, "Tracker list refresh failed; keeping the previous one.");
            }
        }
    }
}

/// Raises and resolves the source's engine alerts from the link state.
struct EngineAlerts {
    clock: Arc<dyn Clock>,
    tx: mpsc::Sender<SourceEvent>,
    health: Arc<SourceHealth>,
    down_after: Duration,
    /// `starts_at` of the firing alerts.
    session_closed_since: Option<DateTime<Utc>>,
    down_since: Option<DateTime<Utc>>,
}

impl EngineAlerts {
    /// Runs until the engine or the source is gone.
    async fn watch(mut self, mut link: watch::Receiver<Link>) {
        loop {
            let current = *link.borrow_and_update();
            let sent = match current {
                Link::Working => self.resolve_all().await,
                Link::Down {
                    since,
                    session_closed,
                } => {
                    if session_closed
                        && self.session_closed_since.is_none()
                        && !self.fire(SESSION_CLOSED_ALERT).await
                    {
                        return;
                    }
                    if self.down_since.is_none() {
                        tokio::select! {
                            () = tokio::time::sleep_until(since + self.down_after) => {
                                self.fire(SOURCE_DOWN_ALERT).await
                            }
                            changed = link.changed() => {
                                if changed.is_err() {
                                    return;
                                }
                                continue;
                            }
                        }
                    } else {
                        true
                    }
                }
            };
            if !sent || link.changed().await.is_err() {
                return;
            }
        }
    }

    /// Sends a firing transition; false if the engine is gone.
    async fn fire(&mut self, rule: &'static str) -> bool {
        let now = self.clock.now();
        match rule {
            SESSION_CLOSED_ALERT => self.session_closed_since = Some(now),
            _ => self.down_since = Some(now),
        }
        error!(alert = rule, "Engine alert firing.");
        let transition = self.transition(rule, AlertStatus::Firing, now, now);
        self.tx
            .send(SourceEvent::Alert(Box::new(transition)))
            .await
            .is_ok()
    }

    async fn resolve_all(&mut self) -> bool {
        let now = self.clock.now();
        for (rule, since) in [
            (SESSION_CLOSED_ALERT, self.session_closed_since.take()),
            (SOURCE_DOWN_ALERT, self.down_since.take()),
        ] {
            if let Some(starts_at) = since {
                info!(alert = rule, "Engine alert resolved.");
                let transition = self.transition(rule, AlertStatus::Resolved, starts_at, now);
                if self
                    .tx
                    .send(SourceEvent::Alert(Box::new(transition)))
                    .await
                    .is_err()
                {
                    return false;
                }
            }
        }
        true
    }

    fn transition(
        &self,
        rule: &'static str,
        status: AlertStatus,
        starts_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> AlertTransition {
        let last_error = self.health.last_error().unwrap_or_else(|| "none".into());
        let (summary, description) = match rule {
            SESSION_CLOSED_ALERT => (
                "Navixy closed the session and it could not be renewed".to_string(),
                format!(
                    "A logout event ended the session. Without source.navixy.login and password the source cannot sign in again: replace the hash or set them. Retrying slowly. Last error: {last_error}"
                ),
            ),
            _ => (
                format!(
                    "No working Navixy subscription for {}",
                    humanize(self.down_after)
                ),
                format!(
                    "No frames from Navixy: alerts based on live data cannot fire. Last error: {last_error}"
                ),
            ),
        };
        AlertTransition {
            fingerprint: Fingerprint::new(rule, None, None),
            rule: Arc::from(rule),
            status,
            severity: Severity::Critical,
            tracker: None,
            key: None,
            labels: BTreeMap::from([("source".to_string(), "navixy".to_string())]),
            annotations: BTreeMap::from([
                ("summary".to_string(), summary),
                ("description".to_string(), description),
            ]),
            value: None,
            starts_at,
            ends_at: (status == AlertStatus::Resolved).then_some(now),
            at: now,
            location: None,
            state: serde_json::Map::new(),
            channels: None,
        }
    }
}

/// `2m`, `90s`, `1h30m`: durations as the config writes them.
fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, 0) => format!("{}ms", d.as_millis()),
        (0, 0, sec) => format!("{sec}s"),
        (0, m, 0) => format!("{m}m"),
        (h, 0, 0) => format!("{h}h"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use chrono::TimeZone;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 1);
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        let bases = [1u64, 2, 4, 8, 16, 32, 60, 60, 60, 60];
        for (d, base) in delays.iter().zip(bases) {
            let base = Duration::from_secs(base);
            assert!(
                *d >= base / 2 && *d <= base,
                "{d:?} not in [{:?}, {base:?}]",
                base / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
        let slow = b.slow();
        assert!(slow >= Duration::from_secs(30) && slow <= Duration::from_secs(60));
        // Never zero, even when configured so: no tight loop.
        let mut z = Backoff::new(Duration::ZERO, Duration::ZERO, 1);
        assert!(z.next_delay() >= Duration::from_micros(500));
    }

    #[test]
    fn durations_read_like_the_config() {
        assert_eq!(humanize(Duration::from_secs(120)), "2m");
        assert_eq!(humanize(Duration::from_secs(90)), "1m30s");
        assert_eq!(humanize(Duration::from_secs(5400)), "1h30m");
        assert_eq!(humanize(Duration::from_millis(300)), "300ms");
    }

    fn alerts(
        clock: &ManualClock,
        down_after: Duration,
    ) -> (EngineAlerts, mpsc::Receiver<SourceEvent>) {
        let (tx, rx) = mpsc::channel(16);
        let alerts = EngineAlerts {
            clock: Arc::new(clock.clone()),
            tx,
            health: Arc::new(SourceHealth::new(clock.now())),
            down_after,
            session_closed_since: None,
            down_since: None,
        };
        (alerts, rx)
    }

    fn alert(event: Option<SourceEvent>) -> AlertTransition {
        match event {
            Some(SourceEvent::Alert(t)) => *t,
            other => panic!("expected an alert, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn source_down_fires_after_the_delay_and_resolves_when_working() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap();
        let clock = ManualClock::new(t0);
        let (alerts, mut rx) = alerts(&clock, Duration::from_secs(120));
        let start = Instant::now();
        let (link, link_rx) = watch::channel(Link::Down {
            since: start,
            session_closed: false,
        });
        tokio::spawn(alerts.watch(link_rx));

        // Attempts keep failing (the `since` stays the first failure's).
        tokio::time::sleep(Duration::from_secs(60)).await;
        link.send_replace(Link::Down {
            since: start,
            session_closed: false,
        });
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert!(rx.try_recv().is_err(), "nothing before source_down_after");
        clock.set(t0 + chrono::Duration::seconds(120));
        let fired = alert(rx.recv().await);
        assert_eq!(start.elapsed(), Duration::from_secs(120));
        assert_eq!(fired.rule.as_ref(), SOURCE_DOWN_ALERT);
        assert_eq!(fired.status, AlertStatus::Firing);
        assert_eq!(fired.severity, Severity::Critical);
        assert_eq!(fired.tracker, None);
        assert_eq!(
            fired.fingerprint,
            Fingerprint::new(SOURCE_DOWN_ALERT, None, None)
        );
        assert_eq!(
            fired.annotations["summary"],
            "No working Navixy subscription for 2m"
        );

        clock.set(t0 + chrono::Duration::seconds(200));
        link.send_replace(Link::Working);
        let resolved = alert(rx.recv().await);
        assert_eq!(resolved.status, AlertStatus::Resolved);
        assert_eq!(resolved.starts_at, t0 + chrono::Duration::seconds(120));
        assert_eq!(resolved.ends_at, Some(t0 + chrono::Duration::seconds(200)));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_outage_raises_nothing() {
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap());
        let (alerts, mut rx) = alerts(&clock, Duration::from_secs(120));
        let (link, link_rx) = watch::channel(Link::Working);
        tokio::spawn(alerts.watch(link_rx));
        tokio::time::sleep(Duration::from_secs(10)).await;
        link.send_replace(Link::Down {
            since: Instant::now(),
            session_closed: false,
        });
        tokio::time::sleep(Duration::from_secs(119)).await;
        link.send_replace(Link::Working);
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn session_closed_fires_at_once_and_resolves_with_source_down() {
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap());
        let (alerts, mut rx) = alerts(&clock, Duration::from_secs(120));
        let (link, link_rx) = watch::channel(Link::Working);
        tokio::spawn(alerts.watch(link_rx));
        tokio::task::yield_now().await;
        link.send_replace(Link::Down {
            since: Instant::now(),
            session_closed: true,
        });
        let fired = alert(rx.recv().await);
        assert_eq!(fired.rule.as_ref(), SESSION_CLOSED_ALERT);
        assert_eq!(
            fired.fingerprint,
            Fingerprint::new("navixy_session_closed", None, None)
        );
        let down = alert(rx.recv().await);
        assert_eq!(down.rule.as_ref(), SOURCE_DOWN_ALERT);
        link.send_replace(Link::Working);
        let mut resolved: Vec<String> = vec![alert(rx.recv().await), alert(rx.recv().await)]
            .into_iter()
            .map(|t| {
                assert_eq!(t.status, AlertStatus::Resolved);
                t.rule.to_string()
            })
            .collect();
        resolved.sort();
        assert_eq!(resolved, [SESSION_CLOSED_ALERT, SOURCE_DOWN_ALERT]);
    }

    #[test]
    fn the_subscription_amends_what_the_list_said_of_blocks() {
        let listed = |id, blocked| TrackerInfo {
            id,
            blocked,
            ..TrackerInfo::default()
        };
        let mut list = vec![
            listed(1, Some(false)),
            listed(2, Some(true)),
            listed(3, None),
            listed(4, Some(false)),
        ];
        let statuses = BTreeMap::from([(
            "state_batch".to_string(),
            BTreeMap::from([
                (1, TrackerStatus::Blocked),
                (2, TrackerStatus::Normal),
                (3, TrackerStatus::Unknown),
            ]),
        )]);
        assert!(amend_blocked(&mut list, &statuses));
        let blocked: Vec<_> = list.iter().map(|t| t.blocked).collect();
        // 3: `unknown` says nothing; 4: not in the answer.
        assert_eq!(blocked, [Some(true), Some(false), None, Some(false)]);
        // Said again, nothing changes: the list is not sent again.
        assert!(!amend_blocked(&mut list, &statuses));
    }

    #[test]
    fn health_reports_blocked_trackers_and_snapshots() {
        let health = SourceHealth::new(Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap());
        let statuses = SubscriptionStatuses::from([
            (
                "state_batch".to_string(),
                BTreeMap::from([(1, TrackerStatus::Normal), (2, TrackerStatus::Blocked)]),
            ),
            (
                "readings_batch".to_string(),
                BTreeMap::from([
                    (2, TrackerStatus::Blocked),
                    (3, TrackerStatus::parse("weird")),
                ]),
            ),
        ]);
        health.set_subscriptions(statuses);
        assert_eq!(health.blocked_trackers(), vec![2]);
        let json = serde_json::to_value(health.snapshot()).unwrap();
        assert_eq!(json["subscriptions"]["readings_batch"]["3"], "weird");
        assert_eq!(json["connected"], false);
    }
}
