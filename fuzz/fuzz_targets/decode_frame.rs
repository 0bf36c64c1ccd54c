//! Any bytes as a frame, and as a recording line: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use navixy_alerts::navixy::decode::{DecodeOptions, StateFields, decode_frame, decode_frame_with};
use navixy_alerts::source::replay::parse_line;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = decode_frame(text);
    let few = DecodeOptions {
        state_fields: StateFields::only(["gps", "ignition"]).unwrap_or_default(),
        ..DecodeOptions::default()
    };
    let _ = decode_frame_with(text, &few);
    if let Ok(recorded) = parse_line(text, 1, chrono_tz::UTC) {
        let _ = decode_frame(&recorded.text);
    }
});
