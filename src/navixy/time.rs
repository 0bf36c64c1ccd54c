//! Navixy's two time formats, and how they become instants.
//!
//! Without `iso_datetime`, Navixy sends `yyyy-MM-dd HH:mm:ss` in the *user's* time zone
//! with no offset; the wire of newer servers sends ISO-8601 with an offset. Both are kept
//! as they came ([`NavixyTime`]) and turned into an instant only with the configured zone.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
        if t.len() == 19 && t.as_bytes().get(10) == Some(&b' ') {
            return NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S")
                .ok()
                .map(NavixyTime::Local);
        }
        if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
            return Some(NavixyTime::Instant(dt.with_timezone(&Utc)));
        }
        // ISO without offset (`2025-02-11T15:12:58`): treat like the offset-less form.
        NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()
            .map(NavixyTime::Local)
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

impl<'de> Deserialize<'de> for NavixyTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: std::borrow::Cow<'de, str> = serde::de::Deserialize::deserialize(d)?;
        NavixyTime::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not a Navixy time: `{s}`")))
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
