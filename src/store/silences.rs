//! Silences as stored: label matchers and a time range. The admin API adds, lists and
//! deletes them through [`super::Store`]; the dispatcher compiles the active ones and asks
//! them before each notification.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use super::{StoreError, from_json, from_ms, to_json, to_ms};

/// One matcher of a silence, as in Alertmanager: a label name and a value, compared for
/// equality or as a regular expression (anchored at both ends), possibly negated.
///
/// Names are the ones routes use: `rule` (also `alertname`), `severity`, `tracker_id`,
/// `tracker_label` and any rule label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceMatcher {
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub is_regex: bool,
    /// `false` negates the matcher (`!=`, `!~`).
    #[serde(default = "default_true")]
    pub is_equal: bool,
}

fn default_true() -> bool {
    true
}

impl SilenceMatcher {
    /// Checks the matcher; a bad regex is an error naming it.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("a silence matcher needs a label `name`".into());
        }
        if self.is_regex {
            regex::Regex::new(&format!("^(?:{})$", self.value)).map_err(|e| {
                format!(
                    "silence matcher `{}`: `{}` is not a valid regex: {e}",
                    self.name, self.value
                )
            })?;
        }
        Ok(())
    }
}

/// A silence as the admin API receives it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    pub matchers: Vec<SilenceMatcher>,
    /// Default: now.
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: DateTime<Utc>,
    #[serde(default)]
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
        for m in &self.matchers {
            m.validate().map_err(StoreError::Invalid)?;
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
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

pub(super) fn insert_silence(conn: &Connection, s: &Silence) -> Result<(), StoreError> {
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

pub(super) fn delete_silence(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM silences WHERE id = ?1", params![id])? > 0)
}

/// Every silence, newest first.
pub fn load_silences(conn: &Connection) -> Result<Vec<Silence>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, matchers, starts_at, ends_at, created_by, comment, created_at
         FROM silences ORDER BY created_at DESC, id DESC",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
            row.get::<_, i64>(3)?,
            row.get::<_, String>(4)?,
            row.get::<_, String>(5)?,
            row.get::<_, i64>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, matchers, starts_at, ends_at, created_by, comment, created_at) = row?;
        out.push(Silence {
            id,
            matchers: from_json("silence matchers", &matchers)?,
            starts_at: from_ms(starts_at),
            ends_at: from_ms(ends_at),
            created_by,
            comment,
            created_at: from_ms(created_at),
        });
    }
    Ok(out)
}
