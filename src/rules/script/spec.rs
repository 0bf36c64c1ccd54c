//! The one list of rule helpers: each helper's name, arguments, what it reads and whether
//! it needs history. Registration ([`super::engine`]), dependency analysis
//! (`load::deps_of`), the field masks ([`super::fields`]), the direct evaluator's lookup
//! ([`super::fast`]), the load-time check of calls and the helper table of
//! `docs/rules.md` all read [`HELPERS`]; a helper is added here and nowhere else
//! (`docs/architecture.md`, "Adding a rule helper").

use rhai::INT;

use super::engine::Window;
use crate::rules::set::Deps;

/// What a helper computes; the registration and the direct evaluator match on it
/// exhaustively, so a new kind that one of them does not implement fails the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `seconds`, `minutes`, `hours`: the factor to seconds.
    Duration(INT),
    Since,
    Changed,
    InZone,
    /// The labels of the zones holding the position.
    Zones,
    /// The trackers near this one, from the positions snapshot.
    Nearby,
    /// Metres to another tracker, from the positions snapshot.
    DistanceTo,
    Distance,
    /// A statistic of a series kept in history.
    Window(Window),
    /// Kilometres driven within a window: the odometer counter's rise.
    DistanceKm,
}

/// Which source-state fields a helper reads, for the field masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateReads {
    None,
    /// `gps.location`.
    Location,
    /// Any field (it compares with the previous state).
    All,
}

/// One helper.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HelperSpec {
    pub name: &'static str,
    /// The arguments as the docs show them, e.g. `(name, window)`.
    pub args: &'static [&'static str],
    pub kind: Kind,
    /// What its result depends on, besides its arguments.
    pub deps: Deps,
    pub state: StateReads,
    /// Whether it reads the history of its first argument's series (the cache keeps
    /// those series only for rules that name them).
    pub history: bool,
    /// The docs' description (read by the test that checks `docs/rules.md`).
    #[cfg_attr(not(test), allow(dead_code))]
    pub doc: &'static str,
}

const NO_DEPS: Deps = Deps::NONE;

const fn window(name: &'static str, w: Window, doc: &'static str) -> HelperSpec {
    HelperSpec {
        name,
        args: &["name", "window"],
        kind: Kind::Window(w),
        deps: Deps::TIME.union(Deps::DATA).union(Deps::STATE),
        state: StateReads::None,
        history: true,
        doc,
    }
}

const fn duration(name: &'static str, factor: INT) -> HelperSpec {
    HelperSpec {
        name,
        args: &["n"],
        kind: Kind::Duration(factor),
        deps: NO_DEPS,
        state: StateReads::None,
        history: false,
        doc: "`n` in seconds (integer for an integer, float for a float).",
    }
}

/// Every helper, in the order the docs list them.
pub(crate) const HELPERS: &[HelperSpec] = &[
    duration("seconds", 1),
    duration("minutes", 60),
    duration("hours", 3600),
    HelperSpec {
        name: "since",
        args: &["t"],
        kind: Kind::Since,
        deps: Deps::TIME,
        state: StateReads::None,
        history: false,
        doc: "Seconds from `t` (epoch seconds, or a time string such as `\"2026-01-05 08:00:00\"`) to `now`; `()` for `()`.",
    },
    HelperSpec {
        name: "changed",
        args: &["path"],
        kind: Kind::Changed,
        deps: Deps::STATE,
        state: StateReads::All,
        history: false,
        doc: "Whether the latest state update changed that field (`changed(\"ignition\")`). Paths: any state leaf (`\"gps.speed\"`, `\"movement_status\"`, `\"additional.event_code\"`), `\"inputs\"`, `\"outputs\"`, `\"inputs[2]\"`, `\"gps.location\"`. False on a tracker's first state. It stays true until the next state update.",
    },
    HelperSpec {
        name: "in_zone",
        args: &["zone"],
        kind: Kind::InZone,
        deps: Deps::STATE,
        state: StateReads::Location,
        history: false,
        doc: "Whether the position is inside the zone with that label (a config zone, one of its GeoJSON file, or with `zones: { navixy: ... }` one of Navixy's geofences; the config's wins a clash); `()` without a position. With Navixy's zones imported, a label no zone has (yet) is false, with one warning.",
    },
    HelperSpec {
        name: "zones",
        args: &[],
        kind: Kind::Zones,
        deps: Deps::STATE,
        state: StateReads::Location,
        history: false,
        doc: "The labels of every zone holding the position, as an array of strings (`\"depot\" in zones()`, `zones().len() > 0`); empty without a position.",
    },
    HelperSpec {
        name: "nearby",
        args: &["radius_m"],
        kind: Kind::Nearby,
        deps: Deps::STATE.union(Deps::TIME),
        state: StateReads::Location,
        history: false,
        doc: "The ids of the other trackers of the same source (account) within `radius_m` metres of the position, nearest first (`nearby(50).len() > 0`), at their positions of the last tick (`eval_interval`); empty without a position.",
    },
    HelperSpec {
        name: "distance_to",
        args: &["tracker_id"],
        kind: Kind::DistanceTo,
        deps: Deps::STATE.union(Deps::TIME),
        state: StateReads::Location,
        history: false,
        doc: "Metres from the position to the position of the last tick (`eval_interval`) of that tracker of the same source; `()` when either is unknown.",
    },
    HelperSpec {
        name: "distance_m",
        args: &["lat1", "lng1", "lat2", "lng2"],
        kind: Kind::Distance,
        deps: NO_DEPS,
        state: StateReads::None,
        history: false,
        doc: "Great-circle distance in metres; `()` if any argument is `()`.",
    },
    HelperSpec {
        name: "distance_km",
        args: &["window"],
        kind: Kind::DistanceKm,
        deps: Deps::TIME.union(Deps::DATA).union(Deps::STATE),
        state: StateReads::None,
        history: true,
        doc: "Kilometres driven within the window: the rise of the `odometer` counter (Navixy's odometer is a counter, in km), else the GPS speed integrated over the window (as far as history covers it); `()` without either.",
    },
    window(
        "delta",
        Window::Delta,
        "Newest value minus the value at the window's start.",
    ),
    window(
        "fuel_drop",
        Window::Fall,
        "Largest fall from an earlier to a later point within the window (>= 0).",
    ),
    window("fuel_rise", Window::Rise, "Largest rise within the window."),
    window("min_over", Window::Min, "Minimum within the window."),
    window("max_over", Window::Max, "Maximum within the window."),
    window(
        "avg_over",
        Window::Avg,
        "Time-weighted average within the window.",
    ),
];

/// The series `distance_km` reads: the odometer counter, else the GPS speed.
pub(crate) const ODOMETER: &str = "odometer";
pub(crate) const SPEED: &str = "speed";

/// The helper called `name`.
pub(crate) fn helper(name: &str) -> Option<&'static HelperSpec> {
    HELPERS.iter().find(|h| h.name == name)
}

/// The helper called `name` with `arity` arguments.
pub(crate) fn lookup(name: &str, arity: usize) -> Option<&'static HelperSpec> {
    helper(name).filter(|h| h.args.len() == arity)
}

/// The series a history helper call reads: its first argument (`None` when that is not
/// known before evaluation), or for `distance_km` the odometer and the speed.
pub(crate) fn history_series(spec: &HelperSpec, first_arg: Option<String>) -> Option<Vec<String>> {
    match spec.kind {
        Kind::DistanceKm => Some(vec![ODOMETER.to_string(), SPEED.to_string()]),
        _ => first_arg.map(|a| vec![a]),
    }
}

/// The argument holding the window length of a history helper call.
pub(crate) fn window_arg(spec: &HelperSpec) -> usize {
    spec.args.iter().position(|a| *a == "window").unwrap_or(0)
}

/// The helper table of `docs/rules.md`, as Markdown.
#[cfg(test)]
pub(crate) fn docs_table() -> String {
    let mut out = String::from("| helper | returns |\n|---|---|\n");
    for h in HELPERS {
        out.push_str(&format!(
            "| `{}({})` | {} |\n",
            h.name,
            h.args.join(", "),
            h.doc
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        for (i, h) in HELPERS.iter().enumerate() {
            assert!(
                HELPERS[..i].iter().all(|o| o.name != h.name),
                "{} is listed twice",
                h.name
            );
        }
    }

    /// `docs/rules.md` holds the table between its markers, as [`docs_table`] makes it.
    #[test]
    fn docs_list_every_helper() {
        let docs = include_str!("../../../docs/rules.md");
        let begin = "<!-- helpers:begin (generated from src/rules/script/spec.rs) -->\n";
        let end = "<!-- helpers:end -->";
        let start = docs
            .find(begin)
            .expect("docs/rules.md has the helpers markers")
            + begin.len();
        let stop = docs[start..].find(end).expect("the end marker") + start;
        assert_eq!(
            &docs[start..stop],
            docs_table(),
            "docs/rules.md's helper table is out of date; paste the table printed here"
        );
    }

    /// Registration reads the same list: each helper is a function of the engine with
    /// as many arguments as its spec says.
    #[test]
    fn every_helper_is_registered_with_its_arity() {
        let engine = super::super::engine::build(&Default::default());
        let signatures = engine.gen_fn_signatures(false);
        for h in HELPERS {
            let registered = signatures.iter().any(|sig| {
                let Some(params) = sig
                    .strip_prefix(h.name)
                    .and_then(|rest| rest.strip_prefix('('))
                    .and_then(|rest| rest.split(')').next())
                else {
                    return false;
                };
                let arity = if params.trim().is_empty() {
                    0
                } else {
                    params.split(',').count()
                };
                arity == h.args.len()
            });
            assert!(registered, "{} is not registered: {signatures:?}", h.name);
        }
    }

    #[test]
    fn history_helpers_have_a_window() {
        for h in HELPERS.iter().filter(|h| h.history) {
            assert_eq!(h.args[window_arg(h)], "window", "{}", h.name);
        }
    }
}
