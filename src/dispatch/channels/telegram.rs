//! Telegram: Bot API `sendMessage` in HTML parse mode, to `{api_url}/bot{token}/sendMessage`.
//!
//! Every user-supplied string (rule names, labels, annotations, values) is escaped (`&`,
//! `<`, `>`), so a `<` in a summary cannot break the message. Telegram takes at most 4096
//! characters a message: a notification that does not fit is split between alerts into
//! several messages, each headed `(2/3)`; an alert that alone would not fit has its texts
//! shortened. Messages already accepted are remembered per notification id, so that a
//! retry after a failure half-way sends only the rest (within this process).
//!
//! The bot token is in the URL path: errors never carry the URL, and answers are redacted.
//! Answers: `ok: true` is success; 429 waits `parameters.retry_after` seconds; 5xx and
//! network errors are retried; other 4xx (a wrong token, a chat the bot is not in) are
//! permanent.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};

use super::{SendError, failure, parse_url, redact, retry_after, send};
use crate::alert::AlertTransition;
use crate::config::{Secret, TelegramChatId};
use crate::dispatch::notification::Notification;
use crate::rfc3339;

/// Telegram's limit, in UTF-16 code units after entity parsing; counting the raw HTML is
/// on the safe side (tags and entities only shrink when parsed).
pub const MAX_MESSAGE: usize = 4096;
/// The longest a user-supplied text gets before an alert is shortened to fit.
const MAX_FIELD: usize = 1000;
/// Notifications whose delivery stopped half-way; beyond this many the memory is dropped
/// (the cost: a retry may repeat a message).
const MAX_IN_PROGRESS: usize = 1024;

pub struct TelegramChannel {
    http: reqwest::Client,
    /// Holds the token: never logged or shown.
    url: reqwest::Url,
    token: Secret,
    chat_id: TelegramChatId,
    timeout: Duration,
    /// Notification id -> messages already accepted.
    sent: Mutex<HashMap<String, usize>>,
}

impl TelegramChannel {
    pub fn new(
        http: reqwest::Client,
        bot_token: &Secret,
        chat_id: &TelegramChatId,
        api_url: &str,
        timeout: Duration,
    ) -> Result<TelegramChannel, String> {
        let token = bot_token.expose();
        if token.is_empty() || token.contains(|c: char| c == '/' || c.is_whitespace()) {
            return Err("bot_token: must be the token BotFather gave (`123456:ABC-DEF...`)".into());
        }
        if matches!(chat_id, TelegramChatId::Name(name) if name.trim().is_empty()) {
            return Err("chat_id: must not be empty".into());
        }
        let base = parse_url("api_url", api_url)?;
        let url = reqwest::Url::parse(&format!(
            "{}/bot{token}/sendMessage",
            base.as_str().trim_end_matches('/')
        ))
        .map_err(|_| "bot_token: does not fit in a URL".to_owned())?;
        Ok(TelegramChannel {
            http,
            url,
            token: bot_token.clone(),
            chat_id: chat_id.clone(),
            timeout,
            sent: Mutex::new(HashMap::new()),
        })
    }

    pub async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let messages = messages(n);
        let done = self.sent.lock().get(&n.id).copied().unwrap_or(0);
        for (i, text) in messages.iter().enumerate().skip(done) {
            let result = self.send_one(text).await;
            let mut sent = self.sent.lock();
            match result {
                Ok(()) => {
                    if sent.len() >= MAX_IN_PROGRESS {
                        sent.clear();
                    }
                    sent.insert(n.id.clone(), i + 1);
                }
                Err(e) => {
                    if matches!(e, SendError::Permanent { .. }) {
                        sent.remove(&n.id);
                    }
                    return Err(e);
                }
            }
        }
        self.sent.lock().remove(&n.id);
        Ok(())
    }

    async fn send_one(&self, text: &str) -> Result<(), SendError> {
        let request = self
            .http
            .post(self.url.clone())
            .timeout(self.timeout)
            .json(&json!({
                "chat_id": self.chat_id,
                "text": text,
                "parse_mode": "HTML",
                "link_preview_options": {"is_disabled": true},
            }));
        let response = send(request).await?;
        let status = response.status();
        let header_delay = retry_after(response.headers(), chrono::Utc::now());
        let body = response.text().await.unwrap_or_default();
        let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if status.is_success() && answer["ok"] != Value::Bool(false) {
            return Ok(());
        }
        // Telegram says how long to wait in the body; a proxy may say it in the header.
        let delay = answer["parameters"]["retry_after"]
            .as_u64()
            .map(Duration::from_secs)
            .or(header_delay);
        let mut reason = answer["description"]
            .as_str()
            .map_or_else(|| body.clone(), str::to_owned);
        if let Some(chat) = answer["parameters"]["migrate_to_chat_id"].as_i64() {
            let _ = write!(
                reason,
                " (the group became a supergroup: set chat_id to {chat})"
            );
        }
        let error = if status.is_success() {
            SendError::permanent(format!("HTTP {status}: {reason}"))
        } else {
            failure(status, &reason, delay)
        };
        Err(match error {
            SendError::Retryable {
                message,
                retry_after,
            } => SendError::Retryable {
                message: redact(&message, self.token.expose()),
                retry_after,
            },
            SendError::Permanent { message } => {
                SendError::permanent(redact(&message, self.token.expose()))
            }
        })
    }
}

/// `&`, `<` and `>`: all Telegram's HTML mode needs escaped outside tags.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn length(text: &str) -> usize {
    text.encode_utf16().count()
}

/// At most `max` characters of `text`, escaped; `…` marks a cut.
fn field(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return escape(text);
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    escape(&cut)
}

/// One alert's block, its user texts cut to `max` characters.
fn block(t: &AlertTransition, max: usize) -> String {
    let mut s = String::new();
    let icon = super::Marks::CHAT.of(super::status_word(t)).trim_end();
    let headline = t
        .annotations
        .get("summary")
        .map_or_else(|| t.rule.to_string(), Clone::clone);
    let _ = writeln!(s, "{icon} <b>{}</b>", field(&headline, max));
    let _ = writeln!(
        s,
        "Rule: <code>{}</code> · {}",
        field(&t.rule, max),
        t.severity.as_str()
    );
    if let Some(tracker) = &t.tracker {
        let name = match &tracker.label {
            Some(label) => format!("{label} ({})", tracker.id),
            None => tracker.id.to_string(),
        };
        let _ = writeln!(s, "Tracker: {}", field(&name, max));
    }
    if let Some(value) = &t.value {
        let value = match value {
            Value::String(v) => v.clone(),
            other => other.to_string(),
        };
        let _ = writeln!(s, "Value: {}", field(&value, max));
    }
    let _ = writeln!(s, "Since: {}", rfc3339::format(t.starts_at));
    if let Some(ends_at) = t.ends_at {
        let _ = writeln!(s, "Resolved: {}", rfc3339::format(ends_at));
    }
    if let Some(description) = t.annotations.get("description") {
        let _ = writeln!(s, "<i>{}</i>", field(description, max));
    }
    s
}

/// The messages of a notification: a header, then alert blocks, split between alerts so
/// that each message fits [`MAX_MESSAGE`].
pub fn messages(n: &Notification) -> Vec<String> {
    let title = escape(&super::title(n, super::Marks::CHAT));
    let context = format!(
        "{} · {} · <code>{}</code>",
        escape(&n.receiver),
        escape(&n.reason),
        escape(&n.id)
    );
    // Room for the header, with a ` (12/34)` part count.
    let header_room = length(&title) + length(&context) + 32;
    let budget = MAX_MESSAGE - header_room;
    let mut chunks: Vec<String> = Vec::new();
    let mut current = String::new();
    for t in &n.alerts {
        let mut max = MAX_FIELD;
        let mut b = block(t, max);
        while length(&b) + 1 > budget && max > 16 {
            max /= 2;
            b = block(t, max);
        }
        if !current.is_empty() && length(&current) + length(&b) + 1 > budget {
            chunks.push(std::mem::take(&mut current));
        }
        current.push('\n');
        current.push_str(&b);
    }
    chunks.push(current);
    let total = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let part = if total > 1 {
                format!(" ({}/{total})", i + 1)
            } else {
                String::new()
            };
            format!("<b>{title}</b>{part}\n{context}\n{body}")
                .trim_end()
                .to_owned()
        })
        .collect()
}
