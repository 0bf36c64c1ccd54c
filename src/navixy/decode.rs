//! Turns one text frame into a [`Frame`], tolerantly and fast.
//!
//! A frame that is not JSON, has a wrong field type or is too large is an error of a
//! [`DecodeErrorKind`] that the caller counts; it never panics and never ends the stream.
//! Inside a batch, a wrong type costs only its item ([`BatchItem::Invalid`]).
//!
//! A wire `state_batch` of source states, nearly all of the stream, is first read by
//! [`direct`], straight from the text; a frame it does not read exactly as the lenient
//! decoder would is left to the lenient decoder, which reads every frame and names every
//! error. That one streams the frame once: it reads `type` and `event` as they come and,
//! when `event` precedes `data` (as Navixy sends it), decodes `data` straight into the
//! typed structs; otherwise it keeps `data` as raw text and decodes it at the end. Its
//! field readers live in [`lenient`]: they borrow strings, parse times without allocating,
//! and skip what they do not know without building values.

mod direct;
mod lenient;

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use self::lenient::{
    Bad, Cx, Fill, IotData, ItemFields, ItemKind, Key, Lenient, LifecycleFields, Scalar, Seed,
};
use super::messages::*;
use crate::text::truncate;

/// Frames larger than this are refused unless the caller sets its own limit (the config's
/// `max_frame_bytes` has the same default).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Why a frame could not be decoded; the caller counts errors by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecodeErrorKind {
    /// Not JSON at all.
    Malformed,
    /// JSON, but a field has the wrong type (e.g. speed as a string).
    WrongType,
    /// Larger than the configured maximum.
    Oversized,
    /// JSON without `type`/`event`, or of a shape no Navixy frame has.
    UnknownShape,
}

impl DecodeErrorKind {
    /// Every kind, for reports that list them all.
    pub const ALL: [DecodeErrorKind; 4] = [
        DecodeErrorKind::Malformed,
        DecodeErrorKind::WrongType,
        DecodeErrorKind::Oversized,
        DecodeErrorKind::UnknownShape,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DecodeErrorKind::Malformed => "malformed",
            DecodeErrorKind::WrongType => "wrong_type",
            DecodeErrorKind::Oversized => "oversized",
            DecodeErrorKind::UnknownShape => "unknown_shape",
        }
    }

    /// Position in [`DecodeErrorKind::ALL`], for counters kept in an array.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    pub message: String,
}

impl DecodeError {
    pub fn new(kind: DecodeErrorKind, message: impl Into<String>) -> Self {
        DecodeError {
            kind,
            message: message.into(),
        }
    }

    fn wrong_type(bad: Bad) -> Self {
        DecodeError::new(
            DecodeErrorKind::WrongType,
            format!("`{}` is not {}", bad.field, bad.expected),
        )
    }
}

/// The source-state fields to decode; the others are skipped without being parsed.
///
/// Decoding every field of a full state costs about twice as much as decoding the few a
/// rule set reads (`additional` alone is five allocations), so a caller that knows what its
/// rules read can say so. `source_id` is always decoded: routing needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateFields {
    /// Bit i set: field i of [`StateFields::NAMES`] is skipped.
    skip: u32,
}

impl StateFields {
    /// Every field (the default).
    pub const ALL: StateFields = StateFields { skip: 0 };

    /// The top-level keys of a source state, in the order of the protocol table.
    pub const NAMES: &'static [&'static str] = SourceState::FIELDS;

    fn bit(name: &str) -> Option<u32> {
        Self::NAMES.iter().position(|n| *n == name).map(|i| 1 << i)
    }

    /// Only the named top-level fields (`gps`, `ignition`, `additional`, ...), plus
    /// `source_id`. An unknown name is an error naming it.
    pub fn only<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<StateFields, String> {
        let mut keep = 1u32 << field_index(Self::NAMES, "source_id");
        for name in names {
            keep |= Self::bit(name).ok_or_else(|| {
                format!(
                    "`{name}` is not a source state field (one of: {})",
                    Self::NAMES.join(", ")
                )
            })?;
        }
        Ok(StateFields {
            skip: !keep & ((1 << Self::NAMES.len()) - 1),
        })
    }

    /// Whether the named field is decoded.
    pub fn decodes(&self, name: &str) -> bool {
        Self::bit(name).is_some_and(|bit| self.skip & bit == 0)
    }
}

impl Default for StateFields {
    fn default() -> Self {
        StateFields::ALL
    }
}

/// How frames are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Larger frames are [`DecodeErrorKind::Oversized`].
    pub max_frame_bytes: usize,
    pub state_fields: StateFields,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            state_fields: StateFields::ALL,
        }
    }
}

/// Decodes one server frame (at most [`DEFAULT_MAX_FRAME_BYTES`], every field).
pub fn decode_frame(text: &str) -> Result<Frame, DecodeError> {
    decode_frame_with(text, &DecodeOptions::default())
}

/// Decodes one server frame of at most `max_bytes`.
pub fn decode_frame_limited(text: &str, max_bytes: usize) -> Result<Frame, DecodeError> {
    decode_frame_with(
        text,
        &DecodeOptions {
            max_frame_bytes: max_bytes,
            ..DecodeOptions::default()
        },
    )
}

/// Decodes one server frame with `options`.
pub fn decode_frame_with(text: &str, options: &DecodeOptions) -> Result<Frame, DecodeError> {
    let max_bytes = options.max_frame_bytes;
    if text.len() > max_bytes {
        return Err(DecodeError::new(
            DecodeErrorKind::Oversized,
            format!("{} bytes, more than the limit of {max_bytes}", text.len()),
        ));
    }
    let t = text.trim();
    if t == "X" {
        return Ok(Frame::Heartbeat);
    }
    if !t.starts_with('{') {
        return decode_not_an_object(t);
    }
    let skip = options.state_fields.skip;
    if let Some(frame) = direct::batch(t, skip) {
        return Ok(frame);
    }
    decode_object(t, skip)
}

/// A frame that is a JSON object, through the lenient decoder (serde_json's parser).
fn decode_object(t: &str, skip: u32) -> Result<Frame, DecodeError> {
    let mut de = serde_json::Deserializer::from_str(t);
    let envelope = de
        .deserialize_map(EnvelopeVisitor { skip })
        .map_err(json_error)?;
    de.end().map_err(json_error)?;
    envelope.into_frame(t, skip)
}

/// Parses a saved `tracker/list` response (`{"success":true,"list":[...]}`).
pub fn decode_tracker_list(text: &str) -> Result<TrackerList, DecodeError> {
    let list: TrackerList = serde_json::from_str(text).map_err(json_error)?;
    if list.success == Some(false) {
        let why = list
            .status
            .as_ref()
            .and_then(|s| s.description.clone())
            .unwrap_or_else(|| "no description".into());
        return Err(DecodeError::new(
            DecodeErrorKind::UnknownShape,
            format!("tracker/list failed: {why}"),
        ));
    }
    Ok(list)
}

/// The Atmosphere handshake, or a JSON value that is not an object, or garbage.
fn decode_not_an_object(t: &str) -> Result<Frame, DecodeError> {
    if let Some(frame) = decode_handshake(t) {
        return Ok(frame);
    }
    if serde_json::from_str::<IgnoredAny>(t).is_ok() {
        return Err(DecodeError::new(
            DecodeErrorKind::UnknownShape,
            "JSON that is not an object",
        ));
    }
    Err(DecodeError::new(DecodeErrorKind::Malformed, "not JSON"))
}

/// `<tracking-uuid>|<heartbeat ms>|<padding>|`.
fn decode_handshake(t: &str) -> Option<Frame> {
    let mut parts = t.split('|');
    let id = parts.next()?;
    let ms = parts.next()?;
    let id_ok = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !id_ok {
        return None;
    }
    let heartbeat_ms = ms.parse().ok()?;
    Some(Frame::Handshake {
        tracking_id: id.to_string(),
        heartbeat_ms,
    })
}

fn json_error(e: serde_json::Error) -> DecodeError {
    let kind = match e.classify() {
        serde_json::error::Category::Data => DecodeErrorKind::WrongType,
        _ => DecodeErrorKind::Malformed,
    };
    DecodeError::new(kind, e.to_string())
}

/// A frame's top level, read in one pass.
struct Envelope<'de> {
    frame_type: Option<Cow<'de, str>>,
    event: Option<Cow<'de, str>>,
    user_time: Option<NavixyTime>,
    data: Data<'de>,
}

enum Data<'de> {
    Absent,
    /// `event` came first: decoded on the way.
    Decoded(Payload),
    /// `data` came before `event`: decoded at the end.
    Raw(&'de RawValue),
}

/// The decoded `data` of an event.
enum Payload {
    State(Result<Box<SourceState>, DecodeError>),
    Batch(Vec<BatchItem>),
    Iot(Result<Vec<IotTrackerValues>, DecodeError>),
    Lifecycle(Result<LifecycleItem, DecodeError>),
    Logout(Option<String>),
    Skipped,
}

struct EnvelopeVisitor {
    skip: u32,
}

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Navixy frame object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
        let mut envelope = Envelope {
            frame_type: None,
            event: None,
            user_time: None,
            data: Data::Absent,
        };
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match &*key {
                "type" => envelope.frame_type = text(map.next_value::<Scalar<'de>>()?),
                "event" => envelope.event = text(map.next_value::<Scalar<'de>>()?),
                "user_time" => {
                    // A bad `user_time` is no reason to drop the frame: nothing needs it.
                    envelope.user_time =
                        map.next_value_seed(Seed::<NavixyTime>::new(&Cx::default(), "user_time"))?;
                }
                "data" => {
                    envelope.data = match envelope.event.as_deref() {
                        Some(event)
                            if envelope.frame_type.as_deref().is_none_or(|t| t == "event") =>
                        {
                            Data::Decoded(map.next_value_seed(PayloadSeed {
                                event,
                                skip: self.skip,
                            })?)
                        }
                        _ => Data::Raw(map.next_value::<&'de RawValue>()?),
                    };
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(envelope)
    }
}

fn text(s: Scalar<'_>) -> Option<Cow<'_, str>> {
    match s {
        Scalar::Str(s) => Some(s),
        _ => None,
    }
}

impl Envelope<'_> {
    fn into_frame(self, whole: &str, skip: u32) -> Result<Frame, DecodeError> {
        match self.frame_type.as_deref() {
            Some("response") => {
                return serde_json::from_str(whole)
                    .map(Frame::Response)
                    .map_err(json_error);
            }
            Some("error") => {
                return serde_json::from_str(whole)
                    .map(Frame::Error)
                    .map_err(json_error);
            }
            // Navixy always sends `type: event`; an `event` without it is still an event.
            Some("event") | None => {}
            Some(other) => {
                return Err(DecodeError::new(
                    DecodeErrorKind::UnknownShape,
                    format!("unknown frame type `{}`", truncate(other, 40)),
                ));
            }
        }
        let Some(event) = self.event else {
            return Err(DecodeError::new(
                DecodeErrorKind::UnknownShape,
                "a frame without `type` and `event`",
            ));
        };
        let payload = match self.data {
            Data::Absent => None,
            Data::Decoded(p) => Some(p),
            Data::Raw(raw) => {
                let mut de = serde_json::Deserializer::from_str(raw.get());
                Some(
                    PayloadSeed {
                        event: &event,
                        skip,
                    }
                    .deserialize(&mut de)
                    .map_err(json_error)?,
                )
            }
        };
        let user_time = self.user_time;
        let missing = || {
            DecodeError::new(
                DecodeErrorKind::UnknownShape,
                format!("`{event}` event without `data`"),
            )
        };
        Ok(match (&*event, payload) {
            ("state", Some(Payload::State(state))) => Frame::State {
                user_time,
                state: state?,
            },
            ("state_batch", Some(Payload::Batch(items))) => Frame::StateBatch { user_time, items },
            ("state_batch", None) => Frame::StateBatch {
                user_time,
                items: Vec::new(),
            },
            ("readings_batch", Some(Payload::Batch(items))) => {
                Frame::ReadingsBatch { user_time, items }
            }
            ("readings_batch", None) => Frame::ReadingsBatch {
                user_time,
                items: Vec::new(),
            },
            ("iot_monitor", Some(Payload::Iot(values))) => Frame::IotMonitor { values: values? },
            ("lifecycle", Some(Payload::Lifecycle(item))) => Frame::Lifecycle(item?),
            ("logout", Some(Payload::Logout(reason))) => Frame::Logout {
                reason: reason.unwrap_or_else(|| "session closed".into()),
            },
            ("logout", None) => Frame::Logout {
                reason: "session closed".into(),
            },
            ("state" | "iot_monitor" | "lifecycle", _) => return Err(missing()),
            (other, _) => Frame::UnknownEvent {
                event: truncate(other, 64).to_string(),
            },
        })
    }
}

/// Decodes `data` for a known event name.
struct PayloadSeed<'a> {
    event: &'a str,
    /// [`StateFields`] skip mask.
    skip: u32,
}

impl<'de> DeserializeSeed<'de> for PayloadSeed<'_> {
    type Value = Payload;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Payload, D::Error> {
        match self.event {
            "state" => {
                let cx = Cx::skipping(self.skip);
                let mut fields = ItemFields::default();
                let present = Fill {
                    target: &mut fields,
                    cx: &cx,
                    field: "data",
                }
                .deserialize(d)?;
                let item = present.then(|| fields.finish(&cx, "source_state_event"));
                let state = match item {
                    _ if cx.bad().is_some() => {
                        Err(DecodeError::wrong_type(cx.take().unwrap_or(Bad {
                            field: "data",
                            expected: "a source state",
                        })))
                    }
                    Some(ItemKind::State(state)) => Ok(state),
                    _ => Err(DecodeError::new(
                        DecodeErrorKind::WrongType,
                        "`data` of a state event is not a source state",
                    )),
                };
                Ok(Payload::State(state))
            }
            "state_batch" => d
                .deserialize_any(BatchVisitor {
                    untagged: "source_state_event",
                    skip: self.skip,
                })
                .map(Payload::Batch),
            "readings_batch" => d
                .deserialize_any(BatchVisitor {
                    untagged: "readings_event",
                    skip: self.skip,
                })
                .map(Payload::Batch),
            "iot_monitor" => {
                let cx = Cx::default();
                let data = IotData::read(d, &cx, "data")?;
                Ok(Payload::Iot(match (cx.take(), data) {
                    (Some(bad), _) => Err(DecodeError::wrong_type(bad)),
                    (None, Some(data)) => Ok(data.values),
                    (None, None) => Ok(Vec::new()),
                }))
            }
            "lifecycle" => {
                let cx = Cx::default();
                let data = LifecycleFields::read(d, &cx, "data")?;
                let item = data.and_then(|o| o.finish(&cx));
                Ok(Payload::Lifecycle(match (cx.take(), item) {
                    (None, Some(item)) => Ok(item),
                    (bad, _) => Err(DecodeError::wrong_type(bad.unwrap_or(Bad {
                        field: "data",
                        expected: "a lifecycle object",
                    }))),
                }))
            }
            "logout" => Ok(Payload::Logout(match Scalar::deserialize(d)? {
                Scalar::Str(s) => Some(truncate(&s, 200).to_string()),
                _ => None,
            })),
            _ => {
                IgnoredAny::deserialize(d)?;
                Ok(Payload::Skipped)
            }
        }
    }
}

use serde::Deserialize as _;

/// The items of a batch; each item is read with its own [`Cx`] so that a wrong type
/// drops only that item.
struct BatchVisitor {
    untagged: &'static str,
    skip: u32,
}

impl<'de> Visitor<'de> for BatchVisitor {
    type Value = Vec<BatchItem>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of batch items")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Vec<BatchItem>, E> {
        Ok(Vec::new())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<BatchItem>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).clamp(16, 1024));
        let mut index = 0usize;
        loop {
            let cx = Cx::skipping(self.skip);
            let mut fields = ItemFields::default();
            let Some(present) = seq.next_element_seed(Fill {
                target: &mut fields,
                cx: &cx,
                field: "item",
            })?
            else {
                break;
            };
            let kind = present.then(|| fields.finish(&cx, self.untagged));
            items.push(match (cx.take(), kind) {
                (None, Some(ItemKind::State(s))) => BatchItem::State(s),
                (None, Some(ItemKind::Readings(r))) => BatchItem::Readings(r),
                (None, Some(ItemKind::Lifecycle(l))) => BatchItem::Lifecycle(l),
                (None, Some(ItemKind::Unknown(item_type))) => BatchItem::Unknown {
                    item_type: truncate(&item_type, 64).to_string(),
                },
                (Some(bad), _) => {
                    let mut e = DecodeError::wrong_type(bad);
                    e.message = format!("item {index}: {}", e.message);
                    BatchItem::Invalid(e)
                }
                // `null` as an item.
                (None, None) => BatchItem::Invalid(DecodeError::new(
                    DecodeErrorKind::WrongType,
                    format!("item {index}: null"),
                )),
            });
            index += 1;
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_and_handshake() {
        assert_eq!(decode_frame("X"), Ok(Frame::Heartbeat));
        assert_eq!(
            decode_frame("b623a15d-9623-4fd8-a9d3-697036635c29|30000|X|\n"),
            Ok(Frame::Handshake {
                tracking_id: "b623a15d-9623-4fd8-a9d3-697036635c29".into(),
                heartbeat_ms: 30000
            })
        );
        assert_eq!(
            decode_frame("hello world").unwrap_err().kind,
            DecodeErrorKind::Malformed
        );
        assert_eq!(
            decode_frame("[1,2]").unwrap_err().kind,
            DecodeErrorKind::UnknownShape
        );
    }

    #[test]
    fn event_after_data_is_still_decoded() {
        let f = decode_frame(
            r#"{"data":{"source_id":7,"lifecycle_event":"corrupt"},"event":"lifecycle","type":"event"}"#,
        );
        assert_eq!(
            f,
            Ok(Frame::Lifecycle(LifecycleItem {
                source_id: Some(7),
                lifecycle_event: LifecycleKind::Corrupt,
                timestamp: None
            }))
        );
    }

    #[test]
    fn wrong_type_in_one_item_costs_only_that_item() {
        let f = decode_frame(
            r#"{"type":"event","event":"state_batch","data":[
                {"type":"source_state_event","state":{"source_id":1,"gps":{"speed":"fast"}}},
                {"type":"source_state_event","state":{"source_id":2,"gps":{"speed":5}}}]}"#,
        )
        .unwrap();
        let Frame::StateBatch { items, .. } = f else {
            panic!()
        };
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[0],
            BatchItem::Invalid(DecodeError::new(
                DecodeErrorKind::WrongType,
                "item 0: `gps.speed` is not a number"
            ))
        );
        let BatchItem::State(s) = &items[1] else {
            panic!()
        };
        assert_eq!(s.gps.as_ref().and_then(|g| g.speed), Some(5.0));
    }

    #[test]
    fn oversized_and_malformed() {
        assert_eq!(
            decode_frame_limited("{}", 1).unwrap_err().kind,
            DecodeErrorKind::Oversized
        );
        assert_eq!(
            decode_frame("{\"type\":").unwrap_err().kind,
            DecodeErrorKind::Malformed
        );
        assert_eq!(
            decode_frame("{}").unwrap_err().kind,
            DecodeErrorKind::UnknownShape
        );
        assert_eq!(
            decode_frame(r#"{"type":"event","event":"state_batch","data":{}}"#)
                .unwrap_err()
                .kind,
            DecodeErrorKind::WrongType
        );
        assert_eq!(
            decode_frame(r#"{"type":"event","event":"state","data":{"gps":[]}}"#)
                .unwrap_err()
                .kind,
            DecodeErrorKind::WrongType
        );
    }
}
