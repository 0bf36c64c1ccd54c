//! The Prometheus side of the `metrics` facade: one recorder per process, and every
//! metric of [`crate::telemetry`] registered at start so that `/metrics` lists them all
//! from the first scrape (a counter that is only created on its first increment would be
//! missing, and `rate()` over a series that appears late loses its first step).
//!
//! Counters that code creates before the recorder is installed stay no-ops forever (the
//! rule evaluator keeps its counter handles), so the daemon installs the recorder before
//! it starts anything else.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::Config;
use crate::navixy::decode::DecodeErrorKind;
use crate::rules::RuleSet;
use crate::rules::faults::FaultKind;
use crate::rules::script::Answer;
use crate::telemetry::*;

/// Buckets of the evaluation latency histogram, in seconds: the target is 5 ms at p99.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder the first time it is called and returns
/// its handle; later calls (a second daemon in the same test process) share it. `None`
/// when another recorder was installed first: `/metrics` then says so.
pub fn install() -> Option<PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(EVAL_LATENCY.into()), &LATENCY_BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot install the Prometheus recorder; /metrics is unavailable.");
                    None
                }
            }
        })
        .clone()
}

/// HELP lines for every metric.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(FRAMES, "Frames received, by source.");
    describe_counter!(
        DECODE_ERRORS,
        "Frames or items that failed to decode, by kind."
    );
    describe_counter!(UNKNOWN_EVENTS, "Events or items of an unknown type.");
    describe_counter!(UPDATES, "Tracker updates applied, by kind and source.");
    describe_counter!(RULE_EVALUATIONS, "Rule evaluations, by rule.");
    describe_counter!(
        RULE_FAST_PATH,
        "Expression evaluations by rule and by the evaluator that answered (fast: direct; fallback: Rhai)."
    );
    describe_counter!(RULE_ERRORS, "Rule evaluation errors, by rule and kind.");
    describe_counter!(ALERT_TRANSITIONS, "Alert transitions, by rule and status.");
    describe_gauge!(ALERTS, "Live alerts, by state (pending, firing).");
    describe_counter!(NOTIFICATIONS_SENT, "Notifications accepted by a channel.");
    describe_counter!(
        NOTIFICATIONS_FAILED,
        "Notifications that failed for good (permanent error or gave up)."
    );
    describe_counter!(
        NOTIFICATIONS_RETRIED,
        "Notification attempts that will be retried."
    );
    describe_counter!(NOTIFICATIONS_SILENCED, "Notifications silenced.");
    describe_gauge!(OUTBOX_DEPTH, "Notifications waiting in the outbox.");
    describe_counter!(WS_RECONNECTS, "WebSocket reconnect attempts.");
    describe_gauge!(SOURCE_UP, "1 while a source subscription works, else 0.");
    describe_counter!(
        CONTEXT_REFRESHES,
        "Fetches of Navixy's context (zones, groups, tags, drivers), by result."
    );
    describe_histogram!(
        EVAL_LATENCY,
        Unit::Seconds,
        "Time from a frame's arrival to the end of its evaluation (sampled)."
    );
    describe_counter!(RELOADS, "Rule set reloads, by result.");
    describe_gauge!(
        LEASE_HELD,
        "1 while this instance holds the source's lease (cluster), else 0."
    );
    describe_gauge!(
        LEASE_EPOCH,
        "The epoch of the source's lease as last read (cluster)."
    );
    describe_counter!(
        LEASE_TAKEOVERS,
        "Leases this instance took over from another instance (cluster)."
    );
}

/// Registers every metric with the label values known at start (sources, decode error
/// kinds, update kinds, channels, rules), at zero. A label whose values are open (the
/// `type` of unknown events) is registered without it.
pub fn register(config: &Config, rules: &RuleSet, source: &'static str) {
    let mut sources: Vec<String> = config
        .sources()
        .iter()
        .map(|s| s.name().to_string())
        .collect();
    if sources.is_empty() {
        sources.push(source.to_string());
    }
    for source in &sources {
        metrics::counter!(FRAMES, "source" => source.clone()).increment(0);
        for kind in ["state", "readings", "lifecycle", "iot"] {
            metrics::counter!(UPDATES, "kind" => kind, "source" => source.clone()).increment(0);
        }
        metrics::counter!(WS_RECONNECTS, "source" => source.clone()).increment(0);
        metrics::gauge!(SOURCE_UP, "source" => source.clone()).increment(0.0);
        for result in ["ok", "error"] {
            metrics::counter!(CONTEXT_REFRESHES, "result" => result, "source" => source.clone())
                .increment(0);
        }
    }
    for kind in DecodeErrorKind::ALL {
        metrics::counter!(DECODE_ERRORS, "kind" => kind.as_str()).increment(0);
    }
    metrics::counter!(UNKNOWN_EVENTS).increment(0);
    for channel in config.channels.keys() {
        for name in [
            NOTIFICATIONS_SENT,
            NOTIFICATIONS_FAILED,
            NOTIFICATIONS_RETRIED,
            NOTIFICATIONS_SILENCED,
        ] {
            metrics::counter!(name, "channel" => channel.clone()).increment(0);
        }
    }
    metrics::gauge!(OUTBOX_DEPTH).increment(0.0);
    let _ = metrics::histogram!(EVAL_LATENCY);
    for state in ["pending", "firing"] {
        metrics::gauge!(ALERTS, "state" => state).increment(0.0);
    }
    for result in ["ok", "error"] {
        metrics::counter!(RELOADS, "result" => result).increment(0);
    }
    register_rules(rules);
}

/// Registers the per-rule series of a (new) rule set.
pub fn register_rules(rules: &RuleSet) {
    for rule in rules.rules() {
        let name = rule.name.to_string();
        metrics::counter!(RULE_EVALUATIONS, "rule" => name.clone()).increment(0);
        for answer in Answer::ALL {
            metrics::counter!(RULE_FAST_PATH, "rule" => name.clone(), "outcome" => answer.as_str())
                .increment(0);
        }
        for kind in FaultKind::ALL {
            metrics::counter!(RULE_ERRORS, "rule" => name.clone(), "kind" => kind.as_str())
                .increment(0);
        }
        for status in ["firing", "resolved"] {
            metrics::counter!(ALERT_TRANSITIONS, "rule" => name.clone(), "status" => status)
                .increment(0);
        }
    }
}
