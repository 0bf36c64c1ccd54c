//! The daemon on PostgreSQL (`storage.postgres.url`): an alert fires and is delivered
//! once, and across a stop and a start on the same database nothing fires again and its
//! resolve arrives once.

use std::collections::BTreeMap;
use std::time::Duration;

use navixy_alerts::store::testing;

use super::chaos::{
    Answer, Daemon, Hook, assert_no_refire, bounded, contains, eventually, sim_options, simulator,
    wait_receiver_agrees,
};
use super::support::OpsConfig;

/// `known` fires once per tracker and holds across a restart; `probe` fires on an injected
/// marker, which the simulator's own states (the snapshot after a restart) do not carry.
const RULES: &str = r#"rules:
  - name: known
    when: tracker.id > 0
    severity: info
  - name: probe
    when: state.additional.probe.value == "on"
    severity: critical
"#;

/// A wire `state_batch` setting `additional.probe` of one tracker.
fn probe_frame(source_id: i64) -> String {
    format!(
        r#"{{"type":"event","event":"state_batch","data":[{{"type":"source_state_event","state":{{"source_id":{source_id},"additional":{{"probe":{{"value":"on"}}}}}}}}]}}"#
    )
}

/// How many notifications told the receiver `status` of `rule`, each accepted once.
fn told(hook: &Hook, rule: &str, status: &str) -> usize {
    hook.delivered()
        .iter()
        .flat_map(|d| d.alerts.iter())
        .filter(|(_, r, _, s)| r == rule && s == status)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_fires_once_and_resolves_once_across_a_restart_on_postgresql() {
    let test =
        "ops::postgres::an_alert_fires_once_and_resolves_once_across_a_restart_on_postgresql";
    let Some(server) = testing::shared_or_skip(test) else {
        return;
    };
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules.yaml");
        std::fs::write(&rules, RULES).unwrap();
        let url = server.create_database();
        let mut options = sim_options(31, 1.0);
        options.trackers = 3;
        let sim = simulator(options).await;
        let hook = Hook::start(Answer::Accept).await;
        let sqlite = OpsConfig::new(&sim.api_url(), &hook.url(), &dir.path().join("alerts.db"))
            .rules(&rules)
            .yaml();
        let storage = sqlite
            .lines()
            .find(|l| l.starts_with("storage:"))
            .unwrap()
            .to_owned();
        let yaml = sqlite.replace(
            &storage,
            &format!("storage: {{ postgres: {{ url: \"{url}\" }} }}"),
        );

        let first = Daemon::start(dir.path(), &yaml).await;
        assert!(first.running.store.is_postgres());
        eventually("a subscription", Duration::from_secs(30), || {
            sim.stats().subscriptions >= 1
        })
        .await;
        let tracker = sim.trackers()[0].clone();
        sim.send_raw(probe_frame(tracker.source_id.expect("a source id")));
        hook.wait("the probe firing", Duration::from_secs(30), |r| {
            r.iter()
                .any(|r| r.ok() && contains(&r.body, r#""rule":"probe""#))
        })
        .await;
        wait_receiver_agrees(&first.running.store, &hook).await;
        first.stop().await;
        assert_eq!(told(&hook, "probe", "firing"), 1);
        assert_eq!(told(&hook, "known", "firing"), 3);
        assert!(
            !std::path::Path::new(&dir.path().join("alerts.db")).exists(),
            "no SQLite file"
        );

        // The same database: the live alerts come back; the snapshot (no probe) resolves
        // the probe's alert, and `known` still holds, so it is not told again.
        let second = Daemon::start(dir.path(), &yaml).await;
        hook.wait("the probe resolved", Duration::from_secs(30), |r| {
            r.iter().any(|r| {
                r.ok()
                    && contains(&r.body, r#""rule":"probe""#)
                    && contains(&r.body, r#""status":"resolved""#)
            })
        })
        .await;
        wait_receiver_agrees(&second.running.store, &hook).await;
        let live = second.running.store.load_live_alerts().await.unwrap();
        second.stop().await;
        sim.shutdown().await;

        assert_eq!(live.len(), 3, "{live:?}");
        assert!(live.iter().all(|a| a.rule == "known"), "{live:?}");
        let delivered = hook.delivered();
        assert_no_refire(&delivered);
        assert_eq!(told(&hook, "probe", "firing"), 1);
        assert_eq!(told(&hook, "probe", "resolved"), 1);
        assert_eq!(told(&hook, "known", "firing"), 3);
        // Each notification accepted once: none was sent again by the second run.
        let again: BTreeMap<String, usize> = hook
            .accepted_per_id()
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .collect();
        assert!(again.is_empty(), "{again:?}");
    })
    .await;
}
