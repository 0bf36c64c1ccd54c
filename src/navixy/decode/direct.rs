//! The fast path for the frames that are nearly all of the stream: a wire `state_batch` of
//! `source_state_event` items, read straight from the text by the field tables
//! (`navixy::messages`), and a wire `readings_batch` of `readings_event` items, without
//! serde's visitors.
//!
//! It reads only what it can read exactly as the lenient decoder would, and gives up
//! (`None`) on anything else: another frame or item shape, an escape in a string, a wrong
//! type, a null in an array, a number serde_json would read by another route. The frame
//! then goes to the lenient decoder, which also names every error. So its answer is
//! either the lenient decoder's or nothing, which `tests` check on generated and mutated
//! frames. Scalars are converted by the lenient decoder's own conversions
//! ([`FromScalar`]), so a status word or an id written as `10284.0` reads the same here.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::lenient::{FromScalar, Scalar, text_like};
use crate::navixy::messages::*;
use crate::navixy::time::{FAST_LENGTHS, parse_fast};

/// `text` (trimmed, starting with `{`) as a state or readings batch, when it is one this
/// path reads.
pub(super) fn batch(text: &str, skip: u32) -> Option<Frame> {
    let mut p = Reader { text, at: 0 };
    p.eat(b'{')?;
    p.key_is("type")?;
    p.str_is("event")?;
    p.eat(b',')?;
    p.key_is("event")?;
    let event = p.str()?;
    p.eat(b',')?;
    p.key_is("data")?;
    p.eat(b'[')?;
    let frame = match event {
        "state_batch" => Frame::StateBatch {
            user_time: None,
            items: items(&mut p, |p| wire_state(p, skip).map(BatchItem::State))?,
        },
        "readings_batch" => Frame::ReadingsBatch {
            user_time: None,
            items: items(&mut p, |p| wire_readings(p).map(BatchItem::Readings))?,
        },
        _ => return None,
    };
    p.eat(b'}')?;
    p.end()?;
    Some(frame)
}

/// The items of `data`, whose `[` is read, up to and with its `]`.
fn items(
    p: &mut Reader<'_>,
    mut item: impl FnMut(&mut Reader<'_>) -> Option<BatchItem>,
) -> Option<Vec<BatchItem>> {
    let mut items = Vec::with_capacity(64);
    p.elements(|p| {
        items.push(item(p)?);
        Some(())
    })?;
    Some(items)
}

/// `{"type":"source_state_event","state":{...}}`.
fn wire_state(p: &mut Reader<'_>, skip: u32) -> Option<Box<SourceState>> {
    p.eat(b'{')?;
    p.key_is("type")?;
    p.str_is("source_state_event")?;
    p.eat(b',')?;
    p.key_is("state")?;
    let mut state = Box::<SourceState>::default();
    p.eat(b'{')?;
    state.fields(p, skip)?;
    p.eat(b'}')?;
    p.eat(b'}')?;
    Some(state)
}

/// `{"type":"readings_event",...}`: the tag first, then only the item's own keys. Any other
/// gives up: the lenient decoder reads it as a field of a bare state, which may be wrong.
fn wire_readings(p: &mut Reader<'_>) -> Option<Box<ReadingsItem>> {
    p.eat(b'{')?;
    p.key_is("type")?;
    p.str_is("readings_event")?;
    let mut item = Box::<ReadingsItem>::default();
    loop {
        match p.next()? {
            b',' => {}
            b'}' => return Some(item),
            _ => return None,
        }
        match p.key()? {
            "tracker_id" => item.tracker_id = i64::read(p)?,
            "timestamp" => item.timestamp = NavixyTime::read(p)?,
            "inputs" => item.inputs = objects(p)?,
            "states" => item.states = objects(p)?,
            "virtual_sensors" => item.virtual_sensors = objects(p)?,
            "counters" => item.counters = objects(p)?,
            _ => return None,
        }
    }
}

/// An array of objects, null as none; a null or another type inside it gives up.
fn objects<T: Direct>(p: &mut Reader<'_>) -> Option<Vec<T>> {
    if p.null()? {
        return Some(Vec::new());
    }
    p.eat(b'[')?;
    let mut out = Vec::new();
    p.elements(|p| {
        out.push(T::read(p)??);
        Some(())
    })?;
    Some(out)
}

/// A cursor over the frame text. Every reader returns `None` to give up.
struct Reader<'a> {
    text: &'a str,
    at: usize,
}

/// serde_json's powers of ten for the decimals read here: it divides the significand (below
/// 2^64) once by one of them, and so does [`Reader::number`], so both make the same bits.
/// (With serde_json's `float_roundtrip` feature they would not, and the tests would say so.)
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Whether one of the eight bytes of `x` is a quote, a backslash or a control character
/// (the bit tricks of "Bit Twiddling Hacks": a byte is zero after the xor, or below 0x20).
#[inline]
fn special(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let quote = x ^ (ONES * u64::from(b'"'));
    let backslash = x ^ (ONES * u64::from(b'\\'));
    let zero_in = |v: u64| v.wrapping_sub(ONES) & !v;
    (zero_in(quote) | zero_in(backslash) | (x.wrapping_sub(ONES * 0x20) & !x)) & HIGH != 0
}

/// Nesting deeper than this in a skipped value is left to the lenient decoder.
const MAX_DEPTH: u32 = 64;

impl<'a> Reader<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The next byte that is not whitespace, not consumed.
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        let b = self.bytes();
        while let Some(&c) = b.get(self.at) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(c);
            }
            self.at += 1;
        }
        None
    }

    /// The next byte that is not whitespace, consumed.
    #[inline]
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.at += 1;
        Some(c)
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    fn end(&mut self) -> Option<()> {
        self.peek().is_none().then_some(())
    }

    /// A string without escapes, borrowed.
    #[inline]
    fn str(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let b = self.bytes();
        let start = self.at;
        let mut end = start;
        // Eight bytes at a time up to the chunk holding the quote (or an escape).
        while let Some(chunk) = b.get(end..end + 8) {
            if special(u64::from_le_bytes(chunk.try_into().ok()?)) {
                break;
            }
            end += 8;
        }
        loop {
            match *b.get(end)? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => end += 1,
            }
        }
        let s = self.text.get(start..end)?;
        self.at = end + 1;
        Some(s)
    }

    fn str_is(&mut self, want: &str) -> Option<()> {
        (self.str()? == want).then_some(())
    }

    /// A key and its colon.
    #[inline]
    fn key(&mut self) -> Option<&'a str> {
        let key = self.str()?;
        self.eat(b':')?;
        Some(key)
    }

    fn key_is(&mut self, want: &str) -> Option<()> {
        (self.key()? == want).then_some(())
    }

    /// The entries of an object whose `{` is read, up to its `}` (not read), each given to
    /// `field` with its key.
    #[inline]
    fn fields(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        if self.peek()? == b'}' {
            return Some(());
        }
        loop {
            let key = self.key()?;
            field(self, key)?;
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// The entries of a field table's object whose `{` is read, up to its `}` (not read):
    /// each known key given to `field` as its index in `names`, unknown keys skipped.
    /// Navixy writes the keys in the table's order, leaving out absent ones, so each key
    /// is first looked for among the names after the last one read, compared in place.
    #[inline]
    fn table(
        &mut self,
        names: &[&str],
        mut field: impl FnMut(&mut Self, usize) -> Option<()>,
    ) -> Option<()> {
        if self.peek()? == b'}' {
            return Some(());
        }
        let mut next = 0;
        loop {
            let index = match (next..names.len()).find(|&i| self.key_here(names[i])) {
                Some(i) => Some(i),
                None => {
                    let key = self.key()?;
                    names.iter().position(|name| *name == key)
                }
            };
            match index {
                Some(i) => {
                    field(self, i)?;
                    next = i + 1;
                }
                None => self.skip(0)?,
            }
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// Whether `"name":` is next (no whitespace inside); consumed if so.
    #[inline]
    fn key_here(&mut self, name: &str) -> bool {
        let b = self.bytes();
        let end = self.at + name.len() + 3;
        let here = b.get(self.at..end).is_some_and(|k| {
            k[0] == b'"' && &k[1..k.len() - 2] == name.as_bytes() && k[k.len() - 2..] == *b"\":"
        });
        if here {
            self.at = end;
        }
        here
    }

    /// A time in one of Navixy's shapes (`2025-10-08T17:27:04-06:00`, `...Z`,
    /// `2018-10-17 12:51:43`), its string not scanned: the closing quote is looked for
    /// where each shape ends, and the time parser checks every byte before it, so what it
    /// reads is the whole string (no quote, escape or space inside). Consumed if read.
    #[inline]
    fn navixy_time(&mut self) -> Option<NavixyTime> {
        let b = self.bytes();
        if b.get(self.at) != Some(&b'"') {
            return None;
        }
        let start = self.at + 1;
        FAST_LENGTHS.into_iter().find_map(|len| {
            if b.get(start + len) != Some(&b'"') {
                return None;
            }
            let time = parse_fast(b.get(start..start + len)?)?;
            self.at = start + len + 1;
            Some(time)
        })
    }

    /// `null`, consumed, when it is next.
    #[inline]
    fn null(&mut self) -> Option<bool> {
        if self.peek()? != b'n' {
            return Some(false);
        }
        self.literal("null")?;
        Some(true)
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes().get(self.at..end)? == word.as_bytes()).then(|| self.at = end)
    }

    /// Any scalar, as serde_json gives it to a visitor; arrays and objects give up.
    fn scalar(&mut self) -> Option<Scalar<'a>> {
        Some(match self.peek()? {
            b'"' => Scalar::Str(Cow::Borrowed(self.str()?)),
            b't' => {
                self.literal("true")?;
                Scalar::Bool(true)
            }
            b'f' => {
                self.literal("false")?;
                Scalar::Bool(false)
            }
            b'n' => {
                self.literal("null")?;
                Scalar::Null
            }
            _ => self.number()?,
        })
    }

    /// A number read as serde_json reads it (without `float_roundtrip`): an integer as
    /// `u64` or `i64` (`-0` as `-0.0`), a decimal as its significand divided once by a
    /// power of ten. Exponents, significands past `u64` and more than 22 decimals give up.
    fn number(&mut self) -> Option<Scalar<'a>> {
        let b = self.bytes();
        let negative = b.get(self.at) == Some(&b'-');
        if negative {
            self.at += 1;
        }
        let mut significand: u64 = match *b.get(self.at)? {
            b'0' => {
                self.at += 1;
                if b.get(self.at).is_some_and(u8::is_ascii_digit) {
                    return None;
                }
                0
            }
            c @ b'1'..=b'9' => {
                self.at += 1;
                u64::from(c - b'0')
            }
            _ => return None,
        };
        while let Some(&c @ b'0'..=b'9') = b.get(self.at) {
            significand = significand
                .checked_mul(10)?
                .checked_add(u64::from(c - b'0'))?;
            self.at += 1;
        }
        match b.get(self.at) {
            Some(b'.') => {
                self.at += 1;
                let mut decimals = 0;
                while let Some(&c @ b'0'..=b'9') = b.get(self.at) {
                    significand = significand
                        .checked_mul(10)?
                        .checked_add(u64::from(c - b'0'))?;
                    decimals += 1;
                    self.at += 1;
                }
                if decimals == 0 || matches!(b.get(self.at), Some(b'e' | b'E')) {
                    return None;
                }
                let f = significand as f64 / *POW10.get(decimals)?;
                Some(Scalar::F64(if negative { -f } else { f }))
            }
            Some(b'e' | b'E') => None,
            _ if !negative => Some(Scalar::U64(significand)),
            _ => {
                let n = (significand as i64).wrapping_neg();
                Some(if n >= 0 {
                    Scalar::F64(-(significand as f64))
                } else {
                    Scalar::I64(n)
                })
            }
        }
    }

    /// Skips any value (an unknown or unwanted field).
    fn skip(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'{' if depth < MAX_DEPTH => {
                self.at += 1;
                self.fields(|p, _| p.skip(depth + 1))?;
                self.eat(b'}')
            }
            b'[' if depth < MAX_DEPTH => {
                self.at += 1;
                self.elements(|p| p.skip(depth + 1))
            }
            b'{' | b'[' => None,
            _ => self.scalar().map(drop),
        }
    }

    /// The elements of an array whose `[` is read, up to and with its `]`.
    #[inline]
    fn elements(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        if self.peek()? == b']' {
            self.at += 1;
            return Some(());
        }
        loop {
            element(self)?;
            match self.next()? {
                b',' => {}
                b']' => return Some(()),
                _ => return None,
            }
        }
    }
}

/// A field's value as the lenient decoder reads it: `Some(None)` for null, `None` to give
/// up (a wrong type included).
trait Direct: Sized {
    fn read(p: &mut Reader<'_>) -> Option<Option<Self>>;
}

/// Scalars through the lenient decoder's conversions.
macro_rules! direct_scalars {
    ($($t:ty),*) => {$(
        impl Direct for $t {
            #[inline]
            fn read(p: &mut Reader<'_>) -> Option<Option<Self>> {
                match p.scalar()? {
                    Scalar::Null => Some(None),
                    s => <$t as FromScalar>::from_scalar(s).ok().map(Some),
                }
            }
        }
    )*};
}

direct_scalars!(f64, i64, bool, Text, ConnectionStatus, MovementStatus);

impl Direct for NavixyTime {
    #[inline]
    fn read(p: &mut Reader<'_>) -> Option<Option<Self>> {
        if p.null()? {
            return Some(None);
        }
        if let Some(time) = p.navixy_time() {
            return Some(Some(time));
        }
        NavixyTime::parse(p.str()?).map(Some)
    }
}

/// `inputs`, `outputs`: booleans, no nulls.
impl Direct for Bits {
    fn read(p: &mut Reader<'_>) -> Option<Option<Self>> {
        if p.null()? {
            return Some(None);
        }
        p.eat(b'[')?;
        let mut out = Bits::new();
        p.elements(|p| {
            out.push(match p.scalar()? {
                Scalar::Bool(b) => b,
                _ => return None,
            });
            Some(())
        })?;
        Some(Some(out))
    }
}

/// Both coordinates, or no position.
impl Direct for Location {
    fn read(p: &mut Reader<'_>) -> Option<Option<Self>> {
        if p.null()? {
            return Some(None);
        }
        p.eat(b'{')?;
        let (mut lat, mut lng) = (None, None);
        p.fields(|p, key| {
            match key {
                "lat" => lat = f64::read(p)?,
                "lng" => lng = f64::read(p)?,
                _ => p.skip(0)?,
            }
            Some(())
        })?;
        p.eat(b'}')?;
        Some(lat.zip(lng).map(|(lat, lng)| Location { lat, lng }))
    }
}

/// `additional`: entries whose value is null are left out.
impl Direct for BTreeMap<Text, AdditionalField> {
    fn read(p: &mut Reader<'_>) -> Option<Option<Self>> {
        if p.null()? {
            return Some(None);
        }
        p.eat(b'{')?;
        let mut out = BTreeMap::new();
        p.fields(|p, key| {
            if let Some(field) = AdditionalField::read(p)? {
                out.insert(Text::from(key), field);
            }
            Some(())
        })?;
        p.eat(b'}')?;
        Some(Some(out))
    }
}

impl Direct for AdditionalField {
    fn read(p: &mut Reader<'_>) -> Option<Option<Self>> {
        if p.null()? {
            return Some(None);
        }
        p.eat(b'{')?;
        let mut field = AdditionalField::default();
        p.fields(|p, key| {
            match key {
                "value" => field.value = text_like(p.scalar()?).ok()?,
                "updated" => field.updated = NavixyTime::read(p)?,
                _ => p.skip(0)?,
            }
            Some(())
        })?;
        p.eat(b'}')?;
        Some(Some(field))
    }
}

/// A sensor state's or virtual sensor's `value`: any scalar, kept as serde_json keeps it.
impl Direct for serde_json::Value {
    fn read(p: &mut Reader<'_>) -> Option<Option<Self>> {
        Some(Some(match p.scalar()? {
            Scalar::Null => serde_json::Value::Null,
            Scalar::Bool(b) => serde_json::Value::Bool(b),
            Scalar::Str(s) => serde_json::Value::String(s.into_owned()),
            Scalar::U64(n) => serde_json::Value::from(n),
            Scalar::I64(n) => serde_json::Value::from(n),
            Scalar::F64(f) => serde_json::Value::from(f),
            Scalar::Compound => return None,
        }))
    }
}

/// The objects of a readings item ([`readings_fields!`](crate::readings_fields)), read as
/// the lenient decoder reads them (an unknown key skipped), by [`Reader::table`].
macro_rules! direct_readings {
    (@read opt $p:ident) => { Direct::read($p)? };
    (@read json $p:ident) => { serde_json::Value::read($p)?.unwrap_or_default() };
    ($(
        $(#[$smeta:meta])* $name:ident $prefix:literal $expected:literal {
            $( $(#[$meta:meta])* $field:ident $key:literal : $ty:ty => $kind:ident ),* $(,)?
        }
    )*) => {$(
        impl Direct for $name {
            fn read(p: &mut Reader<'_>) -> Option<Option<Self>> {
                const KEYS: &[&str] = &[$($key),*];
                if p.null()? {
                    return Some(None);
                }
                p.eat(b'{')?;
                let mut out = $name::default();
                p.table(KEYS, |p, index| {
                    $(
                        if index == const { field_index(KEYS, $key) } as usize {
                            out.$field = direct_readings!(@read $kind p);
                            return Some(());
                        }
                    )*
                    None
                })?;
                p.eat(b'}')?;
                Some(Some(out))
            }
        }
    )*};
}

crate::readings_fields!(direct_readings);

/// The objects of the field tables: each field read by its type's [`Direct`], a field
/// whose bit is set in the skip mask skipped, unknown keys skipped.
macro_rules! direct_fields {
    (
        $(#[$smeta:meta])* $name:ident $prefix:literal $expected:literal {
            $( $(#[$meta:meta])* $field:ident : $ty:ty => $kind:ident ),* $(,)?
        }
    ) => {
        impl $name {
            /// The entries of the object whose `{` is read, up to its `}` (not read).
            #[inline]
            fn fields(&mut self, p: &mut Reader<'_>, skip: u32) -> Option<()> {
                p.table($name::FIELDS, |p, index| {
                    if skip & (1 << index) != 0 {
                        return p.skip(0);
                    }
                    $(
                        if index == const { field_index($name::FIELDS, stringify!($field)) } as usize {
                            self.$field = <$ty as Direct>::read(p)?;
                            return Some(());
                        }
                    )*
                    p.skip(0)
                })
            }
        }

        impl Direct for $name {
            fn read(p: &mut Reader<'_>) -> Option<Option<Self>> {
                if p.null()? {
                    return Some(None);
                }
                p.eat(b'{')?;
                let mut out = $name::default();
                out.fields(p, 0)?;
                p.eat(b'}')?;
                Some(Some(out))
            }
        }
    };
}

crate::source_state_fields!(direct_fields);
crate::gps_fields!(direct_fields);
crate::gsm_fields!(direct_fields);

#[cfg(test)]
mod tests;
