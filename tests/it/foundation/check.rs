//! `check` through the real binary: exit codes and the one-line messages.

use std::process::Command;

use super::data;

fn check(
    yaml: &str,
    env: &[(&str, &str)],
) -> (i32, String, String, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("navixy-alerts.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_navixy-alerts"));
    cmd.args(["check", "-c"]).arg(&path).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path,
        dir,
    )
}

#[test]
fn a_good_config_prints_a_summary() {
    let yaml = r#"
source:
  navixy:
    api_url: https://api.eu.navixy.com/v2
    hash: ${TEST_NAVIXY_HASH}
    timezone: Europe/Berlin
rules: [rules/*.yaml, extra.yaml]
engine: { workers: 3, eval_interval: 30s, max_event_age: 1h }
zones:
  depot: { circle: { lat: 52.52, lng: 13.40, radius_m: 300 } }
channels:
  console: { type: stdout }
  ops: { type: webhook, url: "http://127.0.0.1:1/hook", secret: "${TEST_SECRET:-whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD}" }
routes:
  - match: { severity: critical }
    channels: [ops]
    continue: true
  - channels: [console]
storage: { path: ":memory:" }
"#;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    for f in [
        "rules/a.yaml",
        "rules/b.yaml",
        "rules/notes.txt",
        "extra.yaml",
    ] {
        std::fs::write(dir.path().join(f), "rules: []\n").unwrap();
    }
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_navixy-alerts"))
        .args(["check", "-c"])
        .arg(&path)
        .env("TEST_NAVIXY_HASH", "f4bf1b754034213653dad99c78c4b237")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = format!(
        "{}: ok
source: navixy https://api.eu.navixy.com/v2 (auth: hash, trackers: all, subscribe: state_batch, readings_batch, timezone: Europe/Berlin)
rules: 3 file(s)
  rules/*.yaml: 2 file(s)
  extra.yaml: 1 file(s)
  0 rules in 3 files
engine: 3 worker(s), eval_interval 30s, max_event_age 1h
zones: 1 (depot)
channels: 2 (console (stdout), ops (webhook))
routes: 2
  0: severity=critical -> ops (continue)
  1: any -> console
storage: :memory:
server: 127.0.0.1:9898
",
        path.display()
    );
    assert_eq!(stdout, expected);
    assert!(!stdout.contains("f4bf1b75"), "the hash is a secret");
}

#[test]
fn unknown_key_names_line_column_and_key() {
    let (code, _, stderr, path, _dir) = check(
        "source:\n  simulator: { trackers: 3 }\nengine:\n  workers: 2\n  eval_intervall: 10s\n",
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: {}:5:3: engine.eval_intervall: unknown field `eval_intervall`, expected one of eval_interval, max_event_age, workers",
            path.display()
        )
    );
}

#[test]
fn bad_duration() {
    let (code, _, stderr, path, _dir) = check(
        "source:\n  simulator: {}\nengine:\n  max_event_age: 15 minutes\n",
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: {}:4:18: engine.max_event_age: `15 minutes` has an unknown unit ` minutes` (use ms, s, m, h or d)",
            path.display()
        )
    );
}

#[test]
fn unknown_channel_in_a_route() {
    let yaml = "source:\n  simulator: {}\nchannels:\n  console: { type: stdout }\nroutes:\n  - match: { severity: critical }\n    channels: [console, pager]\n";
    let (code, _, stderr, path, _dir) = check(yaml, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: {}:7:25: routes[0]: unknown channel `pager` (channels: console)",
            path.display()
        )
    );
}

#[test]
fn escalate_steps_name_known_channels_in_increasing_order() {
    let head = "source:\n  simulator: {}\nchannels:\n  slack: { type: stdout }\n  pager: { type: stdout }\n  boss: { type: stdout }\nroutes:\n  - channels: [slack]\n    escalate:\n";
    let yaml = format!(
        "{head}      - {{ after: 15m, channels: [pager] }}\n      - {{ after: 1h, channels: [mail] }}\n"
    );
    let (code, _, stderr, path, _dir) = check(&yaml, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: {}:11:33: routes[0].escalate[1]: unknown channel `mail` (channels: boss, pager, slack)",
            path.display()
        )
    );
    let yaml = format!(
        "{head}      - {{ after: 1h, channels: [pager] }}\n      - {{ after: 30m, channels: [boss] }}\n"
    );
    let (code, _, stderr, path, _dir) = check(&yaml, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: {}:11:34: routes[0].escalate[1].after: the step to `boss` comes at 30m, not \
             after the step before it (1h); `after` must increase from step to step",
            path.display()
        )
    );
    let yaml = format!(
        "{head}      - {{ after: 15m, channels: [pager] }}\n      - {{ after: 1h, channels: [boss] }}\n"
    );
    let (code, stdout, stderr, _, _dir) = check(&yaml, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

#[test]
fn missing_environment_variable() {
    let yaml = "source:\n  navixy:\n    api_url: https://api.eu.navixy.com/v2\n    hash: ${NAVIXY_ALERTS_TEST_UNSET}\n";
    let (code, _, stderr, path, _dir) = check(yaml, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: {}:4:11: source.navixy.hash: environment variable `NAVIXY_ALERTS_TEST_UNSET` is not set (write `${{NAVIXY_ALERTS_TEST_UNSET:-default}}` for a default)",
            path.display()
        )
    );
    let (code, stdout, _, _, _dir) = check(yaml, &[("NAVIXY_ALERTS_TEST_UNSET", "abc")]);
    assert_eq!(code, 0, "{stdout}");
}

#[test]
fn a_rule_file_that_does_not_exist() {
    let (code, _, stderr, path, _dir) =
        check("source:\n  simulator: {}\nrules: [missing.yaml]\n", &[]);
    assert_eq!(code, 1);
    let missing = path.parent().unwrap().join("missing.yaml");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: {}: rules: `missing.yaml` does not exist ({})",
            path.display(),
            missing.display()
        )
    );
}

#[test]
fn the_replay_test_config_is_valid() {
    let out = Command::new(env!("CARGO_BIN_EXE_navixy-alerts"))
        .args(["check", "-c"])
        .arg(data("replay.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

/// The production example with its variables set: every channel type (email's SMTP pool
/// included) is built by `check` without a panic.
#[test]
fn the_production_example_is_valid() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/production.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_navixy-alerts"))
        .args(["check", "-c"])
        .arg(&example)
        .env_remove("RUST_LOG")
        .env("NAVIXY_HASH", "f4bf1b754034213653dad99c78c4b237")
        .env("NAVIXY_SOUTH_HASH", "0b1d0c5e2f6a4b7c8d9e0f1a2b3c4d5e")
        .env("WEBHOOK_SECRET", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
        .env(
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/T0/B0/x",
        )
        .env("SMTP_PASSWORD", "pa$$ #word: \"x\"")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!("{}: ok\n", example.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "channels: 5 (am (alertmanager), console (stdout), mail (email), ops (webhook), slack (slack))"
        ),
        "{stdout}"
    );
}

#[test]
fn the_demo_example_is_valid() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_navixy-alerts"))
        .args(["check", "-c"])
        .arg(&example)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `eval_interval: 0s` once passed `check` and then stopped the engine of `run`.
#[test]
fn a_zero_eval_interval_is_refused_with_its_line() {
    let (code, _, stderr, path, _dir) = check(
        "source:\n  simulator: {}\nengine:\n  eval_interval: 0s\n",
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: {}:4:18: engine.eval_interval: `0s` is out of range: must be from 100ms to 1h",
            path.display()
        )
    );
}

#[test]
fn a_zero_max_frame_bytes_is_refused_with_its_line() {
    let yaml = "source:\n  navixy:\n    api_url: https://api.eu.navixy.com/v2\n    hash: abc\n    max_frame_bytes: 0\n";
    let (code, _, stderr, path, _dir) = check(yaml, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: {}:5:22: source.navixy.max_frame_bytes: `0` is out of range: must be from 1024 to 1073741824",
            path.display()
        )
    );
}

/// A webhook key shorter than Standard Webhooks' 24 bytes is refused, naming the channel.
#[test]
fn a_short_webhook_secret_is_refused() {
    let yaml = "source:\n  simulator: {}\nchannels:\n  ops:\n    type: webhook\n    url: http://127.0.0.1:1/hook\n    secret: ${SECRET}\n";
    // 16 bytes of key.
    let (code, _, stderr, path, _dir) =
        check(yaml, &[("SECRET", "whsec_MTIzNDU2Nzg5MDEyMzQ1Ng==")]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: {}:7:5: channels.ops.secret: the key is 16 bytes, at least 24 are needed (Standard Webhooks: 24 to 64 random bytes, `whsec_` + base64)",
            path.display()
        )
    );
    assert!(!stderr.contains("MTIz"), "the secret is not shown");
}

/// A variable's value is the value, whatever it holds: `#` is not a comment, `null` is not
/// null, and `: ` does not make a mapping.
#[test]
fn a_variable_holding_yaml_syntax_stays_text() {
    let yaml = "source:\n  navixy:\n    api_url: https://api.eu.navixy.com/v2\n    hash: ${HASH}\n    timezone: ${TZ_NAME}\nserver:\n  token: ${TOKEN}\n";
    for token in [
        "abc #def",
        "null",
        "~",
        "a: b",
        "{x: 1}",
        "\"q\\\"",
        "two\nlines",
    ] {
        let (code, stdout, stderr, _, _dir) = check(
            yaml,
            &[
                ("HASH", token),
                ("TZ_NAME", "Europe/Berlin"),
                ("TOKEN", token),
            ],
        );
        assert_eq!(code, 0, "{token:?}: {stdout}{stderr}");
        assert!(stdout.contains("auth: hash"), "{token:?}: {stdout}");
    }
    // A timezone with a comment in it is not cut at the `#`.
    let (code, _, stderr, _, _dir) = check(
        yaml,
        &[
            ("HASH", "h"),
            ("TZ_NAME", "Europe/Berlin #x"),
            ("TOKEN", "t"),
        ],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("unknown time zone `Europe/Berlin #x`"),
        "{stderr}"
    );
}

#[test]
fn a_postgres_storage_is_summarised_without_its_password() {
    let yaml =
        "source: { simulator: {} }\nstorage:\n  postgres: { url: \"${TEST_DATABASE_URL}\" }\n";
    let (code, stdout, stderr, _, _dir) = check(
        yaml,
        &[(
            "TEST_DATABASE_URL",
            "postgres://alerts:s3cret@db.internal:5432/alerts",
        )],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("\nstorage: postgres://alerts:***@db.internal:5432/alerts\n"),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cret") && !stderr.contains("s3cret"));
}
