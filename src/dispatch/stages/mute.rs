//! Mute time intervals: channels kept quiet at set times (Alertmanager's
//! `mute_time_intervals`: "no email to the depot at night"). Not configurable yet, so
//! every alert passes.
//!
//! The extension point: the intervals go in [`Mute`], built with the
//! [`Pipeline`](super::Pipeline); [`Stage::exec`] asks them with the flush's `now` and
//! channel (`Flush::group`), stops a muted alert, logs it once while muted and records
//! the interval. A muted alert keeps its news, so it goes out at the first flush after
//! the interval ends, as a silenced one does.

use super::{Candidate, Flush, History, Stage, Verdict};
use crate::store::StoreError;

/// The mute stage (no intervals yet).
#[derive(Debug, Default)]
pub(crate) struct Mute;

impl Stage for Mute {
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
        let mut c = candidate_of(&mut m, Need::Repeat);
        assert_eq!(Mute.exec(&f, &mut c, &mut history).unwrap(), Verdict::Pass);
        assert!(!c.dirty);
        assert!(history.decisions().is_empty());
        assert!(crate::store::recent_log(&conn, 10).unwrap().is_empty());
    }
}
