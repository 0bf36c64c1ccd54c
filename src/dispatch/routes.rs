//! Routing: which channels an alert goes to, with which notify settings, and in which
//! aggregation group.
//!
//! Routes are tried in order; the first that matches wins, unless it says `continue: true`,
//! in which case the next ones are tried too. A route without `match` matches everything.
//! A rule's own `channels` bypass the routes and use the `notify` defaults. A channel named
//! by several matching routes gets the alert once, with the first route's settings.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::stages::inhibit::InhibitRule;
use crate::alert::AlertTransition;
use crate::config::{Config, NotifyConfig, RouteConfig};
use crate::time_intervals::NamedTimeInterval;

/// A route that cannot be used, naming it.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("routes[{route}].match.{name}: `{value}` is not a valid regex: {message}")]
    BadRegex {
        route: usize,
        name: String,
        value: String,
        message: String,
    },
    /// An inhibit rule that does not compile, named in the message.
    #[error("{0}")]
    Inhibit(String),
    #[error("routes[{route}]: unknown time interval `{name}`")]
    UnknownInterval { route: usize, name: String },
}

/// The value of a label of an alert, as routes, silences and `group_by` see it:
/// `rule` (also `alertname`), `severity`, `tracker_id`, `tracker_label`, `key`, then the
/// rule's own labels. A label the alert lacks reads as `None` (and matches as empty).
pub fn label<'a>(t: &'a AlertTransition, name: &str) -> Option<Cow<'a, str>> {
    match name {
        "rule" | "alertname" => Some(Cow::Borrowed(&t.rule)),
        "severity" => Some(Cow::Borrowed(t.severity.as_str())),
        "tracker_id" => t.tracker.as_ref().map(|tr| Cow::Owned(tr.id.to_string())),
        "tracker_label" => t
            .tracker
            .as_ref()
            .and_then(|tr| tr.label.as_deref())
            .map(Cow::Borrowed),
        "key" => t.key.as_deref().map(Cow::Borrowed),
        other => t.labels.get(other).map(|v| Cow::Borrowed(v.as_str())),
    }
}

/// One compiled matcher: equality, or an anchored regex, possibly negated.
#[derive(Debug, Clone)]
pub struct LabelMatcher {
    name: String,
    test: Test,
    negate: bool,
}

#[derive(Debug, Clone)]
enum Test {
    Equal(String),
    Regex(regex::Regex),
}

impl LabelMatcher {
    /// `value` as written in a route: `critical` (equal), `=~fuel_.*` (regex), `!=info`,
    /// `!~test_.*` (negated).
    pub fn parse(name: &str, value: &str) -> Result<LabelMatcher, String> {
        let (negate, regex, rest) = if let Some(r) = value.strip_prefix("=~") {
            (false, true, r)
        } else if let Some(r) = value.strip_prefix("!~") {
            (true, true, r)
        } else if let Some(r) = value.strip_prefix("!=") {
            (true, false, r)
        } else {
            (false, false, value)
        };
        LabelMatcher::new(name, rest, regex, !negate)
    }

    pub fn new(name: &str, value: &str, is_regex: bool, is_equal: bool) -> Result<Self, String> {
        let test = if is_regex {
            Test::Regex(regex::Regex::new(&format!("^(?:{value})$")).map_err(|e| e.to_string())?)
        } else {
            Test::Equal(value.to_owned())
        };
        Ok(LabelMatcher {
            name: name.to_owned(),
            test,
            negate: !is_equal,
        })
    }

    pub fn matches(&self, t: &AlertTransition) -> bool {
        let value = label(t, &self.name);
        let value = value.as_deref().unwrap_or("");
        let hit = match &self.test {
            Test::Equal(v) => v == value,
            Test::Regex(r) => r.is_match(value),
        };
        hit != self.negate
    }
}

/// The notify settings in force for one route (the `notify` defaults with the route's
/// overrides), kept with each group so a restart keeps the timing it started with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub group_by: Vec<String>,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub send_resolved: bool,
    /// Names of the time intervals that mute the channel, and outside of which it is
    /// muted (empty: always active).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mute_time_intervals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_time_intervals: Vec<String>,
}

impl Settings {
    fn defaults(n: &NotifyConfig) -> Settings {
        Settings {
            group_by: n.group_by.clone(),
            group_wait: n.group_wait,
            group_interval: n.group_interval,
            repeat_interval: n.repeat_interval,
            send_resolved: n.send_resolved,
            mute_time_intervals: Vec::new(),
            active_time_intervals: Vec::new(),
        }
    }

    fn with_overrides(n: &NotifyConfig, r: &RouteConfig) -> Settings {
        let d = Settings::defaults(n);
        Settings {
            group_by: r.group_by.clone().unwrap_or(d.group_by),
            group_wait: r.group_wait.unwrap_or(d.group_wait),
            group_interval: r.group_interval.unwrap_or(d.group_interval),
            repeat_interval: r.repeat_interval.unwrap_or(d.repeat_interval),
            send_resolved: r.send_resolved.unwrap_or(d.send_resolved),
            mute_time_intervals: r.mute_time_intervals.clone(),
            active_time_intervals: r.active_time_intervals.clone(),
        }
    }

    /// The group an alert falls in under these settings: a key unique within the route,
    /// and the `group_by` labels with their values. `...` groups by every label, which is
    /// one group per alert.
    pub fn group_of(&self, route: &str, t: &AlertTransition) -> (String, BTreeMap<String, String>) {
        let mut labels = BTreeMap::new();
        if self.group_by.iter().any(|n| n == "...") {
            labels.insert("fingerprint".to_owned(), t.fingerprint.0.clone());
        } else {
            for name in &self.group_by {
                let value = label(t, name).map(Cow::into_owned).unwrap_or_default();
                labels.insert(name.clone(), value);
            }
        }
        let mut key = String::with_capacity(route.len() + 32);
        key.push_str(route);
        key.push_str(":{");
        for (i, (name, value)) in labels.iter().enumerate() {
            if i > 0 {
                key.push(',');
            }
            key.push_str(name);
            key.push('=');
            // Debug quoting escapes `"` and `,`-free values alike, so keys never collide.
            key.push_str(&format!("{value:?}"));
        }
        key.push('}');
        (key, labels)
    }
}

/// Where one alert goes: a channel, the route that chose it, and its settings.
#[derive(Debug, Clone)]
pub struct Target {
    pub channel: Arc<str>,
    /// `routes[i]`, or `rule` when the rule's own channels bypassed the routes.
    pub route: Arc<str>,
    pub settings: Arc<Settings>,
}

struct Route {
    matchers: Vec<LabelMatcher>,
    channels: Vec<Arc<str>>,
    continue_matching: bool,
    tag: Arc<str>,
    settings: Arc<Settings>,
    escalate: Arc<[EscalationStep]>,
}

/// One step of a route's `escalate`: the channels added `after` the alert started
/// firing, if it is still firing and not acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationStep {
    pub after: Duration,
    pub channels: Vec<String>,
}

/// The escalation of one matched route: its steps, and the settings its channels group
/// with.
#[derive(Debug, Clone)]
pub struct Escalation {
    /// `routes[i]`.
    pub route: Arc<str>,
    pub settings: Arc<Settings>,
    pub steps: Arc<[EscalationStep]>,
}

/// The compiled `routes` of a config, with the time intervals they name and the inhibit
/// rules that apply across them.
pub struct Router {
    routes: Vec<Route>,
    intervals: Arc<BTreeMap<String, NamedTimeInterval>>,
    inhibit_rules: Vec<InhibitRule>,
    defaults: Arc<Settings>,
    rule_tag: Arc<str>,
    known_channels: Vec<Arc<str>>,
    /// Some route has `escalate`.
    escalates: bool,
}

/// The result of routing one alert.
#[derive(Debug, Default)]
pub struct Routed {
    pub targets: Vec<Target>,
    /// Channels a rule named that the config does not define.
    pub unknown_channels: Vec<String>,
}

impl Router {
    pub fn new(config: &Config) -> Result<Router, RouteError> {
        let mut routes = Vec::with_capacity(config.routes.len());
        for (i, r) in config.routes.iter().enumerate() {
            let mut matchers = Vec::with_capacity(r.matchers.len());
            for (name, value) in &r.matchers {
                matchers.push(LabelMatcher::parse(name, value).map_err(|message| {
                    RouteError::BadRegex {
                        route: i,
                        name: name.clone(),
                        value: value.clone(),
                        message,
                    }
                })?);
            }
            for name in r.mute_time_intervals.iter().chain(&r.active_time_intervals) {
                if config.time_interval(name).is_none() {
                    return Err(RouteError::UnknownInterval {
                        route: i,
                        name: name.clone(),
                    });
                }
            }
            routes.push(Route {
                matchers,
                channels: r.channels.iter().map(|c| Arc::from(c.as_str())).collect(),
                continue_matching: r.continue_matching,
                tag: Arc::from(format!("routes[{i}]")),
                settings: Arc::new(Settings::with_overrides(&config.notify, r)),
                escalate: r
                    .escalate
                    .iter()
                    .map(|step| EscalationStep {
                        after: step.after,
                        channels: step.channels.clone(),
                    })
                    .collect(),
            });
        }
        Ok(Router {
            escalates: routes.iter().any(|r| !r.escalate.is_empty()),
            routes,
            intervals: Arc::new(
                config
                    .time_intervals
                    .iter()
                    .map(|t| (t.name.clone(), t.clone()))
                    .collect(),
            ),
            inhibit_rules: InhibitRule::compile(&config.inhibit_rules)
                .map_err(|e| RouteError::Inhibit(e.to_string()))?,
            defaults: Arc::new(Settings::defaults(&config.notify)),
            rule_tag: Arc::from("rule"),
            known_channels: config
                .channels
                .keys()
                .map(|c| Arc::from(c.as_str()))
                .collect(),
        })
    }

    /// The time intervals by name.
    pub fn intervals(&self) -> &Arc<BTreeMap<String, NamedTimeInterval>> {
        &self.intervals
    }

    pub(crate) fn inhibit_rules(&self) -> &[InhibitRule] {
        &self.inhibit_rules
    }

    /// The channels an alert goes to. Empty targets and no unknown channels means no route
    /// matched and the rule names no channels.
    pub fn route(&self, t: &AlertTransition) -> Routed {
        let mut out = Routed::default();
        if let Some(channels) = &t.channels {
            for name in channels {
                match self.known_channels.iter().find(|c| ***c == **name) {
                    Some(channel) => push_once(
                        &mut out.targets,
                        Target {
                            channel: channel.clone(),
                            route: self.rule_tag.clone(),
                            settings: self.defaults.clone(),
                        },
                    ),
                    None => out.unknown_channels.push(name.clone()),
                }
            }
            return out;
        }
        for route in &self.routes {
            if !route.matchers.iter().all(|m| m.matches(t)) {
                continue;
            }
            for channel in &route.channels {
                push_once(
                    &mut out.targets,
                    Target {
                        channel: channel.clone(),
                        route: route.tag.clone(),
                        settings: route.settings.clone(),
                    },
                );
            }
            if !route.continue_matching {
                break;
            }
        }
        out
    }
}

impl Router {
    /// The escalations of the routes that match `t` (as [`Router::route`] matches them);
    /// none for an alert whose rule names its own channels.
    pub fn escalations(&self, t: &AlertTransition) -> Vec<Escalation> {
        let mut out = Vec::new();
        if !self.escalates || t.channels.is_some() {
            return out;
        }
        for route in &self.routes {
            if !route.matchers.iter().all(|m| m.matches(t)) {
                continue;
            }
            if !route.escalate.is_empty() {
                out.push(Escalation {
                    route: route.tag.clone(),
                    settings: route.settings.clone(),
                    steps: route.escalate.clone(),
                });
            }
            if !route.continue_matching {
                break;
            }
        }
        out
    }

    /// The configured channel of this name.
    pub fn channel(&self, name: &str) -> Option<Arc<str>> {
        self.known_channels.iter().find(|c| ***c == *name).cloned()
    }
}

fn push_once(targets: &mut Vec<Target>, target: Target) {
    if !targets.iter().any(|t| t.channel == target.channel) {
        targets.push(target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::testing::{config, firing};

    fn channels(r: &Routed) -> Vec<(&str, &str)> {
        r.targets.iter().map(|t| (&*t.channel, &*t.route)).collect()
    }

    const ROUTES: &str = r#"
channels:
  console: { type: stdout }
  ops: { type: stdout }
  slack: { type: stdout }
  mail: { type: stdout }
routes:
  - match: { severity: critical }
    channels: [slack, mail]
    continue: true
    group_wait: 0s
  - match: { team: "=~log.*", tracker_id: "21080" }
    channels: [ops]
  - match: { rule: "!=noisy" }
    channels: [console, slack]
"#;

    #[test]
    fn first_match_wins_unless_continue() {
        let router = Router::new(&config(ROUTES)).unwrap();
        let mut t = firing("fuel_drain", 21080);
        t.labels.insert("team".into(), "logistics".into());
        // critical (continue) then the team route, which stops.
        assert_eq!(
            channels(&router.route(&t)),
            [
                ("slack", "routes[0]"),
                ("mail", "routes[0]"),
                ("ops", "routes[1]")
            ]
        );
        let routed = router.route(&t);
        assert_eq!(routed.targets[0].settings.group_wait, Duration::ZERO);
        assert_eq!(
            routed.targets[2].settings.group_wait,
            Duration::from_secs(10)
        );

        // Another tracker: the team route does not match; the catch-all adds console
        // and slack is not added twice.
        let mut t = firing("fuel_drain", 21081);
        t.labels.insert("team".into(), "logistics".into());
        assert_eq!(
            channels(&router.route(&t)),
            [
                ("slack", "routes[0]"),
                ("mail", "routes[0]"),
                ("console", "routes[2]")
            ]
        );

        let mut t = firing("noisy", 1);
        t.severity = crate::alert::Severity::Info;
        assert!(router.route(&t).targets.is_empty());
    }

    #[test]
    fn a_rules_own_channels_bypass_the_routes() {
        let router = Router::new(&config(ROUTES)).unwrap();
        let mut t = firing("fuel_drain", 21080);
        t.channels = Some(vec!["mail".into(), "nowhere".into()]);
        let routed = router.route(&t);
        assert_eq!(channels(&routed), [("mail", "rule")]);
        assert_eq!(routed.unknown_channels, ["nowhere"]);
    }

    #[test]
    fn a_bad_regex_names_the_route_and_label() {
        let cfg = config(
            "channels: { c: { type: stdout } }\nroutes: [{ match: { team: \"=~(\" }, channels: [c] }]\n",
        );
        let err = Router::new(&cfg).err().unwrap().to_string();
        assert!(
            err.starts_with("routes[0].match.team: `=~(` is not a valid regex"),
            "{err}"
        );
    }

    #[test]
    fn group_keys_follow_group_by() {
        let settings = Settings {
            group_by: vec!["rule".into(), "tracker_id".into(), "team".into()],
            group_wait: Duration::ZERO,
            group_interval: Duration::ZERO,
            repeat_interval: Duration::ZERO,
            send_resolved: true,
            mute_time_intervals: Vec::new(),
            active_time_intervals: Vec::new(),
        };
        let t = firing("fuel_drain", 21080);
        let (key, labels) = settings.group_of("routes[1]", &t);
        assert_eq!(
            key,
            r#"routes[1]:{rule="fuel_drain",team="logistics",tracker_id="21080"}"#
        );
        let mut t = t;
        t.labels.clear();
        let (key, _) = settings.group_of("routes[1]", &t);
        assert_eq!(
            key,
            r#"routes[1]:{rule="fuel_drain",team="",tracker_id="21080"}"#
        );
        assert_eq!(labels["tracker_id"], "21080");
    }
}
