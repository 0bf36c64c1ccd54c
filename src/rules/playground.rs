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
                let navixy = self.around.context(tracker.info.source).load();
                script::set_now(&mut scope, now_ms.div_euclid(1000));
                let frame = context::ScriptFrame {
                    tracker,
                    now_ms,
                    time_zone: self.time_zone,
                    zones: &self.zones,
                    navixy: &navixy,
                    around: &self.around,
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::config::{Circle, ZoneConfig};
    use crate::navixy::messages::SourceState;
    use crate::rules::LoadOptions;
    use crate::rules::zones::Zones;
    use crate::state::Update;
    use crate::state::cache::ShardCache;

    fn rules() -> RuleSet {
        let zones = [(
            "depot".to_string(),
            ZoneConfig {
                circle: Some(Circle {
                    lat: 52.52,
                    lng: 13.40,
                    radius_m: 300.0,
                }),
                polygon: None,
                sausage: None,
            },
        )]
        .into_iter()
        .collect();
        let options = LoadOptions {
            zones: Zones::local(&zones),
            ..LoadOptions::default()
        };
        let yaml = "rules:\n  - name: r\n    when: \"false\"\n".to_string();
        RuleSet::from_sources(&[(PathBuf::from("rules/r.yaml"), yaml)], &options)
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    /// Two trackers: 1 at the depot doing 20 km/h, 2 elsewhere doing 95.
    fn fleet() -> Vec<TrackerState> {
        let mut cache = ShardCache::new(Default::default(), chrono_tz::UTC);
        for (id, lat, speed) in [(1, 52.52, 20.0), (2, 52.60, 95.0)] {
            let state: SourceState = serde_json::from_value(json!({
                "gps": { "location": { "lat": lat, "lng": 13.40 }, "speed": speed }
            }))
            .unwrap();
            cache.apply(Update::State {
                tracker_id: id,
                state: Box::new(state),
            });
        }
        let mut all: Vec<TrackerState> = cache.iter().cloned().collect();
        all.sort_by_key(|t| t.info.id);
        all
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap()
    }

    #[test]
    fn a_condition_holds_for_the_trackers_it_is_true_of() {
        let tried = rules()
            .try_condition("state.gps.speed > 80", &fleet(), now())
            .unwrap();
        let holds: Vec<(TrackerId, bool)> = tried.iter().map(|t| (t.tracker_id, t.holds)).collect();
        assert_eq!(holds, [(1, false), (2, true)]);
    }

    #[test]
    fn conditions_see_the_rules_zones_and_values_are_kept() {
        let set = rules();
        let tried = set
            .try_condition("in_zone(\"depot\")", &fleet(), now())
            .unwrap();
        assert_eq!(
            tried.iter().map(|t| t.holds).collect::<Vec<_>>(),
            [true, false]
        );
        let speeds = set
            .try_condition("state.gps.speed", &fleet(), now())
            .unwrap();
        assert_eq!(speeds[1].value, Some(json!(95)));
        assert!(!speeds[1].holds);
    }

    #[test]
    fn a_condition_that_does_not_compile_says_so() {
        let set = rules();
        assert!(
            set.try_condition("state.gps.speed >", &fleet(), now())
                .is_err()
        );
        assert!(set.try_condition("nope > 1", &fleet(), now()).is_err());
        assert_eq!(
            set.try_condition("  ", &fleet(), now()).unwrap_err(),
            "type a condition, e.g. `state.gps.speed > 80`"
        );
    }
}
