//! The admin API against other sites: a web page that makes its visitor's browser send a
//! request to the API on loopback (a form, `fetch` without CORS, DNS rebinding), and an
//! open API that listens beyond loopback. Also: every error answer is JSON.

use std::path::Path;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use navixy_alerts::config::Config;

use super::server::{Daemon, Hook, TOKEN, always, config_text};

const SILENCE: &str =
    r#"{"matchers": [{"name": "rule", "value": "x"}], "ends_at": "2100-01-01T00:00:00Z"}"#;

/// A daemon whose API has no token (loopback only).
async fn open_daemon() -> Daemon {
    let hook = Hook::start().await;
    let text = config_text(&hook.url, ":memory:").replace(&format!(", token: \"{TOKEN}\""), "");
    assert!(
        text.contains("server: { listen: \"127.0.0.1:0\" }"),
        "{text}"
    );
    Daemon::start_with(&text, &[("always.yaml", always("open_watch"))], hook).await
}

async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "status {status}"
    );
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_page_cannot_silence_or_reload_the_open_api() {
    let daemon = open_daemon().await;
    let http = reqwest::Client::new();
    let port = daemon.base.rsplit(':').next().unwrap().to_string();

    // A form or `text/plain` body: what a page can send without a preflight.
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let (status, body) = answer(
            http.post(daemon.url("/api/v1/silences"))
                .header("content-type", content_type)
                .body(SILENCE),
        )
        .await;
        assert_eq!(status, 415, "{content_type}");
        assert_eq!(
            body,
            json!({"error": "the body must be JSON sent with `Content-Type: application/json`"})
        );
    }
    let (status, _) = answer(http.post(daemon.url("/api/v1/silences")).body(SILENCE)).await;
    assert_eq!(status, 415, "no content type");

    // JSON, but from another origin.
    for (method, path) in [
        (reqwest::Method::POST, "/api/v1/silences"),
        (reqwest::Method::POST, "/api/v1/reload"),
        (reqwest::Method::DELETE, "/api/v1/silences/sil_x"),
    ] {
        for origin in ["https://evil.example", "null", "http://localhost:1"] {
            let (status, body) = answer(
                http.request(method.clone(), daemon.url(path))
                    .header("content-type", "application/json")
                    .header("origin", origin)
                    .body(SILENCE),
            )
            .await;
            assert_eq!(status, 403, "{method} {path} from {origin}");
            assert_eq!(
                body,
                json!({"error": format!(
                    "cross-origin request refused: Origin `{origin}` is not this server (set \
                     server.external_url when the API is reached through a proxy)"
                )})
            );
        }
    }
    let (status, body) = daemon.get("/api/v1/silences").await;
    assert_eq!((status, body), (200, json!([])), "nothing was added");

    // DNS rebinding: the page's own name in `Host`, on every endpoint.
    for path in ["/healthz", "/api/v1/alerts", "/api/v1/silences", "/nowhere"] {
        let (status, body) = answer(
            http.get(daemon.url(path))
                .header("host", format!("rebind.evil.example:{port}")),
        )
        .await;
        assert_eq!(status, 421, "{path}");
        assert_eq!(
            body,
            json!({"error": format!(
                "Host `rebind.evil.example:{port}` is not this server (it answers as \
                 localhost, 127.0.0.1 or [::1] on port {port}, or as server.external_url)"
            )})
        );
    }

    // The same server under its own names, and a same-origin page, are served.
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let response = http
            .get(daemon.url("/api/v1/alerts"))
            .header("host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{host}");
    }
    let (status, silence) = answer(
        http.post(daemon.url("/api/v1/silences"))
            .header("content-type", "application/json; charset=utf-8")
            .header("origin", format!("http://localhost:{port}"))
            .body(SILENCE),
    )
    .await;
    assert_eq!(status, 200, "{silence}");
    assert_eq!(silence["state"], "active");
    daemon.stop().await;
}

fn load(server: &str) -> Result<Config, String> {
    let text = format!("source:\n  simulator: {{ trackers: 1 }}\nserver: {server}\n");
    Config::from_yaml(&text, Path::new("/etc/navixy-alerts/config.yaml"), |_| None)
        .map_err(|e| e.to_string())
}

#[test]
fn an_open_api_beyond_loopback_does_not_load() {
    let refusal = |listen: &str| {
        format!(
            "/etc/navixy-alerts/config.yaml: server.listen `{listen}` is reachable beyond this \
             machine and server.token is not set: anyone who reaches it could add silences and \
             reload rules. Set server.token, listen on 127.0.0.1, or set `server.insecure: true`"
        )
    };
    for listen in [
        "0.0.0.0:9898",
        "[::]:9898",
        "10.0.0.5:9898",
        "alerts.internal:9898",
    ] {
        assert_eq!(
            load(&format!("{{ listen: \"{listen}\" }}")).unwrap_err(),
            refusal(listen)
        );
        assert_eq!(
            load(&format!("{{ listen: \"{listen}\", token: \"  \" }}")).unwrap_err(),
            refusal(listen),
            "a blank token is no token"
        );
        load(&format!("{{ listen: \"{listen}\", token: \"s3cret\" }}")).unwrap();
        load(&format!("{{ listen: \"{listen}\", insecure: true }}")).unwrap();
    }
    for listen in [
        "127.0.0.1:9898",
        "[::1]:9898",
        "localhost:9898",
        "127.0.0.2:0",
        "",
    ] {
        load(&format!("{{ listen: \"{listen}\" }}")).unwrap();
    }
    assert_eq!(
        load("{ external_url: \"alerts.example.com\" }").unwrap_err(),
        "/etc/navixy-alerts/config.yaml: server.external_url: `alerts.example.com` is not a \
         URL: relative URL without a base"
    );
    assert_eq!(
        load("{ max_connections: 0 }").unwrap_err(),
        "/etc/navixy-alerts/config.yaml: server.max_connections must be at least 1"
    );
    let config = load("{ external_url: \"https://alerts.example.com\" }").unwrap();
    assert_eq!(
        config.server.external_url.as_deref(),
        Some("https://alerts.example.com")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_json() {
    let daemon = Daemon::start(&[("always.yaml", always("errors_watch"))]).await;
    let http = &daemon.http;

    let (status, body) = answer(daemon.request(reqwest::Method::GET, "/api/v1/nowhere")).await;
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("no such endpoint"),
        "{body}"
    );

    for (method, path, allowed) in [
        (reqwest::Method::PUT, "/api/v1/silences", "GET,HEAD,POST"),
        (reqwest::Method::DELETE, "/api/v1/alerts", "GET,HEAD"),
        (reqwest::Method::GET, "/api/v1/reload", "POST"),
        (reqwest::Method::POST, "/healthz", "GET,HEAD"),
    ] {
        let response = daemon.request(method.clone(), path).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allowed);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({"error": format!("{path} does not take {method} (it takes {allowed})")})
        );
    }

    // Over the body limit, announced or not.
    let big = format!(
        r#"{{"matchers": [{{"name": "rule", "value": "x"}}], "ends_at": "2100-01-01T00:00:00Z", "comment": "{}"}}"#,
        "x".repeat(100 * 1024)
    );
    let (status, body) = answer(
        daemon
            .request(reqwest::Method::POST, "/api/v1/silences")
            .header("content-type", "application/json")
            .body(big.clone()),
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(
        body,
        json!({"error": "the body is larger than the 64 KiB allowed"})
    );
    // Chunked, with no length announced: cut off at the limit.
    let addr = daemon.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/silences HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in big.as_bytes().chunks(8192) {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        if stream.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(raw.contains("content-type: application/json"), "{raw}");
    assert!(
        raw.ends_with(r#"{"error":"the body is larger than the 64 KiB allowed"}"#),
        "{raw}"
    );

    // Without the token, and a path that does not decode.
    let (status, _) = answer(http.get(daemon.url("/api/v1/alerts"))).await;
    assert_eq!(status, 401);
    let (status, body) =
        answer(daemon.request(reqwest::Method::DELETE, "/api/v1/silences/%FF")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].is_string(), "{body}");
    daemon.stop().await;
}
