//! Real parts for the dispatch tests: an HTTP receiver that answers from a script, a
//! config builder, the crate's transition fixtures, and waiting with a deadline.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use tokio::sync::Notify;

use navixy_alerts::config::Config;
pub use navixy_alerts::dispatch::testing::{firing, resolved, t0};

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Status(u16),
    /// A status with `Retry-After: <seconds>`.
    RetryAfter(u16, u64),
    /// Answer 200 only after this long (longer than the channel's timeout).
    Hang(Duration),
}

/// One request as received, with the status it got (0: it hung past the timeout).
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Default)]
struct Inner {
    /// Scripted replies per path; when a script runs out, `default` answers.
    scripts: HashMap<String, VecDeque<Reply>>,
    default: Option<Reply>,
    /// (path, text): bodies containing `text` get a 503, whatever the script says.
    refuse: Vec<(String, String)>,
    received: Vec<Received>,
}

/// An HTTP receiver on 127.0.0.1:0.
#[derive(Clone)]
pub struct Receiver {
    pub base: String,
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
}

async fn handle(
    State(receiver): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let reply = {
        let mut inner = receiver.inner.lock();
        let refused = inner
            .refuse
            .iter()
            .any(|(p, text)| *p == path && body.windows(text.len()).any(|w| w == text.as_bytes()));
        let scripted = inner.scripts.get_mut(&path).and_then(VecDeque::pop_front);
        let reply = if refused {
            Reply::Status(503)
        } else {
            scripted.or(inner.default).unwrap_or(Reply::Status(200))
        };
        let status = match reply {
            Reply::Status(s) | Reply::RetryAfter(s, _) => s,
            // It answers, but too late to count.
            Reply::Hang(_) => 0,
        };
        inner.received.push(Received {
            path,
            headers,
            body,
            status,
        });
        reply
    };
    receiver.changed.notify_waiters();
    match reply {
        Reply::Status(s) => StatusCode::from_u16(s).unwrap().into_response(),
        Reply::RetryAfter(s, secs) => (
            StatusCode::from_u16(s).unwrap(),
            [("retry-after", secs.to_string())],
            "slow down",
        )
            .into_response(),
        Reply::Hang(d) => {
            tokio::time::sleep(d).await;
            StatusCode::OK.into_response()
        }
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            base: format!("http://{}", listener.local_addr().unwrap()),
            inner: Arc::default(),
            changed: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(receiver.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        receiver
    }

    pub fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        self.inner
            .lock()
            .scripts
            .entry(path.to_owned())
            .or_default()
            .extend(replies);
    }

    /// Answers 503 to every request to `path` whose body contains `text`.
    pub fn refuse_containing(&self, path: &str, text: &str) {
        self.inner
            .lock()
            .refuse
            .push((path.to_owned(), text.to_owned()));
    }

    pub fn set_default(&self, reply: Reply) {
        self.inner.lock().default = Some(reply);
    }

    pub fn received(&self, path: &str) -> Vec<Received> {
        self.inner
            .lock()
            .received
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits (at most 30 s) until `done` holds for the requests to `path`.
    pub async fn wait_for(&self, path: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let changed = self.changed.notified();
            let got = self.received(path);
            if done(&got) {
                return got;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("timed out waiting on {path}; received: {got:#?}");
            }
        }
    }

    /// Waits until `n` requests to `path` succeeded.
    pub async fn wait_ok(&self, path: &str, n: usize) -> Vec<Received> {
        self.wait_for(path, |r| r.iter().filter(|r| r.ok()).count() >= n)
            .await
    }
}

/// A config from YAML (a simulator source is added), as if read from `dir/config.yaml`.
pub fn config(dir: &Path, yaml: &str) -> Config {
    let text = format!("source: {{ simulator: {{}} }}\n{yaml}");
    Config::from_yaml(&text, &dir.join("config.yaml"), |_| None).unwrap()
}

/// One webhook channel `ops` at `url` and one route to it, every alert grouped by rule
/// and flushed at once, on `storage` (a `storage:` value in YAML).
pub fn webhook_config(dir: &Path, url: &str, storage: &str) -> Config {
    config(
        dir,
        &format!(
            r#"
channels:
  ops: {{ type: webhook, url: "{url}" }}
routes:
  - channels: [ops]
notify: {{ group_by: [rule], group_wait: 0s, group_interval: 1s }}
storage: {storage}
"#
        ),
    )
}

/// A shutdown signal for a dispatcher, and the future it takes.
pub fn shutdown() -> (
    tokio::sync::oneshot::Sender<()>,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

/// Waits (at most 60 s of real time, also when tokio's clock is paused) until `check`
/// holds, polling the state it reads.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
