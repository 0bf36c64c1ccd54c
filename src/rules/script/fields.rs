//! Which source-state fields a rule reads, as a bit mask, and which fields an update
//! changed: a state update that moved only the position and the clock need not evaluate
//! `state.ignition == true` again.
//!
//! Why per field: every state update is a new state, so "the state changed" holds for
//! almost every rule on almost every update; yet most updates change a few fields (time,
//! position, speed) and most rules read one or two others. The mask is computed from the
//! rule's expressions once, at load, and over-approximates: anything it cannot place
//! (`prev`, `changed(...)`, the state as a whole, an unknown field) reads every field.

use super::scan::Usage;
use super::spec::{self, StateReads};
use crate::navixy::messages::{Gps, SourceState, field_index};

/// A set of source-state fields; `gps` is split into its own fields, since its `updated`
/// time changes with every fix while rules read its speed or position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FieldMask(u32);

/// Top-level fields (the protocol table's order; bit i is field i), then `gps.*`.
const FIELDS: &[&str] = SourceState::FIELDS;
const GPS_FIELDS: &[&str] = Gps::FIELDS;
const GPS_SHIFT: u32 = FIELDS.len() as u32;
const _: () = assert!(
    FIELDS.len() + GPS_FIELDS.len() <= 32,
    "the state's fields outgrew the field mask"
);

impl FieldMask {
    pub const NONE: FieldMask = FieldMask(0);
    pub const ALL: FieldMask = FieldMask(u32::MAX);
    const GPS: FieldMask = FieldMask(((1 << GPS_FIELDS.len()) - 1) << GPS_SHIFT);

    fn top(name: &str) -> Option<FieldMask> {
        let i = FIELDS.iter().position(|f| *f == name && *f != "gps")?;
        Some(FieldMask(1 << i))
    }

    fn gps(name: &str) -> Option<FieldMask> {
        let i = GPS_FIELDS.iter().position(|f| *f == name)?;
        Some(FieldMask(1 << (GPS_SHIFT + i as u32)))
    }

    /// The fields a helper reads by itself.
    fn of_helper(reads: StateReads) -> FieldMask {
        match reads {
            StateReads::None => FieldMask::NONE,
            StateReads::Location => FieldMask::gps("location").unwrap_or(FieldMask::ALL),
            StateReads::All => FieldMask::ALL,
        }
    }

    pub fn intersects(self, other: FieldMask) -> bool {
        self.0 & other.0 != 0
    }

    /// The fields an expression reads from `state`.
    pub fn read_by(usage: &Usage<'_>) -> FieldMask {
        let mut fields = FieldMask::NONE;
        for name in &usage.names {
            fields.0 |= match *name {
                // The previous state changes with every update.
                "prev" => FieldMask::ALL.0,
                // Function pointers can reach any helper by a computed name.
                "Fn" | "call" | "curry" => FieldMask::ALL.0,
                n => spec::helper(n).map_or(0, |h| FieldMask::of_helper(h.state).0),
            };
        }
        for path in usage.paths.iter().filter(|p| p.root == "state") {
            fields.0 |= match path.segments.as_slice() {
                // `state` as a whole (`state == ()`, `state["gps"]`): anything.
                [] => FieldMask::ALL.0,
                ["gps"] => FieldMask::GPS.0,
                ["gps", field, ..] => FieldMask::gps(field).map_or(FieldMask::GPS.0, |f| f.0),
                [field, ..] => FieldMask::top(field).map_or(u32::MAX, |f| f.0),
            };
        }
        fields
    }

    /// The fields an expression names at all, through `state`, `prev` or a literal
    /// `changed("...")` path: what must be decoded for it (as opposed to
    /// [`FieldMask::read_by`], what must change for it to be evaluated again).
    pub fn named_by(usage: &Usage<'_>) -> FieldMask {
        let mut fields = FieldMask::NONE;
        for name in &usage.names {
            if spec::helper(name).is_some_and(|h| h.state == StateReads::Location) {
                fields |= FieldMask::of_helper(StateReads::Location);
            }
            if matches!(*name, "Fn" | "call" | "curry") {
                fields = FieldMask::ALL;
            }
        }
        // A helper that compares with the previous state names the field it is given.
        let compares = |c: &&super::scan::Call<'_>| {
            spec::helper(c.name).is_some_and(|h| h.state == StateReads::All)
        };
        for call in usage.calls.iter().filter(compares) {
            fields.0 |= match call.literal.as_deref() {
                Some(path) => {
                    let top = path.split(['.', '[']).next().unwrap_or(path);
                    FieldMask::top(top)
                        .or_else(|| (top == "gps").then_some(FieldMask::GPS))
                        .map_or(u32::MAX, |f| f.0)
                }
                None => u32::MAX,
            };
        }
        for path in usage
            .paths
            .iter()
            .filter(|p| p.root == "state" || p.root == "prev")
        {
            fields.0 |= match path.segments.first() {
                None => u32::MAX,
                Some(&"gps") => FieldMask::GPS.0,
                Some(field) => FieldMask::top(field).map_or(u32::MAX, |f| f.0),
            };
        }
        fields
    }

    /// The top-level field names in the set (`gps` for any of its fields); `None` when
    /// every field is in it.
    pub fn top_level_names(self) -> Option<Vec<&'static str>> {
        if self == FieldMask::ALL {
            return None;
        }
        let mut names: Vec<&'static str> = FIELDS
            .iter()
            .enumerate()
            .filter(|(i, name)| self.0 & (1 << i) != 0 && **name != "gps")
            .map(|(_, name)| *name)
            .collect();
        if self.intersects(FieldMask::GPS) {
            names.push("gps");
        }
        Some(names)
    }

    /// Which of the fields in `wanted` differ between `old` and `new`.
    pub fn changed(old: &SourceState, new: &SourceState, wanted: FieldMask) -> FieldMask {
        let mut out = 0u32;
        macro_rules! compare {
            (
                $(#[$smeta:meta])* $name:ident $prefix:literal $expected:literal {
                    $( $(#[$meta:meta])* $field:ident : $ty:ty => $kind:ident ),* $(,)?
                }
            ) => {
                $( compare!(@ $kind $field); )*
            };
            (@ gps $field:ident) => {
                if wanted.intersects(FieldMask::GPS) {
                    out |= gps_changes(old.gps.as_ref(), new.gps.as_ref());
                }
            };
            (@ $kind:ident $field:ident) => {
                let bit = 1u32 << const { field_index(FIELDS, stringify!($field)) };
                if wanted.0 & bit != 0 && old.$field != new.$field {
                    out |= bit;
                }
            };
        }
        crate::source_state_fields!(compare);
        FieldMask(out & wanted.0)
    }
}

/// The `gps.*` bits of the fields that differ; all of them when one side has no `gps`.
macro_rules! gps_changes {
    (
        $(#[$smeta:meta])* $name:ident $prefix:literal $expected:literal {
            $( $(#[$meta:meta])* $field:ident : $ty:ty => $kind:ident ),* $(,)?
        }
    ) => {
        fn gps_changes(a: Option<&Gps>, b: Option<&Gps>) -> u32 {
            match (a, b) {
                (None, None) => 0,
                (Some(a), Some(b)) => {
                    let mut gps = 0u32;
                    $(
                        if a.$field != b.$field {
                            gps |= 1u32
                                << (GPS_SHIFT + const { field_index(GPS_FIELDS, stringify!($field)) });
                        }
                    )*
                    gps
                }
                _ => FieldMask::GPS.0,
            }
        }
    };
}

crate::gps_fields!(gps_changes);

impl std::ops::BitOrAssign for FieldMask {
    fn bitor_assign(&mut self, rhs: FieldMask) {
        self.0 |= rhs.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::navixy::messages::{Gps, Location};
    use crate::rules::script::scan::analyse;

    fn read(src: &str) -> FieldMask {
        FieldMask::read_by(&analyse(src, &["state", "prev", "tracker", "params"]))
    }

    #[test]
    fn expressions_read_the_fields_they_name() {
        let ignition = read("state.ignition == true");
        assert_eq!(ignition, FieldMask::top("ignition").unwrap());
        let speed = read("state.gps.speed > params.max");
        assert_eq!(speed, FieldMask::gps("speed").unwrap());
        assert_eq!(
            read("in_zone(\"depot\")"),
            FieldMask::gps("location").unwrap()
        );
        assert_eq!(
            read("state.inputs[2] == true"),
            FieldMask::top("inputs").unwrap()
        );
        assert_eq!(read("tracker.lifecycle == \"blocked\""), FieldMask::NONE);
        // What cannot be placed reads everything.
        for src in [
            "changed(\"ignition\")",
            "prev.ignition != state.ignition",
            "state == ()",
            "state.ignitoin",
        ] {
            assert_eq!(read(src), FieldMask::ALL, "{src}");
        }
    }

    #[test]
    fn changed_compares_only_the_wanted_fields() {
        let old = SourceState {
            ignition: Some(true),
            battery_level: Some(80.0),
            gps: Some(Gps {
                speed: Some(50.0),
                location: Some(Location { lat: 1.0, lng: 2.0 }),
                ..Gps::default()
            }),
            ..SourceState::default()
        };
        let mut new = old.clone();
        new.gps.as_mut().unwrap().speed = Some(60.0);
        new.battery_level = Some(79.0);
        let wanted = read("state.ignition == true && state.gps.speed > 1 || in_zone(\"z\")");
        assert_eq!(
            FieldMask::changed(&old, &new, wanted),
            FieldMask::gps("speed").unwrap()
        );
        assert_eq!(
            FieldMask::changed(&old, &new, FieldMask::ALL),
            FieldMask(
                FieldMask::gps("speed").unwrap().0 | FieldMask::top("battery_level").unwrap().0
            )
        );
        new.gps = None;
        assert!(
            FieldMask::changed(&old, &new, wanted).intersects(FieldMask::gps("location").unwrap())
        );
    }
}
