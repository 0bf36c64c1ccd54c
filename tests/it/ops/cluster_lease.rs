//! Two instances of the real binary on one PostgreSQL database (`cluster:`): one runs the
//! source, the other stands by and says who does; a clean stop hands the source over at
//! once; an owner whose lease was taken exits non-zero naming the new owner.

use crate::system::free_port;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use navixy_alerts::store::testing::{PgServer, shared_or_skip};
use serde_json::Value;

/// One instance: `navixy-alerts run`, its output in a log file; killed when dropped.
struct Instance {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Instance {
    /// Instance `name` with the in-process simulator as its source, a lease of 3 s, the
    /// admin API on a port of its own.
    fn start(dir: &Path, name: &str, url: &str) -> Instance {
        Instance::start_with(
            dir,
            name,
            url,
            "source:\n  simulator: { trackers: 3, seed: 7 }\n",
            "lease: 3s",
        )
    }

    /// [`Instance::start`] with this config (YAML: the sources, rules, ...) and these
    /// keys of `cluster:` besides the instance (`lease: 3s`).
    fn start_with(dir: &Path, name: &str, url: &str, body: &str, lease: &str) -> Instance {
        let port = free_port();
        let config = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!(
                "{body}\
                 storage: {{ postgres: {{ url: \"{url}\" }} }}\n\
                 server: {{ listen: \"127.0.0.1:{port}\" }}\n\
                 cluster: {{ instance: {name}, {lease} }}\n"
            ),
        )
        .unwrap();
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_navixy-alerts"))
            .arg("run")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start navixy-alerts");
        Instance { child, log, port }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        navixy_alerts::navixy::rest::install_crypto_provider();
        let response = reqwest::get(format!("http://127.0.0.1:{}{path}", self.port))
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    }

    /// `/readyz` once its `cluster` part satisfies `until` (bounded).
    async fn readyz_until(&self, what: &str, until: impl Fn(&Value) -> bool) -> (u16, Value) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((status, body)) = self.get("/readyz").await
                && let Ok(json) = serde_json::from_str::<Value>(&body)
                && until(&json["cluster"])
            {
                return (status, json);
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within 30 s\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn metrics(&self) -> String {
        self.get("/metrics").await.expect("/metrics answers").1
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child, not yet reaped (we hold `child`).
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Waits (bounded) for the process to exit on its own.
    async fn exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit within {within:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn owner_of(cluster: &Value) -> &str {
    cluster["sources"][0]["owner"].as_str().unwrap_or("")
}

/// The value of a metric line `name{source="navixy"} VALUE`.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let rest = rest.strip_prefix("{source=\"navixy\"}").unwrap_or(rest);
        rest.trim().parse().ok()
    })
}

fn database() -> Option<(&'static PgServer, String)> {
    let pg = shared_or_skip("ops::cluster_lease")?;
    let url = pg.create_database();
    Some((pg, url))
}

#[tokio::test]
async fn one_instance_runs_the_source_the_other_stands_by_and_takes_over_at_a_clean_stop() {
    let Some((_, url)) = database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut a = Instance::start(dir.path(), "a", &url);
    let (_, ready) = a
        .readyz_until("a owns the source", |c| c["role"] == "owner")
        .await;
    assert_eq!(ready["cluster"]["instance"], "a");
    assert_eq!(ready["cluster"]["owns"], serde_json::json!(["navixy"]));
    assert_eq!(ready["cluster"]["sources"][0]["epoch"], 1);
    assert_eq!(ready["cluster"]["sources"][0]["held"], true);

    let b = Instance::start(dir.path(), "b", &url);
    let (status, ready) = b.readyz_until("b stands by", |c| owner_of(c) == "a").await;
    assert_eq!(status, 200, "a standby is ready: {ready}");
    assert_eq!(ready["cluster"]["instance"], "b");
    assert_eq!(ready["cluster"]["role"], "standby");
    assert_eq!(ready["cluster"]["sources"][0]["held"], false);
    assert_eq!(ready["cluster"]["sources"][0]["live"], true);
    let standby = b.metrics().await;
    assert_eq!(
        metric(&standby, "navixy_alerts_cluster_lease_held"),
        Some(0.0),
        "{standby}"
    );
    let owner = a.metrics().await;
    assert_eq!(
        metric(&owner, "navixy_alerts_cluster_lease_held"),
        Some(1.0),
        "{owner}"
    );
    assert_eq!(
        metric(&owner, "navixy_alerts_cluster_lease_epoch"),
        Some(1.0),
        "{owner}"
    );

    // A clean stop releases the lease: b takes it at its next round, one epoch up.
    a.signal(libc::SIGTERM);
    assert!(
        a.exit(Duration::from_secs(30)).await.success(),
        "{}",
        a.log()
    );
    let (_, ready) = b
        .readyz_until("b takes over", |c| c["role"] == "owner")
        .await;
    assert_eq!(owner_of(&ready["cluster"]), "b");
    assert_eq!(ready["cluster"]["sources"][0]["epoch"], 2);
    let taken = b.metrics().await;
    assert_eq!(
        metric(&taken, "navixy_alerts_cluster_lease_held"),
        Some(1.0),
        "{taken}"
    );
    assert_eq!(
        metric(&taken, "navixy_alerts_cluster_lease_epoch"),
        Some(2.0),
        "{taken}"
    );
    assert_eq!(
        metric(&taken, "navixy_alerts_cluster_lease_takeovers_total"),
        Some(1.0),
        "{taken}"
    );
    assert!(b.log().contains("Lease acquired"), "{}", b.log());
}

#[tokio::test]
async fn an_owner_whose_lease_was_taken_exits_non_zero_naming_the_new_owner() {
    let Some((pg, url)) = database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut a = Instance::start(dir.path(), "a", &url);
    a.readyz_until("a owns the source", |c| c["role"] == "owner")
        .await;
    // Another instance took it (as after a freeze past the lease).
    let database = url.rsplit('/').next().unwrap();
    pg.psql(
        database,
        "UPDATE leases SET owner = 'b', epoch = epoch + 1, \
         expires_at = (extract(epoch from clock_timestamp()) * 1000)::bigint + 60000",
    )
    .unwrap();
    let status = a.exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(2), "{status:?}\n{}", a.log());
    let log = a.log();
    assert!(
        log.contains("source navixy: lease (epoch 1) lost, now held by `b`"),
        "{log}"
    );
}

#[tokio::test]
async fn an_owner_takes_another_sources_lease_when_it_expires_and_runs_both() {
    let Some((pg, url)) = database() else { return };
    let database = url.rsplit('/').next().unwrap().to_owned();
    let now = "(extract(epoch from clock_timestamp()) * 1000)::bigint";
    // `south` is held by an instance that is about to stop renewing.
    pg.psql(
        &database,
        &format!(
            "CREATE TABLE IF NOT EXISTS leases (source TEXT PRIMARY KEY, owner TEXT NOT NULL, epoch BIGINT NOT NULL, expires_at BIGINT NOT NULL); \
             INSERT INTO leases VALUES ('south', 'x', 4, {now} + 60000)"
        ),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sources = "sources:\n  - { name: north, simulator: { trackers: 2, seed: 1 } }\n  - { name: south, simulator: { trackers: 2, seed: 2 } }\n";
    let a = Instance::start_with(dir.path(), "a", &url, sources, "lease: 3s");
    let (_, ready) = a
        .readyz_until("a runs north", |c| c["role"] == "owner")
        .await;
    assert_eq!(ready["cluster"]["owns"], serde_json::json!(["north"]));
    assert_eq!(ready["cluster"]["sources"][1]["owner"], "x");
    // x's lease runs out: a takes south too and runs both, as a restart would.
    pg.psql(
        &database,
        &format!("UPDATE leases SET expires_at = {now} - 1 WHERE source = 'south'"),
    )
    .unwrap();
    let (_, ready) = a
        .readyz_until("a runs both", |c| {
            c["owns"].as_array().is_some_and(|o| o.len() == 2)
        })
        .await;
    assert_eq!(
        ready["cluster"]["owns"],
        serde_json::json!(["north", "south"])
    );
    assert_eq!(ready["cluster"]["sources"][1]["epoch"], 5);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !a.log().contains("Engine running") || a.log().matches("Engine running").count() < 2 {
        assert!(Instant::now() < deadline, "no second run\n{}", a.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        a.log().contains("restarting the engine with it"),
        "{}",
        a.log()
    );
}

#[tokio::test]
async fn a_killed_owners_lease_expires_and_the_standby_takes_over() {
    let Some((_, url)) = database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let a = Instance::start(dir.path(), "a", &url);
    a.readyz_until("a owns the source", |c| c["role"] == "owner")
        .await;
    let b = Instance::start(dir.path(), "b", &url);
    b.readyz_until("b stands by", |c| owner_of(c) == "a").await;
    // kill -9: nothing released; the lease runs out on the database's clock.
    a.signal(libc::SIGKILL);
    let (_, ready) = b
        .readyz_until("b takes over", |c| c["role"] == "owner")
        .await;
    assert_eq!(ready["cluster"]["sources"][0]["epoch"], 2);
    assert!(
        b.log()
            .contains("Lease acquired: this instance runs the source.")
            && b.log().contains("from=\"a\""),
        "{}",
        b.log()
    );
}

/// Counts the rows of `table` in the test database.
fn count(pg: &PgServer, database: &str, table: &str) -> i64 {
    pg.psql(database, &format!("SELECT count(*) FROM {table}"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_deposed_owners_commits_are_fenced_and_it_exits_non_zero() {
    let Some((pg, url)) = database() else { return };
    let database = url.rsplit('/').next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    // Rules that toggle with the simulated fleet, and a renewal too rare to notice the
    // loss first: the fence must.
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ops/rules.yaml");
    let body = format!(
        "source:\n  simulator: {{ trackers: 5, seed: 3 }}\nrules: [\"{}\"]\nengine: {{ eval_interval: 1s }}\n",
        rules.display()
    );
    let mut a = Instance::start_with(dir.path(), "a", &url, &body, "lease: 10m, renew: 9m");
    a.readyz_until("a owns the source", |c| c["role"] == "owner")
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(pg, &database, "history") == 0 {
        assert!(
            Instant::now() < deadline,
            "no transition committed\n{}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Taken by another instance; the UPDATE waits for a commit holding the row, so what
    // is there now is all a may ever write.
    pg.psql(
        &database,
        "UPDATE leases SET owner = 'b', epoch = epoch + 1, \
         expires_at = (extract(epoch from clock_timestamp()) * 1000)::bigint + 600000",
    )
    .unwrap();
    let (history, live) = (
        count(pg, &database, "history"),
        count(pg, &database, "live_alerts"),
    );
    let status = a.exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(2), "{status:?}\n{}", a.log());
    let log = a.log();
    assert!(
        log.contains("Alert transitions refused by the lease fence")
            && log.contains("source navixy: this instance (a) no longer holds its lease (epoch 1)"),
        "{log}"
    );
    assert_eq!(
        count(pg, &database, "history"),
        history,
        "nothing written after the takeover"
    );
    assert_eq!(count(pg, &database, "live_alerts"), live);
}

/// Rows of `history` for `rule` of this `kind` (`firing`, `resolved`, ...).
fn history_of(pg: &PgServer, database: &str, rule: &str, kind: &str) -> i64 {
    pg.psql(
        database,
        &format!("SELECT count(*) FROM history WHERE rule = '{rule}' AND kind = '{kind}'"),
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap()
}

#[tokio::test]
async fn the_instance_taking_over_resumes_the_firing_alerts_and_fires_nothing_again() {
    let Some((pg, url)) = database() else { return };
    let database = url.rsplit('/').next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ops/rules.yaml");
    let body = format!(
        "source:\n  simulator: {{ trackers: 4, seed: 3 }}\nrules: [\"{}\"]\nengine: {{ eval_interval: 1s }}\n",
        rules.display()
    );
    let mut a = Instance::start_with(dir.path(), "a", &url, &body, "lease: 3s");
    a.readyz_until("a owns the source", |c| c["role"] == "owner")
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    // `known` fires once per tracker and never resolves.
    while history_of(pg, &database, "known", "firing") < 4 {
        assert!(Instant::now() < deadline, "a fired no `known`\n{}", a.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = Instance::start_with(dir.path(), "b", &url, &body, "lease: 3s");
    b.readyz_until("b stands by", |c| owner_of(c) == "a").await;
    a.signal(libc::SIGTERM);
    assert!(
        a.exit(Duration::from_secs(30)).await.success(),
        "{}",
        a.log()
    );
    b.readyz_until("b takes over", |c| c["role"] == "owner")
        .await;
    // b evaluates (its own transitions of the toggling rules reach the history), and
    // `known` stays at one firing per tracker: resumed, not fired again.
    let seen = count(pg, &database, "history");
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(pg, &database, "history") <= seen + 3 {
        assert!(Instant::now() < deadline, "b commits nothing\n{}", b.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        history_of(pg, &database, "known", "firing"),
        4,
        "{}",
        b.log()
    );
    assert_eq!(history_of(pg, &database, "known", "resolved"), 0);
}
