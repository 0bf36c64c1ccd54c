//! The snapshot Navixy sends after every subscribe (each tracker's current state) must not
//! re-fire alerts that are already firing: not after a dropped connection, not after a
//! `logout` and a new session, in the wire shapes or the documented ones. And a restart
//! must not resolve what still holds.
//!
//! How a test knows the snapshot was processed: once the simulator counts the new
//! subscription (it has sent the snapshot by then), the test injects a marker state
//! (`additional.probe = "on"`, which the `probe` rule fires on) behind it on the same
//! connection; when the marker's alert reaches the receiver, the snapshot before it has
//! been evaluated and committed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use navixy_alerts::alert::AlertStatus;
use navixy_alerts::navixy::simulator::SimulatorHandle;
use navixy_alerts::state::Lifecycle;
use navixy_alerts::store::{HistoryKind, HistoryQuery};

use super::support::OpsConfig;

use super::chaos::{
    Answer, Daemon, Hook, assert_no_refire, assert_outbox_delivered, bounded, contains, eventually,
    firing_at_receiver, outbox, sim_options, simulator, wait_receiver_agrees,
};

/// A wire `state_batch` with one state that only sets `additional.probe`.
fn probe_frame(source_id: i64) -> String {
    format!(
        r#"{{"type":"event","event":"state_batch","data":[{{"type":"source_state_event","state":{{"source_id":{source_id},"additional":{{"probe":{{"value":"on"}}}}}}}}]}}"#
    )
}

/// Once the simulator has answered `subscriptions` subscribes (and sent their snapshots),
/// sends the marker for `tracker` (its index in the fleet) and waits until its alert
/// arrived.
async fn probe(sim: &SimulatorHandle, hook: &Hook, tracker: usize, subscriptions: u64) {
    eventually("a subscription", Duration::from_secs(30), || {
        sim.stats().subscriptions >= subscriptions
    })
    .await;
    let info = &sim.trackers()[tracker];
    sim.send_raw(probe_frame(info.source_id.expect("a source id")));
    let tracker_id = format!(r#""tracker":{{"id":{}"#, info.id);
    hook.wait("the probe's alert", Duration::from_secs(30), |r| {
        r.iter().any(|r| {
            r.ok() && contains(&r.body, r#""rule":"probe""#) && contains(&r.body, &tracker_id)
        })
    })
    .await;
}

#[derive(Debug, Clone, Copy)]
enum Interruption {
    /// The connection vanishes without a close frame.
    Drop,
    /// Navixy ends the session: a new `user/auth`, a new subscribe.
    Logout,
}

async fn reconnects_refire_nothing(documented_shapes: bool, interruptions: &[Interruption]) {
    let dir = tempfile::tempdir().unwrap();
    // Real speed: the fleet hardly moves, so whatever fires after a reconnect fires
    // because of the snapshot.
    let mut options = sim_options(12, 1.0);
    options.documented_shapes = documented_shapes;
    let sim = simulator(options).await;
    let hook = Hook::start(Answer::Accept).await;
    let yaml = OpsConfig::new(&sim.api_url(), &hook.url(), &dir.path().join("alerts.db")).yaml();
    let daemon = Daemon::start(dir.path(), &yaml).await;
    let store = daemon.running.store.clone();

    // The first snapshot fires what holds; the receiver learns all of it.
    probe(&sim, &hook, 0, 1).await;
    wait_receiver_agrees(&store, &hook).await;
    let first = firing_at_receiver(&hook.delivered());
    assert!(first.len() >= 40, "{first:?}");

    for (round, how) in interruptions.iter().enumerate() {
        let subscriptions = sim.stats().subscriptions;
        let told = hook.requests().len();
        match how {
            Interruption::Drop => sim.drop_connections(),
            Interruption::Logout => sim.logout(),
        }
        probe(&sim, &hook, round + 1, subscriptions + 1).await;
        wait_receiver_agrees(&store, &hook).await;
        // After the snapshot, nothing that was firing fired again.
        let refired: Vec<String> = hook.requests()[told..]
            .iter()
            .filter(|r| r.ok())
            .flat_map(|r| {
                serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["data"]["alerts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|a| a["status"] == "firing")
                    .filter_map(|a| a["fingerprint"].as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .filter(|f| first.contains(f))
            .collect();
        assert!(
            refired.is_empty(),
            "after {how:?}: fired again: {refired:?}"
        );
    }
    assert_eq!(
        sim.stats().subscriptions,
        1 + interruptions.len() as u64,
        "one snapshot per subscribe"
    );

    daemon.stop().await;
    sim.shutdown().await;
    let rows = outbox(&store).await;
    assert_outbox_delivered(&rows, &hook, &BTreeSet::new());
    // Every alert fired once; the probes one per interruption, plus the first.
    let mut firings: BTreeMap<String, usize> = BTreeMap::new();
    for d in hook.delivered() {
        for (fingerprint, _, _, status) in d.alerts {
            if status == "firing" {
                *firings.entry(fingerprint).or_default() += 1;
            }
        }
    }
    assert!(firings.values().all(|n| *n == 1), "{firings:?}");
    assert_no_refire(&hook.delivered());
}

/// Two drops and a logout; each time a fresh snapshot of every tracker, nothing re-fired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_after_a_reconnect_refires_nothing() {
    bounded(reconnects_refire_nothing(
        false,
        &[Interruption::Drop, Interruption::Drop, Interruption::Logout],
    ))
    .await;
}

/// The same with the shapes Navixy's documentation shows (bare states, `lifecycle` events).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_snapshot_after_a_reconnect_refires_nothing() {
    bounded(reconnects_refire_nothing(true, &[Interruption::Drop])).await;
}

/// A tracker blocked when the daemon restarts sends no state (Navixy sends none while
/// blocked), and the tracker list does not say it is blocked: its firing `blocked` alert
/// must stay firing until the unblock, not resolve on the first tick after the restart.
///
/// Fails today: the restarted engine knows the tracker as `active` with no state, and the
/// restored alert resolves at the first evaluation (the receiver is told "unblocked"
/// while the tracker is still blocked). Fix: the lifecycle from `tracker/list`
/// (`source.blocked`) and the subscribe response (`blocked`), and no evaluation of a
/// restored alert before its tracker's first data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_alerts_of_blocked_trackers_firing() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        // At 60x the 4th vehicle is blocked from simulated minute 5-7 for 20 minutes:
        // from 5-7 s to 25-27 s of real time.
        let sim = simulator(sim_options(13, 60.0)).await;
        let hook = Hook::start(Answer::Accept).await;
        let yaml =
            OpsConfig::new(&sim.api_url(), &hook.url(), &dir.path().join("alerts.db")).yaml();
        let first = Daemon::start(dir.path(), &yaml).await;
        hook.wait("a blocked tracker", Duration::from_secs(30), |r| {
            r.iter()
                .any(|r| r.ok() && contains(&r.body, r#""rule":"blocked""#))
        })
        .await;
        let store = first.running.store.clone();
        let blocked: Vec<_> = store
            .load_live_alerts()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.rule == "blocked" && r.status == AlertStatus::Firing)
            .collect();
        assert!(!blocked.is_empty());
        first.stop().await;

        let second = Daemon::start(dir.path(), &yaml).await;
        let engine = second.running.engine.clone();
        // The snapshot, a tick over every tracker, and everything before the second probe
        // evaluated and committed.
        let subscriptions = sim.stats().subscriptions;
        probe(&sim, &hook, 0, subscriptions + 1).await;
        engine.tick(second.running.clock.now());
        engine.sync().await;
        probe(&sim, &hook, 1, subscriptions + 1).await;
        for record in &blocked {
            let id = record.tracker_id.expect("a tracker");
            let state = engine.tracker(id).await.unwrap().expect("known");
            let still = firing_in(&second, &record.fingerprint.0).await;
            assert!(
                still,
                "tracker {id} (lifecycle {:?} after the restart): `blocked` resolved",
                state.lifecycle
            );
            assert_eq!(state.lifecycle, Lifecycle::Blocked);
        }
        second.stop().await;
        sim.shutdown().await;
    })
    .await;
}

async fn firing_in(daemon: &Daemon, fingerprint: &str) -> bool {
    daemon
        .running
        .store
        .load_live_alerts()
        .await
        .unwrap()
        .iter()
        .any(|r| r.fingerprint.0 == fingerprint && r.status == AlertStatus::Firing)
}

/// A stop keeps the alerts inside their `for`, and the next start resumes their wait
/// from when it began: a deploy does not reset a `for: 2h`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_the_wait_of_pending_alerts() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("waiting.yaml");
        std::fs::write(
            &rules,
            "rules:\n  - name: waiting\n    when: state.gps.speed >= 0\n    for: 24h\n",
        )
        .unwrap();
        let sim = simulator(sim_options(21, 60.0)).await;
        let hook = Hook::start(Answer::Accept).await;
        let db = dir.path().join("alerts.db");
        let yaml = OpsConfig::new(&sim.api_url(), &hook.url(), &db)
            .rules(&rules)
            .yaml();
        let pending_of = |daemon: &Daemon| {
            let engine = daemon.running.engine.clone();
            async move {
                let mut p = tokio::task::spawn_blocking(move || engine.pending_blocking())
                    .await
                    .unwrap();
                p.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
                p
            }
        };

        let first = Daemon::start(dir.path(), &yaml).await;
        let mut before = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while before.len() < 20 {
            assert!(tokio::time::Instant::now() < deadline, "{before:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
            before = pending_of(&first).await;
        }
        first.stop().await;
        let kept: i64 = rusqlite::Connection::open(&db)
            .unwrap()
            .query_row("SELECT count(*) FROM pending_alerts", [], |r| r.get(0))
            .unwrap();
        assert!(kept >= 20, "{kept} pending alerts kept");

        // A rule new to the second run fires at each tracker's first evaluation there:
        // once it has fired for all, every resumed wait has been evaluated again.
        let mut both = std::fs::read_to_string(&rules).unwrap();
        both.push_str("  - name: second_run\n    when: state.gps.speed >= 0\n");
        std::fs::write(&rules, both).unwrap();
        let second = Daemon::start(dir.path(), &yaml).await;
        let after = pending_of(&second).await;
        // Taken back (and out of the store), with the times their wait began.
        for p in &before {
            let resumed = after
                .iter()
                .find(|a| a.fingerprint == p.fingerprint)
                .unwrap_or_else(|| panic!("{} not resumed: {after:?}", p.rule));
            assert_eq!(resumed.since, p.since);
        }
        let left: i64 = second
            .running
            .store
            .call(|db| {
                db.conn()
                    .query_one("SELECT count(*) FROM pending_alerts", &[], |r| r.get(0))
            })
            .await
            .unwrap();
        assert_eq!(left, 0);

        // Each wait is in the history once: the run that began it recorded it, the one
        // that resumed it does not again.
        let history = |rule: &str| {
            let store = second.running.store.clone();
            let rule = rule.to_owned();
            async move {
                store
                    .history(HistoryQuery {
                        rule: Some(rule),
                        limit: 1000,
                        ..HistoryQuery::default()
                    })
                    .await
                    .unwrap()
                    .entries
            }
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while history("second_run").await.len() < 20 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "second_run not firing for all"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut waits: BTreeMap<String, usize> = BTreeMap::new();
        for e in history("waiting").await {
            assert_eq!(e.kind, HistoryKind::Pending, "{e:?}");
            *waits.entry(e.fingerprint).or_default() += 1;
        }
        for p in &before {
            assert_eq!(waits.get(&p.fingerprint.0), Some(&1), "{waits:?}");
        }
        second.stop().await;
        sim.shutdown().await;
    })
    .await;
}
