//! The daemon with Navixy's context end to end: the in-process simulator's geofences,
//! groups and drivers reach a rule's `in_zone`, its template and its labels, and a route
//! on `group` sends the north depot's alerts to the north's webhook.

use std::sync::Mutex;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use navixy_alerts::daemon::reload::Trigger;
use navixy_alerts::daemon::{self, RunOptions};
use navixy_alerts::rules::RuleSet;
use serde_json::Value;

use super::*;

/// A webhook receiver on loopback: every body it was sent.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route(
            "/north",
            post(
                |State(got): State<Arc<Mutex<Vec<Value>>>>, Json(body): Json<Value>| async move {
                    got.lock().unwrap().push(body);
                    "ok"
                },
            ),
        )
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/north", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn navixy_zones_and_groups_route_the_north_depots_alerts() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (url, got) = receiver().await;
        // Vehicles 1 and 7 start at the depot in Dispatch North; 3 (East) and 5 (the
        // default group) start there too.
        std::fs::write(
            dir.path().join("rules.yaml"),
            r#"rules:
  - name: at_depot
    when: in_zone("Depot")
    annotations:
      summary: "{{ tracker.label }} ({{ tracker.group }}) at the depot"
"#,
        )
        .unwrap();
        let yaml = format!(
            r#"source:
  simulator: {{ trackers: 8, seed: 42, speed: 1 }}
rules: [rules.yaml]
zones:
  navixy: {{ refresh: 10s }}
channels:
  north: {{ type: webhook, url: "{url}" }}
routes:
  - match: {{ group: Dispatch North }}
    channels: [north]
notify: {{ group_wait: 0s, group_by: [tracker_id] }}
storage: {{ path: ":memory:" }}
"#
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

        let alerts = loop {
            let alerts: Vec<Value> = got
                .lock()
                .unwrap()
                .iter()
                .flat_map(|body| {
                    body["data"]["alerts"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                })
                .collect();
            if alerts.len() >= 2 {
                break alerts;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut seen: Vec<(i64, String, String)> = alerts
            .iter()
            .map(|a| {
                (
                    a["tracker"]["id"].as_i64().unwrap(),
                    a["labels"]["group"].as_str().unwrap_or("").to_string(),
                    a["annotations"]["summary"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen[..2],
            [
                (
                    21_001,
                    "Dispatch North".to_string(),
                    "Truck 1 (Dispatch North) at the depot".to_string()
                ),
                (
                    21_007,
                    "Dispatch North".to_string(),
                    "Reefer 7 (Dispatch North) at the depot".to_string()
                ),
            ]
        );
        let first = alerts
            .iter()
            .find(|a| a["tracker"]["id"] == 21_001)
            .unwrap();
        assert_eq!(first["labels"]["driver"], "Ida Richter");

        // A reload's rule set reads the same context: Navixy's zones stay known.
        running
            .reloader
            .reload(Trigger::Api)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let context = running.reloader.rules().navixy_context();
        assert!(context.is_loaded());
        assert!(context.load().zones.get("Depot").is_some());
        let _ = stop.send(());
        task.await.unwrap().unwrap();
    })
    .await;
}
