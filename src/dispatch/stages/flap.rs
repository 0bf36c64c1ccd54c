//! Flap damping's cap: at most [`FLAP_LIMIT`] notifications per alert per channel in any
//! [`FLAP_WINDOW`]. Past it the alert is *held*: its changes keep coalescing in its
//! group, and when the oldest of those notifications leaves the window the current state
//! is sent once, with the notification's `reason` saying how many changes were damped.
//!
//! The other half of flap damping, coalescing (the channel hears at most one state per
//! flush), is group membership's: see [`group`](crate::dispatch::group).
//!
//! Occurrences of event rules are never held: each is told exactly once, and is a
//! member of its own that leaves its group once told, so there is no state to damp.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Candidate, Decision, Flush, History, Stage, Verdict, elapsed};
use crate::dispatch::group::Member;
use crate::store::{Outcome, StoreError};

/// Notifications per alert per channel within [`FLAP_WINDOW`] before it is held.
pub const FLAP_LIMIT: usize = 6;
/// The sliding window of the flap cap.
pub const FLAP_WINDOW: Duration = Duration::from_secs(3600);

/// The flap cap stage.
#[derive(Debug, Default)]
pub(crate) struct Flap;

impl Flap {
    /// Slides the window: forgets the member's notifications older than it. True when
    /// something was forgotten (the member must be written back).
    pub fn slide(m: &mut Member, now: DateTime<Utc>) -> bool {
        let before = m.sent.len();
        m.sent.retain(|s| elapsed(*s, now) < FLAP_WINDOW);
        m.sent.len() != before
    }
}

impl Stage for Flap {
    fn exec(
        &mut self,
        f: &Flush<'_>,
        c: &mut Candidate<'_>,
        history: &mut dyn History,
    ) -> Result<Verdict, StoreError> {
        let m = &mut *c.member;
        let sent = m.sent.len();
        if sent < FLAP_LIMIT || m.alert.is_event() {
            return Ok(Verdict::Pass);
        }
        if !m.quiet_logged {
            m.quiet_logged = true;
            f.log(
                &m.alert,
                Outcome::Held,
                None,
                Some(format!(
                    "flapping: notified {sent} times in the last hour; held until the cap frees"
                )),
            )?;
        }
        history.record(&f.record(&m.alert, Decision::FlapCapped { sent }));
        Ok(Verdict::Stop)
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
    use crate::store;

    #[test]
    fn the_window_forgets_notifications_an_hour_old() {
        let mut m = member(firing("fuel_drain", 1));
        m.sent = vec![secs(0), secs(10), secs(20)];
        assert!(!Flap::slide(&mut m, secs(3599)));
        assert_eq!(m.sent.len(), 3);
        assert!(Flap::slide(&mut m, secs(3610)));
        assert_eq!(m.sent, [secs(20)]);
    }

    #[test]
    fn the_seventh_notification_within_the_hour_is_held_and_logged_once() {
        let conn = store::test_connection();
        let s = settings();
        let mut history = Recorder::default();
        let mut m = member(firing("fuel_drain", 1));
        m.sent = (0..FLAP_LIMIT as i64 - 1).map(|i| secs(i * 60)).collect();
        let f = flush_of(&conn, &s, secs(600), false);
        let mut c = candidate_of(&mut m, Need::New);
        assert_eq!(Flap.exec(&f, &mut c, &mut history).unwrap(), Verdict::Pass);

        m.sent.push(secs(540));
        for _ in 0..2 {
            let mut c = candidate_of(&mut m, Need::New);
            assert_eq!(Flap.exec(&f, &mut c, &mut history).unwrap(), Verdict::Stop);
        }
        let log = store::recent_log(&conn, 10).unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].outcome, Outcome::Held);
        assert_eq!(
            log[0].detail.as_deref(),
            Some("flapping: notified 6 times in the last hour; held until the cap frees")
        );
        assert_eq!(history.decisions(), ["flap-capped", "flap-capped"]);
    }
}
