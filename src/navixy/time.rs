//! Navixy's two time formats, and how they become instants.
//!
//! Without `iso_datetime`, Navixy sends `yyyy-MM-dd HH:mm:ss` in the *user's* time zone
//! with no offset; the wire of newer servers sends ISO-8601 with an offset. Both are kept
//! as they came ([`NavixyTime`]) and turned into an instant only with the configured zone.
//!
//! A full state carries eight or more times, so parsing is on the decoder's hot path: the
//! common shapes are read byte by byte without allocating, and only odd ones (fractions
//! of a second, offsets without a colon) go through chrono's general parser.

use std::cell::Cell;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::text::truncate;

/// A time as Navixy sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NavixyTime {
    /// `2018-10-17 12:51:43`: wall time in the user's zone.
    Local(NaiveDateTime),
    /// `2025-10-08T17:27:04-06:00` or `...Z`: an instant.
    Instant(DateTime<Utc>),
}

impl NavixyTime {
    /// Parses either format; `None` for anything else.
    pub fn parse(text: &str) -> Option<NavixyTime> {
        let t = text.trim();
        if let Some(parsed) = parse_fast(t.as_bytes()) {
            return Some(parsed);
        }
        parse_slow(t)
    }

    /// The instant, reading a local time in `tz` (the account's zone from config).
    pub fn to_utc(&self, tz: chrono_tz::Tz) -> DateTime<Utc> {
        match self {
            NavixyTime::Instant(t) => *t,
            NavixyTime::Local(naive) => tz
                .from_local_datetime(naive)
                .earliest()
                // A wall time inside a DST gap: take it as UTC rather than drop it.
                .map_or_else(|| Utc.from_utc_datetime(naive), |t| t.with_timezone(&Utc)),
        }
    }
}

/// The lengths of the shapes [`parse_fast`] reads without a fraction of a second, the
/// commonest first: with an offset, local, with `Z`.
pub(crate) const FAST_LENGTHS: [usize; 3] = [25, 19, 20];

/// `yyyy-MM-dd HH:mm:ss`, `yyyy-MM-ddTHH:mm:ss` and the latter followed by `Z` or
/// `±HH:MM`: the shapes Navixy sends. Anything else returns `None` for the slow path.
/// Every byte is checked, so a text it reads is exactly one of these shapes (no
/// whitespace, no quote).
pub(crate) fn parse_fast(b: &[u8]) -> Option<NavixyTime> {
    if b.len() < 19 {
        return None;
    }
    let sep = b[10];
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if sep != b' ' && sep != b'T' {
        return None;
    }
    let date = date_of(b)?;
    let hour = digits2(&b[11..13])?;
    let minute = digits2(&b[14..16])?;
    let second = digits2(&b[17..19])?;
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let day_secs = (hour * 3600 + minute * 60 + second) as i32;
    // `.250`: a fraction of a second (the recorder writes milliseconds), up to nanoseconds.
    let mut rest = &b[19..];
    let mut nanos = 0u32;
    if let [b'.', tail @ ..] = rest {
        let digits = tail.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        for (i, c) in tail[..digits].iter().enumerate() {
            nanos += u32::from(c - b'0') * 10u32.pow(8 - i as u32);
        }
        rest = &tail[digits..];
    }
    let offset_secs = match rest {
        [] => {
            let time = NaiveTime::from_num_seconds_from_midnight_opt(day_secs as u32, nanos)?;
            return Some(NavixyTime::Local(date.and_time(time)));
        }
        [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h0, b':', m1, m0] => {
            let oh = digits2(&[*h1, *h0])?;
            let om = digits2(&[*m1, *m0])?;
            if oh > 23 || om > 59 {
                return None;
            }
            let secs = (oh * 3600 + om * 60) as i32;
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    // UTC = local - offset; at most one day either way, so no general date arithmetic.
    let utc_secs = day_secs - offset_secs;
    let (date, utc_secs) = if utc_secs < 0 {
        (date.pred_opt()?, utc_secs + 86_400)
    } else if utc_secs >= 86_400 {
        (date.succ_opt()?, utc_secs - 86_400)
    } else {
        (date, utc_secs)
    };
    let time = NaiveTime::from_num_seconds_from_midnight_opt(utc_secs as u32, nanos)?;
    Some(NavixyTime::Instant(
        Utc.from_utc_datetime(&date.and_time(time)),
    ))
}

thread_local! {
    /// The last date parsed: a frame's times share a handful of dates, and building a
    /// `NaiveDate` (calendar validation) was a tenth of the decoder's time.
    static LAST_DATE: Cell<(u64, Option<NaiveDate>)> = const { Cell::new((0, None)) };
}

/// The date of `yyyy-MM-dd...`, through a one-entry cache keyed by its eight digits.
fn date_of(b: &[u8]) -> Option<NaiveDate> {
    let mut key = [0u8; 8];
    key[..4].copy_from_slice(&b[0..4]);
    key[4..6].copy_from_slice(&b[5..7]);
    key[6..8].copy_from_slice(&b[8..10]);
    let key = u64::from_le_bytes(key);
    if let Some(date) = LAST_DATE.with(|c| {
        let (k, d) = c.get();
        if k == key { d } else { None }
    }) {
        return Some(date);
    }
    let year = digits4(&b[0..4])?;
    let month = digits2(&b[5..7])?;
    let day = digits2(&b[8..10])?;
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    LAST_DATE.with(|c| c.set((key, Some(date))));
    Some(date)
}

fn parse_slow(t: &str) -> Option<NavixyTime> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(t)
        .or_else(|_| DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f%z"))
    {
        return Some(NavixyTime::Instant(dt.with_timezone(&Utc)));
    }
    // ISO with a fraction but no offset (`2025-02-11T15:12:58.250`): like the offset-less form.
    NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f"))
        .ok()
        .map(NavixyTime::Local)
}

fn digit(b: u8) -> Option<u32> {
    b.is_ascii_digit().then(|| u32::from(b - b'0'))
}

fn digits2(b: &[u8]) -> Option<u32> {
    Some(digit(b[0])? * 10 + digit(b[1])?)
}

fn digits4(b: &[u8]) -> Option<u32> {
    Some(digits2(&b[0..2])? * 100 + digits2(&b[2..4])?)
}

/// Reads a time from a borrowed string when the input allows it: no allocation.
struct TimeVisitor;

impl Visitor<'_> for TimeVisitor {
    type Value = NavixyTime;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a Navixy time (`yyyy-MM-dd HH:mm:ss` or ISO-8601)")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<NavixyTime, E> {
        NavixyTime::parse(s)
            .ok_or_else(|| E::custom(format!("not a Navixy time: `{}`", truncate(s, 40))))
    }
}

impl<'de> Deserialize<'de> for NavixyTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TimeVisitor)
    }
}

impl Serialize for NavixyTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            NavixyTime::Local(n) => s.collect_str(&n.format("%Y-%m-%d %H:%M:%S")),
            NavixyTime::Instant(t) => {
                s.collect_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(s: &str) -> NavixyTime {
        NavixyTime::Local(NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap())
    }

    fn instant(s: &str) -> NavixyTime {
        NavixyTime::Instant(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc))
    }

    #[test]
    fn parses_both_formats() {
        assert_eq!(
            NavixyTime::parse("2018-10-17 12:51:43"),
            Some(local("2018-10-17 12:51:43"))
        );
        assert_eq!(
            NavixyTime::parse("2025-10-08T17:27:04-06:00"),
            Some(instant("2025-10-08T23:27:04Z"))
        );
        assert_eq!(
            NavixyTime::parse("2025-10-08T17:27:04+05:30"),
            Some(instant("2025-10-08T11:57:04Z"))
        );
        assert_eq!(
            NavixyTime::parse("2025-02-11T15:12:58Z"),
            Some(instant("2025-02-11T15:12:58Z"))
        );
        assert_eq!(
            NavixyTime::parse("2025-02-11T15:12:58"),
            Some(local("2025-02-11 15:12:58"))
        );
    }

    #[test]
    fn slow_path_takes_fractions_and_compact_offsets() {
        assert_eq!(
            NavixyTime::parse("2025-02-11T15:12:58.250Z"),
            Some(NavixyTime::Instant(
                DateTime::parse_from_rfc3339("2025-02-11T15:12:58.250Z")
                    .unwrap()
                    .with_timezone(&Utc)
            ))
        );
        assert_eq!(
            NavixyTime::parse("2025-02-11 15:12:58.5"),
            Some(NavixyTime::Local(
                NaiveDateTime::parse_from_str("2025-02-11 15:12:58.5", "%Y-%m-%d %H:%M:%S%.f")
                    .unwrap()
            ))
        );
        assert_eq!(
            NavixyTime::parse("2026-01-05T08:00:01.123456789+01:00"),
            Some(NavixyTime::Instant(
                DateTime::parse_from_rfc3339("2026-01-05T07:00:01.123456789Z")
                    .unwrap()
                    .with_timezone(&Utc)
            ))
        );
        // Compact offsets are not what Navixy sends, but ISO allows them: the slow path.
        assert_eq!(
            NavixyTime::parse("2026-01-05T08:00:01+0100"),
            Some(instant("2026-01-05T07:00:01Z"))
        );
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for s in [
            "",
            "X",
            "2018-13-17 12:51:43",
            "2018-02-30 12:00:00",
            "2018-10-17 25:00:00",
            "2018-10-17 12:51:43+",
            "2018-10-17T12:51:43+99:00",
            "２０１８-10-17 12:51:43",
            "2018-10-17x12:51:43",
            "yyyy-MM-dd HH:mm:ss",
        ] {
            assert_eq!(NavixyTime::parse(s), None, "{s}");
        }
    }

    #[test]
    fn offsets_across_midnight_and_year_ends() {
        assert_eq!(
            NavixyTime::parse("2025-12-31T20:00:00-06:00"),
            Some(instant("2026-01-01T02:00:00Z"))
        );
        assert_eq!(
            NavixyTime::parse("2026-01-01T03:00:00+05:00"),
            Some(instant("2025-12-31T22:00:00Z"))
        );
        assert_eq!(
            NavixyTime::parse("2024-02-29T23:30:00-01:00"),
            Some(instant("2024-03-01T00:30:00Z"))
        );
        // The date cache must not leak one date into another.
        assert_eq!(
            NavixyTime::parse("2024-02-29 10:00:00"),
            Some(local("2024-02-29 10:00:00"))
        );
        assert_eq!(NavixyTime::parse("2023-02-29 10:00:00"), None);
        assert_eq!(
            NavixyTime::parse("2024-02-29 10:00:00"),
            Some(local("2024-02-29 10:00:00"))
        );
    }

    #[test]
    fn local_time_reads_in_the_configured_zone() {
        let t = local("2025-07-01 12:00:00");
        assert_eq!(
            t.to_utc(chrono_tz::Europe::Berlin),
            instant("2025-07-01T10:00:00Z").to_utc(chrono_tz::UTC)
        );
        assert_eq!(
            t.to_utc(chrono_tz::UTC),
            instant("2025-07-01T12:00:00Z").to_utc(chrono_tz::UTC)
        );
    }

    #[test]
    fn round_trips_through_serde() {
        for s in ["\"2018-10-17 12:51:43\"", "\"2025-10-08T23:27:04Z\""] {
            let t: NavixyTime = serde_json::from_str(s).unwrap();
            assert_eq!(serde_json::to_string(&t).unwrap(), s);
        }
        assert!(serde_json::from_str::<NavixyTime>("12").is_err());
    }
}
