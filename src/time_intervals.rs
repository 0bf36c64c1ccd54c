//! Named time intervals in Alertmanager's syntax (`time_intervals:`): the grammar, read and
//! checked while the config is parsed (so a bad value names its line), whether an instant
//! is inside, and when that next changes.
//!
//! The semantics are Alertmanager's `timeinterval` package: an interval holds an instant
//! when every field it sets holds it (`times`, `weekdays`, `days_of_month`, `months`,
//! `years`, in `location`, UTC by default); a field holds it when any of its ranges does.
//! Times are wall-clock minutes `[start_time, end_time)`, so an interval follows daylight
//! saving time. Negative days of the month count from its end (`-1` is the last day).
//! A public holiday is a fixed date: `{months: [december], days_of_month: ["25"]}`.
//!
//! Used by routes (`mute_time_intervals`, `active_time_intervals`) and by rules
//! (`schedule: NAME`).

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer};

/// A named entry of `time_intervals:`: the instant is in it when any of its intervals
/// holds it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedTimeInterval {
    pub name: String,
    pub time_intervals: Vec<TimeInterval>,
}

impl NamedTimeInterval {
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.time_intervals.iter().any(|i| i.contains(t))
    }
}

/// One interval; a field left out holds every instant.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeInterval {
    #[serde(default)]
    pub times: Option<Vec<TimeRange>>,
    #[serde(default)]
    pub weekdays: Option<Vec<WeekdayRange>>,
    #[serde(default)]
    pub days_of_month: Option<Vec<DayOfMonthRange>>,
    #[serde(default)]
    pub months: Option<Vec<MonthRange>>,
    #[serde(default)]
    pub years: Option<Vec<YearRange>>,
    /// An IANA zone (`Europe/Berlin`); UTC when left out.
    #[serde(default)]
    pub location: Option<Location>,
}

/// Minutes of the day, `start <= minute < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start: u32,
    pub end: u32,
}

/// Inclusive, Sunday = 0 .. Saturday = 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeekdayRange {
    pub begin: u32,
    pub end: u32,
}

/// Inclusive, 1..=31 or -31..=-1 (from the end of the month).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayOfMonthRange {
    pub begin: i32,
    pub end: i32,
}

/// Inclusive, January = 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthRange {
    pub begin: u32,
    pub end: u32,
}

/// Inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YearRange {
    pub begin: i32,
    pub end: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location(pub Tz);

const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// `a` or `a:b`, lower-cased, each side read by `member`.
fn range_of<T: Copy>(
    text: &str,
    member: impl Fn(&str) -> Result<T, String>,
) -> Result<(T, T), String> {
    let text = text.trim().to_lowercase();
    match text.split_once(':') {
        None => {
            let v = member(&text)?;
            Ok((v, v))
        }
        Some((a, b)) if !b.contains(':') => Ok((member(a)?, member(b)?)),
        Some(_) => Err(format!(
            "cannot read the range `{text}` (write `a` or `a:b`)"
        )),
    }
}

fn int<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not a valid {what}"))
}

impl WeekdayRange {
    pub fn parse(text: &str) -> Result<WeekdayRange, String> {
        let day = |s: &str| {
            WEEKDAYS
                .iter()
                .position(|d| *d == s)
                .map(|i| i as u32)
                .ok_or_else(|| format!("`{s}` is not a weekday (sunday .. saturday)"))
        };
        let (begin, end) = range_of(text, day)?;
        if begin > end {
            return Err(format!(
                "`{text}`: the end day is before the start day (weeks run sunday to saturday; write two ranges)"
            ));
        }
        Ok(WeekdayRange { begin, end })
    }
}

impl DayOfMonthRange {
    pub fn parse(text: &str) -> Result<DayOfMonthRange, String> {
        let (begin, end) = range_of(text, |s| int::<i32>(s, "day of the month"))?;
        for d in [begin, end] {
            if d == 0 || !(-31..=31).contains(&d) {
                return Err(format!(
                    "`{d}` is not a day of the month (1 to 31, or -1 to -31 from its end)"
                ));
            }
        }
        if begin < 0 && end > 0 {
            return Err(format!(
                "`{text}`: the end day must be negative if the start day is"
            ));
        }
        // Months are at least 28 days long: catch the ranges that are always empty.
        let at_least = |d: i32| if d < 0 { 28 + d } else { d };
        if at_least(begin) > at_least(end) {
            return Err(format!(
                "`{text}`: the end day is always before the start day"
            ));
        }
        Ok(DayOfMonthRange { begin, end })
    }
}

impl MonthRange {
    pub fn parse(text: &str) -> Result<MonthRange, String> {
        let month = |s: &str| match MONTHS.iter().position(|m| *m == s) {
            Some(i) => Ok(i as u32 + 1),
            None => match s.parse::<u32>() {
                Ok(n) if (1..=12).contains(&n) => Ok(n),
                _ => Err(format!(
                    "`{s}` is not a month (january .. december, or 1 .. 12)"
                )),
            },
        };
        let (begin, end) = range_of(text, month)?;
        if begin > end {
            return Err(format!(
                "`{text}`: the end month is before the start month (write two ranges)"
            ));
        }
        Ok(MonthRange { begin, end })
    }
}

impl YearRange {
    pub fn parse(text: &str) -> Result<YearRange, String> {
        let year = |s: &str| match s.parse::<i32>() {
            Ok(y) if y > 0 => Ok(y),
            _ => Err(format!("`{s}` is not a year")),
        };
        let (begin, end) = range_of(text, year)?;
        if begin > end {
            return Err(format!("`{text}`: the end year is before the start year"));
        }
        Ok(YearRange { begin, end })
    }
}

/// `HH:MM`, `00:00` to `24:00`.
fn parse_minute(text: &str) -> Result<u32, String> {
    let bad = || format!("`{text}` is not a time (HH:MM, 00:00 to 24:00)");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m > 59 || h > 24 || (h == 24 && m > 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl TimeRange {
    pub fn parse(start: &str, end: &str) -> Result<TimeRange, String> {
        let (start_m, end_m) = (parse_minute(start)?, parse_minute(end)?);
        if start_m >= end_m {
            return Err(format!(
                "start_time `{start}` is not before end_time `{end}` (a range cannot cross midnight; write two)"
            ));
        }
        Ok(TimeRange {
            start: start_m,
            end: end_m,
        })
    }
}

impl Location {
    pub fn parse(name: &str) -> Result<Location, String> {
        name.parse::<Tz>().map(Location).map_err(|_| {
            format!("unknown location `{name}` (use an IANA time zone such as Europe/Berlin)")
        })
    }
}

fn from_text<'de, D: Deserializer<'de>, T>(
    d: D,
    what: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(|e| serde::de::Error::custom(format!("{what}: {e}")))
}

impl<'de> Deserialize<'de> for WeekdayRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d, "weekdays", WeekdayRange::parse)
    }
}

impl<'de> Deserialize<'de> for DayOfMonthRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d, "days_of_month", DayOfMonthRange::parse)
    }
}

impl<'de> Deserialize<'de> for MonthRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d, "months", MonthRange::parse)
    }
}

impl<'de> Deserialize<'de> for YearRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d, "years", YearRange::parse)
    }
}

impl<'de> Deserialize<'de> for Location {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d, "location", Location::parse)
    }
}

impl<'de> Deserialize<'de> for TimeRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            start_time: String,
            end_time: String,
        }
        let raw = Raw::deserialize(d)?;
        TimeRange::parse(&raw.start_time, &raw.end_time)
            .map_err(|e| serde::de::Error::custom(format!("times: {e}")))
    }
}

/// The number of days in the month of `date`.
fn days_in_month(date: NaiveDate) -> i32 {
    let first = date.with_day(1).unwrap_or(date);
    let next = first.checked_add_months(chrono::Months::new(1));
    next.map_or(31, |n| (n - first).num_days() as i32)
}

impl TimeInterval {
    fn tz(&self) -> Tz {
        self.location.map_or(Tz::UTC, |l| l.0)
    }

    /// Whether the interval holds `t` (Alertmanager's `ContainsTime`).
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        let local = t.with_timezone(&self.tz()).naive_local();
        let minute = local.hour() * 60 + local.minute();
        if let Some(times) = &self.times
            && !times.iter().any(|r| r.start <= minute && minute < r.end)
        {
            return false;
        }
        self.holds_day(local.date())
    }

    /// The date fields (everything but `times`) of a local date.
    fn holds_day(&self, date: NaiveDate) -> bool {
        if let Some(days) = &self.days_of_month {
            let len = days_in_month(date);
            let day = date.day() as i32;
            let hit = days.iter().any(|r| {
                let from_end = |d: i32| if d < 0 { len + d + 1 } else { d };
                let (begin, end) = (from_end(r.begin), from_end(r.end));
                // A start past the end of a short month holds nothing.
                if begin > len {
                    return false;
                }
                let (begin, end) = (begin.clamp(-len, len), end.clamp(-len, len));
                begin <= day && day <= end
            });
            if !hit {
                return false;
            }
        }
        if let Some(months) = &self.months
            && !months
                .iter()
                .any(|r| r.begin <= date.month() && date.month() <= r.end)
        {
            return false;
        }
        if let Some(weekdays) = &self.weekdays {
            let wd = date.weekday().num_days_from_sunday();
            if !weekdays.iter().any(|r| r.begin <= wd && wd <= r.end) {
                return false;
            }
        }
        if let Some(years) = &self.years
            && !years
                .iter()
                .any(|r| r.begin <= date.year() && date.year() <= r.end)
        {
            return false;
        }
        true
    }

    /// The instants of local day `date` at which the answer may change: its midnight and
    /// every `start_time`/`end_time`, as UTC instants, earliest first. A wall-clock time
    /// that a daylight-saving jump skips changes the answer where the jump lands.
    fn boundaries(&self, date: NaiveDate, out: &mut Vec<DateTime<Utc>>) {
        let tz = self.tz();
        let mut minutes = vec![0];
        for r in self.times.iter().flatten() {
            minutes.push(r.start);
            minutes.push(r.end);
        }
        for m in minutes {
            if m >= 24 * 60 {
                continue;
            }
            let Some(time) = NaiveTime::from_hms_opt(m / 60, m % 60, 0) else {
                continue;
            };
            if let Some(at) = first_instant_at_or_after(tz, date.and_time(time)) {
                out.push(at);
            }
        }
    }
}

/// The first instant whose wall-clock time in `tz` is `local` or, when a jump skips it,
/// the first instant after the jump.
fn first_instant_at_or_after(tz: Tz, local: chrono::NaiveDateTime) -> Option<DateTime<Utc>> {
    // Jumps are at most a few hours; look a minute at a time past the gap.
    for step in 0..=24 * 60 {
        let at = local + chrono::TimeDelta::minutes(step);
        if let Some(t) = tz.from_local_datetime(&at).earliest() {
            return Some(t.with_timezone(&Utc));
        }
    }
    None
}

/// How far ahead [`next_change`] looks: a few years covers `years` and leap days.
const HORIZON_DAYS: u64 = 5 * 366;

/// The first instant after `t` at which `contains` answers differently than at `t`, or
/// `None` if it does not change within a few years. `contains` must be a union of
/// `intervals`; their midnights and `times` bounds are the only places it can change.
pub fn next_change(
    intervals: &[&TimeInterval],
    contains: impl Fn(DateTime<Utc>) -> bool,
    t: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let now = contains(t);
    let mut zones: Vec<Tz> = intervals.iter().map(|i| i.tz()).collect();
    zones.sort_by_key(|z| z.name());
    zones.dedup();
    if zones.is_empty() {
        return None;
    }
    // Walk the days of the earliest zone's calendar (starting the day before, so every
    // zone's today is covered) and look at each day's boundaries in order.
    let start = zones
        .iter()
        .map(|z| t.with_timezone(z).date_naive())
        .min()?
        .checked_sub_days(Days::new(1))?;
    let mut candidates = Vec::new();
    for d in 0..HORIZON_DAYS {
        let Some(date) = start.checked_add_days(Days::new(d)) else {
            break;
        };
        candidates.clear();
        for i in intervals {
            i.boundaries(date, &mut candidates);
        }
        candidates.sort_unstable();
        for &at in &candidates {
            if at > t && contains(at) != now {
                return Some(at);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(yaml: &str) -> TimeInterval {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn contains_follows_every_field() {
        // (interval, instant, expected)
        let cases = [
            // Business hours, Monday to Friday, 09:00-17:00 UTC. 2026-12-07 is a Monday.
            (
                "{times: [{start_time: '09:00', end_time: '17:00'}], weekdays: ['monday:friday']}",
                "2026-12-07T09:00:00Z",
                true,
            ),
            (
                "{times: [{start_time: '09:00', end_time: '17:00'}], weekdays: ['monday:friday']}",
                "2026-12-07T17:00:00Z",
                false,
            ),
            (
                "{times: [{start_time: '09:00', end_time: '17:00'}], weekdays: ['monday:friday']}",
                "2026-12-06T12:00:00Z",
                false,
            ),
            // Case does not matter; a single day.
            ("{weekdays: ['Sunday']}", "2026-12-06T12:00:00Z", true),
            // The last day of the month, in a leap February and a 30-day month.
            ("{days_of_month: ['-1']}", "2028-02-29T00:00:00Z", true),
            ("{days_of_month: ['-1']}", "2028-02-28T23:59:00Z", false),
            ("{days_of_month: ['-1']}", "2026-11-30T10:00:00Z", true),
            // The last week, and from the 1st to the second to last day.
            ("{days_of_month: ['-7:-1']}", "2026-02-22T10:00:00Z", true),
            ("{days_of_month: ['-7:-1']}", "2026-02-21T10:00:00Z", false),
            ("{days_of_month: ['1:-2']}", "2026-04-29T10:00:00Z", true),
            ("{days_of_month: ['1:-2']}", "2026-04-30T10:00:00Z", false),
            // A start past the end of a short month holds nothing.
            ("{days_of_month: ['31']}", "2026-04-30T10:00:00Z", false),
            ("{days_of_month: ['30:31']}", "2026-02-28T10:00:00Z", false),
            // Months by name, number and range.
            ("{months: ['december']}", "2026-12-24T10:00:00Z", true),
            ("{months: ['1:3', 'july']}", "2026-07-01T00:00:00Z", true),
            ("{months: ['1:3', 'july']}", "2026-06-30T23:59:59Z", false),
            ("{years: ['2025:2026']}", "2026-12-31T23:59:59Z", true),
            ("{years: ['2025:2026']}", "2027-01-01T00:00:00Z", false),
            // A public holiday: a fixed date.
            (
                "{months: ['december'], days_of_month: ['25']}",
                "2026-12-25T23:00:00Z",
                true,
            ),
            // In a location: 08:00 in Berlin is 07:00 UTC in winter ...
            (
                "{times: [{start_time: '08:00', end_time: '09:00'}], location: Europe/Berlin}",
                "2026-12-07T07:30:00Z",
                true,
            ),
            // ... and 06:00 UTC in summer: the range follows daylight saving time.
            (
                "{times: [{start_time: '08:00', end_time: '09:00'}], location: Europe/Berlin}",
                "2026-07-07T06:30:00Z",
                true,
            ),
            (
                "{times: [{start_time: '08:00', end_time: '09:00'}], location: Europe/Berlin}",
                "2026-07-07T07:30:00Z",
                false,
            ),
            // The local date decides the day: Monday 00:30 in Berlin is Sunday in UTC.
            (
                "{weekdays: [monday], location: Europe/Berlin}",
                "2026-12-06T23:30:00Z",
                true,
            ),
            // `24:00` ends at midnight.
            (
                "{times: [{start_time: '22:00', end_time: '24:00'}]}",
                "2026-12-07T23:59:59Z",
                true,
            ),
            // Several ranges: any holds.
            (
                "{times: [{start_time: '00:00', end_time: '06:00'}, {start_time: '22:00', end_time: '24:00'}]}",
                "2026-12-07T05:00:00Z",
                true,
            ),
        ];
        for (yaml, at, want) in cases {
            assert_eq!(interval(yaml).contains(utc(at)), want, "{yaml} at {at}");
        }
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        let cases = [
            (
                "{times: [{start_time: '17:00', end_time: '09:00'}]}",
                "start_time `17:00` is not before end_time `09:00`",
            ),
            (
                "{times: [{start_time: '9:00', end_time: '17:00'}]}",
                "`9:00` is not a time",
            ),
            (
                "{times: [{start_time: '09:00', end_time: '24:01'}]}",
                "`24:01` is not a time",
            ),
            ("{times: [{start_time: '09:00'}]}", "end_time"),
            (
                "{weekdays: ['friday:monday']}",
                "end day is before the start day",
            ),
            ("{weekdays: ['funday']}", "`funday` is not a weekday"),
            ("{days_of_month: ['0']}", "`0` is not a day of the month"),
            ("{days_of_month: ['32']}", "`32` is not a day of the month"),
            ("{days_of_month: ['-3:5']}", "must be negative"),
            ("{days_of_month: ['20:-15']}", "always before the start day"),
            ("{months: ['13']}", "`13` is not a month"),
            ("{months: ['march:january']}", "end month is before"),
            ("{years: ['2027:2026']}", "end year is before"),
            ("{years: ['1:2:3']}", "cannot read the range"),
            (
                "{location: Mars/Olympus}",
                "unknown location `Mars/Olympus`",
            ),
            ("{weekday: [monday]}", "unknown field"),
        ];
        for (yaml, want) in cases {
            let err = serde_saphyr::from_str::<TimeInterval>(yaml)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{yaml}: {err}");
        }
    }

    fn change(yaml: &str, at: &str) -> Option<DateTime<Utc>> {
        let i = interval(yaml);
        next_change(&[&i], |t| i.contains(t), utc(at))
    }

    #[test]
    fn the_next_change_is_the_next_boundary_where_the_answer_differs() {
        let hours =
            "{times: [{start_time: '09:00', end_time: '17:00'}], weekdays: ['monday:friday']}";
        // Inside: ends at 17:00 the same day.
        assert_eq!(
            change(hours, "2026-12-07T10:00:00Z"),
            Some(utc("2026-12-07T17:00:00Z"))
        );
        // Friday evening: starts again on Monday.
        assert_eq!(
            change(hours, "2026-12-11T18:00:00Z"),
            Some(utc("2026-12-14T09:00:00Z"))
        );
        // A whole-day interval ends at the local midnight.
        assert_eq!(
            change(
                "{weekdays: [saturday, sunday], location: Europe/Berlin}",
                "2026-12-06T12:00:00Z"
            ),
            Some(utc("2026-12-06T23:00:00Z"))
        );
        // Over a DST change: 02:30 does not exist in Berlin on 2026-03-29; the range
        // starts where the clock lands, 03:00 CEST = 01:00 UTC.
        assert_eq!(
            change(
                "{times: [{start_time: '02:30', end_time: '04:00'}], location: Europe/Berlin}",
                "2026-03-29T00:00:00Z"
            ),
            Some(utc("2026-03-29T01:00:00Z"))
        );
        // The night the clocks go back, 08:00 is 07:00 UTC the day after.
        assert_eq!(
            change(
                "{times: [{start_time: '08:00', end_time: '09:00'}], location: Europe/Berlin}",
                "2026-10-25T06:30:00Z"
            ),
            Some(utc("2026-10-25T07:00:00Z"))
        );
        // Years that are over never change again.
        assert_eq!(change("{years: ['2020']}", "2026-12-07T10:00:00Z"), None);
    }
}
