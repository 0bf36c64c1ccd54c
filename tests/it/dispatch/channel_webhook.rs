//! Webhook and Slack against loopback receivers: a redirect is refused, not followed (the
//! other host gets nothing, no `Referer` leaks the secret URL) and the notification is
//! failed, not sent; a `body:` template renders a form-encoded body, signed over exactly
//! the bytes sent.

use std::sync::Arc;
use std::time::Duration;

use navixy_alerts::clock::SystemClock;
use navixy_alerts::dispatch::channels::{sample_notification, webhook};
use navixy_alerts::dispatch::{DispatchOptions, Dispatcher, SendError};
use navixy_alerts::store::{OutboxStatus, Store};

use super::channel_support::{Provider, channel};
use super::support::{config, eventually, firing, shutdown, t0};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

#[tokio::test]
async fn a_redirect_is_a_permanent_failure_and_is_not_followed() {
    let other = Provider::start(|_, _| (200, vec![], String::new())).await;
    let location = format!("{}/collect", other.base);
    let redirecting =
        Provider::start(move |_, _| (307, vec![("location", location.clone())], String::new()))
            .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            r#"
channels:
  ops: {{ type: webhook, url: "{base}/hook", secret: "{SECRET}", headers: {{ authorization: "Bearer t0ken" }} }}
  slack: {{ type: slack, webhook_url: "{base}/services/T000/B000/XXXXSECRET" }}
routes:
  - channels: [ops, slack]
notify: {{ group_wait: 0s }}
storage: {{ path: ":memory:" }}
"#,
            base = redirecting.base
        ),
    );
    let store = Store::open(&cfg).unwrap();
    let (_stop, on_stop) = shutdown();
    let options = DispatchOptions {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        drain_timeout: Duration::ZERO,
        ..DispatchOptions::default()
    };
    let dispatcher =
        Dispatcher::start_with(&cfg, store.clone(), Arc::new(SystemClock), on_stop, options)
            .await
            .unwrap();
    dispatcher
        .submit_batch(vec![firing("fuel_drain", 21080)])
        .await
        .unwrap();
    eventually("both notifications to fail", || {
        let store = store.clone();
        async move { store.list_failed(10).await.unwrap().len() == 2 }
    })
    .await;
    for entry in store.list_failed(10).await.unwrap() {
        assert_eq!(entry.attempts, 1, "a redirect is not retried: {entry:?}");
        let error = entry.last_error.unwrap();
        assert_eq!(
            error,
            "HTTP 307 Temporary Redirect: the receiver redirects, and redirects are not followed \
             (set the channel's URL to the final address)"
        );
    }
    assert!(
        store
            .list_outbox(Some(OutboxStatus::Sent), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(redirecting.requests().len(), 2);
    assert!(
        redirecting
            .requests()
            .iter()
            .all(|r| !r.headers.contains_key("referer"))
    );
    assert!(
        other.requests().is_empty(),
        "the other host got {:?}",
        other.requests()
    );
}

#[tokio::test]
async fn a_body_template_sends_a_signed_form() {
    let gateway = Provider::start(|_, _| (200, vec![], "queued".into())).await;
    let ch = channel(
        "sms",
        &format!(
            r#"{{ type: webhook, url: "{}/sms/send", secret: "{SECRET}", content_type: application/x-www-form-urlencoded,
                 body: "to=%2B4915100000000&text={{{{ (alerts[0].annotations.summary ~ ' (' ~ status ~ ')')|urlencode }}}}" }}"#,
            gateway.base
        ),
    );
    let mut n = sample_notification("sms", t0());
    n.alerts = vec![Arc::new(firing("fuel_drain", 21080))];
    ch.send(&n, t0()).await.unwrap();
    let got = gateway.requests();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(
        r.header("content-type"),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        std::str::from_utf8(&r.body).unwrap(),
        "to=%2B4915100000000&text=Truck%2021080%3A%2017.2%20l%20of%20fuel%20lost%20in%2010%20min%20%28firing%29"
    );
    assert_eq!(r.header("webhook-id"), n.id);
    let key = webhook::decode_secret(SECRET).unwrap();
    assert!(webhook::verify(
        &key,
        &n.id,
        t0().timestamp(),
        &r.body,
        r.header("webhook-signature")
    ));
    // The signature is over the rendered body, not the default JSON.
    assert!(!webhook::verify(
        &key,
        &n.id,
        t0().timestamp(),
        &n.webhook_json(),
        r.header("webhook-signature")
    ));
}

#[tokio::test]
async fn a_json_body_template_is_sent_as_rendered() {
    let hook = Provider::start(|_, _| (204, vec![], String::new())).await;
    let ch = channel(
        "chat",
        &format!(
            r#"{{ type: webhook, url: "{}/in", body: "{{\"text\": {{{{ alerts[0].annotations.summary|tojson }}}}, \"id\": {{{{ id|tojson }}}}}}" }}"#,
            hook.base
        ),
    );
    let mut n = sample_notification("chat", t0());
    Arc::make_mut(&mut n.alerts[0])
        .annotations
        .insert("summary".into(), "quote \" and <tag>".into());
    ch.send(&n, t0()).await.unwrap();
    let r = &hook.requests()[0];
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(
        r.json(),
        serde_json::json!({"text": "quote \" and <tag>", "id": n.id})
    );
    // A receiver's 4xx is permanent whatever the body.
    let hook = Provider::start(|_, _| (422, vec![], String::new())).await;
    let ch = channel(
        "chat",
        &format!(r#"{{ type: webhook, url: "{}/in" }}"#, hook.base),
    );
    assert_eq!(
        ch.send(&n, t0()).await.unwrap_err(),
        SendError::permanent("HTTP 422 Unprocessable Entity")
    );
}

#[test]
fn check_names_the_line_of_a_body_that_renders_invalid_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        "source: { simulator: {} }\nchannels:\n  chat:\n    type: webhook\n    url: http://127.0.0.1:1/in\n    body: '{\"text\": {{ alerts[0].rule }}}'\nroutes:\n  - channels: [chat]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_navixy-alerts"))
        .args(["check", "-c"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: {}:6:5: channels.chat.body: renders invalid JSON (content_type is JSON): ",
            path.display()
        )),
        "{stderr}"
    );
}
