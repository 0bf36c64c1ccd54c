//! The Rules page as served (HTML, no browser): each rule's evaluation faults with the
//! last message, and the last reload: when, what asked, ok or every error with its
//! file:line.

use serde_json::Value;

use super::browser::{always, daemon};
use crate::ops::server::eventually;

/// A rule that fails for every tracker at run time (integer division by zero).
const FAULTY: &str = "rules:\n  - name: divides_by_zero\n    when: \"1 / (tracker.id - tracker.id) > 0\"\n    severity: info\n";

async fn page(daemon: &crate::ops::server::Daemon) -> String {
    let (status, body) = daemon.get("/rules").await;
    assert_eq!(status, 200, "{body}");
    match body {
        Value::String(html) => html,
        other => panic!("not a page: {other}"),
    }
}

/// The text from the tag that contains `marker` up to `end`, tags read as spaces and
/// entities decoded.
fn text_of(html: &str, marker: &str, end: &str) -> String {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("no `{marker}` in\n{html}"));
    let rest = &html[at..];
    let rest = &rest[rest.find('>').map_or(0, |i| i + 1)..];
    let part = &rest[..rest.find(end).unwrap_or(rest.len())];
    let mut text = String::new();
    let mut in_tag = false;
    for c in part.chars() {
        match c {
            '<' => {
                in_tag = true;
                text.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_page_shows_faults_and_the_last_reload() {
    let daemon = daemon(&[
        ("faulty.yaml", FAULTY.to_string()),
        ("watch.yaml", always("watched", "info")),
    ])
    .await;
    daemon.firing_for_all("watched").await;

    let html = page(&daemon).await;
    assert!(
        text_of(&html, "id=\"last-reload\"", "</div>")
            .contains("No reload since the daemon started."),
        "{html}"
    );
    // The faulty rule counts a fault per evaluation and shows the last one; the good
    // one has none.
    let (faults, last) = eventually("the faulty rule's faults on the page", || async {
        let html = page(&daemon).await;
        let row = &html[html.find("data-rule=\"divides_by_zero\"")?..];
        let faults = text_of(row, "class=\"faults\"", "</td>");
        faults.contains("last").then_some(faults)
    })
    .await
    .split_once(" last ")
    .map(|(n, last)| (n.parse::<u64>().unwrap(), last.to_owned()))
    .unwrap();
    assert!(faults >= 4, "{faults} {last}");
    assert!(
        last.contains(" : when (runtime) for tracker #") && last.contains(": Division by zero"),
        "{last}"
    );
    let good = text_of(&page(&daemon).await, "data-rule=\"watched\"", "</tr>");
    assert!(good.starts_with("watched info 4 0 0 "), "{good}");
    assert!(good.ends_with("rules/watch.yaml:2:11"), "{good}");

    // A reload that does not load: rejected, with each error's file:line.
    std::fs::write(
        daemon.rules_dir().join("watch.yaml"),
        "rules:\n  - name: watched\n    when: \"state.gps.speed >\"\n    severity: info\n",
    )
    .unwrap();
    let (status, body) = daemon.post("/api/v1/reload", "").await;
    assert_eq!(status, 422, "{body}");
    let html = page(&daemon).await;
    let last = text_of(&html, "id=\"last-reload\"", "</div>");
    assert!(
        last.contains("by anonymous (API): rejected the new rule set has 1 error(s)"),
        "{last}"
    );
    assert!(last.contains("watch.yaml:3"), "{last}");

    // Fixed: ok, and what is in force now.
    std::fs::write(
        daemon.rules_dir().join("watch.yaml"),
        always("watched", "info"),
    )
    .unwrap();
    let (status, body) = daemon.post("/api/v1/reload", "").await;
    assert_eq!(status, 200, "{body}");
    let last = text_of(&page(&daemon).await, "id=\"last-reload\"", "</div>");
    assert!(
        last.contains("by anonymous (API): ok 2 rules in force (0 added, 0 removed)."),
        "{last}"
    );
    daemon.stop().await;
}

/// A recording: tracker 7 does 95 km/h from 08:00:10 to 08:00:40, 20 before and after.
fn recording() -> String {
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-05T08:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let mut text = String::new();
    for step in 0..7 {
        let at = start + chrono::Duration::seconds(step * 10);
        let speed = if (1..=4).contains(&step) { 95 } else { 20 };
        let frame = serde_json::json!({
            "type": "event", "event": "state_batch",
            "data": [{ "source_id": 7, "gps": { "location": { "lat": 52.6, "lng": 13.4 },
                "speed": speed, "updated": at.format("%Y-%m-%d %H:%M:%S").to_string() } }]
        });
        navixy_alerts::source::recording::write_line(at, &frame.to_string(), &mut text);
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playground_runs_a_condition_over_a_listed_recording_only() {
    let hook = crate::ops::server::Hook::start().await;
    let config = format!(
        r#"source:
  simulator: {{ trackers: 4, seed: 7, speed: 60 }}
rules: [rules/*.yaml]
engine: {{ eval_interval: 10s, workers: 2 }}
channels:
  hook: {{ type: webhook, url: "{}" }}
routes:
  - channels: [hook]
storage: {{ path: ":memory:" }}
server: {{ listen: "127.0.0.1:0", recordings: recordings }}
"#,
        hook.url
    );
    let daemon = crate::ops::server::Daemon::start_with(
        &config,
        &[("watch.yaml", always("watched", "info"))],
        hook,
    )
    .await;
    let folder = daemon.dir.path().join("recordings");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("fleet.jsonl"), recording()).unwrap();
    std::fs::write(folder.join("notes.txt"), "not a recording").unwrap();

    // The page offers the recordings, and only them.
    let html = page(&daemon).await;
    assert!(
        html.contains(r#"<option value="fleet.jsonl">fleet.jsonl</option>"#),
        "{html}"
    );
    assert!(!html.contains("notes.txt"), "{html}");

    let ask = |condition: &str, hold_for: &str, recording: &str| {
        serde_json::json!({ "condition": condition, "for": hold_for, "recording": recording })
            .to_string()
    };
    let (status, run) = daemon
        .post(
            "/rules/playground/recording",
            &ask("state.gps.speed > 80", "", "fleet.jsonl"),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["recording"], "fleet.jsonl");
    assert_eq!(run["lines"], 7);
    assert_eq!(run["stopped"], Value::Null);
    assert_eq!(run["trackers"], 1, "{run}");
    assert_eq!(run["firings"], 1, "{run}");
    assert_eq!(run["resolves"], 1, "{run}");
    assert_eq!(
        run["first"],
        serde_json::json!([{ "tracker_id": 7, "at": "2026-01-05T08:00:10Z" }])
    );
    assert_eq!(run["labels"]["7"], "#7");
    let (_, run) = daemon
        .post(
            "/rules/playground/recording",
            &ask("state.gps.speed > 80", "25s", "fleet.jsonl"),
        )
        .await;
    assert_eq!(
        run["first"],
        serde_json::json!([{ "tracker_id": 7, "at": "2026-01-05T08:00:40Z" }])
    );

    // Nothing but a listed name is opened.
    for name in [
        "../config.yaml",
        "/etc/passwd",
        "notes.txt",
        "recordings/fleet.jsonl",
    ] {
        let (status, answer) = daemon
            .post("/rules/playground/recording", &ask("true", "", name))
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["error"],
            format!("`{name}` is not one of the recordings in server.recordings")
        );
    }
    daemon.stop().await;
}
