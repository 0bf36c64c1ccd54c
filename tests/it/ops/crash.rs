//! Crash: the real binary killed with SIGKILL in the middle of the stream and of a
//! delivery, then started again on the same SQLite file. A simulator in this process
//! serves both runs on one fixed seed; the webhook receiver refuses most notifications
//! at first, so that the kill leaves some pending.
//!
//! The promise (SPEC, Guarantees): every pending notification is sent after the restart,
//! with its id; none is lost or invented; no alert whose firing was delivered fires again
//! unless it resolved in between. Delivery is at least once: a notification the receiver
//! accepted just before the kill, but that was not yet marked sent, may come again with
//! the same id; nothing else may.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use navixy_alerts::store::{OutboxStatus, Store};

use super::chaos::{
    Answer, Hook, Request, assert_outbox_delivered, bounded, outbox, settle_stream, sim_options,
    simulator, wait_receiver_agrees,
};
use super::support::OpsConfig;

/// `navixy-alerts run -c CONFIG`, its output in a log file. Killed when dropped, so that
/// a failing test leaves no process behind.
pub(super) struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    pub(super) fn spawn(config: &Path, log: PathBuf) -> Daemon {
        let out = File::create(&log).expect("the log file");
        let err = out.try_clone().expect("the log file");
        let child = Command::new(env!("CARGO_BIN_EXE_navixy-alerts"))
            .arg("run")
            .arg("-c")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start navixy-alerts");
        Daemon { child, log }
    }

    pub(super) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) on our own child's pid; it has not been reaped (we hold `child`).
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    /// `kill -9`: no chance to flush, close or mark anything.
    pub(super) fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let status = self.child.wait().expect("wait for the killed daemon");
        assert!(!status.success(), "{status:?}");
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    pub(super) async fn terminate(&mut self) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                assert!(status.success(), "{status:?}\n{}", self.log());
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no exit within 30 s of SIGTERM\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn pending_ids(store: &Store) -> BTreeSet<String> {
    outbox(store)
        .await
        .into_iter()
        .filter(|r| r.status == OutboxStatus::Pending)
        .map(|r| r.id)
        .collect()
}

/// Pending notifications of the groups the receiver refuses (all but `known`): they stay
/// pending until the receiver changes its mind. (A `known` one is pending too, for the
/// moment before its delivery.)
async fn refused_groups_pending(store: &Store) -> usize {
    outbox(store)
        .await
        .iter()
        .filter(|r| r.status == OutboxStatus::Pending && !r.group_key.contains(r#"rule="known""#))
        .count()
}

fn refused_ids(requests: &[Request]) -> BTreeSet<&str> {
    requests
        .iter()
        .filter(|r| !r.ok())
        .map(|r| r.id.as_str())
        .collect()
}

/// What a kill left behind: the notifications still pending in the file, and those of
/// them the receiver had accepted already (the only ones that may arrive twice).
async fn after_kill(store: &Store, hook: &Hook) -> (BTreeSet<String>, BTreeSet<String>) {
    let pending = pending_ids(store).await;
    let accepted: BTreeSet<String> = hook
        .requests()
        .iter()
        .filter(|r| r.ok())
        .map(|r| r.id.clone())
        .collect();
    let in_flight = pending.intersection(&accepted).cloned().collect();
    (pending, in_flight)
}

async fn wait_accepted(hook: &Hook, ids: &BTreeSet<String>, what: &str) {
    hook.wait(what, Duration::from_secs(60), |r| {
        let ok: BTreeSet<&str> = r.iter().filter(|r| r.ok()).map(|r| r.id.as_str()).collect();
        ids.iter().all(|id| ok.contains(id.as_str()))
    })
    .await;
}

/// Two kills: the first while notifications are refused and queue up, the second while
/// the restarted daemon is delivering them; the third run finishes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_delivery_then_restart_delivers_everything_and_refires_nothing() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let sim = simulator(sim_options(11, 600.0)).await;
        // `known` alerts get through (so there are delivered firings that must not fire
        // again); every other notification is refused and waits in the outbox.
        let hook = Hook::start(Answer::AcceptContaining(r#""rule":"known""#.into())).await;
        let db = dir.path().join("alerts.db");
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            OpsConfig::new(&sim.api_url(), &hook.url(), &db).yaml(),
        )
        .unwrap();

        let mut first = Daemon::spawn(&config, dir.path().join("first.log"));
        hook.wait(
            "`known` delivered and the other groups refused",
            Duration::from_secs(60),
            |r| r.iter().any(|r| r.ok()) && refused_ids(r).len() >= 3,
        )
        .await;
        // Refused notifications hold up their groups: later ones queue behind them. The
        // file is read while the daemon writes it (WAL: readers do not block the writer).
        let store = Store::open_path(&db).expect("the database");
        let deadline = Instant::now() + Duration::from_secs(60);
        while refused_groups_pending(&store).await < 4 {
            assert!(Instant::now() < deadline, "{}", first.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        first.kill9();
        let (pending, mut may_repeat) = after_kill(&store, &hook).await;
        assert!(pending.len() >= 4, "{}", first.log());

        // The receiver accepts everything from now on. The second run is killed as soon
        // as it has delivered one of the pending notifications: mid-delivery.
        hook.answer(Answer::Accept);
        let before = hook.ok_count();
        let mut second = Daemon::spawn(&config, dir.path().join("second.log"));
        hook.wait_ok_beyond(before, "a resumed delivery").await;
        second.kill9();
        let (pending, in_flight) = after_kill(&store, &hook).await;
        may_repeat.extend(in_flight);

        let mut third = Daemon::spawn(&config, dir.path().join("third.log"));
        wait_accepted(&hook, &pending, "every notification pending at the kills").await;
        // The stream goes on after the restarts, both edges included.
        let before = hook.ok_count();
        hook.wait_ok_beyond(before + 1, "new alerts after the restart")
            .await;
        settle_stream(sim, &hook).await;
        wait_receiver_agrees(&store, &hook).await;
        third.terminate().await;

        // Only notifications in flight at a kill (accepted, not yet marked sent) may come
        // twice; everything in the outbox arrived; no alert fired twice.
        let rows = outbox(&store).await;
        if std::env::var_os("OPS_DEBUG").is_some() {
            super::chaos::debug_dump(&rows, &hook);
            eprintln!("may repeat: {may_repeat:?}");
        }
        assert_outbox_delivered(&rows, &hook, &may_repeat);
        // `known` never resolves: one firing per tracker over the three runs.
        let mut firings: BTreeMap<String, usize> = BTreeMap::new();
        for d in hook.delivered() {
            for (fingerprint, rule, _, status) in d.alerts {
                if rule == "known" {
                    assert_eq!(status, "firing");
                    *firings.entry(fingerprint).or_default() += 1;
                }
            }
        }
        assert_eq!(firings.len(), 20, "{firings:?}");
        assert!(firings.values().all(|n| *n == 1), "{firings:?}");
        let resumed = [&second, &third]
            .iter()
            .any(|d| d.log().contains("Resuming notifications pending"));
        assert!(resumed, "{}\n{}", second.log(), third.log());
    })
    .await;
}
