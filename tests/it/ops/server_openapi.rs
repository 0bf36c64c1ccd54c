//! The OpenAPI document at `/api/v1/openapi.json` against the routes the daemon serves:
//! the same set, both ways, and a schema for every answer.

use std::collections::BTreeSet;

use serde_json::Value;

use super::server::{Daemon, always};

/// Every endpoint of SPEC's "Admin HTTP", and the document itself.
const ENDPOINTS: [(&str, &str); 19] = [
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/v1/alerts"),
    ("get", "/api/v1/alerts/{fingerprint}/history"),
    ("get", "/api/v1/history"),
    ("get", "/api/v1/events"),
    ("get", "/api/v1/trackers/{id}"),
    ("get", "/api/v1/silences"),
    ("post", "/api/v1/silences"),
    ("delete", "/api/v1/silences/{id}"),
    ("get", "/api/v1/notifications"),
    ("post", "/api/v1/reload"),
    ("post", "/api/v1/notifications/{id}/retry"),
    ("post", "/api/v1/channels/{name}/retry"),
    ("post", "/api/v1/alerts/{fingerprint}/ack"),
    ("delete", "/api/v1/alerts/{fingerprint}/ack"),
    ("get", "/ack/{token}"),
    ("post", "/ack/{token}"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_and_the_routes_are_the_same_set() {
    let daemon = Daemon::start(&[("always.yaml", always("openapi_watch"))]).await;
    let (status, doc) = daemon.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["openapi"], "3.1.0");

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            documented.insert((method.clone(), path.clone()));
            let responses = operation["responses"].as_object().unwrap();
            // 200, or 202 for what is only set going ("retry now").
            assert!(
                responses.contains_key("200") || responses.contains_key("202"),
                "{method} {path}"
            );
            for (code, response) in responses {
                assert!(
                    response["content"]
                        .as_object()
                        .is_some_and(|c| !c.is_empty()),
                    "{method} {path} {code} has no body schema"
                );
            }
            // Ack links carry their own proof: a signed token.
            let open = path == "/healthz" || path.starts_with("/ack/");
            assert_eq!(responses.contains_key("401"), !open, "{method} {path}");
        }
    }
    let mut expected: BTreeSet<(String, String)> = ENDPOINTS
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    expected.insert(("get".into(), "/api/v1/openapi.json".into()));
    assert_eq!(documented, expected);

    // Every documented operation is served: never the fallback's 404 nor a 405.
    for (method, path) in &documented {
        if path == "/api/v1/events" {
            // An endless stream; `history` tests read it.
            continue;
        }
        let concrete = path
            .replace("/trackers/{id}", "/trackers/1")
            .replace("/silences/{id}", "/silences/sil_none")
            .replace("{fingerprint}", "0000000000000000")
            .replace("{token}", "forged");
        let method: reqwest::Method = method.to_uppercase().parse().unwrap();
        let response = daemon
            .request(method.clone(), &concrete)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_ne!(status, 405, "{method} {concrete}: {text}");
        assert!(
            !text.contains("no such endpoint"),
            "{method} {concrete}: {status} {text}"
        );
    }
    // And what is not documented is not served.
    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/silences/sil_none"),
        (reqwest::Method::PUT, "/api/v1/reload"),
        (reqwest::Method::GET, "/api/v2/alerts"),
    ] {
        let response = daemon.request(method.clone(), path).send().await.unwrap();
        assert!(
            [404, 405].contains(&response.status().as_u16()),
            "{method} {path}"
        );
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "ErrorBody",
        "NewSilence",
        "SilenceMatcher",
        "Alert",
        "Tracker",
    ] {
        assert!(
            schemas.contains_key(name),
            "{name} missing: {:?}",
            schemas.keys()
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        Value::from("bearer")
    );
    daemon.stop().await;
}
