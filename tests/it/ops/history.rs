//! The alert history and the live event stream against a real daemon: the simulator, a
//! loopback webhook receiver, `GET /api/v1/history`, `GET /api/v1/alerts/{fp}/history`,
//! `GET /api/v1/alerts?state=pending` and `GET /api/v1/events`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde_json::{Value, json};

use navixy_alerts::clock::ManualClock;
use navixy_alerts::daemon::RunOptions;
use navixy_alerts::store::{FeedEvent, HistoryEntry, HistoryKind};

use super::server::{
    Daemon, Hook, LIMIT, TRACKERS, always, config_listing, config_text, eventually,
};

/// A webhook receiver that keeps the `webhook-id` (the notification id) of each request.
async fn id_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let ids: Arc<Mutex<Vec<String>>> = Arc::default();
    async fn receive(
        State(ids): State<Arc<Mutex<Vec<String>>>>,
        headers: HeaderMap,
    ) -> &'static str {
        if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
            ids.lock().push(id.to_owned());
        }
        "ok"
    }
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(ids.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, ids)
}

fn kinds(page: &Value) -> Vec<&str> {
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alerts_history_goes_firing_queued_sent_with_the_id_the_receiver_saw() {
    let (url, ids) = id_receiver().await;
    let daemon = Daemon::start_with(
        &config_text(&url, ":memory:"),
        &[("always.yaml", always("history_rule"))],
        Hook::default(),
    )
    .await;
    let alerts = daemon.firing_for_all("history_rule").await;
    let fp = alerts[0]["fingerprint"].as_str().unwrap().to_owned();
    let tracker_id = alerts[0]["tracker_id"].as_i64().unwrap();
    assert_eq!(alerts[0]["tracker"]["id"], tracker_id, "{}", alerts[0]);
    assert_eq!(alerts[0]["ack"], Value::Null);

    let page = eventually("the alert's notification sent", || async {
        let (status, page) = daemon.get(&format!("/api/v1/alerts/{fp}/history")).await;
        assert_eq!(status, 200, "{page}");
        (kinds(&page).first() == Some(&"sent")).then_some(page)
    })
    .await;
    assert_eq!(kinds(&page), ["sent", "queued", "firing"], "{page}");
    assert_eq!(page["next_cursor"], Value::Null);
    let entries = page["entries"].as_array().unwrap();
    let (sent, queued, firing) = (&entries[0], &entries[1], &entries[2]);
    let id = sent["notification_id"].as_str().unwrap();
    assert!(id.starts_with("msg_"), "{sent}");
    assert_eq!(queued["notification_id"], id);
    assert!(
        ids.lock().iter().any(|seen| seen == id),
        "the receiver saw {:?}, not {id}",
        ids.lock()
    );
    for e in entries {
        assert_eq!(e["fingerprint"], fp.as_str());
        assert_eq!(e["rule"], "history_rule");
        assert_eq!(e["tracker_id"], tracker_id);
        assert_eq!(e["by"], Value::Null);
        assert_eq!(e["comment"], Value::Null);
    }
    assert_eq!(sent["channel"], "hook");
    assert_eq!(queued["channel"], "hook");
    assert_eq!(firing["channel"], Value::Null);
    assert_eq!(firing["notification_id"], Value::Null);

    // The whole history pages by rule and tracker, newest first, with a cursor.
    let (status, first) = daemon
        .get(&format!(
            "/api/v1/history?rule=history_rule&tracker_id={tracker_id}&limit=2"
        ))
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(kinds(&first), ["sent", "queued"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = daemon
        .get(&format!(
            "/api/v1/history?rule=history_rule&tracker_id={tracker_id}&limit=2&cursor={cursor}"
        ))
        .await;
    assert_eq!(kinds(&second), ["firing"]);
    assert_eq!(second["next_cursor"], Value::Null);

    // Bad parameters are refused by name.
    for (query, says) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("since=yesterday", "since"),
        ("tracker_id=x", "tracker_id"),
        ("cursor=nope", "cursor"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = daemon.get(&format!("/api/v1/history?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{query}: {body}"
        );
    }
    let (status, body) = daemon.get("/api/v1/alerts?state=sleeping").await;
    assert_eq!(status, 400, "{body}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silenced_alert_shows_silenced_and_filters_select_alerts() {
    let daemon = Daemon::start_listed(&[("first.yaml", always("loud_rule"))]).await;
    daemon.firing_for_all("loud_rule").await;
    let (status, body) = daemon
        .post(
            "/api/v1/silences",
            r#"{"matchers": [{"name": "rule", "value": "quiet_rule"}], "ends_at": "2099-01-01T00:00:00Z", "created_by": "test", "comment": "maintenance"}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let silence = body["id"].as_str().unwrap().to_owned();

    add_rules(&daemon, "second.yaml", &always("quiet_rule")).await;

    let page = eventually("silenced entries for every tracker", || async {
        let (_, page) = daemon.get("/api/v1/history?rule=quiet_rule").await;
        let silenced = kinds(&page).iter().filter(|k| **k == "silenced").count();
        (silenced == TRACKERS).then_some(page)
    })
    .await;
    for e in page["entries"].as_array().unwrap() {
        assert!(
            ["firing", "silenced"].contains(&e["kind"].as_str().unwrap()),
            "{e}"
        );
        if e["kind"] == "silenced" {
            assert_eq!(e["detail"], silence.as_str());
            assert_eq!(e["channel"], "hook");
        }
    }

    // The filters of the alert list.
    let (_, quiet) = daemon.get("/api/v1/alerts?rule=quiet_rule").await;
    assert_eq!(quiet.as_array().unwrap().len(), TRACKERS, "{quiet}");
    let (_, matched) = daemon
        .get("/api/v1/alerts?matchers=%7Brule%3D~%22quiet_.%2A%22%7D")
        .await;
    assert_eq!(matched, quiet);
    let one = quiet[0]["tracker_id"].as_i64().unwrap();
    let (_, mine) = daemon
        .get(&format!("/api/v1/alerts?state=all&tracker_id={one}"))
        .await;
    assert_eq!(mine.as_array().unwrap().len(), 2, "{mine}");
    let (status, body) = daemon.get("/api/v1/alerts?matchers=rule~~x").await;
    assert_eq!(status, 400, "{body}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_alerts_are_listed_by_state_pending() {
    let waiting = "rules:\n  - name: waiting_rule\n    when: \"now > 0\"\n    for: 1h\n    severity: warning\n";
    let daemon = Daemon::start_listed(&[
        ("first.yaml", always("steady_rule")),
        ("waiting.yaml", waiting.to_owned()),
    ])
    .await;
    daemon.firing_for_all("steady_rule").await;
    let pending = eventually("every tracker pending", || async {
        let (status, alerts) = daemon.get("/api/v1/alerts?state=pending").await;
        assert_eq!(status, 200, "{alerts}");
        let alerts = alerts.as_array().unwrap().clone();
        (alerts.len() == TRACKERS).then_some(alerts)
    })
    .await;
    for a in &pending {
        assert_eq!(a["status"], "pending", "{a}");
        assert_eq!(a["rule"], "waiting_rule");
        assert!(a["tracker_id"].as_i64().is_some());
        assert_eq!(a["ack"], Value::Null);
    }
    let (_, firing) = daemon.get("/api/v1/alerts?rule=waiting_rule").await;
    assert_eq!(firing, serde_json::json!([]));
    let (_, all) = daemon.get("/api/v1/alerts?state=all").await;
    assert_eq!(all.as_array().unwrap().len(), 2 * TRACKERS, "{all}");
    daemon.stop().await;
}

/// Reads an SSE response until `done` holds for the text so far (or the stream ends).
async fn read_until(response: &mut reqwest::Response, done: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    let read = async {
        while let Some(chunk) = response.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if done(&text) {
                break;
            }
        }
    };
    tokio::time::timeout(LIMIT, read)
        .await
        .expect("the stream went quiet");
    text
}

/// The `(event, data)` of each whole SSE event in `text`.
fn sse_events(text: &str) -> Vec<(&str, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let name = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            serde_json::from_str(data).ok().map(|v| (name, v))
        })
        .collect()
}

/// Opens `GET /api/v1/events`.
async fn open_stream(daemon: &Daemon) -> reqwest::Response {
    let stream = daemon
        .request(reqwest::Method::GET, "/api/v1/events")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    stream
}

/// Adds a second rule file beside `first.yaml` and reloads.
async fn add_rules(daemon: &Daemon, file: &str, text: &str) {
    std::fs::write(daemon.rules_dir().join(file), text).unwrap();
    daemon.list_rules(&["first.yaml", file]);
    let (status, body) = daemon.post("/api/v1/reload", "").await;
    assert_eq!(status, 200, "{body}");
}

/// A rule with `for: 30s` on a clock the test moves: the alert's history is one
/// `pending` entry when its wait began and one `firing` when it was over, newest first,
/// and the event stream carries both transitions, the pending one as the firing will
/// read but for its status and times. Nothing is notified for the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_is_one_pending_entry_then_one_firing_and_both_are_streamed() {
    // Whole seconds, as close to the simulator's frames as its clock.
    let t0 = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let clock = ManualClock::new(t0);
    let hook = Hook::start().await;
    let text = config_listing(&hook.url, ":memory:", "rules/first.yaml");
    let daemon = Daemon::start_with_options(
        &text,
        &[("first.yaml", always("steady_rule"))],
        hook,
        RunOptions {
            clock: Some(clock.clone()),
            ..RunOptions::default()
        },
    )
    .await;
    daemon.firing_for_all("steady_rule").await;
    let mut stream = open_stream(&daemon).await;

    // The waiting rule comes in after the stream is open, so it sees every wait begin.
    let waiting = "rules:\n  - name: waiting_rule\n    when: \"now > 0\"\n    for: 30s\n    severity: critical\n    value: 6 * 7\n    labels: { team: road }\n";
    add_rules(&daemon, "waiting.yaml", waiting).await;
    let pending = eventually("every tracker waiting", || async {
        let (_, alerts) = daemon.get("/api/v1/alerts?state=pending").await;
        let alerts = alerts.as_array().unwrap().clone();
        (alerts.len() == TRACKERS).then_some(alerts)
    })
    .await;
    let fp = pending[0]["fingerprint"].as_str().unwrap().to_owned();
    let tracker_id = pending[0]["tracker_id"].as_i64().unwrap();
    assert_eq!(pending[0]["starts_at"], json!(t0), "{}", pending[0]);
    let entry = |kind: &str, at: DateTime<Utc>| {
        json!({
            "at": at, "fingerprint": fp, "rule": "waiting_rule", "tracker_id": tracker_id,
            "kind": kind, "channel": null, "notification_id": null, "by": null,
            "comment": null, "value": 42, "detail": null
        })
    };
    let history = |fp: String| {
        let daemon = &daemon;
        async move {
            let (status, page) = daemon.get(&format!("/api/v1/alerts/{fp}/history")).await;
            assert_eq!(status, 200, "{page}");
            page
        }
    };
    let page = eventually("the pending entry", || async {
        let page = history(fp.clone()).await;
        (!kinds(&page).is_empty()).then_some(page)
    })
    .await;
    assert_eq!(page["entries"], json!([entry("pending", t0)]), "{page}");

    assert!(
        daemon
            .hook
            .alerts()
            .iter()
            .all(|(_, rule, _)| rule != "waiting_rule"),
        "a wait is not notified"
    );

    // The wait is over on the next evaluation after the clock passed it.
    let fired = t0 + chrono::Duration::seconds(30);
    clock.set(fired);
    let page = eventually("the firing sent", || async {
        let page = history(fp.clone()).await;
        (kinds(&page).first() == Some(&"sent")).then_some(page)
    })
    .await;
    assert_eq!(
        kinds(&page),
        ["sent", "queued", "firing", "pending"],
        "{page}"
    );
    assert_eq!(page["entries"][2], entry("firing", fired));
    assert_eq!(page["entries"][3], entry("pending", t0));
    let told = daemon.hook.alerts();
    assert!(
        told.iter().all(|(status, _, _)| status == "firing"),
        "only firings are notified: {told:?}"
    );

    let text = read_until(&mut stream, |t| {
        sse_events(t).iter().any(|(name, e)| {
            *name == "history" && e["fingerprint"] == fp.as_str() && e["kind"] == "sent"
        })
    })
    .await;
    let events = sse_events(&text);
    let mine: Vec<(&str, &Value)> = events
        .iter()
        .filter(|(_, e)| e["fingerprint"] == fp.as_str())
        .map(|(name, e)| (*name, e))
        .collect();
    let names: Vec<(&str, &str)> = mine
        .iter()
        .map(|(name, e)| (*name, e["status"].as_str().or(e["kind"].as_str()).unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("transition", "pending"),
            ("history", "pending"),
            ("transition", "firing"),
            ("history", "firing"),
            ("history", "queued"),
            ("history", "sent")
        ],
        "{text}"
    );
    assert_eq!(*mine[1].1, entry("pending", t0));
    let (waited, fired_event) = (mine[0].1, mine[2].1);
    assert_eq!(fired_event["labels"]["team"], "road", "{fired_event}");
    assert_eq!(fired_event["value"], 42);
    let mut expected = fired_event.clone();
    expected["status"] = json!("pending");
    expected["at"] = json!(t0);
    expected["starts_at"] = json!(t0);
    assert_eq!(*waited, expected);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_carries_transitions_and_history() {
    let daemon = Daemon::start_listed(&[("first.yaml", always("before_rule"))]).await;
    daemon.firing_for_all("before_rule").await;
    let mut stream = open_stream(&daemon).await;
    assert_eq!(
        stream.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    add_rules(&daemon, "second.yaml", &always("streamed_rule")).await;

    // Until every notification of the new rule queued so far has been sent (several
    // trackers fire). Only its own entries count: a late `sent` of the rule before it
    // may come first on the stream.
    let text = read_until(&mut stream, |t| {
        let kinds = |kind: &str| {
            sse_events(t)
                .iter()
                .filter(|(name, e)| {
                    *name == "history" && e["rule"] == "streamed_rule" && e["kind"] == kind
                })
                .count()
        };
        let sent = kinds("sent");
        sent > 0 && sent >= kinds("queued")
    })
    .await;
    let events = sse_events(&text);
    let transition = events
        .iter()
        .find(|(name, e)| *name == "transition" && e["rule"] == "streamed_rule")
        .unwrap_or_else(|| panic!("no transition in {text}"));
    assert_eq!(transition.1["status"], "firing");
    assert_eq!(transition.1["severity"], "warning");
    assert!(transition.1["tracker_id"].as_i64().is_some());
    let history: Vec<&str> = events
        .iter()
        .filter(|(name, e)| *name == "history" && e["fingerprint"] == transition.1["fingerprint"])
        .map(|(_, e)| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["firing", "queued", "sent"], "{text}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_falls_behind_is_dropped_and_the_engine_goes_on() {
    let daemon = Daemon::start_listed(&[("first.yaml", always("busy_rule"))]).await;
    daemon.firing_for_all("busy_rule").await;
    let mut slow = open_stream(&daemon).await;

    // Far more than the feed holds, while the client reads nothing: publishing never
    // waits for it.
    let feed = daemon.running.store.feed().clone();
    let entry = HistoryEntry {
        at: chrono::Utc::now(),
        fingerprint: "0000000000000000".into(),
        rule: "busy_rule".into(),
        tracker_id: Some(1),
        kind: HistoryKind::Sent,
        channel: Some("hook".into()),
        notification_id: Some("msg_padding".into()),
        by: None,
        comment: None,
        value: None,
        detail: Some("x".repeat(4000)),
    };
    for _ in 0..5 * navixy_alerts::store::history::FEED_BUFFER {
        feed.publish(FeedEvent::History(entry.clone()));
    }

    // The engine goes on: a new rule still fires and is recorded.
    add_rules(&daemon, "second.yaml", &always("later_rule")).await;
    eventually("later_rule in the history", || async {
        let (_, page) = daemon.get("/api/v1/history?rule=later_rule").await;
        (!page["entries"].as_array().unwrap().is_empty()).then_some(())
    })
    .await;

    // The slow client gets what was already on its way, then its stream ends.
    let text = read_until(&mut slow, |_| false).await;
    let got = text.matches("event: history").count();
    assert!(
        got < 5 * navixy_alerts::store::history::FEED_BUFFER,
        "the slow client got all {got} events"
    );
    daemon.stop().await;
}
