//! Email over SMTP (`lettre`): STARTTLS, implicit TLS or plain, with a plain-text and an
//! HTML part, and a subject rendered from a minijinja template.
//!
//! The subject template sees the webhook body's `data` fields (`status`, `receiver`,
//! `reason`, `group_key`, `alerts`, each alert as in the webhook) plus `id` and
//! `group_labels`. The Message-ID is the notification id, so a mail system can drop the
//! copy a retry might produce.

use std::fmt::Write as _;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value;

use super::SendError;
use crate::alert::AlertTransition;
use crate::config::{SmtpConfig, SmtpSecurity};
use crate::dispatch::notification::Notification;
use crate::rfc3339;

/// The subject when the channel sets none: `[FIRING] fuel_drain — Truck 7`,
/// `[FIRING:3] fuel_drain`, `[RESOLVED] fuel_drain — Truck 7`, `[EVENT] ignition_on —
/// Truck 7` (`title_status`: what every channel's title leads with).
pub const DEFAULT_SUBJECT: &str = "[{{ title_status }}{% if alerts|length > 1 %}:{{ alerts|length }}{% endif %}] \
{{ alerts|map(attribute='rule')|unique|join(', ') }}\
{% if alerts|length == 1 and alerts[0].tracker %} — {{ alerts[0].tracker.label or alerts[0].tracker.id }}{% endif %}";

/// Bounds the work a user's subject template may do.
const TEMPLATE_FUEL: u64 = 50_000;

pub struct EmailChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    templates: minijinja::Environment<'static>,
}

/// What the email says, before it becomes MIME.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl EmailChannel {
    pub fn new(
        smtp: &SmtpConfig,
        from: &str,
        to: &[String],
        subject: Option<&str>,
    ) -> Result<EmailChannel, String> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| format!("from: `{from}` is not an email address: {e}"))?;
        if to.is_empty() {
            return Err("to: needs at least one address".into());
        }
        let to = to
            .iter()
            .map(|a| {
                a.parse::<Mailbox>()
                    .map_err(|e| format!("to: `{a}` is not an email address: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let templates = templates(subject)?;
        // lettre's TLS uses rustls; make sure a provider is there.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let host = smtp.host.as_str();
        let builder = match smtp.security {
            SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|e| format!("smtp.host: `{host}`: {e}"))?
                .port(smtp.port.unwrap_or(587)),
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|e| format!("smtp.host: `{host}`: {e}"))?
                .port(smtp.port.unwrap_or(465)),
            SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .port(smtp.port.unwrap_or(25)),
        };
        let mut builder = builder.timeout(Some(smtp.timeout));
        match (&smtp.username, &smtp.password) {
            (Some(user), Some(password)) => {
                builder = builder
                    .credentials(Credentials::new(user.clone(), password.expose().to_owned()));
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err("smtp: set both `username` and `password`, or neither".into());
            }
            (None, None) => {}
        }
        Ok(EmailChannel {
            transport: builder.build(),
            from,
            to,
            templates,
        })
    }

    pub async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let rendered = render(&self.templates, n);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(rendered.subject)
            .message_id(Some(format!("<{}@navixy-alerts>", n.id)));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let message = builder
            .multipart(MultiPart::alternative_plain_html(
                rendered.text,
                rendered.html,
            ))
            .map_err(|e| SendError::permanent(format!("cannot build the email: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            // SMTP 5xx: the server refuses this message for good.
            Err(e) if e.is_permanent() => Err(SendError::permanent(format!("SMTP: {e}"))),
            Err(e) => Err(SendError::retryable(format!("SMTP: {e}"))),
        }
    }
}

/// The template environment with the subject compiled (the channel's own or the default).
pub fn templates(subject: Option<&str>) -> Result<minijinja::Environment<'static>, String> {
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.add_template_owned("default_subject", DEFAULT_SUBJECT)
        .map_err(|e| format!("the default subject does not compile: {e}"))?;
    env.add_template_owned("subject", subject.unwrap_or(DEFAULT_SUBJECT).to_owned())
        .map_err(|e| format!("subject: {e}"))?;
    Ok(env)
}

/// Subject, text and HTML of one notification. A subject template that fails at render
/// time (a missing field, out of fuel) falls back to the default subject, with a warning:
/// a page with a plain subject beats no page.
pub fn render(templates: &minijinja::Environment<'static>, n: &Notification) -> Rendered {
    let ctx = super::template_context(n);
    let subject = templates
        .get_template("subject")
        .and_then(|t| t.render(&ctx))
        .or_else(|e| {
            tracing::warn!(receiver = %n.receiver, error = %e, "Email subject template failed; using the default.");
            templates
                .get_template("default_subject")
                .and_then(|t| t.render(&ctx))
        })
        .unwrap_or_else(|_| format!("[{}] navixy-alerts", super::lead_word(n)));
    // A header is one line.
    let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    Rendered {
        subject,
        text: text(n),
        html: html(n),
    }
}

fn tracker_text(a: &AlertTransition) -> Option<String> {
    a.tracker.as_ref().map(|t| match &t.label {
        Some(label) => format!("{label} (tracker {})", t.id),
        None => format!("tracker {}", t.id),
    })
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The alert's details as (name, value) rows, shared by the text and HTML parts.
fn details(a: &AlertTransition) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    for (name, value) in &a.annotations {
        if name != "summary" {
            rows.push((name.clone(), value.clone()));
        }
    }
    if let Some(v) = &a.value {
        rows.push(("value".into(), value_text(v)));
    }
    rows.push(("started".into(), rfc3339::format(a.starts_at)));
    if let Some(ends_at) = a.ends_at {
        rows.push(("resolved".into(), rfc3339::format(ends_at)));
    }
    if let Some(l) = &a.location {
        rows.push(("location".into(), format!("{}, {}", l.lat, l.lng)));
    }
    if !a.state.is_empty() {
        let state: Vec<String> = a
            .state
            .iter()
            .map(|(k, v)| format!("{k}={}", value_text(v)))
            .collect();
        rows.push(("state".into(), state.join(", ")));
    }
    if !a.labels.is_empty() {
        let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push(("labels".into(), labels.join(", ")));
    }
    rows.push(("fingerprint".into(), a.fingerprint.0.clone()));
    rows
}

fn headline(a: &AlertTransition) -> String {
    let mut s = format!(
        "[{}] {} ({})",
        super::status_word(a),
        a.rule,
        a.severity.as_str()
    );
    if let Some(t) = tracker_text(a) {
        let _ = write!(s, " on {t}");
    }
    s
}

pub fn text(n: &Notification) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} alert{} for {} ({}).",
        n.alerts.len(),
        if n.alerts.len() == 1 { "" } else { "s" },
        n.receiver,
        n.reason
    );
    for a in &n.alerts {
        let _ = writeln!(s, "\n{}", headline(a));
        if let Some(summary) = a.annotations.get("summary") {
            let _ = writeln!(s, "  {summary}");
        }
        for (name, value) in details(a) {
            let _ = writeln!(s, "  {name}: {value}");
        }
    }
    let _ = writeln!(s, "\n--\nnavixy-alerts notification {}", n.id);
    s
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn html(n: &Notification) -> String {
    let mut s = String::new();
    s.push_str("<!DOCTYPE html>\n<html><body style=\"font-family: sans-serif\">\n");
    let _ = writeln!(
        s,
        "<p>{} alert{} for <b>{}</b> ({}).</p>",
        n.alerts.len(),
        if n.alerts.len() == 1 { "" } else { "s" },
        escape(&n.receiver),
        escape(&n.reason)
    );
    for a in &n.alerts {
        let colour = match (a.status, a.severity) {
            (crate::alert::AlertStatus::Resolved, _) => "#2EB67D",
            (_, crate::alert::Severity::Critical) => "#E01E5A",
            (_, crate::alert::Severity::Warning) => "#ECB22E",
            (_, crate::alert::Severity::Info) => "#36C5F0",
        };
        let _ = writeln!(
            s,
            "<h3 style=\"border-left: 6px solid {colour}; padding-left: 8px\">{}</h3>",
            escape(&headline(a))
        );
        if let Some(summary) = a.annotations.get("summary") {
            let _ = writeln!(s, "<p>{}</p>", escape(summary));
        }
        s.push_str("<table>\n");
        for (name, value) in details(a) {
            let _ = writeln!(
                s,
                "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
                escape(&name),
                escape(&value)
            );
        }
        s.push_str("</table>\n");
    }
    let _ = writeln!(
        s,
        "<p style=\"color: #888\">navixy-alerts notification {}</p>\n</body></html>",
        escape(&n.id)
    );
    s
}
