//! `run --record FILE`: every received frame, with its arrival time, appended to a JSONL
//! file that `replay` and `test` read, so that real traffic becomes test data.
//!
//! One line per frame: `{"at":"<RFC 3339>","frame":<the frame>}`, where the frame is
//! embedded as JSON when it is JSON (byte for byte, minus line breaks, which valid JSON
//! only has between tokens) and as a JSON string otherwise (the Atmosphere line, junk).
//! Each line is flushed as it is written, so a killed process loses at most the frame it
//! was writing. Reading is [`crate::source::replay`]'s (`parse_line` is the inverse of
//! [`write_line`]).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::value::RawValue;

/// The recording file could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot record frames: {source}", path.display())]
pub struct RecordError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Appends frames to a JSONL file.
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    out: BufWriter<File>,
    /// Reused for every line.
    line: String,
}

impl Recorder {
    /// Opens `path` for appending, creating it if needed.
    pub fn create(path: &Path) -> Result<Recorder, RecordError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| RecordError {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Recorder {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            line: String::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one frame received at `at` and flushes it.
    pub fn record(&mut self, at: DateTime<Utc>, frame: &str) -> Result<(), RecordError> {
        self.line.clear();
        write_line(at, frame, &mut self.line);
        self.out
            .write_all(self.line.as_bytes())
            .and_then(|()| self.out.flush())
            .map_err(|source| RecordError {
                path: self.path.clone(),
                source,
            })
    }
}

/// Appends the JSONL line (with its `\n`) for one frame to `out`.
pub fn write_line(at: DateTime<Utc>, frame: &str, out: &mut String) {
    out.push_str(r#"{"at":""#);
    out.push_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true));
    out.push_str(r#"","frame":"#);
    let trimmed = frame.trim();
    if serde_json::from_str::<&RawValue>(trimmed).is_ok() {
        // Raw line breaks in valid JSON are whitespace between tokens (strings cannot hold
        // them unescaped), so replacing them keeps the frame's meaning and the line whole.
        out.extend(
            trimmed
                .chars()
                .map(|c| if c == '\n' || c == '\r' { ' ' } else { c }),
        );
    } else {
        // A string always serializes.
        out.push_str(&serde_json::to_string(frame).unwrap_or_default());
    }
    out.push_str("}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::replay::parse_line;
    use chrono::TimeZone;

    fn parse(line: &str) -> crate::source::replay::RecordedFrame<'_> {
        parse_line(line, 1, chrono_tz::UTC).unwrap()
    }

    #[test]
    fn lines_round_trip_json_and_other_frames() {
        let at = Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 1).unwrap();
        let mut out = String::new();
        write_line(
            at,
            "{\"type\":\"event\",\n \"event\":\"logout\",\"data\":\"a\\nb\"}",
            &mut out,
        );
        write_line(at, "b623a15d|30000|X|", &mut out);
        write_line(at, "{broken", &mut out);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            r#"{"at":"2026-01-05T08:00:01.000Z","frame":{"type":"event",  "event":"logout","data":"a\nb"}}"#
        );
        let first = parse(lines[0]);
        assert_eq!(first.at, Some(at));
        let value: serde_json::Value = serde_json::from_str(&first.text).unwrap();
        assert_eq!(value["data"], "a\nb");
        assert_eq!(parse(lines[1]).text, "b623a15d|30000|X|");
        assert_eq!(parse(lines[1]).at, Some(at));
        assert_eq!(parse(lines[2]).text, "{broken");
        // A bare frame is a line too.
        let bare = parse(r#"{"type":"event","event":"state_batch","data":[]}"#);
        assert_eq!(bare.at, None);
        assert!(parse_line(r#"{"at":"yesterday","frame":{}}"#, 1, chrono_tz::UTC).is_err());
    }

    #[test]
    fn the_recorder_appends_and_names_its_file_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frames.jsonl");
        let at = Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 1).unwrap();
        Recorder::create(&path).unwrap().record(at, "X").unwrap();
        Recorder::create(&path).unwrap().record(at, "{}").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        let err = Recorder::create(&dir.path().join("missing/frames.jsonl")).unwrap_err();
        assert!(err.to_string().contains("missing/frames.jsonl"), "{err}");
    }
}
