//! "Retry now" against a real daemon: admins only, and a notification a receiver was
//! refusing (with `Retry-After: 3600`, so the outbox would hold it an hour) goes out at
//! once, with the same id, exactly once, even when retried while its attempt is under
//! way; a failed one goes back to pending.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::server::{Daemon, TOKEN, TRACKERS, always, config_text, eventually};

const VIEWER: &str = "viewer-token-r";
const OPERATOR: &str = "operator-token-r";

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// 503 with `Retry-After: 3600`.
    Later,
    /// 400: a permanent failure.
    Refuse,
    /// 200 once released: an attempt stays under way until then.
    Hold,
    Accept,
}

#[derive(Clone)]
struct Receiver {
    url: String,
    mode: Arc<Mutex<Mode>>,
    /// (webhook-id, status answered), in order of arrival.
    requests: Arc<Mutex<Vec<(String, u16)>>>,
    arrived: Arc<Notify>,
    release: Arc<Notify>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            url: format!("http://{}/hook", listener.local_addr().unwrap()),
            mode: Arc::new(Mutex::new(Mode::Later)),
            requests: Arc::default(),
            arrived: Arc::default(),
            release: Arc::default(),
        };
        async fn receive(State(r): State<Receiver>, headers: HeaderMap, _: Bytes) -> Response {
            let id = headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let mode = *r.mode.lock();
            if mode == Mode::Hold {
                let released = r.release.notified();
                r.requests.lock().push((id.clone(), 0));
                r.arrived.notify_waiters();
                released.await;
            }
            let status = match mode {
                Mode::Later => 503,
                Mode::Refuse => 400,
                Mode::Hold | Mode::Accept => 200,
            };
            {
                let mut requests = r.requests.lock();
                requests.retain(|(i, s)| !(i == &id && *s == 0));
                requests.push((id, status));
            }
            r.arrived.notify_waiters();
            let status = StatusCode::from_u16(status).unwrap();
            if mode == Mode::Later {
                (status, [(header::RETRY_AFTER, "3600")]).into_response()
            } else {
                status.into_response()
            }
        }
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        receiver
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock() = mode;
    }

    /// Answers given to each id (0: being held), in order.
    fn answers(&self) -> BTreeMap<String, Vec<u16>> {
        let mut out: BTreeMap<String, Vec<u16>> = BTreeMap::new();
        for (id, status) in self.requests.lock().iter() {
            out.entry(id.clone()).or_default().push(*status);
        }
        out
    }
}

async fn daemon(receiver: &Receiver) -> Daemon {
    let text = config_text(&receiver.url, ":memory:").replace(
        &format!("token: \"{TOKEN}\" }}"),
        &format!(
            "token: \"{TOKEN}\", tokens: [{{ name: vera, token: \"{VIEWER}\", role: viewer }}, {{ name: otto, token: \"{OPERATOR}\", role: operator }}] }}"
        ),
    );
    assert!(text.contains(OPERATOR), "{text}");
    Daemon::start_with(
        &text,
        &[("always.yaml", always("retry_rule"))],
        super::server::Hook::default(),
    )
    .await
}

async fn retry(daemon: &Daemon, path: &str, token: &str) -> (u16, Value) {
    let response = daemon
        .http
        .request(Method::POST, daemon.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The ids of the pending notifications once each was attempted and refused.
async fn refused_once(daemon: &Daemon, receiver: &Receiver) -> Vec<String> {
    eventually("every notification refused once and pending", || async {
        let (status, rows) = daemon.get("/api/v1/notifications?status=pending").await;
        assert_eq!(status, 200, "{rows}");
        let rows = rows.as_array().cloned().unwrap_or_default();
        let tried = rows.len() == TRACKERS
            && rows.iter().all(|r| r["attempts"] == 1)
            && receiver.requests.lock().len() == TRACKERS;
        tried.then(|| {
            let mut ids: Vec<String> = rows
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned())
                .collect();
            ids.sort();
            ids
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_now_is_for_admins_and_sends_at_once_exactly_once() {
    let receiver = Receiver::start().await;
    let daemon = daemon(&receiver).await;
    let ids = refused_once(&daemon, &receiver).await;
    let path = |id: &str| format!("/api/v1/notifications/{id}/retry");

    // Viewers and operators may not; an unknown id or channel is a 404.
    let (status, body) = retry(&daemon, &path(&ids[0]), VIEWER).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = retry(&daemon, &path(&ids[0]), OPERATOR).await;
    assert_eq!(status, 403, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("`otto` is a") && error.ends_with("retry needs an admin or more"),
        "{body}"
    );
    let (status, body) = retry(&daemon, &path("msg_nothing"), TOKEN).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        body["error"],
        "no notification with id `msg_nothing` is in the outbox"
    );
    let (status, body) = retry(&daemon, "/api/v1/channels/nowhere/retry", TOKEN).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "no channel is named `nowhere`");

    // The receiver is back; the outbox would wait an hour. Retried, the first goes out
    // at once, and only it.
    receiver.set(Mode::Accept);
    let (status, body) = retry(&daemon, &path(&ids[0]), TOKEN).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body,
        json!({"channel": "hook", "due": [ids[0]], "requeued": [], "in_flight": [], "sent": []})
    );
    eventually("the retried notification delivered", || async {
        (receiver.answers().get(&ids[0]) == Some(&vec![503, 200])).then_some(())
    })
    .await;
    // Retrying what is being recorded as sent, or was, sends nothing more.
    eventually("the retry to say it was sent", || async {
        let (status, body) = retry(&daemon, &path(&ids[0]), TOKEN).await;
        assert_eq!(status, 202, "{body}");
        (body["sent"] == json!([ids[0]])).then_some(())
    })
    .await;
    let (_, pending) = daemon.get("/api/v1/notifications?status=pending").await;
    assert_eq!(pending.as_array().unwrap().len(), TRACKERS - 1, "{pending}");

    // A retry while the attempt is under way is not a second copy.
    receiver.set(Mode::Hold);
    let arrived = receiver.arrived.notified();
    let (status, body) = retry(&daemon, &path(&ids[1]), TOKEN).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["due"], json!([ids[1]]));
    arrived.await;
    let (status, body) = retry(&daemon, &path(&ids[1]), TOKEN).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["in_flight"], json!([ids[1]]), "{body}");
    receiver.release.notify_waiters();
    eventually("the held notification delivered", || async {
        (receiver.answers().get(&ids[1]) == Some(&vec![503, 200])).then_some(())
    })
    .await;

    // A permanent refusal fails it for good; retried, it is pending again, same id.
    receiver.set(Mode::Refuse);
    let (status, _) = retry(&daemon, &path(&ids[2]), TOKEN).await;
    assert_eq!(status, 202);
    let failed = eventually("the refused notification failed", || async {
        let (_, rows) = daemon.get("/api/v1/notifications?status=failed").await;
        rows.as_array()
            .and_then(|r| r.iter().find(|r| r["id"] == ids[2].as_str()).cloned())
    })
    .await;
    assert_eq!(failed["last_error"], "HTTP 400 Bad Request");
    receiver.set(Mode::Accept);
    // (Until its sender has seen the outcome, the attempt counts as under way.)
    eventually("the failed notification requeued", || async {
        let (status, body) = retry(&daemon, &path(&ids[2]), TOKEN).await;
        assert_eq!(status, 202, "{body}");
        (body["requeued"] == json!([ids[2]])).then_some(())
    })
    .await;
    eventually("the failed notification delivered", || async {
        (receiver.answers().get(&ids[2]) == Some(&vec![503, 400, 200])).then_some(())
    })
    .await;

    // A whole channel: the last one goes out too.
    let (status, body) = retry(&daemon, "/api/v1/channels/hook/retry", TOKEN).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["due"], json!([ids[3]]));
    eventually("every notification delivered", || async {
        let (_, pending) = daemon.get("/api/v1/notifications?status=pending").await;
        let (_, failed) = daemon.get("/api/v1/notifications?status=failed").await;
        (pending == json!([]) && failed == json!([])).then_some(())
    })
    .await;
    // Each notification accepted exactly once, under its one id.
    let answers = receiver.answers();
    assert_eq!(answers.len(), TRACKERS, "{answers:?}");
    for id in &ids {
        assert_eq!(
            answers[id].iter().filter(|s| **s == 200).count(),
            1,
            "{id}: {answers:?}"
        );
    }
    daemon.stop().await;
}
