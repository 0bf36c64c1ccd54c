//! Turns one text frame into a [`Frame`], tolerantly.
//!
//! A frame that is not JSON, has a wrong field type or is too large is an error of a
//! [`DecodeErrorKind`] that the caller counts; it never panics and never ends the stream.

use super::messages::*;

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
    pub fn as_str(self) -> &'static str {
        match self {
            DecodeErrorKind::Malformed => "malformed",
            DecodeErrorKind::WrongType => "wrong_type",
            DecodeErrorKind::Oversized => "oversized",
            DecodeErrorKind::UnknownShape => "unknown_shape",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
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
}

/// Decodes one server frame.
pub fn decode_frame(text: &str) -> Result<Frame, DecodeError> {
    let t = text.trim();
    if t == "X" {
        return Ok(Frame::Heartbeat);
    }
    if !t.starts_with('{') {
        return decode_handshake(t);
    }
    let value: serde_json::Value = serde_json::from_str(t)
        .map_err(|e| DecodeError::new(DecodeErrorKind::Malformed, e.to_string()))?;
    decode_value(value)
}

fn decode_handshake(t: &str) -> Result<Frame, DecodeError> {
    let mut parts = t.split('|');
    match (parts.next(), parts.next()) {
        (Some(id), Some(ms)) if !id.is_empty() => {
            let heartbeat_ms = ms.parse().map_err(|_| {
                DecodeError::new(DecodeErrorKind::Malformed, "handshake without heartbeat ms")
            })?;
            Ok(Frame::Handshake {
                tracking_id: id.to_string(),
                heartbeat_ms,
            })
        }
        _ => Err(DecodeError::new(DecodeErrorKind::Malformed, "not JSON")),
    }
}

fn wrong_type(e: serde_json::Error) -> DecodeError {
    DecodeError::new(DecodeErrorKind::WrongType, e.to_string())
}

fn decode_value(mut value: serde_json::Value) -> Result<Frame, DecodeError> {
    let obj = value
        .as_object_mut()
        .ok_or_else(|| DecodeError::new(DecodeErrorKind::UnknownShape, "not an object"))?;
    let frame_type = obj.get("type").and_then(|v| v.as_str()).unwrap_or("");
    match frame_type {
        "response" => {
            return serde_json::from_value(value)
                .map(Frame::Response)
                .map_err(wrong_type);
        }
        "error" => {
            return serde_json::from_value(value)
                .map(Frame::Error)
                .map_err(wrong_type);
        }
        "event" => {}
        other => {
            return Err(DecodeError::new(
                DecodeErrorKind::UnknownShape,
                format!("unknown frame type `{other}`"),
            ));
        }
    }
    let event = obj
        .get("event")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let user_time = obj
        .get("user_time")
        .and_then(|v| v.as_str())
        .and_then(NavixyTime::parse);
    let data = obj.remove("data").unwrap_or(serde_json::Value::Null);
    match event.as_str() {
        "state" => Ok(Frame::State {
            user_time,
            state: Box::new(serde_json::from_value(data).map_err(wrong_type)?),
        }),
        "state_batch" => Ok(Frame::StateBatch {
            user_time,
            items: decode_items(data)?,
        }),
        "readings_batch" => Ok(Frame::ReadingsBatch {
            user_time,
            items: decode_items(data)?,
        }),
        "iot_monitor" => {
            #[derive(serde::Deserialize)]
            struct Iot {
                #[serde(default)]
                iot_last_values: Vec<IotTrackerValues>,
            }
            let iot: Iot = serde_json::from_value(data).map_err(wrong_type)?;
            Ok(Frame::IotMonitor {
                values: iot.iot_last_values,
            })
        }
        "lifecycle" => Ok(Frame::Lifecycle(
            serde_json::from_value(data).map_err(wrong_type)?,
        )),
        "logout" => Ok(Frame::Logout {
            reason: data.as_str().unwrap_or("session closed").to_string(),
        }),
        _ => Ok(Frame::UnknownEvent { event }),
    }
}

fn decode_items(data: serde_json::Value) -> Result<Vec<BatchItem>, DecodeError> {
    let serde_json::Value::Array(items) = data else {
        return Err(DecodeError::new(
            DecodeErrorKind::WrongType,
            "batch data is not an array",
        ));
    };
    items
        .into_iter()
        .map(|mut item| {
            let tag = item
                .get("type")
                .and_then(|v| v.as_str())
                .map(str::to_string);
            match tag.as_deref() {
                None => Ok(BatchItem::State(Box::new(
                    serde_json::from_value(item).map_err(wrong_type)?,
                ))),
                Some("source_state_event") => {
                    let state = item
                        .get_mut("state")
                        .map(serde_json::Value::take)
                        .unwrap_or_default();
                    Ok(BatchItem::State(Box::new(
                        serde_json::from_value(state).map_err(wrong_type)?,
                    )))
                }
                Some("readings_event") => Ok(BatchItem::Readings(Box::new(
                    serde_json::from_value(item).map_err(wrong_type)?,
                ))),
                Some("lifecycle_event") => Ok(BatchItem::Lifecycle(
                    serde_json::from_value(item).map_err(wrong_type)?,
                )),
                Some(other) => Ok(BatchItem::Unknown {
                    item_type: other.to_string(),
                }),
            }
        })
        .collect()
}
