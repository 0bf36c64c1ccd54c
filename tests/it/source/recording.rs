//! `--record`: the recording decodes line by line.

use navixy_alerts::navixy::decode::decode_frame;
use navixy_alerts::navixy::messages::Frame;
use navixy_alerts::source::navixy::NavixySource;
use navixy_alerts::source::recording::Recorder;
use navixy_alerts::source::replay::parse_line;

use super::*;

#[tokio::test]
async fn the_recording_decodes_line_by_line() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frames.jsonl");
        let sim = simulator(sim_options()).await;
        let source = NavixySource::new(config(&sim, &api_key(&sim)), Arc::new(SystemClock))
            .unwrap()
            .with_options(fast())
            .with_recorder(Recorder::create(&path).unwrap());
        let mut run = start_source(sim.clone(), source);
        let mut frames = 0;
        while frames < 5 {
            run.next_frame().await;
            frames += 1;
        }
        run.stop().await;

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines.len() >= 6,
            "the response and at least five frames: {}",
            lines.len()
        );
        let mut responses = 0;
        for line in &lines {
            // The documented format: {"at":"<RFC 3339>","frame":<the frame>}.
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let at = value["at"].as_str().unwrap();
            assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
            assert!(value["frame"].is_object(), "{line}");
            let frame = decode_frame(&value["frame"].to_string()).unwrap();
            if matches!(frame, Frame::Response(_)) {
                responses += 1;
            }
            let parsed = parse_line(line, 1, chrono_tz::UTC).unwrap();
            assert!(parsed.at.is_some());
            assert_eq!(decode_frame(&parsed.text).unwrap(), frame);
        }
        assert_eq!(responses, 1);
    })
    .await
}
