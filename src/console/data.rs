//! Everything the console reads, as plain view structs: live alerts (the store's firing
//! ones and the engine's pending ones), an alert's timeline (the notification log), the
//! trackers in the state cache with their readings and history, silences, the outbox,
//! the rules in force and the zones.
//!
//! The pages and the live stream read only through these functions, so that what they
//! show can change source (alert history, acknowledgements) here and nowhere else.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ConsoleState;
use crate::alert::{AlertRecord, AlertTransition, Fingerprint, PendingAlert, Severity, TrackerRef};
use crate::dispatch::routes::LabelMatcher;
use crate::dispatch::silence::ActiveSilences;
use crate::geofence::Shape;
use crate::navixy::messages::{Location, TrackerId, key_parts, tracker_key};
use crate::rfc3339;
use crate::rules::RuleSet;
use crate::state::TrackerState;
use crate::store::{NewSilence, OutboxStatus, SilenceMatcher, StoreError};

/// Why a page cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the engine did not answer (stopping?)")]
    Engine,
    /// Something the user typed: a filter, a silence, a condition.
    #[error("{0}")]
    Invalid(String),
}

/// A point in time as the pages show it: relative text from the server, the absolute
/// time for the tooltip and for the script that keeps the relative text current.
#[derive(Debug, Clone, Serialize)]
pub struct When {
    pub iso: String,
    pub ago: String,
}

impl When {
    pub fn new(at: DateTime<Utc>, now: DateTime<Utc>) -> When {
        When {
            iso: rfc3339::format(at),
            ago: ago(now - at),
        }
    }
}

/// `42s ago`, `5m ago`, `3h ago`, `2d ago` (`in 5m` for the future).
pub fn ago(d: chrono::Duration) -> String {
    let s = d.num_seconds();
    // A clock a few seconds ahead (a device's, the simulator's) is not "the future".
    if (-60..5).contains(&s) {
        return "just now".into();
    }
    let (n, future) = if s < 0 { (-s, true) } else { (s, false) };
    let text = match n {
        0..60 => format!("{n}s"),
        60..3600 => format!("{}m", n / 60),
        3600..86400 => format!("{}h", n / 3600),
        _ => format!("{}d", n / 86400),
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// One live alert, firing or pending.
#[derive(Debug, Clone, Serialize)]
pub struct AlertRow {
    pub fingerprint: String,
    pub rule: String,
    /// `firing` or `pending`.
    pub status: &'static str,
    pub severity: &'static str,
    /// Navixy's id of the tracker.
    pub tracker_id: Option<TrackerId>,
    /// The engine's key of the tracker: its page is `/trackers/{key}`.
    pub tracker_key: Option<TrackerId>,
    /// Its source's name, when there are several (`sources:`).
    pub source: Option<String>,
    pub tracker: String,
    pub value: Option<String>,
    pub summary: Option<String>,
    pub since: When,
    pub labels: BTreeMap<String, String>,
    pub silenced_by: Option<String>,
    /// Who acknowledged it, when someone has.
    pub acked_by: Option<String>,
    pub location: Option<Location>,
}

/// The alerts of one rule at one severity.
#[derive(Debug, Clone, Serialize)]
pub struct AlertGroup {
    pub rule: String,
    pub severity: &'static str,
    pub alerts: Vec<AlertRow>,
}

/// The Alerts page: groups, most severe first, and the counts.
#[derive(Debug, Clone, Serialize, Default)]
pub struct AlertsView {
    pub groups: Vec<AlertGroup>,
    pub firing: usize,
    pub pending: usize,
    pub critical: usize,
    pub warning: usize,
    pub info: usize,
    /// The filter as typed, and why it does not parse, if it does not.
    pub filter: String,
    pub filter_error: Option<String>,
}

/// Matchers typed as `rule=fuel_drop, severity=~crit.*, tracker_id!=3`: the label names
/// of routes and silences, each an Alertmanager matcher.
pub fn parse_matchers(text: &str) -> Result<Vec<SilenceMatcher>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let at = part
            .find(['=', '!'])
            .ok_or_else(|| format!("`{part}` is not a matcher: write name=value, name!=value, name=~regex or name!~regex"))?;
        let (name, op_value) = part.split_at(at);
        let (is_equal, is_regex, value) = if let Some(v) = op_value.strip_prefix("=~") {
            (true, true, v)
        } else if let Some(v) = op_value.strip_prefix("!~") {
            (false, true, v)
        } else if let Some(v) = op_value.strip_prefix("!=") {
            (false, false, v)
        } else if let Some(v) = op_value.strip_prefix('=') {
            (true, false, v)
        } else {
            return Err(format!("`{part}`: `!` must be followed by `=` or `~`"));
        };
        let matcher = SilenceMatcher {
            name: name.trim().to_owned(),
            value: value.trim().trim_matches('"').to_owned(),
            is_regex,
            is_equal,
        };
        matcher.validate().map_err(|e| format!("`{part}`: {e}"))?;
        out.push(matcher);
    }
    Ok(out)
}

fn compile(matchers: &[SilenceMatcher]) -> Result<Vec<LabelMatcher>, String> {
    matchers
        .iter()
        .map(|m| LabelMatcher::new(&m.name, &m.value, m.is_regex, m.is_equal))
        .collect()
}

/// The live alerts as transitions (pending ones built from their rule), the form every
/// matcher reads.
async fn live(state: &ConsoleState) -> Result<Vec<(AlertTransition, &'static str)>, DataError> {
    let records: Vec<AlertRecord> = state.store.load_live_alerts().await?;
    let engine = state.engine.clone();
    let pending: Vec<PendingAlert> = tokio::task::spawn_blocking(move || engine.pending_blocking())
        .await
        .map_err(|_| DataError::Engine)?;
    let mut out: Vec<(AlertTransition, &'static str)> =
        records.into_iter().map(|r| (r.last, "firing")).collect();
    if !pending.is_empty() {
        let rules = (state.rules)();
        let labels = pending_labels(state, &pending).await;
        for p in pending {
            let rule = rules.as_ref().and_then(|set| set.get(&p.rule));
            // A pending alert is listed with Navixy's id: its fingerprint names the source.
            let id = p.tracker_id;
            let source = p
                .fingerprint
                .source_among(&state.sources, &p.rule, id, p.key.as_deref())
                .unwrap_or(0);
            let mut alert_labels = rule.map(|r| r.labels.clone()).unwrap_or_default();
            if let Some(name) = state.sources.get(usize::from(source)) {
                alert_labels.insert("source".into(), name.clone());
            }
            out.push((
                p.transition(
                    rule.map(|r| r.severity).unwrap_or(Severity::Warning),
                    alert_labels,
                    labels.get(&tracker_key(source, id)).cloned().flatten(),
                ),
                "pending",
            ));
        }
    }
    Ok(out)
}

/// Tracker labels by engine key, of the trackers whose Navixy id a pending alert names.
async fn pending_labels(
    state: &ConsoleState,
    pending: &[PendingAlert],
) -> BTreeMap<TrackerId, Option<String>> {
    let trackers = trackers_raw(state).await.unwrap_or_default();
    let wanted: std::collections::BTreeSet<TrackerId> =
        pending.iter().map(|p| p.tracker_id).collect();
    trackers
        .into_iter()
        .filter(|t| wanted.contains(&t.info.id))
        .map(|t| (t.info.key(), t.info.label.clone()))
        .collect()
}

/// What holds alerts back or says someone is on them: silences and acks in force.
struct Marks {
    silences: ActiveSilences,
    acks: std::collections::HashMap<String, crate::alert::Ack>,
}

impl Marks {
    fn matching(&self, t: &AlertTransition, now: DateTime<Utc>) -> Option<&str> {
        self.silences.matching(t, now)
    }
}

async fn active_silences(state: &ConsoleState) -> Result<Marks, DataError> {
    let mut silences = ActiveSilences::default();
    silences.replace(
        state.store.list_silences().await?,
        state.store.silence_generation(),
    );
    let acks = state.store.list_active_acks(state.clock.now()).await?;
    Ok(Marks { silences, acks })
}

fn row(
    state: &ConsoleState,
    t: &AlertTransition,
    status: &'static str,
    silences: &Marks,
    now: DateTime<Utc>,
) -> AlertRow {
    AlertRow {
        tracker_key: state.tracker_key(t),
        source: (state.sources.len() > 1)
            .then(|| t.labels.get("source").cloned())
            .flatten(),
        fingerprint: t.fingerprint.0.clone(),
        rule: t.rule.to_string(),
        status,
        severity: t.severity.as_str(),
        tracker_id: t.tracker.as_ref().map(|r| r.id),
        tracker: tracker_name(t.tracker.as_ref()),
        value: t.value.as_ref().map(show_json),
        summary: t.annotations.get("summary").cloned(),
        since: When::new(t.starts_at, now),
        labels: t.labels.clone(),
        silenced_by: silences.matching(t, now).map(str::to_owned),
        acked_by: silences.acks.get(&t.fingerprint.0).map(|a| a.by.clone()),
        location: t.location,
    }
}

fn tracker_name(t: Option<&TrackerRef>) -> String {
    match t {
        Some(TrackerRef {
            id,
            label: Some(label),
            ..
        }) => format!("{label} (#{id})"),
        Some(t) => format!("#{}", t.id),
        None => "(source)".into(),
    }
}

/// A number as a person reads it: at most two decimals, no trailing zeros
/// (`157.20000000000002` reads `157.2`).
fn number(f: f64) -> String {
    if f.fract() == 0.0 {
        return format!("{f}");
    }
    format!("{f:.2}")
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_owned()
}

/// A JSON value as a person reads it: strings without quotes, numbers tidy.
fn show_json(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(f) if !(n.is_i64() || n.is_u64()) => number(f),
            _ => n.to_string(),
        },
        serde_json::Value::Null => "—".into(),
        other => other.to_string(),
    }
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 0,
        "warning" => 1,
        _ => 2,
    }
}

/// The Alerts page: the live alerts that `filter` matches, grouped by rule and severity.
pub async fn alerts(state: &ConsoleState, filter: &str) -> Result<AlertsView, DataError> {
    let now = state.clock.now();
    let (matchers, filter_error) = match parse_matchers(filter).and_then(|m| compile(&m)) {
        Ok(m) => (m, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let silences = active_silences(state).await?;
    let mut view = AlertsView {
        filter: filter.to_owned(),
        filter_error,
        ..AlertsView::default()
    };
    let mut groups: BTreeMap<(u8, String), AlertGroup> = BTreeMap::new();
    for (t, status) in live(state).await? {
        if !matchers.iter().all(|m| m.matches(&t)) {
            continue;
        }
        let r = row(state, &t, status, &silences, now);
        match status {
            "pending" => view.pending += 1,
            _ => view.firing += 1,
        }
        match r.severity {
            "critical" => view.critical += 1,
            "warning" => view.warning += 1,
            _ => view.info += 1,
        }
        groups
            .entry((severity_rank(r.severity), r.rule.clone()))
            .or_insert_with(|| AlertGroup {
                rule: r.rule.clone(),
                severity: r.severity,
                alerts: Vec::new(),
            })
            .alerts
            .push(r);
    }
    view.groups = groups.into_values().collect();
    for g in &mut view.groups {
        // Firing before pending, then oldest first.
        g.alerts.sort_by(|a, b| {
            (a.status != "firing", &a.since.iso).cmp(&(b.status != "firing", &b.since.iso))
        });
    }
    Ok(view)
}

/// The live alerts a silence with these matchers would hold back now.
pub async fn silence_preview(
    state: &ConsoleState,
    matchers: &[SilenceMatcher],
) -> Result<Vec<AlertRow>, DataError> {
    if matchers.is_empty() {
        return Ok(Vec::new());
    }
    let compiled = compile(matchers).map_err(DataError::Invalid)?;
    let now = state.clock.now();
    let silences = active_silences(state).await?;
    Ok(live(state)
        .await?
        .iter()
        .filter(|(t, _)| compiled.iter().all(|m| m.matches(t)))
        .map(|(t, status)| row(state, t, status, &silences, now))
        .collect())
}

/// One line of an alert's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    pub at: When,
    /// `firing` or `resolved`.
    pub status: String,
    pub channel: Option<String>,
    /// `sent`, `failed`, `silenced`, ...
    pub outcome: &'static str,
    pub detail: Option<String>,
}

/// The Alert page.
#[derive(Debug, Clone, Serialize)]
pub struct AlertDetail {
    pub alert: Option<AlertRow>,
    pub fingerprint: String,
    pub rule: Option<String>,
    pub annotations: BTreeMap<String, String>,
    /// What the rule read at the last transition.
    pub state: Vec<(String, String)>,
    pub timeline: Vec<TimelineEntry>,
    pub tracker: Option<TrackerDetail>,
}

/// How far back the notification log is read for a timeline.
const LOG_WINDOW: usize = 5000;

/// The Alert page: the live alert (if it still is), its timeline from the notification
/// log, and its tracker.
pub async fn alert(state: &ConsoleState, fingerprint: &str) -> Result<AlertDetail, DataError> {
    let now = state.clock.now();
    let silences = active_silences(state).await?;
    let live = live(state).await?;
    let found = live.iter().find(|(t, _)| t.fingerprint.0 == fingerprint);
    let log = state.store.recent_log(LOG_WINDOW).await?;
    let mut timeline: Vec<TimelineEntry> = log
        .iter()
        .filter(|e| e.fingerprint == fingerprint)
        .map(|e| TimelineEntry {
            at: When::new(e.at, now),
            status: e.status.clone(),
            channel: e.channel.clone(),
            outcome: e.outcome.as_str(),
            detail: e.detail.clone(),
        })
        .collect();
    timeline.sort_by(|a, b| b.at.iso.cmp(&a.at.iso));
    let rule = found.map(|(t, _)| t.rule.to_string()).or_else(|| {
        log.iter()
            .find(|e| e.fingerprint == fingerprint)
            .map(|e| e.rule.clone())
    });
    let tracker_key = found.and_then(|(t, _)| state.tracker_key(t)).or_else(|| {
        log.iter()
            .find(|e| e.fingerprint == fingerprint)
            .and_then(|e| e.tracker_id)
    });
    let tracker = match tracker_key {
        Some(key) => tracker(state, key, None).await?,
        None => None,
    };
    Ok(AlertDetail {
        alert: found.map(|(t, status)| row(state, t, status, &silences, now)),
        fingerprint: Fingerprint(fingerprint.to_owned()).0,
        rule,
        annotations: found
            .map(|(t, _)| t.annotations.clone())
            .unwrap_or_default(),
        state: found
            .map(|(t, _)| {
                t.state
                    .iter()
                    .map(|(k, v)| (k.clone(), show_json(v)))
                    .collect()
            })
            .unwrap_or_default(),
        timeline,
        tracker,
    })
}

async fn trackers_raw(state: &ConsoleState) -> Result<Vec<TrackerState>, DataError> {
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || engine.trackers_blocking())
        .await
        .map_err(|_| DataError::Engine)
}

/// One tracker in the list.
#[derive(Debug, Clone, Serialize)]
pub struct TrackerRow {
    /// Navixy's id.
    pub id: TrackerId,
    /// The engine's key: the page is `/trackers/{key}`.
    pub key: TrackerId,
    /// Its source's name, when there are several (`sources:`).
    pub source: Option<String>,
    pub label: String,
    pub lifecycle: &'static str,
    pub online: bool,
    pub last_data: Option<When>,
    pub speed: Option<f64>,
    pub ignition: Option<bool>,
    pub location: Option<Location>,
    pub zones: Vec<String>,
    pub alerts: usize,
}

fn tracker_row(
    state: &ConsoleState,
    t: &TrackerState,
    rules: Option<&RuleSet>,
    alerts: usize,
    now: DateTime<Utc>,
) -> TrackerRow {
    let gps = t.current.as_ref().and_then(|s| s.gps.as_ref());
    let location = gps.and_then(|g| g.location);
    TrackerRow {
        id: t.info.id,
        key: t.info.key(),
        source: state.source_shown(t.info.source),
        label: t
            .info
            .label
            .clone()
            .unwrap_or_else(|| format!("#{}", t.info.id)),
        lifecycle: t.lifecycle.as_str(),
        online: t.online,
        last_data: t.last_data_at.map(|at| When::new(at, now)),
        speed: gps.and_then(|g| g.speed),
        ignition: t.current.as_ref().and_then(|s| s.ignition),
        zones: match (location, rules) {
            (Some(l), Some(rules)) => rules
                .zones()
                .containing(l.lat, l.lng)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        },
        location,
        alerts,
    }
}

/// The Trackers page: the cached trackers whose label or id contains `search`
/// (case-insensitive), by label.
pub async fn trackers(state: &ConsoleState, search: &str) -> Result<Vec<TrackerRow>, DataError> {
    let now = state.clock.now();
    let rules = (state.rules)();
    let firing = firing_by_tracker(state).await?;
    let needle = search.trim().to_lowercase();
    let mut rows: Vec<TrackerRow> = trackers_raw(state)
        .await?
        .iter()
        .filter(|t| {
            needle.is_empty()
                || t.info.id.to_string().contains(&needle)
                || t.info
                    .label
                    .as_deref()
                    .is_some_and(|l| l.to_lowercase().contains(&needle))
        })
        .map(|t| {
            tracker_row(
                state,
                t,
                rules.as_deref(),
                firing.get(&t.info.key()).copied().unwrap_or(0),
                now,
            )
        })
        .collect();
    rows.sort_by(|a, b| a.label.cmp(&b.label).then(a.id.cmp(&b.id)));
    Ok(rows)
}

async fn firing_by_tracker(state: &ConsoleState) -> Result<BTreeMap<TrackerId, usize>, DataError> {
    let mut out = BTreeMap::new();
    for r in state.store.load_live_alerts().await? {
        if let Some(key) = state.tracker_key(&r.last) {
            *out.entry(key).or_insert(0) += 1;
        }
    }
    Ok(out)
}

/// One reading of a tracker.
#[derive(Debug, Clone, Serialize)]
pub struct ReadingRow {
    /// `input`, `state`, `virtual`, `counter`, `iot`, `field`.
    pub kind: &'static str,
    pub name: String,
    pub value: String,
    pub units: Option<String>,
}

/// A history series drawn as an SVG polyline in a `width` x `height` box.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    pub name: String,
    pub points: String,
    pub min: String,
    pub max: String,
    pub first: Option<When>,
    pub samples: usize,
}

pub const CHART_WIDTH: f64 = 600.0;
pub const CHART_HEIGHT: f64 = 120.0;

/// The Tracker page.
#[derive(Debug, Clone, Serialize)]
pub struct TrackerDetail {
    pub row: TrackerRow,
    pub group_id: Option<i64>,
    pub source_id: Option<i64>,
    pub readings: Vec<ReadingRow>,
    /// The names of the history series kept, for the chart's picker.
    pub series: Vec<String>,
    pub chart: Option<Chart>,
    pub alerts: Vec<AlertRow>,
    pub map: MapData,
}

/// What the map draws: the zones and the positions, as plain JSON for the page script.
#[derive(Debug, Clone, Serialize, Default)]
pub struct MapData {
    pub zones: Vec<MapZone>,
    pub positions: Vec<MapPosition>,
    /// `server.map_tiles`, when set.
    pub tiles: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MapZone {
    pub label: String,
    /// `circle`, `polygon` or `route`.
    pub kind: &'static str,
    /// Circle centre, or the polygon's / route's points, as `[lat, lng]`.
    pub points: Vec<[f64; 2]>,
    pub radius_m: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MapPosition {
    /// The engine's key: a click opens `/trackers/{id}`.
    pub id: TrackerId,
    pub label: String,
    pub lat: f64,
    pub lng: f64,
}

/// The zones of the rule set in force, and these positions.
pub fn map(state: &ConsoleState, positions: Vec<MapPosition>) -> MapData {
    let zones = (state.rules)()
        .map(|rules| {
            rules
                .zones()
                .iter_names()
                .filter_map(|name| rules.zones().get(name))
                .map(|z| match &z.shape {
                    Shape::Circle { center, radius_m } => MapZone {
                        label: z.label.clone(),
                        kind: "circle",
                        points: vec![[center.y(), center.x()]],
                        radius_m: *radius_m,
                    },
                    Shape::Polygon(multi) => MapZone {
                        label: z.label.clone(),
                        kind: "polygon",
                        points: multi
                            .0
                            .first()
                            .map(|p| p.exterior().0.iter().map(|c| [c.y, c.x]).collect())
                            .unwrap_or_default(),
                        radius_m: 0.0,
                    },
                    Shape::Sausage { route, radius_m } => MapZone {
                        label: z.label.clone(),
                        kind: "route",
                        points: route.0.iter().map(|c| [c.y, c.x]).collect(),
                        radius_m: *radius_m,
                    },
                })
                .collect()
        })
        .unwrap_or_default();
    MapData {
        zones,
        positions,
        tiles: state.map_tiles.clone(),
    }
}

/// The Tracker page for `id` (`None`: not in the cache), with `series` charted (by
/// default the first history series kept).
pub async fn tracker(
    state: &ConsoleState,
    id: TrackerId,
    series: Option<&str>,
) -> Result<Option<TrackerDetail>, DataError> {
    let now = state.clock.now();
    let engine = state.engine.clone();
    let reply = tokio::task::spawn_blocking(move || engine.tracker(id))
        .await
        .map_err(|_| DataError::Engine)?;
    let Some(t) = reply.await.map_err(|_| DataError::Engine)? else {
        return Ok(None);
    };
    let silences = active_silences(state).await?;
    let alerts: Vec<AlertRow> = live(state)
        .await?
        .iter()
        .filter(|(a, _)| state.tracker_key(a) == Some(id))
        .map(|(a, status)| row(state, a, status, &silences, now))
        .collect();
    let rules = (state.rules)();
    let firing = alerts.iter().filter(|a| a.status == "firing").count();
    let row = tracker_row(state, &t, rules.as_deref(), firing, now);
    let mut names: Vec<String> = t.history.names().map(str::to_owned).collect();
    names.sort();
    let chosen = series
        .filter(|s| names.iter().any(|n| n == s))
        .map(str::to_owned)
        .or_else(|| names.first().cloned());
    let chart = chosen.and_then(|name| chart(&t, &name, now));
    let positions = row
        .location
        .map(|l| MapPosition {
            id,
            label: row.label.clone(),
            lat: l.lat,
            lng: l.lng,
        })
        .into_iter()
        .collect();
    Ok(Some(TrackerDetail {
        group_id: t.info.group_id,
        source_id: t.info.source_id,
        readings: readings(&t),
        series: names,
        chart,
        alerts,
        map: map(state, positions),
        row,
    }))
}

fn readings(t: &TrackerState) -> Vec<ReadingRow> {
    let mut out = Vec::new();
    if let Some(s) = &t.current {
        let mut field = |name: &str, value: Option<String>, units: Option<&str>| {
            if let Some(value) = value {
                out.push(ReadingRow {
                    kind: "field",
                    name: name.to_owned(),
                    value,
                    units: units.map(str::to_owned),
                });
            }
        };
        let gps = s.gps.as_ref();
        field("speed", gps.and_then(|g| g.speed).map(number), Some("km/h"));
        field(
            "location",
            gps.and_then(|g| g.location)
                .map(|l| format!("{:.5}, {:.5}", l.lat, l.lng)),
            None,
        );
        field("ignition", s.ignition.map(|v| v.to_string()), None);
        field(
            "movement_status",
            s.movement_status.map(|m| format!("{m:?}").to_lowercase()),
            None,
        );
        field("battery_level", s.battery_level.map(number), Some("%"));
        field(
            "connection_status",
            s.connection_status.map(|c| format!("{c:?}").to_lowercase()),
            None,
        );
    }
    let r = &t.readings;
    let mut rows: Vec<ReadingRow> = Vec::new();
    for (name, v) in &r.inputs {
        rows.push(ReadingRow {
            kind: "input",
            name: name.to_string(),
            value: v.value.map(number).unwrap_or_else(|| "—".into()),
            units: v.units.as_ref().map(ToString::to_string),
        });
    }
    for (name, v) in &r.states {
        rows.push(ReadingRow {
            kind: "state",
            name: name.to_string(),
            value: show_json(&v.value),
            units: None,
        });
    }
    for (name, v) in &r.virtual_sensors {
        rows.push(ReadingRow {
            kind: "virtual",
            name: name.to_string(),
            value: show_json(&v.value),
            units: None,
        });
    }
    for (name, v) in &r.counters {
        rows.push(ReadingRow {
            kind: "counter",
            name: name.to_string(),
            value: v.value.map(number).unwrap_or_else(|| "—".into()),
            units: None,
        });
    }
    for (name, v) in &t.iot {
        rows.push(ReadingRow {
            kind: "iot",
            name: name.clone(),
            value: serde_json::to_value(v)
                .map(|j| show_json(&j))
                .unwrap_or_default(),
            units: None,
        });
    }
    rows.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    out.extend(rows);
    out
}

/// The recent history of one series as an SVG polyline.
fn chart(t: &TrackerState, name: &str, now: DateTime<Utc>) -> Option<Chart> {
    let series = t.history.series(name)?;
    let points: Vec<(i64, f64)> = series.points().collect();
    let (first, last) = (points.first()?.0, points.last()?.0);
    let (lo, hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, v)| {
            (lo.min(*v), hi.max(*v))
        });
    let span_t = (last - first).max(1) as f64;
    let span_v = if hi > lo { hi - lo } else { 1.0 };
    let pad = 4.0;
    let svg: Vec<String> = points
        .iter()
        .map(|(at, v)| {
            let x = pad + (at - first) as f64 / span_t * (CHART_WIDTH - 2.0 * pad);
            let y = CHART_HEIGHT - pad - (v - lo) / span_v * (CHART_HEIGHT - 2.0 * pad);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    Some(Chart {
        name: name.to_owned(),
        points: svg.join(" "),
        min: show_json(&serde_json::json!(lo)),
        max: show_json(&serde_json::json!(hi)),
        first: DateTime::from_timestamp_millis(first).map(|at| When::new(at, now)),
        samples: points.len(),
    })
}

/// A silence as the Silences page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct SilenceRow {
    pub id: String,
    pub matchers: String,
    pub state: &'static str,
    pub starts: When,
    pub ends: When,
    pub created_by: String,
    pub comment: String,
}

/// Every silence, newest first.
pub async fn silences(state: &ConsoleState) -> Result<Vec<SilenceRow>, DataError> {
    let now = state.clock.now();
    Ok(state
        .store
        .list_silences()
        .await?
        .into_iter()
        .map(|s| SilenceRow {
            matchers: s
                .matchers
                .iter()
                .map(|m| {
                    let op = match (m.is_equal, m.is_regex) {
                        (true, false) => "=",
                        (true, true) => "=~",
                        (false, false) => "!=",
                        (false, true) => "!~",
                    };
                    format!("{}{op}{}", m.name, m.value)
                })
                .collect::<Vec<_>>()
                .join(", "),
            state: s.state(now),
            starts: When::new(s.starts_at, now),
            ends: When::new(s.ends_at, now),
            id: s.id,
            created_by: s.created_by,
            comment: s.comment,
        })
        .collect())
}

/// The silence form's default end: two hours from now on the daemon's clock.
pub fn default_silence(state: &ConsoleState) -> NewSilence {
    let now = state.clock.now();
    NewSilence {
        matchers: Vec::new(),
        starts_at: Some(now),
        ends_at: now + chrono::Duration::hours(2),
        created_by: String::new(),
        comment: String::new(),
    }
}

/// One outbox entry as the Deliveries page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRow {
    pub id: String,
    pub channel: String,
    pub status: &'static str,
    pub attempts: u32,
    pub created: When,
    pub last_error: Option<String>,
}

/// Pending and failed notifications, newest first, by channel.
pub async fn deliveries(
    state: &ConsoleState,
) -> Result<BTreeMap<String, Vec<DeliveryRow>>, DataError> {
    let now = state.clock.now();
    let mut out: BTreeMap<String, Vec<DeliveryRow>> = BTreeMap::new();
    for status in [OutboxStatus::Pending, OutboxStatus::Failed] {
        for e in state.store.list_outbox(Some(status), 200).await? {
            out.entry(e.channel.clone()).or_default().push(DeliveryRow {
                id: e.id.clone(),
                channel: e.channel.clone(),
                status: status.as_str(),
                attempts: e.attempts,
                created: When::new(e.created_at, now),
                last_error: e.last_error.clone(),
            });
        }
    }
    Ok(out)
}

/// The outcome of the last reload, as the daemon's reloader records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastReload {
    pub at: DateTime<Utc>,
    /// `api`, `sighup` or `file_change`.
    pub trigger: &'static str,
    /// The token's name, for `api`.
    pub by: Option<String>,
    /// What is in force now, or why the reload was rejected.
    pub outcome: String,
    /// Each error of a rejected reload, naming its file:line, rule and field.
    pub errors: Vec<String>,
}

/// The last reload as the Rules page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadView {
    pub at: When,
    pub trigger: &'static str,
    pub by: Option<String>,
    pub ok: bool,
    pub outcome: String,
    pub errors: Vec<String>,
}

/// One rule on the Rules page.
#[derive(Debug, Clone, Serialize)]
pub struct RuleRow {
    pub name: String,
    pub place: String,
    pub severity: &'static str,
    pub description: Option<String>,
    pub firing: usize,
    pub pending: usize,
    /// Evaluation faults since the rule set was loaded.
    pub faults: u64,
    /// The last one: `field` for tracker `#id`: message.
    pub last_fault: Option<String>,
    pub last_fault_at: Option<When>,
}

/// The Rules page: the rules in force and the last reload.
#[derive(Debug, Clone, Serialize)]
pub struct RulesView {
    pub rules: Vec<RuleRow>,
    pub last_reload: Option<ReloadView>,
}

/// The rules in force with their live counts and faults, and the last reload.
pub async fn rules(state: &ConsoleState) -> Result<RulesView, DataError> {
    let now = state.clock.now();
    let last_reload = (state.last_reload)().map(|r| ReloadView {
        at: When::new(r.at, now),
        trigger: r.trigger,
        by: r.by,
        ok: r.errors.is_empty(),
        outcome: r.outcome,
        errors: r.errors,
    });
    let Some(set) = (state.rules)() else {
        return Ok(RulesView {
            rules: Vec::new(),
            last_reload,
        });
    };
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (t, status) in live(state).await? {
        let c = counts.entry(t.rule.to_string()).or_default();
        if status == "pending" {
            c.1 += 1;
        } else {
            c.0 += 1;
        }
    }
    let rules = set
        .rules()
        .iter()
        .enumerate()
        .map(|(index, r)| {
            let (firing, pending) = counts.get(&*r.name).copied().unwrap_or_default();
            let faults = set.faults_of(index);
            RuleRow {
                name: r.name.to_string(),
                place: r.place.to_string(),
                severity: r.severity.as_str(),
                description: r.description.clone(),
                firing,
                pending,
                faults: faults.count,
                last_fault: faults.last.as_ref().map(|f| {
                    format!(
                        "{} ({}) for tracker #{}: {}",
                        f.field,
                        f.kind.as_str(),
                        f.tracker_id,
                        f.message
                    )
                }),
                last_fault_at: faults.last.as_ref().map(|f| When::new(f.at, now)),
            }
        })
        .collect();
    Ok(RulesView { rules, last_reload })
}

/// The playground's answer: which trackers a condition holds for now.
#[derive(Debug, Clone, Serialize)]
pub struct PlaygroundView {
    pub condition: String,
    pub trackers: usize,
    pub holds: Vec<PlaygroundRow>,
    /// Trackers where it failed (a fault), with the message.
    pub errors: Vec<PlaygroundRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlaygroundRow {
    pub id: TrackerId,
    /// The engine's key: the tracker's page is `/trackers/{key}`.
    pub key: TrackerId,
    pub label: String,
    pub value: Option<String>,
    pub error: Option<String>,
}

/// Compiles `condition` with the rules' engine and evaluates it against every cached
/// tracker at the daemon's clock.
pub async fn playground(
    state: &ConsoleState,
    condition: &str,
) -> Result<PlaygroundView, DataError> {
    let rules =
        (state.rules)().ok_or_else(|| DataError::Invalid("no rule set is loaded".into()))?;
    let trackers = trackers_raw(state).await?;
    let now = state.clock.now();
    let text = condition.to_owned();
    let (tried, trackers) =
        tokio::task::spawn_blocking(move || (rules.try_condition(&text, &trackers, now), trackers))
            .await
            .map_err(|_| DataError::Engine)?;
    let tried = tried.map_err(DataError::Invalid)?;
    let label = |key: TrackerId| {
        trackers
            .iter()
            .find(|t| t.info.key() == key)
            .and_then(|t| t.info.label.clone())
            .unwrap_or_else(|| format!("#{}", key_parts(key).1))
    };
    let mut view = PlaygroundView {
        condition: condition.to_owned(),
        trackers: tried.len(),
        holds: Vec::new(),
        errors: Vec::new(),
    };
    for t in tried {
        let row = PlaygroundRow {
            id: t.tracker_id,
            key: t.key,
            label: label(t.key),
            value: t.value.as_ref().map(show_json),
            error: t.error.clone(),
        };
        if t.error.is_some() {
            view.errors.push(row);
        } else if t.holds {
            view.holds.push(row);
        }
    }
    view.holds.sort_by(|a, b| a.label.cmp(&b.label));
    Ok(view)
}

/// The most recordings the playground offers.
const MAX_RECORDINGS: usize = 200;

/// The recordings the playground offers: the `.jsonl` files directly in
/// `server.recordings`, by name. Nothing else can be chosen.
pub fn recordings(state: &ConsoleState) -> Vec<String> {
    let Some(dir) = &state.recordings else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    names.sort();
    names.truncate(MAX_RECORDINGS);
    names
}

/// The playground's run over a recording, with tracker labels from the cache.
#[derive(Debug, Clone, Serialize)]
pub struct RecordingView {
    pub recording: String,
    #[serde(flatten)]
    pub run: crate::rules::playground::RecordingRun,
    /// Each listed firing's tracker as the cache names it (`#id` when unknown).
    pub labels: BTreeMap<String, String>,
}

/// Runs `condition` over the recording named `name`: one of [`recordings`], never a path
/// from the request.
pub async fn playground_recording(
    state: &ConsoleState,
    condition: &str,
    hold_for: Option<&str>,
    name: &str,
) -> Result<RecordingView, DataError> {
    let rules =
        (state.rules)().ok_or_else(|| DataError::Invalid("no rule set is loaded".into()))?;
    let Some(dir) = state.recordings.clone() else {
        return Err(DataError::Invalid(
            "no recordings folder is configured (server.recordings)".into(),
        ));
    };
    if !recordings(state).iter().any(|n| n == name) {
        return Err(DataError::Invalid(format!(
            "`{name}` is not one of the recordings in server.recordings"
        )));
    }
    let path = dir.join(name);
    let (text, hold_for) = (condition.to_owned(), hold_for.map(str::to_owned));
    let run = tokio::task::spawn_blocking(move || {
        rules.try_over_recording(&text, hold_for.as_deref(), &path)
    })
    .await
    .map_err(|_| DataError::Engine)?
    .map_err(DataError::Invalid)?;
    let trackers = trackers_raw(state).await.unwrap_or_default();
    let labels = run
        .first
        .iter()
        .filter_map(|f| f.tracker_id)
        .map(|id| {
            let label = trackers
                .iter()
                .find(|t| t.info.id == id)
                .and_then(|t| t.info.label.clone())
                .map_or_else(|| format!("#{id}"), |l| format!("{l} (#{id})"));
            (id.to_string(), label)
        })
        .collect();
    Ok(RecordingView {
        recording: name.to_owned(),
        run,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_read_as_typed() {
        let m =
            parse_matchers("rule=fuel_drop, severity=~crit.*, tracker_id!=3, tracker_label!~Van.*")
                .unwrap();
        let shown: Vec<(&str, &str, bool, bool)> = m
            .iter()
            .map(|m| (m.name.as_str(), m.value.as_str(), m.is_equal, m.is_regex))
            .collect();
        assert_eq!(
            shown,
            [
                ("rule", "fuel_drop", true, false),
                ("severity", "crit.*", true, true),
                ("tracker_id", "3", false, false),
                ("tracker_label", "Van.*", false, true),
            ]
        );
        assert!(parse_matchers("").unwrap().is_empty());
    }

    #[test]
    fn a_bad_matcher_says_which_and_why() {
        assert_eq!(
            parse_matchers("rule").unwrap_err(),
            "`rule` is not a matcher: write name=value, name!=value, name=~regex or name!~regex"
        );
        assert!(
            parse_matchers("rule=~(")
                .unwrap_err()
                .starts_with("`rule=~(`: ")
        );
    }

    #[test]
    fn ages_read_short() {
        let d = chrono::Duration::seconds;
        assert_eq!(ago(d(5)), "5s ago");
        assert_eq!(ago(d(2)), "just now");
        assert_eq!(ago(d(-8)), "just now");
        assert_eq!(ago(d(125)), "2m ago");
        assert_eq!(ago(d(7300)), "2h ago");
        assert_eq!(ago(d(200_000)), "2d ago");
        assert_eq!(ago(d(-90)), "in 1m");
    }

    #[test]
    fn numbers_read_tidy() {
        assert_eq!(number(157.20000000000002), "157.2");
        assert_eq!(number(24.0), "24");
        assert_eq!(number(-7.256), "-7.26");
        assert_eq!(show_json(&serde_json::json!(12)), "12");
        assert_eq!(show_json(&serde_json::json!("On")), "On");
    }
}
