//! Stdout: one line per notification, readable by default, or the webhook body as one
//! JSON object per line with `json: true` (for `jq` and log shippers).

use std::fmt::Write as _;
use std::io::Write as _;

use super::SendError;
use crate::dispatch::notification::Notification;
use crate::rfc3339;

pub struct StdoutChannel {
    json: bool,
}

impl StdoutChannel {
    pub fn new(json: bool) -> StdoutChannel {
        StdoutChannel { json }
    }

    pub fn send(&self, n: &Notification) -> Result<(), SendError> {
        let mut line = if self.json {
            String::from_utf8(n.webhook_json()).unwrap_or_default()
        } else {
            line(n)
        };
        line.push('\n');
        // One write of the whole line under the lock: lines from several channels never
        // interleave. A closed stdout will not open again, so it is permanent.
        let mut out = std::io::stdout().lock();
        out.write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| SendError::permanent(format!("cannot write to stdout: {e}")))
    }
}

/// The readable line:
/// `2026-01-01T10:00:00Z FIRING console msg_… (first notification) | fuel_drain critical tracker=21080 "Truck 7" value=17.2: summary`;
/// `EVENT` for occurrences, and an alert that is not what the line leads with says what it is.
pub fn line(n: &Notification) -> String {
    let mut s = String::with_capacity(160);
    let lead = super::lead_word(n);
    let _ = write!(
        s,
        "{} {} {} {} ({})",
        rfc3339::format(n.created_at),
        lead,
        n.receiver,
        n.id,
        n.reason
    );
    for a in &n.alerts {
        let _ = write!(s, " | {} {}", a.rule, a.severity.as_str());
        let word = super::status_word(a);
        if word != lead {
            let _ = write!(s, " {}", word.to_lowercase());
        }
        if let Some(t) = &a.tracker {
            let _ = write!(s, " tracker={}", t.id);
            if let Some(label) = &t.label {
                let _ = write!(s, " {label:?}");
            }
        }
        if let Some(key) = &a.key {
            let _ = write!(s, " key={key:?}");
        }
        if let Some(v) = &a.value {
            let _ = write!(s, " value={v}");
        }
        if let Some(summary) = a.annotations.get("summary") {
            let _ = write!(s, ": {}", summary.replace('\n', " "));
        }
    }
    s
}
