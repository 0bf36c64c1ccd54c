//! Rule schedules: weekly windows (`days`, `from`, `to`, `timezone`) outside of which a
//! rule is not evaluated, like the schedules of Navixy's own rules.
//!
//! A window whose `to` is not after its `from` runs overnight: `{days: [fri], from: "22:00",
//! to: "06:00"}` is Friday 22:00 to Saturday 06:00. Times are wall-clock times in the
//! window's zone, so a window follows daylight saving time.
//!
//! `schedule: NAME` names one of the config's `time_intervals` instead (Alertmanager's
//! syntax, [`crate::time_intervals`]): the rule runs while it holds.

use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};
use serde::Deserialize;

use crate::time_intervals::NamedTimeInterval;

/// One window as written in a rule file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// `mon` .. `sun`; every day when absent.
    #[serde(default)]
    pub days: Option<Vec<String>>,
    /// `HH:MM`, default `00:00`.
    #[serde(default)]
    pub from: Option<String>,
    /// `HH:MM` (`24:00` allowed), default `24:00`.
    #[serde(default)]
    pub to: Option<String>,
    /// IANA zone; default: the Navixy source's zone, else UTC.
    #[serde(default)]
    pub timezone: Option<String>,
}

/// A rule's `schedule` as written: a list of windows or the name of a time interval.
#[derive(Debug, Clone)]
pub enum ScheduleSpec {
    Windows(Vec<WindowSpec>),
    Named(String),
}

impl<'de> Deserialize<'de> for ScheduleSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ScheduleSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of windows or the name of a time interval")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ScheduleSpec, E> {
                Ok(ScheduleSpec::Named(v.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<ScheduleSpec, A::Error> {
                // Read as the list itself, so a window's own errors keep their place.
                Vec::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(ScheduleSpec::Windows)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A compiled schedule: the rule is active when any window contains the instant, or
/// when the named time interval does.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    windows: Vec<Window>,
    interval: Option<NamedTimeInterval>,
}

#[derive(Debug, Clone, PartialEq)]
struct Window {
    /// Bit `n` set = weekday `n` (Monday = 0) is listed.
    days: u8,
    /// Seconds after local midnight.
    from: u32,
    to: u32,
    tz: chrono_tz::Tz,
}

impl Schedule {
    /// Compiles windows; each error names the window (1-based) and what is wrong, and
    /// every error of every window is reported.
    pub fn compile(
        specs: &[WindowSpec],
        default_tz: chrono_tz::Tz,
    ) -> Result<Schedule, Vec<String>> {
        if specs.is_empty() {
            return Err(vec![
                "an empty schedule would never run; remove `schedule` to run always".into(),
            ]);
        }
        let mut windows = Vec::with_capacity(specs.len());
        let mut errors = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let mut fail = |msg: String| errors.push(format!("window {}: {msg}", i + 1));
            let days = match &spec.days {
                None => 0x7f,
                Some(list) if list.is_empty() => {
                    fail("`days` is empty".into());
                    0
                }
                Some(list) => {
                    let mut bits = 0u8;
                    for d in list {
                        match parse_day(d) {
                            Some(day) => bits |= 1 << day.num_days_from_monday(),
                            None if d.contains('-') => fail(format!(
                                "unknown day `{d}`: list the days (`[mon, tue, wed, thu, fri]`), ranges are not read"
                            )),
                            None => fail(format!(
                                "unknown day `{d}` (use mon, tue, wed, thu, fri, sat, sun)"
                            )),
                        }
                    }
                    bits
                }
            };
            let from = match spec.from.as_deref().map(parse_clock) {
                None => 0,
                Some(Ok(t)) => t,
                Some(Err(e)) => {
                    fail(format!("from: {e}"));
                    0
                }
            };
            let to = match spec.to.as_deref().map(parse_clock) {
                None => 24 * 3600,
                Some(Ok(t)) => t,
                Some(Err(e)) => {
                    fail(format!("to: {e}"));
                    0
                }
            };
            let tz = match &spec.timezone {
                None => default_tz,
                Some(name) => name.parse::<chrono_tz::Tz>().unwrap_or_else(|_| {
                    fail(format!(
                        "unknown time zone `{name}` (use an IANA name such as Europe/Berlin)"
                    ));
                    default_tz
                }),
            };
            windows.push(Window { days, from, to, tz });
        }
        if errors.is_empty() {
            Ok(Schedule {
                windows,
                interval: None,
            })
        } else {
            Err(errors)
        }
    }

    /// A schedule that is a named time interval.
    pub fn named(interval: NamedTimeInterval) -> Schedule {
        Schedule {
            windows: Vec::new(),
            interval: Some(interval),
        }
    }

    /// Whether the rule runs at `t`.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        if let Some(interval) = &self.interval {
            return interval.contains(t);
        }
        self.windows.iter().any(|w| w.contains(t))
    }
}

impl Window {
    fn contains(&self, t: DateTime<Utc>) -> bool {
        let local = t.with_timezone(&self.tz);
        let secs = local.num_seconds_from_midnight();
        let day = local.weekday().num_days_from_monday();
        let listed = |d: u32| self.days & (1 << d) != 0;
        if self.from < self.to {
            listed(day) && secs >= self.from && secs < self.to
        } else {
            // Overnight: the part after `from` on a listed day, and the part before `to`
            // on the day after a listed day.
            let yesterday = (day + 6) % 7;
            (listed(day) && secs >= self.from) || (listed(yesterday) && secs < self.to)
        }
    }
}

fn parse_day(s: &str) -> Option<Weekday> {
    match s.trim().to_ascii_lowercase().as_str() {
        "mon" | "monday" => Some(Weekday::Mon),
        "tue" | "tuesday" => Some(Weekday::Tue),
        "wed" | "wednesday" => Some(Weekday::Wed),
        "thu" | "thursday" => Some(Weekday::Thu),
        "fri" | "friday" => Some(Weekday::Fri),
        "sat" | "saturday" => Some(Weekday::Sat),
        "sun" | "sunday" => Some(Weekday::Sun),
        _ => None,
    }
}

/// `HH:MM` or `HH:MM:SS` to seconds after midnight; `24:00` is the end of the day.
fn parse_clock(s: &str) -> Result<u32, String> {
    let bad = || format!("`{s}` is not a time of day like 07:30");
    let mut parts = s.trim().split(':');
    let h: u32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let m: u32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let sec: u32 = match parts.next() {
        Some(p) => p.parse().map_err(|_| bad())?,
        None => 0,
    };
    if parts.next().is_some() || m > 59 || sec > 59 || h > 24 || (h == 24 && (m, sec) != (0, 0)) {
        return Err(bad());
    }
    Ok(h * 3600 + m * 60 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn window(days: &[&str], from: &str, to: &str, tz: &str) -> WindowSpec {
        WindowSpec {
            days: Some(days.iter().map(|d| d.to_string()).collect()),
            from: Some(from.into()),
            to: Some(to.into()),
            timezone: Some(tz.into()),
        }
    }

    #[test]
    fn weekday_window_in_a_zone() {
        let s = Schedule::compile(
            &[window(
                &["mon", "tue", "wed", "thu", "fri"],
                "07:00",
                "19:00",
                "Europe/Berlin",
            )],
            chrono_tz::UTC,
        )
        .unwrap();
        // Monday 2026-01-05 06:30 UTC is 07:30 in Berlin (CET).
        assert!(s.contains(Utc.with_ymd_and_hms(2026, 1, 5, 6, 30, 0).unwrap()));
        assert!(!s.contains(Utc.with_ymd_and_hms(2026, 1, 5, 5, 30, 0).unwrap()));
        assert!(!s.contains(Utc.with_ymd_and_hms(2026, 1, 5, 18, 0, 0).unwrap()));
        // Saturday.
        assert!(!s.contains(Utc.with_ymd_and_hms(2026, 1, 10, 10, 0, 0).unwrap()));
    }

    #[test]
    fn overnight_window_belongs_to_its_start_day() {
        let s = Schedule::compile(&[window(&["fri"], "22:00", "06:00", "UTC")], chrono_tz::UTC)
            .unwrap();
        // Friday 2026-01-09 23:00, Saturday 05:00 in; Saturday 23:00, Friday 05:00 out.
        assert!(s.contains(Utc.with_ymd_and_hms(2026, 1, 9, 23, 0, 0).unwrap()));
        assert!(s.contains(Utc.with_ymd_and_hms(2026, 1, 10, 5, 0, 0).unwrap()));
        assert!(!s.contains(Utc.with_ymd_and_hms(2026, 1, 10, 23, 0, 0).unwrap()));
        assert!(!s.contains(Utc.with_ymd_and_hms(2026, 1, 9, 5, 0, 0).unwrap()));
    }

    #[test]
    fn errors_name_the_window_and_value() {
        let err = Schedule::compile(
            &[window(&["funday"], "07:00", "19:00", "UTC")],
            chrono_tz::UTC,
        )
        .unwrap_err()
        .join("\n");
        assert!(err.contains("window 1: unknown day `funday`"), "{err}");
        let err = Schedule::compile(&[window(&["mon"], "7h", "19:00", "UTC")], chrono_tz::UTC)
            .unwrap_err()
            .join("\n");
        assert!(err.contains("from: `7h` is not a time of day"), "{err}");
        let err = Schedule::compile(
            &[window(&["mon"], "07:00", "19:00", "Mars/Base")],
            chrono_tz::UTC,
        )
        .unwrap_err()
        .join("\n");
        assert!(err.contains("unknown time zone `Mars/Base`"), "{err}");
    }

    #[test]
    fn a_named_time_interval_is_a_schedule() {
        let interval: NamedTimeInterval = serde_saphyr::from_str(
            "{name: office, time_intervals: [{weekdays: [\"monday:friday\"], times: [{start_time: \"08:00\", end_time: \"18:00\"}], location: Europe/Berlin}]}",
        )
        .unwrap();
        let s = Schedule::named(interval);
        // Monday 2026-01-05 07:30 UTC is 08:30 in Berlin; Saturday is out.
        assert!(s.contains(Utc.with_ymd_and_hms(2026, 1, 5, 7, 30, 0).unwrap()));
        assert!(!s.contains(Utc.with_ymd_and_hms(2026, 1, 5, 6, 30, 0).unwrap()));
        assert!(!s.contains(Utc.with_ymd_and_hms(2026, 1, 10, 10, 0, 0).unwrap()));
    }

    #[test]
    fn every_error_of_every_window() {
        let errs = Schedule::compile(
            &[window(&["mon-fri"], "07:00", "19:00", "Europe/Berln")],
            chrono_tz::UTC,
        )
        .unwrap_err();
        assert_eq!(
            errs,
            [
                "window 1: unknown day `mon-fri`: list the days (`[mon, tue, wed, thu, fri]`), ranges are not read",
                "window 1: unknown time zone `Europe/Berln` (use an IANA name such as Europe/Berlin)",
            ]
        );
    }
}
