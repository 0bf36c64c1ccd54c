//! The one Rhai engine every rule of a rule set shares: sandbox limits, the context types
//! and their property getters, and the helpers (each registered from its
//! entry in [`super::spec::HELPERS`]).
//!
//! Sandbox: Rhai has no file or network access of its own; `no_module` removes `import`,
//! `eval` is disabled, and every evaluation is bounded in operations, call depth,
//! expression depth and the size of strings, arrays and maps. `print` and `debug` go to
//! the log.

use std::collections::BTreeSet;

use rhai::{Dynamic, Engine, EvalAltResult, FLOAT, INT, ImmutableString, OptimizationLevel};

use super::context::{
    self, AdditionalFieldView, AdditionalView, BitsView, GpsView, GsmView, IotFieldView, IotView,
    LocationView, ReadingView, ReadingsView, StateLeaf, StateObject, StateView, TrackerLeaf,
    TrackerView, Which, state_field, tracker_field,
};
use super::spec::{HELPERS, Kind};
use crate::navixy::messages::{Gps, Gsm, SourceState};

/// Operations one evaluation of one expression may take. A condition of a few
/// comparisons takes 10 to 50; a loop over a few hundred items fits; an endless loop
/// stops within about a millisecond.
pub const MAX_OPERATIONS: u64 = 50_000;
pub const MAX_STRING_SIZE: usize = 16 * 1024;
pub const MAX_ARRAY_SIZE: usize = 4_096;
pub const MAX_MAP_SIZE: usize = 1_024;
pub const MAX_CALL_LEVELS: usize = 16;
pub const MAX_EXPR_DEPTH: usize = 64;
pub const MAX_FUNCTION_EXPR_DEPTH: usize = 32;
pub const MAX_VARIABLES: usize = 128;

/// Property names that rules read under `readings.`, `iot.` and `state.additional.`:
/// each gets a getter of its own, so `readings.lls_level_1` is one direct call instead
/// of a failed property lookup followed by the indexer.
#[derive(Debug, Default, Clone)]
pub(crate) struct DynamicNames {
    pub readings: BTreeSet<String>,
    pub iot: BTreeSet<String>,
    pub additional: BTreeSet<String>,
}

/// Builds the sandboxed engine with every context type and helper registered.
pub(crate) fn build(names: &DynamicNames) -> Engine {
    let mut engine = Engine::new();
    engine
        .disable_symbol("eval")
        .set_max_operations(MAX_OPERATIONS)
        .set_max_string_size(MAX_STRING_SIZE)
        .set_max_array_size(MAX_ARRAY_SIZE)
        .set_max_map_size(MAX_MAP_SIZE)
        .set_max_call_levels(MAX_CALL_LEVELS)
        .set_max_expr_depths(MAX_EXPR_DEPTH, MAX_FUNCTION_EXPR_DEPTH)
        .set_max_variables(MAX_VARIABLES)
        // A misspelt variable is a compile error, not a silent `()`.
        .set_strict_variables(true)
        // Constant folding, including `params.x` from the constant `params` map; no
        // evaluation of helpers at compile time (they read the tracker).
        .set_optimization_level(OptimizationLevel::Simple);
    engine.on_print(|text| tracing::info!(target: "navixy_alerts::rules::print", "{text}"));
    engine.on_debug(|text, source, pos| {
        tracing::debug!(
            target: "navixy_alerts::rules::debug",
            rule = source.unwrap_or(""),
            position = %pos,
            "{text}"
        );
    });
    register_missing_value_operators(&mut engine);
    register_state(&mut engine, names);
    register_tracker(&mut engine);
    register_readings(&mut engine, names);
    register_helpers(&mut engine);
    engine
}

/// Comparisons with a missing value (`()`) need nothing: Rhai's built-in operators make
/// `() == x` false and `() != x` true for any non-numeric... and numeric `x` too, and
/// `() < x` false. What remains is `!`, which Rhai rejects for `()`: here it keeps the
/// value unknown, so `!state.ignition` on a tracker without ignition is `()` (does not
/// hold) rather than an error.
fn register_missing_value_operators(engine: &mut Engine) {
    engine.register_fn("!", |_: ()| ());
}

/// `==`/`!=` against `()` tell whether an object is present: `prev == ()` on a
/// tracker's first state, `state.gps == ()` before any GPS fix.
macro_rules! register_presence {
    ($engine:expr, $ty:ty, $present:expr) => {{
        let present: fn(&$ty) -> bool = $present;
        $engine
            .register_fn("==", move |a: $ty, _: ()| !present(&a))
            .register_fn("==", move |_: (), a: $ty| !present(&a))
            .register_fn("!=", move |a: $ty, _: ()| present(&a))
            .register_fn("!=", move |_: (), a: $ty| present(&a));
    }};
}

fn register_state(engine: &mut Engine, names: &DynamicNames) {
    fn leaf(which: Which, leaf: &StateLeaf) -> Dynamic {
        state_field(which, |s, fr| context::state_leaf(s, fr, leaf))
    }
    fn present(which: Which, object: &StateObject) -> bool {
        context::with(|fr| fr.is_some_and(|fr| context::state_present(fr.source(which), object)))
    }

    engine.register_type_with_name::<StateView>("State");
    register_presence!(engine, StateView, |v| present(v.0, &StateObject::State));
    engine.register_fn("to_string", |v: &mut StateView| {
        state_field(v.0, |s, _| {
            serde_json::to_string(s).unwrap_or_default().into()
        })
        .into_string()
        .unwrap_or_else(|_| "()".into())
    });
    for name in SourceState::FIELDS {
        if let Some(l) = StateLeaf::top(name) {
            engine.register_get(*name, move |v: &mut StateView| leaf(v.0, &l));
        }
    }
    engine
        .register_get("gps", |v: &mut StateView| GpsView(v.0))
        .register_get("gsm", |v: &mut StateView| GsmView(v.0))
        .register_get("additional", |v: &mut StateView| AdditionalView(v.0))
        .register_get("inputs", |v: &mut StateView| BitsView {
            which: v.0,
            outputs: false,
        })
        .register_get("outputs", |v: &mut StateView| BitsView {
            which: v.0,
            outputs: true,
        });

    engine.register_type_with_name::<GpsView>("Gps");
    register_presence!(engine, GpsView, |v| present(v.0, &StateObject::Gps));
    for name in Gps::FIELDS {
        if let Some(l) = StateLeaf::gps(name) {
            engine.register_get(*name, move |v: &mut GpsView| leaf(v.0, &l));
        }
    }
    engine.register_get("location", |v: &mut GpsView| LocationView(v.0));

    engine.register_type_with_name::<LocationView>("Location");
    register_presence!(engine, LocationView, |v| present(
        v.0,
        &StateObject::Location
    ));
    engine
        .register_get("lat", |v: &mut LocationView| leaf(v.0, &StateLeaf::GpsLat))
        .register_get("lng", |v: &mut LocationView| leaf(v.0, &StateLeaf::GpsLng));

    engine.register_type_with_name::<GsmView>("Gsm");
    register_presence!(engine, GsmView, |v| present(v.0, &StateObject::Gsm));
    for name in Gsm::FIELDS {
        if let Some(l) = StateLeaf::gsm(name) {
            engine.register_get(*name, move |v: &mut GsmView| leaf(v.0, &l));
        }
    }

    // inputs / outputs
    engine.register_type_with_name::<BitsView>("Bits");
    register_presence!(engine, BitsView, |v| present(
        v.which,
        if v.outputs {
            &StateObject::Outputs
        } else {
            &StateObject::Inputs
        }
    ));
    fn bits(v: &BitsView, f: impl FnOnce(&[bool]) -> Dynamic) -> Dynamic {
        let outputs = v.outputs;
        state_field(v.which, move |s, _| {
            let b = if outputs { &s.outputs } else { &s.inputs };
            b.as_deref().map_or(Dynamic::UNIT, f)
        })
    }
    engine
        .register_indexer_get(|v: &mut BitsView, i: INT| {
            let l = if v.outputs {
                StateLeaf::Output(i)
            } else {
                StateLeaf::Input(i)
            };
            leaf(v.which, &l)
        })
        .register_get("len", |v: &mut BitsView| {
            bits(v, |b| Dynamic::from_int(b.len() as INT))
        })
        .register_fn("len", |v: &mut BitsView| {
            bits(v, |b| Dynamic::from_int(b.len() as INT))
        })
        .register_fn("any", |v: &mut BitsView| {
            bits(v, |b| Dynamic::from_bool(b.iter().any(|x| *x)))
        })
        .register_fn("to_string", |v: &mut BitsView| {
            bits(v, |b| format!("{b:?}").into())
                .into_string()
                .unwrap_or_else(|_| "()".into())
        });

    // additional
    engine.register_type_with_name::<AdditionalView>("Additional");
    register_presence!(engine, AdditionalView, |v| present(
        v.0,
        &StateObject::Additional
    ));
    engine.register_indexer_get(|v: &mut AdditionalView, name: ImmutableString| {
        AdditionalFieldView { which: v.0, name }
    });
    for name in &names.additional {
        let imm = ImmutableString::from(name.as_str());
        engine.register_get(name, move |v: &mut AdditionalView| AdditionalFieldView {
            which: v.0,
            name: imm.clone(),
        });
    }
    engine.register_type_with_name::<AdditionalFieldView>("AdditionalField");
    register_presence!(engine, AdditionalFieldView, |v| present(
        v.which,
        &StateObject::AdditionalField(v.name.clone())
    ));
    engine
        .register_get("value", |v: &mut AdditionalFieldView| {
            leaf(v.which, &StateLeaf::AdditionalValue(v.name.clone()))
        })
        .register_get("updated", |v: &mut AdditionalFieldView| {
            leaf(v.which, &StateLeaf::AdditionalUpdated(v.name.clone()))
        });
}

fn register_tracker(engine: &mut Engine) {
    engine.register_type_with_name::<TrackerView>("Tracker");
    for (name, l) in TrackerLeaf::ALL {
        engine.register_get(name, move |_: &mut TrackerView| {
            tracker_field(|_, fr| context::tracker_leaf(fr, l))
        });
    }
}

fn register_readings(engine: &mut Engine, names: &DynamicNames) {
    engine.register_type_with_name::<ReadingsView>("Readings");
    engine.register_indexer_get(|_: &mut ReadingsView, name: ImmutableString| ReadingView { name });
    for name in &names.readings {
        let imm = ImmutableString::from(name.as_str());
        engine.register_get(name, move |_: &mut ReadingsView| ReadingView {
            name: imm.clone(),
        });
    }
    engine.register_type_with_name::<ReadingView>("Reading");
    register_presence!(engine, ReadingView, |v| {
        context::with(|fr| {
            fr.is_some_and(|fr| context::find_reading(&fr.tracker.readings, &v.name).is_some())
        })
    });
    for field in context::READING_FIELDS {
        engine.register_get(field, move |v: &mut ReadingView| {
            context::reading_field(&v.name, field)
        });
    }

    engine.register_type_with_name::<IotView>("Iot");
    engine.register_indexer_get(|_: &mut IotView, name: ImmutableString| IotFieldView { name });
    for name in &names.iot {
        let imm = ImmutableString::from(name.as_str());
        engine.register_get(name, move |_: &mut IotView| IotFieldView {
            name: imm.clone(),
        });
    }
    engine.register_type_with_name::<IotFieldView>("IotField");
    register_presence!(engine, IotFieldView, |v| {
        context::with(|fr| fr.is_some_and(|fr| fr.tracker.iot.contains_key(v.name.as_str())))
    });
    for field in context::IOT_FIELDS {
        engine.register_get(field, move |v: &mut IotFieldView| {
            context::iot_field(&v.name, field)
        });
    }
}

/// A number as Rhai passes it (INT or FLOAT), or `None`.
pub(crate) fn number_of(d: &Dynamic) -> Option<f64> {
    if let Ok(i) = d.as_int() {
        return Some(i as f64);
    }
    d.as_float().ok()
}

type RhaiResult = Result<Dynamic, Box<EvalAltResult>>;

/// Which statistic a window helper computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Window {
    Delta,
    Fall,
    Rise,
    Min,
    Max,
    Avg,
}

/// The helpers as plain functions of a frame, shared by the Rhai registrations and the
/// direct evaluator. An `Err` is the message Rhai raises.
pub(crate) mod helpers {
    use rhai::{Dynamic, FLOAT, INT, ImmutableString};

    use super::{Window, number_of};
    use crate::navixy::messages::NavixyTime;
    use crate::rules::script::context::{self, ScriptFrame, opt_float};

    /// `seconds`, `minutes`, `hours`: INT stays INT (saturating), FLOAT stays FLOAT.
    pub fn duration(n: &Dynamic, factor: INT) -> Option<Dynamic> {
        if let Ok(i) = n.as_int() {
            return Some(Dynamic::from_int(i.saturating_mul(factor)));
        }
        n.as_float()
            .ok()
            .map(|f| Dynamic::from_float(f * factor as FLOAT))
    }

    fn now_s(fr: &ScriptFrame<'_>) -> i64 {
        fr.now_ms.div_euclid(1000)
    }

    /// Seconds from a time (epoch seconds, a Navixy time string) to now; `()` for `()`.
    /// `None` when Rhai has no such overload (another type).
    pub fn since(fr: &ScriptFrame<'_>, t: &Dynamic) -> Option<Result<Dynamic, String>> {
        if t.is_unit() {
            return Some(Ok(Dynamic::UNIT));
        }
        if let Ok(i) = t.as_int() {
            return Some(Ok(Dynamic::from_int(now_s(fr) - i)));
        }
        if let Ok(f) = t.as_float() {
            return Some(Ok(Dynamic::from_int(now_s(fr) - f.floor() as i64)));
        }
        let text = t.read_lock::<ImmutableString>()?;
        Some(match NavixyTime::parse(&text) {
            Some(parsed) => Ok(Dynamic::from_int(
                now_s(fr) - parsed.to_utc(fr.time_zone).timestamp(),
            )),
            None => Err(format!(
                "since: `{}` is not a time (use epoch seconds or 2026-01-01 10:00:00)",
                text.as_str()
            )),
        })
    }

    /// Whether the latest state update changed the field at `path`.
    pub fn changed(fr: &ScriptFrame<'_>, path: &str) -> Result<Dynamic, String> {
        let path = context::FieldPath::parse(path)
            .ok_or_else(|| format!("changed: `{path}` is not a state field"))?;
        Ok(Dynamic::from_bool(context::changed(fr.tracker, &path)))
    }

    /// Whether the tracker is inside the zone; `()` without a position. A config zone
    /// wins over a Navixy zone of the same label. With Navixy's zones imported, a label no
    /// zone has (yet) is false, warned about once; without, it is an error (`check`
    /// refuses it first).
    pub fn in_zone(fr: &ScriptFrame<'_>, name: &str) -> Result<Dynamic, String> {
        let imported = fr.around.import_zones;
        let zone = fr
            .zones
            .get(name)
            .or_else(|| imported.then(|| fr.navixy.zones.get(name)).flatten());
        let Some(zone) = zone else {
            if imported {
                fr.around.navixy.warn_unknown_zone(name);
                return Ok(Dynamic::FALSE);
            }
            return Err(format!(
                "in_zone: unknown zone `{name}` (zones: {})",
                fr.zones.names()
            ));
        };
        Ok(fr.location().map_or(Dynamic::UNIT, |(lat, lng)| {
            Dynamic::from_bool(zone.contains(lat, lng))
        }))
    }

    /// The labels of every zone holding the tracker's position (an array of strings: the
    /// config's zones in their order, then Navixy's that the config does not shadow);
    /// empty without a position.
    pub fn zones(fr: &ScriptFrame<'_>) -> Dynamic {
        let mut labels = rhai::Array::new();
        if let Some((lat, lng)) = fr.location() {
            labels.extend(
                fr.zones
                    .containing(lat, lng)
                    .map(|label| Dynamic::from(label.to_string())),
            );
            if fr.around.import_zones {
                labels.extend(
                    fr.navixy
                        .zones
                        .containing(lat, lng)
                        .filter(|label| !fr.zones.contains_key(label))
                        .map(|label| Dynamic::from(label.to_string())),
                );
            }
        }
        Dynamic::from_array(labels)
    }

    /// The trackers within `radius_m` of this one at their last published positions
    /// (an array of tracker ids, nearest first, without this one); empty without a
    /// position.
    pub fn nearby(fr: &ScriptFrame<'_>, radius_m: &Dynamic) -> Result<Dynamic, String> {
        Ok(match neighbours(fr, radius_m)? {
            Some(ids) => Dynamic::from_array(ids.map(Dynamic::from_int).collect()),
            None => Dynamic::UNIT,
        })
    }

    /// `nearby(radius_m).len()` without building the array (the fast path's answer);
    /// `None` for a `()` radius, whose `nearby` has no `len`.
    pub fn nearby_count(fr: &ScriptFrame<'_>, radius_m: &Dynamic) -> Result<Option<INT>, String> {
        Ok(neighbours(fr, radius_m)?.map(|ids| ids.count() as INT))
    }

    /// The Navixy ids of the trackers within `radius_m`, nearest first; `None` for a
    /// `()` radius.
    fn neighbours<'f>(
        fr: &'f ScriptFrame<'_>,
        radius_m: &Dynamic,
    ) -> Result<Option<impl Iterator<Item = INT> + 'f>, String> {
        let Some(radius) = number_of(radius_m) else {
            if radius_m.is_unit() {
                return Ok(None);
            }
            return Err(format!(
                "nearby: the radius must be a number of metres, not {}",
                radius_m.type_name()
            ));
        };
        if radius.is_nan() || radius < 0.0 {
            return Err(format!("nearby: the radius must be positive, not {radius}"));
        }
        // Positions are keyed by tracker key: only trackers of this tracker's own source
        // are its neighbours (another account's tracker 42 is not this one's 42).
        let source = fr.tracker.info.source;
        let found = fr.location().map_or_else(Vec::new, |(lat, lng)| {
            fr.around
                .positions
                .within(lat, lng, radius, fr.tracker.info.key())
        });
        Ok(Some(
            found
                .into_iter()
                .map(|(key, _)| crate::navixy::messages::key_parts(key))
                .filter(move |(s, _)| *s == source)
                .map(|(_, id)| id),
        ))
    }

    /// Metres from this tracker's position to the last published one of `other`; `()`
    /// when either is unknown.
    pub fn distance_to(fr: &ScriptFrame<'_>, other: &Dynamic) -> Result<Dynamic, String> {
        if other.is_unit() {
            return Ok(Dynamic::UNIT);
        }
        let id = other
            .as_int()
            .map_err(|t| format!("distance_to: a tracker id is an integer, not {t}"))?;
        let Some((lat, lng)) = fr.location() else {
            return Ok(Dynamic::UNIT);
        };
        if id == fr.tracker.info.id {
            return Ok(Dynamic::from_float(0.0));
        }
        let key = crate::navixy::messages::tracker_key(fr.tracker.info.source, id);
        let Some(p) = fr.around.positions.find(key) else {
            return Ok(Dynamic::UNIT);
        };
        Ok(Dynamic::from_float(crate::geofence::distance_m(
            lat, lng, p.lat, p.lng,
        )))
    }

    pub fn distance(a: &Dynamic, b: &Dynamic, c: &Dynamic, d: &Dynamic) -> Dynamic {
        match (number_of(a), number_of(b), number_of(c), number_of(d)) {
            (Some(a), Some(b), Some(c), Some(d)) => {
                Dynamic::from_float(crate::geofence::distance_m(a, b, c, d))
            }
            _ => Dynamic::UNIT,
        }
    }

    /// Kilometres driven within the window: the rise of the odometer counter over it,
    /// else (a tracker without an odometer) the GPS speed (km/h) integrated over the part
    /// of the window that history covers, each value holding until the next; `()` without
    /// either.
    pub fn distance_km(fr: &ScriptFrame<'_>, window: &Dynamic) -> Result<Dynamic, String> {
        use crate::rules::script::spec::{ODOMETER, SPEED};
        let km = window_statistic(fr, Window::Delta, ODOMETER, window)?;
        if let Ok(f) = km.as_float() {
            // An odometer reset (a replaced device) is not negative driving.
            return Ok(Dynamic::from_float(f.max(0.0)));
        }
        let (Some(window_s), Some(series)) = (number_of(window), fr.tracker.history.series(SPEED))
        else {
            return Ok(Dynamic::UNIT);
        };
        let now = fr.now_ms;
        let start = now - (window_s * 1000.0) as i64;
        let mut km_ms = 0.0;
        let mut last: Option<(i64, f64)> = None;
        for (t, kmh) in series.points().take_while(|(t, _)| *t <= now) {
            if let Some((lt, lv)) = last {
                km_ms += lv * (t - lt.max(start)).max(0) as f64;
            }
            last = Some((t, kmh));
        }
        Ok(last.map_or(Dynamic::UNIT, |(lt, lv)| {
            km_ms += lv * (now - lt.max(start)).max(0) as f64;
            // km/h × ms to km.
            Dynamic::from_float(km_ms / 3_600_000.0)
        }))
    }

    /// A window statistic of a series kept in history; `()` without data.
    pub fn window(
        fr: &ScriptFrame<'_>,
        kind: Window,
        name: &str,
        window: &Dynamic,
    ) -> Result<Dynamic, String> {
        window_statistic(fr, kind, name, window)
    }

    fn window_statistic(
        fr: &ScriptFrame<'_>,
        kind: Window,
        name: &str,
        window: &Dynamic,
    ) -> Result<Dynamic, String> {
        let Some(window_s) = number_of(window) else {
            if window.is_unit() {
                return Ok(Dynamic::UNIT);
            }
            return Err(format!(
                "the window must be a number of seconds such as minutes(10), not {}",
                window.type_name()
            ));
        };
        if window_s.is_nan() || window_s <= 0.0 {
            return Err(format!("the window must be positive, not {window_s}"));
        }
        let window_ms = (window_s * 1000.0) as i64;
        let Some(series) = fr.tracker.history.series(name) else {
            return Ok(Dynamic::UNIT);
        };
        let now = fr.now_ms;
        Ok(opt_float(match kind {
            Window::Delta => series.delta(now, window_ms),
            Window::Fall => series.largest_fall(now, window_ms),
            Window::Rise => series.largest_rise(now, window_ms),
            Window::Min => series.min(now, window_ms),
            Window::Max => series.max(now, window_ms),
            Window::Avg => series.avg(now, window_ms),
        }))
    }
}

/// Runs a helper with the current frame; `()` outside a frame.
fn in_frame(f: impl FnOnce(&context::ScriptFrame<'_>) -> Result<Dynamic, String>) -> RhaiResult {
    context::with(|fr| match fr {
        Some(fr) => f(fr).map_err(Into::into),
        None => Ok(Dynamic::UNIT),
    })
}

/// Registers every helper of [`HELPERS`]: the match is exhaustive, so a helper kind
/// without a registration fails the build.
fn register_helpers(engine: &mut Engine) {
    fn since(t: Dynamic) -> RhaiResult {
        in_frame(|fr| helpers::since(fr, &t).unwrap_or(Ok(Dynamic::UNIT)))
    }
    for spec in HELPERS {
        let name = spec.name;
        match spec.kind {
            // Durations are seconds, matching `now` and `since`.
            Kind::Duration(factor) => {
                engine
                    .register_fn(name, move |n: INT| n.saturating_mul(factor))
                    .register_fn(name, move |n: FLOAT| n * factor as FLOAT);
            }
            Kind::Since => {
                engine
                    .register_fn(name, |t: INT| since(Dynamic::from_int(t)))
                    .register_fn(name, |t: FLOAT| since(Dynamic::from_float(t)))
                    .register_fn(name, |_: ()| ())
                    .register_fn(name, |t: ImmutableString| since(Dynamic::from(t)));
            }
            Kind::Changed => {
                engine.register_fn(name, |path: ImmutableString| {
                    in_frame(|fr| helpers::changed(fr, &path))
                });
            }
            Kind::InZone => {
                engine.register_fn(name, |zone: ImmutableString| {
                    in_frame(|fr| helpers::in_zone(fr, &zone))
                });
            }
            Kind::Zones => {
                engine.register_fn(name, || in_frame(|fr| Ok(helpers::zones(fr))));
            }
            Kind::Nearby => {
                engine.register_fn(name, |radius: Dynamic| {
                    in_frame(|fr| helpers::nearby(fr, &radius))
                });
            }
            Kind::DistanceTo => {
                engine.register_fn(name, |other: Dynamic| {
                    in_frame(|fr| helpers::distance_to(fr, &other))
                });
            }
            Kind::Distance => {
                engine.register_fn(name, |a: Dynamic, b: Dynamic, c: Dynamic, d: Dynamic| {
                    helpers::distance(&a, &b, &c, &d)
                });
            }
            Kind::Window(kind) => {
                engine.register_fn(name, move |series: ImmutableString, window: Dynamic| {
                    in_frame(|fr| helpers::window(fr, kind, &series, &window))
                });
            }
            Kind::DistanceKm => {
                engine.register_fn(name, |window: Dynamic| {
                    in_frame(|fr| helpers::distance_km(fr, &window))
                });
            }
        }
    }
}

/// The names of every function and method the engine knows (its built-in packages and
/// the helpers), for the load-time check of calls.
pub(crate) fn function_names(engine: &Engine) -> BTreeSet<String> {
    engine
        .gen_fn_signatures(true)
        .iter()
        .filter_map(|sig| sig.split('(').next())
        // Built-in package signatures may carry a namespace or `fn ` in front.
        .map(|name| name.rsplit([' ', ':']).next().unwrap_or(name).to_string())
        .filter(|name| !name.is_empty())
        .collect()
}

/// Words that look like calls but are Rhai keywords or functions its parser handles
/// itself (`if (...)`, `type_of(x)`, `Fn("f")`).
pub(crate) const KEYWORD_CALLS: [&str; 22] = [
    "if",
    "while",
    "for",
    "switch",
    "return",
    "throw",
    "loop",
    "do",
    "until",
    "in",
    "let",
    "const",
    "fn",
    "Fn",
    "call",
    "curry",
    "type_of",
    "is_def_var",
    "is_def_fn",
    "is_shared",
    "print",
    "debug",
];

/// The scope expressions compile against: strict variables need every context variable
/// declared, and `params` is a constant so the optimizer folds `params.x` into the
/// compiled expression. The context variables are plain variables here so that the
/// optimizer does not inline (and later copy) the markers.
pub(crate) fn compile_scope(params: rhai::Map) -> rhai::Scope<'static> {
    let mut scope = rhai::Scope::new();
    scope
        .push("state", StateView(Which::Current))
        .push("prev", StateView(Which::Prev))
        .push("tracker", TrackerView)
        .push("readings", ReadingsView)
        .push("iot", IotView)
        .push("now", 0 as INT)
        .push_constant("params", params);
    scope
}

/// The scope one shard evaluates in: constants, so a script cannot reassign `state` for
/// the rules after it; `now` is set before each tracker.
pub(crate) fn eval_scope() -> rhai::Scope<'static> {
    let mut scope = rhai::Scope::new();
    scope
        .push_constant("state", StateView(Which::Current))
        .push_constant("prev", StateView(Which::Prev))
        .push_constant("tracker", TrackerView)
        .push_constant("readings", ReadingsView)
        .push_constant("iot", IotView)
        .push_constant("now", 0 as INT);
    scope
}
