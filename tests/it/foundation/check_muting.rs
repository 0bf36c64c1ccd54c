//! `check` on inhibit rules, time intervals and the names that refer to them, through
//! the real binary: each mistake is one message with the file, line and column.

use std::process::Command;

/// Runs `check` on `yaml` (after a simulator source) with `rules.yaml` beside it; returns
/// the exit code, stderr with the config's path replaced by `CONFIG` and the rule file's
/// by `RULES`, and stdout.
fn check(yaml: &str, rules: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let rules_path = dir.path().join("rules.yaml");
    std::fs::write(
        &path,
        format!("source:\n  simulator: {{}}\nrules: [rules.yaml]\n{yaml}"),
    )
    .unwrap();
    std::fs::write(&rules_path, rules).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_navixy-alerts"))
        .args(["check", "-c"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr)
        .replace(&*path.to_string_lossy(), "CONFIG")
        .replace(&*rules_path.to_string_lossy(), "RULES");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.code().unwrap_or(-1),
        stderr.trim_end().to_owned(),
        stdout,
    )
}

const CHANNELS: &str = "channels:\n  ops: { type: stdout }\n";
const INTERVAL: &str = "time_intervals:\n  - name: nights\n    time_intervals:\n      - times: [{ start_time: \"22:00\", end_time: \"24:00\" }]\n";
const RULE: &str = "rules:\n  - name: speeding\n    when: \"state.gps.speed > 90\"\n";

#[test]
fn mistakes_are_reported_with_their_line() {
    // (config after the source, rule file, expected stderr)
    let cases: Vec<(String, String, &str)> = vec![
        (
            format!(
                "{CHANNELS}routes:\n  - channels: [ops]\n    mute_time_intervals: [night]\n{INTERVAL}"
            ),
            RULE.into(),
            "error: CONFIG:8:27: routes[0]: unknown time interval `night` (time_intervals: nights)",
        ),
        (
            format!("{CHANNELS}routes:\n  - channels: [ops]\n    active_time_intervals: [office]\n"),
            RULE.into(),
            "error: CONFIG:8:29: routes[0]: unknown time interval `office` (time_intervals: none defined)",
        ),
        (
            "time_intervals:\n  - name: nights\n    time_intervals:\n      - times: [{ start_time: \"22:00\", end_time: \"06:00\" }]\n".into(),
            RULE.into(),
            "error: CONFIG:7:17: time_intervals.time_intervals.times: times: start_time `22:00` is not before end_time `06:00` (a range cannot cross midnight; write two)",
        ),
        (
            "time_intervals:\n  - name: w\n    time_intervals:\n      - weekdays: [\"friday:monday\"]\n".into(),
            RULE.into(),
            "error: CONFIG:7:20: time_intervals.time_intervals.weekdays: weekdays: `friday:monday`: the end day is before the start day (weeks run sunday to saturday; write two ranges)",
        ),
        (
            "time_intervals:\n  - name: w\n    time_intervals:\n      - { location: Europe/Berln }\n".into(),
            RULE.into(),
            "error: CONFIG:7:21: time_intervals.time_intervals.location: location: unknown location `Europe/Berln` (use an IANA time zone such as Europe/Berlin)",
        ),
        (
            "time_intervals:\n  - name: w\n    time_intervals:\n      - { weekday: [monday] }\n".into(),
            RULE.into(),
            "error: CONFIG:7:11: time_intervals.time_intervals: unknown field `weekday`, expected one of times, weekdays, days_of_month, months, years, location",
        ),
        (
            "inhibit_rules:\n  - source_matchers: { rule: tracker_offline }\n    target_matchers: [\"severity=~(warning\"]\n".into(),
            RULE.into(),
            "error: CONFIG:6:22: inhibit_rules.target_matchers: matchers: severity: `(warning` is not a valid regex",
        ),
        (
            "inhibit_rules:\n  - source_matchers: { rule: tracker_offline }\n    target_matchers: { severity: warning }\n    equals: [tracker_id]\n".into(),
            RULE.into(),
            "error: CONFIG:7:5: inhibit_rules.equals: unknown field `equals`, expected one of source_matchers, target_matchers, equal",
        ),
        (
            INTERVAL.into(),
            format!("{RULE}    schedule: night\n"),
            "error: RULES:2:11: rule `speeding`: schedule: unknown time interval `night` (time_intervals: nights)",
        ),
    ];
    let mut wrong = Vec::new();
    for (yaml, rules, want) in cases {
        let (code, stderr, _) = check(&yaml, &rules);
        if code != 1 || !stderr.starts_with(want) {
            wrong.push(format!(
                "{yaml}\nwant: {want}\ngot:  {stderr} (exit {code})"
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n\n"));
}

#[test]
fn a_rule_may_name_a_time_interval_as_its_schedule() {
    let yaml = format!(
        "{INTERVAL}inhibit_rules:\n  - source_matchers: [\"rule=offline\"]\n    target_matchers: {{ severity: \"!=critical\" }}\n"
    );
    let (code, stderr, stdout) = check(&yaml, &format!("{RULE}    schedule: nights\n"));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("\ninhibit_rules: 1\ntime_intervals: nights\nstorage: "),
        "{stdout}"
    );
}
