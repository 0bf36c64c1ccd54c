//! Acknowledgement over HTTP against a running daemon: the API's answers, and the ack
//! link a notification carries: GET shows and changes nothing, POST acknowledges,
//! forged and expired links are refused, a cross-site POST is refused.

use chrono::Duration as Span;
use serde_json::{Value, json};

use navixy_alerts::alert::Fingerprint;
use navixy_alerts::dispatch::ack::AckLinks;

use super::server::{Daemon, Hook, TOKEN, always, config_text, eventually};

const EXTERNAL: &str = "https://alerts.example.com";

async fn start() -> Daemon {
    let hook = Hook::start().await;
    let text = config_text(&hook.url, ":memory:").replace(
        &format!(r#"token: "{TOKEN}" }}"#),
        &format!(r#"token: "{TOKEN}", external_url: "{EXTERNAL}" }}"#),
    );
    Daemon::start_with(&text, &[("always.yaml", always("ack_watch"))], hook).await
}

/// The first alert notified, with its ack link.
async fn first_alert(daemon: &Daemon) -> Value {
    eventually("a notification with an ack link", || async {
        daemon
            .hook
            .bodies()
            .iter()
            .flat_map(|b| b["data"]["alerts"].as_array().cloned().unwrap_or_default())
            .find(|a| a["ack_url"].is_string())
    })
    .await
}

/// GET or POST on an ack link without the admin token: (status, content type, page).
async fn link(daemon: &Daemon, method: reqwest::Method, token: &str) -> (u16, String, String) {
    let mut request = daemon
        .http
        .request(method.clone(), daemon.url(&format!("/ack/{token}")));
    if method == reqwest::Method::POST {
        request = request
            .header("content-type", "application/x-www-form-urlencoded")
            .body("by=ana&comment=on+my+way");
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, kind, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_acknowledges_and_undoes_with_clear_errors() {
    let daemon = start().await;
    let alert = first_alert(&daemon).await;
    let fp = alert["fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(alert["ack"], Value::Null);
    let path = format!("/api/v1/alerts/{fp}/ack");

    let (status, body) = daemon
        .post("/api/v1/alerts/00000000000000ff/ack", "{}")
        .await;
    assert_eq!(
        (status, body),
        (
            404,
            json!({"error": "no firing alert with fingerprint `00000000000000ff`"})
        )
    );
    let (status, body) = daemon.post(&path, r#"{"by": "ana", "owner": "x"}"#).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid ack: unknown field `owner`"),
        "{body}"
    );
    let (status, body) = daemon
        .post(&path, r#"{"expires_at": "2000-01-01T00:00:00Z"}"#)
        .await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"error": "expires_at: 2000-01-01T00:00:00Z is not after now"})
        )
    );
    let (status, body) = daemon.delete(&path).await;
    assert_eq!(
        (status, body),
        (
            404,
            json!({"error": format!("alert `{fp}` is not acknowledged")})
        )
    );

    let (status, body) = daemon
        .post(&path, r#"{"by": "ana", "comment": "driver called"}"#)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["fingerprint"], fp.as_str());
    assert_eq!(body["ack"]["by"], "ana");
    assert_eq!(body["ack"]["comment"], "driver called");
    assert!(body["ack"]["at"].is_string());
    assert_eq!(body["expires_at"], Value::Null);
    // `by` defaults to the caller: the token's name (`server.token` is the admin's).
    let (status, body) = daemon.post(&path, "{}").await;
    assert_eq!((status, &body["ack"]["by"]), (200, &json!("admin")));
    // The alert list shows the ack in force, and no longer once it is undone.
    let listed = |alerts: Value| {
        alerts
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["fingerprint"] == fp.as_str())
            .map(|a| a["ack"].clone())
    };
    let (_, alerts) = daemon.get("/api/v1/alerts").await;
    let ack = listed(alerts).unwrap();
    assert_eq!((&ack["by"], &ack["comment"]), (&json!("admin"), &json!("")));

    let (status, body) = daemon.delete(&path).await;
    assert_eq!((status, body), (200, json!({"unacknowledged": fp})));
    let (_, alerts) = daemon.get("/api/v1/alerts").await;
    assert_eq!(listed(alerts), Some(Value::Null));
    let (status, _) = daemon.delete(&path).await;
    assert_eq!(status, 404, "undone already");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_link_shows_on_get_acknowledges_on_post_and_refuses_forgeries() {
    let daemon = start().await;
    let alert = first_alert(&daemon).await;
    let fp = alert["fingerprint"].as_str().unwrap().to_owned();
    let url = alert["ack_url"].as_str().unwrap();
    let token = url
        .strip_prefix(&format!("{EXTERNAL}/ack/"))
        .unwrap_or_else(|| panic!("{url}"))
        .to_owned();
    assert!(token.starts_with(&format!("{fp}.")), "{token}");
    let api = format!("/api/v1/alerts/{fp}/ack");

    // GET, twice (a link preview, then the person): a page with the alert and a button,
    // and no ack.
    for _ in 0..2 {
        let (status, kind, page) = link(&daemon, reqwest::Method::GET, &token).await;
        assert_eq!(status, 200, "{page}");
        assert!(kind.starts_with("text/html"), "{kind}");
        assert!(page.contains("ack_watch"), "{page}");
        assert!(page.contains(r#"<form method="post">"#), "{page}");
    }
    let (status, _) = daemon.delete(&api).await;
    assert_eq!(status, 404, "GET acknowledged nothing");

    // A cross-site POST is refused by the Origin check; nothing is acknowledged.
    let response = daemon
        .http
        .post(daemon.url(&format!("/ack/{token}")))
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("by=mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let (status, _) = daemon.delete(&api).await;
    assert_eq!(status, 404, "a cross-site POST acknowledged nothing");

    // Forged and expired links: a 403 page, nothing acknowledged.
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let store = daemon.running.store.clone();
    let key = store.ack_key().await.unwrap();
    let (live, _) = store
        .load_ack(Fingerprint(fp.clone()))
        .await
        .unwrap()
        .unwrap();
    let now = daemon.running.clock.now();
    let expired = AckLinks::new(EXTERNAL, &key).token(&live, now - Span::hours(25));
    let other_key = AckLinks::new(EXTERNAL, b"not the key").token(&live, now);
    for (bad, why) in [
        (forged.as_str(), "not a valid acknowledgement link"),
        (other_key.as_str(), "not a valid acknowledgement link"),
        (expired.as_str(), "has expired"),
    ] {
        for method in [reqwest::Method::GET, reqwest::Method::POST] {
            let (status, kind, page) = link(&daemon, method.clone(), bad).await;
            assert_eq!(status, 403, "{method} {bad}: {page}");
            assert!(kind.starts_with("text/html"), "{kind}");
            assert!(page.contains(why), "{page}");
        }
    }
    let (status, _) = daemon.delete(&api).await;
    assert_eq!(status, 404, "refused links acknowledged nothing");

    // POST acknowledges, with the form's name and comment.
    let (status, _, page) = link(&daemon, reqwest::Method::POST, &token).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Acknowledged"), "{page}");
    assert!(page.contains("by ana"), "{page}");
    assert!(page.contains("on my way"), "{page}");
    let (_, acked) = store
        .load_ack(Fingerprint(fp.clone()))
        .await
        .unwrap()
        .unwrap();
    let acked = acked.expect("acknowledged");
    assert_eq!(
        (acked.ack.by.as_str(), acked.ack.comment.as_str()),
        ("ana", "on my way")
    );
    daemon.stop().await;
}
