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
    /// One Navixy account (or the simulator): shorthand for a `sources:` list of one,
    /// named [`DEFAULT_SOURCE`] unless it says `name:`. Moved into `sources` on load.
    #[serde(default)]
    pub source: Option<SourceConfig>,
    /// The Navixy accounts (or simulators) to watch, each with its own `name`: the
    /// `source` label of its alerts, and part of its trackers' identity. After loading,
    /// the one list of sources, the shorthand's included ([`Config::sources`]).
    #[serde(default)]
    pub sources: Option<Vec<SourceEntry>>,
    /// Rule files or globs; relative paths are relative to the config file's folder.
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default)]
    pub engine: EngineConfig,
    /// Geofences for `in_zone("name")` and `zones()`: local shapes and a GeoJSON file.
    #[serde(default)]
    pub zones: ZonesConfig,
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
    /// Several instances sharing one PostgreSQL database: each source is run by the one
    /// instance holding its lease. Absent: this instance runs every source alone.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// Inhibition: while a source alert fires, the target alerts with equal labels are
    /// not notified (Alertmanager's `inhibit_rules`).
    #[serde(default)]
    pub inhibit_rules: Vec<InhibitRuleConfig>,
    /// Named time intervals (Alertmanager's syntax), for routes' `mute_time_intervals`
    /// and `active_time_intervals` and rules' `schedule: NAME`.
    #[serde(default)]
    pub time_intervals: Vec<crate::time_intervals::NamedTimeInterval>,
    /// The folder of the config file; relative paths resolve against it. Not a key.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The config file itself, for messages. Not a key.
    #[serde(skip)]
    pub path: PathBuf,
}

// --- Sources: `source:` (one account) and `sources:` (several) ---

/// The name of the `source:` shorthand's source when it does not set `name:`. Alerts of a
/// source of this name keep the fingerprints they had before sources had names.
pub const DEFAULT_SOURCE: &str = "navixy";

/// `source:`: exactly one of `navixy` or `simulator`, and optionally a name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Default [`DEFAULT_SOURCE`].
    #[serde(default)]
    pub name: Option<serde_saphyr::Spanned<String>>,
    pub navixy: Option<NavixyConfig>,
    pub simulator: Option<SimulatorConfig>,
}

/// One entry of `sources:`: a named Navixy account (or simulator).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceEntry {
    /// `[a-z0-9_-]+`, unique: the `source` label of the source's alerts and metrics.
    pub name: serde_saphyr::Spanned<String>,
    pub navixy: Option<NavixyConfig>,
    pub simulator: Option<SimulatorConfig>,
}

impl SourceEntry {
    pub fn name(&self) -> &str {
        &self.name.value
    }

    /// The shorthand as a list entry.
    fn from_shorthand(source: SourceConfig) -> SourceEntry {
        let unknown = serde_saphyr::Location::UNKNOWN;
        SourceEntry {
            name: source.name.unwrap_or_else(|| {
                serde_saphyr::Spanned::new(DEFAULT_SOURCE.to_string(), unknown, unknown)
            }),
            navixy: source.navixy,
            simulator: source.simulator,
        }
    }

    /// Checks one source. `at` is how messages name it: `source` for the shorthand,
    /// `line N: sources[north]` for a list entry (`check` turns the line into file:line).
    fn validate(&self, at: &str) -> Result<(), String> {
        let name = self.name();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(format!(
                "{at}.name: `{name}` is not a source name (lowercase letters, digits, `_` and `-`: it goes into labels and metrics)"
            ));
        }
        match (&self.navixy, &self.simulator) {
            (Some(_), Some(_)) => Err(format!(
                "{at}: set exactly one of `navixy` or `simulator`, not both"
            )),
            (None, None) => Err(format!("{at}: set one of `navixy` or `simulator`")),
            (Some(n), None) => {
                let has_hash = n.hash.as_ref().is_some_and(|h| !h.is_empty());
                let has_login = n.login.is_some() && n.password.is_some();
                if !has_hash && !has_login {
                    return Err(format!(
                        "{at}.navixy: set `hash`, or `login` and `password`"
                    ));
                }
                if n.subscribe.is_empty() {
                    return Err(format!("{at}.navixy.subscribe: needs at least one event"));
                }
                if let TrackerSelection::Selected(ids) = &n.trackers {
                    if ids.is_empty() {
                        return Err(format!(
                            "{at}.navixy.trackers: an empty list selects nothing (write `all`)"
                        ));
                    }
                    if let Some(id) = ids.iter().find(|id| **id <= 0) {
                        return Err(format!(
                            "{at}.navixy.trackers: `{id}` is not a tracker id (ids are positive)"
                        ));
                    }
                }
                Ok(())
            }
            (None, Some(_)) => Ok(()),
        }
    }
}

impl Config {
    /// The sources, in the order given: a source's position is its index in the engine's
    /// tracker keys (`state::tracker_key`).
    pub fn sources(&self) -> &[SourceEntry] {
        self.sources.as_deref().unwrap_or_default()
    }

    /// `source:` and `sources:`: exactly one of them, names unique, each source valid;
    /// simulators all at one speed and not beside live accounts (they share one clock).
    fn validate_sources(&self) -> Result<(), String> {
        let at = |entry: &SourceEntry| {
            let line = entry.name.referenced.line();
            if line > 0 {
                format!("line {line}: sources[{}]", entry.name())
            } else {
                "source".to_string()
            }
        };
        match (&self.source, self.sources.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(
                    "sources: set `source` (one account) or `sources` (a list), not both".into(),
                );
            }
            (None, Some([])) => {
                return Err(
                    "sources: an empty list watches nothing; name at least one source".into(),
                );
            }
            (None, None) => {
                return Err("source: set `source` (one account) or `sources` (a list)".into());
            }
            (Some(shorthand), None) => {
                let entry = SourceEntry::from_shorthand(shorthand.clone());
                let at = match entry.name.referenced.line() {
                    0 => "source".to_string(),
                    line => format!("line {line}: source"),
                };
                return entry.validate(&at);
            }
            (None, Some(_)) => {}
        }
        let sources = self.sources();
        for (i, entry) in sources.iter().enumerate() {
            let here = at(entry);
            entry.validate(&here)?;
            if sources[..i].iter().any(|e| e.name() == entry.name()) {
                return Err(format!(
                    "{here}.name: `{}` names another source too (names are unique)",
                    entry.name()
                ));
            }
        }
        let speeds: Vec<f64> = sources
            .iter()
            .filter_map(|e| e.simulator.as_ref().map(|s| s.speed))
            .collect();
        if !speeds.is_empty() {
            if let Some(live) = sources.iter().find(|e| e.navixy.is_some()) {
                return Err(format!(
                    "{}: a live Navixy account cannot run beside a `simulator` source (the simulator runs on its own clock)",
                    at(live)
                ));
            }
            if let Some(other) = sources
                .iter()
                .find(|e| e.simulator.as_ref().is_some_and(|s| s.speed != speeds[0]))
            {
                return Err(format!(
                    "{}.simulator.speed: every simulator source runs at the first one's speed ({})",
                    at(other),
                    speeds[0]
                ));
            }
        }
        Ok(())
    }
}

/// A live Navixy account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NavixyConfig {
    /// REST base, e.g. `https://api.eu.navixy.com/v2`.
    #[serde(deserialize_with = "de_http_url")]
    pub api_url: String,
    /// WebSocket URL; default: `api_url` with `wss://` and `/event/subscription`.
    #[serde(default, deserialize_with = "de_opt_ws_url")]
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
    /// 0s to 1h.
    #[serde(
        default = "default_rate_limit",
        deserialize_with = "de_duration_in::<_, 0, HOUR_MS>"
    )]
    pub rate_limit: Duration,
    /// IANA zone of Navixy's offset-less times.
    #[serde(default = "default_timezone", deserialize_with = "de_timezone")]
    pub timezone: chrono_tz::Tz,
    /// No working subscription for this long raises the engine alert `navixy_source_down`
    /// (more than 0, at most 7d).
    #[serde(
        default = "default_source_down_after",
        deserialize_with = "de_duration_in::<_, 1, WEEK_MS>"
    )]
    pub source_down_after: Duration,
    /// Cap of the exponential reconnect backoff (more than 0, at most 1h).
    #[serde(
        default = "default_max_backoff",
        deserialize_with = "de_duration_in::<_, 1, HOUR_MS>"
    )]
    pub max_backoff: Duration,
    /// Frames larger than this are counted as oversized and skipped (1 KiB to 1 GiB).
    #[serde(
        default = "default_max_frame_bytes",
        deserialize_with = "de_uint_in::<_, usize, 1024, GIB>"
    )]
    pub max_frame_bytes: usize,
    /// How often the tracker list (ids, labels) is refreshed besides each reconnect
    /// (100ms to 7d).
    #[serde(
        default = "default_tracker_refresh",
        deserialize_with = "de_duration_in::<_, 100, WEEK_MS>"
    )]
    pub tracker_refresh: Duration,
}

/// The built-in simulator, started in-process on a loopback port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorConfig {
    /// 1 to 100000.
    #[serde(
        default = "default_sim_trackers",
        deserialize_with = "de_uint_in::<_, u32, 1, 100_000>"
    )]
    pub trackers: u32,
    #[serde(default = "default_sim_seed")]
    pub seed: u64,
    /// Simulated seconds per real second (more than 0, at most 1000000).
    #[serde(default = "default_sim_speed", deserialize_with = "de_speed")]
    pub speed: f64,
    /// Send the documented (bare) state shapes instead of the wire's tagged items.
    #[serde(default)]
    pub documented_shapes: bool,
    /// Malformed frames and connection drops.
    #[serde(default)]
    pub chaos: bool,
    /// The first tracker id (default 21001): a second simulated account may overlap the
    /// first one's ids.
    #[serde(
        default = "default_sim_first_tracker",
        deserialize_with = "de_uint_in::<_, i64, 1, 1_000_000_000_000>"
    )]
    pub first_tracker: i64,
}

fn default_sim_first_tracker() -> i64 {
    21_001
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
    /// The ticker that re-evaluates silent trackers (100ms to 1h).
    #[serde(
        default = "default_eval_interval",
        deserialize_with = "de_duration_in::<_, 100, HOUR_MS>"
    )]
    pub eval_interval: Duration,
    /// Older updates change state but never notify (more than 0, at most 365d).
    #[serde(
        default = "default_max_event_age",
        deserialize_with = "de_duration_in::<_, 1, YEAR_MS>"
    )]
    pub max_event_age: Duration,
    /// Tracker shards, 1 to 256; default: the number of cores.
    #[serde(default, deserialize_with = "de_opt_uint_in::<_, usize, 1, 256>")]
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

/// The `zones:` section: named local zones, under the reserved key `file` a GeoJSON
/// zone file (relative to the config's folder), and under the reserved key `navixy` the
/// import of the account's own geofences. A local zone wins a label clash.
#[derive(Debug, Clone, Default)]
pub struct ZonesConfig {
    /// The GeoJSON file, as written.
    pub file: Option<String>,
    /// Import Navixy's geofences (`zone/list`) by label.
    pub navixy: Option<NavixyZonesConfig>,
    /// The zones written in the config, by label.
    pub local: BTreeMap<String, ZoneConfig>,
}

impl<'de> Deserialize<'de> for ZonesConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ZonesConfig, D::Error> {
        struct Zones;
        impl<'de> serde::de::Visitor<'de> for Zones {
            type Value = ZonesConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of zone names to shapes, and optionally `file: zones.geojson`")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ZonesConfig, A::Error> {
                let mut out = ZonesConfig::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key == ZonesConfig::FILE_KEY {
                        let path: String = map.next_value()?;
                        if path.trim().is_empty() {
                            return Err(serde::de::Error::custom(
                                "empty (name a GeoJSON zone file)",
                            ));
                        }
                        out.file = Some(path);
                    } else if key == ZonesConfig::NAVIXY_KEY {
                        out.navixy = Some(map.next_value()?);
                    } else {
                        let zone: ZoneConfig = map.next_value()?;
                        out.local.insert(key, zone);
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(Zones)
    }
}

impl ZonesConfig {
    /// The key that names the GeoJSON file rather than a zone.
    pub const FILE_KEY: &'static str = "file";
    /// The key that imports Navixy's geofences rather than naming a zone.
    pub const NAVIXY_KEY: &'static str = "navixy";
}

/// `zones: { navixy: { refresh: 5m } }`: the account's geofences, refreshed while the
/// daemon runs. Needs a Navixy source (or the simulator, which serves zones too).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NavixyZonesConfig {
    /// How often zones (and groups, tags, drivers) are fetched again (10s to 1d). A failed
    /// refresh keeps the last good set.
    #[serde(
        default = "default_zone_refresh",
        deserialize_with = "de_duration_in::<_, 10_000, DAY_MS>"
    )]
    pub refresh: Duration,
}

fn default_zone_refresh() -> Duration {
    Duration::from_secs(300)
}

/// A geofence: a circle, a polygon of `[lat, lng]` points, or a sausage (a route with a
/// radius).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    #[serde(default)]
    pub circle: Option<Circle>,
    #[serde(default)]
    pub polygon: Option<Vec<[f64; 2]>>,
    #[serde(default)]
    pub sausage: Option<Sausage>,
}

/// Every point within `radius_m` of the polyline through `points` (`[lat, lng]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sausage {
    pub points: Vec<[f64; 2]>,
    /// More than 0, at most 20000 km.
    #[serde(deserialize_with = "de_radius")]
    pub radius_m: f64,
}

impl ZoneConfig {
    /// Checks what serde cannot: exactly one shape, enough points, each a [lat, lng].
    /// The message starts with the key under the zone (`.polygon: ...`) or `: `.
    pub fn validate(&self) -> Result<(), String> {
        let points = |key: &str, points: &[[f64; 2]]| match points
            .iter()
            .find(|[lat, lng]| !(-90.0..=90.0).contains(lat) || !(-180.0..=180.0).contains(lng))
        {
            Some([lat, lng]) => Err(format!(
                ".{key}: `[{lat}, {lng}]` is not a [lat, lng] point (lat -90 to 90, lng -180 to 180)"
            )),
            None => Ok(()),
        };
        match (&self.circle, &self.polygon, &self.sausage) {
            (Some(c), None, None) if c.radius_m > 0.0 => Ok(()),
            (Some(_), None, None) => Err(": radius_m must be > 0".into()),
            (None, Some(p), None) if p.len() >= 3 => points("polygon", p),
            (None, Some(_), None) => Err(": a polygon needs at least 3 points".into()),
            (None, None, Some(s)) if s.points.len() >= 2 => points("sausage.points", &s.points),
            (None, None, Some(_)) => {
                Err(": a sausage needs at least 2 points (the route it follows)".into())
            }
            _ => Err(": set exactly one of `circle`, `polygon` or `sausage`".into()),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Circle {
    /// -90 to 90.
    #[serde(deserialize_with = "de_latitude")]
    pub lat: f64,
    /// -180 to 180.
    #[serde(deserialize_with = "de_longitude")]
    pub lng: f64,
    /// More than 0, at most 20000 km.
    #[serde(deserialize_with = "de_radius")]
    pub radius_m: f64,
}

/// A notification channel, tagged by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChannelConfig {
    Stdout {
        /// Told at once, by a notification of its own, when an alert it heard of is
        /// acknowledged (default: on for `pagerduty`, off for the others).
        #[serde(default)]
        send_acks: Option<bool>,
        /// One JSON object per line instead of a readable line.
        #[serde(default, deserialize_with = "de_bool")]
        json: bool,
    },
    Webhook {
        /// Told at once, by a notification of its own, when an alert it heard of is
        /// acknowledged (default: on for `pagerduty`, off for the others).
        #[serde(default)]
        send_acks: Option<bool>,
        url: String,
        /// Standard Webhooks secret, `whsec_<base64>`; without it requests are unsigned.
        #[serde(default)]
        secret: Option<Secret>,
        #[serde(default = "default_http_timeout", deserialize_with = "de_timeout")]
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
        /// Told at once, by a notification of its own, when an alert it heard of is
        /// acknowledged (default: on for `pagerduty`, off for the others).
        #[serde(default)]
        send_acks: Option<bool>,
        webhook_url: Secret,
        #[serde(default = "default_http_timeout", deserialize_with = "de_timeout")]
        timeout: Duration,
    },
    /// PagerDuty Events API v2: one event per alert, deduplicated on the fingerprint.
    Pagerduty {
        /// Told at once, by a notification of its own, when an alert it heard of is
        /// acknowledged (default: on for `pagerduty`, off for the others).
        #[serde(default)]
        send_acks: Option<bool>,
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
        /// Told at once, by a notification of its own, when an alert it heard of is
        /// acknowledged (default: on for `pagerduty`, off for the others).
        #[serde(default)]
        send_acks: Option<bool>,
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
        /// Told at once, by a notification of its own, when an alert it heard of is
        /// acknowledged (default: on for `pagerduty`, off for the others).
        #[serde(default)]
        send_acks: Option<bool>,
        webhook_url: Secret,
        #[serde(default = "default_http_timeout", deserialize_with = "de_duration")]
        timeout: Duration,
    },
    Email {
        /// Told at once, by a notification of its own, when an alert it heard of is
        /// acknowledged (default: on for `pagerduty`, off for the others).
        #[serde(default)]
        send_acks: Option<bool>,
        smtp: SmtpConfig,
        from: String,
        to: Vec<String>,
        /// minijinja template of the subject line.
        #[serde(default)]
        subject: Option<String>,
    },
    Alertmanager {
        /// Told at once, by a notification of its own, when an alert it heard of is
        /// acknowledged (default: on for `pagerduty`, off for the others).
        #[serde(default)]
        send_acks: Option<bool>,
        /// Base URL; `/api/v2/alerts` is appended.
        url: String,
        #[serde(default = "default_http_timeout", deserialize_with = "de_timeout")]
        timeout: Duration,
    },
}

impl ChannelConfig {
    /// Whether acks are sent to this channel (`send_acks`; PagerDuty by default, so that
    /// its incident is acknowledged with the alert).
    pub fn send_acks(&self) -> bool {
        let (set, default) = match self {
            ChannelConfig::Stdout { send_acks, .. }
            | ChannelConfig::Webhook { send_acks, .. }
            | ChannelConfig::Slack { send_acks, .. }
            | ChannelConfig::Telegram { send_acks, .. }
            | ChannelConfig::Teams { send_acks, .. }
            | ChannelConfig::Email { send_acks, .. }
            | ChannelConfig::Alertmanager { send_acks, .. } => (send_acks, false),
            ChannelConfig::Pagerduty { send_acks, .. } => (send_acks, true),
        };
        set.unwrap_or(default)
    }

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
    /// 1 to 65535; default: by `security`.
    #[serde(default, deserialize_with = "de_smtp_port")]
    pub port: Option<u16>,
    #[serde(default)]
    pub security: SmtpSecurity,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default = "default_http_timeout", deserialize_with = "de_timeout")]
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
    #[serde(default, deserialize_with = "de_opt_duration_in::<_, 0, DAY_MS>")]
    pub group_wait: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration_in::<_, 1, MONTH_MS>")]
    pub group_interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration_in::<_, 1, YEAR_MS>")]
    pub repeat_interval: Option<Duration>,
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// Names of `time_intervals` during which this route's channels are not notified.
    #[serde(default)]
    pub mute_time_intervals: Vec<String>,
    /// Names of `time_intervals` outside of which this route's channels are not notified.
    #[serde(default)]
    pub active_time_intervals: Vec<String>,
    /// Channels added while the alert stays firing and unacknowledged, `after` counting
    /// from when it started firing; `after` increases from step to step.
    #[serde(default)]
    pub escalate: Vec<EscalateStep>,
}

/// One step of a route's `escalate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalateStep {
    /// 0s to 365d after the alert started firing.
    #[serde(deserialize_with = "de_duration_in::<_, 0, YEAR_MS>")]
    pub after: Duration,
    pub channels: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    #[serde(default = "default_group_by")]
    pub group_by: Vec<String>,
    /// 0s to 1d.
    #[serde(
        default = "default_group_wait",
        deserialize_with = "de_duration_in::<_, 0, DAY_MS>"
    )]
    pub group_wait: Duration,
    /// More than 0, at most 30d.
    #[serde(
        default = "default_group_interval",
        deserialize_with = "de_duration_in::<_, 1, MONTH_MS>"
    )]
    pub group_interval: Duration,
    /// More than 0, at most 365d.
    #[serde(
        default = "default_repeat_interval",
        deserialize_with = "de_duration_in::<_, 1, YEAR_MS>"
    )]
    pub repeat_interval: Duration,
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// How long a notification is retried before it is given up (more than 0, at most 365d).
    #[serde(
        default = "default_retry_for",
        deserialize_with = "de_duration_in::<_, 1, YEAR_MS>"
    )]
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

// --- Cluster: several instances, one lease per source ---

/// `cluster:`: this instance's name and the lease by which it holds a source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This instance's name, unique among the instances sharing the database (the
    /// hostname is a good one: `instance: ${HOSTNAME}`). It is the lease's owner in the
    /// database, `/readyz` and the console. Printable, no spaces, at most 64 characters.
    pub instance: String,
    /// How long a lease lasts without renewal: the longest an instance that stopped
    /// (killed, frozen, cut off) keeps its sources from the others, so takeover happens
    /// within two leases. 1s to 10m, default 15s.
    #[serde(
        default = "default_cluster_lease",
        deserialize_with = "de_duration_in::<_, 1_000, { 10 * 60_000 }>"
    )]
    pub lease: Duration,
    /// How often the owner renews its leases (and a standby looks for a free one).
    /// Default a third of `lease`; less than `lease`.
    #[serde(
        default,
        deserialize_with = "de_opt_duration_in::<_, 100, { 10 * 60_000 }>"
    )]
    pub renew: Option<Duration>,
}

impl ClusterConfig {
    /// `renew`, or a third of the lease: two renewals may fail before the lease runs out.
    pub fn renew_every(&self) -> Duration {
        self.renew.unwrap_or(self.lease / 3)
    }

    /// The instance name and `renew` against `lease`. Messages start with the dotted key.
    fn validate(&self) -> Result<(), String> {
        let name = self.instance.trim();
        if name.is_empty() {
            return Err(
                "cluster.instance: empty; name this instance (`${HOSTNAME}` is a good name)".into(),
            );
        }
        if name != self.instance
            || name.chars().count() > 64
            || name.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "cluster.instance: `{}` is not an instance name (printable, no spaces, at most 64 characters)",
                self.instance
            ));
        }
        if let Some(renew) = self.renew
            && renew >= self.lease
        {
            return Err(format!(
                "cluster.renew: {} is not less than the lease ({}): the lease would run out between renewals",
                human_duration(renew),
                human_duration(self.lease)
            ));
        }
        Ok(())
    }
}

fn default_cluster_lease() -> Duration {
    Duration::from_secs(15)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// SQLite file; `:memory:` keeps everything in memory (tests).
    #[serde(default = "default_storage_path")]
    pub path: String,
    /// How long the alert history is kept (transitions and what happened to them on each
    /// channel); older entries are pruned in small batches. 1 hour to 1 year, default 30d.
    #[serde(
        default = "default_history_retention",
        deserialize_with = "de_duration_in::<_, HOUR_MS, YEAR_MS>"
    )]
    pub history_retention: Duration,
    /// A PostgreSQL database instead of the SQLite file (`storage.path` then unset).
    #[serde(default)]
    pub postgres: Option<PostgresConfig>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: default_storage_path(),
            history_retention: default_history_retention(),
            postgres: None,
        }
    }
}

/// `storage.postgres`: where the PostgreSQL database is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/database` (or libpq's `key=value` form),
    /// usually `${DATABASE_URL}`. Plain TCP: no TLS.
    pub url: String,
}

impl PostgresConfig {
    /// Checks that the URL reads as a PostgreSQL connection string; the message never
    /// repeats its password.
    fn validate(&self) -> Result<(), String> {
        let shown = crate::text::redact_url(&self.url);
        match self.url.parse::<postgres::Config>() {
            Ok(_) if self.url.trim().is_empty() => {
                Err("storage.postgres.url: empty (postgres://user:password@host/database)".into())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(format!(
                "storage.postgres.url: `{shown}` is not a PostgreSQL URL: {e} \
                 (postgres://user:password@host:port/database)"
            )),
        }
    }
}

fn default_history_retention() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Admin HTTP address; loopback by default. Empty disables the server. Without a
    /// token it must be a loopback address (`127.0.0.1`, `[::1]`, `localhost`) unless
    /// `insecure: true`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Bearer token for the admin API; empty means none. An admin named `admin`.
    #[serde(default)]
    pub token: Option<Secret>,
    /// More bearer tokens, each with a name and a role (see [`AccessToken`]).
    #[serde(default)]
    pub tokens: Vec<AccessToken>,
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
    /// The console's map tiles: a URL template with `{z}`, `{x}` and `{y}` (and
    /// optionally `{s}`), e.g. `https://tile.openstreetmap.org/{z}/{x}/{y}.png`. The browser
    /// fetches them, not the daemon. Without it the map draws zones and positions on a
    /// blank background, and nothing is fetched from elsewhere.
    #[serde(default)]
    pub map_tiles: Option<String>,
    /// A folder of recordings (`run --record` writes them): the Rules page's playground
    /// offers the `.jsonl` files directly in it to run a condition over. Relative to the
    /// config file's folder. The console only ever opens a file listed here.
    #[serde(default)]
    pub recordings: Option<PathBuf>,
}

/// One named token of the admin API (`server.tokens[]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessToken {
    /// Recorded as who acknowledged or silenced.
    pub name: String,
    pub token: Secret,
    pub role: Role,
}

/// What a token may do, each role all that the one before may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads (GET).
    Viewer,
    /// Also acknowledges alerts and adds or removes silences.
    Operator,
    /// Also reloads the rules and retries notifications.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            token: None,
            tokens: Vec::new(),
            external_url: None,
            insecure: false,
            header_timeout: default_header_timeout(),
            max_connections: default_max_connections(),
            map_tiles: None,
            recordings: None,
        }
    }
}

impl ServerConfig {
    /// True when a non-blank `token` or any of `tokens` is set.
    pub fn has_token(&self) -> bool {
        self.token
            .as_ref()
            .is_some_and(|t| !t.expose().trim().is_empty())
            || !self.tokens.is_empty()
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
        let mut names: Vec<&str> = Vec::new();
        if self
            .token
            .as_ref()
            .is_some_and(|t| !t.expose().trim().is_empty())
        {
            names.push("admin");
        }
        for (i, t) in self.tokens.iter().enumerate() {
            let name = t.name.trim();
            if name.is_empty() {
                return Err(format!("server.tokens[{i}].name: empty"));
            }
            if t.token.expose().trim().is_empty() {
                return Err(format!(
                    "server.tokens[{i}].token: empty (is its environment variable set?)"
                ));
            }
            if names.contains(&name) {
                return Err(format!(
                    "server.tokens[{i}].name: `{name}` is taken (server.token is named `admin`)"
                ));
            }
            names.push(name);
        }
        if self.max_connections == 0 {
            return Err("server.max_connections must be at least 1".into());
        }
        if let Some(tiles) = &self.map_tiles {
            let t = tiles.trim();
            let templated = ["{z}", "{x}", "{y}"].iter().all(|p| t.contains(p));
            if !(t.starts_with("https://") || t.starts_with("http://")) || !templated {
                return Err(format!(
                    "server.map_tiles: `{tiles}` must be an http(s) URL template with {{z}}, {{x}} and {{y}}"
                ));
            }
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

/// Standard Webhooks keys are 24 to 64 random bytes: a shorter key is refused, a secret
/// that is not `whsec_` + base64 too (the dispatcher decodes it the same way).
/// One inhibit rule (Alertmanager's keys): while an alert matching `source_matchers`
/// fires, alerts matching `target_matchers` with the same values of the `equal` labels
/// are not notified.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRuleConfig {
    #[serde(default)]
    pub source_matchers: Matchers,
    pub target_matchers: Matchers,
    #[serde(default)]
    pub equal: Vec<String>,
}

/// Label matchers in either of Alertmanager's forms: a map (`{severity: "=~warning|info"}`,
/// as routes' `match`) or a list of matcher strings (`["severity=~warning|info",
/// 'rule!="noisy"']`). Checked while read, so a bad regex names its line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matchers(pub Vec<MatcherConfig>);

/// One matcher: `name`, then `=`, `!=`, `=~` or `!~`, then `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct MatcherConfig {
    pub name: String,
    pub value: String,
    pub is_regex: bool,
    pub is_equal: bool,
}

impl MatcherConfig {
    fn new(name: &str, op: &str, value: &str) -> Result<MatcherConfig, String> {
        let (is_regex, is_equal) = match op {
            "=" => (false, true),
            "!=" => (false, false),
            "=~" => (true, true),
            "!~" => (true, false),
            other => return Err(format!("`{other}` is not a matcher operator")),
        };
        if is_regex && let Err(e) = regex::Regex::new(&format!("^(?:{value})$")) {
            return Err(format!("{name}: `{value}` is not a valid regex: {e}"));
        }
        Ok(MatcherConfig {
            name: name.to_owned(),
            value: value.to_owned(),
            is_regex,
            is_equal,
        })
    }

    /// A map entry: `value` may start with `=~`, `!~` or `!=` (as in routes' `match`).
    pub fn from_entry(name: &str, value: &str) -> Result<MatcherConfig, String> {
        for op in ["=~", "!~", "!="] {
            if let Some(rest) = value.strip_prefix(op) {
                return MatcherConfig::new(name, op, rest);
            }
        }
        MatcherConfig::new(name, "=", value)
    }
}

/// Alertmanager's matcher strings: `name=value`, `name=~"regex"`, or several in braces
/// separated by commas (`{rule="a", severity!="info"}`). Values may be double-quoted.
pub fn parse_matchers(text: &str) -> Result<Vec<MatcherConfig>, String> {
    let trimmed = text.trim();
    let inner = match trimmed.strip_prefix('{') {
        Some(rest) => rest
            .strip_suffix('}')
            .ok_or_else(|| format!("`{text}`: `{{` without a closing `}}`"))?,
        None => trimmed,
    };
    let mut out = Vec::new();
    for part in split_outside_quotes(inner) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let name_end = part
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(part.len());
        let name = &part[..name_end];
        let rest = part[name_end..].trim_start();
        let op = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .ok_or_else(|| {
                format!("`{part}` is not a matcher (write name=value, name!=value, name=~regex or name!~regex)")
            })?;
        if name.is_empty() {
            return Err(format!("`{part}`: the label name is missing"));
        }
        let raw = rest[op.len()..].trim();
        let value = match raw.strip_prefix('"') {
            Some(quoted) => {
                unquote(quoted).ok_or_else(|| format!("`{part}`: unterminated quote"))?
            }
            None => raw.to_owned(),
        };
        out.push(MatcherConfig::new(name, op, &value)?);
    }
    if out.is_empty() {
        return Err(format!("`{text}` holds no matcher"));
    }
    Ok(out)
}

/// Splits on commas that are not inside double quotes.
fn split_outside_quotes(text: &str) -> Vec<&str> {
    let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// The text of a double-quoted value after its opening quote, with `\"`, `\\` and `\n`
/// read; `None` without a closing quote (or with text after it).
fn unquote(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            '"' => return chars.as_str().trim().is_empty().then_some(out),
            c => out.push(c),
        }
    }
    None
}

impl<'de> Deserialize<'de> for Matchers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Map(BTreeMap<String, String>),
            List(Vec<String>),
        }
        let raw = Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "matchers: write a map (`{rule: tracker_offline}`) or a list of matchers (`[\"rule=tracker_offline\"]`)",
            )
        })?;
        let matchers = match raw {
            Raw::Map(map) => map
                .iter()
                .map(|(name, value)| MatcherConfig::from_entry(name, value))
                .collect::<Result<Vec<_>, _>>(),
            Raw::List(list) => list.iter().try_fold(Vec::new(), |mut all, text| {
                all.extend(parse_matchers(text)?);
                Ok(all)
            }),
        };
        matchers
            .map(Matchers)
            .map_err(|e| serde::de::Error::custom(format!("matchers: {e}")))
    }
}

fn check_webhook_secret(secret: &Secret) -> Result<(), String> {
    if secret.is_empty() {
        return Ok(());
    }
    let key =
        decode_secret(secret.expose()).map_err(|e| e.trim_start_matches("secret: ").to_owned())?;
    if key.len() < MIN_WEBHOOK_KEY_BYTES {
        return Err(format!(
            "the key is {} bytes, at least {MIN_WEBHOOK_KEY_BYTES} are needed (Standard Webhooks: 24 to 64 random bytes, `whsec_` + base64)",
            key.len()
        ));
    }
    Ok(())
}

/// The shortest webhook signing key accepted.
pub const MIN_WEBHOOK_KEY_BYTES: usize = 24;

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

/// The longest duration any key takes: beyond it, adding it to a clock overflows.
const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 86_400);

/// `90s` -> `1m30s`, for summaries and test output.
pub fn human_duration(d: Duration) -> String {
    let total_ms = d.as_millis();
    if total_ms == 0 {
        return "0s".into();
    }
    if !total_ms.is_multiple_of(1000) {
        return format!("{total_ms}ms");
    }
    let mut s = total_ms / 1000;
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if s >= size {
            out.push_str(&format!("{}{unit}", s / size));
            s %= size;
        }
    }
    out
}

/// The signing key of a `whsec_<base64>` secret (the prefix is optional).
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    match base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded) {
        Ok(key) if !key.is_empty() => Ok(key),
        _ => Err("secret: must be `whsec_` followed by base64 (Standard Webhooks)".into()),
    }
}

/// Parses `500ms`, `90s`, `15m`, `4h`, `1d` or a combination such as `1h30m`, up to ten
/// years.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let too_long = || format!("`{text}` is too long (at most 3650d)");
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
        let part = Duration::try_from_secs_f64(seconds).map_err(|_| too_long())?;
        total = total
            .checked_add(part)
            .filter(|t| *t <= MAX_DURATION)
            .ok_or_else(too_long)?;
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

// Bounds of the keys, in milliseconds (durations) or units (counts).
const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;
const WEEK_MS: u64 = 7 * DAY_MS;
const MONTH_MS: u64 = 30 * DAY_MS;
const YEAR_MS: u64 = 365 * DAY_MS;
const GIB: u64 = 1 << 30;

/// A duration key with its valid range, `MIN_MS..=MAX_MS` milliseconds. Checked while the
/// key is read, so that the error carries the key's file, line and column like a parse
/// error does.
fn de_duration_in<'de, D: Deserializer<'de>, const MIN_MS: u64, const MAX_MS: u64>(
    d: D,
) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    duration_in(&s, MIN_MS, MAX_MS).map_err(serde::de::Error::custom)
}

/// [`de_duration_in`] for a key that may be left out.
fn de_opt_duration_in<'de, D: Deserializer<'de>, const MIN_MS: u64, const MAX_MS: u64>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| duration_in(&s, MIN_MS, MAX_MS).map_err(serde::de::Error::custom))
        .transpose()
}

/// A channel's `timeout`, more than 0 and at most 10m. Inside a channel the YAML reader
/// can only point at the channel, so the message names the key.
fn de_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    duration_in(&s, 1, 10 * 60_000).map_err(|e| serde::de::Error::custom(format!("timeout: {e}")))
}

/// An SMTP `port`, 1 to 65535 (named in the message like [`de_timeout`]).
fn de_smtp_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    de_opt_uint_in::<D, u16, 1, 65535>(d)
        .map_err(|e| serde::de::Error::custom(format!("port: {e}")))
}

fn duration_in(text: &str, min_ms: u64, max_ms: u64) -> Result<Duration, String> {
    let value = parse_duration(text)?;
    let (min, max) = (Duration::from_millis(min_ms), Duration::from_millis(max_ms));
    if value >= min && value <= max {
        return Ok(value);
    }
    let max = human_duration(max);
    Err(match min_ms {
        0 => format!("`{text}` is too long (at most {max})"),
        1 => format!("`{text}` is out of range: must be more than 0 and at most {max}"),
        _ => format!(
            "`{text}` is out of range: must be from {} to {max}",
            human_duration(min)
        ),
    })
}

/// A whole number key with its valid range, `MIN..=MAX`. A number written as a string
/// (what a `${VAR}` gives) is read as the number it spells.
fn de_uint_in<'de, D, T, const MIN: u64, const MAX: u64>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let n = d.deserialize_any(UintVisitor)?;
    uint_in::<T>(n, MIN, MAX).map_err(serde::de::Error::custom)
}

/// [`de_uint_in`] for a key that may be left out.
fn de_opt_uint_in<'de, D, T, const MIN: u64, const MAX: u64>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    struct Uint(u64);
    impl<'de> Deserialize<'de> for Uint {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(UintVisitor).map(Uint)
        }
    }
    Option::<Uint>::deserialize(d)?
        .map(|Uint(n)| uint_in::<T>(n, MIN, MAX).map_err(serde::de::Error::custom))
        .transpose()
}

fn uint_in<T: TryFrom<u64>>(n: u64, min: u64, max: u64) -> Result<T, String> {
    if n < min || n > max {
        return Err(format!(
            "`{n}` is out of range: must be from {min} to {max}"
        ));
    }
    T::try_from(n).map_err(|_| format!("`{n}` is too large"))
}

struct UintVisitor;

impl serde::de::Visitor<'_> for UintVisitor {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number")
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("`{v}` is out of range: must be 0 or more")))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
        match v.trim().parse::<i128>() {
            Ok(n) => u64::try_from(n)
                .map_err(|_| E::custom(format!("`{v}` is out of range: must be 0 or more"))),
            Err(_) => Err(E::custom(format!("`{v}` is not a whole number"))),
        }
    }
}

/// A number key (also from a string, as `${VAR}` gives), finite and within `min..=max`;
/// `min_open` excludes `min` itself.
fn number_in(v: f64, min: f64, min_open: bool, max: f64) -> Result<f64, String> {
    let low_ok = if min_open { v > min } else { v >= min };
    if v.is_finite() && low_ok && v <= max {
        return Ok(v);
    }
    let low = if min_open {
        format!("more than {min}")
    } else {
        format!("from {min}")
    };
    let to = if min_open { "and at most" } else { "to" };
    Err(format!("`{v}` is out of range: must be {low} {to} {max}"))
}

fn de_number<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    struct Number;
    impl serde::de::Visitor<'_> for Number {
        type Value = f64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number")
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<f64, E> {
            v.trim()
                .parse()
                .map_err(|_| E::custom(format!("`{v}` is not a number")))
        }
    }
    d.deserialize_any(Number)
}

fn de_speed<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    number_in(de_number(d)?, 0.0, true, 1e6).map_err(serde::de::Error::custom)
}

fn de_latitude<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    number_in(de_number(d)?, -90.0, false, 90.0).map_err(serde::de::Error::custom)
}

fn de_longitude<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    number_in(de_number(d)?, -180.0, false, 180.0).map_err(serde::de::Error::custom)
}

fn de_radius<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    number_in(de_number(d)?, 0.0, true, 2e7).map_err(serde::de::Error::custom)
}

/// `true` or `false`, also as a string (what `${VAR}` gives).
fn de_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct Bool;
    impl serde::de::Visitor<'_> for Bool {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("true or false")
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<bool, E> {
            match v.trim() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(E::custom(format!("`{v}` is not true or false"))),
            }
        }
    }
    d.deserialize_any(Bool)
}

/// An `http://` or `https://` URL.
fn de_http_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    url_with_scheme(&s, &["http", "https"]).map_err(serde::de::Error::custom)
}

/// A `ws://` or `wss://` URL, if given.
fn de_opt_ws_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| url_with_scheme(&s, &["ws", "wss"]).map_err(serde::de::Error::custom))
        .transpose()
}

fn url_with_scheme(s: &str, schemes: &[&str]) -> Result<String, String> {
    let expected = || {
        schemes
            .iter()
            .map(|s| format!("{s}://"))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    match url::Url::parse(s) {
        Ok(u) if schemes.contains(&u.scheme()) && u.has_host() => Ok(s.to_owned()),
        Ok(_) => Err(format!("`{s}` is not a {} URL", expected())),
        Err(e) => Err(format!("`{s}` is not a URL ({e})")),
    }
}

fn de_timezone<'de, D: Deserializer<'de>>(d: D) -> Result<chrono_tz::Tz, D::Error> {
    let s = String::deserialize(d)?;
    s.parse::<chrono_tz::Tz>().map_err(|_| {
        serde::de::Error::custom(format!(
            "unknown time zone `{s}` (use an IANA name such as Europe/Berlin)"
        ))
    })
}

/// Replaces `${VAR}` and `${VAR:-default}` in one value with the environment's values.
/// Like the shell's `:-`, an empty value takes the default too. An unset variable without
/// a default is an error naming the variable.
pub fn interpolate(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "`${` without a closing `}`".to_string())?;
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
                return Err(format!(
                    "environment variable `{name}` is not set (write `${{{name}:-default}}` for a default)"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Interpolates `${VAR}` inside the values of a YAML document, never in its syntax.
///
/// The document is parsed first; each scalar value holding `${` (plain or quoted, not
/// keys, not comments) is interpolated and written back as a double-quoted YAML string,
/// escaped so that any bytes of a variable arrive verbatim: `#`, quotes, `: `, newlines,
/// `null` or `{x: 1}` stay text. A variable therefore always gives one string value; a key
/// that takes a number, a boolean or a duration reads that string as one (`port: ${PORT}`).
/// The rewrite keeps every line where it was, so later errors point into the original
/// file. Errors are `line N: ...`, also for a document that does not parse (a `${VAR}`
/// unquoted inside `{ }` or `[ ]` is the usual cause).
pub fn interpolate_yaml(
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};
    if !text.contains("${") {
        return Ok(text.to_owned());
    }
    // Per open collection: `Some(next node is a key)` for mappings, `None` for sequences.
    let mut open: Vec<Option<bool>> = Vec::new();
    let is_key = |open: &mut Vec<Option<bool>>| match open.last_mut() {
        Some(Some(key_next)) => {
            let was = *key_next;
            *key_next = !was;
            was
        }
        _ => false,
    };
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| {
            let line = e.marker().line();
            let hint = match text.lines().nth(line.saturating_sub(1)) {
                Some(l) if l.contains("${") => {
                    " (inside `{ }` or `[ ]`, put a `${VAR}` in quotes: \"${VAR}\")"
                }
                _ => "",
            };
            format!("line {line}: {}{hint}", e.info())
        })?;
        match event {
            Event::MappingStart(..) => {
                is_key(&mut open);
                open.push(Some(true));
            }
            Event::SequenceStart(..) => {
                is_key(&mut open);
                open.push(None);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                open.pop();
            }
            Event::Alias(_) => {
                is_key(&mut open);
            }
            Event::Scalar(value, style, ..) => {
                if is_key(&mut open) || !value.contains("${") {
                    continue;
                }
                let line = span.start.line();
                let value = interpolate(&value, &env).map_err(|e| format!("line {line}: {e}"))?;
                let (Some(start), Some(end)) = (span.start.byte_offset(), span.end.byte_offset())
                else {
                    return Err(format!("line {line}: cannot locate the value"));
                };
                // A block scalar's span starts at its content: replace from its `|` or `>`.
                let start = if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded) {
                    block_indicator(text, start)
                        .ok_or_else(|| format!("line {line}: cannot locate the value"))?
                } else {
                    start
                };
                // A value over several lines keeps them: its replacement is padded with the
                // line breaks it spanned, after the closing quote, where YAML ignores them.
                // A block scalar's span runs on to the next key's indentation: keep that.
                let end = start + text.get(start..end).map_or(0, |s| s.trim_end().len());
                let breaks = text.get(start..end).map_or(0, |s| s.matches('\n').count());
                edits.push((start, end, double_quoted(&value, breaks)));
            }
            _ => {}
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end, replacement) in edits {
        out.push_str(&text[at..start]);
        out.push_str(&replacement);
        at = end;
    }
    out.push_str(&text[at..]);
    Ok(out)
}

/// Where the `|` or `>` header of the block scalar whose content starts at `content` is:
/// on the last line before the content that is not blank, outside its comment.
fn block_indicator(text: &str, content: usize) -> Option<usize> {
    let before = text.get(..content)?;
    let mut end = before.len();
    loop {
        let line_start = before[..end].rfind('\n').map_or(0, |i| i + 1);
        let line = &before[line_start..end];
        if !line.trim().is_empty() {
            let code = match line.find(" #") {
                Some(i) => &line[..i],
                None => line,
            };
            return code.rfind(['|', '>']).map(|i| line_start + i);
        }
        if line_start == 0 {
            return None;
        }
        end = line_start - 1;
    }
}

/// `value` as a YAML double-quoted scalar that reads back as exactly `value`.
fn double_quoted(value: &str, breaks: usize) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    for _ in 0..breaks {
        out.push('\n');
    }
    out
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
        let text = interpolate_yaml(text, env).map_err(invalid)?;
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
        // `server.recordings` is relative to the config file, as every path in it.
        config.server.recordings = config
            .server
            .recordings
            .take()
            .map(|r| config.base_dir.join(r));
        config.validate().map_err(invalid)?;
        if let Some(shorthand) = config.source.take() {
            config.sources = Some(vec![SourceEntry::from_shorthand(shorthand)]);
        }
        Ok(config)
    }

    /// Checks what serde cannot: one source, known channels in routes, valid zones, and
    /// the keys whose validity depends on other keys or on a list. Messages start with the
    /// dotted key (`channels.ops.secret: ...`), which `check` turns back into a line.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_sources()?;
        for (i, route) in self.routes.iter().enumerate() {
            for ch in &route.channels {
                if !self.channels.contains_key(ch) {
                    return Err(format!(
                        "routes[{i}]: unknown channel `{ch}` (channels: {})",
                        self.channel_names()
                    ));
                }
            }
            self.validate_escalate(i, route)?;
        }
        self.validate_intervals()?;
        self.server.validate()?;
        if let Some(cluster) = &self.cluster {
            cluster.validate()?;
            if self.storage.postgres.is_none() {
                return Err("cluster: `cluster` needs storage.postgres: the instances share one PostgreSQL database (SQLite is one instance's own file)".into());
            }
        }
        for (name, zone) in &self.zones.local {
            zone.validate().map_err(|e| format!("zones.{name}{e}"))?;
        }
        for (name, channel) in &self.channels {
            if let ChannelConfig::Webhook {
                secret: Some(secret),
                ..
            } = channel
            {
                check_webhook_secret(secret).map_err(|e| format!("channels.{name}.secret: {e}"))?;
            }
        }
        if self.storage.path.trim().is_empty() {
            return Err("storage.path: empty (use `:memory:` for no file)".into());
        }
        if let Some(pg) = &self.storage.postgres {
            if self.storage.path != default_storage_path() {
                return Err(
                    "storage.postgres: set either storage.path (SQLite) or storage.postgres, not both"
                        .into(),
                );
            }
            pg.validate()?;
        }
        let listen = self.server.listen.trim();
        if !listen.is_empty() {
            let port = listen.rsplit_once(':').map(|(_, port)| port.parse::<u16>());
            if !matches!(port, Some(Ok(_))) {
                return Err(format!(
                    "server.listen: `{listen}` is not an address like 127.0.0.1:9898 (empty disables the server)"
                ));
            }
        }
        Ok(())
    }

    /// Time interval names are unique, and routes name defined ones.
    fn validate_intervals(&self) -> Result<(), String> {
        for (i, interval) in self.time_intervals.iter().enumerate() {
            if interval.name.trim().is_empty() {
                return Err(format!("time_intervals[{i}]: `name` is empty"));
            }
            if self.time_intervals[..i]
                .iter()
                .any(|other| other.name == interval.name)
            {
                return Err(format!(
                    "time_intervals[{i}]: `{}` is defined twice",
                    interval.name
                ));
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            for name in route
                .mute_time_intervals
                .iter()
                .chain(&route.active_time_intervals)
            {
                if self.time_interval(name).is_none() {
                    return Err(format!(
                        "routes[{i}]: unknown time interval `{name}` (time_intervals: {})",
                        self.time_interval_names()
                    ));
                }
            }
        }
        for (i, rule) in self.inhibit_rules.iter().enumerate() {
            if rule.target_matchers.0.is_empty() {
                return Err(format!(
                    "inhibit_rules[{i}]: `target_matchers` is empty: it would inhibit every alert"
                ));
            }
        }
        Ok(())
    }

    /// A route's `escalate`: known channels, at least one per step, `after` increasing.
    fn validate_escalate(&self, i: usize, route: &RouteConfig) -> Result<(), String> {
        let mut previous: Option<Duration> = None;
        for (j, step) in route.escalate.iter().enumerate() {
            let place = format!("routes[{i}].escalate[{j}]");
            if step.channels.is_empty() {
                return Err(format!("{place}.channels: needs at least one channel"));
            }
            for ch in &step.channels {
                if !self.channels.contains_key(ch) {
                    return Err(format!(
                        "{place}: unknown channel `{ch}` (channels: {})",
                        self.channel_names()
                    ));
                }
            }
            if let Some(before) = previous
                && step.after <= before
            {
                // The step's first channel is quoted: `check` finds the step's line by it.
                return Err(format!(
                    "{place}.after: the step to `{}` comes at {}, not after the step before \
                     it ({}); `after` must increase from step to step",
                    step.channels[0],
                    human_duration(step.after),
                    human_duration(before)
                ));
            }
            previous = Some(step.after);
        }
        Ok(())
    }

    /// The time interval named `name`.
    pub fn time_interval(&self, name: &str) -> Option<&crate::time_intervals::NamedTimeInterval> {
        self.time_intervals.iter().find(|t| t.name == name)
    }

    /// The time interval names, for error messages.
    pub fn time_interval_names(&self) -> String {
        let names: Vec<&str> = self
            .time_intervals
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        if names.is_empty() {
            "none defined".into()
        } else {
            names.join(", ")
        }
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
    fn matcher_strings_read_as_alertmanager_reads_them() {
        let m = |name: &str, value: &str, is_regex: bool, is_equal: bool| MatcherConfig {
            name: name.into(),
            value: value.into(),
            is_regex,
            is_equal,
        };
        let cases: Vec<(&str, Vec<MatcherConfig>)> = vec![
            (
                "rule=tracker_offline",
                vec![m("rule", "tracker_offline", false, true)],
            ),
            (
                "severity=~warning|info",
                vec![m("severity", "warning|info", true, true)],
            ),
            (
                "severity !~ \"info\"",
                vec![m("severity", "info", true, false)],
            ),
            ("rule!=noisy", vec![m("rule", "noisy", false, false)]),
            (
                "{rule=\"a,b\", tracker_id=~\"1|2\"}",
                vec![
                    m("rule", "a,b", false, true),
                    m("tracker_id", "1|2", true, true),
                ],
            ),
            (
                "team=\"say \\\"hi\\\"\"",
                vec![m("team", "say \"hi\"", false, true)],
            ),
            ("team=", vec![m("team", "", false, true)]),
        ];
        for (text, want) in cases {
            assert_eq!(parse_matchers(text).unwrap(), want, "{text}");
        }
        let errors = [
            ("severity", "is not a matcher"),
            ("=x", "the label name is missing"),
            ("rule=\"open", "unterminated quote"),
            ("{rule=a", "without a closing"),
            ("severity=~(x", "is not a valid regex"),
            ("{}", "holds no matcher"),
        ];
        for (text, want) in errors {
            let err = parse_matchers(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
        // The map form takes a route's prefixes.
        assert_eq!(
            MatcherConfig::from_entry("severity", "=~warning|info").unwrap(),
            m("severity", "warning|info", true, true)
        );
        assert_eq!(
            MatcherConfig::from_entry("rule", "tracker_offline").unwrap(),
            m("rule", "tracker_offline", false, true)
        );
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
            interpolate_yaml("a: 1\nb: ${NOPE}\n", &e).unwrap_err(),
            "line 2: environment variable `NOPE` is not set (write `${NOPE:-default}` for a default)"
        );
        assert_eq!(
            interpolate_yaml("a: 1\n\nb: ${OPEN\n", &e).unwrap_err(),
            "line 3: `${` without a closing `}`"
        );
        // Comments and keys are not values.
        assert_eq!(
            interpolate_yaml("a: 1 # ${NOPE}\n${KEY}: 2\n", &e).unwrap(),
            "a: 1 # ${NOPE}\n${KEY}: 2\n"
        );
    }

    /// Whatever bytes a variable holds arrive verbatim as the value, in every style of
    /// scalar, and leave the rest of the document as it was.
    #[test]
    fn hostile_variables_arrive_verbatim() {
        let hostile = [
            "abc #def",
            "null",
            "~",
            "\"quoted\"",
            "back\\slash",
            "a: b",
            "line 1\nline 2\r\n\tend",
            "{x: 1}",
            "[1,2]",
            "",
            "ünïcødé ✓ 東京 \u{2028} \u{7}",
            "' \" ${NOT_A_VAR} &anchor *alias !tag | > - ? % @ `",
            "123",
            "true",
        ];
        for value in hostile {
            for yaml in [
                "source:\n  simulator: {}\nserver:\n  token: ${TOK}\n  listen: 127.0.0.1:1\n",
                "source:\n  simulator: {}\nserver:\n  token: \"${TOK}\"\n  listen: 127.0.0.1:1\n",
                "source:\n  simulator: {}\nserver: { token: '${TOK}', listen: 127.0.0.1:1 }\n",
                "source:\n  simulator: {}\nserver:\n  token: >-\n    ${TOK}\n  listen: 127.0.0.1:1\n",
            ] {
                let config = Config::from_yaml(yaml, Path::new("c.yaml"), env(&[("TOK", value)]))
                    .unwrap_or_else(|e| panic!("{value:?} in {yaml:?}: {e}"));
                assert_eq!(
                    config.server.token.as_ref().map(Secret::expose),
                    Some(value),
                    "{yaml:?}"
                );
                assert_eq!(config.server.listen, "127.0.0.1:1", "{value:?} in {yaml:?}");
            }
        }
        // Around other text, and with a default.
        let yaml = "source:\n  simulator: {}\nserver:\n  token: pre-${TOK}-${NONE:-dflt}\n";
        let config = Config::from_yaml(yaml, Path::new("c.yaml"), env(&[("TOK", "a #b")])).unwrap();
        assert_eq!(config.server.token.unwrap().expose(), "pre-a #b-dflt");
    }

    /// A variable gives a string; a key that takes a number, a boolean or a duration reads
    /// it as one, also inside a channel.
    #[test]
    fn variables_in_typed_keys() {
        let yaml = "source:\n  simulator: { trackers: \"${N}\", speed: \"${SPEED}\" }\nengine:\n  workers: ${W}\n  eval_interval: ${EVAL}\nchannels:\n  out: { type: stdout, json: \"${JSON}\" }\n  mail:\n    type: email\n    smtp: { host: localhost, port: \"${PORT}\" }\n    from: a@example.com\n    to: [b@example.com]\n";
        let vars = env(&[
            ("N", "7"),
            ("SPEED", "2.5"),
            ("W", "3"),
            ("EVAL", "5s"),
            ("JSON", "true"),
            ("PORT", "2525"),
        ]);
        let config = Config::from_yaml(yaml, Path::new("c.yaml"), vars).unwrap();
        let sim = config.sources()[0].simulator.as_ref().unwrap();
        assert_eq!((sim.trackers, sim.speed), (7, 2.5));
        assert_eq!(config.engine.workers, Some(3));
        assert_eq!(config.engine.eval_interval, Duration::from_secs(5));
        assert!(matches!(
            config.channels["out"],
            ChannelConfig::Stdout { json: true, .. }
        ));
        let ChannelConfig::Email { smtp, .. } = &config.channels["mail"] else {
            panic!("not email");
        };
        assert_eq!(smtp.port, Some(2525));
        let yaml = "source:\n  simulator:\n    trackers: ${N}\n";
        let err = Config::from_yaml(yaml, Path::new("c.yaml"), env(&[("N", "many")])).unwrap_err();
        assert_eq!(
            crate::commands::check::describe(&err, yaml),
            "c.yaml:3:15: source.simulator.trackers: `many` is not a whole number"
        );
        let yaml = "source:\n  simulator: { trackers: ${N} }\n";
        let err = Config::from_yaml(yaml, Path::new("c.yaml"), env(&[("N", "1")])).unwrap_err();
        assert_eq!(
            crate::commands::check::describe(&err, yaml),
            "c.yaml:2:26: source.simulator.trackers: while parsing a flow mapping, did not find expected ',' or '}' (inside `{ }` or `[ ]`, put a `${VAR}` in quotes: \"${VAR}\")"
        );
    }

    fn load_err(yaml: &str) -> String {
        match Config::from_yaml(yaml, Path::new("c.yaml"), env(&[])) {
            Ok(_) => panic!("accepted: {yaml}"),
            Err(e) => crate::commands::check::describe(&e, yaml),
        }
    }

    #[test]
    fn cluster_names_the_instance_and_its_lease() {
        let sim = "source:\n  simulator: {}\n";
        let pg = "storage: { postgres: { url: 'postgres://alerts@db/alerts' } }\n";
        let config = Config::from_yaml(
            &format!("{sim}cluster:\n  instance: ${{HOST}}\n  lease: 9s\n{pg}"),
            Path::new("c.yaml"),
            env(&[("HOST", "alerts-1")]),
        )
        .unwrap();
        let cluster = config.cluster.unwrap();
        assert_eq!(cluster.instance, "alerts-1");
        assert_eq!(cluster.lease, Duration::from_secs(9));
        assert_eq!(cluster.renew_every(), Duration::from_secs(3));
        let defaults = Config::from_yaml(
            &format!("{sim}cluster: {{ instance: a }}\n{pg}"),
            Path::new("c.yaml"),
            env(&[]),
        )
        .unwrap()
        .cluster
        .unwrap();
        assert_eq!(defaults.lease, Duration::from_secs(15));
        assert_eq!(defaults.renew_every(), Duration::from_secs(5));
        assert!(
            Config::from_yaml(sim, Path::new("c.yaml"), env(&[]))
                .unwrap()
                .cluster
                .is_none()
        );
        for (yaml, message) in [
            (
                format!("{sim}cluster:\n  instance: a\n  lease: 500ms\n{pg}"),
                "c.yaml:5:10: cluster.lease: `500ms` is out of range: must be from 1s to 10m",
            ),
            (
                format!("{sim}cluster:\n  lease: 5s\n{pg}"),
                "c.yaml:4:3: cluster.lease: missing field `instance`",
            ),
            (
                format!("{sim}cluster:\n  instance: ''\n{pg}"),
                "c.yaml:4:3: cluster.instance: empty; name this instance (`${HOSTNAME}` is a good name)",
            ),
            (
                format!("{sim}cluster:\n  instance: 'two words'\n{pg}"),
                "c.yaml:4:3: cluster.instance: `two words` is not an instance name (printable, no spaces, at most 64 characters)",
            ),
            (
                format!("{sim}cluster:\n  instance: a\n  lease: 3s\n  renew: 3s\n{pg}"),
                "c.yaml:6:3: cluster.renew: 3s is not less than the lease (3s): the lease would run out between renewals",
            ),
            (
                format!("{sim}cluster:\n  instance: a\n"),
                "c.yaml:3:1: cluster: `cluster` needs storage.postgres: the instances share one PostgreSQL database (SQLite is one instance's own file)",
            ),
        ] {
            assert_eq!(load_err(&yaml), message, "{yaml}");
        }
    }

    #[test]
    fn history_retention_and_access_tokens_are_read_and_checked() {
        let sim = "source:\n  simulator: {}\n";
        let config = Config::from_yaml(
            &format!(
                "{sim}storage:\n  history_retention: 7d\nserver:\n  token: root\n  tokens:\n    - {{ name: alice, token: a, role: viewer }}\n    - {{ name: desk, token: d, role: operator }}\n"
            ),
            Path::new("c.yaml"),
            env(&[]),
        )
        .unwrap();
        assert_eq!(
            config.storage.history_retention,
            Duration::from_secs(7 * 24 * 3600)
        );
        let roles: Vec<(&str, Role)> = config
            .server
            .tokens
            .iter()
            .map(|t| (t.name.as_str(), t.role))
            .collect();
        assert_eq!(roles, [("alice", Role::Viewer), ("desk", Role::Operator)]);
        assert_eq!(
            StorageConfig::default().history_retention,
            Duration::from_secs(30 * 24 * 3600)
        );
        for (yaml, message) in [
            (
                format!("{sim}storage:\n  history_retention: 10m\n"),
                "c.yaml:4:22: storage.history_retention: `10m` is out of range: must be from 1h to 365d",
            ),
            (
                format!(
                    "{sim}server:\n  token: root\n  tokens: [{{ name: admin, token: x, role: viewer }}]\n"
                ),
                "c.yaml:5:20: server.tokens[0].name: `admin` is taken (server.token is named `admin`)",
            ),
        ] {
            assert_eq!(load_err(&yaml), message, "{yaml}");
        }
        assert!(
            load_err(&format!(
                "{sim}server:\n  tokens: [{{ name: a, token: x, role: boss }}]\n"
            ))
            .starts_with("c.yaml:4:")
        );
    }

    #[test]
    fn sources_name_each_account_and_the_shorthand_is_one_named_navixy() {
        let one =
            Config::from_yaml("source:\n  simulator: {}\n", Path::new("c.yaml"), env(&[])).unwrap();
        let names: Vec<&str> = one.sources().iter().map(SourceEntry::name).collect();
        assert_eq!(names, [DEFAULT_SOURCE]);
        assert!(one.source.is_none());
        let named = Config::from_yaml(
            "source:\n  name: depot\n  simulator: {}\n",
            Path::new("c.yaml"),
            env(&[]),
        )
        .unwrap();
        assert_eq!(named.sources()[0].name(), "depot");
        let nav = "navixy: { api_url: 'https://x.example/v2', hash: h }";
        let two = Config::from_yaml(
            &format!("sources:\n  - name: north\n    {nav}\n  - name: south-2\n    {nav}\n"),
            Path::new("c.yaml"),
            env(&[]),
        )
        .unwrap();
        let names: Vec<&str> = two.sources().iter().map(SourceEntry::name).collect();
        assert_eq!(names, ["north", "south-2"]);

        let sim = "source:\n  simulator: {}\n";
        for (yaml, message) in [
            (
                format!("{sim}sources:\n  - name: north\n    {nav}\n"),
                "c.yaml: sources: set `source` (one account) or `sources` (a list), not both".to_string(),
            ),
            (
                "sources: []\n".to_string(),
                "c.yaml: sources: an empty list watches nothing; name at least one source".to_string(),
            ),
            (
                format!("sources:\n  - name: north\n    {nav}\n  - name: north\n    {nav}\n"),
                "c.yaml:4:1: sources[north].name: `north` names another source too (names are unique)".to_string(),
            ),
            (
                format!("sources:\n  - name: North\n    {nav}\n"),
                "c.yaml:2:1: sources[North].name: `North` is not a source name (lowercase letters, digits, `_` and `-`: it goes into labels and metrics)".to_string(),
            ),
            (
                format!("sources:\n  - name: ''\n    {nav}\n"),
                "c.yaml:2:1: sources[].name: `` is not a source name (lowercase letters, digits, `_` and `-`: it goes into labels and metrics)".to_string(),
            ),
            (
                "sources:\n  - name: south\n    navixy: { api_url: 'https://x.example/v2' }\n".to_string(),
                "c.yaml:2:1: sources[south].navixy: set `hash`, or `login` and `password`".to_string(),
            ),
            (
                "sources:\n  - name: south\n    navixy: { api_url: 'https://x.example/v2', hash: h, trackers: [] }\n".to_string(),
                "c.yaml:2:1: sources[south].navixy.trackers: an empty list selects nothing (write `all`)".to_string(),
            ),
            (
                "sources:\n  - name: south\n".to_string(),
                "c.yaml:2:1: sources[south]: set one of `navixy` or `simulator`".to_string(),
            ),
            (
                format!("sources:\n  - name: a\n    {nav}\n  - name: b\n    simulator: {{}}\n"),
                "c.yaml:2:1: sources[a]: a live Navixy account cannot run beside a `simulator` source (the simulator runs on its own clock)".to_string(),
            ),
            (
                "sources:\n  - name: a\n    simulator: {}\n  - name: b\n    simulator: { speed: 2 }\n".to_string(),
                "c.yaml:4:1: sources[b].simulator.speed: every simulator source runs at the first one's speed (60)".to_string(),
            ),
            (
                "source:\n  name: Bad\n  simulator: {}\n".to_string(),
                "c.yaml:2:1: source.name: `Bad` is not a source name (lowercase letters, digits, `_` and `-`: it goes into labels and metrics)".to_string(),
            ),
            (
                "rules: []\n".to_string(),
                "c.yaml: source: set `source` (one account) or `sources` (a list)".to_string(),
            ),
        ] {
            assert_eq!(load_err(&yaml), message, "{yaml}");
        }
        // A missing name is the parser's error, with its line.
        assert!(load_err(&format!("sources:\n  - {nav}\n")).starts_with("c.yaml:2:"));
    }

    /// Every number and duration is checked against its range where it is read, so the
    /// error names its line.
    #[test]
    fn out_of_range_values_are_refused_with_their_line() {
        let sim = "source:\n  simulator: {}\n";
        for (yaml, message) in [
            (
                format!("{sim}engine:\n  eval_interval: 0s\n"),
                "c.yaml:4:18: engine.eval_interval: `0s` is out of range: must be from 100ms to 1h",
            ),
            (
                format!("{sim}engine:\n  eval_interval: 2h\n"),
                "c.yaml:4:18: engine.eval_interval: `2h` is out of range: must be from 100ms to 1h",
            ),
            (
                format!("{sim}engine:\n  workers: 0\n"),
                "c.yaml:4:12: engine.workers: `0` is out of range: must be from 1 to 256",
            ),
            (
                format!("{sim}engine:\n  workers: 257\n"),
                "c.yaml:4:12: engine.workers: `257` is out of range: must be from 1 to 256",
            ),
            (
                format!("{sim}engine:\n  max_event_age: 0ms\n"),
                "c.yaml:4:18: engine.max_event_age: `0ms` is out of range: must be more than 0 and at most 365d",
            ),
            (
                "source:\n  simulator: { trackers: 0 }\n".to_string(),
                "c.yaml:2:26: source.simulator.trackers: `0` is out of range: must be from 1 to 100000",
            ),
            (
                "source:\n  simulator: { speed: 0 }\n".to_string(),
                "c.yaml:2:23: source.simulator.speed: `0` is out of range: must be more than 0 and at most 1000000",
            ),
            (
                "source:\n  simulator: { speed: -1.5 }\n".to_string(),
                "c.yaml:2:23: source.simulator.speed: `-1.5` is out of range: must be more than 0 and at most 1000000",
            ),
            (
                "source:\n  navixy: { api_url: 'https://x.example/v2', hash: h, max_frame_bytes: 0 }\n".to_string(),
                "c.yaml:2:72: source.navixy.max_frame_bytes: `0` is out of range: must be from 1024 to 1073741824",
            ),
            (
                "source:\n  navixy: { api_url: 'https://x.example/v2', hash: h, tracker_refresh: 0s }\n".to_string(),
                "c.yaml:2:72: source.navixy.tracker_refresh: `0s` is out of range: must be from 100ms to 7d",
            ),
            (
                "source:\n  navixy: { api_url: 'https://x.example/v2', hash: h, max_backoff: 0s }\n".to_string(),
                "c.yaml:2:68: source.navixy.max_backoff: `0s` is out of range: must be more than 0 and at most 1h",
            ),
            (
                "source:\n  navixy: { api_url: 'ftp://x.example/v2', hash: h }\n".to_string(),
                "c.yaml:2:22: source.navixy.api_url: `ftp://x.example/v2` is not a http:// or https:// URL",
            ),
            (
                format!("{sim}notify:\n  group_interval: 0s\n"),
                "c.yaml:4:19: notify.group_interval: `0s` is out of range: must be more than 0 and at most 30d",
            ),
            (
                format!("{sim}notify:\n  repeat_interval: 0s\n"),
                "c.yaml:4:20: notify.repeat_interval: `0s` is out of range: must be more than 0 and at most 365d",
            ),
            (
                format!("{sim}notify:\n  retry_for: 0s\n"),
                "c.yaml:4:14: notify.retry_for: `0s` is out of range: must be more than 0 and at most 365d",
            ),
            (
                format!("{sim}notify:\n  group_wait: 2d\n"),
                "c.yaml:4:15: notify.group_wait: `2d` is too long (at most 1d)",
            ),
            (
                format!("{sim}routes:\n  - channels: []\n    group_interval: 0s\n"),
                "c.yaml:5:21: routes.group_interval: `0s` is out of range: must be more than 0 and at most 30d",
            ),
            (
                format!("{sim}engine:\n  max_event_age: 99999999999999999999d\n"),
                "c.yaml:4:18: engine.max_event_age: `99999999999999999999d` is too long (at most 3650d)",
            ),
            (
                format!("{sim}zones:\n  navixy: {{ refresh: 1s }}\n"),
                "c.yaml:4:22: zones.navixy.refresh: `1s` is out of range: must be from 10s to 1d",
            ),
            (
                format!("{sim}zones:\n  navixy: {{ refrsh: 5m }}\n"),
                "c.yaml:4:13: zones.navixy: unknown field `refrsh`, expected one of refresh",
            ),
            (
                format!("{sim}zones:\n  z: {{ circle: {{ lat: 91, lng: 0, radius_m: 5 }} }}\n"),
                "c.yaml:4:23: zones.z.lat: `91` is out of range: must be from -90 to 90",
            ),
            (
                format!("{sim}channels:\n  h: {{ type: webhook, url: 'http://x', timeout: 0s }}\n"),
                "c.yaml:4:6: channels.h: timeout: `0s` is out of range: must be more than 0 and at most 10m",
            ),
            (
                format!("{sim}server:\n  map_tiles: 'https://tiles.example/{{z}}/{{x}}.png'\n"),
                "c.yaml:4:3: server.map_tiles: `https://tiles.example/{z}/{x}.png` must be an http(s) URL template with {z}, {x} and {y}",
            ),
            (
                format!("{sim}channels:\n  m: {{ type: email, smtp: {{ host: h, port: 0 }}, from: a@b.c, to: [d@e.f] }}\n"),
                "c.yaml:4:6: channels.m: port: `0` is out of range: must be from 1 to 65535",
            ),
        ] {
            assert_eq!(load_err(&yaml), message, "{yaml}");
        }
    }

    #[test]
    fn dependent_keys_are_validated() {
        let sim = "source:\n  simulator: {}\n";
        for (yaml, message) in [
            (
                format!(
                    "{sim}channels:\n  ops: {{ type: webhook, url: 'http://x', secret: whsec_c2hvcnQ= }}\n"
                ),
                "c.yaml:4:42: channels.ops.secret: the key is 5 bytes, at least 24 are needed (Standard Webhooks: 24 to 64 random bytes, `whsec_` + base64)",
            ),
            (
                format!(
                    "{sim}channels:\n  ops: {{ type: webhook, url: 'http://x', secret: 'whsec_!!' }}\n"
                ),
                "c.yaml:4:42: channels.ops.secret: must be `whsec_` followed by base64 (Standard Webhooks)",
            ),
            (
                format!("{sim}server:\n  listen: localhost\n"),
                "c.yaml:4:3: server.listen: `localhost` is not an address like 127.0.0.1:9898 (empty disables the server)",
            ),
            (
                format!("{sim}storage:\n  path: ''\n"),
                "c.yaml:4:3: storage.path: empty (use `:memory:` for no file)",
            ),
            (
                format!(
                    "{sim}storage:\n  postgres: {{ url: 'postgres://u:s3cret@db:notaport/x' }}\n"
                ),
                "c.yaml:4:15: storage.postgres.url: `postgres://u:***@db:notaport/x` is not a PostgreSQL URL: invalid connection string (postgres://user:password@host:port/database)",
            ),
            (
                format!("{sim}storage:\n  path: a.db\n  postgres: {{ url: 'postgres://db/x' }}\n"),
                "c.yaml:5:3: storage.postgres: set either storage.path (SQLite) or storage.postgres, not both",
            ),
            (
                "source:\n  navixy: { api_url: 'https://x.example', hash: h, trackers: [1, -2] }\n"
                    .into(),
                "c.yaml:2:52: source.navixy.trackers: `-2` is not a tracker id (ids are positive)",
            ),
            (
                format!("{sim}zones:\n  z: {{ polygon: [[0, 0], [1, 1], [1, 200]] }}\n"),
                "c.yaml:4:8: zones.z.polygon: `[1, 200]` is not a [lat, lng] point (lat -90 to 90, lng -180 to 180)",
            ),
        ] {
            assert_eq!(load_err(&yaml), message, "{yaml}");
        }
        // 24 bytes is enough.
        let ok = format!(
            "{sim}channels:\n  ops: {{ type: webhook, url: 'http://x', secret: whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD }}\n"
        );
        Config::from_yaml(&ok, Path::new("c.yaml"), env(&[])).unwrap();
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
