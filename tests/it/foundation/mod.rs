//! Integration tests: foundation (module graph, decoder, engine, replay, check, faults).

mod architecture;
mod check;
mod check_muting;
mod decode;
mod decode_agree;
mod decode_fields;
mod decode_props;
mod engine;
mod faults;
mod replay;

use std::path::PathBuf;

/// A file under `tests/data/`.
pub fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The text of a file under `tests/data/`.
pub fn data_text(name: &str) -> String {
    std::fs::read_to_string(data(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}
