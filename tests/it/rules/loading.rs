//! Loading rule sets from a config: globs relative to the config, and every error with
//! its file, line, column, rule and field.

use std::path::Path;

use navixy_alerts::config::{Circle, Config, ZoneConfig};
use navixy_alerts::rules::zones::Zones;
use navixy_alerts::rules::{RuleError, RuleSet};

pub(crate) fn depot() -> Zones {
    let zones = [(
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
    )]
    .into_iter()
    .collect();
    Zones::local(&zones)
}

fn config(dir: &Path, rules: &str) -> Config {
    let text = format!(
        "source: {{ simulator: {{ trackers: 2 }} }}\nrules: {rules}\nzones:\n  depot: {{ circle: {{ lat: 52.52, lng: 13.40, radius_m: 300 }} }}\nchannels:\n  ops: {{ type: stdout }}\n"
    );
    let path = dir.join("navixy-alerts.yaml");
    std::fs::write(&path, &text).unwrap();
    Config::load(&path).unwrap()
}

fn messages(errors: Vec<RuleError>) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

#[test]
fn globs_resolve_against_the_config_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("rules/b.yaml"),
        "rules:\n  - name: b\n    when: state.ignition == true\n    severity: critical\n    channels: [ops]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rules/a.yaml"),
        "rules:\n  - name: a\n    when: in_zone(\"depot\")\n    for: 2m\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("rules/notes.txt"), "not a rule file").unwrap();
    let set = RuleSet::load(&config(dir.path(), "[rules/*.yaml]")).unwrap();
    let names: Vec<&str> = set.rules().iter().map(|r| &*r.name).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(
        set.files(),
        [
            dir.path().join("rules/a.yaml"),
            dir.path().join("rules/b.yaml")
        ]
    );
    let summary = set.summary().to_string();
    assert_eq!(
        summary,
        format!(
            "2 rules in 2 files (1 critical, 1 warning)\n  {}\n    a  warning   for 2m\n  {}\n    b  critical  channels ops\n",
            dir.path().join("rules/a.yaml").display(),
            dir.path().join("rules/b.yaml").display()
        )
    );
}

#[test]
fn the_stock_rules_load_with_the_demo_zone() {
    let dir = tempfile::tempdir().unwrap();
    let rules = super::repo().join("rules");
    let set = RuleSet::load(&config(
        dir.path(),
        &format!("[\"{}/*.yaml\"]", rules.display()),
    ))
    .unwrap();
    assert_eq!(set.len(), 21);
    // Fuel rules read one series: the cache keeps only it, for 10 minutes.
    let policy = set.history_policy();
    assert_eq!(policy.retention, std::time::Duration::from_secs(600));
    assert!(policy.keeps("lls_level_1"));
    assert!(!policy.keeps("speed"));
}

#[test]
fn a_pattern_matching_nothing_and_a_missing_file_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "[rules/*.yaml, missing.yaml]");
    let errors = messages(RuleSet::load(&cfg).unwrap_err());
    assert_eq!(
        errors,
        [format!(
            "{}: no rule file matches `rules/*.yaml`",
            dir.path().join("navixy-alerts.yaml").display()
        )]
    );
    let cfg = config(dir.path(), "[missing.yaml]");
    let errors = messages(RuleSet::load(&cfg).unwrap_err());
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with(&format!(
            "{}: cannot read rule file:",
            dir.path().join("missing.yaml").display()
        )),
        "{errors:?}"
    );
}

#[test]
fn every_problem_is_reported_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        r#"rules:
  - name: dup
    when: "true"
  - name: dup
    when: "false"
  - name: syntax
    when: state.ignition == (
  - name: typo
    when: state.gps.sped > 80
  - name: zone
    when: in_zone("harbour")
  - name: channel
    when: state.ignition == true
    channels: [pager]
  - name: timing
    when: state.ignition == true
    for: 5 minutes
    keep_firing_for: soon
  - name: schedule
    when: state.ignition == true
    schedule: [{ days: [mon], from: "25:00", timezone: Mars/Olympus }]
  - name: params
    when: state.gps.speed > params.max_sped
    params: { max_speed: 90 }
  - name: template
    when: "true"
    annotations: { summary: "{{ tracker.label " }
"#,
    )
    .unwrap();
    let errors = messages(RuleSet::load(&config(dir.path(), "[bad.yaml]")).unwrap_err());
    let f = file.display();
    let expected = [
        format!("{f}:4:11: rule `dup` is defined twice (first at {f}:2:11)"),
        format!(
            "{f}:7:11: rule `syntax`: when: Script is incomplete (line 1, column 20 of the expression)"
        ),
        format!(
            "{f}:9:11: rule `typo`: when: `state.gps` has no field `sped` (did you mean `speed`?) (fields: updated, signal_level, location, heading, speed, alt, precision, gsm_lbs, satellites, hdop) (line 1, column 11 of the expression)"
        ),
        format!(
            "{f}:11:11: rule `zone`: when: unknown zone `harbour` (zones: depot) (line 1, column 1 of the expression)"
        ),
        format!("{f}:12:11: rule `channel`: channels: unknown channel `pager` (channels: ops)"),
        format!(
            "{f}:17:10: rule `timing`: for: `5 minutes` has an unknown unit ` minutes` (use ms, s, m, h or d)"
        ),
        format!(
            "{f}:18:22: rule `timing`: keep_firing_for: `soon` is not a duration like 90s, 15m or 4h"
        ),
        format!(
            "{f}:19:11: rule `schedule`: schedule: window 1: from: `25:00` is not a time of day like 07:30"
        ),
        format!(
            "{f}:19:11: rule `schedule`: schedule: window 1: unknown time zone `Mars/Olympus` (use an IANA name such as Europe/Berlin)"
        ),
        format!(
            "{f}:23:11: rule `params`: when: `params.max_sped` is not defined (did you mean `max_speed`?) (params: max_speed) (line 1, column 26 of the expression)"
        ),
    ];
    for e in &expected {
        assert!(
            errors.contains(e),
            "missing:\n{e}\nin:\n{}",
            errors.join("\n")
        );
    }
    let template = errors
        .iter()
        .find(|e| e.contains("rule `template`"))
        .unwrap();
    assert!(
        template.starts_with(&format!(
            "{f}:27:29: rule `template`: annotations.summary: template error:"
        )),
        "{template}"
    );
    assert_eq!(errors.len(), expected.len() + 1, "{}", errors.join("\n"));
}

#[test]
fn unknown_keys_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.yaml");
    std::fs::write(
        &file,
        "rules:\n  - name: a\n    when: \"true\"\n    severty: critical\n",
    )
    .unwrap();
    let errors = messages(RuleSet::load(&config(dir.path(), "[keys.yaml]")).unwrap_err());
    assert_eq!(
        errors,
        [format!(
            "{}:4:5: unknown field `severty` (did you mean `severity`?)",
            file.display()
        )]
    );
}
