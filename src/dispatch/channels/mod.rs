//! The channels: each renders a [`Notification`] for one kind of receiver and sends it,
//! saying whether a failure is worth retrying. They know nothing of the outbox; the
//! sender in `dispatch::outbox` decides when to call them again.

pub mod alertmanager;
pub mod email;
pub mod slack;
pub mod stdout;
pub mod webhook;

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::notification::Notification;
use crate::config::ChannelConfig;

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
            ChannelConfig::Stdout { json } => Channel::Stdout(stdout::StdoutChannel::new(*json)),
            ChannelConfig::Webhook {
                url,
                secret,
                timeout,
                headers,
            } => Channel::Webhook(
                webhook::WebhookChannel::new(http.clone(), url, secret.as_ref(), *timeout, headers)
                    .map_err(invalid)?,
            ),
            ChannelConfig::Slack {
                webhook_url,
                timeout,
            } => Channel::Slack(
                slack::SlackChannel::new(http.clone(), webhook_url, *timeout).map_err(invalid)?,
            ),
            ChannelConfig::Email {
                smtp,
                from,
                to,
                subject,
            } => Channel::Email(
                email::EmailChannel::new(smtp, from, to, subject.as_deref()).map_err(invalid)?,
            ),
            ChannelConfig::Alertmanager { url, timeout } => Channel::Alertmanager(
                alertmanager::AlertmanagerChannel::new(http.clone(), url, *timeout)
                    .map_err(invalid)?,
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
        }
    }
}

/// The HTTP client the HTTP channels share. Installs the ring crypto provider first, as
/// reqwest is built without one.
pub fn http_client() -> Result<reqwest::Client, String> {
    // Err means a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("navixy-alerts/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
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
    let response = request.send().await.map_err(|e| {
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
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = retry_after(response.headers(), chrono::Utc::now());
    // A short excerpt of the body helps whoever reads the failure (Slack says why).
    let body = response.text().await.unwrap_or_default();
    let excerpt: String = body.chars().take(200).collect();
    let message = if excerpt.trim().is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {}", excerpt.trim())
    };
    if is_retryable(status) {
        Err(SendError::Retryable {
            message,
            retry_after,
        })
    } else {
        Err(SendError::permanent(message))
    }
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
