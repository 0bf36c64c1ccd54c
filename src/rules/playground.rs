//! Trying a condition out: compiled with the rule set's own engine (its helpers, zones
//! and sandbox limits), evaluated once against each tracker's state as it is. For the
//! console's playground; the engine never calls it.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::RuleSet;
use super::script::{self, context, engine as script_engine};
use crate::navixy::messages::TrackerId;
use crate::state::TrackerState;

/// The longest condition taken, in bytes: a playground is for one expression.
pub const MAX_CONDITION_BYTES: usize = 4096;

/// What a condition gave for one tracker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tried {
    pub tracker_id: TrackerId,
    /// True when the value is the boolean `true`: the condition holds.
    pub holds: bool,
    /// The value as JSON (`None` for `()`).
    pub value: Option<serde_json::Value>,
    /// Why the evaluation failed (a fault a rule would log).
    pub error: Option<String>,
}

impl RuleSet {
    /// Compiles `condition` and evaluates it for each of `trackers` at `now`. An error
    /// when it does not compile (the message says where).
    pub fn try_condition(
        &self,
        condition: &str,
        trackers: &[TrackerState],
        now: DateTime<Utc>,
    ) -> Result<Vec<Tried>, String> {
        if condition.trim().is_empty() {
            return Err("type a condition, e.g. `state.gps.speed > 80`".into());
        }
        if condition.len() > MAX_CONDITION_BYTES {
            return Err(format!(
                "the condition is longer than {MAX_CONDITION_BYTES} bytes"
            ));
        }
        let ast = self
            .engine
            .compile_with_scope(&script_engine::compile_scope(rhai::Map::new()), condition)
            .map_err(|e| e.to_string())?;
        let now_ms = now.timestamp_millis();
        let mut scope = script_engine::eval_scope();
        Ok(trackers
            .iter()
            .map(|tracker| {
                script::set_now(&mut scope, now_ms.div_euclid(1000));
                let frame = context::ScriptFrame {
                    tracker,
                    now_ms,
                    time_zone: self.time_zone,
                    zones: &self.zones,
                };
                let result =
                    context::enter(&frame, || script::eval_rhai(&self.engine, &mut scope, &ast));
                match result {
                    Ok(v) => Tried {
                        tracker_id: tracker.info.id,
                        holds: v.as_bool() == Ok(true),
                        value: script::to_json(&v),
                        error: None,
                    },
                    Err(e) => Tried {
                        tracker_id: tracker.info.id,
                        holds: false,
                        value: None,
                        error: Some(e.to_string()),
                    },
                }
            })
            .collect())
    }
}
