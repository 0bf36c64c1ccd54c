//! Navixy's context (zones, groups, tags, drivers): the real REST client fetches it from
//! the simulator, and from a server that answers the odd things Navixy may send.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::routing::post;
use navixy_alerts::config::Secret;
use navixy_alerts::navixy::context::{Driver, NavixyContext, Skipped, fetch_all};
use navixy_alerts::navixy::rest::RestClient;
use navixy_alerts::navixy::simulator::DEPOT;
use serde_json::json;

use super::*;

fn labels(context: &NavixyContext) -> Vec<&str> {
    context.zones.iter().map(|z| z.label.as_str()).collect()
}

#[tokio::test]
async fn the_whole_context_from_the_simulator_and_its_zone_index() {
    bounded(async {
        let sim = simulator(sim_options()).await;
        let rest = RestClient::new(&sim.api_url(), Duration::from_secs(5)).unwrap();
        let context = fetch_all(&rest, &Secret::new(sim.api_key())).await.unwrap();

        assert_eq!(context.skipped, Skipped::default());
        assert_eq!(labels(&context), ["Depot", "Yard", "Corridor"]);
        let groups: BTreeMap<i64, &str> = context
            .groups
            .iter()
            .map(|(id, g)| (*id, g.title.as_str()))
            .collect();
        assert_eq!(
            groups,
            BTreeMap::from([
                (1, "Dispatch North"),
                (2, "Dispatch South"),
                (3, "Dispatch East")
            ])
        );
        let tags: Vec<&str> = context.tags.values().map(|t| t.name.as_str()).collect();
        assert_eq!(tags, ["refrigerated", "leased", "heavy", "site"]);

        // Trackers as the source knows them: their group ids come from `tracker/list`.
        let trackers = sim.trackers();
        let group = |id: i64| {
            let info = trackers.iter().find(|t| t.id == id).unwrap();
            context.group_title(info.group_id)
        };
        assert_eq!(group(21_001), Some("Dispatch North"));
        assert_eq!(group(21_003), Some("Dispatch East"));
        assert_eq!(group(21_005), None, "Truck 5 is in the default group");
        assert_eq!(context.tracker_tags(21_001), ["heavy", "leased"]);
        assert_eq!(context.tracker_tags(21_003), ["refrigerated"]);
        assert!(context.tracker_tags(21_002).is_empty());
        assert_eq!(
            context.driver(21_001),
            Some(&Driver {
                id: 500,
                name: "Ida Richter".into(),
                phone: Some("491533790641".into()),
            })
        );
        assert_eq!(context.driver(21_004), None, "Reefer 4 has no driver");
        assert_eq!(context.drivers_by_tracker.len(), 15);

        let index = context.zone_index();
        let at = |lat: f64, lng: f64| {
            let mut labels: Vec<&str> = index.containing(lat, lng).collect();
            labels.sort_unstable();
            labels
        };
        // The depot's far side from where the corridor leaves it.
        assert_eq!(at(DEPOT.0 - 0.002, DEPOT.1), ["Depot"]);
        // Where the corridor's trip ends, far from the depot and the yard.
        let navixy_alerts::geofence::Shape::Sausage { route, .. } = &context.zones[2].shape else {
            panic!("{:?}", context.zones[2])
        };
        let end = route.0.last().unwrap();
        assert_eq!(at(end.y, end.x), ["Corridor"]);
        // Midway along the route, between two of its points.
        let (a, b) = (route.0[10], route.0[11]);
        assert_eq!(at((a.y + b.y) / 2.0, (a.x + b.x) / 2.0), ["Corridor"]);
        // Outside everything (south-west of Berlin).
        assert_eq!(at(52.0, 12.0), Vec::<&str>::new());
        assert_eq!(index.contains("Depot", DEPOT.0, DEPOT.1), Some(true));
        assert_eq!(index.contains("Yard", DEPOT.0, DEPOT.1), Some(false));
        assert_eq!(index.contains("Depot North", DEPOT.0, DEPOT.1), None);

        let err = fetch_all(&rest, &Secret::new("0123456789abcdef0123456789abcdef"))
            .await
            .unwrap_err();
        assert!(err.is_auth(), "{err}");
        sim.shutdown().await;
    })
    .await
}

/// A server that leaves points out of `zone/list`, loses a zone in between, and sends
/// items the client must skip.
async fn odd_server() -> (String, tokio::task::JoinHandle<()>) {
    let list = |list: serde_json::Value| {
        let body = json!({ "success": true, "list": list });
        move || async move { axum::Json(body) }
    };
    let app = axum::Router::new()
        .route(
            "/v2/zone/list",
            post(list(json!([
                {"id": 7, "type": "polygon", "label": "Yard", "tags": []},
                {"id": 8, "type": "sausage", "label": "Gone", "radius": 50},
                {"id": 9, "type": "circle", "label": "Pump", "radius": 40,
                 "center": {"lat": 48.2, "lng": 16.37}, "tags": null, "future_field": {"x": 1}},
                {"id": 10, "type": "circle", "label": "No radius", "center": {"lat": 1, "lng": 2}},
                {"id": 11, "type": "star", "label": "Unknown"},
                "not a zone"
            ]))),
        )
        .route(
            "/v2/zone/point/list",
            post(|axum::Json(body): axum::Json<serde_json::Value>| async move {
                if body["zone_id"] == 7 {
                    axum::Json(json!({"success": true, "list": [
                        {"lat": 48.0, "lng": 16.0, "node": true},
                        {"lat": 48.0, "lng": 16.1, "node": true},
                        {"lat": 48.1, "lng": 16.1, "node": true}
                    ]}))
                } else {
                    axum::Json(json!({"success": false, "status": {"code": 201, "description": "Not found in the database"}}))
                }
            }),
        )
        .route(
            "/v2/tracker/group/list",
            post(list(json!([{"id": 5, "title": "West", "color": "FF6DDC"}, {"id": 6}]))),
        )
        .route(
            "/v2/tag/list",
            post(list(json!([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]))),
        )
        .route(
            "/v2/employee/list",
            post(list(json!([
                {"id": 1, "tracker_id": 100, "first_name": "Ann", "middle_name": "", "last_name": "Lee", "phone": ""},
                {"id": 2, "tracker_id": 100, "first_name": "Second", "last_name": "Claim"},
                {"id": 3, "tracker_id": "abc", "first_name": "Bad"}
            ]))),
        )
        .route(
            "/v2/tracker/list",
            post(list(json!([
                {"id": 100, "label": "T", "group_id": 5, "tag_bindings": [
                    {"tag_id": 1, "ordinal": 2}, {"tag_id": 2, "ordinal": 1}]},
                {"id": 101, "label": "U", "group_id": 0}
            ]))),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/v2"), server)
}

#[tokio::test]
async fn points_are_read_per_zone_when_left_out_and_odd_items_are_skipped() {
    bounded(async {
        let (url, server) = odd_server().await;
        let rest = RestClient::new(&url, Duration::from_secs(5)).unwrap();
        let context = fetch_all(&rest, &Secret::new("h")).await.unwrap();

        assert_eq!(labels(&context), ["Yard", "Pump"]);
        assert_eq!(
            context.skipped,
            Skipped {
                // "Gone" (deleted), "No radius", "Unknown", and the string.
                zones: 4,
                groups: 1,
                tags: 0,
                employees: 1,
                trackers: 0,
            }
        );
        let index = context.zone_index();
        assert_eq!(index.containing(48.01, 16.09).collect::<Vec<_>>(), ["Yard"]);
        assert_eq!(index.containing(48.2, 16.37).collect::<Vec<_>>(), ["Pump"]);
        assert_eq!(context.group_title(Some(5)), Some("West"));
        assert_eq!(context.tracker_tags(100), ["b", "a"], "in ordinal order");
        assert_eq!(
            context.driver(100),
            Some(&Driver {
                id: 1,
                name: "Ann Lee".into(),
                phone: None,
            })
        );
        server.abort();
    })
    .await
}
