//! Storage faults under a running daemon: a full database and a removed database file.
//! `/readyz` says what is wrong, nothing is recorded as committed that was not, and a stop
//! after a lost database fails instead of claiming a checkpoint.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use navixy_alerts::daemon::Running;
use navixy_alerts::dispatch::testing::firing;

/// A daemon in this process on the simulator, with the admin API on an ephemeral port.
struct Daemon {
    inner: super::chaos::Daemon,
    base: String,
}

impl std::ops::Deref for Daemon {
    type Target = super::chaos::Daemon;
    fn deref(&self) -> &super::chaos::Daemon {
        &self.inner
    }
}

impl Daemon {
    /// With no rules, its database at `dir/alerts.db`.
    async fn start(dir: &Path) -> Daemon {
        Daemon::start_with(
            dir,
            r#"source:
  simulator: { trackers: 2, seed: 7, speed: 1 }
notify: { group_wait: 0s }
storage: { path: "alerts.db" }
server: { listen: "127.0.0.1:0" }
"#,
        )
        .await
    }

    /// Starts it on `yaml`, written to `dir/config.yaml` (so that a reload reads it).
    async fn start_with(dir: &Path, yaml: &str) -> Daemon {
        std::fs::write(dir.join("config.yaml"), yaml).unwrap();
        let inner = super::chaos::Daemon::start(dir, yaml).await;
        let addr = inner.running.admin_addr.expect("the admin API listens");
        Daemon {
            inner,
            base: format!("http://{addr}"),
        }
    }

    async fn readyz(&self) -> (u16, Value) {
        let response = reqwest::get(format!("{}/readyz", self.base)).await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Waits until `/readyz` answers `status`; returns its body.
    async fn wait_readyz(&self, status: u16) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (now, body) = self.readyz().await;
            if now == status {
                return body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "/readyz never answered {status}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops it as SIGTERM does; the run's result.
    async fn stop(self) -> anyhow::Result<()> {
        self.inner.finish().await
    }
}

/// Caps the database at its current size: SQLite's "database or disk is full" for every
/// commit that needs a new page.
async fn max_pages(running: &Running, pages: i64) {
    running
        .store
        .call(move |db| {
            db.conn()
                .query_one(&format!("PRAGMA max_page_count = {pages}"), &[], |_| Ok(()))?;
            Ok(())
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_database_is_not_ready_and_acknowledges_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path()).await;
    daemon.wait_readyz(200).await;

    max_pages(&daemon.running, 1).await;
    let batch: Vec<_> = (1..=300).map(|t| firing("fuel_drain", t)).collect();
    let refused = daemon
        .running
        .dispatcher
        .submit_batch(batch.clone())
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("database or disk is full"),
        "{refused}"
    );
    let body = daemon.wait_readyz(503).await;
    assert_eq!(body["storage"]["ok"], false, "{body}");
    let error = body["storage"]["error"].as_str().unwrap();
    assert!(
        error.contains("alert transitions cannot be committed")
            && error.contains("database or disk is full"),
        "{error}"
    );
    assert!(
        daemon
            .running
            .store
            .load_live_alerts()
            .await
            .unwrap()
            .is_empty()
    );

    // Space returns: the same batch commits whole, and the daemon is ready again.
    max_pages(&daemon.running, 1 << 30).await;
    daemon.running.dispatcher.submit_batch(batch).await.unwrap();
    assert_eq!(
        daemon.running.store.load_live_alerts().await.unwrap().len(),
        300
    );
    daemon.wait_readyz(200).await;
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_database_is_not_ready_and_the_stop_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path()).await;
    daemon.wait_readyz(200).await;
    let path = dir.path().join("alerts.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }

    let (status, body) = daemon.readyz().await;
    assert_eq!(status, 503, "{body}");
    let error = body["storage"]["error"].as_str().unwrap();
    assert_eq!(
        error,
        format!(
            "storage {}: the database file was removed or replaced while in use; \
             alerts recorded since are lost with it (restore the file, or restart to start anew)",
            path.display()
        )
    );

    let stopped = daemon.stop().await.unwrap_err().to_string();
    assert!(
        stopped.contains(&path.display().to_string()) && stopped.contains("removed or replaced"),
        "{stopped}"
    );
    assert!(!path.exists(), "no checkpoint recreated the file");
}

/// A tmpfs mounted on a folder, unmounted when dropped. Mounting needs root (or
/// CAP_SYS_ADMIN); without it the test that uses one is skipped.
struct Tmpfs {
    path: std::path::PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then(|| Tmpfs {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a file the daemon's threads still hold does not keep the mount busy.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// Writes zeros to `path` until the filesystem has no room left.
fn fill(path: &Path) {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = file.write_all(&chunk).and_then(|()| file.sync_all()) {
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_filesystem_holds_transitions_until_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&dir.path().join("disk"), "4m") else {
        eprintln!("SKIPPED: mounting a tmpfs is not permitted here (needs root)");
        return;
    };
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let never = "rules:\n  - name: never\n    when: \"now < 0\"\n    severity: info\n";
    std::fs::write(rules.join("a.yaml"), never).unwrap();
    let yaml = format!(
        r#"source:
  simulator: {{ trackers: 3, seed: 7, speed: 1 }}
rules: ["rules/*.yaml"]
engine: {{ eval_interval: 1s }}
notify: {{ group_wait: 0s }}
storage: {{ path: "{}" }}
server: {{ listen: "127.0.0.1:0" }}
"#,
        disk.path.join("alerts.db").display()
    );
    let daemon = Daemon::start_with(dir.path(), &yaml).await;
    daemon.wait_readyz(200).await;

    // The disk fills up; then a rule fires for every tracker.
    let filler = disk.path.join("filler");
    fill(&filler);
    let always = "rules:\n  - name: watched\n    when: \"now > 0\"\n    severity: warning\n";
    std::fs::write(rules.join("a.yaml"), always).unwrap();
    daemon
        .running
        .reloader
        .reload(navixy_alerts::daemon::reload::Trigger::Api)
        .await
        .unwrap();
    let body = daemon.wait_readyz(503).await;
    let error = body["storage"]["error"].as_str().unwrap_or_default();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut error = error.to_owned();
    while !error.contains("alert transitions cannot be committed") {
        assert!(std::time::Instant::now() < deadline, "{error}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        error = daemon.readyz().await.1["storage"]["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
    }
    assert!(error.contains("database or disk is full"), "{error}");
    let store = &daemon.running.store;
    assert!(store.load_live_alerts().await.unwrap().is_empty());

    // Space returns: every firing the engine decided is committed, and nothing else.
    std::fs::remove_file(&filler).unwrap();
    daemon.wait_readyz(200).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let live = store.load_live_alerts().await.unwrap();
        if live.len() == 3 {
            assert!(live.iter().all(|r| &*r.rule == "watched"), "{live:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{live:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.stop().await.unwrap();
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_flush_that_commits_does_not_hide_failing_transitions() {
    use navixy_alerts::clock::ManualClock;
    use navixy_alerts::dispatch::testing::{config, t0};
    use navixy_alerts::dispatch::{DispatchOptions, Dispatcher};

    let dir = tempfile::tempdir().unwrap();
    let store = navixy_alerts::store::Store::open_path(&dir.path().join("alerts.db")).unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let (_stop, stopped) = oneshot::channel::<()>();
    let cfg = config(
        "channels:\n  console: { type: stdout }\nroutes:\n  - channels: [console]\nnotify: { group_wait: 30s }\n",
    );
    let dispatcher = Dispatcher::start_with(
        &cfg,
        store.clone(),
        clock.clone(),
        async move {
            let _ = stopped.await;
        },
        DispatchOptions::default(),
    )
    .await
    .unwrap();
    // One group waits for its flush.
    dispatcher.submit(firing("fuel_drain", 1)).await.unwrap();

    // Transitions that need new pages fail; the flush of the waiting group needs none.
    store
        .call(|db| {
            db.conn()
                .query_one("PRAGMA max_page_count = 1", &[], |_| Ok(()))?;
            Ok(())
        })
        .await
        .unwrap();
    let batch: Vec<_> = (2..=300).map(|t| firing("fuel_drain", t)).collect();
    dispatcher.submit_batch(batch.clone()).await.unwrap_err();
    clock.set(t0() + chrono::Duration::seconds(31));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while store.list_outbox(None, 10).await.unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the group was never flushed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = store.check_writable().await.unwrap_err().to_string();
    assert!(
        err.contains("alert transitions cannot be committed"),
        "{err}"
    );

    // Ready again only once transitions commit.
    store
        .call(|db| {
            db.conn()
                .query_one("PRAGMA max_page_count = 1073741824", &[], |_| Ok(()))?;
            Ok(())
        })
        .await
        .unwrap();
    dispatcher.submit_batch(batch).await.unwrap();
    store.check_writable().await.unwrap();
}

#[test]
fn the_binary_says_the_database_was_lost_and_exits_non_zero() {
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "source:\n  simulator: { trackers: 2, seed: 7, speed: 1 }\n\
         storage: { path: \"alerts.db\" }\nserver: { listen: \"\" }\n",
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_navixy-alerts"))
        .args(["run", "-c"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("start navixy-alerts");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !read_log().contains("Engine running.") {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon did not start within 60 s:\n{}", read_log());
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let db = dir.path().join("alerts.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let pid = libc::pid_t::try_from(child.id()).expect("a pid");
    // SAFETY: kill(2) on our own child's pid; it has not been reaped (we hold `child`).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon did not stop within 60 s:\n{}", read_log());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = read_log();
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(text.contains("Database lost"), "{text}");
    assert!(!text.contains("Database checkpointed"), "{text}");
    assert!(
        text.contains(&format!(
            "error: storage {}: the database file was removed",
            db.display()
        )),
        "{text}"
    );
}
