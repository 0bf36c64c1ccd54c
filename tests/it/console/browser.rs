//! The browser harness: a chromedriver on a free loopback port, one headless Chromium
//! session per test, and the daemon the pages are served by.

use crate::system::free_port;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::ops::server::{Daemon, Hook, LIMIT};
use crate::system::require_system;

/// Where Debian installs them (`apt-get install chromium chromium-driver`).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Browsers are heavy: one test drives one at a time.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The desk's usual screen.
pub const WIDTH: u32 = 1280;
pub const HEIGHT: u32 = 900;

/// A headless Chromium session, and the chromedriver behind it (stopped on drop).
pub struct Browser {
    pub client: Client,
    driver: tokio::process::Child,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Browser {
    /// `None` (the test returns) when chromedriver or Chromium is not installed.
    pub async fn start() -> Option<Browser> {
        let install = "apt-get install chromium chromium-driver";
        if !require_system(CHROMEDRIVER, install) || !require_system(CHROMIUM, install) {
            return None;
        }
        let turn = ONE_BROWSER.lock().await;
        let port = free_port();
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let caps: serde_json::Map<String, Value> = serde_json::from_value(json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run",
                    format!("--window-size={WIDTH},{HEIGHT}"),
                ],
            }
        }))
        .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + LIMIT;
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if tokio::time::Instant::now() > deadline => {
                    panic!("chromedriver on {url} did not start a session: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        Some(Browser {
            client,
            driver,
            _turn: turn,
        })
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// The first element matching `css`, waiting for it up to [`LIMIT`].
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(LIMIT)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => {
                let page = self.client.source().await.unwrap_or_default();
                panic!("no `{css}` within {LIMIT:?}: {e}\nthe page:\n{page}")
            }
        }
    }

    /// Evaluates `script` (a function body) in the page.
    pub async fn js(&self, script: &str) -> Value {
        self.client.execute(script, Vec::new()).await.unwrap()
    }

    /// Polls `script` until it returns something truthy, which it returns.
    pub async fn until(&self, what: &str, script: &str) -> Value {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let v = self.js(script).await;
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            if truthy {
                return v;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out after {LIMIT:?} waiting for {what} (last: {v})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Writes the page as `docs/img/{name}.png` when `NAVIXY_ALERTS_SCREENSHOTS=1`.
    pub async fn screenshot(&self, name: &str) {
        if std::env::var("NAVIXY_ALERTS_SCREENSHOTS").is_ok_and(|v| v == "1") {
            let png = self.client.screenshot().await.unwrap();
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("docs/img")
                .join(format!("{name}.png"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, png).unwrap();
        }
    }

    pub async fn stop(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill().await;
    }
}

/// The console's daemon: the simulated fleet (4 trackers around the depot), the depot
/// zone, `rules/*.yaml`, a webhook receiver, and no token (loopback only), so the pages
/// need no login.
pub async fn daemon(rules: &[(&str, String)]) -> Daemon {
    let hook = Hook::start().await;
    let config = format!(
        r#"source:
  simulator: {{ trackers: 4, seed: 7, speed: 60 }}
rules: [rules/*.yaml]
engine: {{ eval_interval: 10s, workers: 2 }}
zones:
  depot: {{ circle: {{ lat: 52.52, lng: 13.40, radius_m: 300 }} }}
channels:
  hook: {{ type: webhook, url: "{}", send_acks: true }}
routes:
  - channels: [hook]
notify: {{ group_by: [rule, tracker_id], group_wait: 0s, group_interval: 1s, repeat_interval: 4h }}
storage: {{ path: ":memory:" }}
server: {{ listen: "127.0.0.1:0" }}
"#,
        hook.url
    );
    Daemon::start_with(&config, rules, hook).await
}

/// [`daemon`] with `server.token` (an admin) and `server.tokens` naming a viewer: the
/// pages need a login.
pub async fn daemon_with_tokens(rules: &[(&str, String)], viewer: &str) -> Daemon {
    let hook = Hook::start().await;
    let config = format!(
        r#"source:
  simulator: {{ trackers: 4, seed: 7, speed: 60 }}
rules: [rules/*.yaml]
engine: {{ eval_interval: 10s, workers: 2 }}
channels:
  hook: {{ type: webhook, url: "{}" }}
routes:
  - channels: [hook]
notify: {{ group_by: [rule, tracker_id], group_wait: 0s, group_interval: 1s, repeat_interval: 4h }}
storage: {{ path: ":memory:" }}
server: {{ listen: "127.0.0.1:0", token: "{}", tokens: [{{ name: vera, token: "{viewer}", role: viewer }}] }}
"#,
        hook.url,
        crate::ops::server::TOKEN,
    );
    Daemon::start_with(&config, rules, hook).await
}

/// A rule that holds for every tracker (`now > 0`), at `severity`.
pub fn always(name: &str, severity: &str) -> String {
    format!(
        "rules:\n  - name: {name}\n    when: \"now > 0\"\n    severity: {severity}\n    value: \"state.gps.speed\"\n    annotations:\n      summary: \"{{{{ tracker.label }}}} is watched\"\n"
    )
}

/// A rule that never holds.
pub fn never(name: &str) -> String {
    format!("rules:\n  - name: {name}\n    when: \"now < 0\"\n    severity: info\n")
}
