//! The simulator's HTTP side: REST routes, the WebSocket upgrade, and one task per
//! WebSocket connection that answers subscribes and streams the fleet.
//!
//! Each connection keeps its own cursor into the fleet (the simulated second and the
//! lifecycle record it sent last), so every client gets a snapshot right after each
//! subscribe and then only what changed, every `rate_limit` of simulated time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tracing::{debug, info};

use super::context::SimContext;
use super::fleet::{Fleet, LifecycleRecord};
use super::frames::{self, Shape, WireItem};
use super::{Hook, Shared};
use crate::config::{StateFormat, parse_duration};
use crate::navixy::messages::{
    IotTrackerValues, LifecycleItem, ReadingsItem, SourceState, TrackerId,
};
use crate::navixy::requests::{ClientMessage, SubscribeRequest, Target};

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v2/user/auth", post(auth).get(auth))
        .route("/v2/tracker/list", post(tracker_list).get(tracker_list))
        .route("/v2/zone/list", post(zone_list).get(zone_list))
        .route(
            "/v2/zone/point/list",
            post(zone_point_list).get(zone_point_list),
        )
        .route(
            "/v2/tracker/group/list",
            context_list(SimContext::group_list),
        )
        .route("/v2/tag/list", context_list(SimContext::tag_list))
        .route("/v2/employee/list", context_list(SimContext::employee_list))
        .route(
            "/v2/tracker/employee/read",
            post(tracker_employee_read).get(tracker_employee_read),
        )
        .route("/v2/event/subscription", get(subscription))
        .fallback(unknown_call)
        .with_state(shared)
}

/// Navixy's descriptions for the codes the simulator sends.
fn description(code: i64) -> &'static str {
    match code {
        3 => "Wrong hash",
        4 => "User or API key not found or session ended",
        7 => "Invalid parameters",
        11 => "Access denied",
        15 => "Too many requests",
        102 => "Wrong login or password",
        201 => "Not found in the database",
        208 => "Device blocked",
        230 => "Not supported for this entity type",
        _ => "Error",
    }
}

/// A Navixy REST error: the JSON body with its code, and a fitting HTTP status.
fn fail(code: i64) -> Response {
    let status = match code {
        3 | 4 | 11 | 102 => StatusCode::FORBIDDEN,
        15 => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::BAD_REQUEST,
    };
    let body = serde_json::json!({
        "success": false,
        "status": {"code": code, "description": description(code)}
    });
    (status, axum::Json(body)).into_response()
}

/// REST parameters from the query, a JSON or form body, and `Authorization: NVX <hash>`.
fn params(headers: &HeaderMap, uri: &Uri, body: &[u8]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(query) = uri.query() {
        out.extend(url::form_urlencoded::parse(query.as_bytes()).into_owned());
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"))
        || body.trim_ascii_start().starts_with(b"{");
    if json {
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) {
            for (k, v) in map {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                out.insert(k, v);
            }
        }
    } else {
        out.extend(url::form_urlencoded::parse(body).into_owned());
    }
    if !out.contains_key("hash") {
        let nvx = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("NVX "));
        if let Some(hash) = nvx {
            out.insert("hash".into(), hash.trim().to_string());
        }
    }
    out
}

async fn auth(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let p = params(&headers, &uri, &body);
    let (Some(login), Some(password)) = (p.get("login"), p.get("password")) else {
        return fail(7);
    };
    if *login != shared.options.login || *password != *shared.password.lock() {
        return fail(102);
    }
    let hash = {
        let mut rng = shared.session_rng.lock();
        super::fleet::hash_from(rng.u64(..), 0x5E55)
    };
    {
        let mut sessions = shared.sessions.lock();
        if sessions.len() >= 1000 {
            sessions.remove(0);
        }
        sessions.push(hash.clone());
    }
    shared.counters.auths.fetch_add(1, Ordering::Relaxed);
    axum::Json(serde_json::json!({"success": true, "hash": hash})).into_response()
}

async fn tracker_list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let p = params(&headers, &uri, &body);
    let Some(hash) = p.get("hash") else {
        return fail(3);
    };
    if let Err((code, _)) = shared.check_hash(hash) {
        return fail(code);
    }
    let list: Vec<serde_json::Value> = {
        let fleet = shared.fleet.lock();
        fleet
            .vehicles
            .iter()
            .map(|v| {
                serde_json::json!({
                    "id": v.tracker_id,
                    "label": v.label,
                    "group_id": v.group_id,
                    "tag_bindings": shared.context.lock().tag_bindings(v.tracker_id),
                    "clone": false,
                    "source": {
                        "id": v.source_id,
                        "device_id": v.device_id,
                        "model": "navixy_simulator",
                        "blocked": v.blocked,
                        "tariff_id": 1,
                        "phone": null,
                        "status_listing_id": null,
                        "creation_date": "2024-03-01 10:00:00",
                        "tariff_end_date": null
                    }
                })
            })
            .collect()
    };
    shared
        .counters
        .tracker_lists
        .fetch_add(1, Ordering::Relaxed);
    axum::Json(serde_json::json!({"success": true, "list": list})).into_response()
}

/// The parameters of a REST call whose hash is accepted, or Navixy's refusal code.
fn authorized(
    shared: &Shared,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
) -> Result<BTreeMap<String, String>, i64> {
    let p = params(headers, uri, body);
    let Some(hash) = p.get("hash") else {
        return Err(3);
    };
    shared.check_hash(hash).map_err(|(code, _)| code)?;
    Ok(p)
}

/// A list the simulated account answers from its context alone, behind the hash check
/// (GET or POST, parameters in the query or the body, as Navixy takes them).
fn context_list(list: fn(&SimContext) -> serde_json::Value) -> MethodRouter<Arc<Shared>> {
    let answer = move |State(shared): State<Arc<Shared>>,
                       headers: HeaderMap,
                       uri: Uri,
                       body: Bytes| async move {
        match authorized(&shared, &headers, &uri, &body) {
            Ok(_) => axum::Json(list(&shared.context.lock())).into_response(),
            Err(code) => fail(code),
        }
    };
    post(answer).get(answer)
}

async fn zone_list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    match authorized(&shared, &headers, &uri, &body) {
        Ok(p) => {
            if let Some(code) = *shared.context_failure.lock() {
                return fail(code);
            }
            let with_points = p.get("with_points").is_some_and(|v| v == "true");
            axum::Json(shared.context.lock().zone_list(with_points)).into_response()
        }
        Err(code) => fail(code),
    }
}

async fn zone_point_list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let p = match authorized(&shared, &headers, &uri, &body) {
        Ok(p) => p,
        Err(code) => return fail(code),
    };
    let Some(id) = p.get("zone_id").and_then(|v| v.parse::<i64>().ok()) else {
        return fail(7);
    };
    let context = shared.context.lock();
    let Some(zone) = context.zone(id) else {
        return fail(201);
    };
    match super::context::points_json(zone) {
        Some(points) => {
            axum::Json(serde_json::json!({"success": true, "list": points})).into_response()
        }
        None => fail(230),
    }
}

async fn tracker_employee_read(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let p = match authorized(&shared, &headers, &uri, &body) {
        Ok(p) => p,
        Err(code) => return fail(code),
    };
    let Some(id) = p
        .get("tracker_id")
        .and_then(|v| v.parse::<TrackerId>().ok())
    else {
        return fail(7);
    };
    if shared.fleet.lock().by_tracker(id).is_none() {
        return fail(201);
    }
    let employee = shared.context.lock().tracker_employee(id);
    axum::Json(employee).into_response()
}

async fn unknown_call(uri: Uri) -> Response {
    let body = serde_json::json!({
        "success": false,
        "status": {"code": 1, "description": format!("The simulator has no `{}`", uri.path())}
    });
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

/// Upgrades to a WebSocket by hand (hyper's upgrade + tokio-tungstenite), then streams.
async fn subscription(State(shared): State<Arc<Shared>>, mut request: Request) -> Response {
    let headers = request.headers();
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = headers.get(header::SEC_WEBSOCKET_KEY).cloned();
    let (true, Some(key)) = (upgrade, key) else {
        return (StatusCode::BAD_REQUEST, "expected a WebSocket upgrade").into_response();
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                Connection::new(ws, shared).run().await;
            }
            Err(e) => debug!(error = %e, "WebSocket upgrade failed."),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(key.as_bytes()),
        )
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// What one connection subscribed to, and how far it has been sent.
struct Subscription {
    iso: bool,
    state_batch: Option<(Target, StateFormat)>,
    readings_batch: Option<Target>,
    state: Option<(Vec<TrackerId>, StateFormat)>,
    iot_monitor: Option<Target>,
    /// Simulated time between two emissions: the smallest `rate_limit` asked.
    rate: Duration,
    /// The simulated second sent last: later changes are still to send.
    sent_s: i64,
    /// The next lifecycle record to send.
    lifecycle_seq: u64,
}

/// Counts a connection as open until dropped.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0
            .counters
            .open_connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

struct Connection<S> {
    ws: WebSocketStream<S>,
    shared: Arc<Shared>,
    subscription: Option<Subscription>,
    next_emit: Option<Instant>,
    /// `--chaos`: its own generator, and when to drop the connection next.
    chaos: Option<(fastrand::Rng, Instant)>,
    /// Cycles through the kinds of malformed frames.
    malformed_sent: usize,
}

/// Far enough to never fire, near enough not to overflow.
fn never() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    fn new(ws: WebSocketStream<S>, shared: Arc<Shared>) -> Self {
        let id = shared.counters.connections.fetch_add(1, Ordering::Relaxed) + 1;
        shared
            .counters
            .open_connections
            .fetch_add(1, Ordering::Relaxed);
        let chaos = shared.options.chaos.then(|| {
            let mut rng =
                fastrand::Rng::with_seed(shared.options.seed ^ id.wrapping_mul(0x9E37_79B9));
            let (lo, hi) = shared.options.chaos_drop_after;
            let drop_after = lo + hi.saturating_sub(lo).mul_f64(rng.f64());
            (rng, Instant::now() + drop_after)
        });
        Connection {
            ws,
            shared,
            subscription: None,
            next_emit: None,
            chaos,
            malformed_sent: 0,
        }
    }

    async fn run(mut self) {
        let _open = OpenGuard(self.shared.clone());
        let mut hooks = self.shared.hooks.subscribe();
        let mut shutdown = self.shared.shutdown.subscribe();
        let heartbeat = self.shared.options.heartbeat;
        let handshake = format!("{}|{}|X|", uuid::Uuid::new_v4(), heartbeat.as_millis());
        if self.ws.send(Message::text(handshake)).await.is_err() {
            return;
        }
        let mut beat = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let emit_at = self.next_emit.unwrap_or_else(never);
            let drop_at = self.chaos.as_ref().map_or_else(never, |c| c.1);
            let result = tokio::select! {
                read = self.ws.next() => match read {
                    Some(Ok(Message::Text(text))) => self.on_client_text(&text).await,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                    Some(Ok(_)) => Ok(()),
                },
                _ = beat.tick() => self.ws.send(Message::text("X")).await,
                () = tokio::time::sleep_until(emit_at), if self.next_emit.is_some() => self.emit(false).await,
                hook = hooks.recv() => match hook {
                    Ok(Hook::Drop) => return,
                    Ok(Hook::Logout) => {
                        self.subscription = None;
                        self.next_emit = None;
                        self.ws.send(Message::text(frames::logout())).await
                    }
                    Ok(Hook::Malformed(n)) => self.send_malformed(n).await,
                    Ok(Hook::Raw(text)) => self.ws.send(Message::text(text)).await,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Ok(()),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                () = async { let _ = shutdown.wait_for(|stop| *stop).await; } => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
                    return;
                }
                // Chaos: vanish without a close frame, as a broken network does.
                () = tokio::time::sleep_until(drop_at), if self.chaos.is_some() => {
                    info!("Chaos: dropping a connection without a close frame.");
                    return;
                }
            };
            if result.is_err() {
                return;
            }
        }
    }

    async fn on_client_text(
        &mut self,
        text: &str,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        if text.trim() == "X" {
            return Ok(());
        }
        let message: ClientMessage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(_) => {
                let error = frames::error("unknown", 7, description(7), &[]);
                return self.ws.send(Message::text(error)).await;
            }
        };
        match message {
            ClientMessage::Subscribe {
                hash,
                requests,
                iso_datetime,
            } => self.subscribe(&hash, requests, iso_datetime).await,
            ClientMessage::Unsubscribe {
                requests, events, ..
            } => {
                let mut names: Vec<String> = events;
                names.extend(requests.iter().map(|r| r.event().to_string()));
                if let Some(sub) = &mut self.subscription {
                    for name in &names {
                        match name.as_str() {
                            "state_batch" => sub.state_batch = None,
                            "readings_batch" => sub.readings_batch = None,
                            "state" => sub.state = None,
                            "iot_monitor" => sub.iot_monitor = None,
                            _ => {}
                        }
                    }
                }
                self.ws
                    .send(Message::text(frames::unsubscribe_response(&names)))
                    .await
            }
        }
    }

    async fn subscribe(
        &mut self,
        hash: &str,
        requests: Vec<SubscribeRequest>,
        iso: bool,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        let events: Vec<&str> = requests.iter().map(SubscribeRequest::event).collect();
        let refuse = *self.shared.refuse.lock();
        let refusal = match (refuse, self.shared.check_hash(hash)) {
            (Some(code), _) => Some(code),
            (None, Err((code, _))) => Some(code),
            (None, Ok(())) if requests.is_empty() => Some(7),
            (None, Ok(())) => None,
        };
        let mut sub = Subscription {
            iso,
            state_batch: None,
            readings_batch: None,
            state: None,
            iot_monitor: None,
            rate: Duration::from_secs(3600),
            sent_s: i64::MIN,
            lifecycle_seq: 0,
        };
        let mut bad_rate = false;
        for request in requests {
            let rate = match &request {
                SubscribeRequest::StateBatch { rate_limit, .. }
                | SubscribeRequest::ReadingsBatch { rate_limit, .. }
                | SubscribeRequest::IotMonitor { rate_limit, .. } => rate_limit.as_deref(),
                SubscribeRequest::State { .. } => None,
            };
            let rate = match rate.map(parse_duration) {
                None => Duration::from_secs(1),
                Some(Ok(d)) if !d.is_zero() => d,
                Some(_) => {
                    bad_rate = true;
                    Duration::from_secs(1)
                }
            };
            sub.rate = sub.rate.min(rate);
            match request {
                SubscribeRequest::StateBatch { target, format, .. } => {
                    sub.state_batch = Some((target, format))
                }
                SubscribeRequest::ReadingsBatch { target, .. } => sub.readings_batch = Some(target),
                SubscribeRequest::State { trackers, format } => {
                    sub.state = Some((trackers, format))
                }
                SubscribeRequest::IotMonitor { target, .. } => sub.iot_monitor = Some(target),
            }
        }
        let refusal = refusal.or(bad_rate.then_some(7));
        if let Some(code) = refusal {
            self.shared
                .counters
                .refused_subscriptions
                .fetch_add(1, Ordering::Relaxed);
            let error = frames::error("subscription/subscribe", code, description(code), &events);
            return self.ws.send(Message::text(error)).await;
        }
        let response = {
            let fleet = self.shared.fleet.lock();
            frames::subscribe_response(
                &statuses(&sub, &fleet),
                self.shared.options.documented_shapes,
            )
        };
        self.ws.send(Message::text(response)).await?;
        let period = self
            .shared
            .clock
            .real(sub.rate)
            .max(Duration::from_millis(10));
        self.subscription = Some(sub);
        self.shared
            .counters
            .subscriptions
            .fetch_add(1, Ordering::Relaxed);
        // The snapshot, as Navixy sends right after each subscribe.
        self.emit(true).await?;
        self.next_emit = Some(Instant::now() + period);
        Ok(())
    }

    /// Sends what changed since the last emission (everything for a snapshot).
    async fn emit(&mut self, snapshot: bool) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        let Some(sub) = &mut self.subscription else {
            self.next_emit = None;
            return Ok(());
        };
        let period = self
            .shared
            .clock
            .real(sub.rate)
            .max(Duration::from_millis(10));
        self.next_emit = Some(Instant::now() + period);
        let now_s = self.shared.clock.seconds();
        let out = {
            let mut fleet = self.shared.fleet.lock();
            fleet.advance_to(now_s);
            build_frames(sub, &fleet, snapshot, self.shared.options.documented_shapes)
        };
        for text in out {
            self.ws.feed(Message::text(text)).await?;
        }
        // Chaos: now and then a bad frame, as a flaky proxy or a buggy server sends.
        let (bad, binary) = match &mut self.chaos {
            Some((rng, _)) => (
                (rng.u32(0..25) == 0).then(|| rng.usize(..)),
                rng.u32(0..200) == 0,
            ),
            None => (None, false),
        };
        if let Some(n) = bad {
            let text = self.bad_frame(n);
            self.ws.feed(Message::text(text)).await?;
        }
        if binary {
            self.ws
                .feed(Message::binary(vec![0xde, 0xad, 0xbe, 0xef]))
                .await?;
        }
        self.ws.flush().await
    }

    fn bad_frame(&mut self, n: usize) -> String {
        let source_id = self
            .shared
            .fleet
            .lock()
            .vehicles
            .first()
            .map_or(1, |v| v.source_id);
        frames::malformed(n, source_id)
    }

    async fn send_malformed(
        &mut self,
        n: usize,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        for _ in 0..n {
            let bad = self.bad_frame(self.malformed_sent);
            self.malformed_sent += 1;
            self.ws.feed(Message::text(bad)).await?;
        }
        self.ws.flush().await
    }
}

/// Per event, per tracker id: `normal`, `blocked` (no states until unblocked), or
/// `unknown` (not in this account).
fn statuses(
    sub: &Subscription,
    fleet: &Fleet,
) -> BTreeMap<&'static str, BTreeMap<i64, &'static str>> {
    let by_target = |target: &Target| -> BTreeMap<i64, &'static str> {
        match target {
            Target::All => fleet
                .vehicles
                .iter()
                .map(|v| (v.tracker_id, if v.blocked { "blocked" } else { "normal" }))
                .collect(),
            Target::Selected { tracker_ids } => tracker_ids
                .iter()
                .map(|id| {
                    let status = match fleet.by_tracker(*id) {
                        Some(v) if v.blocked => "blocked",
                        Some(_) => "normal",
                        None => "unknown",
                    };
                    (*id, status)
                })
                .collect(),
        }
    };
    let mut out = BTreeMap::new();
    if let Some((target, _)) = &sub.state_batch {
        out.insert("state_batch", by_target(target));
    }
    if let Some(target) = &sub.readings_batch {
        out.insert("readings_batch", by_target(target));
    }
    if let Some((ids, _)) = &sub.state {
        out.insert(
            "state",
            by_target(&Target::Selected {
                tracker_ids: ids.clone(),
            }),
        );
    }
    if let Some(target) = &sub.iot_monitor {
        out.insert("iot_monitor", by_target(target));
    }
    out
}

/// The frames for one emission, moving the subscription's cursor forward.
fn build_frames(
    sub: &mut Subscription,
    fleet: &Fleet,
    snapshot: bool,
    documented: bool,
) -> Vec<String> {
    let since = if snapshot { i64::MIN } else { sub.sent_s };
    // A snapshot shows the current state; blocks before it are in the statuses.
    let records: Vec<LifecycleRecord> = if snapshot {
        Vec::new()
    } else {
        fleet.lifecycle_since(sub.lifecycle_seq).copied().collect()
    };
    sub.lifecycle_seq = fleet.lifecycle_end();
    sub.sent_s = fleet.now_s;
    let shape = Shape {
        iso: sub.iso,
        documented,
    };
    let user_time = documented.then(|| shape.time(fleet, fleet.now_s));
    let covered_lifecycle = |target: &Target| -> Vec<LifecycleItem> {
        records
            .iter()
            .filter(|r| {
                fleet
                    .vehicles
                    .get(r.index)
                    .is_some_and(|v| target.covers(v.tracker_id))
            })
            .map(|r| frames::lifecycle(r, fleet, shape))
            .collect()
    };
    // Lifecycle items ride in the first batch subscribed (or come as their own events).
    let lifecycle_target: Option<Target> = match (&sub.state_batch, &sub.readings_batch, &sub.state)
    {
        (Some((t, _)), _, _) => Some(t.clone()),
        (None, Some(t), _) => Some(t.clone()),
        (None, None, Some((ids, _))) => Some(Target::Selected {
            tracker_ids: ids.clone(),
        }),
        _ => None,
    };
    let lifecycle = lifecycle_target
        .as_ref()
        .map(covered_lifecycle)
        .unwrap_or_default();
    let mut lifecycle_sent = false;
    let mut out = Vec::new();

    if let Some((target, format)) = &sub.state_batch {
        let states: Vec<SourceState> = fleet
            .vehicles
            .iter()
            .filter(|v| target.covers(v.tracker_id) && !v.blocked && v.state_changed_s > since)
            .map(|v| frames::source_state(v, fleet, *format, shape))
            .collect();
        if documented {
            if !states.is_empty() {
                out.push(frames::event("state_batch", user_time, &states));
            }
        } else {
            let mut items: Vec<WireItem> = states
                .iter()
                .map(|state| WireItem::SourceStateEvent { state })
                .collect();
            items.extend(lifecycle.iter().map(WireItem::LifecycleEvent));
            lifecycle_sent = true;
            if !items.is_empty() {
                out.push(frames::event("state_batch", None, &items));
            }
        }
    }
    if let Some(target) = &sub.readings_batch {
        let readings: Vec<ReadingsItem> = fleet
            .vehicles
            .iter()
            .filter(|v| target.covers(v.tracker_id) && !v.blocked)
            .filter_map(|v| frames::readings(v, fleet, since, shape))
            .collect();
        // Readings items stay tagged in both shapes: the documented page gives no other.
        let mut items: Vec<WireItem> = readings.iter().map(WireItem::ReadingsEvent).collect();
        if !documented && !lifecycle_sent {
            items.extend(lifecycle.iter().map(WireItem::LifecycleEvent));
            lifecycle_sent = true;
        }
        if !items.is_empty() {
            out.push(frames::event("readings_batch", user_time, &items));
        }
    }
    if let Some((ids, format)) = &sub.state {
        for id in ids {
            if let Some(v) = fleet.by_tracker(*id)
                && !v.blocked
                && v.state_changed_s > since
            {
                let state = frames::source_state(v, fleet, *format, shape);
                out.push(frames::event("state", user_time, &state));
            }
        }
    }
    if !lifecycle_sent {
        for item in &lifecycle {
            out.push(frames::event("lifecycle", None, item));
        }
    }
    if let Some(target) = &sub.iot_monitor {
        let values: Vec<IotTrackerValues> = fleet
            .vehicles
            .iter()
            .filter(|v| target.covers(v.tracker_id) && !v.blocked && v.report_s > since)
            .map(|v| frames::iot_values(v, fleet))
            .collect();
        if !values.is_empty() {
            out.push(frames::event(
                "iot_monitor",
                None,
                serde_json::json!({ "iot_last_values": values }),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::navixy::decode::decode_frame;
    use crate::navixy::messages::{BatchItem, Frame, LifecycleKind};
    use chrono::TimeZone;

    fn subscription(state_batch: bool, readings: bool) -> Subscription {
        Subscription {
            iso: true,
            state_batch: state_batch.then_some((Target::All, StateFormat::Full)),
            readings_batch: readings.then_some(Target::All),
            state: None,
            iot_monitor: None,
            rate: Duration::from_secs(5),
            sent_s: i64::MIN,
            lifecycle_seq: 0,
        }
    }

    #[test]
    fn a_snapshot_then_only_changes_and_lifecycle_once() {
        let mut fleet = Fleet::new(
            6,
            42,
            chrono::Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap(),
        );
        let mut sub = subscription(true, true);
        let snapshot = build_frames(&mut sub, &fleet, true, false);
        assert_eq!(snapshot.len(), 2);
        let Ok(Frame::StateBatch { items, .. }) = decode_frame(&snapshot[0]) else {
            panic!()
        };
        assert_eq!(items.len(), 6);
        // Vehicle 3 (index 3) is blocked between ~5 and ~25 minutes.
        let mut lifecycle = Vec::new();
        let mut t = 0;
        while t < 1800 {
            t += 5;
            fleet.advance_to(t);
            for text in build_frames(&mut sub, &fleet, false, false) {
                match decode_frame(&text) {
                    Ok(Frame::StateBatch { items, .. }) => {
                        for item in items {
                            match item {
                                BatchItem::Lifecycle(l) => lifecycle.push((t, l.lifecycle_event)),
                                BatchItem::State(s) => {
                                    let v = &fleet.vehicles[3];
                                    assert!(
                                        !(v.blocked && s.source_id == Some(v.source_id)),
                                        "no state while blocked"
                                    );
                                }
                                _ => {}
                            }
                        }
                    }
                    Ok(Frame::ReadingsBatch { items, .. }) => {
                        assert!(
                            items.iter().all(|i| !matches!(i, BatchItem::Lifecycle(_))),
                            "lifecycle rides in state_batch only"
                        );
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        let kinds: Vec<_> = lifecycle.iter().map(|l| l.1).collect();
        assert_eq!(kinds, vec![LifecycleKind::Block, LifecycleKind::Unblock]);
    }

    #[test]
    fn documented_shape_sends_lifecycle_events_of_their_own() {
        let mut fleet = Fleet::new(
            6,
            42,
            chrono::Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap(),
        );
        let mut sub = subscription(true, false);
        build_frames(&mut sub, &fleet, true, true);
        fleet.advance_to(600);
        let frames = build_frames(&mut sub, &fleet, false, true);
        assert!(
            frames
                .iter()
                .any(|f| matches!(decode_frame(f), Ok(Frame::Lifecycle(_))))
        );
        assert!(frames.iter().any(|f| matches!(
            decode_frame(f),
            Ok(Frame::StateBatch {
                user_time: Some(_),
                ..
            })
        )));
    }

    #[test]
    fn params_come_from_json_form_query_or_header() {
        let uri: Uri = "/v2/tracker/list?x=1".parse().unwrap();
        let mut headers = HeaderMap::new();
        let p = params(&headers, &uri, br#"{"hash":"abc","n":5}"#);
        assert_eq!(p["hash"], "abc");
        assert_eq!(p["n"], "5");
        assert_eq!(p["x"], "1");
        let p = params(&headers, &uri, b"login=a%40b&password=p");
        assert_eq!(p["login"], "a@b");
        headers.insert(header::AUTHORIZATION, "NVX 0123".parse().unwrap());
        assert_eq!(params(&headers, &uri, b"")["hash"], "0123");
    }
}
