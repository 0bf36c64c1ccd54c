//! Inhibition: an alert kept quiet because another alert is firing (Alertmanager's
//! `inhibit_rules`: "while `tracker_offline` fires for a tracker, its warnings are not
//! sent").
//!
//! Alertmanager's semantics: a target alert (one that matches a rule's
//! `target_matchers`) is inhibited while an alert that matches its `source_matchers` fires
//! with the same values of the `equal` labels (a label both lack is equal). An alert that
//! matches both sides is never inhibited by an alert that also matches both, so an alert
//! never inhibits itself. An inhibited alert keeps its news: when the source resolves it
//! goes out at its group's next flush. Like a silenced one, an inhibited resolve is not
//! sent and the channel forgets it was told the alert fired.
//!
//! The inhibitor sees every alert, routed or not: [`Inhibit::observe`] is called with each
//! transition and keeps, per rule, the firing sources by their `equal` values, so the
//! stage's question costs a hash lookup per rule whose target side matches, not a scan.
//! The index is rebuilt from the live alerts at start.

use std::collections::{BTreeMap, HashMap};

use super::{Candidate, Decision, Flush, History, Need, Stage, Verdict};
use crate::alert::{AlertStatus, AlertTransition, Fingerprint};
use crate::config::InhibitRuleConfig;
use crate::dispatch::routes::{LabelMatcher, label};
use crate::store::{Outcome, StoreError};

/// An inhibit rule that cannot be compiled, naming it.
#[derive(Debug, thiserror::Error)]
#[error("inhibit_rules[{rule}].{side}.{name}: {message}")]
pub struct InhibitError {
    pub rule: usize,
    pub side: &'static str,
    pub name: String,
    pub message: String,
}

/// One compiled inhibit rule.
#[derive(Debug, Clone)]
pub(crate) struct InhibitRule {
    source: Vec<LabelMatcher>,
    target: Vec<LabelMatcher>,
    equal: Vec<String>,
}

impl InhibitRule {
    /// Compiles the config's `inhibit_rules`.
    pub fn compile(rules: &[InhibitRuleConfig]) -> Result<Vec<InhibitRule>, InhibitError> {
        let side = |rule: usize, side: &'static str, m: &[crate::config::MatcherConfig]| {
            m.iter()
                .map(|m| {
                    LabelMatcher::new(&m.name, &m.value, m.is_regex, m.is_equal).map_err(
                        |message| InhibitError {
                            rule,
                            side,
                            name: m.name.clone(),
                            message,
                        },
                    )
                })
                .collect::<Result<Vec<_>, _>>()
        };
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Ok(InhibitRule {
                    source: side(i, "source_matchers", &r.source_matchers.0)?,
                    target: side(i, "target_matchers", &r.target_matchers.0)?,
                    equal: r.equal.clone(),
                })
            })
            .collect()
    }

    fn is_source(&self, t: &AlertTransition) -> bool {
        self.source.iter().all(|m| m.matches(t))
    }

    fn is_target(&self, t: &AlertTransition) -> bool {
        self.target.iter().all(|m| m.matches(t))
    }

    /// The values of the `equal` labels (missing reads as empty, as in Alertmanager).
    fn key(&self, t: &AlertTransition) -> Vec<String> {
        self.equal
            .iter()
            .map(|n| label(t, n).map(|v| v.into_owned()).unwrap_or_default())
            .collect()
    }
}

/// Per rule: the firing sources by their `equal` values; each with whether it matches
/// the rule's target side too.
type Sources = HashMap<Vec<String>, BTreeMap<Fingerprint, bool>>;

/// The inhibition stage: the rules and the index of firing sources.
#[derive(Debug, Default)]
pub(crate) struct Inhibit {
    rules: Vec<InhibitRule>,
    sources: Vec<Sources>,
    /// Where each firing source is indexed: `(rule, key)`.
    indexed: HashMap<Fingerprint, Vec<(usize, Vec<String>)>>,
}

impl Inhibit {
    pub fn new(rules: Vec<InhibitRule>) -> Inhibit {
        Inhibit {
            sources: vec![Sources::new(); rules.len()],
            rules,
            indexed: HashMap::new(),
        }
    }

    /// Keeps the index in step with one transition (every alert, routed or not).
    pub fn observe(&mut self, t: &AlertTransition) {
        if self.rules.is_empty() {
            return;
        }
        self.forget(&t.fingerprint);
        if t.status != AlertStatus::Firing {
            return;
        }
        let mut places = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.is_source(t) {
                let key = rule.key(t);
                self.sources[i]
                    .entry(key.clone())
                    .or_default()
                    .insert(t.fingerprint.clone(), rule.is_target(t));
                places.push((i, key));
            }
        }
        if !places.is_empty() {
            self.indexed.insert(t.fingerprint.clone(), places);
        }
    }

    fn forget(&mut self, fp: &Fingerprint) {
        for (i, key) in self.indexed.remove(fp).unwrap_or_default() {
            if let Some(set) = self.sources[i].get_mut(&key) {
                set.remove(fp);
                if set.is_empty() {
                    self.sources[i].remove(&key);
                }
            }
        }
    }

    /// The fingerprint of a firing alert that inhibits `t`, if any.
    pub fn inhibitor(&self, t: &AlertTransition) -> Option<&Fingerprint> {
        for (rule, sources) in self.rules.iter().zip(&self.sources) {
            if sources.is_empty() || !rule.is_target(t) {
                continue;
            }
            let Some(firing) = sources.get(&rule.key(t)) else {
                continue;
            };
            let two_sided = rule.is_source(t);
            let by = firing
                .iter()
                .find(|(fp, also_target)| **fp != t.fingerprint && !(two_sided && **also_target));
            if let Some((fp, _)) = by {
                return Some(fp);
            }
        }
        None
    }
}

impl Stage for Inhibit {
    fn exec(
        &mut self,
        f: &Flush<'_>,
        c: &mut Candidate<'_>,
        history: &mut dyn History,
    ) -> Result<Verdict, StoreError> {
        let Some(by) = self.inhibitor(&c.member.alert) else {
            return Ok(Verdict::Pass);
        };
        let m = &mut *c.member;
        if c.need == Need::Resolve {
            // The receiver will not hear the resolve: forget that it was told.
            m.told_firing_at = None;
            c.dirty = true;
        }
        if !m.quiet_logged || c.need == Need::Resolve {
            m.quiet_logged = true;
            f.log(
                &m.alert,
                Outcome::Inhibited,
                None,
                Some(format!("inhibited by {by}")),
            )?;
        }
        history.record(&f.record(&m.alert, Decision::Inhibited { by: &by.0 }));
        Ok(Verdict::Stop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::stages::Need;
    use crate::dispatch::stages::tests::{
        Recorder, candidate_of, flush_of, member, secs, settings,
    };
    use crate::dispatch::testing::{config, firing, resolved};
    use crate::store;

    fn stage(yaml: &str) -> Inhibit {
        let cfg = config(&format!("inhibit_rules:\n{yaml}"));
        Inhibit::new(InhibitRule::compile(&cfg.inhibit_rules).unwrap())
    }

    /// `rule` on `tracker`, with `severity`.
    fn alert(rule: &str, tracker: i64, severity: crate::alert::Severity) -> AlertTransition {
        let mut t = firing(rule, tracker);
        t.severity = severity;
        t
    }

    const OFFLINE: &str = r#"
  - source_matchers: { rule: tracker_offline }
    target_matchers: { severity: "=~warning|info" }
    equal: [tracker_id]
"#;

    #[test]
    fn a_firing_source_inhibits_targets_with_equal_labels_until_it_resolves() {
        use crate::alert::Severity::*;
        let mut s = stage(OFFLINE);
        let offline = alert("tracker_offline", 1, Critical);
        let fuel_1 = alert("fuel_low", 1, Warning);
        let fuel_2 = alert("fuel_low", 2, Warning);
        let crash_1 = alert("crash", 1, Critical);
        assert_eq!(s.inhibitor(&fuel_1), None);
        s.observe(&offline);
        assert_eq!(s.inhibitor(&fuel_1), Some(&offline.fingerprint));
        // Another tracker: labels not equal; a critical alert: not a target.
        assert_eq!(s.inhibitor(&fuel_2), None);
        assert_eq!(s.inhibitor(&crash_1), None);
        // A source does not inhibit itself.
        assert_eq!(s.inhibitor(&offline), None);
        s.observe(&resolved(&offline, secs(60)));
        assert_eq!(s.inhibitor(&fuel_1), None);
        assert!(s.indexed.is_empty() && s.sources[0].is_empty());
    }

    #[test]
    fn list_matchers_and_missing_equal_labels_match_as_alertmanager_does() {
        use crate::alert::Severity::*;
        // No `equal`: any firing source inhibits every target. A label both lack is equal.
        let mut s = stage(
            r#"
  - source_matchers: ['rule="navixy_source_down"']
    target_matchers: ["rule=~tracker_offline|no_data", "severity!=critical"]
    equal: [depot]
"#,
        );
        let mut down = alert("navixy_source_down", 0, Critical);
        down.tracker = None;
        down.labels.clear();
        let mut offline = alert("tracker_offline", 7, Warning);
        offline.labels.clear();
        s.observe(&down);
        assert_eq!(s.inhibitor(&offline), Some(&down.fingerprint));
        offline.labels.insert("depot".into(), "north".into());
        assert_eq!(s.inhibitor(&offline), None);
        offline.labels.clear();
        offline.severity = Critical;
        assert_eq!(s.inhibitor(&offline), None);
    }

    #[test]
    fn alerts_matching_both_sides_do_not_inhibit_each_other() {
        use crate::alert::Severity::*;
        // Alertmanager's two-sided exclusion: each warning would inhibit the other.
        let mut s = stage(
            r#"
  - source_matchers: { severity: warning }
    target_matchers: { severity: warning }
"#,
        );
        let a = alert("fuel_low", 1, Warning);
        let b = alert("speeding", 1, Warning);
        s.observe(&a);
        s.observe(&b);
        assert_eq!(s.inhibitor(&a), None);
        assert_eq!(s.inhibitor(&b), None);
    }

    #[test]
    fn an_inhibited_alert_stops_is_logged_once_and_recorded_each_time() {
        use crate::alert::Severity::*;
        let conn = store::test_connection();
        let mut s = stage(OFFLINE);
        let offline = alert("tracker_offline", 1, Critical);
        s.observe(&offline);
        let set = settings();
        let mut history = Recorder::default();
        let mut m = member(alert("fuel_low", 1, Warning));
        for at in [10, 70] {
            let f = flush_of(&conn, &set, secs(at), false);
            let mut c = candidate_of(&mut m, Need::New);
            assert_eq!(s.exec(&f, &mut c, &mut history).unwrap(), Verdict::Stop);
        }
        assert_eq!(history.decisions(), ["inhibited", "inhibited"]);
        let log = store::recent_log(&conn, 10).unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].outcome, Outcome::Inhibited);
        assert_eq!(
            log[0].detail.as_deref(),
            Some(&*format!("inhibited by {}", offline.fingerprint))
        );

        // The source resolves: the alert passes with its news.
        s.observe(&resolved(&offline, secs(100)));
        let f = flush_of(&conn, &set, secs(130), false);
        let mut c = candidate_of(&mut m, Need::New);
        assert_eq!(s.exec(&f, &mut c, &mut history).unwrap(), Verdict::Pass);
    }

    #[test]
    fn an_inhibited_resolve_makes_the_channel_forget_the_firing() {
        use crate::alert::Severity::*;
        let conn = store::test_connection();
        let mut s = stage(OFFLINE);
        s.observe(&alert("tracker_offline", 1, Critical));
        let set = settings();
        let mut history = Recorder::default();
        let fuel = alert("fuel_low", 1, Warning);
        let mut m = member(resolved(&fuel, secs(5)));
        m.told_firing_at = Some(secs(0));
        let f = flush_of(&conn, &set, secs(10), false);
        let mut c = candidate_of(&mut m, Need::Resolve);
        assert_eq!(s.exec(&f, &mut c, &mut history).unwrap(), Verdict::Stop);
        assert!(c.dirty);
        assert_eq!(m.told_firing_at, None);
    }

    #[test]
    fn the_firing_sources_are_restored_at_start() {
        use crate::alert::Severity::*;
        use crate::dispatch::group::Groups;
        use crate::dispatch::routes::Router;
        use std::sync::Arc;

        let cfg = config(&format!(
            "channels: {{ ops: {{ type: stdout }} }}\nroutes: [{{ channels: [ops] }}]\nnotify: {{ group_wait: 0s }}\ninhibit_rules:{OFFLINE}"
        ));
        let router = Arc::new(Router::new(&cfg).unwrap());
        let mut conn = store::test_connection();
        let offline = alert("tracker_offline", 1, Critical);
        let run = |groups: &mut Groups, conn: &mut crate::store::Conn, t, at| {
            let tx = conn.transaction().unwrap();
            groups.apply(&tx, t, secs(at)).unwrap();
            let mut out = Vec::new();
            groups.flush_due(&tx, secs(at), 0, &mut out).unwrap();
            tx.commit().unwrap();
            out.len()
        };
        let mut groups = Groups::new(router.clone());
        assert_eq!(run(&mut groups, &mut conn, offline.clone(), 0), 1);

        // A new run, with nothing but the database: the source still inhibits.
        let mut groups = Groups::load(&conn, router, &[Arc::from("ops")]).unwrap();
        assert_eq!(
            run(&mut groups, &mut conn, alert("fuel_low", 1, Warning), 10),
            0
        );
        let inhibited: Vec<_> = store::recent_log(&conn, 10)
            .unwrap()
            .into_iter()
            .filter(|e| e.outcome == Outcome::Inhibited)
            .map(|e| e.rule)
            .collect();
        assert_eq!(inhibited, ["fuel_low"]);
    }

    #[test]
    fn without_rules_every_alert_passes_and_nothing_is_said() {
        let conn = store::test_connection();
        let set = settings();
        let f = flush_of(&conn, &set, secs(0), false);
        let mut m = member(firing("fuel_drain", 1));
        let mut history = Recorder::default();
        let mut s = Inhibit::default();
        s.observe(&m.alert.clone());
        let mut c = candidate_of(&mut m, Need::New);
        assert_eq!(s.exec(&f, &mut c, &mut history).unwrap(), Verdict::Pass);
        assert!(!c.dirty);
        assert!(history.decisions().is_empty());
        assert!(store::recent_log(&conn, 10).unwrap().is_empty());
    }
}
