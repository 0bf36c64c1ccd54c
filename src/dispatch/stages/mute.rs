//! Mute time intervals: channels kept quiet at set times ("no email to the depot at
//! night"). A route's `mute_time_intervals` mute its channels while any of them holds;
//! its `active_time_intervals`, if set, mute them while none holds.
//!
//! A muted alert is logged once while it stays muted, recorded at every flush, and keeps
//! its news: unlike Alertmanager, which drops what a mute held back, an alert still firing
//! when the mute ends is notified then (and a resolve the channel has not heard goes out
//! too). An alert that fired and resolved during the mute was never told, so the group
//! drops it and nothing is sent. So that "then" is the end of the mute and not a
//! `group_interval` later, the stage keeps the earliest end of a mute that held something
//! back; the group's flush takes it ([`Mute::take_wake`]) as its next flush time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Candidate, Decision, Flush, History, Stage, Verdict};
use crate::dispatch::routes::Settings;
use crate::store::{Outcome, StoreError};
use crate::time_intervals::{NamedTimeInterval, TimeInterval, next_change};

/// Why a group's channel is muted at one instant, and until when.
#[derive(Debug, Clone, PartialEq)]
struct Muting {
    interval: String,
    /// `None`: not within the next few years.
    until: Option<DateTime<Utc>>,
}

/// The end of a mute as computed at `from`: it holds for any instant from `from` until
/// it (`None`: not within the horizon [`next_change`] looks at; trusted for a day).
#[derive(Debug, Clone, Copy)]
struct End {
    from: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
}

/// A route's intervals: `(mute_time_intervals, active_time_intervals)`.
type RouteIntervals = (Vec<String>, Vec<String>);

/// The mute stage: the config's time intervals by name.
#[derive(Debug, Default)]
pub(crate) struct Mute {
    intervals: Arc<BTreeMap<String, NamedTimeInterval>>,
    /// The end of each route's current mute, so that it is searched for once per mute,
    /// not at every flush of every group.
    ends: HashMap<RouteIntervals, End>,
    wake: Option<DateTime<Utc>>,
}

impl Mute {
    pub fn new(intervals: Arc<BTreeMap<String, NamedTimeInterval>>) -> Mute {
        Mute {
            intervals,
            ends: HashMap::new(),
            wake: None,
        }
    }

    /// The earliest end of a mute that held an alert back since the last call.
    pub fn take_wake(&mut self) -> Option<DateTime<Utc>> {
        self.wake.take()
    }

    fn named<'a>(&'a self, names: &'a [String]) -> impl Iterator<Item = &'a NamedTimeInterval> {
        // Names are checked when the config is loaded; a group kept from an older config
        // may name one that is gone, which then holds nothing.
        names.iter().filter_map(|n| self.intervals.get(n))
    }

    fn is_muted(&self, s: &Settings, at: DateTime<Utc>) -> bool {
        self.named(&s.mute_time_intervals).any(|i| i.contains(at))
            || (!s.active_time_intervals.is_empty()
                && !self.named(&s.active_time_intervals).any(|i| i.contains(at)))
    }

    /// Whether the channel of a group with settings `s` is muted at `now`, by which
    /// interval and until when.
    fn muting(&mut self, s: &Settings, now: DateTime<Utc>) -> Option<Muting> {
        let interval = match self.named(&s.mute_time_intervals).find(|i| i.contains(now)) {
            Some(i) => i.name.clone(),
            None if !s.active_time_intervals.is_empty()
                && !self
                    .named(&s.active_time_intervals)
                    .any(|i| i.contains(now)) =>
            {
                s.active_time_intervals[0].clone()
            }
            None => return None,
        };
        let key = (
            s.mute_time_intervals.clone(),
            s.active_time_intervals.clone(),
        );
        let known = self.ends.get(&key).filter(|e| {
            e.from <= now
                && e.until
                    .map_or(now < e.from + chrono::Duration::days(1), |u| now < u)
        });
        let until = match known {
            Some(end) => end.until,
            None => {
                let all: Vec<&TimeInterval> = self
                    .named(&s.mute_time_intervals)
                    .chain(self.named(&s.active_time_intervals))
                    .flat_map(|i| &i.time_intervals)
                    .collect();
                let until = next_change(&all, |t| self.is_muted(s, t), now);
                self.ends.insert(key, End { from: now, until });
                until
            }
        };
        Some(Muting { interval, until })
    }
}

impl Stage for Mute {
    fn exec(
        &mut self,
        f: &Flush<'_>,
        c: &mut Candidate<'_>,
        history: &mut dyn History,
    ) -> Result<Verdict, StoreError> {
        if f.settings.mute_time_intervals.is_empty() && f.settings.active_time_intervals.is_empty()
        {
            return Ok(Verdict::Pass);
        }
        let Some(muting) = self.muting(f.settings, f.now) else {
            return Ok(Verdict::Pass);
        };
        if let Some(until) = muting.until {
            self.wake = Some(self.wake.map_or(until, |w| w.min(until)));
        }
        let m = &mut *c.member;
        if !m.quiet_logged {
            m.quiet_logged = true;
            let until = muting
                .until
                .map_or_else(String::new, |u| format!(" until {}", u.to_rfc3339()));
            f.log(
                &m.alert,
                Outcome::Muted,
                None,
                Some(format!("time interval {}{until}", muting.interval)),
            )?;
        }
        history.record(&f.record(
            &m.alert,
            Decision::Muted {
                interval: &muting.interval,
            },
        ));
        Ok(Verdict::Stop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::stages::Need;
    use crate::dispatch::stages::tests::{Recorder, candidate_of, flush_of, member, settings};
    use crate::dispatch::testing::{config, firing};
    use crate::store;

    /// Nights 22:00-06:00 UTC and a public holiday.
    const INTERVALS: &str = r#"
time_intervals:
  - name: night
    time_intervals:
      - times: [{start_time: "22:00", end_time: "24:00"}]
      - times: [{start_time: "00:00", end_time: "06:00"}]
  - name: holiday
    time_intervals:
      - months: [december]
        days_of_month: ["25"]
  - name: business_hours
    time_intervals:
      - times: [{start_time: "09:00", end_time: "17:00"}]
        weekdays: ["monday:friday"]
"#;

    fn stage() -> Mute {
        let cfg = config(INTERVALS);
        Mute::new(Arc::new(
            cfg.time_intervals
                .iter()
                .map(|t| (t.name.clone(), t.clone()))
                .collect(),
        ))
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn with(mute: &[&str], active: &[&str]) -> Settings {
        Settings {
            mute_time_intervals: mute.iter().map(|s| s.to_string()).collect(),
            active_time_intervals: active.iter().map(|s| s.to_string()).collect(),
            ..settings()
        }
    }

    #[test]
    fn mute_and_active_intervals_mute_until_the_next_boundary() {
        let mut s = stage();
        // (settings, now, muted by, until)
        let night = with(&["night", "holiday"], &[]);
        let office = with(&[], &["business_hours"]);
        let cases = [
            (
                &night,
                "2026-12-07T23:00:00Z",
                Some(("night", "2026-12-08T06:00:00Z")),
            ),
            (&night, "2026-12-07T12:00:00Z", None),
            // The holiday, then the night after it: muted until the morning after.
            (
                &night,
                "2026-12-25T12:00:00Z",
                Some(("holiday", "2026-12-26T06:00:00Z")),
            ),
            (&office, "2026-12-07T12:00:00Z", None),
            // Friday evening: outside business hours until Monday 09:00.
            (
                &office,
                "2026-12-11T18:00:00Z",
                Some(("business_hours", "2026-12-14T09:00:00Z")),
            ),
        ];
        for (settings, now, want) in cases {
            let got = s.muting(settings, at(now));
            let want = want.map(|(interval, until)| Muting {
                interval: interval.into(),
                until: Some(at(until)),
            });
            assert_eq!(got, want, "{now}");
        }
    }

    #[test]
    fn a_muted_alert_stops_is_logged_once_and_keeps_its_news() {
        let conn = store::test_connection();
        let mut stage = stage();
        let s = with(&["night"], &[]);
        let mut history = Recorder::default();
        let mut m = member(firing("fuel_drain", 1));
        for now in ["2026-12-07T23:00:00Z", "2026-12-07T23:01:00Z"] {
            let f = flush_of(&conn, &s, at(now), false);
            let mut c = candidate_of(&mut m, Need::New);
            assert_eq!(stage.exec(&f, &mut c, &mut history).unwrap(), Verdict::Stop);
            assert!(!c.dirty, "the news stays");
        }
        assert_eq!(history.decisions(), ["muted", "muted"]);
        assert_eq!(stage.take_wake(), Some(at("2026-12-08T06:00:00Z")));
        assert_eq!(stage.take_wake(), None);
        let log = store::recent_log(&conn, 10).unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].outcome, Outcome::Muted);
        assert_eq!(
            log[0].detail.as_deref(),
            Some("time interval night until 2026-12-08T06:00:00+00:00")
        );

        // At the end of the mute it passes.
        let f = flush_of(&conn, &s, at("2026-12-08T06:00:00Z"), false);
        let mut c = candidate_of(&mut m, Need::New);
        assert_eq!(stage.exec(&f, &mut c, &mut history).unwrap(), Verdict::Pass);
    }

    #[test]
    fn without_intervals_every_alert_passes_and_nothing_is_said() {
        let conn = store::test_connection();
        let s = settings();
        let f = flush_of(&conn, &s, at("2026-12-07T23:00:00Z"), false);
        let mut m = member(firing("fuel_drain", 1));
        let mut history = Recorder::default();
        let mut c = candidate_of(&mut m, Need::Repeat);
        let mut stage = stage();
        assert_eq!(stage.exec(&f, &mut c, &mut history).unwrap(), Verdict::Pass);
        assert!(!c.dirty);
        assert!(history.decisions().is_empty());
        assert!(store::recent_log(&conn, 10).unwrap().is_empty());
        assert_eq!(stage.take_wake(), None);
    }
}
