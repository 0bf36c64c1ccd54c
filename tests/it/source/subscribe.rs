//! Subscribing, and decoding what comes: both shapes, the tracker list, statuses.

use std::collections::HashMap;

use navixy_alerts::config::SimulatorConfig;
use navixy_alerts::navixy::messages::{BatchItem, Frame, NavixyTime};
use navixy_alerts::source::SourceEvent;
use navixy_alerts::source::navixy::TrackerStatus;

use super::*;

#[tokio::test]
async fn subscribes_and_decodes_the_wire_shapes() {
    bounded(async {
        let sim = simulator(sim_options()).await;
        let config = config(&sim, &api_key(&sim));
        let mut run = start(sim.clone(), config).await;

        // The tracker list comes first, mapped from tracker/list.
        let SourceEvent::Trackers(_, trackers) = run.next().await else {
            panic!("expected the tracker list first")
        };
        assert_eq!(trackers, sim.trackers());
        assert_eq!(trackers.len(), 20);
        assert_eq!(trackers[0].id, 21_001);
        assert_eq!(trackers[0].source_id, Some(10_037));
        assert_eq!(trackers[0].label.as_deref(), Some("Truck 1"));
        assert_eq!(trackers[0].group_id, Some(1));
        let by_source: HashMap<i64, i64> = trackers
            .iter()
            .map(|t| (t.source_id.unwrap(), t.id))
            .collect();

        // Then the snapshot: every tracker's state, and every tracker's readings.
        let Frame::StateBatch { items, user_time } = run.next_frame().await else {
            panic!("expected a state_batch snapshot")
        };
        assert_eq!(user_time, None, "the wire sends no user_time");
        assert_eq!(items.len(), 20);
        for item in &items {
            let BatchItem::State(state) = item else {
                panic!("{item:?}")
            };
            assert!(by_source.contains_key(&state.source_id.unwrap()));
            // iso_datetime: true was asked, so times carry an offset.
            assert!(matches!(state.last_update, Some(NavixyTime::Instant(_))));
            assert!(state.gps.as_ref().and_then(|g| g.location).is_some());
        }
        let Frame::ReadingsBatch { items, .. } = run.next_frame().await else {
            panic!("expected a readings_batch snapshot")
        };
        assert_eq!(items.len(), 20);
        let BatchItem::Readings(readings) = &items[0] else {
            panic!()
        };
        assert_eq!(readings.tracker_id, Some(21_001));
        let names: Vec<_> = readings
            .inputs
            .iter()
            .filter_map(|i| i.name.as_deref())
            .collect();
        assert_eq!(names, ["lls_level_1", "board_voltage", "temperature_1"]);

        assert!(run.health.is_connected());
        let statuses = run.health.subscriptions();
        assert_eq!(statuses["state_batch"].len(), 20);
        assert!(
            statuses["readings_batch"]
                .values()
                .all(|s| *s == TrackerStatus::Normal)
        );
        assert_eq!(run.sim.stats().subscriptions, 1);

        // Changes keep coming after the snapshot.
        let next = run.next_frame().await;
        assert!(
            matches!(next, Frame::StateBatch { .. } | Frame::ReadingsBatch { .. }),
            "{next:?}"
        );
        run.stop().await;
    })
    .await
}

#[tokio::test]
async fn decodes_the_documented_shapes() {
    bounded(async {
        let sim = simulator(SimulatorOptions {
            documented_shapes: true,
            ..sim_options()
        })
        .await;
        let config = config(&sim, &format!("{}    format: compact\n", api_key(&sim)));
        let mut run = start(sim.clone(), config).await;
        let Frame::StateBatch { items, user_time } = run.next_frame().await else {
            panic!("expected a state_batch snapshot")
        };
        assert!(user_time.is_some(), "the documented shape has user_time");
        assert_eq!(items.len(), 20);
        let BatchItem::State(state) = &items[0] else {
            panic!()
        };
        assert!(state.inputs.is_none(), "compact states carry no inputs");
        assert!(state.ignition.is_some());
        // The documented response says `success`.
        let statuses = run.health.subscriptions();
        assert_eq!(statuses["state_batch"][&21_001], TrackerStatus::Normal);
        run.stop().await;
    })
    .await
}

#[tokio::test]
async fn selected_trackers_and_unknown_ones() {
    bounded(async {
        let sim = simulator(sim_options()).await;
        let extra = format!(
            "{}    trackers: [21001, 21002, 99999]\n    subscribe: [state_batch, state, iot_monitor]\n",
            api_key(&sim)
        );
        let mut run = start(sim.clone(), config(&sim, &extra)).await;
        let mut seen_state = false;
        let mut seen_iot = false;
        while !(seen_state && seen_iot) {
            match run.next_frame().await {
                Frame::StateBatch { items, .. } => {
                    for item in items {
                        if let BatchItem::State(s) = item {
                            assert!(
                                matches!(s.source_id, Some(10_037) | Some(10_074)),
                                "only the selected trackers: {:?}",
                                s.source_id
                            );
                        }
                    }
                }
                Frame::State { state, .. } => {
                    assert!(matches!(state.source_id, Some(10_037) | Some(10_074)));
                    seen_state = true;
                }
                Frame::IotMonitor { values } => {
                    let ids: Vec<_> = values.iter().filter_map(|v| v.tracker_id).collect();
                    assert!(ids.iter().all(|id| [21_001, 21_002].contains(id)), "{ids:?}");
                    assert!(values[0].nonnull_fields.contains_key("lls_level_1"));
                    seen_iot = true;
                }
                other => panic!("{other:?}"),
            }
        }
        let statuses = run.health.subscriptions();
        assert_eq!(statuses["state_batch"][&99_999], TrackerStatus::Unknown);
        assert_eq!(statuses["state"][&21_002], TrackerStatus::Normal);
        run.stop().await;
    })
    .await
}

#[tokio::test]
async fn the_demo_source_is_one_call() {
    bounded(async {
        let config: SimulatorConfig =
            serde_json::from_value(serde_json::json!({"trackers": 5, "seed": 7, "speed": 600.0}))
                .unwrap();
        let (source, sim) = navixy_alerts::source::navixy::simulated(&config)
            .await
            .expect("start the demo");
        let clock = sim.clock();
        let mut run = start_source(sim.clone(), source);
        let SourceEvent::Trackers(_, trackers) = run.next().await else {
            panic!("expected the tracker list")
        };
        assert_eq!(trackers.len(), 5);
        // Arrival times are on the simulated clock.
        let first = loop {
            if let SourceEvent::RawFrame { received_at, .. } = run.next().await {
                break received_at;
            }
        };
        use navixy_alerts::clock::Clock;
        assert!(first <= clock.now());
        assert_eq!(
            sim.stats().auths,
            1,
            "the demo signs in with login and password"
        );
        run.stop().await;
    })
    .await
}

#[tokio::test]
async fn the_tracker_list_is_refreshed_on_its_interval() {
    bounded(async {
        let sim = simulator(sim_options()).await;
        let extra = format!("{}    tracker_refresh: 200ms\n", api_key(&sim));
        let mut run = start(sim.clone(), config(&sim, &extra)).await;
        let mut lists = 0;
        while lists < 3 {
            if let SourceEvent::Trackers(_, list) = run.next().await {
                assert_eq!(list, sim.trackers());
                lists += 1;
            }
        }
        assert_eq!(run.health.reconnects(), 0, "refreshes need no reconnect");
        assert_eq!(sim.stats().connections, 1);
        run.stop().await;
    })
    .await
}

#[tokio::test]
async fn the_demo_fleet_shows_its_events_early_over_the_wire() {
    use navixy_alerts::clock::Clock;
    use navixy_alerts::navixy::messages::{ConnectionStatus, LifecycleKind};
    bounded(async {
        let config: SimulatorConfig = serde_json::from_value(
            // Slow enough that the client subscribes before the first scripted event
            // (simulated minute 1 is 200 ms away), fast enough to see 12 minutes in 2.4 s.
            serde_json::json!({"trackers": 20, "seed": 42, "speed": 300.0}),
        )
        .unwrap();
        let (source, sim) = navixy_alerts::source::navixy::simulated(&config)
            .await
            .expect("start the demo");
        let clock = sim.clock();
        let start = clock.now();
        let mut run = start_source(sim.clone(), source);
        let mut max_speed = 0.0f64;
        let mut ignition_on = HashMap::new();
        let mut turned_on = false;
        let mut offline = false;
        let mut blocked = false;
        let mut fuel: HashMap<i64, f64> = HashMap::new();
        let mut largest_fall = 0.0f64;
        while clock.now() - start < chrono::Duration::minutes(12) {
            let (Frame::StateBatch { items, .. } | Frame::ReadingsBatch { items, .. }) =
                run.next_frame().await
            else {
                continue;
            };
            for item in items {
                match item {
                    BatchItem::State(s) => {
                        let id = s.source_id.unwrap();
                        max_speed =
                            max_speed.max(s.gps.as_ref().and_then(|g| g.speed).unwrap_or(0.0));
                        let on = s.ignition.unwrap();
                        turned_on |= on && ignition_on.insert(id, on) == Some(false);
                        ignition_on.insert(id, on);
                        offline |= s.connection_status == Some(ConnectionStatus::Offline);
                    }
                    BatchItem::Lifecycle(l) => blocked |= l.lifecycle_event == LifecycleKind::Block,
                    BatchItem::Readings(r) => {
                        let id = r.tracker_id.unwrap();
                        for input in r
                            .inputs
                            .iter()
                            .filter(|i| i.name.as_deref() == Some("lls_level_1"))
                        {
                            let level = input.value.unwrap();
                            let peak = fuel.entry(id).or_insert(level);
                            *peak = peak.max(level);
                            largest_fall = largest_fall.max(*peak - level);
                        }
                    }
                    BatchItem::Unknown { .. } | BatchItem::Invalid(_) => panic!("unknown item"),
                }
            }
        }
        assert!(max_speed > 115.0, "speeding: {max_speed}");
        assert!(turned_on, "an ignition went on");
        assert!(offline, "a tracker went offline");
        assert!(blocked, "a tracker was blocked");
        assert!(largest_fall > 25.0, "a fuel drain: {largest_fall}");
        run.stop().await;
    })
    .await
}
