//! `navixy-alerts test`: the real binary on the stock rule tests, on a failing test file
//! and on a broken one.

use std::process::Command;

use super::{repo, stock_rule_files, yaml_files};

fn run_test(files: &[std::path::PathBuf]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_navixy-alerts"))
        .arg("test")
        .args(files)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn stock_rule_tests_pass() {
    let files = yaml_files(&repo().join("rules/tests"));
    assert!(files.len() >= 9, "{files:?}");
    let (code, stdout, stderr) = run_test(&files);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(stdout.trim_end().ends_with(" passed, 0 failed"), "{stdout}");
}

#[test]
fn every_stock_rule_has_a_test() {
    let tests: String = yaml_files(&repo().join("rules/tests"))
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let set = navixy_alerts::rules::RuleSet::from_files(
        &stock_rule_files(),
        &navixy_alerts::rules::LoadOptions {
            zones: super::loading::depot(),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(set.len() >= 16);
    for rule in set.rules() {
        let expected = [
            format!("rule: {}", rule.name),
            format!("rule: {},", rule.name),
        ];
        assert!(
            expected.iter().any(|e| tests.contains(e.as_str())),
            "stock rule `{}` has no expected transition in rules/tests",
            rule.name
        );
    }
}

#[test]
fn a_failing_test_exits_1_with_a_diff() {
    let dir = tempfile::tempdir().unwrap();
    let speeding = repo().join("rules/speeding.yaml");
    let file = dir.path().join("speeding_wrong.yaml");
    std::fs::write(
        &file,
        format!(
            r#"rule_files: ["{}"]
tests:
  - name: right
    input:
      - tracker: 1
        events:
          - {{ at: 0s, state: {{ gps: {{ speed: 100 }} }} }}
    until: 2m
    expect:
      - {{ at: 1m, rule: speeding, status: firing, value: 100 }}
  - name: wrong time, value and a missing resolve
    input:
      - tracker: 1
        label: Truck 1
        events:
          - {{ at: 0s, state: {{ gps: {{ speed: 100 }} }} }}
    until: 2m
    expect:
      - {{ at: 50s, rule: speeding, status: firing }}
      - {{ at: 1m, rule: speeding, status: firing, value: 120 }}
      - {{ at: 1m, rule: speeding, status: resolved }}
"#,
            speeding.display()
        ),
    )
    .unwrap();
    let (code, stdout, _) = run_test(std::slice::from_ref(&file));
    assert_eq!(code, 1, "{stdout}");
    let expected = format!(
        "{}
  PASS  right
  FAIL  wrong time, value and a missing resolve
        transitions (- expected, not emitted; + emitted, not expected):
        -     50s (Mon 2026-01-05 08:00:50)  firing    speeding  tracker 1
        -      1m (Mon 2026-01-05 08:01:00)  resolved  speeding  tracker 1
        emitted with different details:
        ~      1m (Mon 2026-01-05 08:01:00)  firing    speeding  tracker 1: value: expected 120, got 100
1 passed, 1 failed
",
        file.display()
    );
    assert_eq!(stdout, expected);
}

#[test]
fn an_unexpected_transition_fails_the_test() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(
        &file,
        format!(
            "rule_files: [\"{}\"]\ntests:\n  - name: nothing expected\n    input:\n      - tracker: 7\n        label: Van\n        events:\n          - {{ at: 0s, state: {{ ignition: true }} }}\n    expect: []\n",
            repo().join("rules/ignition.yaml").display()
        ),
    )
    .unwrap();
    let (code, stdout, _) = run_test(std::slice::from_ref(&file));
    assert_eq!(code, 1);
    assert!(
        stdout.contains(
            "        +      0s (Mon 2026-01-05 08:00:00)  event     ignition_on  tracker 7\n"
        ),
        "{stdout}"
    );
}

#[test]
fn a_broken_test_file_names_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, "rule_files: [x.yaml]\ntests: []\ncolour: red\n").unwrap();
    let (code, stdout, _) = run_test(std::slice::from_ref(&file));
    assert_eq!(code, 1);
    assert!(
        stdout.contains(&format!(
            "  ERROR {}:3:1: unknown field `colour`",
            file.display()
        )),
        "{stdout}"
    );
    assert!(stdout.ends_with("0 passed, 1 failed\n"), "{stdout}");
}

#[test]
fn a_recording_is_test_input() {
    let file = repo().join("tests/data/rules/recording_test.yaml");
    let (code, stdout, stderr) = run_test(std::slice::from_ref(&file));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        stdout,
        format!(
            "{}\n  PASS  recorded frames run through the rules\n1 passed, 0 failed\n",
            file.display()
        )
    );
}

fn run_in(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_navixy-alerts"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_config_and_a_test_file_in_the_current_folder_find_their_rules() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ignition.rule.yaml"),
        "rules:\n  - name: ignition_on\n    when: state.ignition == true\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("cfg.yml"),
        "source: { simulator: { trackers: 2 } }\nrules: [\"*.rule.yaml\"]\nchannels:\n  ops: { type: stdout }\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run_in(dir.path(), &["check", "-c", "cfg.yml"]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    std::fs::write(
        dir.path().join("t.yaml"),
        "rule_files: [\"*.rule.yaml\"]\ntests:\n  - name: on\n    input:\n      - tracker: 1\n        events:\n          - { at: 0s, state: { ignition: true } }\n    expect:\n      - { at: 0s, rule: ignition_on, status: firing }\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run_in(dir.path(), &["test", "t.yaml"]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("  PASS  on\n"), "{stdout}");
}

/// A rule that faults at every evaluation, a misspelt reading, a misspelt rule, a bad
/// time and mixed readings shapes: each fails its test with its place.
#[test]
fn authoring_mistakes_fail_the_test_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("r.yaml"),
        r#"rules:
  - name: fuel_low
    when: readings.fuel.value * 2 < 10
  - name: reefer_temp
    when: readings.temp1.value > 5
"#,
    )
    .unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(
        &file,
        r#"rule_files: [r.yaml]
tests:
  - name: faults
    rules: [fuel_low]
    input:
      - tracker: 1
        events:
          - { at: 10s, state: { ignition: true } }
    expect:
      - { at: 10s, rule: fuel_low, status: firing }
  - name: unread
    rules: [reefer_temp]
    input:
      - tracker: 1
        events:
          - { at: 0s, readings: { temp_1: 8.0 } }
    expect:
      - { at: 0s, rule: reefer_temp, status: firing }
  - name: names
    input:
      - tracker: 1
        events:
          - { at: soon, state: { ignition: true } }
          - { at: 1m, readings: { lls_level_1: 300.0, counters: [] } }
    expect:
      - { at: 0s, rule: reefer_tmp, status: firing }
"#,
    )
    .unwrap();
    let (code, stdout, _) = run_test(std::slice::from_ref(&file));
    assert_eq!(code, 1, "{stdout}");
    let f = file.display();
    let expected = format!(
        "{f}
  FAIL  faults
        transitions (- expected, not emitted; + emitted, not expected):
        -     10s (Mon 2026-01-05 08:00:10)  firing    fuel_low  tracker 1
        ! rule `fuel_low` faulted at 10s (Mon 2026-01-05 08:00:10) on input[0].events[0] ({f}:8), tracker 1: when: Function not found: * ((), i64) (line 1, position 21)
        ! rule `fuel_low` read readings.fuel, which no input step provided (given: none)
  FAIL  unread
        transitions (- expected, not emitted; + emitted, not expected):
        -      0s (Mon 2026-01-05 08:00:00)  firing    reefer_temp  tracker 1
        ! rule `reefer_temp` read readings.temp1, which no input step provided (did you mean `temp_1`?) (given: temp_1)
  FAIL  names
        {f}:23: input[0].events[0].at: `soon` is not an offset like 5m or a time like 2026-01-05T08:05:00Z
        {f}:24: input[0].events[1]: readings: `lls_level_1` beside a full readings item (inputs, states, virtual_sensors, counters) would be dropped; put it in `inputs` or in an event of its own
        {f}:26: expect[0]: `reefer_tmp` is not a loaded rule (did you mean `reefer_temp`?); loaded rules: fuel_low, reefer_temp
0 passed, 3 failed
"
    );
    assert_eq!(stdout, expected);
}

#[test]
fn test_file_settings_name_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(
        &file,
        format!(
            "rule_files: [\"{}\"]\ntimezone: Europe/Berln\nstart: soon\nevaluation_interval: 0s\ntests: []\n",
            repo().join("rules/ignition.yaml").display()
        ),
    )
    .unwrap();
    let (code, stdout, _) = run_test(std::slice::from_ref(&file));
    assert_eq!(code, 1);
    let f = file.display();
    assert_eq!(
        stdout,
        format!(
            "{f}\n  ERROR {f}:2: timezone: unknown time zone `Europe/Berln`\n        {f}:4: evaluation_interval: must be more than 0s\n        {f}:3: start: `soon` is not a time like 2026-01-05T08:00:00Z\n0 passed, 1 failed\n"
        )
    );
}
