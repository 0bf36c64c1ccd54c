//! What the engine counted: frames, updates by kind, decode errors by kind, unknown
//! events. Kept as plain numbers for `replay --stats` and mirrored into the `metrics`
//! facade for `/metrics`. Also the rate limit on decode-error logs: one line per kind per
//! minute, so a server that sends garbage cannot flood the log.

use std::time::{Duration, Instant};

use crate::navixy::decode::{DecodeError, DecodeErrorKind};
use crate::telemetry;
use crate::text::truncate;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Frames handed to the engine, decodable or not.
    pub frames: u64,
    /// Source states (from `state` and `state_batch`).
    pub states: u64,
    /// Readings items.
    pub readings: u64,
    /// Lifecycle events and items.
    pub lifecycle: u64,
    /// iot_monitor tracker values.
    pub iot: u64,
    /// Handshakes, heartbeats, responses, errors and logouts: for the source, not trackers.
    pub control: u64,
    /// Decode errors by [`DecodeErrorKind::index`] (frames, and batch items dropped alone).
    pub decode_errors: [u64; 4],
    /// Events of an unknown name.
    pub unknown_events: u64,
    /// Batch items of an unknown type.
    pub unknown_items: u64,
    /// Events whose source id is not in the tracker list, or without any id.
    pub unmapped: u64,
    /// Updates older than `max_event_age`: applied, but not notified.
    pub stale: u64,
    /// Ticks sent to the shards.
    pub ticks: u64,
}

impl EngineStats {
    /// Updates routed to shards: states + readings + lifecycle + iot.
    pub fn updates(&self) -> u64 {
        self.states + self.readings + self.lifecycle + self.iot
    }

    pub fn decode_errors_total(&self) -> u64 {
        self.decode_errors.iter().sum()
    }

    pub fn decode_errors_of(&self, kind: DecodeErrorKind) -> u64 {
        self.decode_errors[kind.index()]
    }
}

/// Counts and logs decode errors, at most one log line per kind per minute.
#[derive(Debug)]
pub(crate) struct ErrorLog {
    last: [Option<Instant>; 4],
    suppressed: [u64; 4],
    every: Duration,
}

impl Default for ErrorLog {
    fn default() -> Self {
        ErrorLog {
            last: [None; 4],
            suppressed: [0; 4],
            every: Duration::from_secs(60),
        }
    }
}

impl ErrorLog {
    pub(crate) fn record(&mut self, stats: &mut EngineStats, error: &DecodeError, frame: &str) {
        let i = error.kind.index();
        stats.decode_errors[i] += 1;
        metrics::counter!(telemetry::DECODE_ERRORS, "kind" => error.kind.as_str()).increment(1);
        let now = Instant::now();
        if self.last[i].is_some_and(|t| now.duration_since(t) < self.every) {
            self.suppressed[i] += 1;
            return;
        }
        self.last[i] = Some(now);
        let suppressed = std::mem::take(&mut self.suppressed[i]);
        tracing::warn!(
            kind = error.kind.as_str(),
            error = %truncate(&error.message, 200),
            sample = %truncate(frame, 120),
            suppressed,
            "Skipped undecodable input (logged once a minute per kind)."
        );
    }
}
