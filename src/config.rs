//! The config file (`-c FILE`): its format, `${VAR}` interpolation, durations and secrets.
//!
//! Every struct here denies unknown keys, so a typo is an error that names the file, line
//! and column instead of a setting that silently does nothing. Field doc comments are the
//! user documentation of each key. Loading resolves relative paths (rule globs, storage)
//! against the config file's folder. Secrets are wrapped in [`Secret`], whose `Debug` and
//! `Display` never show the value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A config that could not be read, with the place the user must fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where frames come from: exactly one of `navixy` or `simulator`.
    pub source: SourceConfig,
    /// Rule files or globs; relative paths are relative to the config file's folder.
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default)]
    pub engine: EngineConfig,
    /// Geofences for `in_zone("name")`.
    #[serde(default)]
    pub zones: BTreeMap<String, ZoneConfig>,
    /// Named notification channels.
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelConfig>,
    /// Routing tree: first match wins unless `continue: true`.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Notification defaults; a route may override any of them.
    #[serde(default)]
    pub notify: NotifyConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub server: ServerConfig,
    /// The folder of the config file; relative paths resolve against it. Not a key.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The config file itself, for messages. Not a key.
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub navixy: Option<NavixyConfig>,
    pub simulator: Option<SimulatorConfig>,
}

/// A live Navixy account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NavixyConfig {
    /// REST base, e.g. `https://api.eu.navixy.com/v2`.
    pub api_url: String,
    /// WebSocket URL; default: `api_url` with `wss://` and `/event/subscription`.
    #[serde(default)]
    pub ws_url: Option<String>,
    /// API key or session hash. Either this or `login` + `password`.
    #[serde(default)]
    pub hash: Option<Secret>,
    #[serde(default)]
    pub login: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// `all` or a list of tracker ids.
    #[serde(default)]
    pub trackers: TrackerSelection,
    /// Event subscriptions: `state_batch`, `readings_batch`, `state`, `iot_monitor`.
    #[serde(default = "default_subscribe")]
    pub subscribe: Vec<Subscription>,
    /// `full` or `compact` source states.
    #[serde(default)]
    pub format: StateFormat,
    #[serde(default = "default_rate_limit", deserialize_with = "de_duration")]
    pub rate_limit: Duration,
    /// IANA zone of Navixy's offset-less times.
    #[serde(default = "default_timezone", deserialize_with = "de_timezone")]
    pub timezone: chrono_tz::Tz,
    /// No working subscription for this long raises the engine alert `navixy_source_down`.
    #[serde(
        default = "default_source_down_after",
        deserialize_with = "de_duration"
    )]
    pub source_down_after: Duration,
    /// Cap of the exponential reconnect backoff.
    #[serde(default = "default_max_backoff", deserialize_with = "de_duration")]
    pub max_backoff: Duration,
    /// Frames larger than this are counted as oversized and skipped.
    #[serde(default = "default_max_frame_bytes")]
    pub max_frame_bytes: usize,
    /// How often the tracker list (ids, labels) is refreshed besides each reconnect.
    #[serde(default = "default_tracker_refresh", deserialize_with = "de_duration")]
    pub tracker_refresh: Duration,
}

/// The built-in simulator, started in-process on a loopback port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorConfig {
    #[serde(default = "default_sim_trackers")]
    pub trackers: u32,
    #[serde(default = "default_sim_seed")]
    pub seed: u64,
    /// Simulated seconds per real second.
    #[serde(default = "default_sim_speed")]
    pub speed: f64,
    /// Send the documented (bare) state shapes instead of the wire's tagged items.
    #[serde(default)]
    pub documented_shapes: bool,
    /// Malformed frames and connection drops.
    #[serde(default)]
    pub chaos: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TrackerSelection {
    #[default]
    All,
    Selected(Vec<i64>),
}

impl<'de> Deserialize<'de> for TrackerSelection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            Ids(Vec<i64>),
        }
        match Raw::deserialize(d)? {
            Raw::Word(w) if w == "all" => Ok(TrackerSelection::All),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "trackers must be `all` or a list of tracker ids, not `{w}`"
            ))),
            Raw::Ids(ids) => Ok(TrackerSelection::Selected(ids)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Subscription {
    StateBatch,
    ReadingsBatch,
    State,
    IotMonitor,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StateFormat {
    #[default]
    Full,
    Compact,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// The ticker that re-evaluates silent trackers.
    #[serde(default = "default_eval_interval", deserialize_with = "de_duration")]
    pub eval_interval: Duration,
    /// Older updates change state but never notify.
    #[serde(default = "default_max_event_age", deserialize_with = "de_duration")]
    pub max_event_age: Duration,
    /// Tracker shards; default: the number of cores.
    #[serde(default)]
    pub workers: Option<usize>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            eval_interval: default_eval_interval(),
            max_event_age: default_max_event_age(),
            workers: None,
        }
    }
}

impl EngineConfig {
    pub fn worker_count(&self) -> usize {
        self.workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1)
    }
}

/// A geofence: a circle or a polygon of `[lat, lng]` points.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    #[serde(default)]
    pub circle: Option<Circle>,
    #[serde(default)]
    pub polygon: Option<Vec<[f64; 2]>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Circle {
    pub lat: f64,
    pub lng: f64,
    pub radius_m: f64,
}

/// A notification channel, tagged by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChannelConfig {
    Stdout {
        /// One JSON object per line instead of a readable line.
        #[serde(default)]
        json: bool,
    },
    Webhook {
        url: String,
        /// Standard Webhooks secret, `whsec_<base64>`; without it requests are unsigned.
        #[serde(default)]
        secret: Option<Secret>,
        #[serde(default = "default_http_timeout", deserialize_with = "de_duration")]
        timeout: Duration,
        /// Extra request headers.
        #[serde(default)]
        headers: BTreeMap<String, Secret>,
        /// minijinja template of the request body, over the fields `email.subject` sees;
        /// without it, the documented JSON body. Checked by `check` against a sample.
        #[serde(default)]
        body: Option<String>,
        /// The body's media type (default `application/json`, whose output must parse),
        /// e.g. `application/x-www-form-urlencoded` for an SMS gateway.
        #[serde(default)]
        content_type: Option<String>,
    },
    Slack {
        webhook_url: Secret,
        #[serde(default = "default_http_timeout", deserialize_with = "de_duration")]
        timeout: Duration,
    },
    /// PagerDuty Events API v2: one event per alert, deduplicated on the fingerprint.
    Pagerduty {
        /// The integration key of an Events API v2 integration.
        routing_key: Secret,
        /// The full enqueue URL (PagerDuty's EU region, a proxy).
        #[serde(default = "default_pagerduty_url")]
        url: String,
        #[serde(default = "default_http_timeout", deserialize_with = "de_duration")]
        timeout: Duration,
    },
    /// Telegram Bot API `sendMessage`, HTML formatted.
    Telegram {
        /// The token BotFather gave, `123456:ABC...`.
        bot_token: Secret,
        /// A chat id (`-1001234567890`) or a public channel's `@username`.
        chat_id: TelegramChatId,
        /// The Bot API server (a local `telegram-bot-api`, a proxy).
        #[serde(default = "default_telegram_api_url")]
        api_url: String,
        #[serde(default = "default_http_timeout", deserialize_with = "de_duration")]
        timeout: Duration,
    },
    /// Microsoft Teams: a Workflows "When a Teams webhook request is received" URL.
    Teams {
        webhook_url: Secret,
        #[serde(default = "default_http_timeout", deserialize_with = "de_duration")]
        timeout: Duration,
    },
    Email {
        smtp: SmtpConfig,
        from: String,
        to: Vec<String>,
        /// minijinja template of the subject line.
        #[serde(default)]
        subject: Option<String>,
    },
    Alertmanager {
        /// Base URL; `/api/v2/alerts` is appended.
        url: String,
        #[serde(default = "default_http_timeout", deserialize_with = "de_duration")]
        timeout: Duration,
    },
}

impl ChannelConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            ChannelConfig::Stdout { .. } => "stdout",
            ChannelConfig::Webhook { .. } => "webhook",
            ChannelConfig::Slack { .. } => "slack",
            ChannelConfig::Email { .. } => "email",
            ChannelConfig::Alertmanager { .. } => "alertmanager",
            ChannelConfig::Pagerduty { .. } => "pagerduty",
            ChannelConfig::Telegram { .. } => "telegram",
            ChannelConfig::Teams { .. } => "teams",
        }
    }
}

/// A Telegram `chat_id`: a number, or a string (`@channelusername`, or a number in quotes);
/// sent as given.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum TelegramChatId {
    Id(i64),
    Name(String),
}

fn default_pagerduty_url() -> String {
    "https://events.pagerduty.com/v2/enqueue".into()
}
fn default_telegram_api_url() -> String {
    "https://api.telegram.org".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub security: SmtpSecurity,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default = "default_http_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    #[default]
    Starttls,
    Tls,
    None,
}

/// One route: a matcher, the channels it sends to, and notify overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Equality matchers on `severity`, `rule`, `tracker_id` and any label.
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    pub channels: Vec<String>,
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub group_wait: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub group_interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub repeat_interval: Option<Duration>,
    #[serde(default)]
    pub send_resolved: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    #[serde(default = "default_group_by")]
    pub group_by: Vec<String>,
    #[serde(default = "default_group_wait", deserialize_with = "de_duration")]
    pub group_wait: Duration,
    #[serde(default = "default_group_interval", deserialize_with = "de_duration")]
    pub group_interval: Duration,
    #[serde(default = "default_repeat_interval", deserialize_with = "de_duration")]
    pub repeat_interval: Duration,
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// How long a notification is retried before it is given up.
    #[serde(default = "default_retry_for", deserialize_with = "de_duration")]
    pub retry_for: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            group_by: default_group_by(),
            group_wait: default_group_wait(),
            group_interval: default_group_interval(),
            repeat_interval: default_repeat_interval(),
            send_resolved: true,
            retry_for: default_retry_for(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// SQLite file; `:memory:` keeps everything in memory (tests).
    #[serde(default = "default_storage_path")]
    pub path: String,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: default_storage_path(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Admin HTTP address; loopback by default. Empty disables the server. Without a
    /// token it must be a loopback address (`127.0.0.1`, `[::1]`, `localhost`) unless
    /// `insecure: true`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Bearer token for the admin API; empty means none.
    #[serde(default)]
    pub token: Option<Secret>,
    /// The URL the admin API is reached at through a reverse proxy, e.g.
    /// `https://alerts.example.com`: its host is accepted in `Host` and `Origin` besides
    /// the listen address and the loopback names.
    #[serde(default)]
    pub external_url: Option<String>,
    /// Allows a non-loopback `listen` without a token: anyone who reaches the port can then
    /// add silences and reload rules. For a network that is already closed (a pod behind
    /// an authenticating proxy).
    #[serde(default)]
    pub insecure: bool,
    /// How long a client has to send a request's headers (and, on a kept-alive connection,
    /// its next request) before the connection is closed.
    #[serde(default = "default_header_timeout", deserialize_with = "de_duration")]
    pub header_timeout: Duration,
    /// Connections served at once; more wait in the kernel's accept queue, so that idle
    /// clients cannot use up the process's file descriptors.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            token: None,
            external_url: None,
            insecure: false,
            header_timeout: default_header_timeout(),
            max_connections: default_max_connections(),
        }
    }
}

impl ServerConfig {
    /// True when a non-blank `token` is set.
    pub fn has_token(&self) -> bool {
        self.token
            .as_ref()
            .is_some_and(|t| !t.expose().trim().is_empty())
    }

    /// Checks what serde cannot: an open API stays on loopback, the external URL is a URL,
    /// the limits are usable.
    pub fn validate(&self) -> Result<(), String> {
        let listen = self.listen.trim();
        if !listen.is_empty() && !self.has_token() && !self.insecure && !is_loopback(listen) {
            return Err(format!(
                "server.listen `{listen}` is reachable beyond this machine and server.token is \
                 not set: anyone who reaches it could add silences and reload rules. Set \
                 server.token, listen on 127.0.0.1, or set `server.insecure: true`"
            ));
        }
        if let Some(external) = &self.external_url {
            let url = url::Url::parse(external.trim())
                .map_err(|e| format!("server.external_url: `{external}` is not a URL: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(format!(
                    "server.external_url: `{external}` must be an http:// or https:// URL with a host"
                ));
            }
        }
        if self.header_timeout.is_zero() {
            return Err("server.header_timeout must be more than 0s".into());
        }
        if self.max_connections == 0 {
            return Err("server.max_connections must be at least 1".into());
        }
        Ok(())
    }
}

/// True for a `host:port` on loopback: an IP literal (`127.0.0.1`, `[::1]`) or
/// `localhost`. Any other name may resolve beyond this machine.
fn is_loopback(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<std::net::SocketAddr>() {
        return addr.ip().is_loopback();
    }
    let host = listen.rsplit_once(':').map_or(listen, |(host, _)| host);
    host.eq_ignore_ascii_case("localhost")
}

/// A secret value: readable by the code that needs it, never by `Debug` or `Display`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Parses `500ms`, `90s`, `15m`, `4h`, `1d` or a combination such as `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("`{text}` has no unit (use ms, s, m, h or d)"))?;
        if digits == 0 {
            return Err(format!("`{text}` is not a duration like 90s, 15m or 4h"));
        }
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}` is not a duration like 90s, 15m or 4h"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            "d" => number * 86400.0,
            other => {
                return Err(format!(
                    "`{text}` has an unknown unit `{other}` (use ms, s, m, h or d)"
                ));
            }
        };
        total += Duration::from_secs_f64(seconds);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Serde adapter for duration strings.
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// Serde adapter for optional duration strings.
pub fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| parse_duration(&s).map_err(serde::de::Error::custom))
        .transpose()
}

fn de_timezone<'de, D: Deserializer<'de>>(d: D) -> Result<chrono_tz::Tz, D::Error> {
    let s = String::deserialize(d)?;
    s.parse::<chrono_tz::Tz>().map_err(|_| {
        serde::de::Error::custom(format!(
            "unknown time zone `{s}` (use an IANA name such as Europe/Berlin)"
        ))
    })
}

/// Replaces `${VAR}` and `${VAR:-default}` with the environment's values.
/// An unset variable without a default is an error naming the variable and line.
pub fn interpolate(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| {
            let line = text[..text.len() - rest.len() + start]
                .lines()
                .count()
                .max(1);
            format!("line {line}: `${{` without a closing `}}`")
        })?;
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        match (env(name), default) {
            (Some(v), None) => out.push_str(&v),
            (Some(v), Some(_)) if !v.is_empty() => out.push_str(&v),
            (_, Some(d)) => out.push_str(d),
            (None, None) => {
                let line = text[..text.len() - rest.len() + start]
                    .lines()
                    .count()
                    .max(1);
                return Err(format!(
                    "line {line}: environment variable `{name}` is not set (write `${{{name}:-default}}` for a default)"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Config {
    /// Reads, interpolates and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_yaml(&text, path, |name| std::env::var(name).ok())
    }

    /// Parses config text as if it came from `path`, reading variables from `env`.
    pub fn from_yaml(
        text: &str,
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let text = interpolate(text, env).map_err(invalid)?;
        let mut config: Config = serde_saphyr::from_str(&text).map_err(|e| {
            let (line, column) = e
                .location()
                .map_or((0, 0), |loc| (loc.line(), loc.column()));
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.to_string(),
            }
        })?;
        config.path = path.to_path_buf();
        config.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    /// Checks what serde cannot: one source, known channels in routes, valid zones.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.source.navixy, &self.source.simulator) {
            (Some(_), Some(_)) => {
                return Err("source: set exactly one of `navixy` or `simulator`, not both".into());
            }
            (None, None) => return Err("source: set one of `navixy` or `simulator`".into()),
            (Some(n), None) => {
                let has_hash = n.hash.as_ref().is_some_and(|h| !h.is_empty());
                let has_login = n.login.is_some() && n.password.is_some();
                if !has_hash && !has_login {
                    return Err("source.navixy: set `hash`, or `login` and `password`".into());
                }
            }
            (None, Some(_)) => {}
        }
        for (i, route) in self.routes.iter().enumerate() {
            for ch in &route.channels {
                if !self.channels.contains_key(ch) {
                    return Err(format!(
                        "routes[{i}]: unknown channel `{ch}` (channels: {})",
                        self.channel_names()
                    ));
                }
            }
        }
        self.server.validate()?;
        for (name, zone) in &self.zones {
            match (&zone.circle, &zone.polygon) {
                (Some(c), None) if c.radius_m > 0.0 => {}
                (Some(_), None) => return Err(format!("zones.{name}: radius_m must be > 0")),
                (None, Some(p)) if p.len() >= 3 => {}
                (None, Some(_)) => {
                    return Err(format!("zones.{name}: a polygon needs at least 3 points"));
                }
                _ => {
                    return Err(format!(
                        "zones.{name}: set exactly one of `circle` or `polygon`"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The channel names, for error messages.
    pub fn channel_names(&self) -> String {
        let names: Vec<&str> = self.channels.keys().map(String::as_str).collect();
        if names.is_empty() {
            "none defined".into()
        } else {
            names.join(", ")
        }
    }

    /// Resolves a path from the config against the config file's folder.
    pub fn resolve(&self, p: &str) -> PathBuf {
        let path = Path::new(p);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }
}

fn default_subscribe() -> Vec<Subscription> {
    vec![Subscription::StateBatch, Subscription::ReadingsBatch]
}
fn default_rate_limit() -> Duration {
    Duration::from_secs(5)
}
fn default_timezone() -> chrono_tz::Tz {
    chrono_tz::UTC
}
fn default_source_down_after() -> Duration {
    Duration::from_secs(120)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(60)
}
fn default_max_frame_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_tracker_refresh() -> Duration {
    Duration::from_secs(600)
}
fn default_sim_trackers() -> u32 {
    20
}
fn default_sim_seed() -> u64 {
    42
}
fn default_sim_speed() -> f64 {
    60.0
}
fn default_eval_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_max_event_age() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_http_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_group_by() -> Vec<String> {
    vec!["rule".into()]
}
fn default_group_wait() -> Duration {
    Duration::from_secs(10)
}
fn default_group_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_repeat_interval() -> Duration {
    Duration::from_secs(4 * 3600)
}
fn default_retry_for() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_true() -> bool {
    true
}
fn default_storage_path() -> String {
    "data/navixy-alerts.db".into()
}
fn default_listen() -> String {
    "127.0.0.1:9898".into()
}
fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_connections() -> usize {
    512
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn interpolation() {
        let e = env(&[("HASH", "abc"), ("EMPTY", "")]);
        assert_eq!(interpolate("hash: ${HASH}", &e).unwrap(), "hash: abc");
        assert_eq!(
            interpolate("a: ${MISSING:-dflt} b: ${HASH:-x}", &e).unwrap(),
            "a: dflt b: abc"
        );
        // Like the shell's `:-`: an empty value takes the default too.
        assert_eq!(interpolate("t: ${EMPTY:-none}", &e).unwrap(), "t: none");
        assert_eq!(interpolate("t: ${EMPTY}", &e).unwrap(), "t: ");
        assert_eq!(interpolate("t: ${ADMIN:-}", &e).unwrap(), "t: ");
        assert_eq!(
            interpolate("no vars, $HOME stays", &e).unwrap(),
            "no vars, $HOME stays"
        );
        assert_eq!(
            interpolate("a: 1\nb: ${NOPE}\n", &e).unwrap_err(),
            "line 2: environment variable `NOPE` is not set (write `${NOPE:-default}` for a default)"
        );
        assert_eq!(
            interpolate("a: 1\n\nb: ${OPEN\n", &e).unwrap_err(),
            "line 3: `${` without a closing `}`"
        );
    }

    #[test]
    fn durations() {
        let ok = |s: &str| parse_duration(s).unwrap();
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("90s"), Duration::from_secs(90));
        assert_eq!(ok("15m"), Duration::from_secs(900));
        assert_eq!(ok("4h"), Duration::from_secs(4 * 3600));
        assert_eq!(ok("1d"), Duration::from_secs(86400));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok(" 10s "), Duration::from_secs(10));
        assert_eq!(parse_duration("").unwrap_err(), "empty duration");
        assert_eq!(
            parse_duration("10").unwrap_err(),
            "`10` has no unit (use ms, s, m, h or d)"
        );
        assert_eq!(
            parse_duration("5x").unwrap_err(),
            "`5x` has an unknown unit `x` (use ms, s, m, h or d)"
        );
        assert_eq!(
            parse_duration("m").unwrap_err(),
            "`m` is not a duration like 90s, 15m or 4h"
        );
        assert_eq!(
            parse_duration("1..5s").unwrap_err(),
            "`1..5s` is not a duration like 90s, 15m or 4h"
        );
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("whsec_topsecret");
        assert_eq!(format!("{s} {s:?}"), "*** \"***\"");
        assert_eq!(s.expose(), "whsec_topsecret");
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let text = "source:\n  simulator: {}\nrules: [rules/*.yaml]\n";
        let config =
            Config::from_yaml(text, Path::new("/etc/navixy/alerts.yaml"), env(&[])).unwrap();
        assert_eq!(
            config.resolve("rules/a.yaml"),
            PathBuf::from("/etc/navixy/rules/a.yaml")
        );
        assert_eq!(config.resolve("/abs/b.yaml"), PathBuf::from("/abs/b.yaml"));
        assert_eq!(config.engine.eval_interval, Duration::from_secs(10));
        assert_eq!(config.engine.max_event_age, Duration::from_secs(900));
    }
}
