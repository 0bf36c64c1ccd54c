//! Inhibition: an alert kept quiet because another alert is firing (Alertmanager's
//! `inhibit_rules`: "while `tracker_offline` fires for a tracker, its `no_data` alerts are
//! not sent"). Not configurable yet, so every alert passes.
//!
//! The extension point: the compiled rules go in [`Inhibit`], built with the
//! [`Pipeline`](super::Pipeline); [`Stage::exec`] stops an inhibited alert, logs it once
//! while inhibited (as the silence stage does, with `Candidate::member.quiet_logged`) and
//! records the inhibiting alert.

use super::{Candidate, Flush, History, Stage, Verdict};
use crate::store::StoreError;

/// The inhibition stage (no rules yet).
#[derive(Debug, Default)]
pub(crate) struct Inhibit;

impl Stage for Inhibit {
    fn exec(
        &mut self,
        _: &Flush<'_>,
        _: &mut Candidate<'_>,
        _: &mut dyn History,
    ) -> Result<Verdict, StoreError> {
        Ok(Verdict::Pass)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::stages::Need;
    use crate::dispatch::stages::tests::{
        Recorder, candidate_of, flush_of, member, secs, settings,
    };
    use crate::dispatch::testing::firing;

    #[test]
    fn every_alert_passes_and_nothing_is_said() {
        let conn = crate::store::test_connection();
        let s = settings();
        let f = flush_of(&conn, &s, secs(0), false);
        let mut m = member(firing("fuel_drain", 1));
        let mut history = Recorder::default();
        let mut c = candidate_of(&mut m, Need::New);
        assert_eq!(
            Inhibit.exec(&f, &mut c, &mut history).unwrap(),
            Verdict::Pass
        );
        assert!(!c.dirty);
        assert!(history.decisions().is_empty());
        assert!(crate::store::recent_log(&conn, 10).unwrap().is_empty());
    }
}
