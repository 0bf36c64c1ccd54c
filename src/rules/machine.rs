//! The alert state machine of one (rule, tracker[, key]): inactive -> pending (`for`) ->
//! firing -> resolved, with `keep_firing_for` and `clear_when` hysteresis.
//!
//! Inactive is the absence of a machine: only live (pending or firing) alerts take memory.
//! Like Prometheus, the machine is level-triggered: it moves only when evaluated, so a
//! pending alert fires at the first evaluation (an update or a tick) at least `for` after
//! it started to hold.

/// Where a live alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// `when` holds since `since_ms`, not yet for `for`.
    Pending { since_ms: i64 },
    /// Fired at `starts_at_ms`.
    Firing { starts_at_ms: i64 },
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing visible changed.
    Stay,
    /// Pending -> firing.
    Fire,
    /// Firing -> resolved; the machine ends.
    Resolve,
    /// Pending -> inactive without ever firing; the machine ends silently.
    Drop,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Machine {
    pub phase: Phase,
    /// While firing: the first evaluation since which `when` no longer holds (as
    /// Prometheus counts `keep_firing_for`); `None` while it holds.
    pub false_since_ms: Option<i64>,
}

/// The timing settings of a rule, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    pub for_ms: i64,
    pub keep_firing_for_ms: i64,
}

impl Machine {
    /// A machine that starts to hold at `now_ms`.
    pub fn pending(now_ms: i64) -> Machine {
        Machine {
            phase: Phase::Pending { since_ms: now_ms },
            false_since_ms: None,
        }
    }

    /// A firing alert restored from the store.
    pub fn restored(starts_at_ms: i64) -> Machine {
        Machine {
            phase: Phase::Firing { starts_at_ms },
            false_since_ms: None,
        }
    }

    pub fn is_firing(&self) -> bool {
        matches!(self.phase, Phase::Firing { .. })
    }

    /// Advances with the latest result of `when` (`holds`) and of `clear_when` (`clear`,
    /// `None` when the rule has none) at `now_ms`.
    pub fn step(&mut self, holds: bool, clear: Option<bool>, now_ms: i64, timing: Timing) -> Step {
        match self.phase {
            Phase::Pending { since_ms } => {
                if !holds {
                    return Step::Drop;
                }
                if now_ms - since_ms >= timing.for_ms {
                    self.phase = Phase::Firing {
                        starts_at_ms: now_ms,
                    };
                    Step::Fire
                } else {
                    Step::Stay
                }
            }
            Phase::Firing { .. } => {
                if holds {
                    self.false_since_ms = None;
                    return Step::Stay;
                }
                let false_since = *self.false_since_ms.get_or_insert(now_ms);
                // With `clear_when`, not holding is not enough: the clear condition must hold.
                let cleared = clear.unwrap_or(true);
                if cleared && now_ms - false_since >= timing.keep_firing_for_ms {
                    Step::Resolve
                } else {
                    Step::Stay
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = 60_000;

    fn timing(for_min: i64, keep_min: i64) -> Timing {
        Timing {
            for_ms: for_min * M,
            keep_firing_for_ms: keep_min * M,
        }
    }

    #[test]
    fn fires_after_for_and_resolves_when_it_stops_holding() {
        let t = timing(5, 0);
        let mut m = Machine::pending(0);
        assert_eq!(m.step(true, None, 0, t), Step::Stay);
        assert_eq!(m.step(true, None, 4 * M, t), Step::Stay);
        assert_eq!(m.step(true, None, 5 * M, t), Step::Fire);
        assert_eq!(
            m.phase,
            Phase::Firing {
                starts_at_ms: 5 * M
            }
        );
        assert_eq!(m.step(true, None, 6 * M, t), Step::Stay);
        assert_eq!(m.step(false, None, 7 * M, t), Step::Resolve);
    }

    #[test]
    fn zero_for_fires_at_once_and_pending_drops_silently() {
        let mut m = Machine::pending(0);
        assert_eq!(m.step(true, None, 0, timing(0, 0)), Step::Fire);
        let mut m = Machine::pending(0);
        assert_eq!(m.step(false, None, M, timing(5, 0)), Step::Drop);
    }

    #[test]
    fn keep_firing_for_counts_from_when_it_stopped_holding() {
        let t = timing(0, 10);
        let mut m = Machine::pending(0);
        assert_eq!(m.step(true, None, 0, t), Step::Fire);
        assert_eq!(m.step(true, None, 5 * M, t), Step::Stay);
        assert_eq!(m.step(false, None, 10 * M, t), Step::Stay);
        // Holding again restarts the count.
        assert_eq!(m.step(true, None, 12 * M, t), Step::Stay);
        assert_eq!(m.step(false, None, 21 * M, t), Step::Stay);
        assert_eq!(m.step(false, None, 30 * M, t), Step::Stay);
        assert_eq!(m.step(false, None, 31 * M, t), Step::Resolve);
    }

    #[test]
    fn clear_when_is_required_to_resolve() {
        let t = timing(0, 0);
        let mut m = Machine::pending(0);
        assert_eq!(m.step(true, Some(false), 0, t), Step::Fire);
        // Inside the hysteresis band: neither holds.
        assert_eq!(m.step(false, Some(false), M, t), Step::Stay);
        assert_eq!(m.step(false, Some(true), 2 * M, t), Step::Resolve);
    }

    #[test]
    fn a_restored_alert_starts_keep_firing_for_at_its_first_evaluation() {
        let t = timing(0, 10);
        let mut m = Machine::restored(0);
        assert_eq!(m.step(false, None, 100 * M, t), Step::Stay);
        assert_eq!(m.step(false, None, 110 * M, t), Step::Resolve);
    }
}
