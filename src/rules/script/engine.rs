//! The one Rhai engine every rule of a rule set shares: sandbox limits, the context types
//! and their property getters, and the helpers (`minutes`, `since`, `changed`, `in_zone`,
//! `distance_m`, the history windows).
//!
//! Sandbox: Rhai has no file or network access of its own; `no_module` removes `import`,
//! `eval` is disabled, and every evaluation is bounded in operations, call depth,
//! expression depth and the size of strings, arrays and maps. `print` and `debug` go to
//! the log.

use std::collections::BTreeSet;

use rhai::{Dynamic, Engine, EvalAltResult, FLOAT, INT, ImmutableString, OptimizationLevel};

use super::context::{
    self, AdditionalFieldView, AdditionalView, BitsView, GpsView, GsmView, INTERNED, IotFieldView,
    IotView, LocationView, ReadingView, ReadingsView, StateView, TrackerView, Which, opt_bool,
    opt_float, opt_int, opt_str, state_field, tracker_field,
};
use crate::navixy::messages::NavixyTime;
use crate::rules::zones;

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
    macro_rules! state_get {
        ($name:literal, |$s:ident, $fr:ident| $body:expr) => {
            engine.register_get($name, |v: &mut StateView| {
                state_field(v.0, |$s, $fr| {
                    let _ = &$fr;
                    $body
                })
            });
        };
    }
    engine.register_type_with_name::<StateView>("State");
    register_presence!(engine, StateView, |v| state_field(v.0, |_, _| {
        Dynamic::TRUE
    })
    .is_bool());
    engine.register_fn("to_string", |v: &mut StateView| {
        state_field(v.0, |s, _| {
            serde_json::to_string(s).unwrap_or_default().into()
        })
        .into_string()
        .unwrap_or_else(|_| "()".into())
    });
    state_get!("source_id", |s, fr| opt_int(s.source_id));
    state_get!("connection_status", |s, fr| s
        .connection_status
        .map_or(Dynamic::UNIT, |c| INTERNED.get(c.as_str())));
    state_get!("movement_status", |s, fr| s
        .movement_status
        .map_or(Dynamic::UNIT, |m| INTERNED.get(m.as_str())));
    state_get!("movement_status_update", |s, fr| fr
        .time(s.movement_status_update));
    state_get!("ignition", |s, fr| opt_bool(s.ignition));
    state_get!("ignition_update", |s, fr| fr.time(s.ignition_update));
    state_get!("last_update", |s, fr| fr.time(s.last_update));
    state_get!("battery_level", |s, fr| opt_float(s.battery_level));
    state_get!("battery_update", |s, fr| fr.time(s.battery_update));
    state_get!("inputs_update", |s, fr| fr.time(s.inputs_update));
    state_get!("outputs_update", |s, fr| fr.time(s.outputs_update));
    state_get!("actual_track_update", |s, fr| fr
        .time(s.actual_track_update));
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

    // gps
    macro_rules! gps_get {
        ($name:literal, |$g:ident| $body:expr) => {
            engine.register_get($name, |v: &mut GpsView| {
                state_field(v.0, |s, _| s.gps.as_ref().map_or(Dynamic::UNIT, |$g| $body))
            });
        };
    }
    engine.register_type_with_name::<GpsView>("Gps");
    register_presence!(engine, GpsView, |v| {
        state_field(v.0, |s, _| Dynamic::from_bool(s.gps.is_some())).as_bool() == Ok(true)
    });
    gps_get!("signal_level", |g| opt_float(g.signal_level));
    gps_get!("heading", |g| opt_float(g.heading));
    gps_get!("speed", |g| opt_float(g.speed));
    gps_get!("alt", |g| opt_float(g.alt));
    gps_get!("precision", |g| opt_float(g.precision));
    gps_get!("gsm_lbs", |g| opt_bool(g.gsm_lbs));
    engine.register_get("updated", |v: &mut GpsView| {
        state_field(v.0, |s, fr| fr.time(s.gps.as_ref().and_then(|g| g.updated)))
    });
    engine.register_get("location", |v: &mut GpsView| LocationView(v.0));

    engine.register_type_with_name::<LocationView>("Location");
    register_presence!(engine, LocationView, |v| {
        state_field(v.0, |s, _| {
            Dynamic::from_bool(s.gps.as_ref().and_then(|g| g.location).is_some())
        })
        .as_bool()
            == Ok(true)
    });
    engine
        .register_get("lat", |v: &mut LocationView| {
            state_field(v.0, |s, _| {
                opt_float(s.gps.as_ref().and_then(|g| g.location).map(|l| l.lat))
            })
        })
        .register_get("lng", |v: &mut LocationView| {
            state_field(v.0, |s, _| {
                opt_float(s.gps.as_ref().and_then(|g| g.location).map(|l| l.lng))
            })
        });

    // gsm
    engine.register_type_with_name::<GsmView>("Gsm");
    register_presence!(engine, GsmView, |v| {
        state_field(v.0, |s, _| Dynamic::from_bool(s.gsm.is_some())).as_bool() == Ok(true)
    });
    engine
        .register_get("updated", |v: &mut GsmView| {
            state_field(v.0, |s, fr| fr.time(s.gsm.as_ref().and_then(|g| g.updated)))
        })
        .register_get("signal_level", |v: &mut GsmView| {
            state_field(v.0, |s, _| {
                opt_float(s.gsm.as_ref().and_then(|g| g.signal_level))
            })
        })
        .register_get("network_name", |v: &mut GsmView| {
            state_field(v.0, |s, _| {
                opt_str(s.gsm.as_ref().and_then(|g| g.network_name.as_deref()))
            })
        })
        .register_get("roaming", |v: &mut GsmView| {
            state_field(v.0, |s, _| opt_bool(s.gsm.as_ref().and_then(|g| g.roaming)))
        });

    // inputs / outputs
    engine.register_type_with_name::<BitsView>("Bits");
    register_presence!(engine, BitsView, |v| {
        state_field(v.which, |s, _| {
            Dynamic::from_bool(if v.outputs {
                s.outputs.is_some()
            } else {
                s.inputs.is_some()
            })
        })
        .as_bool()
            == Ok(true)
    });
    fn bits(v: &BitsView, f: impl FnOnce(&[bool]) -> Dynamic) -> Dynamic {
        let outputs = v.outputs;
        state_field(v.which, move |s, _| {
            let b = if outputs { &s.outputs } else { &s.inputs };
            b.as_deref().map_or(Dynamic::UNIT, f)
        })
    }
    engine
        .register_indexer_get(|v: &mut BitsView, i: INT| {
            bits(v, |b| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| b.get(i))
                    .map_or(Dynamic::UNIT, |x| Dynamic::from_bool(*x))
            })
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
    register_presence!(engine, AdditionalView, |v| {
        state_field(v.0, |s, _| Dynamic::from_bool(s.additional.is_some())).as_bool() == Ok(true)
    });
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
    fn additional(
        v: &AdditionalFieldView,
        f: impl FnOnce(&crate::navixy::messages::AdditionalField, &context::Frame<'_>) -> Dynamic,
    ) -> Dynamic {
        state_field(v.which, |s, fr| {
            s.additional
                .as_ref()
                .and_then(|a| a.get(v.name.as_str()))
                .map_or(Dynamic::UNIT, |field| f(field, fr))
        })
    }
    register_presence!(engine, AdditionalFieldView, |v| {
        additional(v, |_, _| Dynamic::TRUE).is_bool()
    });
    engine
        .register_get("value", |v: &mut AdditionalFieldView| {
            additional(v, |f, _| opt_str(f.value.as_deref()))
        })
        .register_get("updated", |v: &mut AdditionalFieldView| {
            additional(v, |f, fr| fr.time(f.updated))
        });
}

fn register_tracker(engine: &mut Engine) {
    engine.register_type_with_name::<TrackerView>("Tracker");
    engine
        .register_get("id", |_: &mut TrackerView| {
            tracker_field(|t, _| Dynamic::from_int(t.info.id))
        })
        .register_get("source_id", |_: &mut TrackerView| {
            tracker_field(|t, _| opt_int(t.info.source_id))
        })
        .register_get("label", |_: &mut TrackerView| {
            tracker_field(|t, _| opt_str(t.info.label.as_deref()))
        })
        .register_get("group_id", |_: &mut TrackerView| {
            tracker_field(|t, _| opt_int(t.info.group_id))
        })
        .register_get("lifecycle", |_: &mut TrackerView| {
            tracker_field(|t, _| INTERNED.get(t.lifecycle.as_str()))
        })
        .register_get("online", |_: &mut TrackerView| {
            tracker_field(|t, _| Dynamic::from_bool(t.online))
        })
        .register_get("last_data_at", |_: &mut TrackerView| {
            tracker_field(|t, _| opt_int(t.last_data_at.map(|t| t.timestamp())))
        });
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
    for field in [
        "value",
        "converted_value",
        "min_value",
        "max_value",
        "units",
        "units_type",
        "label",
        "name",
        "field",
        "type",
        "sensor_id",
        "update_time",
    ] {
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
        tracker_field(|t, _| Dynamic::from_bool(t.iot.contains_key(v.name.as_str()))).as_bool()
            == Ok(true)
    });
    for field in ["value", "msg_time", "srv_time"] {
        engine.register_get(field, move |v: &mut IotFieldView| {
            context::iot_field(&v.name, field)
        });
    }
}

/// A number of seconds as Rhai passes it (INT or FLOAT), or `None`.
fn seconds_of(d: &Dynamic) -> Option<f64> {
    if let Ok(i) = d.as_int() {
        return Some(i as f64);
    }
    d.as_float().ok()
}

type RhaiResult = Result<Dynamic, Box<EvalAltResult>>;

/// Which statistic a window helper computes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Window {
    Delta,
    Fall,
    Rise,
    Min,
    Max,
    Avg,
}

/// The window helpers by their Rhai names.
pub(crate) const WINDOW_HELPERS: [(&str, Window); 6] = [
    ("delta", Window::Delta),
    ("fuel_drop", Window::Fall),
    ("fuel_rise", Window::Rise),
    ("min_over", Window::Min),
    ("max_over", Window::Max),
    ("avg_over", Window::Avg),
];

fn window_stat(kind: Window, name: &str, window: &Dynamic) -> RhaiResult {
    let Some(window_s) = seconds_of(window) else {
        if window.is_unit() {
            return Ok(Dynamic::UNIT);
        }
        return Err(format!(
            "the window must be a number of seconds such as minutes(10), not {}",
            window.type_name()
        )
        .into());
    };
    if !(window_s > 0.0) {
        return Err(format!("the window must be positive, not {window_s}").into());
    }
    let window_ms = (window_s * 1000.0) as i64;
    Ok(context::with(|fr| {
        let Some(fr) = fr else {
            return Dynamic::UNIT;
        };
        let Some(series) = fr.tracker.history.series(name) else {
            return Dynamic::UNIT;
        };
        let now = fr.now_ms;
        let v = match kind {
            Window::Delta => series.delta(now, window_ms),
            Window::Fall => series.largest_fall(now, window_ms),
            Window::Rise => series.largest_rise(now, window_ms),
            Window::Min => series.min(now, window_ms),
            Window::Max => series.max(now, window_ms),
            Window::Avg => series.avg(now, window_ms),
        };
        opt_float(v)
    }))
}

fn register_helpers(engine: &mut Engine) {
    // Durations are seconds, matching `now` and `since`.
    for (name, factor) in [("seconds", 1), ("minutes", 60), ("hours", 3600)] {
        engine
            .register_fn(name, move |n: INT| n.saturating_mul(factor))
            .register_fn(name, move |n: FLOAT| n * factor as FLOAT);
    }

    // since(time): seconds from a time (epoch seconds, or a Navixy time string) to now.
    fn since_secs(t: f64) -> Dynamic {
        context::with(|fr| {
            fr.map_or(Dynamic::UNIT, |fr| {
                Dynamic::from_int(fr.now_ms.div_euclid(1000) - t.floor() as i64)
            })
        })
    }
    engine
        .register_fn("since", |t: INT| since_secs(t as f64))
        .register_fn("since", |t: FLOAT| since_secs(t))
        .register_fn("since", |_: ()| ())
        .register_fn("since", |t: ImmutableString| -> RhaiResult {
            let parsed = NavixyTime::parse(&t).ok_or_else(|| {
                format!("since: `{t}` is not a time (use epoch seconds or 2026-01-01 10:00:00)")
            })?;
            Ok(context::with(|fr| {
                fr.map_or(Dynamic::UNIT, |fr| {
                    let secs = parsed.to_utc(fr.time_zone).timestamp();
                    Dynamic::from_int(fr.now_ms.div_euclid(1000) - secs)
                })
            }))
        });

    // changed("ignition"): the latest state update changed this field.
    engine.register_fn("changed", |path: ImmutableString| -> RhaiResult {
        if !context::is_field_path(&path) {
            return Err(format!("changed: `{path}` is not a state field").into());
        }
        Ok(context::with(|fr| {
            let Some(fr) = fr else {
                return Dynamic::UNIT;
            };
            match (fr.tracker.current.as_deref(), fr.tracker.prev.as_deref()) {
                (Some(cur), Some(prev)) => Dynamic::from_bool(
                    context::field_value(cur, &path) != context::field_value(prev, &path),
                ),
                _ => Dynamic::FALSE,
            }
        }))
    });

    // in_zone("depot"): the tracker's position is inside the zone; `()` without a fix.
    engine.register_fn("in_zone", |name: ImmutableString| -> RhaiResult {
        context::with(|fr| {
            let Some(fr) = fr else {
                return Ok(Dynamic::UNIT);
            };
            let zone = fr.zones.get(&name).ok_or_else(|| {
                format!(
                    "in_zone: unknown zone `{name}` (zones: {})",
                    fr.zones.names()
                )
            })?;
            let location = fr
                .tracker
                .current
                .as_deref()
                .and_then(|s| s.gps.as_ref())
                .and_then(|g| g.location);
            Ok(location.map_or(Dynamic::UNIT, |l| {
                Dynamic::from_bool(zone.contains(l.lat, l.lng))
            }))
        })
    });

    engine.register_fn(
        "distance_m",
        |a: Dynamic, b: Dynamic, c: Dynamic, d: Dynamic| -> Dynamic {
            match (
                seconds_of(&a),
                seconds_of(&b),
                seconds_of(&c),
                seconds_of(&d),
            ) {
                (Some(a), Some(b), Some(c), Some(d)) => {
                    Dynamic::from_float(zones::distance_m(a, b, c, d))
                }
                _ => Dynamic::UNIT,
            }
        },
    );

    for (name, kind) in WINDOW_HELPERS {
        engine.register_fn(name, move |series: ImmutableString, window: Dynamic| {
            window_stat(kind, &series, &window)
        });
    }
}

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
