//! Reading recordings: one frame per line, either the frame itself (JSON, or the
//! handshake / heartbeat text) or `{"at": "<arrival time>", "frame": <frame>}` as
//! `run --record` writes it. A line that is not a recording line (bad `at`, broken
//! wrapper) is reported with its number and skipped; what the frame holds is the
//! decoder's business.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::navixy::time::NavixyTime;

/// One recorded frame.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedFrame<'a> {
    /// 1-based line number in the recording.
    pub line: u64,
    /// Arrival time, when the recording has it.
    pub at: Option<DateTime<Utc>>,
    /// The frame text as the server sent it.
    pub text: Cow<'a, str>,
}

/// A line that is not a recording line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct BadLine {
    pub line: u64,
    pub message: String,
}

/// A recording being read line by line, without loading it whole.
pub struct Recording {
    reader: BufReader<File>,
    line: u64,
    buf: String,
    tz: Tz,
    bytes_read: u64,
}

impl Recording {
    /// `tz` reads `at` values written without an offset.
    pub fn open(path: &Path, tz: Tz) -> std::io::Result<Recording> {
        Ok(Recording {
            reader: BufReader::with_capacity(1 << 20, File::open(path)?),
            line: 0,
            buf: String::new(),
            tz,
            bytes_read: 0,
        })
    }

    /// Bytes consumed so far (for a progress bar).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The next frame; `None` at the end. Blank lines are skipped silently.
    pub fn next_frame(&mut self) -> Option<std::io::Result<Result<RecordedFrame<'_>, BadLine>>> {
        loop {
            self.buf.clear();
            match self.reader.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(n) => {
                    self.bytes_read += n as u64;
                    self.line += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    // Not UTF-8: skip the rest of this line and report it.
                    self.line += 1;
                    let mut raw = Vec::new();
                    if let Err(e) = self.reader.read_until(b'\n', &mut raw) {
                        return Some(Err(e));
                    }
                    self.bytes_read += raw.len() as u64;
                    return Some(Ok(Err(BadLine {
                        line: self.line,
                        message: "not UTF-8 text".into(),
                    })));
                }
                Err(e) => return Some(Err(e)),
            }
            if self.buf.trim().is_empty() {
                continue;
            }
            let (line, tz) = (self.line, self.tz);
            return Some(Ok(parse_line(self.buf.trim(), line, tz)));
        }
    }
}

/// The `{"at", "frame"}` wrapper.
#[derive(Deserialize)]
struct Wrapped<'a> {
    #[serde(borrow)]
    at: Option<Cow<'a, str>>,
    #[serde(borrow)]
    frame: Option<&'a RawValue>,
}

/// One line of a recording.
pub fn parse_line(text: &str, line: u64, tz: Tz) -> Result<RecordedFrame<'_>, BadLine> {
    let bad = |message: String| BadLine { line, message };
    // What `run --record` writes, `{"at":"<time>","frame":<frame>}`, is cut apart without
    // a second JSON pass over the frame (that pass was a fifth of replay's reading cost).
    if let Some((at, frame)) = split_recorded(text) {
        let at = NavixyTime::parse(at).map(|t| t.to_utc(tz)).ok_or_else(|| {
            bad(format!(
                "`at` is not a time: `{}`",
                crate::text::truncate(at, 40)
            ))
        })?;
        if frame.starts_with('{') {
            return Ok(RecordedFrame {
                line,
                at: Some(at),
                text: Cow::Borrowed(frame),
            });
        }
    }
    // Only a line that mentions `"frame"` can be a wrapper: plain frames skip this parse.
    if text.starts_with('{')
        && text.contains("\"frame\"")
        && let Ok(Wrapped {
            at,
            frame: Some(frame),
        }) = serde_json::from_str::<Wrapped>(text)
    {
        {
            let at = match at {
                Some(at) => Some(NavixyTime::parse(&at).map(|t| t.to_utc(tz)).ok_or_else(
                    || {
                        bad(format!(
                            "`at` is not a time: `{}`",
                            crate::text::truncate(&at, 40)
                        ))
                    },
                )?),
                None => None,
            };
            let raw = frame.get();
            // The handshake and heartbeat are text frames: recorded as JSON strings.
            let text = if raw.starts_with('"') {
                Cow::Owned(
                    serde_json::from_str::<String>(raw)
                        .map_err(|e| bad(format!("`frame` is not a valid string: {e}")))?,
                )
            } else {
                Cow::Borrowed(raw)
            };
            return Ok(RecordedFrame { line, at, text });
        }
    }
    Ok(RecordedFrame {
        line,
        at: None,
        text: Cow::Borrowed(text),
    })
}

/// `{"at":"<time>","frame":{...}}` exactly as the recorder writes it: the time and the
/// frame's text. Anything else (other key order, spaces, escapes) returns `None` and goes
/// through the JSON parser.
fn split_recorded(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix(r#"{"at":""#)?;
    let end = rest.find('"')?;
    let at = &rest[..end];
    if at.contains('\\') {
        return None;
    }
    let frame = rest[end + 1..]
        .strip_prefix(r#","frame":"#)?
        .strip_suffix('}')?;
    Some((at, frame.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_wrapped_lines() {
        let f = parse_line(
            r#"{"type":"event","event":"logout","data":"x"}"#,
            3,
            chrono_tz::UTC,
        )
        .unwrap();
        assert_eq!((f.line, f.at), (3, None));
        let f = parse_line(
            r#"{"at":"2026-01-01T10:00:00Z","frame":{"type":"event"}}"#,
            4,
            chrono_tz::UTC,
        )
        .unwrap();
        assert_eq!(f.text, r#"{"type":"event"}"#);
        assert_eq!(f.at, Some("2026-01-01T10:00:00Z".parse().unwrap()));
        let f = parse_line(
            r#"{"frame":"X","at":"2026-01-01 11:00:00"}"#,
            5,
            chrono_tz::Europe::Berlin,
        )
        .unwrap();
        assert_eq!(f.text, "X");
        assert_eq!(f.at, Some("2026-01-01T10:00:00Z".parse().unwrap()));
        let f = parse_line(
            r#"{"at":"2026-01-01T10:00:00Z","frame":{"type":"event","data":[{}]}}"#,
            7,
            chrono_tz::UTC,
        )
        .unwrap();
        assert_eq!(f.text, r#"{"type":"event","data":[{}]}"#);
        let e = parse_line(r#"{"at":"yesterday","frame":"X"}"#, 6, chrono_tz::UTC).unwrap_err();
        assert_eq!(e.to_string(), "line 6: `at` is not a time: `yesterday`");
    }
}
