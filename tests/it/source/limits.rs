//! Bad input: malformed frames are handed on (the engine counts them) and oversized ones
//! skipped here; neither drops the connection.

use navixy_alerts::navixy::decode::decode_frame;
use navixy_alerts::navixy::messages::{BatchItem, Frame};
use navixy_alerts::source::SourceEvent;

use super::*;

#[tokio::test]
async fn a_flood_of_malformed_frames_leaves_the_connection_up() {
    bounded(async {
        let sim = simulator(sim_options()).await;
        let mut run = start(sim.clone(), config(&sim, &api_key(&sim))).await;
        run.next_frame().await;

        sim.send_malformed(700);
        let mut bad = 0;
        let mut good_after_flood = 0;
        while good_after_flood < 3 {
            let SourceEvent::RawFrame { text, .. } = run.next().await else {
                continue;
            };
            match decode_frame(&text) {
                Err(_) | Ok(Frame::UnknownEvent { .. }) => bad += 1,
                Ok(Frame::StateBatch { items, .. })
                    if items.iter().any(|i| {
                        matches!(i, BatchItem::Unknown { .. } | BatchItem::Invalid(_))
                    }) =>
                {
                    bad += 1
                }
                Ok(_) if bad == 700 => good_after_flood += 1,
                Ok(_) => {}
            }
        }
        assert_eq!(
            bad, 700,
            "every bad frame reached the engine's decoder, once"
        );
        assert_eq!(run.health.reconnects(), 0);
        assert!(run.health.is_connected());
        assert_eq!(sim.stats().connections, 1);
        run.stop().await;
    })
    .await
}

#[tokio::test]
async fn oversized_frames_are_skipped_and_counted() {
    bounded(async {
        let sim = simulator(sim_options()).await;
        let extra = format!("{}    max_frame_bytes: 200000\n", api_key(&sim));
        let mut run = start(sim.clone(), config(&sim, &extra)).await;
        run.next_frame().await;

        let padding = "x".repeat(300_000);
        let big =
            format!(r#"{{"type":"event","event":"state_batch","data":[],"padding":"{padding}"}}"#);
        sim.send_raw(big.clone());
        sim.send_raw(big);
        run.health.wait_until(|h| h.frames_skipped() == 2).await;
        // The stream goes on, on the same connection.
        run.next_frame().await;
        assert_eq!(run.health.reconnects(), 0);
        assert_eq!(sim.stats().connections, 1);
        assert!(
            run.drain().iter().all(|e| match e {
                SourceEvent::RawFrame { text, .. } => text.len() < 200_000,
                _ => true,
            }),
            "oversized frames never reach the engine"
        );
        run.stop().await;
    })
    .await
}

#[tokio::test]
async fn chaos_drops_and_bad_frames_do_not_stop_the_stream() {
    bounded(async {
        let sim = simulator(SimulatorOptions {
            chaos: true,
            chaos_drop_after: (Duration::from_millis(150), Duration::from_millis(300)),
            ..sim_options()
        })
        .await;
        let run = start(sim.clone(), config(&sim, &api_key(&sim))).await;
        run.health.wait_until(|h| h.reconnects() >= 3).await;
        // Still streaming after the drops, on a new connection each time.
        run.health.wait_until(|h| h.is_connected()).await;
        let before = run.health.frames_received();
        run.health
            .wait_until(|h| h.frames_received() > before + 2)
            .await;
        assert!(sim.stats().connections >= 4);
        let error = run.health.last_error().unwrap_or_default();
        assert!(error.contains("WebSocket"), "{error}");
        run.stop().await;
    })
    .await
}
