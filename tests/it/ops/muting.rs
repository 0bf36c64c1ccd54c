//! Inhibition and mute time intervals in the running daemon: the simulator on loopback
//! as the source (its clock runs 60 simulated seconds a second), the stock evaluation
//! path, a real webhook receiver. A reload that removes the source rule resolves its
//! alerts, which releases what they inhibited; a mute that ends releases what still
//! fires and nothing about what resolved meanwhile.

use chrono::{Duration as Span, Timelike, Utc};

use navixy_alerts::store::Outcome;

use super::server::{Daemon, Hook, TRACKERS, config_listing, eventually};

/// `rule` on every tracker while `when` holds, with `severity`, after `for_`.
fn rule(name: &str, severity: &str, when: &str, for_: Option<&str>) -> String {
    let for_ = for_.map_or_else(String::new, |f| format!("    for: {f}\n"));
    format!(
        "rules:\n  - name: {name}\n    when: \"{when}\"\n    severity: {severity}\n{for_}    annotations:\n      summary: \"{{{{ tracker.label }}}}\"\n"
    )
}

/// How many times the daemon's log says `outcome` about `rule`.
async fn logged(daemon: &Daemon, outcome: Outcome, rule: &str) -> usize {
    daemon
        .running
        .store
        .recent_log(1000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.outcome == outcome && e.rule == rule)
        .count()
}

const INHIBIT: &str = r#"inhibit_rules:
  - source_matchers: { rule: offline }
    target_matchers: ["severity=~warning|info"]
    equal: [tracker_id]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inhibited_alert_is_not_sent_until_its_source_resolves() {
    let hook = Hook::start().await;
    let listing =
        |rules: &str| format!("{}{INHIBIT}", config_listing(&hook.url, ":memory:", rules));
    let rules = [
        ("offline.yaml", rule("offline", "critical", "now > 0", None)),
        // A simulated minute later, so the source surely fires first.
        (
            "low.yaml",
            rule("low_fuel", "warning", "now > 0", Some("1m")),
        ),
    ];
    let text = listing("rules/offline.yaml, rules/low.yaml");
    let daemon = Daemon::start_with(&text, &rules, hook.clone()).await;

    daemon.firing_for_all("low_fuel").await;
    eventually("every target inhibited", || async {
        (logged(&daemon, Outcome::Inhibited, "low_fuel").await == TRACKERS).then_some(())
    })
    .await;
    assert_eq!(hook.count("firing", "offline"), TRACKERS);
    assert_eq!(hook.count("firing", "low_fuel"), 0, "{:?}", hook.alerts());

    // The source rule goes: its alerts resolve, and the targets that still fire are sent.
    std::fs::write(
        daemon.dir.path().join("config.yaml"),
        listing("rules/low.yaml"),
    )
    .unwrap();
    let (status, body) = daemon.post("/api/v1/reload", "").await;
    assert_eq!(status, 200, "{body}");
    // The sources' resolves and the released targets are groups of their own: the
    // channel may deliver them in either order.
    eventually("the targets released and the sources resolved", || async {
        (hook.count("firing", "low_fuel") == TRACKERS
            && hook.count("resolved", "offline") == TRACKERS)
            .then_some(())
    })
    .await;
    // Each target once: released, not repeated.
    let mut targets: Vec<i64> = hook
        .alerts()
        .into_iter()
        .filter(|(_, rule, _)| rule == "low_fuel")
        .map(|(_, _, tracker)| tracker)
        .collect();
    targets.sort();
    targets.dedup();
    assert_eq!(targets.len(), TRACKERS);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mute_releases_what_still_fires_at_its_end_and_not_what_resolved() {
    let hook = Hook::start().await;
    // The simulated clock starts at the wall clock: mute from this minute for four
    // simulated minutes (four real seconds), in UTC.
    let start = Utc::now()
        .with_second(0)
        .unwrap()
        .with_nanosecond(0)
        .unwrap();
    let end = start + Span::minutes(4);
    let hhmm = |t: chrono::DateTime<Utc>| format!("{:02}:{:02}", t.hour(), t.minute());
    let times = if end.date_naive() == start.date_naive() {
        format!(
            "[{{ start_time: \"{}\", end_time: \"{}\" }}]",
            hhmm(start),
            hhmm(end)
        )
    } else {
        format!(
            "[{{ start_time: \"{}\", end_time: \"24:00\" }}, {{ start_time: \"00:00\", end_time: \"{}\" }}]",
            hhmm(start),
            hhmm(end)
        )
    };
    let brief_until = Utc::now().timestamp() + 60;
    let rules = [
        ("held.yaml", rule("held", "warning", "now > 0", None)),
        // Fires at once and resolves a simulated minute later, inside the mute.
        (
            "brief.yaml",
            rule("brief", "warning", &format!("now < {brief_until}"), None),
        ),
    ];
    let routes = config_listing(&hook.url, ":memory:", "rules/held.yaml, rules/brief.yaml")
        .replace(
            "  - channels: [hook]\n",
            "  - channels: [hook]\n    mute_time_intervals: [maintenance]\n",
        );
    let text = format!(
        "{routes}time_intervals:\n  - name: maintenance\n    time_intervals:\n      - times: {times}\n"
    );
    let daemon = Daemon::start_with(&text, &rules, hook.clone()).await;

    daemon.firing_for_all("held").await;
    eventually("every alert muted", || async {
        (logged(&daemon, Outcome::Muted, "held").await == TRACKERS).then_some(())
    })
    .await;
    assert!(hook.alerts().is_empty(), "{:?}", hook.alerts());

    eventually("the mute's end", || async {
        (hook.count("firing", "held") == TRACKERS).then_some(())
    })
    .await;
    let clock_now = daemon.running.clock.now();
    assert!(
        clock_now >= end,
        "released at {clock_now}, before the mute's end {end}"
    );
    // What fired and resolved during the mute is not sent at all.
    assert_eq!(logged(&daemon, Outcome::Muted, "brief").await, TRACKERS);
    assert_eq!(logged(&daemon, Outcome::Dropped, "brief").await, TRACKERS);
    assert!(
        hook.alerts().iter().all(|(_, rule, _)| rule == "held"),
        "{:?}",
        hook.alerts()
    );
    daemon.stop().await;
}
