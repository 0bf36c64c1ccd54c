//! The real binary: `run` with a SQLite file and the admin API, reloaded with SIGHUP and
//! stopped with SIGTERM (exit 0, a checkpointed database); and its logs, at debug level,
//! with a config full of secrets that must never show.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;

use navixy_alerts::navixy::simulator::{Simulator, SimulatorOptions};

use super::server::{Hook, LIMIT, TOKEN, TRACKERS, always, config_listing, eventually, sample};

/// The binary, running, with every line it wrote to stdout and stderr.
struct Process {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// `navixy-alerts --log-format json run -c <config>` with these environment variables.
    fn start(config: &Path, env: &[(&str, &str)]) -> Process {
        let mut command = Command::new(env!("CARGO_BIN_EXE_navixy-alerts"));
        command
            .args(["--log-format", "json", "run", "-c"])
            .arg(config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start navixy-alerts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for stream in [
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().push(line);
                }
            });
        }
        Process { child, lines }
    }

    fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: sends a signal to our own child, whose pid is live until we reap it.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid());
    }

    fn output(&self) -> String {
        self.lines.lock().join("\n")
    }

    /// The JSON log line with this message, if written yet.
    fn logged(&self, message: &str) -> Option<Value> {
        self.lines.lock().iter().find_map(|line| {
            let value: Value = serde_json::from_str(line).ok()?;
            (value["fields"]["message"] == message).then_some(value)
        })
    }

    /// The admin API's base URL, from the log line that announces it.
    async fn admin_base(&mut self) -> String {
        let line = eventually("the admin API to listen", || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("navixy-alerts exited with {status}:\n{}", self.output());
            }
            let line = self.logged("Admin API listening.");
            async move { line }
        })
        .await;
        format!("http://{}", line["fields"]["addr"].as_str().unwrap())
    }

    /// Waits for the process to exit, within [`LIMIT`].
    async fn wait(&mut self) -> std::process::ExitStatus {
        eventually("navixy-alerts to exit", || {
            let status = self.child.try_wait().expect("wait for navixy-alerts");
            async move { status }
        })
        .await
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // A failed test must not leave the daemon running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get(http: &reqwest::Client, url: &str, token: &str) -> (u16, Value) {
    match http.get(url).bearer_auth(token).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        }
        Err(_) => (0, Value::Null),
    }
}

/// Live alerts of `rule`, once every tracker has one.
async fn firing_for_all(http: &reqwest::Client, base: &str, rule: &str) -> usize {
    eventually(&format!("{rule} firing for every tracker"), || async {
        let (status, alerts) = get(http, &format!("{base}/api/v1/alerts"), TOKEN).await;
        if status != 200 {
            return None;
        }
        let n = alerts
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["rule"] == rule)
            .count();
        (n == TRACKERS).then_some(n)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_sigterm_stops_with_a_complete_database() {
    navixy_alerts::navixy::rest::install_crypto_provider();
    let hook = Hook::start().await;
    let dir = tempfile::tempdir().unwrap();
    for folder in ["rules", "extra"] {
        std::fs::create_dir(dir.path().join(folder)).unwrap();
    }
    std::fs::write(dir.path().join("rules/watch.yaml"), always("term_watch")).unwrap();
    let config = dir.path().join("config.yaml");
    let db = dir.path().join("data/alerts.db");
    std::fs::write(
        &config,
        config_listing(&hook.url, "data/alerts.db", "rules/*.yaml"),
    )
    .unwrap();

    let mut process = Process::start(&config, &[]);
    let base = process.admin_base().await;
    let http = reqwest::Client::new();
    eventually("/readyz 200", || async {
        let (status, _) = get(&http, &format!("{base}/readyz"), TOKEN).await;
        (status == 200).then_some(())
    })
    .await;
    firing_for_all(&http, &base, "term_watch").await;

    // SIGHUP reads the config again: a rule folder it now names, which nothing watches.
    std::fs::write(dir.path().join("extra/late.yaml"), always("late_rule")).unwrap();
    std::fs::write(
        &config,
        config_listing(&hook.url, "data/alerts.db", "rules/*.yaml, extra/*.yaml"),
    )
    .unwrap();
    process.signal(libc::SIGHUP);
    firing_for_all(&http, &base, "late_rule").await;
    let reloaded = process
        .logged("Rule set reloaded.")
        .expect("a reload log line");
    assert_eq!(reloaded["fields"]["trigger"], "sighup");
    eventually("both rules notified", || async {
        (hook.count("firing", "term_watch") == TRACKERS
            && hook.count("firing", "late_rule") == TRACKERS)
            .then_some(())
    })
    .await;

    process.signal(libc::SIGTERM);
    let status = tokio::time::timeout(LIMIT, process.wait())
        .await
        .expect("navixy-alerts did not stop in time");
    let output = process.output();
    assert_eq!(status.code(), Some(0), "{output}");
    for message in [
        "Signal received; stopping (a second signal stops at once).",
        "Engine stopped.",
        "Delivering what is due before stopping.",
        "Database checkpointed.",
        "Stopped.",
    ] {
        assert!(
            process.logged(message).is_some(),
            "no `{message}` in:\n{output}"
        );
    }

    // Everything is in the database file: the log was emptied (or removed with the last
    // connection), and the file opens and holds every live alert.
    let wal = dir.path().join("data/alerts.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "{} left with {wal_len} bytes", wal.display());
    let conn = rusqlite::Connection::open(&db).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let live: i64 = conn
        .query_row("SELECT count(*) FROM live_alerts", [], |row| row.get(0))
        .unwrap();
    assert_eq!(live, 2 * TRACKERS as i64);
    let pending: i64 = conn
        .query_row(
            "SELECT count(*) FROM outbox WHERE status = 'pending'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(
        pending, 0,
        "every notification was delivered before the exit"
    );
}

/// Secrets of the config in [`logs_never_show_secrets`], each distinctive enough that
/// finding it in the output can only mean it leaked.
const NAVIXY_HASH: &str = "5ec2e7aa5ec2e7aa5ec2e7aa5ec2e7aa";
const SLACK_URL: &str = "http://127.0.0.1:1/services/T0SECRET/B0SECRET/XoxSlackSecretPath";
const WEBHOOK_SECRET: &str = "whsec_c2VjcmV0LXdlYmhvb2sta2V5LWJ5dGVz";
const HOOK_TOKEN: &str = "HookHeaderSecret123";
const SMTP_PASSWORD: &str = "SmtpPassw0rdSecret";
const ADMIN_TOKEN: &str = "AdminTokenSecret456";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_show_secrets() {
    navixy_alerts::navixy::rest::install_crypto_provider();
    let (_, sim) = Simulator::bind(
        "127.0.0.1:0".parse().unwrap(),
        SimulatorOptions {
            trackers: TRACKERS as u32,
            seed: 11,
            api_key: Some(NAVIXY_HASH.into()),
            ..SimulatorOptions::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/watch.yaml"), always("secret_watch")).unwrap();
    // Every channel fails (nothing listens on port 1), so their errors are logged.
    let config = format!(
        r#"source:
  navixy: {{ api_url: "{api}", hash: "${{NAVIXY_HASH}}" }}
rules: [rules/*.yaml]
channels:
  slack: {{ type: slack, webhook_url: "${{SLACK_URL}}", timeout: 2s }}
  ops:
    type: webhook
    url: "http://127.0.0.1:1/hooks/ops"
    secret: "${{WEBHOOK_SECRET}}"
    headers: {{ Authorization: "Bearer ${{HOOK_TOKEN}}" }}
    timeout: 2s
  mail:
    type: email
    smtp: {{ host: 127.0.0.1, port: 1, security: none, username: alerts, password: "${{SMTP_PASSWORD}}", timeout: 2s }}
    from: alerts@example.com
    to: [ops@example.com]
routes:
  - channels: [slack, ops, mail]
notify: {{ group_wait: 0s, group_interval: 1s }}
storage: {{ path: alerts.db }}
server: {{ listen: "127.0.0.1:0", token: "${{ADMIN_TOKEN}}" }}
"#,
        api = sim.api_url()
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();

    let mut process = Process::start(
        &path,
        &[
            ("RUST_LOG", "debug"),
            ("NAVIXY_HASH", NAVIXY_HASH),
            ("SLACK_URL", SLACK_URL),
            ("WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("HOOK_TOKEN", HOOK_TOKEN),
            ("SMTP_PASSWORD", SMTP_PASSWORD),
            ("ADMIN_TOKEN", ADMIN_TOKEN),
        ],
    );
    let base = process.admin_base().await;
    let http = reqwest::Client::new();
    // Requests with a wrong token, and with the right one.
    let (status, _) = get(&http, &format!("{base}/api/v1/alerts"), "wrong").await;
    assert_eq!(status, 401);
    // Every channel has failed at least once.
    eventually("a retry on every channel", || async {
        let (status, text) = get(&http, &format!("{base}/metrics"), ADMIN_TOKEN).await;
        assert_eq!(status, 200);
        let text = text.as_str().unwrap_or_default().to_string();
        ["slack", "ops", "mail"]
            .iter()
            .all(|channel| {
                sample(
                    &text,
                    &format!("navixy_alerts_notifications_retried_total{{channel=\"{channel}\"}}"),
                )
                .is_some_and(|n| n >= 1.0)
            })
            .then_some(())
    })
    .await;
    let (status, _) = get(&http, &format!("{base}/api/v1/notifications"), ADMIN_TOKEN).await;
    assert_eq!(status, 200);
    process.signal(libc::SIGTERM);
    let status = tokio::time::timeout(LIMIT, process.wait())
        .await
        .expect("navixy-alerts did not stop in time");
    assert_eq!(status.code(), Some(0));

    let output = process.output();
    // The logs did say what happened.
    assert!(
        process.logged("Navixy subscription working.").is_some(),
        "{output}"
    );
    assert!(
        process
            .logged("Notification not delivered; will retry.")
            .is_some(),
        "{output}"
    );
    for secret in [
        NAVIXY_HASH,
        "XoxSlackSecretPath",
        WEBHOOK_SECRET.trim_start_matches("whsec_"),
        HOOK_TOKEN,
        SMTP_PASSWORD,
        ADMIN_TOKEN,
    ] {
        let leaks: Vec<&str> = output.lines().filter(|l| l.contains(secret)).collect();
        assert!(
            leaks.is_empty(),
            "`{secret}` in the logs:\n{}",
            leaks.join("\n")
        );
    }
    sim.shutdown().await;
}
