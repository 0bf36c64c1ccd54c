//! The admin API over real HTTP, against a daemon started in-process with `daemon::run`:
//! the simulator on loopback as the source, a real webhook receiver, SQLite in memory.
//! Also the harness the reload tests share.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use parking_lot::Mutex;
use serde_json::{Value, json};

use navixy_alerts::config::Config;
use navixy_alerts::daemon::{self, RunOptions};
use navixy_alerts::rules::RuleSet;
use navixy_alerts::telemetry;

/// Every wait is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(30);

/// The admin token of the test daemons.
pub const TOKEN: &str = "test-admin-token";

/// Polls `check` until it gives a value, failing the test after [`LIMIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {LIMIT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A webhook receiver on loopback that keeps every body it gets.
#[derive(Clone, Default)]
pub struct Hook {
    pub url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Hook {
    pub async fn start() -> Hook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = Hook {
            url: format!("http://{}/hook", listener.local_addr().unwrap()),
            bodies: Arc::default(),
        };
        async fn receive(State(hook): State<Hook>, body: Bytes) -> &'static str {
            if let Ok(value) = serde_json::from_slice(&body) {
                hook.bodies.lock().push(value);
            }
            "ok"
        }
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(hook.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        hook
    }

    /// (type, rule, tracker id) of every alert received, in order.
    pub fn alerts(&self) -> Vec<(String, String, i64)> {
        let mut out = Vec::new();
        for body in self.bodies.lock().iter() {
            for alert in body["data"]["alerts"].as_array().into_iter().flatten() {
                out.push((
                    alert["status"].as_str().unwrap_or_default().to_string(),
                    alert["rule"].as_str().unwrap_or_default().to_string(),
                    alert["tracker"]["id"].as_i64().unwrap_or_default(),
                ));
            }
        }
        out
    }

    /// Every body received, in order.
    pub fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().clone()
    }

    pub fn count(&self, status: &str, rule: &str) -> usize {
        self.alerts()
            .iter()
            .filter(|(s, r, _)| s == status && r == rule)
            .count()
    }
}

/// The simulated fleet's size in the test daemons.
pub const TRACKERS: usize = 4;

/// A rule that holds for every tracker and reads the time, so it is evaluated on every
/// tick (what shows that a rule set is running).
pub fn always(name: &str) -> String {
    format!(
        "rules:\n  - name: {name}\n    when: \"now > 0\"\n    severity: warning\n    annotations:\n      summary: \"{{{{ tracker.label }}}} is watched\"\n"
    )
}

/// A config with the simulator, `rules/*.yaml`, one webhook channel and the admin API on
/// an ephemeral port with [`TOKEN`]; `storage` is a path or `:memory:`.
pub fn config_text(hook: &str, storage: &str) -> String {
    config_listing(hook, storage, "rules/*.yaml")
}

/// [`config_text`] with other `rules:` patterns (comma-separated).
pub fn config_listing(hook: &str, storage: &str, rules: &str) -> String {
    format!(
        r#"source:
  simulator: {{ trackers: {TRACKERS}, seed: 7, speed: 60 }}
rules: [{rules}]
engine: {{ eval_interval: 10s, workers: 2 }}
channels:
  hook: {{ type: webhook, url: "{hook}" }}
routes:
  - channels: [hook]
notify: {{ group_by: [rule, tracker_id], group_wait: 0s, group_interval: 1s, repeat_interval: 4h }}
storage: {{ path: "{storage}" }}
server: {{ listen: "127.0.0.1:0", token: "{TOKEN}" }}
"#
    )
}

/// A daemon running in this process, with its config and rules in a temp folder.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub base: String,
    pub http: reqwest::Client,
    pub hook: Hook,
    /// The daemon itself (`running` is its handles).
    inner: super::chaos::Daemon,
}

impl std::ops::Deref for Daemon {
    type Target = super::chaos::Daemon;
    fn deref(&self) -> &super::chaos::Daemon {
        &self.inner
    }
}

impl Daemon {
    /// Starts a daemon with these rule files, the config listing each of them by name (not
    /// by pattern): the file watcher then ignores files added later, until a reload lists
    /// them, so that a test decides alone when a reload happens.
    pub async fn start_listed(rules: &[(&str, String)]) -> Daemon {
        let hook = Hook::start().await;
        let listed: Vec<String> = rules.iter().map(|(f, _)| format!("rules/{f}")).collect();
        let text = config_listing(&hook.url, ":memory:", &listed.join(", "));
        Daemon::start_with(&text, rules, hook).await
    }

    /// Starts a daemon with [`config_text`] and these rule files.
    pub async fn start(rules: &[(&str, String)]) -> Daemon {
        let hook = Hook::start().await;
        let text = config_text(&hook.url, ":memory:");
        Daemon::start_with(&text, rules, hook).await
    }

    /// Starts a daemon with this config text and rule files (in `rules/`).
    pub async fn start_with(config: &str, rules: &[(&str, String)], hook: Hook) -> Daemon {
        Daemon::start_with_options(config, rules, hook, RunOptions::default()).await
    }

    /// [`Daemon::start_with`] with these options (a clock the test moves).
    pub async fn start_with_options(
        config: &str,
        rules: &[(&str, String)],
        hook: Hook,
        options: RunOptions,
    ) -> Daemon {
        navixy_alerts::navixy::rest::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        for (name, text) in rules {
            std::fs::write(dir.path().join("rules").join(name), text).unwrap();
        }
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, config).unwrap();
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let inner = super::chaos::Daemon::run_with(config, options).await;
        let base = inner
            .running
            .admin_addr
            .map(|addr| format!("http://{addr}"))
            .unwrap_or_default();
        Daemon {
            dir,
            base,
            http: reqwest::Client::new(),
            hook,
            inner,
        }
    }

    pub fn rules_dir(&self) -> PathBuf {
        self.dir.path().join("rules")
    }

    /// Rewrites the config file with these rule files (in `rules/`) as its `rules:`.
    pub fn list_rules(&self, files: &[&str]) {
        let listed: Vec<String> = files.iter().map(|f| format!("rules/{f}")).collect();
        let text = config_listing(&self.hook.url, ":memory:", &listed.join(", "));
        write(&self.dir.path().join("config.yaml"), &text);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the admin token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(TOKEN)
    }

    /// GET with the token: (status, JSON body).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        send(
            self.request(reqwest::Method::POST, path)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        send(self.request(reqwest::Method::DELETE, path)).await
    }

    pub async fn metrics(&self) -> String {
        let response = self
            .request(reqwest::Method::GET, "/metrics")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.text().await.unwrap()
    }

    /// The live alerts of `rule` by tracker id, once every tracker has one.
    pub async fn firing_for_all(&self, rule: &str) -> Vec<Value> {
        eventually(&format!("{rule} firing for every tracker"), || async {
            let (status, alerts) = self.get("/api/v1/alerts").await;
            assert_eq!(status, 200, "{alerts}");
            let mine: Vec<Value> = alerts
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["rule"] == rule)
                .cloned()
                .collect();
            (mine.len() == TRACKERS).then_some(mine)
        })
        .await
    }

    /// Stops the daemon and checks that it stopped without an error.
    pub async fn stop(self) {
        self.inner.stop().await;
    }
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// The value of one series in Prometheus text (`name{labels} value`), if present.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_but_healthz_needs_the_token() {
    let daemon = Daemon::start(&[("always.yaml", always("auth_watch"))]).await;
    let http = &daemon.http;

    let health = http.get(daemon.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(health.text().await.unwrap(), "ok\n");

    let guarded = [
        (reqwest::Method::GET, "/readyz"),
        (reqwest::Method::GET, "/metrics"),
        (reqwest::Method::GET, "/api/v1/alerts"),
        (reqwest::Method::GET, "/api/v1/trackers/21001"),
        (reqwest::Method::GET, "/api/v1/silences"),
        (reqwest::Method::POST, "/api/v1/silences"),
        (reqwest::Method::DELETE, "/api/v1/silences/sil_x"),
        (reqwest::Method::GET, "/api/v1/notifications"),
        (reqwest::Method::POST, "/api/v1/reload"),
    ];
    for (method, path) in guarded {
        let missing = http
            .request(method.clone(), daemon.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(
            missing.status().as_u16(),
            401,
            "{method} {path} without a token"
        );
        assert_eq!(
            missing.headers()["www-authenticate"],
            "Bearer realm=\"navixy-alerts\""
        );
        assert_eq!(
            missing.json::<Value>().await.unwrap(),
            json!({"error": "this endpoint needs `Authorization: Bearer <server.token>`"})
        );

        let wrong = http
            .request(method.clone(), daemon.url(path))
            .bearer_auth("not-the-token")
            .send()
            .await
            .unwrap();
        assert_eq!(
            wrong.status().as_u16(),
            401,
            "{method} {path} with a wrong token"
        );
        assert_eq!(
            wrong.json::<Value>().await.unwrap(),
            json!({"error": "the bearer token is not the one in server.token"})
        );

        let basic = http
            .request(method.clone(), daemon.url(path))
            .basic_auth("admin", Some(TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(
            basic.status().as_u16(),
            401,
            "{method} {path} with basic auth"
        );
    }

    // With the token, the same routes answer (readiness may still be 503 here).
    let (status, _) = daemon.get("/api/v1/silences").await;
    assert_eq!(status, 200);
    let (status, body) = daemon.get("/nowhere").await;
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("no such endpoint")
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_once_the_source_is_connected_and_storage_writable() {
    let daemon = Daemon::start(&[("always.yaml", always("ready_watch"))]).await;
    let body = eventually("/readyz 200", || async {
        let (status, body) = daemon.get("/readyz").await;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(
        body,
        json!({"ready": true, "source": {"ok": true}, "storage": {"ok": true}})
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_says_which_part_is_not() {
    // A Navixy source that cannot connect: nothing listens on port 1.
    let hook = Hook::start().await;
    let text = config_text(&hook.url, ":memory:").replace(
        &format!("simulator: {{ trackers: {TRACKERS}, seed: 7, speed: 60 }}"),
        "navixy: { api_url: \"http://127.0.0.1:1/v2\", hash: \"0123456789abcdef0123456789abcdef\", max_backoff: 1s }",
    );
    let daemon = Daemon::start_with(&text, &[("always.yaml", always("unready"))], hook).await;
    let body = eventually("a failed connection attempt in /readyz", || async {
        let (status, body) = daemon.get("/readyz").await;
        assert_eq!(status, 503, "{body}");
        body["source"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("127.0.0.1:1"))
            .then_some(body)
    })
    .await;
    assert_eq!(body["ready"], false);
    assert_eq!(body["source"]["ok"], false);
    assert_eq!(body["storage"], json!({"ok": true}));
    let error = body["source"]["error"].as_str().unwrap();
    assert!(error.starts_with("not connected since "), "{error}");
    assert!(!error.contains("0123456789abcdef"), "{error}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_listen_address_disables_the_admin_api() {
    let hook = Hook::start().await;
    let text =
        config_text(&hook.url, ":memory:").replace("listen: \"127.0.0.1:0\"", "listen: \"\"");
    let daemon = Daemon::start_with(&text, &[("always.yaml", always("no_api"))], hook).await;
    assert_eq!(daemon.running.admin_addr, None);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_alerts_and_a_tracker_lookup() {
    let daemon = Daemon::start(&[("always.yaml", always("lookup_watch"))]).await;
    let alerts = daemon.firing_for_all("lookup_watch").await;
    let alert = &alerts[0];
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["severity"], "warning");
    assert_eq!(alert["silenced_by"], Value::Null);
    // The rule sets no labels; the engine adds the tracker's source, and Navixy's
    // context its group and driver.
    let labels = alert["labels"].as_object().unwrap();
    assert_eq!(labels["source"], "navixy");
    assert!(
        labels
            .keys()
            .all(|k| k == "group" || k == "driver" || k == "source"),
        "{labels:?}"
    );
    let id = alert["tracker"]["id"].as_i64().unwrap();
    let label = alert["tracker"]["label"].as_str().unwrap().to_string();
    assert_eq!(
        alert["annotations"]["summary"],
        format!("{label} is watched")
    );
    assert!(alert["starts_at"].as_str().unwrap().ends_with('Z'));
    assert!(alert["fingerprint"].as_str().is_some_and(|f| !f.is_empty()));

    let (status, tracker) = daemon.get(&format!("/api/v1/trackers/{id}")).await;
    assert_eq!(status, 200, "{tracker}");
    assert_eq!(tracker["tracker"]["id"], id);
    assert_eq!(tracker["tracker"]["label"], label.as_str());
    assert!(tracker["tracker"]["source_id"].is_i64(), "{tracker}");
    assert_eq!(tracker["lifecycle"], "active");
    assert_eq!(tracker["online"], true);
    assert!(
        tracker["state"]["gps"]["location"]["lat"].is_f64(),
        "{tracker}"
    );
    assert!(
        tracker["last_data_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    for key in ["prev", "readings", "iot", "history"] {
        assert!(tracker.get(key).is_some(), "{key} missing in {tracker}");
    }
    assert!(tracker["readings"]["inputs"].is_object());
    assert!(tracker["history"].is_array());

    let (status, body) = daemon.get("/api/v1/trackers/999999").await;
    assert_eq!(status, 404);
    assert_eq!(body, json!({"error": "tracker 999999 is not known"}));
    let (status, body) = daemon.get("/api/v1/trackers/truck-7").await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"error": "tracker id must be an integer, not `truck-7`"})
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_round_trip() {
    let daemon = Daemon::start(&[("always.yaml", always("silence_watch"))]).await;
    let (status, body) = daemon.get("/api/v1/silences").await;
    assert_eq!((status, body), (200, json!([])));

    // Bad input is refused with the reason.
    let cases = [
        (
            r#"{"matchers": [], "ends_at": "2100-01-01T00:00:00Z"}"#,
            "a silence needs at least one matcher (it would silence everything)",
        ),
        (
            r#"{"matchers": [{"name": "rule", "value": "x"}], "starts_at": "2100-01-02T00:00:00Z", "ends_at": "2100-01-01T00:00:00Z"}"#,
            "a silence must end after it starts (starts_at 2100-01-02T00:00:00+00:00, ends_at 2100-01-01T00:00:00+00:00)",
        ),
        (r#"{"matchers": [{"name": "rule", "value": "x"}]"#, ""),
    ];
    for (body, message) in cases {
        let (status, answer) = daemon.post("/api/v1/silences", body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap();
        if !message.is_empty() {
            assert_eq!(error, message);
        }
    }
    let (_, answer) = daemon
        .post(
            "/api/v1/silences",
            r#"{"matchers": [{"name": "rule", "value": "(", "is_regex": true}], "ends_at": "2100-01-01T00:00:00Z"}"#,
        )
        .await;
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("silence matcher `rule`: `(` is not a valid regex"),
        "{answer}"
    );
    let (_, answer) = daemon
        .post(
            "/api/v1/silences",
            r#"{"matchers": [{"name": "rule", "value": "x"}], "ends_at": "2100-01-01T00:00:00Z", "owner": "me"}"#,
        )
        .await;
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.starts_with("invalid silence: unknown field `owner`"),
        "{error}"
    );

    // A good one; curl's default content type (a form) is not JSON.
    let body = r#"{"matchers": [{"name": "rule", "value": "silence_watch"}],
                   "ends_at": "2100-01-01T00:00:00Z", "created_by": "ops", "comment": "maintenance"}"#;
    let response = daemon
        .request(reqwest::Method::POST, "/api/v1/silences")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    let response = daemon
        .request(reqwest::Method::POST, "/api/v1/silences")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let silence: Value = response.json().await.unwrap();
    let id = silence["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("sil_"), "{silence}");
    assert_eq!(silence["state"], "active");
    assert_eq!(silence["created_by"], "ops");
    assert_eq!(silence["comment"], "maintenance");
    assert_eq!(silence["ends_at"], "2100-01-01T00:00:00Z");
    assert_eq!(
        silence["matchers"],
        json!([{"name": "rule", "value": "silence_watch", "is_regex": false, "is_equal": true}])
    );

    let (status, list) = daemon.get("/api/v1/silences").await;
    assert_eq!(status, 200);
    assert_eq!(list, json!([silence]));

    // The live alerts it matches say so.
    let alerts = daemon.firing_for_all("silence_watch").await;
    for alert in &alerts {
        assert_eq!(alert["silenced_by"], id.as_str());
    }

    let (status, body) = daemon.delete(&format!("/api/v1/silences/{id}")).await;
    assert_eq!((status, body), (200, json!({"deleted": id})));
    let (status, body) = daemon.get("/api/v1/silences").await;
    assert_eq!((status, body), (200, json!([])));
    let (status, body) = daemon.delete(&format!("/api/v1/silences/{id}")).await;
    assert_eq!(status, 404);
    assert_eq!(body, json!({"error": format!("no silence with id `{id}`")}));

    // The outbox: nothing failed; a bad status is refused.
    let (status, body) = daemon.get("/api/v1/notifications?status=failed").await;
    assert_eq!((status, body), (200, json!([])));
    let (status, body) = daemon.get("/api/v1/notifications?status=lost").await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"error": "status must be pending, sent or failed, not `lost`"})
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_every_metric_and_the_engine_counters() {
    let daemon = Daemon::start(&[("always.yaml", always("metrics_watch"))]).await;
    daemon.firing_for_all("metrics_watch").await;
    // The alerts were delivered: the webhook got them.
    eventually("the webhook notified", || async {
        (daemon.hook.count("firing", "metrics_watch") == TRACKERS).then_some(())
    })
    .await;
    let text = eventually("the counters in /metrics", || async {
        let text = daemon.metrics().await;
        let sent = sample(
            &text,
            "navixy_alerts_notifications_sent_total{channel=\"hook\"}",
        );
        // Evaluations are added to their counter on each tick.
        let evaluated = sample(
            &text,
            "navixy_alerts_rule_evaluations_total{rule=\"metrics_watch\"}",
        );
        (sent.is_some_and(|n| n >= TRACKERS as f64) && evaluated.is_some_and(|n| n > 0.0))
            .then_some(text)
    })
    .await;
    for name in [
        telemetry::FRAMES,
        telemetry::DECODE_ERRORS,
        telemetry::UNKNOWN_EVENTS,
        telemetry::UPDATES,
        telemetry::RULE_EVALUATIONS,
        telemetry::RULE_FAST_PATH,
        telemetry::RULE_ERRORS,
        telemetry::ALERT_TRANSITIONS,
        telemetry::ALERTS,
        telemetry::NOTIFICATIONS_SENT,
        telemetry::NOTIFICATIONS_FAILED,
        telemetry::NOTIFICATIONS_RETRIED,
        telemetry::NOTIFICATIONS_SILENCED,
        telemetry::OUTBOX_DEPTH,
        telemetry::WS_RECONNECTS,
        telemetry::SOURCE_UP,
        telemetry::CONTEXT_REFRESHES,
        telemetry::EVAL_LATENCY,
        telemetry::RELOADS,
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing from /metrics:\n{text}"
        );
    }
    let positive = |series: &str| {
        let value = sample(&text, series).unwrap_or_else(|| panic!("{series} missing:\n{text}"));
        assert!(value > 0.0, "{series} = {value}");
    };
    positive("navixy_alerts_frames_total{source=\"navixy\"}");
    positive("navixy_alerts_updates_total{kind=\"state\",source=\"navixy\"}");
    positive("navixy_alerts_rule_evaluations_total{rule=\"metrics_watch\"}");
    // `now > 0` is in the direct evaluator's subset: Rhai never runs it.
    positive("navixy_alerts_rule_fast_path_total{rule=\"metrics_watch\",outcome=\"fast\"}");
    assert_eq!(
        sample(
            &text,
            "navixy_alerts_rule_fast_path_total{rule=\"metrics_watch\",outcome=\"fallback\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "navixy_alerts_alert_transitions_total{rule=\"metrics_watch\",status=\"firing\"}"
        ),
        Some(TRACKERS as f64)
    );
    assert_eq!(
        sample(
            &text,
            "navixy_alerts_rule_errors_total{rule=\"metrics_watch\",kind=\"runtime\"}"
        ),
        Some(0.0)
    );
    // A gauge of the process: other daemons of this test binary set it too.
    assert!(sample(&text, "navixy_alerts_source_up{source=\"navixy\"}").is_some());
    assert!(text.contains("navixy_alerts_evaluation_latency_seconds_bucket{le=\"0.005\"}"));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_file_written_into_the_folder_is_loaded_by_itself() {
    let daemon = Daemon::start(&[("always.yaml", always("watched_before"))]).await;
    // Let the watcher start before the change.
    daemon.firing_for_all("watched_before").await;
    write(
        &daemon.rules_dir().join("new.yaml"),
        &always("watched_after"),
    );
    // Not a rule file: ignored.
    write(&daemon.rules_dir().join("notes.txt"), "not yaml");
    daemon.firing_for_all("watched_after").await;
    let rules = daemon.running.reloader.rules();
    assert!(rules.get("watched_before").is_some());
    assert!(rules.get("watched_after").is_some());
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_in_use_stops_the_start_with_a_clear_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    write(&dir.path().join("rules/a.yaml"), &always("never_started"));
    let path = dir.path().join("config.yaml");
    let text = config_text("http://127.0.0.1:1/hook", ":memory:")
        .replace("127.0.0.1:0", &addr.to_string());
    write(&path, &text);
    let config = Config::load(&path).unwrap();
    let rules = RuleSet::load(&config).unwrap();
    let result = tokio::time::timeout(
        LIMIT,
        daemon::run(config, rules, RunOptions::default(), async {}, None),
    )
    .await
    .expect("the start did not fail in time");
    let message = format!("{:#}", result.expect_err("the start should fail"));
    assert!(
        message.starts_with(&format!(
            "{}: server.listen: cannot listen on `{addr}`: ",
            path.display()
        )),
        "{message}"
    );
    drop(taken);
}
