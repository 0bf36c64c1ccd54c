//! Silences as stored: label matchers and a time range. The admin API adds, lists and
//! deletes them through [`super::Store`]; the dispatcher compiles the active ones and asks
//! them before each notification.
//!
//! A new silence is checked as Alertmanager checks one: at least one matcher, valid
//! regexes, and at least one matcher that does not match the empty string (a silence
//! whose every matcher matches an alert without the label would silence everything). It
//! reads Alertmanager's field names (`startsAt`, `isRegex`, ...) besides ours. Two caps
//! keep a script gone wrong from filling the database or slowing every notification:
//! [`MAX_MATCHERS`] per silence and [`MAX_UNEXPIRED_SILENCES`] in force or pending.

use chrono::{DateTime, Utc};

use serde::{Deserialize, Serialize};

use super::{Conn, StoreError, from_json, from_ms, params, to_json, to_ms};

/// The most matchers one silence may have: more is a mistake, and each one is asked for
/// every notification.
pub const MAX_MATCHERS: usize = 32;

/// The most silences in force or not yet started at once (expired ones do not count).
/// The dispatcher asks every one of them before each notification.
pub const MAX_UNEXPIRED_SILENCES: usize = 10_000;

/// Labels that every alert has, never empty: a negated matcher on one of them does not
/// match "an alert without the label", because there is none.
const ALWAYS_SET: [&str; 3] = ["rule", "alertname", "severity"];

/// One matcher of a silence, as in Alertmanager: a label name and a value, compared for
/// equality or as a regular expression (anchored at both ends), possibly negated.
///
/// Names are the ones routes use: `rule` (also `alertname`), `severity`, `tracker_id`,
/// `tracker_label` and any rule label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceMatcher {
    /// The label: `rule` (also `alertname`), `severity`, `tracker_id`, `tracker_label`,
    /// `key` or a rule label.
    pub name: String,
    pub value: String,
    /// `value` is a regular expression, anchored at both ends. Also read as `isRegex`.
    #[serde(default, alias = "isRegex")]
    pub is_regex: bool,
    /// `false` negates the matcher (`!=`, `!~`). Also read as `isEqual`.
    #[serde(default = "default_true", alias = "isEqual")]
    #[schema(default = true)]
    pub is_equal: bool,
}

fn default_true() -> bool {
    true
}

impl SilenceMatcher {
    /// Checks the matcher; a bad regex is an error naming it.
    pub fn validate(&self) -> Result<(), String> {
        self.matches_empty().map(|_| ())
    }

    /// True when the matcher holds for an alert without its label (an empty value), as
    /// Alertmanager asks: `x=""`, `x=~".*"`, and, unlike Alertmanager, which counts no
    /// negated matcher, `x!="a"` and `x!~"a.*"` on a label that an alert may lack. An
    /// error when the matcher is invalid.
    pub fn matches_empty(&self) -> Result<bool, String> {
        if self.name.trim().is_empty() {
            return Err("a silence matcher needs a label `name`".into());
        }
        let hit = if self.is_regex {
            regex::Regex::new(&format!("^(?:{})$", self.value))
                .map_err(|e| {
                    format!(
                        "silence matcher `{}`: `{}` is not a valid regex: {e}",
                        self.name, self.value
                    )
                })?
                .is_match("")
        } else {
            self.value.is_empty()
        };
        Ok(if self.is_equal {
            hit
        } else {
            !hit && !ALWAYS_SET.contains(&self.name.as_str())
        })
    }
}

impl std::fmt::Display for SilenceMatcher {
    /// As Alertmanager writes matchers: `rule="x"`, `rule=~"x.*"`, `rule!="x"`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match (self.is_equal, self.is_regex) {
            (true, false) => "=",
            (true, true) => "=~",
            (false, false) => "!=",
            (false, true) => "!~",
        };
        write!(f, "{}{op}{:?}", self.name, self.value)
    }
}

/// A silence as the admin API receives it: our field names or Alertmanager's
/// (`startsAt`, `endsAt`, `createdBy`, `matchers[].isRegex`, `matchers[].isEqual`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// All must match for the silence to hold back an alert (1 to 32).
    #[schema(min_items = 1, max_items = 32)]
    pub matchers: Vec<SilenceMatcher>,
    /// Default: now. Also read as `startsAt`.
    #[serde(default, alias = "startsAt")]
    pub starts_at: Option<DateTime<Utc>>,
    /// Must be after `starts_at` and in the future. Also read as `endsAt`.
    #[serde(alias = "endsAt")]
    pub ends_at: DateTime<Utc>,
    /// Who added it. Also read as `createdBy`.
    #[serde(default, alias = "createdBy")]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
}

impl NewSilence {
    /// Validates and assigns an id (`sil_` + a UUIDv7).
    pub fn into_silence(self, now: DateTime<Utc>) -> Result<Silence, StoreError> {
        if self.matchers.is_empty() {
            return Err(StoreError::Invalid(
                "a silence needs at least one matcher (it would silence everything)".into(),
            ));
        }
        if self.matchers.len() > MAX_MATCHERS {
            return Err(StoreError::Invalid(format!(
                "a silence has at most {MAX_MATCHERS} matchers, this one has {}",
                self.matchers.len()
            )));
        }
        let mut all_match_empty = true;
        for m in &self.matchers {
            all_match_empty &= m.matches_empty().map_err(StoreError::Invalid)?;
        }
        if all_match_empty {
            let matchers: Vec<String> = self.matchers.iter().map(|m| m.to_string()).collect();
            return Err(StoreError::Invalid(format!(
                "at least one matcher must not match the empty string: {{{}}} would silence \
                 every alert without those labels, so possibly all of them",
                matchers.join(", ")
            )));
        }
        let starts_at = self.starts_at.unwrap_or(now);
        if self.ends_at <= starts_at {
            return Err(StoreError::Invalid(format!(
                "a silence must end after it starts (starts_at {}, ends_at {})",
                starts_at.to_rfc3339(),
                self.ends_at.to_rfc3339()
            )));
        }
        if self.ends_at <= now {
            return Err(StoreError::Invalid(format!(
                "ends_at {} is already past",
                self.ends_at.to_rfc3339()
            )));
        }
        Ok(Silence {
            id: format!("sil_{}", uuid::Uuid::now_v7().simple()),
            matchers: self.matchers,
            starts_at,
            ends_at: self.ends_at,
            created_by: self.created_by,
            comment: self.comment,
            created_at: now,
        })
    }
}

/// A stored silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Silence {
    /// `sil_` and a UUIDv7.
    pub id: String,
    pub matchers: Vec<SilenceMatcher>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub created_by: String,
    pub comment: String,
    pub created_at: DateTime<Utc>,
}

impl Silence {
    /// In force at `now`: started and not yet ended.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.starts_at <= now && now < self.ends_at
    }

    /// `pending`, `active` or `expired`, for the admin API.
    pub fn state(&self, now: DateTime<Utc>) -> &'static str {
        if now < self.starts_at {
            "pending"
        } else if now < self.ends_at {
            "active"
        } else {
            "expired"
        }
    }
}

/// Stores a new silence, unless [`MAX_UNEXPIRED_SILENCES`] are already in force or
/// pending (counted in the same transaction as the insert).
pub(super) fn insert_silence(conn: &Conn, s: &Silence) -> Result<(), StoreError> {
    let unexpired: i64 = conn.query_one(
        "SELECT COUNT(*) FROM silences WHERE ends_at > ?1",
        params![to_ms(s.created_at)],
        |row| row.get(0),
    )?;
    if unexpired >= MAX_UNEXPIRED_SILENCES as i64 {
        return Err(StoreError::Invalid(format!(
            "there are already {unexpired} silences in force or pending, the most allowed is \
             {MAX_UNEXPIRED_SILENCES}: delete some (DELETE /api/v1/silences/{{id}}) first"
        )));
    }
    conn.execute(
        "INSERT INTO silences (id, matchers, starts_at, ends_at, created_by, comment, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            s.id,
            to_json("silence matchers", &s.matchers)?,
            to_ms(s.starts_at),
            to_ms(s.ends_at),
            s.created_by,
            s.comment,
            to_ms(s.created_at),
        ],
    )?;
    Ok(())
}

pub(super) fn delete_silence(conn: &Conn, id: &str) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM silences WHERE id = ?1", params![id])? > 0)
}

/// Every silence, newest first.
pub fn load_silences(conn: &Conn) -> Result<Vec<Silence>, StoreError> {
    conn.query_map(
        "SELECT id, matchers, starts_at, ends_at, created_by, comment, created_at
         FROM silences ORDER BY created_at DESC, id DESC",
        params![],
        |row| {
            Ok(Silence {
                id: row.get(0)?,
                matchers: from_json("silence matchers", &row.get::<String>(1)?)?,
                starts_at: from_ms(row.get(2)?),
                ends_at: from_ms(row.get(3)?),
                created_by: row.get(4)?,
                comment: row.get(5)?,
                created_at: from_ms(row.get(6)?),
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Conn, conn_tests};

    conn_tests!(unexpired_silences_are_capped_and_expired_ones_do_not_count);

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn new_silence(body: &str) -> Result<Silence, StoreError> {
        let new: NewSilence = serde_json::from_str(body)
            .map_err(|e| StoreError::Invalid(format!("invalid silence: {e}")))?;
        new.into_silence(at("2030-01-01T00:00:00Z"))
    }

    fn refusal(body: &str) -> String {
        match new_silence(body) {
            Err(StoreError::Invalid(message)) => message,
            other => panic!("{body} was not refused: {other:?}"),
        }
    }

    #[test]
    fn silences_that_match_every_alert_are_refused() {
        let everything = [
            (
                r#"{"name": "rule", "value": ".*", "is_regex": true}"#,
                r#"rule=~".*""#,
            ),
            (r#"{"name": "team", "value": ""}"#, r#"team="""#),
            (
                r#"{"name": "team", "value": "ops", "is_equal": false}"#,
                r#"team!="ops""#,
            ),
            (
                r#"{"name": "team", "value": "ops.*", "is_regex": true, "is_equal": false}"#,
                r#"team!~"ops.*""#,
            ),
            (
                r#"{"name": "x", "value": "a|", "is_regex": true}"#,
                r#"x=~"a|""#,
            ),
        ];
        for (matcher, shown) in everything {
            let body = format!(r#"{{"matchers": [{matcher}], "ends_at": "2030-01-02T00:00:00Z"}}"#);
            assert_eq!(
                refusal(&body),
                format!(
                    "at least one matcher must not match the empty string: {{{shown}}} would \
                     silence every alert without those labels, so possibly all of them"
                )
            );
        }
        // Two that each match everything still do together.
        let body = r#"{"matchers": [{"name": "rule", "value": ".*", "isRegex": true},
                                    {"name": "team", "value": "", "isEqual": true}],
                       "endsAt": "2030-01-02T00:00:00Z"}"#;
        assert!(refusal(body).starts_with("at least one matcher must not match the empty string"));
    }

    #[test]
    fn one_matcher_that_needs_a_value_is_enough() {
        let accepted = [
            r#"[{"name": "rule", "value": "fuel_drain"}]"#,
            r#"[{"name": "rule", "value": ".+", "is_regex": true}]"#,
            r#"[{"name": "team", "value": "", "is_equal": false}]"#,
            // `severity` is never empty: `!=` on it is not "without the label".
            r#"[{"name": "severity", "value": "critical", "is_equal": false}]"#,
            r#"[{"name": "rule", "value": ".*", "is_regex": true}, {"name": "tracker_id", "value": "7"}]"#,
        ];
        for matchers in accepted {
            let body = format!(r#"{{"matchers": {matchers}, "ends_at": "2030-01-02T00:00:00Z"}}"#);
            new_silence(&body).unwrap_or_else(|e| panic!("{matchers}: {e}"));
        }
    }

    #[test]
    fn alertmanager_field_names_are_read() {
        let body = r#"{"matchers": [{"name": "rule", "value": "fuel.*", "isRegex": true, "isEqual": false},
                                    {"name": "tracker_id", "value": "7", "isRegex": false, "isEqual": true}],
                       "startsAt": "2030-01-01T01:00:00Z", "endsAt": "2030-01-02T00:00:00Z",
                       "createdBy": "amtool", "comment": "maintenance"}"#;
        let silence = new_silence(body).unwrap();
        assert_eq!(
            silence.matchers,
            vec![
                SilenceMatcher {
                    name: "rule".into(),
                    value: "fuel.*".into(),
                    is_regex: true,
                    is_equal: false,
                },
                SilenceMatcher {
                    name: "tracker_id".into(),
                    value: "7".into(),
                    is_regex: false,
                    is_equal: true,
                },
            ]
        );
        assert_eq!(silence.starts_at, at("2030-01-01T01:00:00Z"));
        assert_eq!(silence.ends_at, at("2030-01-02T00:00:00Z"));
        assert_eq!(silence.created_by, "amtool");
        assert_eq!(silence.comment, "maintenance");
    }

    #[test]
    fn matchers_per_silence_are_capped() {
        let matchers: Vec<String> = (0..=MAX_MATCHERS)
            .map(|i| format!(r#"{{"name": "l{i}", "value": "v"}}"#))
            .collect();
        let body = format!(
            r#"{{"matchers": [{}], "ends_at": "2030-01-02T00:00:00Z"}}"#,
            matchers.join(",")
        );
        assert_eq!(
            refusal(&body),
            "a silence has at most 32 matchers, this one has 33"
        );
        let body = format!(
            r#"{{"matchers": [{}], "ends_at": "2030-01-02T00:00:00Z"}}"#,
            matchers[..MAX_MATCHERS].join(",")
        );
        assert!(new_silence(&body).is_ok());
    }

    fn unexpired_silences_are_capped_and_expired_ones_do_not_count(conn: &Conn) {
        let now = at("2030-01-01T00:00:00Z");
        let silence = |n: usize, ends_at: &str| Silence {
            id: format!("sil_{n}"),
            matchers: vec![SilenceMatcher {
                name: "rule".into(),
                value: "x".into(),
                is_regex: false,
                is_equal: true,
            }],
            starts_at: at("2029-12-31T00:00:00Z"),
            ends_at: at(ends_at),
            created_by: String::new(),
            comment: String::new(),
            created_at: now,
        };
        conn.execute_batch("BEGIN").unwrap();
        for n in 0..MAX_UNEXPIRED_SILENCES - 1 {
            insert_silence(conn, &silence(n, "2030-01-02T00:00:00Z")).unwrap();
        }
        // Ended: not counted.
        insert_silence(conn, &silence(100_000, "2030-01-01T00:00:00Z")).unwrap();
        insert_silence(conn, &silence(100_001, "2030-01-02T00:00:00Z")).unwrap();
        match insert_silence(conn, &silence(100_002, "2030-01-02T00:00:00Z")) {
            Err(StoreError::Invalid(message)) => assert_eq!(
                message,
                "there are already 10000 silences in force or pending, the most allowed is \
                 10000: delete some (DELETE /api/v1/silences/{id}) first"
            ),
            other => panic!("not refused: {other:?}"),
        }
        conn.execute_batch("COMMIT").unwrap();
        assert_eq!(
            load_silences(conn).unwrap().len(),
            MAX_UNEXPIRED_SILENCES + 1
        );
    }
}
