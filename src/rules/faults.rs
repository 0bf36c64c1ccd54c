//! Rule faults: an expression that errors or runs out of operations is skipped for that
//! tracker, counted per rule and kind (`navixy_alerts_rule_errors_total`), and logged at
//! most once per (rule, kind) per minute, so a broken rule on a big fleet cannot flood the
//! log. The other rules go on. Each rule's count and last fault since the rule set was
//! loaded are kept too ([`RuleFaults`]), for the console's Rules page.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use rhai::EvalAltResult;

/// Why an evaluation failed; the `kind` label of the error counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// Ran past the operation budget (an endless or too long loop).
    Operations,
    /// A string, array or map grew past its limit, or calls nested too deep.
    Limits,
    /// The expression raised an error: a missing function, a type mismatch, arithmetic
    /// on a missing value, an unknown zone...
    Runtime,
    /// `when` or `clear_when` gave something other than a bool or `()`.
    Type,
    /// An annotation template failed to render (the raw template is sent instead).
    Template,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Operations,
        FaultKind::Limits,
        FaultKind::Runtime,
        FaultKind::Type,
        FaultKind::Template,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Operations => "operations",
            FaultKind::Limits => "limits",
            FaultKind::Runtime => "runtime",
            FaultKind::Type => "type",
            FaultKind::Template => "template",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Classifies a Rhai error.
    pub fn of(err: &EvalAltResult) -> FaultKind {
        match err {
            EvalAltResult::ErrorTooManyOperations(..) => FaultKind::Operations,
            EvalAltResult::ErrorDataTooLarge(..)
            | EvalAltResult::ErrorStackOverflow(..)
            | EvalAltResult::ErrorTooManyVariables(..) => FaultKind::Limits,
            EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => FaultKind::of(inner),
            _ => FaultKind::Runtime,
        }
    }
}

/// One fault, as `test` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub rule: std::sync::Arc<str>,
    /// `when`, `value`, `annotations.summary`...
    pub field: String,
    pub tracker_id: i64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub kind: FaultKind,
    pub message: String,
}

/// When each (rule, kind) was last logged, shared by all shards of a rule set, and each
/// rule's fault count and last fault.
#[derive(Debug)]
pub(crate) struct FaultLog {
    /// Epoch seconds of the last log line per `rule * KINDS + kind`; `i64::MIN` = never.
    last: Vec<AtomicI64>,
    /// Faults per rule.
    counts: Vec<AtomicU64>,
    /// The last fault per rule. A shard that finds the slot taken by another leaves it:
    /// the count stays exact, the message is one of the latest.
    latest: Vec<parking_lot::Mutex<Option<LastFault>>>,
}

/// A rule's faults since its rule set was loaded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleFaults {
    pub count: u64,
    pub last: Option<LastFault>,
}

/// The last fault of a rule: when, where, for which tracker, and the message.
#[derive(Debug, Clone, PartialEq)]
pub struct LastFault {
    pub at: chrono::DateTime<chrono::Utc>,
    pub kind: FaultKind,
    /// `when`, `value`, `annotations.summary`...
    pub field: String,
    pub tracker_id: i64,
    pub message: String,
}

/// One log line per (rule, kind) per this many seconds.
pub(crate) const LOG_EVERY_S: i64 = 60;

impl FaultLog {
    pub fn new(rules: usize) -> FaultLog {
        FaultLog {
            last: (0..rules * FaultKind::ALL.len())
                .map(|_| AtomicI64::new(i64::MIN))
                .collect(),
            counts: (0..rules).map(|_| AtomicU64::new(0)).collect(),
            latest: (0..rules).map(|_| parking_lot::Mutex::new(None)).collect(),
        }
    }

    /// Counts a fault of rule `rule` and keeps it as its last; `fault` is only called
    /// when it is kept.
    pub fn record(&self, rule: usize, fault: impl FnOnce() -> LastFault) {
        if let Some(count) = self.counts.get(rule) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(mut slot) = self.latest.get(rule).and_then(|m| m.try_lock()) {
            *slot = Some(fault());
        }
    }

    /// Rule `rule`'s faults so far.
    pub fn of(&self, rule: usize) -> RuleFaults {
        RuleFaults {
            count: self
                .counts
                .get(rule)
                .map_or(0, |c| c.load(Ordering::Relaxed)),
            last: self.latest.get(rule).and_then(|m| m.lock().clone()),
        }
    }

    /// Whether a fault at `now_s` should be logged; claims the slot if so, so that of two
    /// shards failing at once only one logs.
    pub fn should_log(&self, rule: usize, kind: FaultKind, now_s: i64) -> bool {
        let Some(slot) = self.last.get(rule * FaultKind::ALL.len() + kind.index()) else {
            return false;
        };
        let last = slot.load(Ordering::Relaxed);
        if last != i64::MIN && now_s.saturating_sub(last) < LOG_EVERY_S && now_s >= last {
            return false;
        }
        slot.compare_exchange(last, now_s, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_per_minute_per_rule_and_kind() {
        let log = FaultLog::new(2);
        assert!(log.should_log(0, FaultKind::Runtime, 1000));
        assert!(!log.should_log(0, FaultKind::Runtime, 1030));
        assert!(log.should_log(0, FaultKind::Operations, 1030));
        assert!(log.should_log(1, FaultKind::Runtime, 1030));
        assert!(!log.should_log(0, FaultKind::Runtime, 1059));
        assert!(log.should_log(0, FaultKind::Runtime, 1060));
        // Out of range rules never log (and never panic).
        assert!(!log.should_log(9, FaultKind::Runtime, 0));
    }

    #[test]
    fn each_rule_keeps_its_count_and_last_fault() {
        let log = FaultLog::new(2);
        let fault = |tracker_id, message: &str| LastFault {
            at: chrono::DateTime::from_timestamp(1000, 0).unwrap(),
            kind: FaultKind::Runtime,
            field: "when".into(),
            tracker_id,
            message: message.into(),
        };
        assert_eq!(log.of(0), RuleFaults::default());
        log.record(0, || fault(1, "first"));
        log.record(0, || fault(2, "second"));
        assert_eq!(
            log.of(0),
            RuleFaults {
                count: 2,
                last: Some(fault(2, "second"))
            }
        );
        assert_eq!(log.of(1).count, 0);
        // Out of range rules are nothing (and never panic).
        log.record(9, || fault(3, "none"));
        assert_eq!(log.of(9), RuleFaults::default());
    }
}
