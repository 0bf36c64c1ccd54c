//! The daemon config every ops test that runs against a live source starts from, with
//! the options the tests differ in; the rig that runs it lives in `chaos.rs`.

use std::path::{Path, PathBuf};

/// The secret of the test channels (any `whsec_` + base64 works).
pub const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// The rules of these tests (`tests/data/ops/rules.yaml`): `ignition_on` and `moving`
/// toggle with the fleet, `in_fleet` and `known` fire once per tracker and do not resolve,
/// `blocked` follows the lifecycle, `probe` fires on an injected marker.
pub fn rules_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ops/rules.yaml")
}

/// The config the daemon runs with: the simulator at `api_url` as a live Navixy source
/// (login + password), one signed webhook channel `hook` that every alert is routed to, a
/// SQLite file, the admin API on a free port. By default: the ops rules, every
/// notification at once (`group_wait: 0s`, a short `group_interval`), grouped by rule.
/// Each option changes one of those.
#[derive(Debug, Clone)]
pub struct OpsConfig {
    api_url: String,
    hook_url: String,
    storage: PathBuf,
    rules: PathBuf,
    group_wait: &'static str,
    group_by: &'static str,
    escalate_after: Option<&'static str>,
}

impl OpsConfig {
    pub fn new(api_url: &str, hook_url: &str, storage: &Path) -> OpsConfig {
        OpsConfig {
            api_url: api_url.to_owned(),
            hook_url: hook_url.to_owned(),
            storage: storage.to_owned(),
            rules: rules_path(),
            group_wait: "0s",
            group_by: "[rule]",
            escalate_after: None,
        }
    }

    /// This rules file instead of the ops rules.
    pub fn rules(mut self, path: &Path) -> OpsConfig {
        self.rules = path.to_owned();
        self
    }

    /// How long a new group waits before its first notification.
    pub fn group_wait(mut self, wait: &'static str) -> OpsConfig {
        self.group_wait = wait;
        self
    }

    /// The labels notifications are grouped by, as YAML (`[rule, tracker_id]`).
    pub fn group_by(mut self, labels: &'static str) -> OpsConfig {
        self.group_by = labels;
        self
    }

    /// A second channel `pager`, a webhook to the same receiver, told of every alert
    /// still firing and not acknowledged this long after it fired.
    pub fn escalate_after(mut self, after: &'static str) -> OpsConfig {
        self.escalate_after = Some(after);
        self
    }

    pub fn yaml(&self) -> String {
        let OpsConfig {
            api_url,
            hook_url,
            storage,
            rules,
            group_wait,
            group_by,
            escalate_after,
        } = self;
        let (pager, escalate) = match escalate_after {
            Some(after) => (
                format!(
                    "\n  pager: {{ type: webhook, url: \"{hook_url}\", secret: \"{SECRET}\", timeout: 10s }}"
                ),
                format!("\n    escalate:\n      - {{ after: {after}, channels: [pager] }}"),
            ),
            None => (String::new(), String::new()),
        };
        format!(
            r#"source:
  navixy:
    api_url: {api_url}
    login: demo
    password: demo
    timezone: UTC
    max_backoff: 200ms
    source_down_after: 10m
rules: ["{rules}"]
engine: {{ workers: 2, eval_interval: 1s, max_event_age: 1d }}
channels:
  hook: {{ type: webhook, url: "{hook_url}", secret: "{SECRET}", timeout: 10s }}{pager}
routes:
  - channels: [hook]{escalate}
notify: {{ group_by: {group_by}, group_wait: {group_wait}, group_interval: 100ms, repeat_interval: 24h }}
storage: {{ path: "{storage}" }}
server: {{ listen: "127.0.0.1:0" }}
"#,
            rules = rules.display(),
            storage = storage.display(),
        )
    }
}
