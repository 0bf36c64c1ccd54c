//! Roles and the console's login against a real daemon: `server.tokens` with viewer,
//! operator and admin beside `server.token`, 401 and 403, and the session cookie.

use reqwest::Method;
use reqwest::header::{LOCATION, ORIGIN, SET_COOKIE};
use serde_json::Value;

use super::server::{Daemon, Hook, TOKEN, always, config_text};

const VIEWER: &str = "viewer-token-1";
const OPERATOR: &str = "operator-token-1";

async fn daemon() -> Daemon {
    let text = config_text("http://127.0.0.1:9/hook", ":memory:").replace(
        &format!("token: \"{TOKEN}\" }}"),
        &format!(
            "token: \"{TOKEN}\", tokens: [{{ name: vera, token: \"{VIEWER}\", role: viewer }}, {{ name: otto, token: \"{OPERATOR}\", role: operator }}] }}"
        ),
    );
    assert!(text.contains(OPERATOR), "{text}");
    Daemon::start_with(
        &text,
        &[("always.yaml", always("roles_rule"))],
        Hook::default(),
    )
    .await
}

const SILENCE: &str = r#"{"matchers": [{"name": "rule", "value": "roles_rule"}], "ends_at": "2099-01-01T00:00:00Z", "comment": "roles"}"#;

async fn call(daemon: &Daemon, method: Method, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = daemon.http.request(method, daemon.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .header("content-type", "application/json")
        .body(if path == "/api/v1/silences" {
            SILENCE
        } else {
            ""
        })
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_may_do_what_it_is_for() {
    let daemon = daemon().await;

    // Viewers read, and change nothing.
    let (status, body) = call(&daemon, Method::GET, "/api/v1/alerts", Some(VIEWER)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&daemon, Method::GET, "/api/v1/history", Some(VIEWER)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&daemon, Method::POST, "/api/v1/silences", Some(VIEWER)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["error"],
        "`vera` is a viewer; POST /api/v1/silences needs an operator or more"
    );

    // Operators silence, recorded under their name; they do not reload.
    let (status, body) = call(&daemon, Method::POST, "/api/v1/silences", Some(OPERATOR)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["created_by"], "otto");
    let id = body["id"].as_str().unwrap().to_owned();
    let (status, body) = call(&daemon, Method::POST, "/api/v1/reload", Some(OPERATOR)).await;
    assert_eq!(status, 403, "{body}");
    let path = format!("/api/v1/silences/{id}");
    let (status, body) = call(&daemon, Method::DELETE, &path, Some(VIEWER)).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = call(&daemon, Method::DELETE, &path, Some(OPERATOR)).await;
    assert_eq!(status, 200, "{body}");

    // `server.token` is an admin named `admin`.
    let (status, body) = call(&daemon, Method::POST, "/api/v1/reload", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&daemon, Method::POST, "/api/v1/silences", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["created_by"], "admin");

    // Nobody, or a wrong token: 401; `/healthz` stays open.
    for token in [None, Some("wrong-token")] {
        let (status, body) = call(&daemon, Method::GET, "/api/v1/alerts", token).await;
        assert_eq!(status, 401, "{token:?}: {body}");
    }
    let (status, _) = call(&daemon, Method::GET, "/healthz", None).await;
    assert_eq!(status, 200);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_logs_in_with_a_token_and_keeps_a_session_cookie() {
    let daemon = daemon().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let origin = daemon.base.clone();

    let wrong = http
        .post(daemon.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(wrong.headers().get(SET_COOKIE).is_none());

    let login = http
        .post(daemon.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={OPERATOR}&next=%2Falerts"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status().as_u16(), 303);
    assert_eq!(login.headers()[LOCATION], "/alerts");
    let set = login.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let (pair, attributes) = set.split_once(';').unwrap();
    let (name, id) = pair.split_once('=').unwrap();
    assert_eq!(name, "na_session");
    assert_eq!(id.len(), 64, "{set}");
    assert_eq!(
        attributes.trim(),
        "HttpOnly; SameSite=Strict; Path=/; Max-Age=43200"
    );
    let cookie = pair.to_owned();

    // JSON works too, and lands on `/`.
    let json = http
        .post(daemon.url("/login"))
        .json(&serde_json::json!({"token": VIEWER}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status().as_u16(), 303);
    assert_eq!(json.headers()[LOCATION], "/");

    let with_cookie = |method: Method, path: &str| {
        http.request(method, daemon.url(path))
            .header("cookie", &cookie)
            .header("content-type", "application/json")
    };
    let read = with_cookie(Method::GET, "/api/v1/alerts")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status().as_u16(), 200);
    // A state change with the cookie needs this server's Origin.
    let bare = with_cookie(Method::POST, "/api/v1/silences")
        .body(SILENCE)
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status().as_u16(), 403);
    let foreign = with_cookie(Method::POST, "/api/v1/silences")
        .header(ORIGIN, "http://evil.example")
        .body(SILENCE)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status().as_u16(), 403);
    let same = with_cookie(Method::POST, "/api/v1/silences")
        .header(ORIGIN, &origin)
        .body(SILENCE)
        .send()
        .await
        .unwrap();
    assert_eq!(same.status().as_u16(), 200);
    let silence: Value = same.json().await.unwrap();
    assert_eq!(silence["created_by"], "otto");

    let logout = with_cookie(Method::POST, "/logout")
        .header(ORIGIN, &origin)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status().as_u16(), 303);
    assert!(
        logout.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .starts_with("na_session=; ")
    );
    let after = with_cookie(Method::GET, "/api/v1/alerts")
        .send()
        .await
        .unwrap();
    assert_eq!(after.status().as_u16(), 401);
    daemon.stop().await;
}
