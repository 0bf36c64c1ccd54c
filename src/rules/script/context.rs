//! What a condition reads, without copying it: the tracker being evaluated is lent to the
//! Rhai helpers and property getters through a thread-local [`ScriptFrame`] for the duration of
//! one tracker's evaluation.
//!
//! Why not a Rhai `Map` of the state? Building one per evaluation allocates dozens of
//! strings and boxes; the getters here read the cached `TrackerState` in place. The scope
//! holds only zero-sized markers (`state`, `prev`, `tracker`, `readings`, `iot`) that never
//! change, so one `Scope` serves a whole shard. Intermediate objects (`state.gps`) are small
//! `Copy` views that remember only which state they look at.
//!
//! A view used outside a frame (a script cannot keep one: every evaluation starts from a
//! rewound scope) reads as `()`.

use std::cell::Cell;
use std::sync::LazyLock;

use rhai::{Dynamic, FLOAT, INT, ImmutableString};

use crate::navixy::context::ContextSnapshot;
use crate::navixy::messages::{
    Bits, ConnectionStatus, Gps, Gsm, MovementStatus, NavixyTime, SourceState, Text,
};
use crate::rules::around::Around;
use crate::rules::zones::Zones;
use crate::state::{Readings, TrackerState};

/// Everything one tracker's evaluation can see.
pub(crate) struct ScriptFrame<'a> {
    pub tracker: &'a TrackerState,
    /// The engine clock, epoch milliseconds.
    pub now_ms: i64,
    /// The zone of Navixy's offset-less times.
    pub time_zone: chrono_tz::Tz,
    pub zones: &'a Zones,
    /// Navixy's context as loaded for this evaluation (one snapshot for all the rules of
    /// one tracker, even if a refresh swaps it meanwhile).
    pub navixy: &'a ContextSnapshot,
    pub around: &'a Around,
}

impl ScriptFrame<'_> {
    /// The tracker's current position.
    pub fn location(&self) -> Option<(f64, f64)> {
        self.tracker
            .current
            .as_deref()
            .and_then(|s| s.gps.as_ref())
            .and_then(|g| g.location)
            .map(|l| (l.lat, l.lng))
    }

    pub fn source(&self, which: Which) -> Option<&SourceState> {
        match which {
            Which::Current => self.tracker.current.as_deref(),
            Which::Prev => self.tracker.prev.as_deref(),
        }
    }

    /// A Navixy time as epoch seconds.
    pub fn time(&self, t: Option<NavixyTime>) -> Dynamic {
        t.map_or(Dynamic::UNIT, |t| {
            Dynamic::from_int(t.to_utc(self.time_zone).timestamp())
        })
    }
}

thread_local! {
    /// The current frame, type-erased; null outside [`enter`].
    static CURRENT: Cell<*const ()> = const { Cell::new(std::ptr::null()) };
}

/// Runs `f` with `frame` visible to the helpers and getters on this thread.
pub(crate) fn enter<R>(frame: &ScriptFrame<'_>, f: impl FnOnce() -> R) -> R {
    /// Restores the previous frame even if `f` unwinds, so no dangling pointer survives.
    struct Restore(*const ());
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let previous = CURRENT.with(|c| c.replace(std::ptr::from_ref(frame).cast::<()>()));
    let _restore = Restore(previous);
    f()
}

/// Calls `f` with the current frame, if any.
pub(crate) fn with<R>(f: impl for<'a, 'b> FnOnce(Option<&'a ScriptFrame<'b>>) -> R) -> R {
    let ptr = CURRENT.with(Cell::get).cast::<ScriptFrame<'_>>();
    // SAFETY: a non-null pointer was stored by `enter` from a `&ScriptFrame` that outlives the
    // call of its closure, and `enter` restores the previous value before that borrow
    // ends (also on unwind). `f` is generic over the lifetimes, so the reference cannot
    // escape it.
    let frame = unsafe { ptr.as_ref() };
    f(frame)
}

/// Which of a tracker's states a view reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    Current,
    Prev,
}

/// `state` / `prev`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StateView(pub Which);
/// `state.gps`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GpsView(pub Which);
/// `state.gps.location`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocationView(pub Which);
/// `state.gsm`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GsmView(pub Which);
/// `state.inputs` / `state.outputs`: `state.inputs[0]` is input 1.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BitsView {
    pub which: Which,
    pub outputs: bool,
}
/// `state.additional`: extra fields by name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdditionalView(pub Which);
/// `state.additional.event_code`: `{value, updated}`.
#[derive(Debug, Clone)]
pub(crate) struct AdditionalFieldView {
    pub which: Which,
    pub name: ImmutableString,
}
/// `tracker`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TrackerView;
/// `readings`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadingsView;
/// `readings.lls_level_1`: a metering sensor, state field, virtual sensor or counter.
#[derive(Debug, Clone)]
pub(crate) struct ReadingView {
    pub name: ImmutableString,
}
/// `iot`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IotView;
/// `iot.satellites`: `{value, msg_time, srv_time}`.
#[derive(Debug, Clone)]
pub(crate) struct IotFieldView {
    pub name: ImmutableString,
}

/// Reads the state a view looks at; `()` when it is absent or outside a frame.
pub(crate) fn state_field(
    which: Which,
    f: impl FnOnce(&SourceState, &ScriptFrame<'_>) -> Dynamic,
) -> Dynamic {
    with(|frame| {
        frame
            .and_then(|fr| fr.source(which).map(|s| f(s, fr)))
            .unwrap_or(Dynamic::UNIT)
    })
}

/// Reads the tracker of the current frame; `()` outside a frame.
pub(crate) fn tracker_field(f: impl FnOnce(&TrackerState, &ScriptFrame<'_>) -> Dynamic) -> Dynamic {
    with(|frame| frame.map_or(Dynamic::UNIT, |fr| f(fr.tracker, fr)))
}

pub(crate) fn opt_float(v: Option<f64>) -> Dynamic {
    v.map_or(Dynamic::UNIT, |v| Dynamic::from_float(v as FLOAT))
}

pub(crate) fn opt_int(v: Option<i64>) -> Dynamic {
    v.map_or(Dynamic::UNIT, |v| Dynamic::from_int(v as INT))
}

pub(crate) fn opt_str(v: Option<&str>) -> Dynamic {
    v.map_or(Dynamic::UNIT, |s| Dynamic::from(ImmutableString::from(s)))
}

/// Interned strings for the enumerations conditions compare most, so reading
/// `state.movement_status` clones a reference count instead of allocating.
pub(crate) struct Interned {
    strings: Vec<(&'static str, ImmutableString)>,
}

impl Interned {
    pub fn get(&self, s: &'static str) -> Dynamic {
        match self
            .strings
            .iter()
            .find(|(k, _)| std::ptr::eq(*k, s) || *k == s)
        {
            Some((_, v)) => Dynamic::from(v.clone()),
            None => Dynamic::from(ImmutableString::from(s)),
        }
    }
}

pub(crate) static INTERNED: LazyLock<Interned> = LazyLock::new(|| {
    let words = [
        "moving",
        "stopped",
        "parked",
        "other",
        "signal_lost",
        "just_registered",
        "just_replaced",
        "offline",
        "idle",
        "active",
        "blocked",
        "removed",
    ];
    Interned {
        strings: words
            .iter()
            .map(|w| (*w, ImmutableString::from(*w)))
            .collect(),
    }
});

/// A value field of a source state: what the Rhai getters and the direct evaluator read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StateLeaf {
    /// A `leaf` of the state's field table, by its index in `SourceState::FIELDS`.
    Top(u8),
    /// A `leaf` of `gps`, by its index in `Gps::FIELDS`.
    Gps(u8),
    /// A `leaf` of `gsm`, by its index in `Gsm::FIELDS`.
    Gsm(u8),
    GpsLat,
    GpsLng,
    /// `inputs[i]`; out of range (or negative) reads `()`.
    Input(i64),
    Output(i64),
    AdditionalValue(ImmutableString),
    AdditionalUpdated(ImmutableString),
}

impl StateLeaf {
    /// The leaf of a top-level state property.
    pub fn top(name: &str) -> Option<StateLeaf> {
        leaf_index::<SourceState>(name).map(StateLeaf::Top)
    }

    /// The leaf of a `gps` property (`location` is an object, not a leaf).
    pub fn gps(name: &str) -> Option<StateLeaf> {
        leaf_index::<Gps>(name).map(StateLeaf::Gps)
    }

    pub fn location(name: &str) -> Option<StateLeaf> {
        match name {
            "lat" => Some(StateLeaf::GpsLat),
            "lng" => Some(StateLeaf::GpsLng),
            _ => None,
        }
    }

    pub fn gsm(name: &str) -> Option<StateLeaf> {
        leaf_index::<Gsm>(name).map(StateLeaf::Gsm)
    }
}

/// A field's value as rules read it.
pub(crate) trait LeafValue {
    /// What rules get, for the docs' table.
    #[allow(dead_code)]
    const KIND: &'static str;
    fn leaf(&self) -> FieldValue<'_>;
}

impl LeafValue for f64 {
    const KIND: &'static str = "number";
    fn leaf(&self) -> FieldValue<'_> {
        FieldValue::Num(*self)
    }
}

impl LeafValue for i64 {
    const KIND: &'static str = "integer";
    fn leaf(&self) -> FieldValue<'_> {
        FieldValue::Int(*self)
    }
}

impl LeafValue for bool {
    const KIND: &'static str = "boolean";
    fn leaf(&self) -> FieldValue<'_> {
        FieldValue::Bool(*self)
    }
}

impl LeafValue for NavixyTime {
    const KIND: &'static str = "time (epoch seconds)";
    fn leaf(&self) -> FieldValue<'_> {
        FieldValue::Time(*self)
    }
}

impl LeafValue for Text {
    const KIND: &'static str = "string";
    fn leaf(&self) -> FieldValue<'_> {
        FieldValue::Str(self)
    }
}

impl LeafValue for ConnectionStatus {
    const KIND: &'static str =
        "string: `active`, `idle`, `offline`, `signal_lost`, `just_registered`, `just_replaced`";
    fn leaf(&self) -> FieldValue<'_> {
        FieldValue::Word(self.as_str())
    }
}

impl LeafValue for MovementStatus {
    const KIND: &'static str = "string: `moving`, `stopped`, `parked`";
    fn leaf(&self) -> FieldValue<'_> {
        FieldValue::Word(self.as_str())
    }
}

fn leaf<T: LeafValue>(v: &Option<T>) -> FieldValue<'_> {
    v.as_ref().map_or(FieldValue::Absent, LeafValue::leaf)
}

/// Reads one field of `S`.
type Getter<S> = for<'a> fn(&'a S) -> FieldValue<'a>;

/// A protocol object whose `leaf` fields rules read: a getter per field of its table, in
/// the table's order (`None` for fields of other kinds).
pub(crate) trait Leaves: Sized + 'static {
    const LEAVES: &'static [(&'static str, Option<Getter<Self>>)];
}

macro_rules! leaves {
    (
        $(#[$smeta:meta])* $name:ident $prefix:literal $expected:literal {
            $( $(#[$meta:meta])* $field:ident : $ty:ty => $kind:ident ),* $(,)?
        }
    ) => {
        impl Leaves for $name {
            const LEAVES: &'static [(&'static str, Option<Getter<Self>>)] =
                &[$( (stringify!($field), leaves!(@ $kind $name $field)) ),*];
        }
    };
    (@ leaf $name:ident $field:ident) => {{
        const GET: Getter<$name> = |s| leaf(&s.$field);
        Some(GET)
    }};
    (@ $kind:ident $name:ident $field:ident) => {
        None
    };
}

crate::source_state_fields!(leaves);
crate::gps_fields!(leaves);
crate::gsm_fields!(leaves);

/// The index of the leaf `name` of `S`.
fn leaf_index<S: Leaves>(name: &str) -> Option<u8> {
    let i = S::LEAVES
        .iter()
        .position(|(n, get)| *n == name && get.is_some())?;
    u8::try_from(i).ok()
}

/// Reads leaf `i` of `S` (an index from [`leaf_index`]).
#[inline]
fn read_leaf<'a, S: Leaves>(s: &'a S, i: u8) -> FieldValue<'a> {
    match S::LEAVES.get(usize::from(i)) {
        Some((_, Some(get))) => get(s),
        _ => FieldValue::Absent,
    }
}

/// Reads one value of a state; `()` when absent.
pub(crate) fn state_leaf(s: &SourceState, fr: &ScriptFrame<'_>, leaf: &StateLeaf) -> Dynamic {
    match leaf_value(s, leaf) {
        FieldValue::Absent => Dynamic::UNIT,
        FieldValue::Bool(b) => Dynamic::from_bool(b),
        FieldValue::Int(i) => Dynamic::from_int(i as INT),
        FieldValue::Num(v) => Dynamic::from_float(v as FLOAT),
        FieldValue::Word(w) => INTERNED.get(w),
        FieldValue::Str(v) => Dynamic::from(ImmutableString::from(v)),
        FieldValue::Time(t) => fr.time(Some(t)),
        // Whole arrays and points are not leaves.
        FieldValue::Bits(_) | FieldValue::Point(..) => Dynamic::UNIT,
    }
}

/// One value of a state, borrowed: what [`state_leaf`] gives rules and [`changed`]
/// compares.
#[inline]
fn leaf_value<'a>(s: &'a SourceState, leaf: &StateLeaf) -> FieldValue<'a> {
    use FieldValue as F;
    use StateLeaf as L;
    let num = |v: Option<f64>| v.map_or(F::Absent, F::Num);
    let boolean = |v: Option<bool>| v.map_or(F::Absent, F::Bool);
    let gps = s.gps.as_ref();
    let bit = |bits: &Option<Bits>, i: i64| {
        boolean(
            usize::try_from(i)
                .ok()
                .and_then(|i| bits.as_ref().and_then(|b| b.get(i).copied())),
        )
    };
    let additional =
        |name: &ImmutableString| s.additional.as_ref().and_then(|a| a.get(name.as_str()));
    match leaf {
        L::Top(i) => read_leaf(s, *i),
        L::Gps(i) => gps.map_or(F::Absent, |g| read_leaf(g, *i)),
        L::Gsm(i) => s.gsm.as_ref().map_or(F::Absent, |g| read_leaf(g, *i)),
        L::GpsLat => num(gps.and_then(|g| g.location).map(|l| l.lat)),
        L::GpsLng => num(gps.and_then(|g| g.location).map(|l| l.lng)),
        L::Input(i) => bit(&s.inputs, *i),
        L::Output(i) => bit(&s.outputs, *i),
        L::AdditionalValue(name) => additional(name)
            .and_then(|f| f.value.as_deref())
            .map_or(F::Absent, F::Str),
        L::AdditionalUpdated(name) => additional(name)
            .and_then(|f| f.updated)
            .map_or(F::Absent, F::Time),
    }
}

/// An object of a state, which `== ()` tests for presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StateObject {
    State,
    Gps,
    Location,
    Gsm,
    Inputs,
    Outputs,
    Additional,
    AdditionalField(ImmutableString),
}

/// Whether an object of a state is there.
pub(crate) fn state_present(s: Option<&SourceState>, object: &StateObject) -> bool {
    let Some(s) = s else {
        return false;
    };
    match object {
        StateObject::State => true,
        StateObject::Gps => s.gps.is_some(),
        StateObject::Location => s.gps.as_ref().and_then(|g| g.location).is_some(),
        StateObject::Gsm => s.gsm.is_some(),
        StateObject::Inputs => s.inputs.is_some(),
        StateObject::Outputs => s.outputs.is_some(),
        StateObject::Additional => s.additional.is_some(),
        StateObject::AdditionalField(name) => s
            .additional
            .as_ref()
            .is_some_and(|a| a.contains_key(name.as_str())),
    }
}

/// A tracker property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrackerLeaf {
    Id,
    SourceId,
    Label,
    GroupId,
    Lifecycle,
    Online,
    LastDataAt,
    /// Navixy's group title (none for the default group).
    Group,
    /// Navixy's tag names.
    Tags,
    /// The employee Navixy assigns to the tracker: `{id, name, phone}`.
    Driver,
    /// The name of the tracker's source (`sources:`), its alerts' `source` label.
    Source,
}

impl TrackerLeaf {
    pub const ALL: [(&'static str, TrackerLeaf); 11] = [
        ("id", TrackerLeaf::Id),
        ("source_id", TrackerLeaf::SourceId),
        ("label", TrackerLeaf::Label),
        ("group_id", TrackerLeaf::GroupId),
        ("lifecycle", TrackerLeaf::Lifecycle),
        ("online", TrackerLeaf::Online),
        ("last_data_at", TrackerLeaf::LastDataAt),
        ("group", TrackerLeaf::Group),
        ("tags", TrackerLeaf::Tags),
        ("driver", TrackerLeaf::Driver),
        ("source", TrackerLeaf::Source),
    ];

    pub fn named(name: &str) -> Option<TrackerLeaf> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, l)| *l)
    }
}

pub(crate) fn tracker_leaf(fr: &ScriptFrame<'_>, leaf: TrackerLeaf) -> Dynamic {
    let t = fr.tracker;
    let navixy = &fr.navixy.context;
    match leaf {
        TrackerLeaf::Id => Dynamic::from_int(t.info.id),
        TrackerLeaf::Source => {
            Dynamic::from(ImmutableString::from(fr.around.source_name(t.info.source)))
        }
        TrackerLeaf::SourceId => opt_int(t.info.source_id),
        TrackerLeaf::Label => opt_str(t.info.label.as_deref()),
        TrackerLeaf::GroupId => opt_int(t.info.group_id),
        TrackerLeaf::Lifecycle => INTERNED.get(t.lifecycle.as_str()),
        TrackerLeaf::Online => Dynamic::from_bool(t.online),
        TrackerLeaf::LastDataAt => opt_int(t.last_data_at.map(|t| t.timestamp())),
        TrackerLeaf::Group => opt_str(navixy.group_title(t.info.group_id)),
        TrackerLeaf::Tags => Dynamic::from_array(
            navixy
                .tracker_tags(t.info.id)
                .into_iter()
                .map(|tag| Dynamic::from(ImmutableString::from(tag)))
                .collect(),
        ),
        TrackerLeaf::Driver => navixy.driver(t.info.id).map_or(Dynamic::UNIT, |d| {
            let mut map = rhai::Map::new();
            map.insert("id".into(), Dynamic::from_int(d.id));
            map.insert(
                "name".into(),
                Dynamic::from(ImmutableString::from(d.name.as_str())),
            );
            map.insert("phone".into(), opt_str(d.phone.as_deref()));
            Dynamic::from_map(map)
        }),
    }
}

/// The fields of a reading (`readings.<name>.<field>`).
pub(crate) const READING_FIELDS: [&str; 12] = [
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
];

/// The fields of an iot attribute (`iot.<name>.<field>`).
pub(crate) const IOT_FIELDS: [&str; 3] = ["value", "msg_time", "srv_time"];

/// A JSON scalar as Rhai reads it: null is `()`, numbers are INT or FLOAT.
pub(crate) fn json_to_dynamic(v: &serde_json::Value) -> Dynamic {
    match v {
        serde_json::Value::Null => Dynamic::UNIT,
        serde_json::Value::Bool(b) => Dynamic::from_bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            None => n.as_f64().map_or(Dynamic::UNIT, Dynamic::from_float),
        },
        serde_json::Value::String(s) => Dynamic::from(ImmutableString::from(s.as_str())),
        other => rhai::serde::to_dynamic(other).unwrap_or(Dynamic::UNIT),
    }
}

/// Like [`json_to_dynamic`], but a string holding a number (iot_monitor sends
/// `"262.9138"`) reads as that number.
pub(crate) fn json_to_number_or_dynamic(v: &serde_json::Value) -> Dynamic {
    if let serde_json::Value::String(s) = v
        && let Ok(f) = s.trim().parse::<f64>()
    {
        return Dynamic::from_float(f);
    }
    json_to_dynamic(v)
}

/// One reading of any kind, found by the name rules use.
pub(crate) enum Reading<'a> {
    Input(&'a crate::navixy::messages::SensorInput),
    State(&'a crate::navixy::messages::StateValue),
    Virtual(&'a crate::navixy::messages::VirtualSensor),
    Counter(&'a crate::navixy::messages::Counter),
}

/// Metering sensors by name first, then state fields, virtual sensors by label, counters
/// by type.
pub(crate) fn find_reading<'a>(r: &'a Readings, name: &str) -> Option<Reading<'a>> {
    if let Some(x) = r.inputs.get(name) {
        return Some(Reading::Input(x));
    }
    if let Some(x) = r.states.get(name) {
        return Some(Reading::State(x));
    }
    if let Some(x) = r.virtual_sensors.get(name) {
        return Some(Reading::Virtual(x));
    }
    r.counters.get(name).map(Reading::Counter)
}

/// Reads one field of a reading; `()` when the reading or the field is absent.
pub(crate) fn reading_field(name: &str, field: &str) -> Dynamic {
    with(|frame| frame.map_or(Dynamic::UNIT, |fr| reading_field_in(fr, name, field)))
}

pub(crate) fn reading_field_in(fr: &ScriptFrame<'_>, name: &str, field: &str) -> Dynamic {
    {
        let Some(reading) = find_reading(&fr.tracker.readings, name) else {
            return Dynamic::UNIT;
        };
        match (reading, field) {
            (Reading::Input(x), "value") => opt_float(x.value),
            (Reading::Input(x), "converted_value") => opt_float(x.converted_value),
            (Reading::Input(x), "min_value") => opt_float(x.min_value),
            (Reading::Input(x), "max_value") => opt_float(x.max_value),
            (Reading::Input(x), "units") => opt_str(x.units.as_deref()),
            (Reading::Input(x), "units_type") => opt_str(x.units_type.as_deref()),
            (Reading::Input(x), "label") => opt_str(x.label.as_deref()),
            (Reading::Input(x), "name") => opt_str(x.name.as_deref()),
            (Reading::Input(x), "type") => opt_str(x.kind.as_deref()),
            (Reading::Input(x), "sensor_id") => opt_int(x.sensor_id),
            (Reading::Input(x), "update_time") => fr.time(x.update_time),
            (Reading::State(x), "value") => json_to_dynamic(&x.value),
            (Reading::State(x), "name" | "field") => opt_str(x.field.as_deref()),
            (Reading::State(x), "update_time") => fr.time(x.update_time),
            (Reading::Virtual(x), "value") => json_to_dynamic(&x.value),
            (Reading::Virtual(x), "label" | "name") => opt_str(x.label.as_deref()),
            (Reading::Virtual(x), "type") => opt_str(x.kind.as_deref()),
            (Reading::Virtual(x), "sensor_id") => opt_int(x.sensor_id),
            (Reading::Virtual(x), "update_time") => fr.time(x.update_time),
            (Reading::Counter(x), "value") => opt_float(x.value),
            (Reading::Counter(x), "type" | "name") => opt_str(x.kind.as_deref()),
            (Reading::Counter(x), "update_time") => fr.time(x.update_time),
            _ => Dynamic::UNIT,
        }
    }
}

/// Reads one field of an iot_monitor attribute.
pub(crate) fn iot_field(name: &str, field: &str) -> Dynamic {
    with(|frame| frame.map_or(Dynamic::UNIT, |fr| iot_field_in(fr, name, field)))
}

pub(crate) fn iot_field_in(fr: &ScriptFrame<'_>, name: &str, field: &str) -> Dynamic {
    match fr.tracker.iot.get(name) {
        None => Dynamic::UNIT,
        Some(v) => match field {
            "value" => json_to_number_or_dynamic(&v.value),
            "msg_time" => fr.time(v.msg_time),
            "srv_time" => fr.time(v.srv_time),
            _ => Dynamic::UNIT,
        },
    }
}

/// A state field named by a path, for `changed("...")`: `ignition`, `gps.speed`,
/// `gps.location`, `inputs`, `inputs[2]`, `additional.event_code`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FieldPath {
    Leaf(StateLeaf),
    Inputs,
    Outputs,
    Location,
}

impl FieldPath {
    /// Parses a path; `None` when it names no field.
    pub fn parse(path: &str) -> Option<FieldPath> {
        // `inputs[2]` and `inputs.2` are the same path.
        let normalized;
        let path = if path.contains('[') {
            normalized = path.replace('[', ".").replace(']', "");
            normalized.as_str()
        } else {
            path
        };
        let (head, rest) = match path.split_once('.') {
            Some((h, r)) => (h, Some(r)),
            None => (path, None),
        };
        let index = |i: &str| i.parse::<i64>().ok().filter(|i| *i >= 0);
        Some(match (head, rest) {
            ("inputs", None) => FieldPath::Inputs,
            ("outputs", None) => FieldPath::Outputs,
            ("inputs", Some(i)) => FieldPath::Leaf(StateLeaf::Input(index(i)?)),
            ("outputs", Some(i)) => FieldPath::Leaf(StateLeaf::Output(index(i)?)),
            ("gps", Some("location")) => FieldPath::Location,
            ("gps", Some(field)) => match field.strip_prefix("location.") {
                Some(f) => FieldPath::Leaf(StateLeaf::location(f)?),
                None => FieldPath::Leaf(StateLeaf::gps(field)?),
            },
            ("gsm", Some(field)) => FieldPath::Leaf(StateLeaf::gsm(field)?),
            ("additional", Some(name)) => {
                let name = name.strip_suffix(".value").unwrap_or(name);
                if name.is_empty() || name.contains('.') {
                    return None;
                }
                FieldPath::Leaf(StateLeaf::AdditionalValue(name.into()))
            }
            (field, None) => FieldPath::Leaf(StateLeaf::top(field)?),
            _ => return None,
        })
    }
}

/// A field's value for comparison, borrowed from the state (no allocation).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FieldValue<'a> {
    Absent,
    Bool(bool),
    Int(i64),
    Num(f64),
    /// A value of an enumeration (`movement_status`): rules get it interned.
    Word(&'static str),
    Str(&'a str),
    Time(NavixyTime),
    Bits(&'a [bool]),
    Point(f64, f64),
}

/// Whether `path` names a state field `changed` can compare.
pub(crate) fn is_field_path(path: &str) -> bool {
    FieldPath::parse(path).is_some()
}

/// The value at `path` in a state.
pub(crate) fn field_value<'a>(s: &'a SourceState, path: &FieldPath) -> FieldValue<'a> {
    use FieldValue as F;
    match path {
        FieldPath::Inputs => s.inputs.as_deref().map_or(F::Absent, F::Bits),
        FieldPath::Outputs => s.outputs.as_deref().map_or(F::Absent, F::Bits),
        FieldPath::Location => s
            .gps
            .as_ref()
            .and_then(|g| g.location)
            .map_or(F::Absent, |l| F::Point(l.lat, l.lng)),
        FieldPath::Leaf(leaf) => leaf_value(s, leaf),
    }
}

/// Whether the latest state update changed the field at `path` (false on the first).
pub(crate) fn changed(tracker: &TrackerState, path: &FieldPath) -> bool {
    match (tracker.current.as_deref(), tracker.prev.as_deref()) {
        (Some(cur), Some(prev)) => field_value(cur, path) != field_value(prev, path),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths() {
        assert!(is_field_path("ignition"));
        assert!(is_field_path("gps.speed"));
        assert!(is_field_path("inputs[2]"));
        assert!(is_field_path("inputs"));
        assert!(is_field_path("additional.event_code"));
        assert!(!is_field_path("ignitoin"));
        assert!(!is_field_path("gps.sped"));
        assert!(!is_field_path("inputs[x]"));
    }

    #[test]
    fn views_outside_a_frame_read_unit() {
        assert!(state_field(Which::Current, |_, _| Dynamic::from_bool(true)).is_unit());
        assert!(reading_field("lls_level_1", "value").is_unit());
    }
}
