//! `notify-test -c FILE CHANNEL` through the real binary: a sample notification reaches the
//! receiver (exit 0), a refusal prints the error (exit 1), an unknown channel lists the
//! configured ones (exit 2).

use std::process::Command;

use super::channel_support::Provider;

fn notify_test(yaml: &str, channel: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_navixy-alerts"))
        .args(["notify-test", "-c"])
        .arg(&path)
        .arg(channel)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn sends_one_sample_and_reports_the_outcome() {
    let rx = Provider::start(|r, _| match r.path.as_str() {
        "/ok" => (200, vec![], String::new()),
        _ => (500, vec![], "down for maintenance".into()),
    })
    .await;
    let yaml = format!(
        "source: {{ simulator: {{}} }}\nchannels:\n  ops: {{ type: webhook, url: \"{0}/ok\" }}\n  broken: {{ type: webhook, url: \"{0}/fail\" }}\n",
        rx.base
    );
    let yaml2 = yaml.clone();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || notify_test(&yaml2, "ops"))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stderr}");
    let got = rx.requests();
    assert_eq!(got.len(), 1);
    let body = got[0].json();
    assert_eq!(body["type"], "alert.firing");
    assert_eq!(body["data"]["receiver"], "ops");
    assert_eq!(body["data"]["alerts"][0]["rule"], "notify_test");
    let id = got[0].header("webhook-id").to_owned();
    assert_eq!(
        stdout.trim(),
        format!("ok: channels.ops accepted the test notification {id}")
    );

    let yaml2 = yaml.clone();
    let (code, _, stderr) = tokio::task::spawn_blocking(move || notify_test(&yaml2, "broken"))
        .await
        .unwrap();
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim(),
        "error: channels.broken (webhook): HTTP 500 Internal Server Error: down for maintenance (the daemon would retry this)"
    );

    let (code, _, stderr) = tokio::task::spawn_blocking(move || notify_test(&yaml, "pager"))
        .await
        .unwrap();
    assert_eq!(code, 2);
    assert!(
        stderr
            .trim()
            .ends_with("no channel `pager` (channels: broken, ops)"),
        "{stderr}"
    );
}
