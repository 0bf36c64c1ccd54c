//! Navixy's context while the source runs: loaded before the first frame, refreshed on
//! its period when the simulated account changes, kept whole when a refresh fails, and
//! read by rules as zones, groups, tags, drivers and the labels `group` and `driver`.

use std::path::PathBuf;

use chrono::Utc;
use navixy_alerts::alert::AlertTransition;
use navixy_alerts::clock::SystemClock;
use navixy_alerts::engine::ShardEvaluator;
use navixy_alerts::navixy::context::SharedContext;
use navixy_alerts::navixy::messages::{NavixyTime, SourceState};
use navixy_alerts::navixy::simulator::DEPOT;
use navixy_alerts::rules::{Evaluator, LoadOptions, RuleSet};
use navixy_alerts::source::navixy::ContextRefresh;
use navixy_alerts::state::Update;
use navixy_alerts::state::cache::ShardCache;

use super::*;

fn zone_labels(shared: &SharedContext) -> Vec<String> {
    shared
        .load()
        .zones
        .zones()
        .iter()
        .map(|z| z.label.clone())
        .collect()
}

/// A source on the simulator that keeps its context in `shared`, refreshed every 50 ms.
fn source_with_context(sim: &SimulatorHandle, shared: &Arc<SharedContext>) -> NavixySource {
    NavixySource::new(config(sim, &api_key(sim)), Arc::new(SystemClock))
        .expect("a valid source")
        .with_options(fast())
        .with_context(ContextRefresh {
            shared: shared.clone(),
            every: Duration::from_millis(50),
        })
}

/// Polls `check` until it holds (the test's bound stops a wait that never ends).
async fn until(mut check: impl FnMut() -> bool) {
    while !check() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn zones_load_before_the_first_frame_follow_navixy_and_survive_a_failed_refresh() {
    bounded(async {
        let sim = simulator(sim_options()).await;
        let shared = SharedContext::new();
        let mut running = start_source(sim.clone(), source_with_context(&sim, &shared));
        running.next_frame().await;
        assert!(
            shared.is_loaded(),
            "the context loads before the subscription"
        );
        assert_eq!(zone_labels(&shared), ["Depot", "Yard", "Corridor"]);

        // An operator renames the yard in Navixy: the next refresh brings it.
        sim.update_context(|c| {
            if let Some(yard) = c.zones.iter_mut().find(|z| z.label == "Yard") {
                yard.label = "Yard West".into();
            }
        });
        until(|| zone_labels(&shared) == ["Depot", "Yard West", "Corridor"]).await;

        // Navixy fails `zone/list`: refreshes fail and the last good zones stay.
        let failed = shared.failed_refreshes();
        sim.fail_context(Some(1));
        sim.update_context(|c| c.zones.retain(|z| z.label != "Corridor"));
        until(|| shared.failed_refreshes() >= failed + 2).await;
        assert_eq!(zone_labels(&shared), ["Depot", "Yard West", "Corridor"]);
        assert!(running.health.snapshot().connected, "the stream goes on");

        sim.fail_context(None);
        until(|| zone_labels(&shared) == ["Depot", "Yard West"]).await;
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn without_navixy_at_start_the_stream_starts_and_the_zones_come_later() {
    bounded(async {
        let sim = simulator(sim_options()).await;
        sim.fail_context(Some(1));
        let shared = SharedContext::new();
        let mut running = start_source(sim.clone(), source_with_context(&sim, &shared));
        running.next_frame().await;
        assert!(!shared.is_loaded());
        assert!(shared.failed_refreshes() >= 1);
        sim.fail_context(None);
        until(|| shared.is_loaded()).await;
        assert_eq!(zone_labels(&shared), ["Depot", "Yard", "Corridor"]);
        running.stop().await;
    })
    .await;
}

/// The simulated account's groups, tags and drivers reach conditions, templates and the
/// alert's labels; its zones are `in_zone`'s once `zones.navixy` imports them.
#[tokio::test]
async fn rules_read_the_simulated_accounts_groups_tags_drivers_and_zones() {
    bounded(async {
        let sim = simulator(sim_options()).await;
        let shared = SharedContext::new();
        let running = start_source(sim.clone(), source_with_context(&sim, &shared));
        until(|| shared.is_loaded()).await;

        let yaml = r#"rules:
  - name: at_the_depot
    when: in_zone("Depot") && tracker.group != ()
    annotations:
      summary: "{{ tracker.label }} of {{ tracker.group }} at the depot, driven by {{ tracker.driver.name }}; tags: {{ tracker.tags | join(', ') }}"
"#;
        let options = LoadOptions {
            import_zones: true,
            ..LoadOptions::default()
        };
        let set = RuleSet::from_sources(&[(PathBuf::from("rules.yaml"), yaml.into())], &options)
            .unwrap_or_else(|e| panic!("{e:?}"))
            .with_navixy_context(shared.clone());
        let set = Arc::new(set);
        let mut cache = ShardCache::new(set.history_policy(), chrono_tz::UTC);
        for info in sim.trackers() {
            cache.set_info(info);
        }
        let mut eval = Evaluator::new(set);
        let mut out: Vec<AlertTransition> = Vec::new();
        let now = Utc::now();
        for id in [21_001, 21_005] {
            let mut state: SourceState = serde_json::from_value(serde_json::json!({
                "gps": { "location": { "lat": DEPOT.0, "lng": DEPOT.1 } }
            }))
            .unwrap();
            state.last_update = Some(NavixyTime::Instant(now));
            let tracker = cache.apply(Update::State {
                tracker_id: id,
                state: Box::new(state),
            });
            eval.on_update(tracker, now, true, &mut out);
        }
        // Truck 5 is in Navixy's default group: no group, no alert.
        let [alert] = &out[..] else {
            panic!("{out:#?}")
        };
        assert_eq!(alert.tracker.as_ref().map(|t| t.id), Some(21_001));
        let label = sim
            .trackers()
            .into_iter()
            .find(|t| t.id == 21_001)
            .and_then(|t| t.label)
            .unwrap();
        assert_eq!(
            alert.annotations["summary"],
            format!("{label} of Dispatch North at the depot, driven by Ida Richter; tags: heavy, leased")
        );
        assert_eq!(alert.labels.get("group").map(String::as_str), Some("Dispatch North"));
        assert_eq!(alert.labels.get("driver").map(String::as_str), Some("Ida Richter"));
        running.stop().await;
    })
    .await;
}
