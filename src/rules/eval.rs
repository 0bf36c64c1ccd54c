//! Evaluation: one [`Evaluator`] per shard runs the rules that apply to a tracker each time
//! its data changes and on every tick, and keeps the shard's live alerts.
//!
//! Per tracker it remembers what it last saw (the state `Arc`, the tracker info,
//! lifecycle, online flag, version), so a rule whose inputs did not change is not
//! evaluated again: its last result carries over and only time moves its alert (`for`,
//! `keep_firing_for`). Rules that read the time (`now`, `since`, history windows, a
//! schedule) are evaluated every time.
//!
//! Stale updates (`notify == false`) move alerts silently. An alert that fired on stale
//! data (also when a tick carries a stale result to `for`) is announced the first time a
//! fresh evaluation finds it still holding, and ends silently if it never was announced:
//! old data never pages anyone, the present does. A stale update never resolves an
//! announced alert itself: the next tick does, so receivers see every alert end.
//!
//! An event rule (`mode: event`) runs the same machine: its firing phase is the one bit
//! it needs, "held since the last occurrence". Firing emits the occurrence (a stale one
//! is never announced, not even later); resolving ends the machine silently, so the next
//! time `when` starts to hold is a new occurrence.
//!
//! Asked to ([`Evaluator::report_pending`]), it also reports each alert that starts to
//! wait out its `for`, once per wait, for the history; a wait that ends without firing
//! ends silently.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use rhai::{Dynamic, Scope};

use super::around::Publisher;
use super::faults::{Fault, FaultKind, LastFault};
use super::file::RuleMode;
use super::machine::{Machine, Phase, Step, Timing};
use super::render::{self, RenderInput, TemplateReads};
use super::script::fields::FieldMask;
use super::script::{self, Answer, context};
use super::set::{Deps, Expression, Rule, RuleSet};
use crate::alert::{AlertRecord, AlertStatus, AlertTransition, Fingerprint, PendingAlert};
use crate::engine::ShardEvaluator;
use crate::navixy::messages::TrackerInfo;
use crate::navixy::messages::{IdHashMap, SourceState, TrackerId};
use crate::state::{Lifecycle, TrackerState};
use crate::telemetry;

/// Counts of one rule's work in this shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleStats {
    /// Times `when` was evaluated.
    pub evaluations: u64,
    /// Times the rule was skipped because its inputs had not changed.
    pub skipped: u64,
    /// Faults (errors, exhausted budgets, wrong result types).
    pub errors: u64,
    /// Expression evaluations (`when`, `clear_when`, `key`, `value`) the direct evaluator
    /// answered.
    pub fast: u64,
    /// Expression evaluations Rhai answered: outside the direct evaluator's subset, or it
    /// stepped aside (an error, an overflow).
    pub fallbacks: u64,
}

/// What `restore` did with persisted alerts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Restored {
    /// Firing alerts resumed: they will not fire again.
    pub resumed: usize,
    /// Alerts of rules that are no longer loaded; the caller may resolve them.
    pub orphaned: Vec<AlertRecord>,
}

/// What the evaluator last saw of a tracker.
#[derive(Debug)]
struct Seen {
    version: u64,
    /// Held (not just compared by address) so a freed state cannot alias a new one.
    state: Option<Arc<SourceState>>,
    info: Arc<TrackerInfo>,
    lifecycle: Lifecycle,
    online: bool,
}

/// A pending or firing alert.
#[derive(Debug)]
struct LiveAlert {
    rule: usize,
    key: Option<Arc<str>>,
    fingerprint: Fingerprint,
    machine: Machine,
    /// The latest `when` result for this key and `clear_when` result.
    holds: bool,
    clear: Option<bool>,
    /// Whether its firing was sent (false after a silent, stale firing).
    announced: bool,
    /// Whether `holds` comes from fresh data (an evaluation with `notify`).
    fresh: bool,
    /// The firing transition, for the store and a reload.
    firing: Option<AlertTransition>,
    /// Whether its wait was reported (a pending transition), or needs no report: it
    /// was resumed from a stop or a reload, which reported it already.
    pending_told: bool,
}

#[derive(Debug, Default)]
struct Slot {
    seen: Option<Seen>,
    live: Vec<LiveAlert>,
    /// The `starts_at` of the tracker's latest occurrence of any event rule: a next one
    /// in the same millisecond (two flips in one frame) starts a millisecond later, so
    /// that each occurrence id (`fingerprint:starts_at`) stays its own.
    last_occurrence_ms: i64,
    /// Which rules watch the tracker (their `trackers:` filter), by rule index, as of
    /// the tracker's info when [`Slot::observe`] last saw it change.
    watched: Box<[bool]>,
}

impl Slot {
    /// Asks each rule's `trackers:` filter again when `changes` (from [`Slot::observe`])
    /// say the tracker changed. The answer depends only on the info's id and label, and
    /// the cache gives a tracker another label only with a new info (`set_info`), which
    /// `observe` tells by the `Arc` it keeps. So the filters run once per tracker and
    /// label, not once per update.
    fn refresh_watched(&mut self, changes: Deps, rules: &[Rule], info: &TrackerInfo) {
        if changes.contains(Deps::TRACKER) {
            self.watched = rules.iter().map(|r| r.trackers.matches(info)).collect();
        }
    }

    /// Whether rule `index` watches the tracker, as of [`Slot::refresh_watched`].
    fn watches(&self, index: usize) -> bool {
        self.watched.get(index).copied().unwrap_or(false)
    }

    /// What changed since the last evaluation, as the dependencies it touches, and with
    /// [`Deps::STATE`] which of the `wanted` state fields. The cache bumps `version` once
    /// per update, so one step tells a state update (new state `Arc`), a tracker change
    /// (info, lifecycle, online) and the rest (readings, iot) apart.
    fn observe(&mut self, tracker: &TrackerState, wanted: FieldMask) -> (Deps, FieldMask) {
        let (changes, fields) = match &self.seen {
            None => (Deps::ALL, FieldMask::ALL),
            Some(seen) if seen.version == tracker.version => (Deps::default(), FieldMask::NONE),
            // More than one change since (updates applied without an evaluation between
            // them): which inputs changed is unknown, so all may have.
            Some(seen) if tracker.version.wrapping_sub(seen.version) != 1 => {
                (Deps::ALL, FieldMask::ALL)
            }
            Some(seen) => {
                let fields = match (&seen.state, &tracker.current) {
                    (Some(a), Some(b)) if Arc::ptr_eq(a, b) => FieldMask::NONE,
                    (Some(a), Some(b)) => FieldMask::changed(a, b, wanted),
                    (None, None) => FieldMask::NONE,
                    _ => FieldMask::ALL,
                };
                let state_changed = match (&seen.state, &tracker.current) {
                    (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
                    (None, None) => false,
                    _ => true,
                };
                let tracker_changed = !Arc::ptr_eq(&seen.info, &tracker.info)
                    || seen.lifecycle != tracker.lifecycle
                    || seen.online != tracker.online;
                let mut d = Deps::default();
                if state_changed {
                    d |= Deps::STATE;
                }
                if tracker_changed {
                    d |= Deps::TRACKER;
                }
                // Neither: readings, iot or history changed.
                if !state_changed && !tracker_changed {
                    d |= Deps::DATA;
                }
                (d, fields)
            }
        };
        if changes != Deps::default() {
            self.seen = Some(Seen {
                version: tracker.version,
                state: tracker.current.clone(),
                info: Arc::clone(&tracker.info),
                lifecycle: tracker.lifecycle,
                online: tracker.online,
            });
        }
        (changes, fields)
    }
}

/// One shard's rule evaluator.
pub struct Evaluator {
    rules: Arc<RuleSet>,
    /// The shard's one scope: the context markers, `now`, and nothing else between runs.
    scope: Scope<'static>,
    slots: IdHashMap<TrackerId, Slot>,
    /// Per rule: what its annotation templates read (the rest is not rendered).
    template_reads: Vec<TemplateReads>,
    /// The state fields any rule reads: only those are compared between updates.
    state_fields: FieldMask,
    /// Per rule: the second its schedule was last checked and the answer (a zone
    /// conversion per rule and tracker would cost more than the rule).
    schedule_cache: Vec<(i64, bool)>,
    stats: Vec<RuleStats>,
    /// Evaluations not yet added to the metric (flushed on ticks).
    unflushed: Vec<u64>,
    evaluation_counters: Vec<metrics::Counter>,
    /// Per rule, expression evaluations by [`Answer`] not yet added to the metric: two
    /// increments of a local array per expression cost nothing next to the expression.
    unflushed_answers: Vec<[u64; 2]>,
    answer_counters: Vec<[metrics::Counter; 2]>,
    error_counters: Vec<[Option<metrics::Counter>; FaultKind::ALL.len()]>,
    /// Every fault, when asked for (`test` fails on them); `None` live.
    faults: Option<Vec<Fault>>,
    /// This shard's side of the fleet's positions, when a rule reads them.
    positions: Option<Publisher>,
    /// Whether an alert that starts to wait out its `for` is reported (a pending
    /// transition, for the history); off unless asked for ([`Evaluator::report_pending`]).
    report_pending: bool,
}

impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("rules", &self.rules.len())
            .field("trackers", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl Evaluator {
    pub fn new(rules: Arc<RuleSet>) -> Evaluator {
        let n = rules.len();
        let evaluation_counters = rules
            .rules
            .iter()
            .map(|r| metrics::counter!(telemetry::RULE_EVALUATIONS, "rule" => r.name.to_string()))
            .collect();
        let answer_counters = rules
            .rules
            .iter()
            .map(|r| {
                Answer::ALL.map(|a| {
                    metrics::counter!(
                        telemetry::RULE_FAST_PATH,
                        "rule" => r.name.to_string(),
                        "outcome" => a.as_str()
                    )
                })
            })
            .collect();
        Evaluator {
            scope: script::engine::eval_scope(),
            slots: IdHashMap::default(),
            template_reads: rules
                .rules
                .iter()
                .map(|r| TemplateReads::of(&rules, r))
                .collect(),
            state_fields: rules.rules.iter().fold(FieldMask::NONE, |mut all, r| {
                all |= r.state_fields;
                all
            }),
            schedule_cache: vec![(i64::MIN, false); n],
            stats: vec![RuleStats::default(); n],
            unflushed: vec![0; n],
            evaluation_counters,
            unflushed_answers: vec![[0; 2]; n],
            answer_counters,
            error_counters: (0..n).map(|_| Default::default()).collect(),
            faults: None,
            positions: rules
                .around
                .publish_positions
                .then(|| Publisher::new(rules.around.positions.clone())),
            rules,
            report_pending: false,
        }
    }

    /// Reports each alert that starts to wait out its `for` (once per wait, on fresh
    /// data) as a pending transition ([`AlertTransition::pending`]): what the daemon's
    /// history records. `replay` and the rule tests speak of notifications only and leave
    /// it off. A wait resumed after a stop or a reload is not reported again.
    pub fn report_pending(&mut self) {
        self.report_pending = true;
    }

    /// Keeps every fault from now on, for [`Evaluator::take_faults`].
    pub fn record_faults(&mut self) {
        self.faults.get_or_insert_with(Vec::new);
    }

    /// The faults recorded since the last call.
    pub fn take_faults(&mut self) -> Vec<Fault> {
        self.faults.as_mut().map(std::mem::take).unwrap_or_default()
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// Per-rule counts, in rule order.
    pub fn stats(&self) -> impl Iterator<Item = (&str, RuleStats)> + '_ {
        self.rules
            .rules
            .iter()
            .zip(&self.stats)
            .map(|(r, s)| (&*r.name, *s))
    }

    /// The counts of one rule.
    pub fn rule_stats(&self, rule: &str) -> Option<RuleStats> {
        let i = self.rules.rules.iter().position(|r| &*r.name == rule)?;
        Some(self.stats[i])
    }

    /// Resumes alerts persisted before a restart (or kept across a reload): a firing
    /// alert stays firing without firing again, and resolves normally later.
    pub fn restore(&mut self, records: &[AlertRecord]) -> Restored {
        let mut restored = Restored::default();
        for record in records {
            if record.status != AlertStatus::Firing {
                continue;
            }
            let rule = self.rule_index(&record.rule);
            let was_event = record.last.is_event();
            let is_event = rule.is_some_and(|r| self.rules.rules[r].mode == RuleMode::Event);
            // A held event has nothing to resolve: if its rule is gone or now a state
            // rule, it is forgotten; a firing alert of a rule now an event is resolved.
            if was_event && !is_event {
                continue;
            }
            let (Some(rule), Some(tracker_id), false) =
                (rule, record.tracker_id, is_event && !was_event)
            else {
                restored.orphaned.push(record.clone());
                continue;
            };
            let alert = LiveAlert {
                rule,
                key: record.key.as_deref().map(Arc::from),
                fingerprint: record.fingerprint.clone(),
                machine: Machine::restored(record.starts_at.timestamp_millis()),
                holds: true,
                clear: None,
                announced: true,
                fresh: true,
                firing: Some(record.last.clone()),
                pending_told: true,
            };
            if self.resume(tracker_id, alert) {
                restored.resumed += 1;
            }
        }
        restored
    }

    /// Resumes alerts that were inside their `for` when the daemon stopped (or when a
    /// reload replaced this evaluator's predecessor): their wait goes on from `since`,
    /// not from now. Until a fresh evaluation confirms one, it does not hold on fresh
    /// data, so it cannot fire announced on the strength of the old process alone.
    /// Returns how many were resumed (alerts of rules no longer loaded are dropped).
    pub fn restore_pending(&mut self, pending: &[PendingAlert]) -> usize {
        let mut resumed = 0;
        for p in pending {
            let Some(rule) = self.rule_index(&p.rule) else {
                continue;
            };
            let alert = LiveAlert {
                rule,
                key: p.key.as_deref().map(Arc::from),
                fingerprint: p.fingerprint.clone(),
                machine: Machine::pending(p.since.timestamp_millis()),
                holds: true,
                clear: None,
                announced: false,
                fresh: false,
                firing: None,
                pending_told: true,
            };
            if self.resume(p.tracker_id, alert) {
                resumed += 1;
            }
        }
        resumed
    }

    /// The index of a loaded rule by name.
    fn rule_index(&self, name: &str) -> Option<usize> {
        self.rules.rules.iter().position(|r| *r.name == *name)
    }

    /// Adds a resumed alert unless its tracker already has one of that rule and key.
    fn resume(&mut self, tracker_id: TrackerId, alert: LiveAlert) -> bool {
        let slot = self.slots.entry(tracker_id).or_default();
        if slot
            .live
            .iter()
            .any(|a| a.rule == alert.rule && a.key == alert.key)
        {
            return false;
        }
        slot.live.push(alert);
        true
    }

    /// The alerts inside their `for`: what a stopping daemon keeps for the next start.
    pub fn pending(&self) -> Vec<PendingAlert> {
        let mut out = Vec::new();
        for (tracker_id, slot) in &self.slots {
            for a in &slot.live {
                if let Phase::Pending { since_ms } = a.machine.phase {
                    out.push(PendingAlert {
                        fingerprint: a.fingerprint.clone(),
                        rule: self.rules.rules[a.rule].name.to_string(),
                        tracker_id: *tracker_id,
                        key: a.key.as_deref().map(str::to_string),
                        since: ms_to_time(since_ms),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        out
    }

    /// The firing alerts that were announced, as records: what `restore` takes back after
    /// a reload, and what the store should hold.
    pub fn firing(&self) -> Vec<AlertRecord> {
        let mut out = Vec::new();
        for (tracker_id, slot) in &self.slots {
            for a in &slot.live {
                let (Phase::Firing { starts_at_ms }, true, Some(last)) =
                    (a.machine.phase, a.announced, &a.firing)
                else {
                    continue;
                };
                out.push(AlertRecord {
                    fingerprint: a.fingerprint.clone(),
                    rule: self.rules.rules[a.rule].name.to_string(),
                    tracker_id: Some(*tracker_id),
                    key: a.key.as_deref().map(str::to_string),
                    status: AlertStatus::Firing,
                    starts_at: ms_to_time(starts_at_ms),
                    last: last.clone(),
                });
            }
        }
        out.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        out
    }

    /// Live (pending or firing) alerts in this shard. An event rule's held bit (the
    /// firing phase of its machine) is no alert, and is not counted.
    pub fn live_count(&self) -> usize {
        let rules = &self.rules.rules;
        self.slots
            .values()
            .flat_map(|s| &s.live)
            .filter(|a| !(a.machine.is_firing() && rules[a.rule].mode == RuleMode::Event))
            .count()
    }

    /// Adds the evaluation counts to the metric.
    pub fn flush_metrics(&mut self) {
        for (i, n) in self.unflushed.iter_mut().enumerate() {
            if *n > 0 {
                self.evaluation_counters[i].increment(*n);
                *n = 0;
            }
        }
        for (counts, counters) in self.unflushed_answers.iter_mut().zip(&self.answer_counters) {
            for (n, counter) in counts.iter_mut().zip(counters) {
                if *n > 0 {
                    counter.increment(*n);
                    *n = 0;
                }
            }
        }
    }

    /// Evaluates the `when` of every rule that applies to `tracker`, ignoring schedules,
    /// skipping and alerts; returns how many held. What the benchmark measures: the raw
    /// cost of conditions over a fleet.
    pub fn evaluate_conditions(&mut self, tracker: &TrackerState, now: DateTime<Utc>) -> usize {
        let now_ms = now.timestamp_millis();
        let set: &RuleSet = &self.rules;
        script::set_now(&mut self.scope, now_ms.div_euclid(1000));
        let navixy = set.around.context(tracker.info.source).load();
        let frame = context::ScriptFrame {
            tracker,
            now_ms,
            time_zone: set.time_zone,
            zones: &set.zones,
            navixy: &navixy,
            around: &set.around,
        };
        let scope = &mut self.scope;
        context::enter(&frame, || {
            let mut held = 0;
            for rule in &set.rules {
                if !rule.trackers.matches(&tracker.info) {
                    continue;
                }
                if let Ok(v) = script::eval(&set.engine, scope, &rule.when)
                    && v.as_bool() == Ok(true)
                {
                    held += 1;
                }
            }
            held
        })
    }

    /// Evaluates every applicable rule for one tracker.
    fn evaluate(
        &mut self,
        tracker: &TrackerState,
        now: DateTime<Utc>,
        notify: bool,
        out: &mut Vec<AlertTransition>,
    ) {
        let now_ms = now.timestamp_millis();
        let Evaluator {
            rules,
            scope,
            slots,
            template_reads,
            state_fields,
            schedule_cache,
            stats,
            unflushed,
            unflushed_answers,
            error_counters,
            faults,
            positions,
            report_pending,
            ..
        } = self;
        let set: &RuleSet = rules;
        let slot = slots.entry(tracker.info.key()).or_default();
        let (changes, fields) = slot.observe(tracker, *state_fields);
        script::set_now(scope, now_ms.div_euclid(1000));
        let navixy = set.around.context(tracker.info.source).load();
        let frame = context::ScriptFrame {
            tracker,
            now_ms,
            time_zone: set.time_zone,
            zones: &set.zones,
            navixy: &navixy,
            around: &set.around,
        };
        if let Some(positions) = positions {
            positions.note(tracker.info.key(), frame.location());
        }
        let mut run = Run {
            set,
            scope,
            tracker,
            has_data: tracker.has_data(),
            now_ms,
            notify,
            template_reads,
            stats,
            unflushed,
            unflushed_answers,
            error_counters,
            faults: faults.as_mut(),
            report_pending: *report_pending,
            out,
        };
        slot.refresh_watched(changes, &set.rules, &tracker.info);
        context::enter(&frame, || {
            for (index, rule) in set.rules.iter().enumerate() {
                if !slot.watches(index) {
                    continue;
                }
                let active = match &rule.schedule {
                    None => true,
                    Some(schedule) => {
                        let second = now_ms.div_euclid(1000);
                        let cached = &mut schedule_cache[index];
                        if cached.0 != second {
                            *cached = (second, schedule.contains(now));
                        }
                        cached.1
                    }
                };
                run.rule(index, rule, slot, (changes, fields), active);
            }
        });
    }
}

/// One tracker's evaluation: what every rule step needs, borrowed from the evaluator.
struct Run<'a, 'o> {
    set: &'a RuleSet,
    scope: &'a mut Scope<'static>,
    tracker: &'a TrackerState,
    /// [`TrackerState::has_data`], asked once per tracker.
    has_data: bool,
    now_ms: i64,
    notify: bool,
    template_reads: &'a [TemplateReads],
    stats: &'a mut [RuleStats],
    unflushed: &'a mut [u64],
    unflushed_answers: &'a mut [[u64; 2]],
    error_counters: &'a mut [[Option<metrics::Counter>; FaultKind::ALL.len()]],
    faults: Option<&'a mut Vec<Fault>>,
    /// [`Evaluator::report_pending`].
    report_pending: bool,
    out: &'o mut Vec<AlertTransition>,
}

/// The result of `when` (and `key`) at one evaluation.
struct Verdict {
    holds: bool,
    key: Option<Arc<str>>,
}

impl Run<'_, '_> {
    fn rule(
        &mut self,
        index: usize,
        rule: &Rule,
        slot: &mut Slot,
        (changes, fields): (Deps, FieldMask),
        active: bool,
    ) {
        let has_live = slot.live.iter().any(|a| a.rule == index);
        if !active {
            // Outside its schedule a rule is not watching: its alerts stop holding.
            if has_live {
                self.advance(
                    index,
                    rule,
                    slot,
                    Some(Verdict {
                        holds: false,
                        key: None,
                    }),
                    Some(true),
                );
            }
            return;
        }
        // A rule that reads the tracker's data has nothing to judge before the first of it
        // (after a restart, a blocked tracker sends none): its alerts stay as they are.
        if !self.has_data && rule.deps.intersects(Deps::STATE | Deps::DATA) {
            return;
        }
        // A tracker seen for the first time runs every rule, even constant ones. A new
        // state counts for a rule only when a field it reads changed.
        let must_eval = changes == Deps::ALL
            || rule.deps.contains(Deps::TIME)
            || rule.deps.intersects(changes.without(Deps::STATE))
            || (changes.intersects(Deps::STATE)
                && rule.deps.intersects(Deps::STATE)
                && rule.state_fields.intersects(fields));
        if !must_eval {
            self.stats[index].skipped += 1;
            if has_live {
                self.advance(index, rule, slot, None, None);
            }
            return;
        }
        self.stats[index].evaluations += 1;
        self.unflushed[index] += 1;
        let Some(holds) = self.condition(index, rule, &rule.when, "when") else {
            return;
        };
        let key = match (&rule.key, holds) {
            (Some(expr), true) => match self.eval(index, rule, expr, "key") {
                Some(v) if v.is_unit() => None,
                Some(v) => Some(Arc::from(key_text(&v).as_str())),
                None => return,
            },
            _ => None,
        };
        // `clear_when` matters only for firing alerts that no longer hold.
        let needs_clear = slot
            .live
            .iter()
            .any(|a| a.rule == index && a.machine.is_firing() && !(holds && a.key == key));
        let clear = match (&rule.clear_when, needs_clear) {
            (Some(expr), true) => match self.condition(index, rule, expr, "clear_when") {
                Some(c) => Some(c),
                None => return,
            },
            (Some(_), false) => Some(false),
            (None, _) => None,
        };
        if holds && !slot.live.iter().any(|a| a.rule == index && a.key == key) {
            slot.live.push(LiveAlert {
                rule: index,
                fingerprint: Fingerprint::of_source(
                    &rule.name,
                    self.set.around.source_name(self.tracker.info.source),
                    Some(self.tracker.info.id),
                    key.as_deref(),
                ),
                key: key.clone(),
                machine: Machine::pending(self.now_ms),
                holds: true,
                clear: None,
                announced: false,
                fresh: self.notify,
                firing: None,
                pending_told: false,
            });
        }
        self.advance(index, rule, slot, Some(Verdict { holds, key }), clear);
    }

    /// Steps every live alert of the rule: with a fresh outcome, or (`None`) with the
    /// results each alert last saw.
    fn advance(
        &mut self,
        index: usize,
        rule: &Rule,
        slot: &mut Slot,
        outcome: Option<Verdict>,
        clear: Option<bool>,
    ) {
        let timing = Timing {
            for_ms: rule.for_.as_millis() as i64,
            keep_firing_for_ms: rule.keep_firing_for.as_millis() as i64,
        };
        let mut i = 0;
        while i < slot.live.len() {
            if slot.live[i].rule != index {
                i += 1;
                continue;
            }
            let alert = &mut slot.live[i];
            if let Some(o) = &outcome {
                alert.holds = o.holds && alert.key == o.key;
                alert.clear = if rule.clear_when.is_some() {
                    clear
                } else {
                    None
                };
                alert.fresh = self.notify;
            }
            // Fire only on a result from fresh data: a carried-over stale result fires
            // silently even on a tick.
            let announce = self.notify && alert.fresh;
            let step = alert
                .machine
                .step(alert.holds, alert.clear, self.now_ms, timing);
            match step {
                Step::Stay => {
                    // A silent (stale) firing is announced once fresh data confirms it.
                    if alert.machine.is_firing() && !alert.announced && alert.holds && announce {
                        let t = self.transition(index, rule, alert, AlertStatus::Firing);
                        alert.announced = true;
                        alert.firing = Some(t.clone());
                        self.out.push(t);
                    } else if self.report_pending
                        && !alert.pending_told
                        && !alert.machine.is_firing()
                        && announce
                    {
                        // The wait began (or fresh data confirmed a stale one): once per
                        // wait, and only when asked; a `for: 0` alert never waits.
                        alert.pending_told = true;
                        let t = AlertTransition {
                            pending: true,
                            occurrence_id: None,
                            ..self.transition(index, rule, alert, AlertStatus::Firing)
                        };
                        self.out.push(t);
                    }
                    i += 1;
                }
                Step::Fire => {
                    if rule.mode == RuleMode::Event
                        && let Phase::Firing { starts_at_ms } = &mut alert.machine.phase
                    {
                        *starts_at_ms = (*starts_at_ms).max(slot.last_occurrence_ms + 1);
                        slot.last_occurrence_ms = *starts_at_ms;
                    }
                    let t = self.transition(index, rule, alert, AlertStatus::Firing);
                    alert.firing = Some(t.clone());
                    // A stale occurrence is past: it is held, never announced later.
                    if announce || rule.mode == RuleMode::Event {
                        alert.announced = true;
                    }
                    if announce {
                        self.out.push(t);
                    }
                    i += 1;
                }
                // An occurrence has no resolve: the machine ends, the bit is cleared.
                Step::Resolve if rule.mode == RuleMode::Event => {
                    slot.live.swap_remove(i);
                }
                // An announced alert resolves only where it can be sent: a stale update
                // leaves it to the next tick (or fresh update), so receivers see it end.
                Step::Resolve if alert.announced && !self.notify => i += 1,
                Step::Resolve => {
                    let alert = slot.live.swap_remove(i);
                    if alert.announced {
                        let t = self.transition(index, rule, &alert, AlertStatus::Resolved);
                        self.out.push(t);
                    }
                }
                Step::Drop => {
                    slot.live.swap_remove(i);
                }
            }
        }
    }

    /// Builds a transition: value, annotations, tracker, position, state fields.
    fn transition(
        &mut self,
        index: usize,
        rule: &Rule,
        alert: &LiveAlert,
        status: AlertStatus,
    ) -> AlertTransition {
        let value = rule
            .value
            .as_ref()
            .and_then(|expr| self.eval(index, rule, expr, "value"))
            .and_then(|v| script::to_json(&v));
        let starts_at_ms = match alert.machine.phase {
            Phase::Firing { starts_at_ms } => starts_at_ms,
            Phase::Pending { since_ms } => since_ms,
        };
        let starts_at = ms_to_time(starts_at_ms);
        let at = ms_to_time(self.now_ms);
        let (annotations, errors) = render::annotations(
            self.set,
            &RenderInput {
                rule,
                tracker: self.tracker,
                value: value.as_ref(),
                key: alert.key.as_deref(),
                status,
                starts_at,
                reads: self.template_reads[index],
            },
        );
        for (name, message) in errors {
            self.fault(
                index,
                rule,
                FaultKind::Template,
                &format!("annotations.{name}"),
                &message,
            );
        }
        let occurrence_id =
            (rule.mode == RuleMode::Event).then(|| format!("{}:{starts_at_ms}", alert.fingerprint));
        AlertTransition {
            occurrence_id,
            pending: false,
            fingerprint: alert.fingerprint.clone(),
            rule: Arc::clone(&rule.name),
            status,
            severity: rule.severity,
            tracker: Some(render::tracker_ref(self.tracker)),
            key: alert.key.as_deref().map(str::to_string),
            labels: self.labels(rule),
            annotations,
            value,
            starts_at,
            ends_at: (status == AlertStatus::Resolved).then_some(at),
            at,
            location: render::location(self.tracker),
            state: render::state_summary(self.tracker),
            channels: rule.channels.clone(),
        }
    }

    /// The rule's labels, with the tracker's `source` (its account's name), and Navixy's
    /// `group` (title) and `driver` (name) of the tracker when it has them, for routes,
    /// silences and inhibitions; a `group` or `driver` the rule sets itself is kept, a
    /// `source` is not (it is part of the alert's identity).
    fn labels(&self, rule: &Rule) -> std::collections::BTreeMap<String, String> {
        let mut labels = rule.labels.clone();
        let source = self.tracker.info.source;
        labels.insert(
            "source".into(),
            self.set.around.source_name(source).to_string(),
        );
        let navixy = self.set.around.context(source).load();
        let info = &self.tracker.info;
        if let Some(group) = navixy.context.group_title(info.group_id) {
            labels
                .entry("group".into())
                .or_insert_with(|| group.to_string());
        }
        if let Some(driver) = navixy.context.driver(info.id) {
            labels
                .entry("driver".into())
                .or_insert_with(|| driver.name.clone());
        }
        labels
    }

    /// Evaluates a condition: `true` holds; `false` and `()` (a missing value) do not;
    /// anything else is a fault. `None` when the rule must be skipped.
    fn condition(
        &mut self,
        index: usize,
        rule: &Rule,
        expr: &Expression,
        field: &str,
    ) -> Option<bool> {
        let v = self.eval(index, rule, expr, field)?;
        if let Ok(b) = v.as_bool() {
            return Some(b);
        }
        if v.is_unit() {
            return Some(false);
        }
        self.fault(
            index,
            rule,
            FaultKind::Type,
            field,
            &format!("a condition must be true or false, not {}", v.type_name()),
        );
        None
    }

    fn eval(
        &mut self,
        index: usize,
        rule: &Rule,
        expr: &Expression,
        field: &str,
    ) -> Option<Dynamic> {
        let (result, answer) = script::eval_answered(&self.set.engine, self.scope, expr);
        match answer {
            Answer::Fast => self.stats[index].fast += 1,
            Answer::Fallback => self.stats[index].fallbacks += 1,
        }
        self.unflushed_answers[index][answer as usize] += 1;
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.fault(index, rule, FaultKind::of(&e), field, &e.to_string());
                None
            }
        }
    }

    fn fault(&mut self, index: usize, rule: &Rule, kind: FaultKind, field: &str, message: &str) {
        self.stats[index].errors += 1;
        let counter = self.error_counters[index][kind.index()].get_or_insert_with(|| {
            metrics::counter!(
                telemetry::RULE_ERRORS,
                "rule" => rule.name.to_string(),
                "kind" => kind.as_str()
            )
        });
        counter.increment(1);
        self.set.faults.record(index, || LastFault {
            at: ms_to_time(self.now_ms),
            kind,
            field: field.to_string(),
            tracker_id: self.tracker.info.id,
            message: message.to_string(),
        });
        if let Some(faults) = self.faults.as_deref_mut() {
            faults.push(Fault {
                rule: Arc::clone(&rule.name),
                field: field.to_string(),
                tracker_id: self.tracker.info.id,
                at: ms_to_time(self.now_ms),
                kind,
                message: message.to_string(),
            });
        }
        if self
            .set
            .faults
            .should_log(index, kind, self.now_ms.div_euclid(1000))
        {
            tracing::warn!(
                rule = %rule.name,
                kind = kind.as_str(),
                field,
                tracker_id = self.tracker.info.id,
                error = message,
                "Rule failed and was skipped for this tracker (logged once a minute per rule and kind)."
            );
        }
    }
}

/// A key value as text: strings as themselves, anything else as Rhai prints it.
fn key_text(v: &Dynamic) -> String {
    match v.read_lock::<rhai::ImmutableString>() {
        Some(s) => s.to_string(),
        None => v.to_string(),
    }
}

fn ms_to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

impl ShardEvaluator for Evaluator {
    fn on_update(
        &mut self,
        tracker: &TrackerState,
        now: DateTime<Utc>,
        notify: bool,
        out: &mut Vec<AlertTransition>,
    ) {
        self.evaluate(tracker, now, notify, out);
    }

    fn on_tick(
        &mut self,
        trackers: &mut dyn Iterator<Item = &TrackerState>,
        now: DateTime<Utc>,
        out: &mut Vec<AlertTransition>,
    ) {
        // The positions noted up to this tick are what `nearby` reads until the next.
        if let Some(positions) = &mut self.positions {
            positions.publish(now.timestamp_millis());
        }
        for tracker in trackers.filter(|t| t.has_facts()) {
            self.evaluate(tracker, now, true, out);
        }
        self.flush_metrics();
    }

    fn pending(&self) -> Vec<PendingAlert> {
        Evaluator::pending(self)
    }

    fn take_over_pending(&mut self, pending: Vec<PendingAlert>) {
        self.restore_pending(&pending);
    }
}

/// Builds one evaluator per shard from a shared rule set: what the engine calls for each
/// worker it starts.
pub fn evaluator_factory(
    rules: Arc<RuleSet>,
) -> impl Fn() -> Box<dyn ShardEvaluator> + Send + Sync + 'static {
    move || Box::new(Evaluator::new(Arc::clone(&rules))) as Box<dyn ShardEvaluator>
}
