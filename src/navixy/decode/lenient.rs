//! Field-by-field readers that never fail on a wrong type: they flag it in a [`Cx`] and
//! read on, so that one bad value costs only the batch item that holds it.
//!
//! Why not `#[derive(Deserialize)]`: serde's derive stops at the first wrong type, and the
//! parser is then in the middle of an item with no way to skip to the next one. Reading
//! every value with `deserialize_any` (the JSON parser dispatches on the next byte, so this
//! costs nothing extra) lets each reader accept what it expects and skip anything else.
//! Only JSON syntax errors stop the frame. Strings are borrowed from the frame text; keys
//! are matched without allocating; fields no one reads are skipped with `IgnoredAny`.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use compact_str::format_compact;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::navixy::messages::*;

/// Visitor methods that flag scalars as a wrong type (null is just absent): all of them,
/// or (`absent; kinds`) the listed ones, null answering `absent`, for a visitor that reads
/// the others itself.
macro_rules! wrong_scalars {
    () => {
        wrong_scalars!(None; unit none bool i64 u64 f64 str);
    };
    ($absent:expr; $($kind:ident)*) => {
        $(wrong_scalars!(@ $absent; $kind);)*
    };
    (@ $absent:expr; unit) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($absent)
        }
    };
    (@ $absent:expr; none) => {
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($absent)
        }
    };
    (@ $absent:expr; bool) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(self.wrong())
        }
    };
    (@ $absent:expr; i64) => {
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(self.wrong())
        }
    };
    (@ $absent:expr; u64) => {
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(self.wrong())
        }
    };
    (@ $absent:expr; f64) => {
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(self.wrong())
        }
    };
    (@ $absent:expr; str) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(self.wrong())
        }
    };
}

macro_rules! wrong_seq {
    () => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(self.wrong())
        }
    };
}

macro_rules! wrong_map {
    () => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(self.wrong())
        }
    };
}

/// The first wrong-typed field seen while reading one item (or one frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bad {
    pub field: &'static str,
    pub expected: &'static str,
}

/// Reading context: remembers the first wrong type, and which source-state keys to skip.
#[derive(Debug, Default)]
pub struct Cx {
    bad: Cell<Option<Bad>>,
    /// Bit i set: field i of `SourceState::FIELDS` is skipped unread.
    skip_state: u32,
}

impl Cx {
    pub fn skipping(skip_state: u32) -> Cx {
        Cx {
            bad: Cell::new(None),
            skip_state,
        }
    }

    pub fn flag(&self, field: &'static str, expected: &'static str) {
        if self.bad.get().is_none() {
            self.bad.set(Some(Bad { field, expected }));
        }
    }

    pub fn bad(&self) -> Option<Bad> {
        self.bad.get()
    }

    pub fn take(&self) -> Option<Bad> {
        self.bad.take()
    }
}

/// A value read leniently: `Ok(None)` for null, absent or wrong type (then flagged).
pub trait Lenient<'de>: Sized {
    fn read<D: Deserializer<'de>>(
        d: D,
        cx: &Cx,
        field: &'static str,
    ) -> Result<Option<Self>, D::Error>;
}

/// Seed that reads a `T` leniently (for `next_value_seed` / `next_element_seed`).
pub struct Seed<'a, T> {
    cx: &'a Cx,
    field: &'static str,
    _t: PhantomData<T>,
}

impl<'a, T> Seed<'a, T> {
    pub fn new(cx: &'a Cx, field: &'static str) -> Self {
        Seed {
            cx,
            field,
            _t: PhantomData,
        }
    }
}

impl<'de, T: Lenient<'de>> DeserializeSeed<'de> for Seed<'_, T> {
    type Value = Option<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        T::read(d, self.cx, self.field)
    }
}

/// Reads the value of the current map entry as a `T`.
pub fn value<'de, A: MapAccess<'de>, T: Lenient<'de>>(
    map: &mut A,
    cx: &Cx,
    field: &'static str,
) -> Result<Option<T>, A::Error> {
    map.next_value_seed(Seed::<T>::new(cx, field))
}

/// Skips the value of the current map entry.
pub fn skip<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    map.next_value::<IgnoredAny>().map(|_| ())
}

/// A map key or string, borrowed from the frame unless it had escapes.
pub struct Key<'de>(pub Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Any JSON value, reduced to what a scalar field needs; arrays and objects are skipped.
pub enum Scalar<'de> {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(Cow<'de, str>),
    Compound,
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::I64(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::U64(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::F64(v))
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Compound)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Compound)
    }
}

/// Scalars convert from a [`Scalar`]; `Err(())` is a wrong type.
pub(super) trait FromScalar<'de>: Sized {
    const EXPECTED: &'static str;
    fn from_scalar(s: Scalar<'de>) -> Result<Self, ()>;
}

macro_rules! lenient_scalar {
    ($($t:ty),*) => {$(
        impl<'de> Lenient<'de> for $t {
            fn read<D: Deserializer<'de>>(d: D, cx: &Cx, field: &'static str) -> Result<Option<Self>, D::Error> {
                match Scalar::deserialize(d)? {
                    Scalar::Null => Ok(None),
                    s => match <$t as FromScalar>::from_scalar(s) {
                        Ok(v) => Ok(Some(v)),
                        Err(()) => {
                            cx.flag(field, <$t as FromScalar>::EXPECTED);
                            Ok(None)
                        }
                    },
                }
            }
        }
    )*};
}

use serde::Deserialize as _;

impl FromScalar<'_> for f64 {
    const EXPECTED: &'static str = "a number";
    fn from_scalar(s: Scalar<'_>) -> Result<Self, ()> {
        match s {
            Scalar::F64(v) => Ok(v),
            Scalar::I64(v) => Ok(v as f64),
            Scalar::U64(v) => Ok(v as f64),
            _ => Err(()),
        }
    }
}

impl FromScalar<'_> for i64 {
    const EXPECTED: &'static str = "an integer";
    fn from_scalar(s: Scalar<'_>) -> Result<Self, ()> {
        match s {
            Scalar::I64(v) => Ok(v),
            Scalar::U64(v) => i64::try_from(v).map_err(|_| ()),
            // `10284.0`: an id written by a tool that only knows doubles.
            Scalar::F64(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => Ok(v as i64),
            _ => Err(()),
        }
    }
}

impl FromScalar<'_> for bool {
    const EXPECTED: &'static str = "true or false";
    fn from_scalar(s: Scalar<'_>) -> Result<Self, ()> {
        match s {
            Scalar::Bool(v) => Ok(v),
            _ => Err(()),
        }
    }
}

impl FromScalar<'_> for Text {
    const EXPECTED: &'static str = "a string";
    fn from_scalar(s: Scalar<'_>) -> Result<Self, ()> {
        match s {
            Scalar::Str(v) => Ok(Text::from(&*v)),
            _ => Err(()),
        }
    }
}

/// Times have their own visitor: a state holds nine of them, and going straight from the
/// borrowed text to the parser is measurably faster than through [`Scalar`].
impl<'de> Lenient<'de> for NavixyTime {
    fn read<D: Deserializer<'de>>(
        d: D,
        cx: &Cx,
        field: &'static str,
    ) -> Result<Option<Self>, D::Error> {
        struct V<'a> {
            cx: &'a Cx,
            field: &'static str,
        }
        impl V<'_> {
            fn wrong(&self) -> Option<NavixyTime> {
                self.cx
                    .flag(self.field, "a time (yyyy-MM-dd HH:mm:ss or ISO-8601)");
                None
            }
        }
        impl<'de> Visitor<'de> for V<'_> {
            type Value = Option<NavixyTime>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a time")
            }
            wrong_scalars!(None; unit none bool i64 u64 f64);
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(match NavixyTime::parse(s) {
                    Some(t) => Some(t),
                    None => self.wrong(),
                })
            }
            wrong_seq!();
            wrong_map!();
        }
        d.deserialize_any(V { cx, field })
    }
}

/// Status words: unknown words are `Other`, not errors (Navixy adds statuses).
macro_rules! status_scalar {
    ($t:ty, $expected:literal, { $($word:literal => $variant:expr),* $(,)? }) => {
        impl FromScalar<'_> for $t {
            const EXPECTED: &'static str = $expected;
            fn from_scalar(s: Scalar<'_>) -> Result<Self, ()> {
                match s {
                    Scalar::Str(v) => Ok(match &*v {
                        $($word => $variant,)*
                        _ => <$t>::Other,
                    }),
                    _ => Err(()),
                }
            }
        }
    };
}

status_scalar!(ConnectionStatus, "a connection status", {
    "active" => ConnectionStatus::Active,
    "idle" => ConnectionStatus::Idle,
    "offline" => ConnectionStatus::Offline,
    "signal_lost" => ConnectionStatus::SignalLost,
    "just_registered" => ConnectionStatus::JustRegistered,
    "just_replaced" => ConnectionStatus::JustReplaced,
});

status_scalar!(MovementStatus, "a movement status", {
    "moving" => MovementStatus::Moving,
    "stopped" => MovementStatus::Stopped,
    "parked" => MovementStatus::Parked,
});

status_scalar!(LifecycleKind, "a lifecycle event", {
    "block" => LifecycleKind::Block,
    "unblock" => LifecycleKind::Unblock,
    "corrupt" => LifecycleKind::Corrupt,
});

lenient_scalar!(
    f64,
    i64,
    bool,
    Text,
    ConnectionStatus,
    MovementStatus,
    LifecycleKind
);

/// A `value` of `additional`: documented as a string; numbers and booleans are kept as
/// their text rather than rejected.
pub struct TextLike(pub Text);

impl<'de> Lenient<'de> for TextLike {
    fn read<D: Deserializer<'de>>(
        d: D,
        cx: &Cx,
        field: &'static str,
    ) -> Result<Option<Self>, D::Error> {
        Ok(match text_like(Scalar::deserialize(d)?) {
            Ok(text) => text.map(TextLike),
            Err(()) => {
                cx.flag(field, "a string");
                None
            }
        })
    }
}

/// A scalar as [`TextLike`] keeps it: `None` for null, `Err(())` for an array or object.
pub(super) fn text_like(s: Scalar<'_>) -> Result<Option<Text>, ()> {
    Ok(match s {
        Scalar::Null => None,
        Scalar::Str(s) => Some(Text::from(&*s)),
        // Written by `Display`, as `to_string` would.
        Scalar::Bool(b) => Some(format_compact!("{b}")),
        Scalar::I64(v) => Some(format_compact!("{v}")),
        Scalar::U64(v) => Some(format_compact!("{v}")),
        Scalar::F64(v) => Some(format_compact!("{v}")),
        Scalar::Compound => return Err(()),
    })
}

/// Any JSON value, kept whole (sensor state values, iot values).
impl<'de> Lenient<'de> for serde_json::Value {
    fn read<D: Deserializer<'de>>(d: D, _: &Cx, _: &'static str) -> Result<Option<Self>, D::Error> {
        serde_json::Value::deserialize(d).map(Some)
    }
}

/// A JSON object read key by key into `Self`.
pub trait Fields<'de>: Default {
    const EXPECTED: &'static str;
    /// Reads the value of `key`; returns false for a key it does not know (the caller
    /// then skips the value).
    fn field<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
        cx: &Cx,
    ) -> Result<bool, A::Error>;
}

/// Reads an object's entries into `target`, skipping unknown keys.
pub fn read_fields<'de, A: MapAccess<'de>, T: Fields<'de>>(
    target: &mut T,
    map: &mut A,
    cx: &Cx,
) -> Result<(), A::Error> {
    while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
        if !target.field(&key, map, cx)? {
            skip(map)?;
        }
    }
    Ok(())
}

/// Reads an object as a `T` via its [`Fields`]; anything but an object is flagged.
struct ObjectVisitor<'a, T> {
    cx: &'a Cx,
    field: &'static str,
    _t: PhantomData<T>,
}

impl<'de, T: Fields<'de>> ObjectVisitor<'_, T> {
    fn wrong(&self) -> Option<T> {
        self.cx.flag(self.field, T::EXPECTED);
        None
    }
}

impl<'de, T: Fields<'de>> Visitor<'de> for ObjectVisitor<'_, T> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(T::EXPECTED)
    }
    wrong_scalars!();
    wrong_seq!();
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut target = T::default();
        read_fields(&mut target, &mut map, self.cx)?;
        Ok(Some(target))
    }
}

/// Objects read through their [`Fields`].
macro_rules! lenient_objects {
    ($($t:ty),* $(,)?) => {$(
        impl<'de> Lenient<'de> for $t {
            fn read<D: Deserializer<'de>>(d: D, cx: &Cx, field: &'static str) -> Result<Option<Self>, D::Error> {
                d.deserialize_any(ObjectVisitor::<$t> { cx, field, _t: PhantomData })
            }
        }
    )*};
}

lenient_objects!(
    SourceState,
    Gps,
    LocationFields,
    Gsm,
    AdditionalField,
    SensorInput,
    StateValue,
    VirtualSensor,
    Counter,
    IotValue,
    IotTrackerValues,
    IotData,
    LifecycleFields,
);

/// Reads an object into an existing `target`, without moving a large value around.
/// Yields false for null or a wrong type (flagged).
pub struct Fill<'t, 'c, T> {
    pub target: &'t mut T,
    pub cx: &'c Cx,
    pub field: &'static str,
}

impl<'de, T: Fields<'de>> DeserializeSeed<'de> for Fill<'_, '_, T> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: Fields<'de>> Fill<'_, '_, T> {
    fn wrong(&self) -> bool {
        self.cx.flag(self.field, T::EXPECTED);
        false
    }
}

impl<'de, T: Fields<'de>> Visitor<'de> for Fill<'_, '_, T> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(T::EXPECTED)
    }
    wrong_scalars!(false; unit none bool i64 u64 f64 str);
    wrong_seq!();
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        read_fields(self.target, &mut map, self.cx)?;
        Ok(true)
    }
}

struct VecVisitor<'a, T> {
    cx: &'a Cx,
    field: &'static str,
    _t: PhantomData<T>,
}

impl<T> VecVisitor<'_, T> {
    fn wrong(&self) -> Option<Vec<T>> {
        self.cx.flag(self.field, "an array");
        None
    }
}

impl<'de, T: Lenient<'de>> Visitor<'de> for VecVisitor<'_, T> {
    type Value = Option<Vec<T>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }
    wrong_scalars!();
    wrong_map!();
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // JSON gives no length: start at a size that fits Navixy's usual 8 inputs or a few
        // sensors without regrowing.
        let guess = if std::mem::size_of::<T>() <= 8 { 16 } else { 4 };
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(guess).min(64));
        while let Some(element) = seq.next_element_seed(Seed::<T>::new(self.cx, self.field))? {
            match element {
                Some(v) => out.push(v),
                // A null inside an array would shift every index after it (inputs[0] is
                // input 1), so it is a wrong type rather than a gap.
                None => self.cx.flag(self.field, "an array without nulls"),
            }
        }
        Ok(Some(out))
    }
}

impl<'de, T: Lenient<'de>> Lenient<'de> for Vec<T> {
    fn read<D: Deserializer<'de>>(
        d: D,
        cx: &Cx,
        field: &'static str,
    ) -> Result<Option<Self>, D::Error> {
        d.deserialize_any(VecVisitor {
            cx,
            field,
            _t: PhantomData,
        })
    }
}

/// `inputs`, `outputs`: an array of booleans, kept inline.
impl<'de> Lenient<'de> for Bits {
    fn read<D: Deserializer<'de>>(
        d: D,
        cx: &Cx,
        field: &'static str,
    ) -> Result<Option<Self>, D::Error> {
        Ok(Vec::<bool>::read(d, cx, field)?.map(|bits| bits.into_iter().collect()))
    }
}

struct MapVisitor<'a, K, V> {
    cx: &'a Cx,
    field: &'static str,
    _v: PhantomData<(K, V)>,
}

impl<K, V> MapVisitor<'_, K, V> {
    fn wrong(&self) -> Option<BTreeMap<K, V>> {
        self.cx.flag(self.field, "an object");
        None
    }
}

impl<'de, K: for<'k> From<&'k str> + Ord, V: Lenient<'de>> Visitor<'de> for MapVisitor<'_, K, V> {
    type Value = Option<BTreeMap<K, V>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    wrong_scalars!();
    wrong_seq!();
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if let Some(v) = value::<A, V>(&mut map, self.cx, self.field)? {
                out.insert(K::from(&*key), v);
            }
        }
        Ok(Some(out))
    }
}

impl<'de, K: for<'k> From<&'k str> + Ord, V: Lenient<'de>> Lenient<'de> for BTreeMap<K, V> {
    fn read<D: Deserializer<'de>>(
        d: D,
        cx: &Cx,
        field: &'static str,
    ) -> Result<Option<Self>, D::Error> {
        d.deserialize_any(MapVisitor {
            cx,
            field,
            _v: PhantomData,
        })
    }
}

// ---- The protocol's objects -------------------------------------------------------------

/// Each field of a table is read with the [`Lenient`] reader of its type, named in errors
/// by its prefixed name (`gps.speed`). A field whose bit is set in the struct's skip mask
/// is left to the caller, which skips it unread.
macro_rules! lenient_fields {
    (
        $(#[$smeta:meta])* $name:ident $prefix:literal $expected:literal {
            $( $(#[$meta:meta])* $field:ident : $ty:ty => $kind:ident ),* $(,)?
        }
    ) => {
        impl<'de> Fields<'de> for $name {
            const EXPECTED: &'static str = $expected;
            fn field<A: MapAccess<'de>>(
                &mut self,
                key: &str,
                m: &mut A,
                cx: &Cx,
            ) -> Result<bool, A::Error> {
                let skip = $name::skip_mask(cx);
                match key {
                    $(
                        stringify!($field) => {
                            let bit = 1u32 << const { field_index($name::FIELDS, stringify!($field)) };
                            if skip & bit != 0 {
                                return Ok(false);
                            }
                            self.$field = value(m, cx, concat!($prefix, stringify!($field)))?;
                        }
                    )*
                    _ => return Ok(false),
                }
                Ok(true)
            }
        }
    };
}

crate::source_state_fields!(lenient_fields);
crate::gps_fields!(lenient_fields);
crate::gsm_fields!(lenient_fields);

impl SourceState {
    /// The fields the caller does not want ([`crate::navixy::decode::StateFields`]).
    fn skip_mask(cx: &Cx) -> u32 {
        cx.skip_state
    }
}

impl Gps {
    fn skip_mask(_: &Cx) -> u32 {
        0
    }
}

impl Gsm {
    fn skip_mask(_: &Cx) -> u32 {
        0
    }
}

/// A position: an object read through [`LocationFields`].
impl<'de> Lenient<'de> for Location {
    fn read<D: Deserializer<'de>>(
        d: D,
        cx: &Cx,
        field: &'static str,
    ) -> Result<Option<Self>, D::Error> {
        Ok(LocationFields::read(d, cx, field)?.and_then(LocationFields::finish))
    }
}

/// `Location` needs both coordinates; one without the other is no position.
#[derive(Default)]
struct LocationFields {
    lat: Option<f64>,
    lng: Option<f64>,
}

impl LocationFields {
    fn finish(self) -> Option<Location> {
        Some(Location {
            lat: self.lat?,
            lng: self.lng?,
        })
    }
}

impl<'de> Fields<'de> for LocationFields {
    const EXPECTED: &'static str = "a location object";
    fn field<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        m: &mut A,
        cx: &Cx,
    ) -> Result<bool, A::Error> {
        match key {
            "lat" => self.lat = value(m, cx, "gps.location.lat")?,
            "lng" => self.lng = value(m, cx, "gps.location.lng")?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl<'de> Fields<'de> for AdditionalField {
    const EXPECTED: &'static str = "an object {value, updated}";
    fn field<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        m: &mut A,
        cx: &Cx,
    ) -> Result<bool, A::Error> {
        match key {
            "value" => self.value = value::<A, TextLike>(m, cx, "additional.value")?.map(|t| t.0),
            "updated" => self.updated = value(m, cx, "additional.updated")?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The objects of a readings item ([`readings_fields!`](crate::readings_fields)), each
/// field named in errors by its prefixed wire name (`inputs.type`).
macro_rules! lenient_readings {
    (@read opt $m:ident $cx:ident $name:expr) => { value($m, $cx, $name)? };
    (@read json $m:ident $cx:ident $name:expr) => { value($m, $cx, $name)?.unwrap_or_default() };
    ($(
        $(#[$smeta:meta])* $name:ident $prefix:literal $expected:literal {
            $( $(#[$meta:meta])* $field:ident $key:literal : $ty:ty => $kind:ident ),* $(,)?
        }
    )*) => {$(
        impl<'de> Fields<'de> for $name {
            const EXPECTED: &'static str = $expected;
            fn field<A: MapAccess<'de>>(
                &mut self,
                key: &str,
                m: &mut A,
                cx: &Cx,
            ) -> Result<bool, A::Error> {
                match key {
                    $( $key => self.$field = lenient_readings!(@read $kind m cx concat!($prefix, $key)), )*
                    _ => return Ok(false),
                }
                Ok(true)
            }
        }
    )*};
}

crate::readings_fields!(lenient_readings);

impl<'de> Fields<'de> for IotValue {
    const EXPECTED: &'static str = "an iot value object";
    fn field<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        m: &mut A,
        cx: &Cx,
    ) -> Result<bool, A::Error> {
        match key {
            "value" => self.value = value(m, cx, "iot.value")?.unwrap_or_default(),
            "msg_time" => self.msg_time = value(m, cx, "iot.msg_time")?,
            "srv_time" => self.srv_time = value(m, cx, "iot.srv_time")?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl<'de> Fields<'de> for IotTrackerValues {
    const EXPECTED: &'static str = "an iot_last_values object";
    fn field<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        m: &mut A,
        cx: &Cx,
    ) -> Result<bool, A::Error> {
        match key {
            "tracker_id" => self.tracker_id = value(m, cx, "iot.tracker_id")?,
            "nonnull_fields" => self.nonnull_fields = iot_fields(m, cx, "iot.nonnull_fields")?,
            "all_fields" => self.all_fields = iot_fields(m, cx, "iot.all_fields")?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

fn iot_fields<'de, A: MapAccess<'de>>(
    m: &mut A,
    cx: &Cx,
    field: &'static str,
) -> Result<BTreeMap<String, Vec<IotValue>>, A::Error> {
    Ok(value::<A, BTreeMap<String, Vec<IotValue>>>(m, cx, field)?.unwrap_or_default())
}

/// `data` of an `iot_monitor` event.
#[derive(Default)]
pub struct IotData {
    pub values: Vec<IotTrackerValues>,
}

impl<'de> Fields<'de> for IotData {
    const EXPECTED: &'static str = "an iot_monitor data object";
    fn field<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        m: &mut A,
        cx: &Cx,
    ) -> Result<bool, A::Error> {
        match key {
            "iot_last_values" => self.values = value(m, cx, "iot_last_values")?.unwrap_or_default(),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// `inputs` before the item's `type` is known: booleans (a source state) or sensor
/// objects (a readings item), told apart by the first element.
#[derive(Default)]
pub enum Inputs {
    #[default]
    Absent,
    Bools(Bits),
    Sensors(Vec<SensorInput>),
}

/// One element of an `inputs` array of unknown kind. Short-lived (one per element while
/// reading), so its size does not matter.
#[allow(clippy::large_enum_variant)]
enum InputElement {
    Bool(bool),
    Sensor(SensorInput),
}

impl<'de> Lenient<'de> for InputElement {
    fn read<D: Deserializer<'de>>(
        d: D,
        cx: &Cx,
        field: &'static str,
    ) -> Result<Option<Self>, D::Error> {
        struct V<'a> {
            cx: &'a Cx,
            field: &'static str,
        }
        impl V<'_> {
            fn wrong(&self) -> Option<InputElement> {
                self.cx.flag(self.field, "booleans or sensor objects");
                None
            }
        }
        impl<'de> Visitor<'de> for V<'_> {
            type Value = Option<InputElement>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean or a sensor object")
            }
            wrong_scalars!(None; unit i64 u64 f64 str);
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Some(InputElement::Bool(v)))
            }
            wrong_seq!();
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut sensor = SensorInput::default();
                read_fields(&mut sensor, &mut map, self.cx)?;
                Ok(Some(InputElement::Sensor(sensor)))
            }
        }
        d.deserialize_any(V { cx, field })
    }
}

impl Inputs {
    fn read<'de, A: MapAccess<'de>>(m: &mut A, cx: &Cx) -> Result<Inputs, A::Error> {
        let Some(elements) = value::<A, Vec<InputElement>>(m, cx, "inputs")? else {
            return Ok(Inputs::Absent);
        };
        let mut out = Inputs::Bools(Bits::new());
        for element in elements {
            match (&mut out, element) {
                (Inputs::Bools(b), InputElement::Bool(v)) => b.push(v),
                (Inputs::Bools(b), InputElement::Sensor(s)) if b.is_empty() => {
                    out = Inputs::Sensors(vec![s]);
                }
                (Inputs::Sensors(s), InputElement::Sensor(v)) => s.push(v),
                _ => cx.flag("inputs", "booleans or sensor objects, not both"),
            }
        }
        Ok(out)
    }
}

/// One item of `state_batch` / `readings_batch` (or the `data` of a `state` event), in
/// any of its shapes: a bare source state (documented), or tagged by `type`
/// (`source_state_event`, `readings_event`, `lifecycle_event`). The tag may come after
/// the fields, so every shape's fields are read into one place and sorted out at the end.
///
/// The source state is read straight into its final heap box: a state is half a
/// kilobyte, and moving it through return values showed up in profiles.
#[derive(Default)]
pub struct ItemFields<'de> {
    tag: Option<Cow<'de, str>>,
    /// Fields of a bare state at the item's top level, or the `state` of a
    /// `source_state_event` whose tag came first.
    top: Option<Box<SourceState>>,
    /// `state` of a `source_state_event` whose tag came later.
    nested: Option<Box<SourceState>>,
    source_id: Option<SourceId>,
    inputs: Inputs,
    lifecycle_event: Option<LifecycleKind>,
    timestamp: Option<NavixyTime>,
    tracker_id: Option<TrackerId>,
    states: Vec<StateValue>,
    virtual_sensors: Vec<VirtualSensor>,
    counters: Vec<Counter>,
}

impl<'de> Fields<'de> for ItemFields<'de> {
    const EXPECTED: &'static str = "a batch item object";
    fn field<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        m: &mut A,
        cx: &Cx,
    ) -> Result<bool, A::Error> {
        match key {
            "type" => match m.next_value::<Scalar<'de>>()? {
                Scalar::Str(tag) => self.tag = Some(tag),
                _ => cx.flag("type", "a string"),
            },
            "state" => {
                let slot = if self.tag.as_deref() == Some("source_state_event") {
                    &mut self.top
                } else {
                    &mut self.nested
                };
                let target = slot.get_or_insert_with(Box::default);
                m.next_value_seed(Fill {
                    target: &mut **target,
                    cx,
                    field: "state",
                })?;
            }
            "source_id" => self.source_id = value(m, cx, "source_id")?,
            "inputs" => {
                self.inputs = match self.tag.as_deref() {
                    // The usual wire order puts `type` first: read the right kind directly.
                    Some("readings_event") => value::<A, Vec<SensorInput>>(m, cx, "inputs")?
                        .map_or(Inputs::Absent, Inputs::Sensors),
                    Some(_) => {
                        value::<A, Bits>(m, cx, "inputs")?.map_or(Inputs::Absent, Inputs::Bools)
                    }
                    None => Inputs::read(m, cx)?,
                }
            }
            "lifecycle_event" => self.lifecycle_event = value(m, cx, "lifecycle_event")?,
            "timestamp" => self.timestamp = value(m, cx, "timestamp")?,
            "tracker_id" => self.tracker_id = value(m, cx, "tracker_id")?,
            "states" => self.states = value(m, cx, "states")?.unwrap_or_default(),
            "virtual_sensors" => {
                self.virtual_sensors = value(m, cx, "virtual_sensors")?.unwrap_or_default()
            }
            "counters" => self.counters = value(m, cx, "counters")?.unwrap_or_default(),
            _ => return self.top.get_or_insert_with(Box::default).field(key, m, cx),
        }
        Ok(true)
    }
}

/// What an item turned out to be.
pub enum ItemKind {
    State(Box<SourceState>),
    Readings(Box<ReadingsItem>),
    Lifecycle(LifecycleItem),
    Unknown(String),
}

impl ItemFields<'_> {
    /// Sorts the fields out by the item's tag (`untagged` for items without one: a bare
    /// state in `state_batch`, a bare readings object in `readings_batch`). Wrong types
    /// are flagged in `cx`.
    pub fn finish(self, cx: &Cx, untagged: &'static str) -> ItemKind {
        let ItemFields {
            tag,
            top,
            nested,
            source_id,
            inputs,
            lifecycle_event,
            timestamp,
            tracker_id,
            states,
            virtual_sensors,
            counters,
        } = self;
        match tag.as_deref().unwrap_or(untagged) {
            "source_state_event" => {
                let mut state = match (tag.is_some(), nested) {
                    (true, Some(state)) => state,
                    _ => top.unwrap_or_default(),
                };
                match inputs {
                    Inputs::Bools(b) => state.inputs = Some(b),
                    Inputs::Sensors(_) => cx.flag("inputs", "booleans"),
                    Inputs::Absent => {}
                }
                if source_id.is_some() {
                    state.source_id = source_id;
                }
                ItemKind::State(state)
            }
            "readings_event" => ItemKind::Readings(Box::new(ReadingsItem {
                tracker_id,
                timestamp,
                inputs: match inputs {
                    Inputs::Sensors(s) => s,
                    Inputs::Bools(b) if b.is_empty() => Vec::new(),
                    Inputs::Bools(_) => {
                        cx.flag("inputs", "sensor objects");
                        Vec::new()
                    }
                    Inputs::Absent => Vec::new(),
                },
                states,
                virtual_sensors,
                counters,
            })),
            "lifecycle_event" => match lifecycle_event {
                Some(kind) => ItemKind::Lifecycle(LifecycleItem {
                    source_id,
                    lifecycle_event: kind,
                    timestamp,
                }),
                None => {
                    cx.flag("lifecycle_event", "block, unblock or corrupt");
                    ItemKind::Unknown("lifecycle_event".into())
                }
            },
            other => ItemKind::Unknown(other.to_owned()),
        }
    }
}

/// `data` of a `lifecycle` event (the documented, untagged item).
#[derive(Default)]
pub struct LifecycleFields {
    source_id: Option<SourceId>,
    lifecycle_event: Option<LifecycleKind>,
    timestamp: Option<NavixyTime>,
}

impl LifecycleFields {
    pub fn finish(self, cx: &Cx) -> Option<LifecycleItem> {
        let Some(kind) = self.lifecycle_event else {
            cx.flag("lifecycle_event", "block, unblock or corrupt");
            return None;
        };
        Some(LifecycleItem {
            source_id: self.source_id,
            lifecycle_event: kind,
            timestamp: self.timestamp,
        })
    }
}

impl<'de> Fields<'de> for LifecycleFields {
    const EXPECTED: &'static str = "a lifecycle object";
    fn field<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        m: &mut A,
        cx: &Cx,
    ) -> Result<bool, A::Error> {
        match key {
            "source_id" => self.source_id = value(m, cx, "source_id")?,
            "lifecycle_event" => self.lifecycle_event = value(m, cx, "lifecycle_event")?,
            "timestamp" => self.timestamp = value(m, cx, "timestamp")?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}
