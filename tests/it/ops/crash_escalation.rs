//! Escalation across `kill -9`: the real binary, a live source (the simulator), one
//! webhook receiver for both channels. The steps planned when the alerts fired are in the
//! SQLite file when the process is killed, not run yet; the restarted daemon runs each
//! once, and the alerts do not fire again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use navixy_alerts::store::{Store, load_escalations};

use super::chaos::{Answer, Hook, Request, bounded, sim_options, simulator};
use super::crash::Daemon;
use super::server::always;
use super::support::OpsConfig;

/// How long after firing the pager is told: long enough that the kill, right after the
/// first notification, comes before it.
const AFTER: &str = "8s";

/// Accepted firings per channel (`requests` as the hook hands them to a wait: its lock
/// is held, so this must not ask the hook): receiver -> fingerprint -> how many
/// notifications, by id (a notification accepted just before the kill, not yet marked
/// sent, comes again with its id: at least once).
fn firings(requests: &[Request]) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut ids: BTreeMap<String, BTreeMap<String, BTreeSet<&str>>> = BTreeMap::new();
    for r in requests.iter().filter(|r| r.ok()) {
        let Ok(body) = serde_json::from_slice::<Value>(&r.body) else {
            continue;
        };
        let receiver = body["data"]["receiver"].as_str().unwrap_or_default();
        for alert in body["data"]["alerts"].as_array().into_iter().flatten() {
            if alert["status"] == "firing" {
                let fp = alert["fingerprint"].as_str().unwrap_or_default();
                ids.entry(receiver.to_owned())
                    .or_default()
                    .entry(fp.to_owned())
                    .or_default()
                    .insert(&r.id);
            }
        }
    }
    ids.into_iter()
        .map(|(receiver, fps)| {
            let counts = fps.into_iter().map(|(fp, ids)| (fp, ids.len())).collect();
            (receiver, counts)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_planned_before_a_kill_9_run_once_after_the_restart() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let mut options = sim_options(5, 60.0);
        options.trackers = 3;
        let sim = simulator(options).await;
        let hook = Hook::start(Answer::Accept).await;
        let rules = dir.path().join("always.yaml");
        std::fs::write(&rules, always("watched")).unwrap();
        let db = dir.path().join("alerts.db");
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            OpsConfig::new(&sim.api_url(), &hook.url(), &db)
                .rules(&rules)
                .group_by("[rule, tracker_id]")
                .escalate_after(AFTER)
                .yaml(),
        )
        .unwrap();

        let mut first = Daemon::spawn(&config, dir.path().join("first.log"));
        hook.wait(
            "every tracker's firing at hook",
            Duration::from_secs(60),
            |r| firings(r).get("hook").map_or(0, BTreeMap::len) == 3,
        )
        .await;
        first.kill9();
        let at_hook = firings(&hook.requests())["hook"].clone();
        assert!(
            !firings(&hook.requests()).contains_key("pager"),
            "{}",
            first.log()
        );

        // The steps are in the file, not run.
        let store = Store::open_path(&db).expect("the database");
        let planned = store.call(|db| load_escalations(db.conn())).await.unwrap();
        let mut planned: Vec<String> = planned.into_iter().map(|s| s.fingerprint.0).collect();
        planned.sort();
        assert_eq!(planned, at_hook.keys().cloned().collect::<Vec<_>>());

        let mut second = Daemon::spawn(&config, dir.path().join("second.log"));
        hook.wait(
            "every alert escalated to pager",
            Duration::from_secs(60),
            |r| firings(r).get("pager").map_or(0, BTreeMap::len) == 3,
        )
        .await;
        let at_pager = firings(&hook.requests())["pager"].clone();
        assert!(at_pager.values().all(|n| *n == 1), "{at_pager:?}");
        assert_eq!(
            at_pager.keys().collect::<Vec<_>>(),
            at_hook.keys().collect::<Vec<_>>()
        );
        // Nothing fired again at hook, and every step is done.
        assert_eq!(
            firings(&hook.requests())["hook"],
            at_hook,
            "{}",
            second.log()
        );
        let left = store.call(|db| load_escalations(db.conn())).await.unwrap();
        assert!(left.is_empty(), "{left:?}");
        second.terminate().await;
    })
    .await;
}
