//! The silence stage: an alert that an active silence matches is not sent. It is logged
//! once while it stays silenced (every silenced resolve is logged: the receiver will not
//! hear it, so it forgets that it was told the alert fired). When the silence ends, the
//! alert's news is still there and goes out at the group's next flush.
//!
//! The silences themselves (stored, compiled, matched) are
//! [`ActiveSilences`](crate::dispatch::silence::ActiveSilences)'.

use super::{Candidate, Decision, Flush, History, Need, Stage, Verdict};
use crate::dispatch::silence::ActiveSilences;
use crate::store::{self, Outcome, StoreError};
use crate::telemetry;

/// The silence stage, with the silences compiled at the store's last generation.
#[derive(Default)]
pub(crate) struct Silence {
    active: ActiveSilences,
}

impl Silence {
    /// Recompiles the silences if the store's changed since (`generation`).
    pub fn refresh(
        &mut self,
        conn: &crate::store::Conn,
        generation: u64,
    ) -> Result<(), StoreError> {
        if self.active.is_stale(generation) {
            self.active.replace(store::load_silences(conn)?, generation);
        }
        Ok(())
    }
}

impl Stage for Silence {
    fn exec(
        &mut self,
        f: &Flush<'_>,
        c: &mut Candidate<'_>,
        history: &mut dyn History,
    ) -> Result<Verdict, StoreError> {
        let Some(silence) = self.active.matching(&c.member.alert, f.now) else {
            return Ok(Verdict::Pass);
        };
        let m = &mut *c.member;
        if c.need == Need::Resolve {
            // The receiver will not hear the resolve: forget that it was told.
            m.told_firing_at = None;
            c.dirty = true;
        }
        if !m.quiet_logged || c.need == Need::Resolve {
            m.quiet_logged = true;
            metrics::counter!(telemetry::NOTIFICATIONS_SILENCED, "channel" => f.group.channel.to_string())
                .increment(1);
            f.log(
                &m.alert,
                Outcome::Silenced,
                None,
                Some(format!("silence {silence}")),
            )?;
        }
        history.record(&f.record(&m.alert, Decision::Silenced { silence }));
        Ok(Verdict::Stop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::stages::tests::{
        Recorder, add_silence, candidate_of, flush_of, member, secs, settings,
    };
    use crate::dispatch::testing::{firing, resolved};
    use crate::store::SilenceMatcher;

    fn tracker_1() -> Vec<SilenceMatcher> {
        vec![SilenceMatcher {
            name: "tracker_id".into(),
            value: "1".into(),
            is_regex: false,
            is_equal: true,
        }]
    }

    fn log(conn: &crate::store::Conn) -> Vec<(String, String, Option<String>)> {
        let mut entries = store::recent_log(conn, 100).unwrap();
        entries.reverse();
        entries
            .into_iter()
            .map(|e| (e.outcome.as_str().to_owned(), e.status, e.detail))
            .collect()
    }

    #[test]
    fn a_silenced_alert_stops_and_is_logged_once_while_it_stays_silenced() {
        let conn = store::test_connection();
        let id = add_silence(&conn, tracker_1(), secs(0), secs(600));
        let mut stage = Silence::default();
        stage.refresh(&conn, 1).unwrap();
        let s = settings();
        let mut history = Recorder::default();
        let mut m = member(firing("fuel_drain", 1));
        for at in [10, 70] {
            let f = flush_of(&conn, &s, secs(at), false);
            let mut c = candidate_of(&mut m, Need::New);
            assert_eq!(stage.exec(&f, &mut c, &mut history).unwrap(), Verdict::Stop);
            assert!(!c.dirty);
        }
        assert_eq!(
            log(&conn),
            [(
                "silenced".into(),
                "firing".into(),
                Some(format!("silence {id}"))
            )]
        );
        assert_eq!(history.decisions(), ["silenced", "silenced"]);

        // After the silence, it passes.
        let f = flush_of(&conn, &s, secs(600), false);
        let mut c = candidate_of(&mut m, Need::New);
        assert_eq!(stage.exec(&f, &mut c, &mut history).unwrap(), Verdict::Pass);
        // Another tracker never matched.
        let mut other = member(firing("fuel_drain", 2));
        let f = flush_of(&conn, &s, secs(10), false);
        let mut c = candidate_of(&mut other, Need::New);
        assert_eq!(stage.exec(&f, &mut c, &mut history).unwrap(), Verdict::Pass);
    }

    #[test]
    fn a_silenced_resolve_is_logged_and_the_channel_forgets_the_firing() {
        let conn = store::test_connection();
        add_silence(&conn, tracker_1(), secs(0), secs(600));
        let mut stage = Silence::default();
        stage.refresh(&conn, 7).unwrap();
        let s = settings();
        let mut history = Recorder::default();
        let t = firing("fuel_drain", 1);
        let mut m = member(resolved(&t, secs(5)));
        m.told_firing_at = Some(secs(0));
        m.quiet_logged = true;
        let f = flush_of(&conn, &s, secs(10), false);
        let mut c = candidate_of(&mut m, Need::Resolve);
        assert_eq!(stage.exec(&f, &mut c, &mut history).unwrap(), Verdict::Stop);
        assert!(c.dirty);
        assert_eq!(m.told_firing_at, None);
        assert_eq!(log(&conn).len(), 1);
        assert_eq!(log(&conn)[0].1, "resolved");
    }

    #[test]
    fn silences_are_reloaded_only_when_the_generation_changes() {
        let conn = store::test_connection();
        let mut stage = Silence::default();
        stage.refresh(&conn, 1).unwrap();
        add_silence(&conn, tracker_1(), secs(0), secs(600));
        let s = settings();
        let mut history = Recorder::default();
        let mut m = member(firing("fuel_drain", 1));
        let f = flush_of(&conn, &s, secs(10), false);
        stage.refresh(&conn, 1).unwrap();
        let mut c = candidate_of(&mut m, Need::New);
        assert_eq!(stage.exec(&f, &mut c, &mut history).unwrap(), Verdict::Pass);
        stage.refresh(&conn, 2).unwrap();
        let mut c = candidate_of(&mut m, Need::New);
        assert_eq!(stage.exec(&f, &mut c, &mut history).unwrap(), Verdict::Stop);
    }
}
