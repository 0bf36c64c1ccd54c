//! Webhook: the notification's JSON body (or the channel's `body:` template rendered),
//! POSTed and signed per Standard Webhooks.
//!
//! Headers: `webhook-id` (the notification id, the same on every retry), `webhook-timestamp`
//! (seconds since the epoch at this attempt) and, with a secret, `webhook-signature:
//! v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the base64-decoded
//! part of the `whsec_...` secret. The signature covers the bytes sent, template or not.

/// Receivers verify with the same key decoding the channel signs with.
pub use crate::config::decode_secret;
use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use sha2::Sha256;

use super::{SendError, deliver, parse_url, sample_notification, template_context};
use crate::config::Secret;
use crate::dispatch::notification::Notification;

/// Bounds the work a body template may do per notification (a loop over a large group
/// fits; a runaway one stops).
const BODY_FUEL: u64 = 1_000_000;

pub struct WebhookChannel {
    http: reqwest::Client,
    url: reqwest::Url,
    /// The HMAC keyed with the decoded signing key, cloned for each request (the key's
    /// two blocks are hashed once per channel, not per request); `None` sends unsigned
    /// requests.
    key: Option<Box<Hmac<Sha256>>>,
    timeout: Duration,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// `None` sends the documented JSON body.
    body: Option<BodyTemplate>,
}

/// The channel's config, borrowed.
pub struct WebhookOptions<'a> {
    pub url: &'a str,
    pub secret: Option<&'a Secret>,
    pub timeout: Duration,
    pub headers: &'a BTreeMap<String, Secret>,
    pub body: Option<&'a str>,
    pub content_type: Option<&'a str>,
}

impl WebhookChannel {
    pub fn new(http: reqwest::Client, o: WebhookOptions<'_>) -> Result<WebhookChannel, String> {
        let url = parse_url("url", o.url)?;
        let key = match o.secret {
            Some(s) if !s.is_empty() => Some(Box::new(
                keyed(&decode_secret(s.expose())?).ok_or("secret: not usable as an HMAC key")?,
            )),
            _ => None,
        };
        let mut extra = Vec::with_capacity(o.headers.len());
        for (name, value) in o.headers {
            let header = HeaderName::try_from(name.as_str())
                .map_err(|_| format!("headers: `{name}` is not a valid header name"))?;
            let mut value = HeaderValue::try_from(value.expose())
                .map_err(|_| format!("headers.{name}: the value is not a valid header value"))?;
            value.set_sensitive(true);
            extra.push((header, value));
        }
        let body = match (o.body, o.content_type) {
            (Some(template), content_type) => Some(BodyTemplate::new(template, content_type)?),
            (None, Some(_)) => {
                return Err("content_type: only with `body:` (the default body is JSON)".into());
            }
            (None, None) => None,
        };
        Ok(WebhookChannel {
            http,
            url,
            key,
            timeout: o.timeout,
            headers: extra,
            body,
        })
    }

    pub async fn send(&self, n: &Notification, now: DateTime<Utc>) -> Result<(), SendError> {
        let (body, content_type) = match &self.body {
            Some(template) => (
                template.render(n).map_err(SendError::permanent)?,
                template.content_type.clone(),
            ),
            None => (
                n.webhook_json(),
                HeaderValue::from_static("application/json"),
            ),
        };
        let timestamp = now.timestamp().to_string();
        let signature = self
            .key
            .as_ref()
            .map(|key| signature((**key).clone(), &n.id, &timestamp, &body));
        let mut request = self
            .http
            .post(self.url.clone())
            .timeout(self.timeout)
            .header(CONTENT_TYPE, content_type)
            .header(WEBHOOK_ID, n.id.as_str())
            .header(WEBHOOK_TIMESTAMP, timestamp);
        if let Some(signature) = signature {
            request = request.header(WEBHOOK_SIGNATURE, signature);
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        deliver(request.body(body)).await
    }
}

const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// A `body:` template, compiled, with the media type it renders.
pub struct BodyTemplate {
    env: minijinja::Environment<'static>,
    content_type: HeaderValue,
    /// JSON output is parsed before it is sent: a quote in a label must not turn a page
    /// into a receiver's 400.
    json: bool,
}

impl BodyTemplate {
    /// Compiles the template and renders it once against [`sample_notification`], so that
    /// a mistake shows at `check` and at start, not at the first alert. Errors start with
    /// `body:` or `content_type:`.
    pub fn new(template: &str, content_type: Option<&str>) -> Result<BodyTemplate, String> {
        let content_type = content_type.unwrap_or("application/json");
        let header = HeaderValue::try_from(content_type)
            .map_err(|_| format!("content_type: `{content_type}` is not a valid header value"))?;
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let json = essence == "application/json" || essence.ends_with("+json");
        let mut env = minijinja::Environment::new();
        env.set_fuel(Some(BODY_FUEL));
        // What a template writes is what is sent: the receiver decides the escaping
        // (`|tojson` in JSON, `|urlencode` in a form).
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.add_template_owned("body", template.to_owned())
            .map_err(|e| format!("body: {}", describe(&e)))?;
        let compiled = BodyTemplate {
            env,
            content_type: header,
            json,
        };
        compiled.render(&sample_notification("sample", chrono::Utc::now()))?;
        Ok(compiled)
    }

    /// The body for `n`; an error (a template that fails, JSON that does not parse) starts
    /// with `body:`.
    pub fn render(&self, n: &Notification) -> Result<Vec<u8>, String> {
        let text = self
            .env
            .get_template("body")
            .and_then(|t| t.render(template_context(n)))
            .map_err(|e| format!("body: {}", describe(&e)))?;
        if self.json
            && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&text)
        {
            return Err(format!(
                "body: renders invalid JSON (content_type is JSON): {e} of the output \
                 (write strings with `|tojson`)"
            ));
        }
        Ok(text.into_bytes())
    }
}

/// A template error with the template's line, e.g. `line 2: unknown filter: nope`.
fn describe(e: &minijinja::Error) -> String {
    let detail = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    match e.line() {
        Some(line) => format!("template line {line}: {detail}"),
        None => detail,
    }
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    match keyed(key) {
        Some(mac) => signature(mac, id, &timestamp.to_string(), body),
        None => String::new(),
    }
}

/// The HMAC keyed with `key`, before any message. HMAC accepts keys of any length, so
/// this is never `None`.
fn keyed(key: &[u8]) -> Option<Hmac<Sha256>> {
    Hmac::<Sha256>::new_from_slice(key).ok()
}

/// [`sign`] with the keyed HMAC and the timestamp as sent.
fn signature(mut mac: Hmac<Sha256>, id: &str, timestamp: &str, body: &[u8]) -> String {
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let mut out = String::with_capacity(3 + 44);
    out.push_str("v1,");
    BASE64.encode_string(mac.finalize().into_bytes(), &mut out);
    out
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
