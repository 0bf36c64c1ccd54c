//! Hot reload through `POST /api/v1/reload` on a daemon running in-process: a bad rule set
//! is rejected whole while the old one goes on, a new rule fires, an unchanged firing rule
//! does not fire again, and the alerts of a removed rule resolve.
//!
//! The configs list their rule files by name, and a test adds or removes one by rewriting
//! the config's `rules:` (which a reload reads again): the file watcher then has nothing
//! to react to, and each reload is the test's own.

use serde_json::Value;

use super::server::{Daemon, TRACKERS, always, eventually, sample};

/// The evaluations of `rule` so far, from `/metrics`.
async fn evaluations(daemon: &Daemon, rule: &str) -> f64 {
    let text = daemon.metrics().await;
    sample(
        &text,
        &format!("navixy_alerts_rule_evaluations_total{{rule=\"{rule}\"}}"),
    )
    .unwrap_or(0.0)
}

/// Waits until `rule` has been evaluated for every tracker again (a tick or two): what
/// shows that it runs now.
async fn evaluated_again(daemon: &Daemon, rule: &str) {
    let before = evaluations(daemon, rule).await;
    eventually(&format!("{rule} evaluated again"), || async {
        (evaluations(daemon, rule).await >= before + 2.0 * TRACKERS as f64).then_some(())
    })
    .await;
}

fn rule_names(daemon: &Daemon) -> Vec<String> {
    daemon
        .running
        .reloader
        .rules()
        .rules()
        .iter()
        .map(|r| r.name.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_rule_file_is_rejected_and_the_old_set_keeps_running() {
    let daemon = Daemon::start_listed(&[("keep.yaml", always("kept_rule"))]).await;
    daemon.firing_for_all("kept_rule").await;

    // A file with one good rule and one that does not compile: nothing of it is taken.
    std::fs::write(
        daemon.rules_dir().join("broken.yaml"),
        "rules:\n  - name: fine_but_rejected\n    when: \"now > 0\"\n  - name: broken_rule\n    when: \"state.gps.speed >\"\n",
    )
    .unwrap();
    daemon.list_rules(&["keep.yaml", "broken.yaml"]);
    let (status, body) = daemon.post("/api/v1/reload", "").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["status"], "error");
    assert_eq!(
        body["error"],
        "the new rule set has 1 error(s); the previous one keeps running"
    );
    let errors: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(errors.len(), 1, "{body}");
    assert!(errors[0].contains("broken.yaml:"), "{}", errors[0]);
    assert!(
        errors[0].contains("rule `broken_rule`: when:"),
        "{}",
        errors[0]
    );

    assert_eq!(rule_names(&daemon), ["kept_rule"]);
    evaluated_again(&daemon, "kept_rule").await;
    let (_, alerts) = daemon.get("/api/v1/alerts").await;
    let rules: Vec<&str> = alerts
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["rule"].as_str())
        .collect();
    assert_eq!(rules, vec!["kept_rule"; TRACKERS]);
    let text = daemon.metrics().await;
    assert!(sample(&text, "navixy_alerts_reloads_total{result=\"error\"}").unwrap() >= 1.0);

    // Fixed, it loads.
    std::fs::write(daemon.rules_dir().join("broken.yaml"), always("fixed_rule")).unwrap();
    let (status, body) = daemon.post("/api/v1/reload", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reload"]["added"], serde_json::json!(["fixed_rule"]));
    daemon.firing_for_all("fixed_rule").await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adding_a_rule_makes_it_fire() {
    let daemon = Daemon::start_listed(&[("first.yaml", always("first_rule"))]).await;
    daemon.firing_for_all("first_rule").await;

    std::fs::write(
        daemon.rules_dir().join("second.yaml"),
        always("second_rule"),
    )
    .unwrap();
    daemon.list_rules(&["first.yaml", "second.yaml"]);
    let (status, body) = daemon.post("/api/v1/reload", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["reload"]["rules"], 2);
    assert_eq!(body["reload"]["added"], serde_json::json!(["second_rule"]));
    assert_eq!(body["reload"]["removed"], serde_json::json!([]));
    assert_eq!(body["reload"]["files"].as_array().unwrap().len(), 2);

    let alerts = daemon.firing_for_all("second_rule").await;
    assert!(alerts.iter().all(|a| a["status"] == "firing"));
    eventually("the new rule's notifications", || async {
        (daemon.hook.count("firing", "second_rule") == TRACKERS).then_some(())
    })
    .await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_rule_does_not_fire_again_and_a_removed_one_resolves() {
    let daemon = Daemon::start_listed(&[
        ("steady.yaml", always("steady_rule")),
        ("doomed.yaml", always("doomed_rule")),
    ])
    .await;
    let steady_before = daemon.firing_for_all("steady_rule").await;
    daemon.firing_for_all("doomed_rule").await;
    eventually("both rules notified", || async {
        (daemon.hook.count("firing", "steady_rule") == TRACKERS
            && daemon.hook.count("firing", "doomed_rule") == TRACKERS)
            .then_some(())
    })
    .await;

    daemon.list_rules(&["steady.yaml"]);
    let (status, body) = daemon.post("/api/v1/reload", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["reload"]["removed"],
        serde_json::json!(["doomed_rule"])
    );
    assert_eq!(body["reload"]["added"], serde_json::json!([]));

    // The removed rule's alerts resolve, and receivers are told.
    eventually("the removed rule's alerts resolved", || async {
        let (_, alerts) = daemon.get("/api/v1/alerts").await;
        let left = alerts
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["rule"] == "doomed_rule")
            .count();
        (left == 0 && daemon.hook.count("resolved", "doomed_rule") == TRACKERS).then_some(())
    })
    .await;

    // The unchanged rule runs on with the same alerts: same fingerprint, same start, same
    // firing transition, no second notification, nothing resolved.
    evaluated_again(&daemon, "steady_rule").await;
    let steady_after = daemon.firing_for_all("steady_rule").await;
    assert_eq!(steady_after, steady_before);
    assert_eq!(daemon.hook.count("firing", "steady_rule"), TRACKERS);
    assert_eq!(daemon.hook.count("resolved", "steady_rule"), 0);
    let log = daemon.running.store.recent_log(1000).await.unwrap();
    let steady_firings = log
        .iter()
        .filter(|e| e.rule == "steady_rule" && e.status == "firing")
        .count();
    assert_eq!(steady_firings, TRACKERS, "{log:#?}");

    // A second reload with nothing changed changes nothing either.
    let (status, body) = daemon.post("/api/v1/reload", "").await;
    assert_eq!(status, 200, "{body}");
    evaluated_again(&daemon, "steady_rule").await;
    assert_eq!(daemon.firing_for_all("steady_rule").await, steady_before);
    assert_eq!(daemon.hook.count("firing", "steady_rule"), TRACKERS);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_no_longer_loads_is_reported_and_changes_nothing() {
    let daemon = Daemon::start_listed(&[("only.yaml", always("only_rule"))]).await;
    daemon.firing_for_all("only_rule").await;
    let path = daemon.dir.path().join("config.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("rules: [", "rulez: [")).unwrap();
    let (status, body) = daemon.post("/api/v1/reload", "").await;
    assert_eq!(status, 422, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("config.yaml:"), "{error}");
    assert!(error.contains("unknown field `rulez`"), "{error}");
    assert_eq!(body["errors"], serde_json::json!([error]));
    assert_eq!(rule_names(&daemon), ["only_rule"]);
    evaluated_again(&daemon, "only_rule").await;
    daemon.stop().await;
}
