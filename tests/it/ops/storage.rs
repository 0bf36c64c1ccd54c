//! Storage faults under a running daemon: a full database and a removed database file.
//! `/readyz` says what is wrong, nothing is recorded as committed that was not, and a stop
//! after a lost database fails instead of claiming a checkpoint.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use navixy_alerts::config::Config;
use navixy_alerts::daemon::{self, RunOptions, Running};
use navixy_alerts::dispatch::testing::firing;
use navixy_alerts::rules::RuleSet;

/// A daemon on the simulator with no rules, its database at `dir/alerts.db`, and the
/// admin API on an ephemeral port.
struct Daemon {
    running: Running,
    base: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Daemon {
    async fn start(dir: &Path) -> Daemon {
        let yaml = r#"source:
  simulator: { trackers: 2, seed: 7, speed: 1 }
notify: { group_wait: 0s }
storage: { path: "alerts.db" }
server: { listen: "127.0.0.1:0" }
"#;
        let config = Config::from_yaml(yaml, &dir.join("config.yaml"), |_| None).unwrap();
        let rules = RuleSet::load(&config).unwrap_or_else(|e| panic!("{e:?}"));
        let (stop, stopped) = oneshot::channel::<()>();
        let (started_tx, started) = oneshot::channel();
        let task = tokio::spawn(daemon::run(
            config,
            rules,
            RunOptions::default(),
            async move {
                let _ = stopped.await;
            },
            Some(started_tx),
        ));
        let running = tokio::time::timeout(Duration::from_secs(30), started)
            .await
            .expect("the daemon starts within 30 s")
            .expect("the daemon starts");
        let addr = running.admin_addr.expect("the admin API listens");
        Daemon {
            running,
            base: format!("http://{addr}"),
            stop,
            task,
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
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the daemon stops within 30 s")
            .expect("the daemon task does not panic")
    }
}

/// Caps the database at its current size: SQLite's "database or disk is full" for every
/// commit that needs a new page.
async fn max_pages(running: &Running, pages: i64) {
    running
        .store
        .call(move |db| {
            db.conn()
                .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
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
