//! Telegram against a loopback Bot API: `sendMessage` with the token in the path, HTML
//! that parses (only our tags, every user `<`, `>`, `&` escaped), at most 4096 characters
//! a message (long groups split), 429 with `parameters.retry_after` honoured, and the
//! token in no error.

use std::sync::Arc;

use serde_json::json;

use navixy_alerts::dispatch::SendError;
use navixy_alerts::dispatch::channels::sample_notification;

use super::channel_support::{Answer, Provider, Request, channel};
use super::support::{firing, t0};

const TOKEN: &str = "123456:AAE-s3cr3tT0k3n";

/// Telegram's HTML mode: the tags we use and the four named entities; `Err` says why.
fn parse_html(text: &str) -> Result<(), String> {
    let mut rest = text;
    let mut open: Vec<&str> = Vec::new();
    while let Some(i) = rest.find(['<', '&']) {
        let after = &rest[i..];
        if after.starts_with('&') {
            let entity = ["&amp;", "&lt;", "&gt;", "&quot;"]
                .into_iter()
                .find(|e| after.starts_with(e))
                .ok_or_else(|| format!("a bare & at {after:.20}"))?;
            rest = &after[entity.len()..];
            continue;
        }
        let end = after.find('>').ok_or("an unclosed <")?;
        let tag = &after[1..end];
        match tag.strip_prefix('/') {
            Some(name) => {
                if open.pop() != Some(name) {
                    return Err(format!("</{name}> closes nothing"));
                }
            }
            None if ["b", "i", "code"].contains(&tag) => open.push(tag),
            None => return Err(format!("unsupported tag <{tag}>")),
        }
        rest = &after[end + 1..];
    }
    if open.is_empty() {
        Ok(())
    } else {
        Err(format!("unclosed {open:?}"))
    }
}

fn bot_api(r: &Request) -> Answer {
    let error = |code: u16, description: &str| {
        super::channel_support::json(
            code,
            json!({"ok": false, "error_code": code, "description": description}),
        )
    };
    if r.path != format!("/bot{TOKEN}/sendMessage") {
        return error(404, "Not Found");
    }
    if !r.header("content-type").starts_with("application/json") {
        return error(400, "Bad Request: message text is empty");
    }
    let m = r.json();
    if m["chat_id"].is_null() || m["parse_mode"] != "HTML" {
        return error(400, "Bad Request: chat not found");
    }
    let text = m["text"].as_str().unwrap_or_default();
    if text.is_empty() || text.encode_utf16().count() > 4096 {
        return error(400, "Bad Request: message is too long");
    }
    if let Err(why) = parse_html(text) {
        return error(400, &format!("Bad Request: can't parse entities: {why}"));
    }
    super::channel_support::json(
        200,
        json!({"ok": true, "result": {"message_id": 1, "text": text}}),
    )
}

fn config(base: &str, chat_id: &str) -> String {
    format!("{{ type: telegram, bot_token: \"{TOKEN}\", chat_id: {chat_id}, api_url: \"{base}\" }}")
}

fn texts(bot: &Provider) -> Vec<String> {
    bot.requests()
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn messages_are_html_with_every_user_string_escaped() {
    let bot = Provider::start(|r, _| bot_api(r)).await;
    let ch = channel("tg", &config(&bot.base, "-1001234567890"));
    let mut alert = firing("fuel_drain", 21080);
    alert
        .annotations
        .insert("summary".into(), "<b>Fuel</b> & <tank> \"low\"".into());
    alert.value = Some(json!("<1 l"));
    let mut n = sample_notification("tg", t0());
    n.alerts = vec![Arc::new(alert)];
    ch.send(&n, t0()).await.unwrap();
    let got = bot.requests();
    assert_eq!(got.len(), 1);
    let m = got[0].json();
    assert_eq!(m["chat_id"], json!(-1001234567890_i64));
    assert_eq!(m["parse_mode"], "HTML");
    let text = m["text"].as_str().unwrap();
    assert!(
        text.contains("&lt;b&gt;Fuel&lt;/b&gt; &amp; &lt;tank&gt; \"low\""),
        "{text}"
    );
    assert!(text.contains("Value: &lt;1 l"), "{text}");

    // A channel's @username is sent as a string.
    let ch = channel("tg", &config(&bot.base, "\"@fleet_alerts\""));
    ch.send(&n, t0()).await.unwrap();
    assert_eq!(bot.requests()[1].json()["chat_id"], json!("@fleet_alerts"));
}

#[tokio::test]
async fn a_long_group_is_split_and_a_retry_sends_only_the_rest() {
    // The second message fails once.
    let bot = Provider::start(|r, i| {
        if i == 1 {
            (500, vec![], String::new())
        } else {
            bot_api(r)
        }
    })
    .await;
    let ch = channel("tg", &config(&bot.base, "42"));
    let mut n = sample_notification("tg", t0());
    n.alerts = (0..80)
        .map(|i| {
            let mut a = firing("fuel_drain", 21000 + i);
            a.annotations
                .insert("description".into(), format!("<{i}> {}", "&".repeat(100)));
            Arc::new(a)
        })
        .collect();
    let err = ch.send(&n, t0()).await.unwrap_err();
    assert!(matches!(err, SendError::Retryable { .. }), "{err:?}");
    ch.send(&n, t0()).await.unwrap();
    let texts = texts(&bot);
    assert!(texts.len() >= 4, "{}", texts.len());
    // The first message is not sent again; the failed one is.
    assert_eq!(texts[1], texts[2]);
    assert_eq!(texts.iter().filter(|t| **t == texts[0]).count(), 1);
    let delivered: Vec<&String> = texts
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, t)| t)
        .collect();
    let total = delivered.len();
    for (i, text) in delivered.iter().enumerate() {
        assert!(text.encode_utf16().count() <= 4096);
        assert!(text.contains(&format!("({}/{total})", i + 1)), "{text}");
    }
    // Every alert exactly once over the delivered messages.
    let all: String = delivered.iter().map(|t| t.as_str()).collect();
    for i in 0..80 {
        assert_eq!(
            all.matches(&format!("&lt;{i}&gt; ")).count(),
            1,
            "alert {i}"
        );
    }
}

#[tokio::test]
async fn too_many_requests_waits_retry_after_and_errors_hide_the_token() {
    let bot = Provider::start(|r, i| match i {
        0 => super::channel_support::json(
            429,
            json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 3",
                   "parameters": {"retry_after": 3}}),
        ),
        1 => super::channel_support::json(
            401,
            json!({"ok": false, "error_code": 401, "description": format!("Unauthorized {TOKEN}")}),
        ),
        _ => bot_api(r),
    })
    .await;
    let ch = channel("tg", &config(&bot.base, "42"));
    let n = sample_notification("tg", t0());
    let err = ch.send(&n, t0()).await.unwrap_err();
    assert_eq!(
        err,
        SendError::Retryable {
            message: "HTTP 429 Too Many Requests: Too Many Requests: retry after 3".into(),
            retry_after: Some(std::time::Duration::from_secs(3)),
        }
    );
    let err = ch.send(&n, t0()).await.unwrap_err();
    assert_eq!(
        err,
        SendError::permanent("HTTP 401 Unauthorized: Unauthorized ***")
    );
    ch.send(&n, t0()).await.unwrap();
    assert_eq!(bot.requests().len(), 3);

    // Nobody listening: the error names neither the URL nor the token.
    let ch = channel("tg", &config("http://127.0.0.1:1", "42"));
    let err = ch.send(&n, t0()).await.unwrap_err().to_string();
    assert!(err.starts_with("cannot connect"), "{err}");
    assert!(!err.contains("s3cr3t") && !err.contains("/bot"), "{err}");
}
