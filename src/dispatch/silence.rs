//! Silences as the dispatcher applies them: the stored silences, compiled, asked before an
//! alert goes into a notification. A silenced alert is logged (once while it stays
//! silenced) and not sent; when the silence ends, a still-firing alert is notified at its
//! group's next flush, as in Alertmanager.

use chrono::{DateTime, Utc};

use super::routes::LabelMatcher;
use crate::alert::AlertTransition;
use crate::store::Silence;

struct Compiled {
    id: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    matchers: Vec<LabelMatcher>,
}

/// The compiled silences and the store generation they were loaded at.
#[derive(Default)]
pub struct ActiveSilences {
    generation: Option<u64>,
    silences: Vec<Compiled>,
}

impl ActiveSilences {
    /// True when the store's silences changed since they were compiled.
    pub fn is_stale(&self, generation: u64) -> bool {
        self.generation != Some(generation)
    }

    /// Replaces the compiled set. A matcher that no longer compiles (it was validated when
    /// added, so only a hand-edited database gets here) disables its silence, with a
    /// warning, rather than silencing everything or nothing.
    pub fn replace(&mut self, silences: Vec<Silence>, generation: u64) {
        self.silences = silences
            .into_iter()
            .filter_map(|s| {
                let matchers: Result<Vec<_>, String> = s
                    .matchers
                    .iter()
                    .map(|m| LabelMatcher::new(&m.name, &m.value, m.is_regex, m.is_equal))
                    .collect();
                match matchers {
                    Ok(matchers) if !matchers.is_empty() => Some(Compiled {
                        id: s.id,
                        starts_at: s.starts_at,
                        ends_at: s.ends_at,
                        matchers,
                    }),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::warn!(silence = %s.id, error = %e, "Silence ignored: bad matcher.");
                        None
                    }
                }
            })
            .collect();
        self.generation = Some(generation);
    }

    /// The id of the first silence in force at `now` that matches the alert.
    pub fn matching(&self, t: &AlertTransition, now: DateTime<Utc>) -> Option<&str> {
        self.silences
            .iter()
            .find(|s| {
                s.starts_at <= now && now < s.ends_at && s.matchers.iter().all(|m| m.matches(t))
            })
            .map(|s| s.id.as_str())
    }
}
