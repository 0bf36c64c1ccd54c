//! The channels: each renders a [`Notification`] for one kind of receiver and sends it,
//! saying whether a failure is worth retrying. They know nothing of the outbox; the
//! sender in `dispatch::outbox` decides when to call them again.
//!
//! The HTTP channels share one client ([`http_client`]) that follows no redirect and sends
//! no `Referer`, and one way of reading answers ([`deliver`]). A new channel is a file
//! here and a variant of [`ChannelConfig`].

pub mod alertmanager;
pub mod email;
pub mod pagerduty;
pub mod slack;
pub mod stdout;
pub mod teams;
pub mod telegram;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::Value;

use super::notification::{Notification, NotificationKind};
use crate::alert::{AlertStatus, AlertTransition, Severity};
use crate::config::{ChannelConfig, Config};
use crate::rfc3339;

/// A channel that cannot be built from its config, naming it.
#[derive(Debug, thiserror::Error)]
#[error("channels.{channel}: {message}")]
pub struct ChannelError {
    pub channel: String,
    pub message: String,
}

/// Why a delivery attempt failed, and whether to try again.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    /// Network errors, timeouts, 5xx, 408, 429, SMTP 4xx: try again later, no sooner than
    /// `retry_after` when the receiver said so.
    #[error("{message}")]
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Other 4xx, SMTP 5xx, a rendering error: trying again would fail the same way.
    #[error("{message}")]
    Permanent { message: String },
}

impl SendError {
    pub fn retryable(message: impl Into<String>) -> SendError {
        SendError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn permanent(message: impl Into<String>) -> SendError {
        SendError::Permanent {
            message: message.into(),
        }
    }
}

/// One configured channel.
pub enum Channel {
    Stdout(stdout::StdoutChannel),
    Webhook(webhook::WebhookChannel),
    Slack(slack::SlackChannel),
    Email(email::EmailChannel),
    Alertmanager(alertmanager::AlertmanagerChannel),
    Pagerduty(pagerduty::PagerdutyChannel),
    Telegram(telegram::TelegramChannel),
    Teams(teams::TeamsChannel),
}

impl Channel {
    /// Builds a channel; `http` is shared by the HTTP channels (one connection pool).
    pub fn build(
        name: &str,
        config: &ChannelConfig,
        http: &reqwest::Client,
    ) -> Result<Channel, ChannelError> {
        let invalid = |message: String| ChannelError {
            channel: name.to_owned(),
            message,
        };
        Ok(match config {
            ChannelConfig::Stdout { json, .. } => {
                Channel::Stdout(stdout::StdoutChannel::new(*json))
            }
            ChannelConfig::Webhook {
                url,
                secret,
                timeout,
                headers,
                body,
                content_type,
                ..
            } => Channel::Webhook(
                webhook::WebhookChannel::new(
                    http.clone(),
                    webhook::WebhookOptions {
                        url,
                        secret: secret.as_ref(),
                        timeout: *timeout,
                        headers,
                        body: body.as_deref(),
                        content_type: content_type.as_deref(),
                    },
                )
                .map_err(invalid)?,
            ),
            ChannelConfig::Slack {
                webhook_url,
                timeout,
                ..
            } => Channel::Slack(
                slack::SlackChannel::new(http.clone(), webhook_url, *timeout).map_err(invalid)?,
            ),
            ChannelConfig::Email {
                smtp,
                from,
                to,
                subject,
                ..
            } => Channel::Email(
                email::EmailChannel::new(smtp, from, to, subject.as_deref()).map_err(invalid)?,
            ),
            ChannelConfig::Alertmanager { url, timeout, .. } => Channel::Alertmanager(
                alertmanager::AlertmanagerChannel::new(http.clone(), url, *timeout)
                    .map_err(invalid)?,
            ),
            ChannelConfig::Pagerduty {
                routing_key,
                url,
                timeout,
                ..
            } => Channel::Pagerduty(
                pagerduty::PagerdutyChannel::new(http.clone(), routing_key, url, *timeout)
                    .map_err(invalid)?,
            ),
            ChannelConfig::Telegram {
                bot_token,
                chat_id,
                api_url,
                timeout,
                ..
            } => Channel::Telegram(
                telegram::TelegramChannel::new(http.clone(), bot_token, chat_id, api_url, *timeout)
                    .map_err(invalid)?,
            ),
            ChannelConfig::Teams {
                webhook_url,
                timeout,
                ..
            } => Channel::Teams(
                teams::TeamsChannel::new(http.clone(), webhook_url, *timeout).map_err(invalid)?,
            ),
        })
    }

    /// One delivery attempt at `now` (the engine clock; webhooks sign with it).
    pub async fn send(&self, n: &Notification, now: DateTime<Utc>) -> Result<(), SendError> {
        match self {
            Channel::Stdout(c) => c.send(n),
            Channel::Webhook(c) => c.send(n, now).await,
            Channel::Slack(c) => c.send(n).await,
            Channel::Email(c) => c.send(n).await,
            Channel::Alertmanager(c) => c.send(n).await,
            Channel::Pagerduty(c) => c.send(n).await,
            Channel::Telegram(c) => c.send(n).await,
            Channel::Teams(c) => c.send(n).await,
        }
    }
}

/// The HTTP client the HTTP channels share. Installs the ring crypto provider first, as
/// reqwest is built without one.
///
/// It follows no redirect: a receiver that answers `307 Location: http://other-host/`
/// would otherwise get the signed body, the configured `headers:` (credentials) and the
/// original, secret URL re-sent to a host nobody configured. A 3xx is a permanent failure
/// instead ([`deliver`]), and no request carries a `Referer`.
pub fn http_client() -> Result<reqwest::Client, String> {
    // Err means a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("navixy-alerts/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        // Each request has its channel's `timeout`; this bounds the connect within it.
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// The longest a connection may take to open (the channel's `timeout` bounds it too).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks what [`Channel::build`] cannot place in the file: a webhook `body:` template is
/// rendered against [`sample_notification`], and an error names the file, the line of the
/// `body:` key (when it can be found) and the channel. `check -c FILE` calls it.
pub fn validate(config: &Config) -> Result<(), String> {
    let text = std::fs::read_to_string(&config.path).unwrap_or_default();
    for (name, channel) in &config.channels {
        if let ChannelConfig::Webhook {
            body: Some(body),
            content_type,
            ..
        } = channel
            && let Err(message) = webhook::BodyTemplate::new(body, content_type.as_deref())
        {
            let place = match key_position(&text, name, "body") {
                Some((line, column)) => format!("{}:{line}:{column}", config.path.display()),
                None => config.path.display().to_string(),
            };
            return Err(format!("{place}: channels.{name}.{message}"));
        }
    }
    Ok(())
}

/// The 1-based line and column of `key:` inside `channels.<channel>` of a config's text,
/// from indentation (block style) or on the channel's own line (flow style).
fn key_position(text: &str, channel: &str, key: &str) -> Option<(usize, usize)> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| l.starts_with("channels:"))?;
    let mut channel_line = None;
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if indent(line) == 0 {
            break;
        }
        let name = trimmed
            .split_once(':')
            .map(|(k, _)| k.trim().trim_matches(['"', '\'']));
        if name == Some(channel) {
            channel_line = Some(i);
            break;
        }
    }
    let first = channel_line?;
    let own_indent = indent(lines[first]);
    for (i, line) in lines.iter().enumerate().skip(first) {
        if i > first && !line.trim().is_empty() && indent(line) <= own_indent {
            break;
        }
        let pattern = format!("{key}:");
        let found = line.match_indices(&pattern).map(|(c, _)| c).find(|&c| {
            // The whole key, not the end of a longer one.
            line[..c]
                .chars()
                .next_back()
                .is_none_or(|b| matches!(b, ' ' | '{' | ',' | '\t'))
        });
        // Skip the channel's own key when the key is searched on its line.
        if let Some(c) = found
            && (i > first || c > indent(line))
        {
            return Some((i + 1, c + 1));
        }
    }
    None
}

/// A notification for trying a channel out (`notify-test`) and checking templates
/// (`check`): one firing alert with every field set.
pub fn sample_notification(receiver: &str, now: DateTime<Utc>) -> Notification {
    // The shared fixture is the one place that knows every field of a transition.
    let mut alert = super::testing::firing("notify_test", 12345);
    alert.severity = Severity::Info;
    if let Some(tracker) = alert.tracker.as_mut() {
        tracker.label = Some("Test vehicle".into());
    }
    alert.labels.clear();
    alert.annotations = [
        (
            "summary".to_owned(),
            "Test notification from navixy-alerts".to_owned(),
        ),
        (
            "description".to_owned(),
            format!("Sent by `navixy-alerts notify-test` to check the channel {receiver}."),
        ),
    ]
    .into();
    alert.starts_at = now;
    alert.at = now;
    Notification {
        id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
        receiver: receiver.to_owned(),
        group_key: "notify-test".into(),
        group_labels: [("rule".to_owned(), "notify_test".to_owned())].into(),
        status: AlertStatus::Firing,
        reason: "test".into(),
        created_at: now,
        alerts: vec![Arc::new(alert)],
        kind: NotificationKind::Alerts,
        acks: Default::default(),
        ack_urls: Default::default(),
    }
}

/// What templates see (webhook `body:`, email `subject:`): the webhook body's `data`,
/// plus `id`, `type`, `timestamp` and `group_labels`.
pub(crate) fn template_context(n: &Notification) -> Value {
    let mut body = serde_json::to_value(n.webhook_body()).unwrap_or(Value::Null);
    let mut ctx = match body.get_mut("data").map(Value::take) {
        Some(Value::Object(data)) => data,
        _ => serde_json::Map::new(),
    };
    ctx.insert("id".into(), Value::String(n.id.clone()));
    ctx.insert("type".into(), Value::String(n.event_type().into()));
    ctx.insert(
        "timestamp".into(),
        Value::String(rfc3339::format(n.created_at)),
    );
    ctx.insert("title_status".into(), Value::String(lead_word(n).into()));
    ctx.insert(
        "group_labels".into(),
        serde_json::to_value(&n.group_labels).unwrap_or(Value::Null),
    );
    Value::Object(ctx)
}

/// `text` with every occurrence of a secret replaced by `***`: for errors built from what
/// a receiver answered, which might echo a token back.
pub(crate) fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_owned()
    } else {
        text.replace(secret, "***")
    }
}

/// Checks an HTTP(S) URL from the config.
pub(crate) fn parse_url(field: &str, url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("{field}: `{url}` is not a valid URL: {e}"))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        other => Err(format!(
            "{field}: `{url}` must be http or https, not {other}"
        )),
    }
}

/// An HTTP endpoint that takes a JSON body: what the Slack and Alertmanager channels post
/// their payloads to.
pub(crate) struct JsonEndpoint {
    pub http: reqwest::Client,
    pub url: reqwest::Url,
    pub timeout: Duration,
}

impl JsonEndpoint {
    pub async fn post(&self, body: &impl serde::Serialize) -> Result<(), SendError> {
        let request = self
            .http
            .post(self.url.clone())
            .timeout(self.timeout)
            .json(body);
        deliver(request).await
    }
}

/// Sends a request and maps the answer: 2xx is success; 408, 429 and 5xx are retried
/// (honouring `Retry-After`); other statuses are permanent; network errors and timeouts
/// are retried.
pub(crate) async fn deliver(request: reqwest::RequestBuilder) -> Result<(), SendError> {
    let response = send(request).await?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = retry_after(response.headers(), chrono::Utc::now());
    // A short excerpt of the body helps whoever reads the failure (Slack says why).
    let body = response.text().await.unwrap_or_default();
    Err(failure(status, &body, retry_after))
}

/// The error for a non-2xx answer: a redirect and other 4xx are permanent; 408, 429 and
/// 5xx are retried.
pub(crate) fn failure(status: StatusCode, body: &str, retry_after: Option<Duration>) -> SendError {
    if status.is_redirection() {
        // The Location is not shown: it may carry a token, and it is not where we go.
        return SendError::permanent(format!(
            "HTTP {status}: the receiver redirects, and redirects are not followed \
             (set the channel's URL to the final address)"
        ));
    }
    let excerpt: String = body.chars().take(200).collect();
    let message = if excerpt.trim().is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {}", excerpt.trim())
    };
    if is_retryable(status) {
        SendError::Retryable {
            message,
            retry_after,
        }
    } else {
        SendError::permanent(message)
    }
}

/// Sends a request; a network error or a timeout is retryable, and its message carries no
/// URL.
pub(crate) async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, SendError> {
    request.send().await.map_err(|e| {
        let kind = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "cannot connect"
        } else {
            "request failed"
        };
        // Without the URL: a Slack webhook URL is a secret, and any URL may carry a
        // token; the channel's name says where. The source chain says why (connection
        // refused, DNS, TLS).
        let e = e.without_url();
        let mut message = format!("{kind}: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(&format!(": {s}"));
            source = s.source();
        }
        if e.is_builder() {
            SendError::permanent(message)
        } else {
            SendError::retryable(message)
        }
    })
}

pub(crate) fn is_retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// `Retry-After` as seconds or an HTTP date (RFC 9110); `None` when absent or unreadable.
pub(crate) fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests;

/// What one alert is in titles and headlines: `FIRING`, `EVENT` (an occurrence of an
/// event rule: it has no resolve, so "firing" would promise one) or `RESOLVED`.
pub(crate) fn status_word(t: &AlertTransition) -> &'static str {
    match t.status {
        _ if t.is_event() => "EVENT",
        AlertStatus::Firing => "FIRING",
        AlertStatus::Resolved => "RESOLVED",
    }
}

/// The words a title counts, in the order it shows them.
const TITLE_WORDS: [&str; 3] = ["FIRING", "EVENT", "RESOLVED"];

/// How many alerts of a notification each of [`TITLE_WORDS`] stands for.
fn tally(n: &Notification) -> [usize; 3] {
    let mut counts = [0; 3];
    for a in &n.alerts {
        let word = status_word(a);
        if let Some(i) = TITLE_WORDS.iter().position(|w| *w == word) {
            counts[i] += 1;
        }
    }
    counts
}

/// What a notification leads with: `FIRING` when a state alert in it fires, else `EVENT`
/// when it carries an occurrence, else `RESOLVED`. Every channel's title (and the email
/// subject's `title_status`) says it, so a group that mixes them reads the same
/// everywhere: the most urgent first.
pub(crate) fn lead_word(n: &Notification) -> &'static str {
    let counts = tally(n);
    let lead = counts.iter().position(|c| *c > 0).unwrap_or(0);
    TITLE_WORDS[lead]
}

/// The marks a title is led by, per lead word.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Marks {
    pub firing: &'static str,
    pub event: &'static str,
    pub resolved: &'static str,
}

impl Marks {
    /// Chat: an emoji per kind.
    pub const CHAT: Marks = Marks {
        firing: "🔥 ",
        event: "🔔 ",
        resolved: "✅ ",
    };
    /// None, where colour says it.
    pub const PLAIN: Marks = Marks {
        firing: "",
        event: "",
        resolved: "",
    };

    /// The mark of a word of [`status_word`] or [`lead_word`].
    pub fn of(&self, word: &str) -> &'static str {
        match word {
            "EVENT" => self.event,
            "RESOLVED" => self.resolved,
            _ => self.firing,
        }
    }
}

/// A notification's one-line title, `[FIRING:2, EVENT:1, RESOLVED:1] rule_a, rule_b`:
/// each kind of alert it holds counted (the kinds it lacks left out), led by the mark of
/// its [`lead_word`]. An occurrence reads `[EVENT:1] ignition_on`, never `FIRING`.
fn title(n: &Notification, marks: Marks) -> String {
    let counts = tally(n);
    let parts: Vec<String> = TITLE_WORDS
        .iter()
        .zip(counts)
        .filter(|(_, c)| *c > 0)
        .map(|(w, c)| format!("{w}:{c}"))
        .collect();
    // Each rule once, in the order of its first alert.
    let mut rules: Vec<&str> = Vec::new();
    for a in &n.alerts {
        if !rules.contains(&&*a.rule) {
            rules.push(&a.rule);
        }
    }
    format!(
        "{}[{}] {}",
        marks.of(lead_word(n)),
        parts.join(", "),
        rules.join(", ")
    )
}
