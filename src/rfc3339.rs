//! Times as the payloads, the store's JSON and the API write them: RFC 3339 in UTC with
//! `Z`, and a fraction only when there is one (`2026-01-01T10:00:00Z`,
//! `2026-01-01T10:00:00.250Z`). This is chrono's own form (`SecondsFormat::AutoSi`, the
//! one its `serde` writes), made with a few stores into a stack buffer instead of the
//! formatting machinery: every transition and notification carries several times, and
//! chrono's `serde` form costs about 2,700 instructions each through `serde_json`.
//!
//! Use `#[serde(serialize_with = "crate::rfc3339::serialize")]` (or `serialize_opt`,
//! `serialize_all`) on a `DateTime<Utc>` field; reading stays chrono's.

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::Serializer;
use serde::ser::SerializeSeq;

/// `t` as text.
pub fn format(t: DateTime<Utc>) -> String {
    match Text::of(t) {
        Some(text) => text.as_str().to_owned(),
        None => chrono_form(t),
    }
}

pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    match Text::of(*t) {
        Some(text) => s.serialize_str(text.as_str()),
        None => s.serialize_str(&chrono_form(*t)),
    }
}

/// The years [`Text`] does not write.
fn chrono_form(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

pub fn serialize_opt<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize(t, s),
        None => s.serialize_none(),
    }
}

pub fn serialize_all<S: Serializer>(ts: &[DateTime<Utc>], s: S) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(ts.len()))?;
    for t in ts {
        seq.serialize_element(&Str(*t))?;
    }
    seq.end()
}

/// One time as a serde string, for sequences.
struct Str(DateTime<Utc>);

impl serde::Serialize for Str {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize(&self.0, s)
    }
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` at most.
const LONGEST: usize = 30;

/// The text of one time, on the stack.
struct Text {
    buf: [u8; LONGEST],
    len: usize,
}

impl Text {
    /// `None` for years outside 0..=9999, which chrono writes with a sign (`+10000`).
    fn of(t: DateTime<Utc>) -> Option<Text> {
        let year = t.year();
        if !(0..=9999).contains(&year) {
            return None;
        }
        let (mut sec, mut nano) = (t.second(), t.nanosecond());
        // A leap second is second 59 with a nanosecond past one second.
        if nano >= 1_000_000_000 {
            sec += 1;
            nano -= 1_000_000_000;
        }
        let mut buf = *b"0000-00-00T00:00:00.000000000Z";
        two(&mut buf[0..2], year as u32 / 100);
        two(&mut buf[2..4], year as u32 % 100);
        two(&mut buf[5..7], t.month());
        two(&mut buf[8..10], t.day());
        two(&mut buf[11..13], t.hour());
        two(&mut buf[14..16], t.minute());
        two(&mut buf[17..19], sec);
        let digits = if nano == 0 {
            0
        } else if nano % 1_000_000 == 0 {
            nano /= 1_000_000;
            3
        } else if nano % 1_000 == 0 {
            nano /= 1_000;
            6
        } else {
            9
        };
        let mut len = 19;
        if digits > 0 {
            len += 1 + digits;
            for i in (20..len).rev() {
                buf[i] = b'0' + (nano % 10) as u8;
                nano /= 10;
            }
        }
        buf[len] = b'Z';
        Some(Text { buf, len: len + 1 })
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits and punctuation are written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// `n` (below 100) as two digits.
fn two(out: &mut [u8], n: u32) {
    out[0] = b'0' + (n / 10) as u8;
    out[1] = b'0' + (n % 10) as u8;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};

    fn chrono_serde(t: DateTime<Utc>) -> String {
        serde_json::to_value(t)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    fn at(ms: i64, extra_nanos: u32) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(ms).unwrap() + chrono::Duration::nanoseconds(extra_nanos.into())
    }

    #[test]
    fn every_kind_of_fraction_reads_as_chrono_writes_it() {
        let cases = [
            at(0, 0),
            at(1_767_261_600_000, 0),     // 2026-01-01T10:00:00Z
            at(1_767_261_600_250, 0),     // millis
            at(1_767_261_600_001, 0),     // a millisecond's leading zeros
            at(1_767_261_600_000, 1_000), // micros
            at(1_767_261_600_000, 7),     // nanos
            at(1_767_261_600_999, 999_999),
            at(-62_135_596_800_000, 0), // 0001-01-01
            at(253_402_300_799_999, 0), // 9999-12-31T23:59:59.999Z
        ];
        for t in cases {
            assert_eq!(format(t), chrono_serde(t), "{t:?}");
            assert_eq!(format(t), t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        }
    }

    #[test]
    fn a_spread_of_times_reads_as_chrono_writes_it() {
        // A fixed linear congruential walk: times from 1970 to 2100 with every kind of
        // fraction, the same on every run.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let ms = (x >> 20) as i64 % 4_102_444_800_000;
            let nanos = match x % 4 {
                0 => 0,
                1 => (x >> 8) as u32 % 1_000 * 1_000,
                _ => (x >> 8) as u32 % 1_000_000,
            };
            let t = at(ms, nanos);
            assert_eq!(format(t), chrono_serde(t), "{t:?}");
        }
    }

    #[test]
    fn a_leap_second_and_years_past_9999_read_as_chrono_writes_them() {
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
            .unwrap()
            .and_utc();
        assert_eq!(format(leap), "2016-12-31T23:59:60.500Z");
        assert_eq!(format(leap), chrono_serde(leap));
        let far = NaiveDate::from_ymd_opt(12_000, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap()
            .and_utc();
        assert_eq!(format(far), chrono_serde(far));
        assert!(format(far).starts_with("+12000-"));
    }

    #[test]
    fn fields_options_and_lists_serialize_as_text() {
        #[derive(serde::Serialize)]
        struct Times {
            #[serde(serialize_with = "serialize")]
            one: DateTime<Utc>,
            #[serde(serialize_with = "serialize_opt")]
            none: Option<DateTime<Utc>>,
            #[serde(serialize_with = "serialize_opt")]
            some: Option<DateTime<Utc>>,
            #[serde(serialize_with = "serialize_all")]
            all: Vec<DateTime<Utc>>,
        }
        let t = at(1_767_261_600_250, 0);
        let json = serde_json::to_string(&Times {
            one: t,
            none: None,
            some: Some(t),
            all: vec![t, at(0, 0)],
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"one":"2026-01-01T10:00:00.250Z","none":null,"some":"2026-01-01T10:00:00.250Z","all":["2026-01-01T10:00:00.250Z","1970-01-01T00:00:00Z"]}"#
        );
    }
}
