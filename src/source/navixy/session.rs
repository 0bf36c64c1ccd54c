//! The session runner: one attempt after another, each failure waited out with a
//! backoff, until shutdown.
//!
//! One attempt is: a hash (the configured one, or `user/auth` with login + password), the
//! tracker list (`tracker/list`, sent on as [`SourceEvent::Trackers`] before any frame of
//! the new connection), the WebSocket, the Atmosphere line, `subscribe`. The subscription
//! *works* once Navixy answers it (or sends data). Any close, error or silence ends the
//! attempt; the next one waits an exponential backoff with jitter capped at
//! `max_backoff`, and starts over from the hash. After a `logout` the source
//! re-authenticates when it has login + password; without them the engine alert
//! `navixy_session_closed` fires and the source retries slowly. No working subscription
//! for `source_down_after` fires `navixy_source_down` (see `engine_alerts`).

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};
use url::Url;

use super::context::{ContextRefresh, fetch_once, refresh_context};
use super::engine_alerts::{EngineAlerts, Link};
use super::health::{SourceHealth, SubscriptionStatuses, TrackerStatus};
use super::trackers::{amend_blocked, refresh_trackers};
use crate::backoff::Backoff;
use crate::clock::Clock;
use crate::config::{NavixyConfig, Secret, SimulatorConfig};
use crate::navixy::client::{
    self, ClientError, Connection, ConnectionOptions, Incoming, LiveStream,
};
use crate::navixy::messages::{Frame, SourceIx, SubscribeResponse, TrackerId, TrackerInfo};
use crate::navixy::requests::subscribe_message;
use crate::navixy::rest::{RestClient, RestError};
use crate::navixy::simulator::{Simulator, SimulatorHandle, SimulatorOptions};
use crate::source::SourceEvent;
use crate::source::recording::Recorder;
use crate::telemetry;

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

/// The live Navixy source. Build it, keep [`NavixySource::health`], then
/// [`NavixySource::run`] it.
pub struct NavixySource {
    /// Its index among the configured sources: every event it sends carries it.
    index: SourceIx,
    /// Its name: the `source` label of its engine alerts and metrics.
    name: Arc<str>,
    config: NavixyConfig,
    clock: Arc<dyn Clock>,
    health: Arc<SourceHealth>,
    recorder: Option<Recorder>,
    options: SourceOptions,
    url: Url,
    /// Navixy's context for the rules, when asked for.
    context: Option<ContextRefresh>,
}

impl NavixySource {
    /// Checks the URLs; connects nothing yet.
    pub fn new(config: NavixyConfig, clock: Arc<dyn Clock>) -> Result<NavixySource, SourceError> {
        let url = client::subscription_url(&config.api_url, config.ws_url.as_deref())?;
        let options = SourceOptions::for_config(&config);
        let health = Arc::new(SourceHealth::new(clock.now()));
        Ok(NavixySource {
            index: 0,
            name: Arc::from(crate::alert::DEFAULT_SOURCE),
            config,
            clock,
            health,
            recorder: None,
            options,
            url,
            context: None,
        })
    }

    /// Also fetches Navixy's context (zones, groups, tags, drivers) into `refresh.shared`:
    /// before each session's subscription until it loads once, then every `refresh.every`.
    pub fn with_context(mut self, refresh: ContextRefresh) -> NavixySource {
        self.context = Some(refresh);
        self
    }

    /// Names the source and gives its index among the configured ones (`sources:`); the
    /// default is the shorthand's: index 0, named `navixy`. Call before
    /// [`NavixySource::health`]: the health is renewed under the name.
    pub fn with_source(mut self, index: SourceIx, name: &str) -> NavixySource {
        self.index = index;
        self.name = Arc::from(name);
        self.health = Arc::new(SourceHealth::named(name, self.clock.now()));
        self
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

    /// The source's name (`sources:`).
    pub fn name(&self) -> &str {
        &self.name
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
        metrics::gauge!(telemetry::SOURCE_UP, "source" => self.name.to_string()).set(0.0);
        let started = Instant::now();
        let (link_tx, link_rx) = watch::channel(Link::Down {
            since: started,
            session_closed: false,
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let alerts = EngineAlerts::new(
            self.name.clone(),
            self.clock.clone(),
            tx.clone(),
            self.health.clone(),
            self.config.source_down_after,
        );
        let seed = self.clock.now().timestamp_nanos_opt().unwrap_or_default() as u64;
        let runner = Runner {
            index: self.index,
            name: self.name.clone(),
            backoff: Backoff::new(self.options.initial_backoff, self.config.max_backoff, seed),
            config: self.config,
            clock: self.clock,
            health: self.health,
            recorder: self.recorder,
            record_failed: false,
            options: self.options,
            url: self.url,
            context: self.context,
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

/// How one attempt (hash, list, connect, subscribe, stream) ended.
enum AttemptOutcome {
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
    index: SourceIx,
    name: Arc<str>,
    config: NavixyConfig,
    clock: Arc<dyn Clock>,
    health: Arc<SourceHealth>,
    recorder: Option<Recorder>,
    record_failed: bool,
    options: SourceOptions,
    url: Url,
    context: Option<ContextRefresh>,
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
                AttemptOutcome::Stopped => return,
                AttemptOutcome::Retry {
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
                Wait::AtLeast(d) => self.backoff.next_delay_at_least(Some(d)),
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
    async fn attempt(&mut self) -> AttemptOutcome {
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
                if self
                    .tx
                    .send(SourceEvent::Trackers(self.index, list))
                    .await
                    .is_err()
                {
                    return AttemptOutcome::Stopped;
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
        // Before the subscription, so that the first evaluation sees Navixy's zones; a
        // failure here does not hold the stream back (the refresher retries).
        let mut context_in = None;
        if let Some(context) = &self.context {
            context_in = Some(context.every);
            if !context.shared.is_loaded()
                && fetch_once(
                    &self.name,
                    &self.rest,
                    &hash,
                    &context.shared,
                    self.clock.as_ref(),
                )
                .await
                .is_err()
            {
                context_in = Some(self.options.initial_backoff);
            }
        }
        let mut conn = match client::connect(&self.url, self.options.connection).await {
            Ok(conn) => conn,
            Err(e) => {
                return AttemptOutcome::Retry {
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
        let context = match (&self.context, context_in) {
            (Some(context), Some(first)) => Some(refresh_context(
                self.name.clone(),
                self.rest.clone(),
                hash.clone(),
                context.clone(),
                self.clock.clone(),
                first,
                Backoff::new(self.options.initial_backoff, context.every, 11),
            )),
            _ => None,
        };
        let refresh = refresh_trackers(
            self.index,
            self.rest.clone(),
            hash,
            refresh_in,
            self.config.tracker_refresh,
            self.tx.clone(),
            Backoff::new(self.options.initial_backoff, self.config.max_backoff, 7),
        );
        let context = async move {
            match context {
                Some(context) => context.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = context => AttemptOutcome::Stopped,
            outcome = self.session(&mut conn) => {
                if matches!(outcome, AttemptOutcome::Stopped) {
                    let _ = tokio::time::timeout(self.options.close_timeout, conn.close()).await;
                }
                outcome
            }
            () = refresh => AttemptOutcome::Stopped,
        }
    }

    /// `user/auth` with the configured login, or the configured hash.
    async fn obtain_hash(&mut self) -> Result<Secret, AttemptOutcome> {
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
    async fn session(&mut self, conn: &mut Connection<LiveStream>) -> AttemptOutcome {
        let mut working = false;
        loop {
            let incoming = tokio::select! {
                incoming = conn.next() => incoming,
                () = stopped(&mut self.stop) => return AttemptOutcome::Stopped,
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
                    let event = SourceEvent::RawFrame {
                        source: self.index,
                        received_at: at,
                        text,
                    };
                    if self.tx.send(event).await.is_err() {
                        return AttemptOutcome::Stopped;
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
                                    .send(SourceEvent::Trackers(self.index, self.listed.clone()))
                                    .await
                                    .is_err()
                            {
                                return AttemptOutcome::Stopped;
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
    fn failed(&mut self, error: ClientError, working: bool) -> AttemptOutcome {
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
        AttemptOutcome::Retry {
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

fn retry_after_rest(e: RestError) -> AttemptOutcome {
    let wait = match e.retry_after() {
        Some(d) => Wait::AtLeast(d),
        None => Wait::Backoff,
    };
    AttemptOutcome::Retry {
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
