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
        -     50s  firing    speeding  tracker 1
        -      1m  resolved  speeding  tracker 1
        emitted with different details:
        ~      1m  firing    speeding  tracker 1: value: expected 120, got 100
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
        stdout.contains("        +      0s  firing    ignition_on  tracker 7\n"),
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
