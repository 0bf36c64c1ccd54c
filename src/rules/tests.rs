//! Unit tests of loading and evaluation against a real shard cache.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::{Evaluator, LoadOptions, RuleError, RuleSet};
use crate::alert::{AlertStatus, AlertTransition};
use crate::config::{Circle, ZoneConfig};
use crate::engine::ShardEvaluator;
use crate::geofence::{Shape, Zone};
use crate::navixy::context::{Driver, NavixyContext, SharedContext, Tag, TrackerGroup};
use crate::navixy::messages::{ReadingsItem, SourceState, TrackerInfo};
use crate::state::Update;
use crate::state::cache::ShardCache;

pub(super) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap()
}

fn options() -> LoadOptions {
    let mut zones = std::collections::BTreeMap::new();
    zones.insert(
        "depot".to_string(),
        ZoneConfig {
            circle: Some(Circle {
                lat: 52.52,
                lng: 13.40,
                radius_m: 300.0,
            }),
            polygon: None,
            sausage: None,
        },
    );
    LoadOptions {
        zones: super::zones::Zones::local(&zones),
        channels: Some(["ops".to_string()].into_iter().collect()),
        ..LoadOptions::default()
    }
}

pub(super) fn load(yaml: &str) -> Result<RuleSet, Vec<RuleError>> {
    RuleSet::from_sources(
        &[(PathBuf::from("rules/test.yaml"), yaml.to_string())],
        &options(),
    )
}

pub(super) fn errors(yaml: &str) -> Vec<String> {
    match load(yaml) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

pub(super) struct Harness {
    pub(super) cache: ShardCache,
    pub(super) eval: Evaluator,
    pub(super) out: Vec<AlertTransition>,
}

impl Harness {
    pub(super) fn new(yaml: &str) -> Harness {
        let set = match load(yaml) {
            Ok(s) => s,
            Err(e) => panic!(
                "{}",
                e.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        };
        Harness {
            cache: ShardCache::new(set.history_policy(), chrono_tz::UTC),
            eval: Evaluator::new(Arc::new(set)),
            out: Vec::new(),
        }
    }

    pub(super) fn state(&mut self, id: i64, at_min: i64, json: serde_json::Value) {
        let mut state: SourceState = serde_json::from_value(json).unwrap();
        let at = t0() + Duration::minutes(at_min);
        state.last_update = Some(crate::navixy::messages::NavixyTime::Instant(at));
        let tracker = self.cache.apply(Update::State {
            tracker_id: id,
            state: Box::new(state),
        });
        self.eval.on_update(tracker, at, true, &mut self.out);
    }

    fn readings(&mut self, id: i64, at_min: i64, json: serde_json::Value) {
        let item: ReadingsItem = serde_json::from_value(json).unwrap();
        let at = t0() + Duration::minutes(at_min);
        let tracker = self.cache.apply(Update::Readings {
            tracker_id: id,
            readings: Box::new(item),
        });
        self.eval.on_update(tracker, at, true, &mut self.out);
    }

    pub(super) fn tick(&mut self, at_min: i64) {
        let at = t0() + Duration::minutes(at_min);
        self.eval.on_tick(&mut self.cache.iter(), at, &mut self.out);
    }

    /// The transitions so far as `(minute, rule, tracker, status)`.
    fn take(&mut self) -> Vec<(i64, String, i64, AlertStatus)> {
        self.out
            .drain(..)
            .map(|t| {
                (
                    (t.at - t0()).num_minutes(),
                    t.rule.to_string(),
                    t.tracker.map_or(0, |x| x.id),
                    t.status,
                )
            })
            .collect()
    }
}

#[test]
fn missing_fields_compare_false_without_errors() {
    let mut h = Harness::new(
        r#"
rules:
  - name: ign_true
    when: state.ignition == true
  - name: ign_not_false
    when: state.ignition != false
  - name: not_ign
    when: "!state.ignition"
  - name: fast
    when: state.gps.speed > 80
  - name: coalesce
    when: state.ignition ?? true
"#,
    );
    h.state(1, 0, serde_json::json!({"movement_status": "parked"}));
    let got = h.take();
    // Missing != false holds (like SQL's IS DISTINCT FROM), `??` supplies a default.
    assert_eq!(
        got,
        vec![
            (0, "ign_not_false".into(), 1, AlertStatus::Firing),
            (0, "coalesce".into(), 1, AlertStatus::Firing),
        ]
    );
    for rule in ["ign_true", "ign_not_false", "not_ign", "fast", "coalesce"] {
        assert_eq!(h.eval.rule_stats(rule).unwrap().errors, 0, "{rule}");
    }
}

#[test]
fn faults_skip_only_the_failing_rule() {
    let mut h = Harness::new(
        r#"
rules:
  - name: endless
    when: "while state.ignition == true { } ; true"
  - name: arithmetic_on_missing
    when: readings.lls_level_1.value * 2 > 10
  - name: not_a_bool
    when: state.gps.speed
  - name: ignition_on
    when: state.ignition == true
"#,
    );
    h.state(
        1,
        0,
        serde_json::json!({"ignition": true, "gps": {"speed": 10}}),
    );
    h.state(
        1,
        1,
        serde_json::json!({"ignition": true, "gps": {"speed": 12}}),
    );
    // Rules that read only readings run again on readings, not on states.
    h.readings(
        1,
        2,
        serde_json::json!({"inputs": [{"name": "board_voltage", "value": 27.5}]}),
    );
    assert_eq!(
        h.take(),
        vec![(0, "ignition_on".into(), 1, AlertStatus::Firing)]
    );
    // `endless` reads only the ignition, which the second state did not change.
    assert_eq!(h.eval.rule_stats("endless").unwrap().errors, 1);
    assert_eq!(
        h.eval.rule_stats("arithmetic_on_missing").unwrap().errors,
        2
    );
    assert_eq!(h.eval.rule_stats("not_a_bool").unwrap().errors, 2);
    assert_eq!(h.eval.rule_stats("ignition_on").unwrap().errors, 0);
}

#[test]
fn for_keep_firing_and_ticks() {
    let mut h = Harness::new(
        r#"
rules:
  - name: speeding
    when: state.gps.speed > params.limit
    for: 2m
    keep_firing_for: 3m
    params: { limit: 90 }
"#,
    );
    h.state(7, 0, serde_json::json!({"gps": {"speed": 95}}));
    h.tick(1);
    assert!(h.take().is_empty());
    h.tick(2);
    assert_eq!(
        h.take(),
        vec![(2, "speeding".into(), 7, AlertStatus::Firing)]
    );
    h.state(7, 3, serde_json::json!({"gps": {"speed": 50}}));
    // keep_firing_for counts from the first evaluation that no longer holds (3m).
    h.tick(5);
    assert!(h.take().is_empty());
    h.tick(6);
    assert_eq!(
        h.take(),
        vec![(6, "speeding".into(), 7, AlertStatus::Resolved)]
    );
    // Unchanged inputs are not evaluated again on ticks.
    let stats = h.eval.rule_stats("speeding").unwrap();
    assert_eq!(stats.evaluations, 2);
    assert!(stats.skipped >= 4);
}

#[test]
fn time_based_rules_fire_on_ticks() {
    let mut h = Harness::new(
        r#"
rules:
  - name: offline
    when: since(tracker.last_data_at) > minutes(10)
"#,
    );
    h.state(3, 0, serde_json::json!({"connection_status": "active"}));
    h.tick(10);
    assert!(h.take().is_empty());
    h.tick(11);
    assert_eq!(
        h.take(),
        vec![(11, "offline".into(), 3, AlertStatus::Firing)]
    );
    h.state(3, 12, serde_json::json!({"connection_status": "active"}));
    assert_eq!(
        h.take(),
        vec![(12, "offline".into(), 3, AlertStatus::Resolved)]
    );
}

#[test]
fn clear_when_hysteresis_and_windows() {
    let mut h = Harness::new(
        r#"
rules:
  - name: hot
    when: readings.temp.value > 8
    clear_when: readings.temp.value < 6
  - name: drain
    when: fuel_drop("lls_level_1", minutes(10)) > 15
    value: fuel_drop("lls_level_1", minutes(10))
"#,
    );
    let temp = |v: f64| serde_json::json!({"inputs": [{"name": "temp", "value": v}]});
    h.readings(1, 0, temp(9.0));
    assert_eq!(h.take(), vec![(0, "hot".into(), 1, AlertStatus::Firing)]);
    h.readings(1, 1, temp(7.0));
    assert!(h.take().is_empty());
    h.readings(1, 2, temp(5.5));
    assert_eq!(h.take(), vec![(2, "hot".into(), 1, AlertStatus::Resolved)]);

    let fuel = |v: f64, min: i64| {
        let at = (t0() + Duration::minutes(min)).to_rfc3339();
        serde_json::json!({"inputs": [{"name": "lls_level_1", "value": v, "update_time": at}]})
    };
    h.readings(2, 0, fuel(200.0, 0));
    h.readings(2, 3, fuel(190.0, 3));
    h.readings(2, 5, fuel(170.0, 5));
    let fired: Vec<_> = h.out.clone();
    assert_eq!(h.take(), vec![(5, "drain".into(), 2, AlertStatus::Firing)]);
    assert_eq!(fired[0].value, Some(serde_json::json!(30)));
    // The window starts with the value before it (190 l from minute 3), so the drop
    // leaves it once the window starts at the last fall, 10 minutes after minute 5.
    h.tick(14);
    assert!(h.take().is_empty());
    h.tick(15);
    assert_eq!(
        h.take(),
        vec![(15, "drain".into(), 2, AlertStatus::Resolved)]
    );
}

#[test]
fn changed_prev_and_zones() {
    let mut h = Harness::new(
        r#"
rules:
  - name: ignition_changed
    when: changed("ignition") && prev != ()
  - name: first_state
    when: prev == ()
  - name: at_depot
    when: in_zone("depot")
"#,
    );
    h.state(
        1,
        0,
        serde_json::json!({"ignition": false, "gps": {"location": {"lat": 52.52, "lng": 13.40}}}),
    );
    assert_eq!(
        h.take(),
        vec![
            (0, "first_state".into(), 1, AlertStatus::Firing),
            (0, "at_depot".into(), 1, AlertStatus::Firing)
        ]
    );
    h.state(
        1,
        1,
        serde_json::json!({"ignition": true, "gps": {"location": {"lat": 52.60, "lng": 13.40}}}),
    );
    let mut got = h.take();
    got.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        got,
        vec![
            (1, "at_depot".into(), 1, AlertStatus::Resolved),
            (1, "first_state".into(), 1, AlertStatus::Resolved),
            (1, "ignition_changed".into(), 1, AlertStatus::Firing),
        ]
    );
}

/// `zones()` lists the zones holding the tracker; a rule calling only it is evaluated
/// again when the position moves (its dependencies come from the helper's spec).
#[test]
fn zones_lists_the_zones_holding_the_tracker() {
    let mut h = Harness::new(
        r#"
rules:
  - name: at_depot
    when: '"depot" in zones()'
  - name: nowhere
    when: zones().len() == 0 && state.gps.location != ()
"#,
    );
    let at = |lat: f64| serde_json::json!({"gps": {"location": {"lat": lat, "lng": 13.40}}});
    h.state(1, 0, at(52.52));
    assert_eq!(
        h.take(),
        vec![(0, "at_depot".into(), 1, AlertStatus::Firing)]
    );
    h.state(1, 1, at(52.60));
    let mut got = h.take();
    got.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        got,
        vec![
            (1, "at_depot".into(), 1, AlertStatus::Resolved),
            (1, "nowhere".into(), 1, AlertStatus::Firing),
        ]
    );
    // Without a position the list is empty.
    h.state(2, 2, serde_json::json!({"ignition": true}));
    assert_eq!(h.take(), vec![]);
}

#[test]
fn load_errors_name_file_rule_and_position() {
    let errs = errors(
        r#"
rules:
  - name: a
    when: state.gps.sped > 80
  - name: b
    when: "state.ignition == "
  - name: c
    when: stat.ignition
  - name: d
    when: in_zone("nowhere")
    for: 5 minutes
    channels: [pager]
  - name: a
    when: "true"
  - name: e
    when: params.limt > 1
    params: { limit: 1 }
    schedule: [{ days: [someday] }]
"#,
    );
    let all = errs.join("\n");
    assert!(
        all.contains("rules/test.yaml:4:11: rule `a`: when: `state.gps` has no field `sped`"),
        "{all}"
    );
    assert!(all.contains("rule `b`: when:"), "{all}");
    assert!(
        all.contains("rule `c`: when: Undefined variable: stat"),
        "{all}"
    );
    assert!(
        all.contains("rule `d`: when: unknown zone `nowhere` (zones: depot)"),
        "{all}"
    );
    assert!(all.contains("rule `d`: for: `5 minutes`"), "{all}");
    assert!(
        all.contains("rule `d`: channels: unknown channel `pager` (channels: ops)"),
        "{all}"
    );
    println!("{all}");
}

#[test]
fn unknown_keys_are_yaml_errors_with_position() {
    let errs = errors("rules:\n  - name: e\n    when: \"true\"\n    colour: red\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("rules/test.yaml:4:5: "), "{}", errs[0]);
    assert!(errs[0].contains("colour"), "{}", errs[0]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 200, ..Default::default() })]
    /// Whatever an operator writes, loading answers with errors, never a panic; and what
    /// loads evaluates without one.
    #[test]
    fn any_expression_loads_or_errors_without_panicking(
        when in "[a-z_.()\"'`$!=<>&|?+*/%0-9\\[\\] {};é\\\\]{0,60}",
        snippet in proptest::sample::select(vec![
            "state.gps.speed", "readings.x.value", "in_zone(\"depot\")", "changed(\"ignition\")",
            "since(state.last_update)", "fuel_drop(\"lls_level_1\", minutes(10))", "prev == ()",
        ]),
    ) {
        let yaml = format!(
            "rules:\n  - name: a\n    when: |\n      {when}\n  - name: b\n    when: |\n      {snippet} {when}\n"
        );
        if let Ok(set) = load(&yaml) {
            let mut cache = ShardCache::new(set.history_policy(), chrono_tz::UTC);
            let mut eval = Evaluator::new(Arc::new(set));
            let mut out = Vec::new();
            let tracker = cache.apply(Update::State {
                tracker_id: 1,
                state: Box::new(SourceState::default()),
            });
            eval.on_update(tracker, t0(), true, &mut out);
            eval.on_tick(&mut cache.iter(), t0() + Duration::minutes(1), &mut out);
        }
    }
}

#[test]
fn a_state_update_evaluates_only_the_rules_whose_fields_changed() {
    let mut h = Harness::new(
        r#"
rules:
  - name: ignition_on
    when: state.ignition == true
  - name: speeding
    when: state.gps.speed > 90
  - name: input_change
    when: changed("inputs")
"#,
    );
    h.state(
        1,
        0,
        serde_json::json!({"ignition": true, "gps": {"speed": 10}}),
    );
    h.state(
        1,
        1,
        serde_json::json!({"ignition": true, "gps": {"speed": 95}}),
    );
    h.state(
        1,
        2,
        serde_json::json!({"ignition": false, "gps": {"speed": 95}}),
    );
    let stats = |rule: &str| h.eval.rule_stats(rule).unwrap();
    // Ignition changed once after the first state; speed once; `changed` reads the
    // previous state, which every update moves.
    assert_eq!(
        (
            stats("ignition_on").evaluations,
            stats("ignition_on").skipped
        ),
        (2, 1)
    );
    assert_eq!(
        (stats("speeding").evaluations, stats("speeding").skipped),
        (2, 1)
    );
    assert_eq!(stats("input_change").evaluations, 3);
    assert_eq!(
        h.take(),
        vec![
            (0, "ignition_on".into(), 1, AlertStatus::Firing),
            (1, "speeding".into(), 1, AlertStatus::Firing),
            (2, "ignition_on".into(), 1, AlertStatus::Resolved),
        ]
    );
}

#[test]
fn replay_decodes_only_the_state_fields_rules_and_payloads_read() {
    let set = load(
        r#"
rules:
  - name: input_change
    when: changed("inputs") && prev.inputs != ()
    annotations: { summary: "{{ tracker.label }}: input {{ key }}" }
"#,
    )
    .unwrap();
    let fields = set.decode_fields();
    for kept in [
        "inputs",
        "gps",
        "ignition",
        "last_update",
        "connection_status",
    ] {
        assert!(fields.decodes(kept), "{kept}");
    }
    for skipped in ["additional", "gsm", "outputs", "actual_track_update"] {
        assert!(!fields.decodes(skipped), "{skipped}");
    }
    // A template that reads the state may read any field.
    let set = load(
        r#"
rules:
  - name: ignition_on
    when: state.ignition == true
    annotations: { summary: "{{ state.additional.event_code.value }}" }
"#,
    )
    .unwrap();
    assert!(set.decode_fields().decodes("additional"));
}

/// `distance_km` reads the odometer counter's rise; `{label: "Reefer*"}` picks trackers by
/// label; a rule that reads only `now` runs for a tracker known only from the list.
/// A tracker of the first source as the list gives it: an id, a label, maybe blocked.
fn labelled(id: i64, label: &str, blocked: Option<bool>) -> TrackerInfo {
    TrackerInfo {
        source: 0,
        id,
        source_id: None,
        label: Some(label.into()),
        group_id: None,
        blocked,
    }
}

#[test]
fn distance_km_label_patterns_and_list_only_trackers() {
    let mut h = Harness::new(
        r#"
rules:
  - name: long_drive
    trackers: [{ label: "Reefer*" }]
    when: distance_km(hours(1)) > 50
    value: distance_km(hours(1))
  - name: clock
    when: now > 0
"#,
    );
    // Navixy's list says whether each tracker is blocked; tracker 4 has only a label.
    for (id, label, blocked) in [
        (1, "Reefer 1", Some(false)),
        (2, "Van 2", Some(false)),
        (3, "Reefer 3", Some(false)),
        (4, "Reefer 4", None),
    ] {
        h.cache.set_info(labelled(id, label, blocked));
    }
    // Tracker 3 is known only from the list: the clock rule still runs for it; tracker 4,
    // known by nothing but a label, is not evaluated.
    h.tick(0);
    let mut fired = h.take();
    fired.sort_by_key(|t| t.2);
    assert_eq!(
        fired,
        vec![
            (0, "clock".into(), 1, AlertStatus::Firing),
            (0, "clock".into(), 2, AlertStatus::Firing),
            (0, "clock".into(), 3, AlertStatus::Firing),
        ]
    );
    let odometer = |km: f64, min: i64| {
        let at = (t0() + Duration::minutes(min)).to_rfc3339();
        serde_json::json!({"counters": [{"type": "odometer", "value": km, "update_time": at}]})
    };
    for id in [1, 2] {
        h.readings(id, 1, odometer(120_000.0, 1));
        h.readings(id, 30, odometer(120_040.0, 30));
    }
    assert!(h.take().is_empty());
    for id in [1, 2] {
        h.readings(id, 50, odometer(120_060.5, 50));
    }
    let fired: Vec<_> = h.out.clone();
    assert_eq!(
        h.take(),
        vec![(50, "long_drive".into(), 1, AlertStatus::Firing)]
    );
    assert_eq!(fired[0].value, Some(serde_json::json!(60.5)));
    // Without an odometer, the GPS speed: 80 km/h for 45 minutes is 60 km.
    h.state(3, 0, serde_json::json!({"gps": {"speed": 80.0}}));
    h.state(3, 30, serde_json::json!({"gps": {"speed": 80.0}}));
    assert!(h.take().is_empty(), "30 minutes at 80 km/h is 40 km");
    h.state(3, 45, serde_json::json!({"gps": {"speed": 0.0}}));
    let fired: Vec<_> = h.out.clone();
    assert_eq!(
        h.take(),
        vec![(45, "long_drive".into(), 3, AlertStatus::Firing)]
    );
    assert_eq!(fired[0].value, Some(serde_json::json!(60)));
}

/// A rule's `trackers:` filter is asked once per tracker and asked again when the list
/// gives the tracker another label, both ways.
#[test]
fn a_new_label_from_the_list_changes_which_rules_watch_the_tracker() {
    let mut h = Harness::new(
        r#"
rules:
  - name: trucks_speeding
    trackers: [{ label: "Truck*" }]
    when: state.gps.speed > 100
"#,
    );
    let info = |id: i64, label: &str| labelled(id, label, None);
    let speed = |kmh: f64| serde_json::json!({"gps": {"speed": kmh}});
    h.cache.set_info(info(1, "Van 1"));
    h.state(1, 0, speed(120.0));
    assert!(h.take().is_empty(), "a van is not watched");
    h.cache.set_info(info(1, "Truck 1"));
    h.state(1, 1, speed(120.0));
    assert_eq!(
        h.take(),
        vec![(1, "trucks_speeding".into(), 1, AlertStatus::Firing)]
    );
    h.cache.set_info(info(2, "Truck 2"));
    h.state(2, 2, speed(50.0));
    h.cache.set_info(info(2, "Van 2"));
    h.state(2, 3, speed(120.0));
    assert!(
        h.take().is_empty(),
        "a truck renamed to a van is no longer watched"
    );
}

/// What `check` says about unknown calls, and that a known helper counts as an input.
#[test]
fn unknown_functions_are_load_errors_and_helpers_are_inputs() {
    assert_eq!(
        errors(
            "rules:\n  - name: a\n    when: tracker.label.startswith(\"R\") || sinse(now) > 5\n"
        ),
        [
            "rules/test.yaml:3:11: rule `a`: when: unknown function `sinse` (did you mean `since`?); docs/rules.md lists the helpers (line 1, column 34 of the expression)",
            "rules/test.yaml:3:11: rule `a`: when: unknown method `.startswith()` (did you mean `starts_with`?); docs/rules.md lists the string methods (line 1, column 15 of the expression)",
        ]
    );
    assert_eq!(
        errors("rules:\n  - name: a\n    when: in_zone(\"depo\")\n"),
        [
            "rules/test.yaml:3:11: rule `a`: when: unknown zone `depo` (did you mean `depot`?) (zones: depot) (line 1, column 1 of the expression)"
        ]
    );
    let set = load("rules:\n  - name: a\n    when: distance_km(minutes(5)) > 1\n").unwrap();
    let rule = &set.rules()[0];
    assert!(
        rule.deps
            .contains(super::set::Deps::TIME | super::set::Deps::DATA)
    );
    assert!(set.history_policy().keeps("odometer"));
    assert!(set.history_policy().keeps("speed"));
    assert!(!set.history_policy().keeps("battery_level"));
}

/// A harness over a rule set that reads `context` as the source's Navixy context.
fn navixy_harness(yaml: &str, import_zones: bool, context: NavixyContext) -> Harness {
    let options = LoadOptions {
        import_zones,
        ..options()
    };
    let set = RuleSet::from_sources(
        &[(PathBuf::from("rules/test.yaml"), yaml.to_string())],
        &options,
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let shared = SharedContext::new();
    shared.store(context, t0());
    let set = set.with_navixy_context(shared);
    Harness {
        cache: ShardCache::new(set.history_policy(), chrono_tz::UTC),
        eval: Evaluator::new(Arc::new(set)),
        out: Vec::new(),
    }
}

fn north_context() -> NavixyContext {
    let mut context = NavixyContext::default();
    context.groups.insert(
        1,
        TrackerGroup {
            id: 1,
            title: "Dispatch North".into(),
            color: None,
        },
    );
    context.tags.insert(
        4,
        Tag {
            id: 4,
            name: "refrigerated".into(),
            color: None,
        },
    );
    context.tags_by_tracker.insert(7, vec![4]);
    context.drivers_by_tracker.insert(
        7,
        Driver {
            id: 500,
            name: "Ida Richter".into(),
            phone: Some("491533790641".into()),
        },
    );
    context
}

/// `tracker.group`, `tracker.tags` and `tracker.driver` read Navixy's context in
/// conditions and templates, and the alert carries `group` and `driver` labels.
#[test]
fn navixy_groups_tags_and_drivers_in_conditions_templates_and_labels() {
    let mut h = navixy_harness(
        r#"rules:
  - name: reefer_north
    when: tracker.group == "Dispatch North" && "refrigerated" in tracker.tags && tracker.driver.name == "Ida Richter" && state.ignition
    labels: { team: cold-chain }
    annotations:
      summary: "{{ tracker.driver.name }} ({{ tracker.driver.phone }}) in {{ tracker.group }}: {{ tracker.tags | join(', ') }}"
  - name: default_group
    when: tracker.group == () && tracker.driver == () && tracker.tags.len() == 0 && state.ignition
"#,
        false,
        north_context(),
    );
    for (id, group_id) in [(7, 1), (8, 0)] {
        h.cache.set_info(TrackerInfo {
            id,
            group_id: Some(group_id),
            ..TrackerInfo::default()
        });
    }
    h.state(7, 0, serde_json::json!({ "ignition": true }));
    h.state(8, 0, serde_json::json!({ "ignition": true }));
    let out: Vec<AlertTransition> = std::mem::take(&mut h.out);
    let [north, default] = &out[..] else {
        panic!("{out:#?}")
    };
    assert_eq!(
        (&*north.rule, north.tracker.as_ref().map(|t| t.id)),
        ("reefer_north", Some(7))
    );
    assert_eq!(
        north.annotations["summary"],
        "Ida Richter (491533790641) in Dispatch North: refrigerated"
    );
    let labels: Vec<(&str, &str)> = north
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        labels,
        [
            ("driver", "Ida Richter"),
            ("group", "Dispatch North"),
            ("source", "navixy"),
            ("team", "cold-chain")
        ]
    );
    // Navixy's default group (0) has no title and gives no label.
    assert_eq!(
        (&*default.rule, default.tracker.as_ref().map(|t| t.id)),
        ("default_group", Some(8))
    );
    let labels: Vec<&str> = default.labels.keys().map(String::as_str).collect();
    assert_eq!(labels, ["source"], "{:?}", default.labels);
}

/// Navixy's zones count when imported; the config's `depot` wins a clash; a label no
/// zone has loads and reads as false.
#[test]
fn imported_navixy_zones_and_the_local_zone_winning_a_clash() {
    let context = NavixyContext {
        zones: vec![
            Zone::new("Depot North", Shape::circle(52.54, 13.405, 200.0).unwrap()),
            // Navixy's own `depot`, far from the config's.
            Zone::new("depot", Shape::circle(0.0, 0.0, 500.0).unwrap()),
        ],
        ..NavixyContext::default()
    };
    let yaml = r#"rules:
  - name: north
    when: in_zone("Depot North")
  - name: listed
    when: zones().len() > 0
    value: zones()
  - name: not_yet_known
    when: in_zone("Depot South") == false && state.ignition
"#;
    // Without the import the unknown label is a load error, as before.
    let err = RuleSet::from_sources(
        &[(PathBuf::from("rules/test.yaml"), yaml.to_string())],
        &options(),
    )
    .unwrap_err();
    assert!(
        err[0].to_string().contains("unknown zone `Depot North`"),
        "{err:?}"
    );
    let mut h = navixy_harness(yaml, true, context);
    h.state(
        1,
        0,
        serde_json::json!({ "ignition": true, "gps": { "location": { "lat": 52.54, "lng": 13.405 } } }),
    );
    h.state(
        2,
        0,
        serde_json::json!({ "gps": { "location": { "lat": 0.0, "lng": 0.0 } } }),
    );
    h.state(
        3,
        0,
        serde_json::json!({ "gps": { "location": { "lat": 52.52, "lng": 13.40 } } }),
    );
    let out: Vec<(String, i64, Option<serde_json::Value>)> = h
        .out
        .drain(..)
        .map(|t| (t.rule.to_string(), t.tracker.map_or(0, |x| x.id), t.value))
        .collect();
    assert_eq!(
        out,
        [
            ("north".into(), 1, None),
            ("listed".into(), 1, Some(serde_json::json!(["Depot North"]))),
            ("not_yet_known".into(), 1, None),
            // The config's depot holds tracker 3; Navixy's `depot` at (0, 0) is hidden.
            ("listed".into(), 3, Some(serde_json::json!(["depot"]))),
        ]
    );
}

/// `nearby` and `distance_to` read the positions published at the last tick.
#[test]
fn nearby_and_distance_to_read_the_positions_of_the_last_tick() {
    let mut h = Harness::new(
        r#"rules:
  - name: close
    when: nearby(100).len() > 0
    value: nearby(100)
  - name: far_from_2
    when: distance_to(2) > 1000
    trackers: [1]
"#,
    );
    let at = |lat: f64| serde_json::json!({ "gps": { "location": { "lat": lat, "lng": 13.40 } } });
    h.state(1, 0, at(52.5200));
    h.state(2, 0, at(52.5205));
    // Nothing is published before the first tick.
    assert!(h.take().is_empty());
    h.tick(1);
    let mut out: Vec<(String, i64, Option<serde_json::Value>)> = h
        .out
        .drain(..)
        .map(|t| (t.rule.to_string(), t.tracker.map_or(0, |x| x.id), t.value))
        .collect();
    // A tick visits a shard's trackers in the cache's order.
    out.sort_by_key(|o| o.1);
    assert_eq!(
        out,
        [
            ("close".into(), 1, Some(serde_json::json!([2]))),
            ("close".into(), 2, Some(serde_json::json!([1]))),
        ]
    );
    // Tracker 2 drives 2 km away: seen at the next tick.
    h.state(2, 2, at(52.5380));
    h.tick(3);
    let mut out = h.take();
    out.sort_by_key(|o| o.2);
    assert_eq!(
        out,
        [
            // Tracker 1 sees 2 leave at the tick.
            (3, "close".to_string(), 1, AlertStatus::Resolved),
            (3, "far_from_2".to_string(), 1, AlertStatus::Firing),
            // Tracker 2 reads its own position as it comes.
            (2, "close".to_string(), 2, AlertStatus::Resolved),
        ]
    );
}

/// `(minute, rule, kind, starts_at minute)` of the transitions so far.
fn edges(h: &mut Harness) -> Vec<(i64, String, &'static str, i64)> {
    h.out
        .drain(..)
        .map(|t| {
            (
                (t.at - t0()).num_minutes(),
                t.rule.to_string(),
                t.kind(),
                (t.starts_at - t0()).num_minutes(),
            )
        })
        .collect()
}

const WAITING: &str = r#"
rules:
  - name: speeding
    when: state.gps.speed > 90
    for: 2m
    value: state.gps.speed
    labels: { team: road }
    annotations: { summary: "{{ value }} km/h" }
  - name: at_once
    when: state.gps.speed > 90
"#;

#[test]
fn a_wait_is_reported_once_when_asked_and_its_drop_is_silent() {
    let mut h = Harness::new(WAITING);
    h.eval.report_pending();
    h.state(7, 0, serde_json::json!({"gps": {"speed": 95}}));
    let pending = h.out[0].clone();
    assert_eq!(
        edges(&mut h),
        vec![
            (0, "speeding".into(), "pending", 0),
            // `for: 0` never waits: no pending edge.
            (0, "at_once".into(), "firing", 0),
        ]
    );
    // What the history and the stream show: the value, labels and annotations as the
    // firing will carry them, and never an occurrence id.
    assert_eq!(pending.status, AlertStatus::Firing);
    assert_eq!(pending.value, Some(serde_json::json!(95)));
    assert_eq!(pending.labels.get("team").map(String::as_str), Some("road"));
    assert_eq!(
        pending.annotations.get("summary").map(String::as_str),
        Some("95 km/h")
    );
    assert_eq!(pending.occurrence_id, None);
    assert_eq!(pending.ends_at, None);

    // Still waiting: nothing more; then it fires.
    h.state(7, 1, serde_json::json!({"gps": {"speed": 96}}));
    h.tick(1);
    assert!(edges(&mut h).is_empty());
    h.tick(2);
    assert_eq!(edges(&mut h), vec![(2, "speeding".into(), "firing", 2)]);
    h.state(7, 3, serde_json::json!({"gps": {"speed": 50}}));
    h.out.clear();

    // A wait that ends before `for` leaves no trace; the next one is reported anew.
    h.state(7, 4, serde_json::json!({"gps": {"speed": 97}}));
    h.state(7, 5, serde_json::json!({"gps": {"speed": 50}}));
    h.state(7, 6, serde_json::json!({"gps": {"speed": 98}}));
    let got = edges(&mut h);
    let speeding: Vec<_> = got.iter().filter(|e| e.1 == "speeding").collect();
    assert_eq!(
        speeding,
        [
            &(4, "speeding".to_string(), "pending", 4),
            &(6, "speeding".to_string(), "pending", 6)
        ],
        "{got:?}"
    );
}

#[test]
fn waits_are_not_reported_unless_asked_nor_again_once_resumed() {
    let mut h = Harness::new(WAITING);
    h.state(7, 0, serde_json::json!({"gps": {"speed": 95}}));
    assert_eq!(edges(&mut h), vec![(0, "at_once".into(), "firing", 0)]);

    // The wait resumed after a stop was reported by the run before.
    let kept = h.eval.pending();
    assert_eq!(kept.len(), 1);
    let mut next = Harness::new(WAITING);
    next.eval.report_pending();
    next.eval.restore_pending(&kept);
    next.state(7, 1, serde_json::json!({"gps": {"speed": 96}}));
    let got = edges(&mut next);
    assert!(got.iter().all(|e| e.2 != "pending"), "{got:?}");
    next.tick(2);
    assert_eq!(edges(&mut next), vec![(2, "speeding".into(), "firing", 2)]);
}

#[test]
fn a_wait_on_stale_data_is_reported_when_fresh_data_confirms_it() {
    let mut h = Harness::new(WAITING);
    h.eval.report_pending();
    let state: SourceState =
        serde_json::from_value(serde_json::json!({"gps": {"speed": 95}})).unwrap();
    let tracker = h.cache.apply(Update::State {
        tracker_id: 7,
        state: Box::new(state),
    });
    h.eval.on_update(tracker, t0(), false, &mut h.out);
    assert!(edges(&mut h).is_empty());
    h.state(7, 1, serde_json::json!({"gps": {"speed": 96}}));
    let got = edges(&mut h);
    assert!(
        got.contains(&(1, "speeding".into(), "pending", 0)),
        "{got:?}"
    );
}
