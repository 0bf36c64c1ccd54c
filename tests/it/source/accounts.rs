//! Two Navixy accounts in one daemon (`sources:`), end to end: two simulators with their
//! own logins, fleets whose tracker ids overlap, and their own groups; a loopback webhook
//! per route. Each alert carries its source, tracker 21004 of each account is its own
//! alert, a route on `source: south` gets only south's, and an account whose WebSocket
//! goes away raises its own `navixy_source_down` only.

use std::collections::BTreeSet;
use std::sync::Mutex;

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::routing::post;
use navixy_alerts::alert::Fingerprint;
use navixy_alerts::daemon::{self, RunOptions};
use navixy_alerts::rules::RuleSet;
use navixy_alerts::store::{HistoryKind, HistoryQuery, Store};
use serde_json::Value;

use super::*;

type Bodies = Arc<Mutex<Vec<(String, Value)>>>;

/// A webhook receiver on loopback: every body it was sent, with the path's last part.
async fn receiver() -> (String, Bodies) {
    let got: Bodies = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route(
            "/hook/{name}",
            post(
                |State(got): State<Bodies>,
                 UrlPath(name): UrlPath<String>,
                 Json(body): Json<Value>| async move {
                    got.lock().unwrap().push((name, body));
                    "ok"
                },
            ),
        )
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, got)
}

/// The alerts the hook `name` received so far.
fn alerts(got: &Bodies, name: &str) -> Vec<Value> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|(n, _)| n == name)
        .flat_map(|(_, body)| {
            body["data"]["alerts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

/// Waits (polling) until `check` holds on the hook's alerts; returns them.
async fn until(got: &Bodies, name: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    loop {
        let seen = alerts(got, name);
        if check(&seen) {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (source label, tracker id) of each tracker alert.
fn trackers(alerts: &[Value]) -> BTreeSet<(String, i64)> {
    alerts
        .iter()
        .filter(|a| a["rule"] == "seen")
        .map(|a| {
            (
                a["labels"]["source"].as_str().unwrap_or("").to_string(),
                a["tracker"]["id"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

fn account(seed: u64, login: &str, first_tracker: i64) -> SimulatorOptions {
    SimulatorOptions {
        trackers: 6,
        seed,
        speed: 1.0,
        login: login.into(),
        password: format!("{login}-pass"),
        first_tracker,
        ..SimulatorOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_alert_apart_route_by_source_and_go_down_alone() {
    bounded(async {
        let north = simulator(account(42, "north", 21_001)).await;
        // South's ids 21004..21009 overlap north's 21001..21006 at 21004..21006; its
        // group 1 has a title of its own.
        let south = simulator(account(7, "south", 21_004)).await;
        south.update_context(|c| c.groups = vec![(1, "South Yard", "111111")]);
        let dir = tempfile::tempdir().unwrap();
        let (url, got) = receiver().await;
        std::fs::write(
            dir.path().join("rules.yaml"),
            r#"rules:
  - name: seen
    when: "true"
    annotations:
      summary: "{{ tracker.label }} of {{ tracker.source }}"
  - name: waiting
    when: "true"
    for: 24h
"#,
        )
        .unwrap();
        let source = |name: &str, sim: &SimulatorHandle| {
            format!(
                "  - name: {name}\n    navixy: {{ api_url: \"{}\", login: {name}, password: {name}-pass, max_backoff: 200ms, source_down_after: 1s }}\n",
                sim.api_url()
            )
        };
        let yaml = format!(
            r#"sources:
{}{}rules: [rules.yaml]
channels:
  south: {{ type: webhook, url: "{url}/south" }}
  all: {{ type: webhook, url: "{url}/all" }}
routes:
  - match: {{ source: south }}
    channels: [south]
    continue: true
  - channels: [all]
notify: {{ group_wait: 0s, group_by: [source, tracker_id] }}
storage: {{ path: ":memory:" }}
server: {{ listen: "127.0.0.1:0" }}
"#,
            source("north", &north),
            source("south", &south)
        );
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, &yaml).unwrap();
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let rules = RuleSet::load(&config).unwrap_or_else(|e| panic!("{e:?}"));
        let (stop, stopped) = oneshot::channel::<()>();
        let (started_tx, started) = oneshot::channel();
        let task = tokio::spawn(daemon::run(
            config,
            rules,
            RunOptions::default(),
            async move {
                let _ = stopped.await;
            },
            Some(started_tx),
        ));
        let running = started.await.expect("the daemon starts");

        // Every tracker of both accounts fires once, labelled with its source.
        let all = until(&got, "all", |a| trackers(a).len() >= 12).await;
        let expected: BTreeSet<(String, i64)> = (21_001..=21_006)
            .map(|id| ("north".to_string(), id))
            .chain((21_004..=21_009).map(|id| ("south".to_string(), id)))
            .collect();
        assert_eq!(trackers(&all), expected);
        // Tracker 21004 of each account: two alerts, two fingerprints, each account's
        // own context (its group's title) and template.
        let both: Vec<&Value> = all
            .iter()
            .filter(|a| a["rule"] == "seen" && a["tracker"]["id"] == 21_004)
            .collect();
        let fingerprints: BTreeSet<&str> = both
            .iter()
            .map(|a| a["fingerprint"].as_str().unwrap())
            .collect();
        assert_eq!(fingerprints.len(), 2, "{both:?}");
        let of = |source: &str| {
            both.iter()
                .find(|a| a["labels"]["source"] == source)
                .unwrap_or_else(|| panic!("no 21004 of {source}: {both:?}"))
        };
        assert_eq!(of("north")["labels"]["group"], "Dispatch North");
        assert_eq!(of("south")["labels"]["group"], "South Yard");
        assert_eq!(
            of("south")["annotations"]["summary"],
            format!(
                "{} of south",
                south
                    .trackers()
                    .iter()
                    .find(|t| t.id == 21_004)
                    .and_then(|t| t.label.clone())
                    .unwrap()
            )
        );
        // A named source's fingerprints are its own; only `navixy` (the shorthand's
        // name) keeps those of single-account versions.
        assert_eq!(
            of("south")["fingerprint"],
            Fingerprint::of_source("seen", "south", Some(21_004), None).0
        );
        assert_ne!(
            of("north")["fingerprint"],
            Fingerprint::new("seen", Some(21_004), None).0
        );

        // The API finds each account's 21004 by its source; the first source's without one.
        let addr = running.admin_addr.expect("the admin API listens");
        let get = |path: String| async move {
            let response = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        };
        for (query, source) in [("", "north"), ("?source=north", "north"), ("?source=south", "south")] {
            let (status, body) = get(format!("/api/v1/trackers/21004{query}")).await;
            assert_eq!(status, 200, "{query}: {body}");
            assert_eq!(body["tracker"]["id"], 21_004);
            assert_eq!(body["tracker"]["source"], source);
        }
        let (status, _) = get("/api/v1/trackers/21009".into()).await;
        assert_eq!(status, 404, "21009 is south's only");
        let (status, body) = get("/api/v1/trackers/21004?source=east".into()).await;
        assert_eq!(status, 404);
        assert!(body.to_string().contains("no source is named `east`"), "{body}");
        // The console keeps them apart too: each 21004 has its own page, which names its
        // account, and each alert's page links to its own account's tracker.
        let page = |path: String| async move {
            let response = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        };
        let south_key = (1_i64 << 48) | 21_004;
        let (status, list) = page("/trackers?q=21004".into()).await;
        assert_eq!(status, 200, "{list}");
        assert!(list.contains(r#"href="/trackers/21004""#), "{list}");
        assert!(list.contains(&format!(r#"href="/trackers/{south_key}""#)), "{list}");
        for (key, source) in [(21_004, "north"), (south_key, "south")] {
            let (status, html) = page(format!("/trackers/{key}")).await;
            assert_eq!(status, 200, "{html}");
            assert!(html.contains(&format!("#21004 · {source}")), "{html}");
            let fingerprint = of(source)["fingerprint"].as_str().unwrap().to_owned();
            let (status, html) = page(format!("/alerts/{fingerprint}")).await;
            assert_eq!(status, 200, "{html}");
            assert!(html.contains(&format!(r#"href="/trackers/{key}""#)), "{html}");
        }
        // A pending alert is listed with Navixy's id; its row names its own account
        // (the Silence button's matchers), found from the fingerprint.
        let (status, html) = page("/".into()).await;
        assert_eq!(status, 200, "{html}");
        for source in ["north", "south"] {
            let silence = format!("rule=waiting&amp;tracker_id=21004&amp;source={source}");
            assert!(html.contains(&silence), "{silence} in {html}");
        }
        // The API's pending alerts carry their account's label: a matcher on it finds
        // south's six and no other.
        let (status, body) = get("/api/v1/alerts?state=pending&matchers=source%3Dsouth".into()).await;
        assert_eq!(status, 200, "{body}");
        let listed: BTreeSet<(String, i64)> = body
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|a| {
                assert_eq!(a["status"], "pending", "{a}");
                assert_eq!(a["labels"]["source"], "south", "{a}");
                (a["rule"].as_str().unwrap().to_owned(), a["tracker_id"].as_i64().unwrap())
            })
            .collect();
        let south_ids: BTreeSet<(String, i64)> =
            (21_004..=21_009).map(|id| ("waiting".to_owned(), id)).collect();
        assert_eq!(listed, south_ids);
        // /readyz answers for both: ready while both are.
        let (status, body) = get("/readyz".into()).await;
        assert_eq!((status, &body["ready"]), (200, &Value::Bool(true)), "{body}");

        // The route on `source: south` got south's alerts and no other.
        let south_hook = until(&got, "south", |a| trackers(a).len() >= 6).await;
        assert!(
            south_hook.iter().all(|a| a["labels"]["source"] == "south"),
            "{south_hook:?}"
        );
        assert_eq!(trackers(&south_hook).len(), 6);

        // South's WebSocket goes away (and it may not subscribe again): south's
        // navixy_source_down fires, north's does not, and readiness says who is down.
        assert!(running.health.is_connected());
        south.refuse_subscriptions(Some(4));
        south.drop_connections();
        let down = until(&got, "south", |a| {
            a.iter().any(|a| a["rule"] == "navixy_source_down")
        })
        .await;
        let down: Vec<&Value> = down
            .iter()
            .filter(|a| a["rule"] == "navixy_source_down")
            .collect();
        assert_eq!(down.len(), 1, "{down:?}");
        assert_eq!(down[0]["labels"]["source"], "south");
        assert_eq!(down[0]["status"], "firing");
        assert_eq!(
            down[0]["fingerprint"],
            Fingerprint::of_source("navixy_source_down", "south", None, None).0
        );
        assert!(!running.health.is_connected());
        let (status, body) = get("/readyz".into()).await;
        assert_eq!(status, 503, "{body}");
        let why = body["source"]["error"].as_str().unwrap_or_default();
        assert!(why.contains("source south: "), "{body}");
        let health = running.health.snapshot();
        assert!(health.sources["north"].connected);
        assert!(!health.sources["south"].connected);
        assert!(
            running
                .health
                .last_error()
                .is_some_and(|e| e.starts_with("source south: ")),
            "{:?}",
            running.health.last_error()
        );
        // North stays up: no engine alert of its own reached any hook.
        assert!(
            alerts(&got, "all")
                .iter()
                .filter(|a| a["rule"] == "navixy_source_down")
                .all(|a| a["labels"]["source"] == "south"),
        );

        let _ = stop.send(());
        task.await.unwrap().unwrap();
        north.shutdown().await;
        south.shutdown().await;
    })
    .await;
}

/// Runs the daemon on `yaml` (with `rules` as its rule file) until `done` holds on the
/// webhook's alerts; then stops it.
async fn run_until(
    dir: &std::path::Path,
    yaml: &str,
    rules: &str,
    got: &Bodies,
    done: impl Fn(&[Value]) -> bool,
) {
    std::fs::write(dir.join("rules.yaml"), rules).unwrap();
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let rules = RuleSet::load(&config).unwrap_or_else(|e| panic!("{e:?}"));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(daemon::run(
        config,
        rules,
        RunOptions::default(),
        async move {
            let _ = stopped.await;
        },
        None,
    ));
    until(got, "all", done).await;
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// `seen` fires for every tracker; `marker` too, after it, in the same evaluation: once
/// every tracker's marker arrived, a re-fired `seen` would have been committed before it.
fn rules_with_marker(marker: &str) -> String {
    format!("rules:\n  - name: seen\n    when: \"true\"\n  - name: {marker}\n    when: \"true\"\n")
}

/// How many trackers' alerts of `rule` the hook got.
fn count(alerts: &[Value], rule: &str) -> usize {
    alerts
        .iter()
        .filter(|a| a["rule"] == rule)
        .map(|a| a["fingerprint"].as_str().unwrap_or("").to_string())
        .collect::<BTreeSet<_>>()
        .len()
}

/// A database written with one account (`source:`) carries on under `sources:` with that
/// account named `navixy` beside a second one: its firing alerts keep their fingerprints
/// and fire no second time; and across a restart with two accounts, each account's
/// alerts resume on its own trackers (21004 of south is not 21004 of north).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_to_two_accounts_and_their_restarts_refire_nothing() {
    bounded(async {
        let north = simulator(account(42, "north", 21_001)).await;
        let south = simulator(account(7, "south", 21_004)).await;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("alerts.db");
        let (url, got) = receiver().await;
        let navixy = |name: &str, sim: &SimulatorHandle| {
            format!(
                "navixy: {{ api_url: \"{}\", login: {name}, password: {name}-pass, max_backoff: 200ms }}",
                sim.api_url()
            )
        };
        let rest = format!(
            "rules: [rules.yaml]\nchannels:\n  all: {{ type: webhook, url: \"{url}/all\" }}\nroutes:\n  - channels: [all]\nnotify: {{ group_wait: 0s, group_by: [rule, source, tracker_id] }}\nstorage: {{ path: \"{}\" }}\nserver: {{ listen: \"\" }}\n",
            db.display()
        );
        let one = format!("source:\n  {}\n{rest}", navixy("north", &north));
        let two = format!(
            "sources:\n  - name: navixy\n    {}\n  - name: south\n    {}\n{rest}",
            navixy("north", &north),
            navixy("south", &south)
        );

        // One account, as before `sources:` existed.
        run_until(dir.path(), &one, &rules_with_marker("mark_1"), &got, |a| {
            count(a, "mark_1") == 6 && count(a, "seen") == 6
        })
        .await;
        // Two accounts on the same database, then again.
        run_until(dir.path(), &two, &rules_with_marker("mark_2"), &got, |a| {
            count(a, "mark_2") == 12
        })
        .await;
        run_until(dir.path(), &two, &rules_with_marker("mark_3"), &got, |a| {
            count(a, "mark_3") == 12
        })
        .await;

        let seen = alerts(&got, "all");
        let seen: Vec<&Value> = seen.iter().filter(|a| a["rule"] == "seen").collect();
        assert!(seen.iter().all(|a| a["status"] == "firing"), "{seen:?}");
        assert_eq!(trackers(&alerts(&got, "all")).len(), 12);
        // North's alerts kept the fingerprints of the single-account run.
        for a in seen.iter().filter(|a| a["labels"]["source"] == "navixy") {
            let id = a["tracker"]["id"].as_i64().unwrap();
            assert_eq!(a["fingerprint"], Fingerprint::new("seen", Some(id), None).0);
        }
        // Each `seen` alert fired once in all three runs, and none resolved.
        let store = Store::open_path(&db).unwrap();
        let history = store
            .history(HistoryQuery {
                rule: Some("seen".into()),
                limit: 10_000,
                ..HistoryQuery::default()
            })
            .await
            .unwrap();
        let mut firings: std::collections::BTreeMap<String, usize> = Default::default();
        for entry in &history.entries {
            assert_ne!(entry.kind, HistoryKind::Resolved, "{entry:?}");
            if entry.kind == HistoryKind::Firing {
                *firings.entry(entry.fingerprint.clone()).or_default() += 1;
            }
        }
        assert_eq!(firings.len(), 12, "{firings:?}");
        assert!(firings.values().all(|n| *n == 1), "{firings:?}");
        north.shutdown().await;
        south.shutdown().await;
    })
    .await;
}

/// The demo's way: two in-process simulators as two `simulator:` sources, on the first
/// one's clock; 21002 is in both fleets and fires once per account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_simulator_sources_serve_the_demo() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (url, got) = receiver().await;
        let yaml = format!(
            r#"sources:
  - name: north
    simulator: {{ trackers: 2, seed: 42, speed: 60 }}
  - name: south
    simulator: {{ trackers: 2, seed: 7, speed: 60, first_tracker: 21002 }}
rules: [rules.yaml]
channels:
  all: {{ type: webhook, url: "{url}/all" }}
routes:
  - channels: [all]
notify: {{ group_wait: 0s, group_by: [source, tracker_id] }}
storage: {{ path: ":memory:" }}
server: {{ listen: "" }}
"#
        );
        run_until(
            dir.path(),
            &yaml,
            "rules:\n  - name: seen\n    when: \"true\"\n",
            &got,
            |a| trackers(a).len() >= 4,
        )
        .await;
        let expected: BTreeSet<(String, i64)> = [
            ("north", 21_001),
            ("north", 21_002),
            ("south", 21_002),
            ("south", 21_003),
        ]
        .into_iter()
        .map(|(s, id)| (s.to_string(), id))
        .collect();
        assert_eq!(trackers(&alerts(&got, "all")), expected);
    })
    .await;
}
