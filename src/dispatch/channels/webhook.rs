//! Webhook: the notification's JSON body, POSTed and signed per Standard Webhooks.
//!
//! Headers: `webhook-id` (the notification id, the same on every retry), `webhook-timestamp`
//! (seconds since the epoch at this attempt) and, with a secret, `webhook-signature:
//! v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the base64-decoded
//! part of the `whsec_...` secret.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use sha2::Sha256;

use super::{SendError, deliver, parse_url};
use crate::config::Secret;
use crate::dispatch::notification::Notification;

pub struct WebhookChannel {
    http: reqwest::Client,
    url: reqwest::Url,
    /// The decoded signing key; `None` sends unsigned requests.
    key: Option<Vec<u8>>,
    timeout: Duration,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl WebhookChannel {
    pub fn new(
        http: reqwest::Client,
        url: &str,
        secret: Option<&Secret>,
        timeout: Duration,
        headers: &BTreeMap<String, Secret>,
    ) -> Result<WebhookChannel, String> {
        let url = parse_url("url", url)?;
        let key = match secret {
            Some(s) if !s.is_empty() => Some(decode_secret(s.expose())?),
            _ => None,
        };
        let mut extra = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            let header = HeaderName::try_from(name.as_str())
                .map_err(|_| format!("headers: `{name}` is not a valid header name"))?;
            let mut value = HeaderValue::try_from(value.expose())
                .map_err(|_| format!("headers.{name}: the value is not a valid header value"))?;
            value.set_sensitive(true);
            extra.push((header, value));
        }
        Ok(WebhookChannel {
            http,
            url,
            key,
            timeout,
            headers: extra,
        })
    }

    pub async fn send(&self, n: &Notification, now: DateTime<Utc>) -> Result<(), SendError> {
        let body = n.webhook_json();
        let timestamp = now.timestamp();
        let mut request = self
            .http
            .post(self.url.clone())
            .timeout(self.timeout)
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", &n.id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(key) = &self.key {
            request = request.header("webhook-signature", sign(key, &n.id, timestamp, &body));
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        deliver(request.body(body)).await
    }
}

/// The signing key of a `whsec_<base64>` secret (the prefix is optional).
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    match BASE64.decode(encoded) {
        Ok(key) if !key.is_empty() => Ok(key),
        _ => Err("secret: must be `whsec_` followed by base64 (Standard Webhooks)".into()),
    }
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// Checks a `webhook-signature` header (which may hold several space-separated
/// signatures) against the request, for receivers written in Rust and for tests.
pub fn verify(key: &[u8], id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return false;
    };
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    header.split(' ').any(|sig| {
        sig.strip_prefix("v1,")
            .and_then(|b64| BASE64.decode(b64).ok())
            // `verify_slice` compares in constant time.
            .is_some_and(|expected| mac.clone().verify_slice(&expected).is_ok())
    })
}
