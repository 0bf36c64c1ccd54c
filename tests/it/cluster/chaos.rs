//! Chaos in a cluster: two or three `navixy-alerts run` processes on one private
//! PostgreSQL server, one Navixy simulator (in this process, over the Navixy protocol)
//! that all of them would connect to, and one webhook receiver that records every
//! request. The owner of the source is killed (`kill -9`) mid-stream and mid-delivery,
//! frozen past its lease (SIGSTOP) and thawed, and the database is restarted under load.
//!
//! The verdict, by notification id: every alert the rules must fire arrives (`known`
//! fires once per tracker of the fleet and never resolves); no alert fires twice without a
//! resolve in between (a re-fire would come under a second id); an id is accepted twice
//! only if its request was in flight at the fault; every notification in the outbox was
//! sent. Takeover time (the owner's death until a peer holds the lease and delivers) is
//! printed and held to two leases plus the polling slack.

use crate::system::free_port;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use parking_lot::Mutex;
use tokio::sync::Notify;

use navixy_alerts::navixy::simulator::SimulatorHandle;
use navixy_alerts::store::testing::{PgServer, shared_or_skip};

use super::support::connect;
use crate::ops::chaos::{
    Delivered, Request, assert_no_refire, assert_same_body_per_id, bounded, sim_options, simulator,
};

/// The lease of every instance: short, so that a takeover takes seconds.
const LEASE: Duration = Duration::from_secs(2);
/// How often the test looks at the database and the receiver.
const POLL: Duration = Duration::from_millis(50);
/// What the test's polling and the instances' outbox poll add to a takeover.
const SLACK: Duration = Duration::from_secs(2);
/// The trackers of the simulated fleet: `known` fires once for each.
const TRACKERS: usize = 20;

// ---------------------------------------------------------------------------------------
// The receiver

#[derive(Default)]
struct HookState {
    requests: Vec<(Request, Instant)>,
    /// The next request is held unanswered until [`Hook::release`].
    stall_next: bool,
    stalled: Option<String>,
}

/// A webhook receiver on loopback that records every request (id, body, status) and
/// accepts it, except one it can be told to hold unanswered.
#[derive(Clone)]
struct Hook {
    addr: SocketAddr,
    state: Arc<Mutex<HookState>>,
    changed: Arc<Notify>,
    released: Arc<Notify>,
}

async fn receive(State(hook): State<Hook>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let stall = {
        let mut state = hook.state.lock();
        let stall = std::mem::take(&mut state.stall_next);
        if stall {
            state.stalled = Some(id.clone());
        }
        // A held request was never answered: status 0.
        let status = if stall { 0 } else { 200 };
        state
            .requests
            .push((Request { id, body, status }, Instant::now()));
        stall
    };
    hook.changed.notify_waiters();
    if stall {
        hook.released.notified().await;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    StatusCode::OK
}

impl Hook {
    async fn start() -> Hook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = Hook {
            addr: listener.local_addr().unwrap(),
            state: Arc::default(),
            changed: Arc::default(),
            released: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(hook.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        hook
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn requests(&self) -> Vec<Request> {
        self.state
            .lock()
            .requests
            .iter()
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Holds the next request unanswered.
    fn stall_next(&self) {
        self.state.lock().stall_next = true;
    }

    fn stalled(&self) -> Option<String> {
        self.state.lock().stalled.clone()
    }

    fn release(&self) {
        self.released.notify_waiters();
    }

    /// When the first request with an id not in `known` was accepted after `since`.
    fn first_new_after(&self, since: Instant, known: &BTreeSet<String>) -> Option<Instant> {
        self.state
            .lock()
            .requests
            .iter()
            .find(|(r, at)| *at >= since && r.ok() && !known.contains(&r.id))
            .map(|(_, at)| *at)
    }

    /// The ids accepted between `from` and `to`.
    fn accepted_between(&self, from: Instant, to: Instant) -> BTreeSet<String> {
        self.state
            .lock()
            .requests
            .iter()
            .filter(|(r, at)| r.ok() && *at >= from && *at <= to)
            .map(|(r, _)| r.id.clone())
            .collect()
    }

    fn accepted_ids(&self) -> BTreeSet<String> {
        self.requests()
            .into_iter()
            .filter(Request::ok)
            .map(|r| r.id)
            .collect()
    }

    async fn wait(&self, what: &str, within: Duration, done: impl Fn(&[Request]) -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let changed = self.changed.notified();
            if done(&self.requests()) {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!(
                    "timed out waiting for {what} ({} requests so far)",
                    self.requests().len()
                );
            }
        }
    }

    /// Each notification once, as first accepted, in that order.
    fn delivered(&self) -> Vec<Delivered> {
        let mut seen = BTreeSet::new();
        self.requests()
            .into_iter()
            .filter(|r| r.ok() && seen.insert(r.id.clone()))
            .map(|r| Delivered::parse(&r))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// The instances

/// One `navixy-alerts run` process, its output in a log file; killed when dropped.
struct Instance {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Instance {
    fn spawn(dir: &Path, name: &str, config: &str) -> Instance {
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, config).unwrap();
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).expect("the log file");
        let err = out.try_clone().expect("the log file");
        let child = Command::new(env!("CARGO_BIN_EXE_navixy-alerts"))
            .arg("run")
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start navixy-alerts");
        Instance {
            name: name.to_owned(),
            child,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) on our own child's pid; it has not been reaped (we hold `child`).
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let status = self.child.wait().expect("wait for the killed instance");
        assert!(!status.success(), "{status:?}");
    }

    /// Waits (bounded) for the process to exit by itself.
    async fn exited(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {within:?}\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    async fn terminate(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        self.signal(libc::SIGTERM);
        let status = self.exited(Duration::from_secs(30)).await;
        assert!(
            status.success(),
            "{}: {status:?}\n{}",
            self.name,
            self.log()
        );
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

/// Every instance's config: the same but for `cluster.instance` and the admin port.
fn config(name: &str, api_url: &str, hook_url: &str, db_url: &str) -> String {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ops/rules.yaml");
    format!(
        r#"source:
  navixy:
    api_url: {api_url}
    login: demo
    password: demo
    timezone: UTC
    max_backoff: 200ms
    source_down_after: 10m
rules: ["{rules}"]
engine: {{ workers: 2, eval_interval: 1s, max_event_age: 1d }}
channels:
  hook: {{ type: webhook, url: "{hook_url}", timeout: 10s }}
routes:
  - channels: [hook]
notify: {{ group_by: [rule], group_wait: 0s, group_interval: 100ms, repeat_interval: 24h }}
storage: {{ postgres: {{ url: "{db_url}" }} }}
cluster: {{ instance: {name}, lease: {lease}s }}
server: {{ listen: "127.0.0.1:{port}" }}
"#,
        rules = rules.display(),
        lease = LEASE.as_secs(),
        port = free_port(),
    )
}

/// The simulator, the receiver, the database and the instances of one test.
struct Rig {
    dir: tempfile::TempDir,
    sim: Option<SimulatorHandle>,
    hook: Hook,
    url: String,
    db: tokio_postgres::Client,
    instances: Vec<Instance>,
}

impl Rig {
    async fn start(url: String, names: &[&str]) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let sim = simulator(sim_options(23, 600.0)).await;
        let hook = Hook::start().await;
        let db = connect(&url).await;
        let mut rig = Rig {
            dir,
            sim: Some(sim),
            hook,
            url,
            db,
            instances: Vec::new(),
        };
        for name in names {
            rig.spawn(name);
        }
        rig
    }

    fn spawn(&mut self, name: &str) {
        let api_url = self.sim.as_ref().map(|s| s.api_url()).unwrap_or_default();
        let config = config(name, &api_url, &self.hook.url(), &self.url);
        self.instances
            .push(Instance::spawn(self.dir.path(), name, &config));
    }

    fn instance(&mut self, name: &str) -> &mut Instance {
        self.instances
            .iter_mut()
            .find(|i| i.name == name)
            .unwrap_or_else(|| panic!("no instance {name}"))
    }

    fn logs(&self) -> String {
        self.instances
            .iter()
            .map(|i| format!("--- {}\n{}", i.name, i.log()))
            .collect()
    }

    /// The database's sessions, for a failure's message.
    async fn activity(&self) -> String {
        match self
            .db
            .query(
                "SELECT pid, application_name, state, coalesce(wait_event_type, ''),
                        left(query, 120)
                 FROM pg_stat_activity WHERE datname = current_database()",
                &[],
            )
            .await
        {
            Ok(rows) => rows
                .iter()
                .map(|r| {
                    let (pid, app, state, wait, query): (i32, String, String, String, String) =
                        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
                    format!("{pid} [{app}] {state} {wait}: {query}\n")
                })
                .collect(),
            Err(e) => format!("pg_stat_activity: {e}"),
        }
    }

    /// The instance holding the source's lease, if any lease is live.
    async fn owner(&self) -> Option<String> {
        let rows = self
            .db
            .query(
                "SELECT owner FROM leases
                 WHERE expires_at > (extract(epoch from clock_timestamp()) * 1000)::BIGINT",
                &[],
            )
            .await
            .ok()?;
        rows.first().map(|r| r.get(0))
    }

    /// Waits until an instance other than `not` holds the lease; its name.
    async fn wait_owner(&self, not: Option<&str>, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(owner) = self.owner().await
                && Some(owner.as_str()) != not
            {
                return owner;
            }
            assert!(
                Instant::now() < deadline,
                "no new owner within {within:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// `(id, status)` of the outbox rows; empty while the database is unreachable.
    async fn outbox(&self) -> Vec<(String, String)> {
        match connect_quietly(&self.url).await {
            Some(db) => db
                .query("SELECT id, status FROM outbox ORDER BY seq", &[])
                .await
                .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
                .unwrap_or_default(),
            None => Vec::new(),
        }
    }

    async fn pending(&self) -> BTreeSet<String> {
        self.outbox()
            .await
            .into_iter()
            .filter(|(_, s)| s == "pending")
            .map(|(id, _)| id)
            .collect()
    }

    /// Waits until every `known` tracker's firing arrived.
    async fn wait_known(&self, n: usize, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let changed = self.hook.changed.notified();
            let known = known_firings(&self.hook.delivered());
            if known.len() >= n {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!(
                    "timed out waiting for the `known` firings: {} of {n} arrived ({:?})\n\
                     outbox: {:?}\n{}",
                    known.len(),
                    known.keys().collect::<Vec<_>>(),
                    self.outbox().await,
                    self.logs()
                );
            }
        }
    }

    /// What a fault leaves behind: the pending notifications the receiver had accepted
    /// already (or held): the only ones that may arrive again.
    async fn in_flight(&self) -> BTreeSet<String> {
        let accepted = self.hook.accepted_ids();
        let mut out: BTreeSet<String> = self
            .pending()
            .await
            .intersection(&accepted)
            .cloned()
            .collect();
        out.extend(self.hook.stalled());
        out
    }

    /// Ends a test: the stream stops, everything decided is delivered, the instances stop;
    /// then the verdict.
    async fn settle(mut self, may_repeat: &BTreeSet<String>) {
        self.wait_known(TRACKERS, Duration::from_secs(60)).await;
        if let Some(sim) = self.sim.take() {
            sim.shutdown().await;
        }
        // Decided: the outbox once every row in it was sent and accepted, read in one go
        // (a timer of the rules may still decide one more after the stream stopped).
        let deadline = Instant::now() + Duration::from_secs(60);
        let decided: BTreeSet<String> = loop {
            let rows = self.outbox().await;
            let accepted = self.hook.accepted_ids();
            if !rows.is_empty()
                && rows
                    .iter()
                    .all(|(id, s)| s == "sent" && accepted.contains(id))
            {
                break rows.into_iter().map(|(id, _)| id).collect();
            }
            assert!(
                Instant::now() < deadline,
                "not delivered: {:?}\n{}",
                rows.iter()
                    .filter(|(id, s)| s != "sent" || !accepted.contains(id))
                    .collect::<Vec<_>>(),
                self.logs()
            );
            tokio::time::sleep(POLL).await;
        };
        self.hook.release();
        // The owner last, so that no standby takes over (and decides) at the end.
        let owner = self.owner().await;
        self.instances
            .sort_by_key(|i| Some(i.name.as_str()) == owner.as_deref());
        for i in &mut self.instances {
            i.terminate().await;
        }
        let in_the_end: BTreeSet<String> =
            self.outbox().await.into_iter().map(|(id, _)| id).collect();
        verdict(&self, &decided, &in_the_end, may_repeat);
    }
}

async fn connect_quietly(url: &str) -> Option<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Some(client)
}

/// The `known` fingerprints fired, with how many times each.
fn known_firings(delivered: &[Delivered]) -> BTreeMap<String, usize> {
    let mut firings: BTreeMap<String, usize> = BTreeMap::new();
    for d in delivered {
        for (fingerprint, rule, _, status) in &d.alerts {
            if rule == "known" && status == "firing" {
                *firings.entry(fingerprint.clone()).or_default() += 1;
            }
        }
    }
    firings
}

/// `decided`: the outbox once everything was delivered; `in_the_end`: after the stop.
fn verdict(
    rig: &Rig,
    decided: &BTreeSet<String>,
    in_the_end: &BTreeSet<String>,
    may_repeat: &BTreeSet<String>,
) {
    let requests = rig.hook.requests();
    assert_same_body_per_id(&requests);
    let delivered = rig.hook.delivered();
    assert_no_refire(&delivered);
    let known = known_firings(&delivered);
    assert_eq!(known.len(), TRACKERS, "{known:?}");
    assert!(known.values().all(|n| *n == 1), "{known:?}");
    // Everything decided arrived, nothing else; an id twice only if in flight at a fault.
    let accepted = rig.hook.accepted_ids();
    let lost: Vec<_> = decided.difference(&accepted).collect();
    assert!(lost.is_empty(), "decided, never accepted: {lost:?}");
    let invented: Vec<_> = accepted.difference(in_the_end).collect();
    assert!(
        invented.is_empty(),
        "accepted, not in the outbox: {invented:?}"
    );
    let mut accepted: BTreeMap<&str, usize> = BTreeMap::new();
    for r in requests.iter().filter(|r| r.ok()) {
        *accepted.entry(&r.id).or_default() += 1;
    }
    let doubled: Vec<_> = accepted
        .iter()
        .filter(|(id, n)| **n > 1 && !may_repeat.contains(**id))
        .collect();
    assert!(doubled.is_empty(), "accepted twice: {doubled:?}");
}

/// The time from `dead_at` until a peer held the lease and a notification decided after
/// the fault arrived; printed, and held to two leases plus slack.
async fn takeover(rig: &Rig, dead: &str, dead_at: Instant, what: &str) -> Duration {
    let owner = rig.wait_owner(Some(dead), 2 * LEASE + SLACK + LEASE).await;
    let leased_at = Instant::now();
    let leased = leased_at - dead_at;
    // A notification the new owner decided: one not accepted before it held the lease.
    let before = rig.hook.accepted_ids();
    let deadline = dead_at + 2 * LEASE + SLACK;
    while rig.hook.first_new_after(leased_at, &before).is_none() {
        assert!(
            Instant::now() < deadline,
            "{owner} delivered nothing new within two leases of {what}\n{}\n{}",
            rig.logs(),
            rig.activity().await
        );
        tokio::time::sleep(POLL).await;
    }
    let delivered = rig
        .hook
        .first_new_after(leased_at, &before)
        .map_or(leased, |at| at - dead_at);
    println!(
        "takeover after {what}: {owner} held the lease after {leased:?} and delivered after \
         {delivered:?} (lease {LEASE:?})"
    );
    assert!(
        delivered <= 2 * LEASE + SLACK,
        "takeover took {delivered:?}, more than two leases\n{}",
        rig.logs()
    );
    delivered
}

async fn database(test: &str) -> Option<String> {
    Some(shared_or_skip(test)?.create_database())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_owner_mid_stream_a_peer_takes_over_and_nothing_is_lost_or_refired() {
    let Some(url) = database("cluster::chaos::kill_9_mid_stream").await else {
        return;
    };
    bounded(async {
        let mut rig = Rig::start(url, &["a", "b", "c"]).await;
        let owner = rig.wait_owner(None, Duration::from_secs(30)).await;
        rig.wait_known(5, Duration::from_secs(60)).await;
        let dead_at = Instant::now();
        rig.instance(&owner).kill9();
        let mut may_repeat = rig.in_flight().await;
        takeover(&rig, &owner, dead_at, "kill -9 mid-stream").await;
        may_repeat.extend(rig.in_flight().await);
        rig.settle(&may_repeat).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_delivery_the_held_request_is_sent_again_under_its_id_and_nothing_else_twice() {
    let Some(url) = database("cluster::chaos::kill_9_mid_delivery").await else {
        return;
    };
    bounded(async {
        let mut rig = Rig::start(url, &["a", "b"]).await;
        let owner = rig.wait_owner(None, Duration::from_secs(30)).await;
        rig.wait_known(3, Duration::from_secs(60)).await;
        rig.hook.stall_next();
        let hook = rig.hook.clone();
        hook.wait("a held request", Duration::from_secs(30), |_| {
            hook.stalled().is_some()
        })
        .await;
        // The instance whose delivery the receiver holds (its claim stays open).
        let holder = wait_holder(&rig).await;
        println!("the held request was sent by {holder} (owner {owner})");
        let dead_at = Instant::now();
        rig.instance(&holder).kill9();
        let mut may_repeat = rig.in_flight().await;
        let stalled = rig.hook.stalled().unwrap_or_default();
        rig.hook
            // Only that it comes again; how soon is `takeover`'s bound, in one place.
            .wait(
                "the held notification again",
                Duration::from_secs(60),
                |r| r.iter().any(|r| r.ok() && r.id == stalled),
            )
            .await;
        if holder == owner {
            takeover(&rig, &owner, dead_at, "kill -9 mid-delivery").await;
        }
        may_repeat.extend(rig.in_flight().await);
        rig.settle(&may_repeat).await;
    })
    .await;
}

/// The instance whose delivery connection sits in an open transaction (the held send).
async fn wait_holder(rig: &Rig) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = rig
            .db
            .query(
                "SELECT application_name FROM pg_stat_activity
                 WHERE datname = current_database() AND state = 'idle in transaction'
                   AND application_name LIKE 'navixy-alerts delivery %'",
                &[],
            )
            .await
            .unwrap();
        if let [row] = rows.as_slice() {
            let name: String = row.get(0);
            return name
                .trim_start_matches("navixy-alerts delivery ")
                .to_owned();
        }
        assert!(Instant::now() < deadline, "no delivery holds the request");
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_owner_loses_its_lease_and_after_thawing_exits_without_committing_or_sending() {
    let Some(url) = database("cluster::chaos::sigstop").await else {
        return;
    };
    bounded(async {
        let mut rig = Rig::start(url, &["a", "b"]).await;
        let owner = rig.wait_owner(None, Duration::from_secs(30)).await;
        rig.wait_known(5, Duration::from_secs(60)).await;
        let frozen_at = Instant::now();
        rig.instance(&owner).signal(libc::SIGSTOP);
        let mut may_repeat = rig.in_flight().await;
        takeover(&rig, &owner, frozen_at, "SIGSTOP").await;
        may_repeat.extend(rig.in_flight().await);
        // Thawed, it finds its lease gone: it neither commits nor sends, and exits.
        rig.instance(&owner).signal(libc::SIGCONT);
        let status = rig.instance(&owner).exited(Duration::from_secs(30)).await;
        assert!(!status.success(), "a deposed owner must exit non-zero");
        rig.settle(&may_repeat).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_restarted_under_load_loses_nothing_and_refires_nothing() {
    if shared_or_skip("cluster::chaos::database_restart").is_none() {
        return;
    }
    let server = PgServer::start().expect("a private PostgreSQL server");
    let url = server.create_database();
    bounded(async {
        let rig = Rig::start(url, &["a", "b"]).await;
        rig.wait_owner(None, Duration::from_secs(30)).await;
        rig.wait_known(5, Duration::from_secs(60)).await;
        let before: BTreeSet<String> = rig.hook.accepted_ids();
        // In flight at the fault: pending then (its request may have just arrived).
        let pending = rig.pending().await;
        let fault_from = Instant::now();
        server.stop();
        let stopped_at = Instant::now();
        server.start_again();
        let restarted = Instant::now();
        println!("the database was down for {:?}", stopped_at.elapsed());
        let hook = rig.hook.clone();
        hook.wait(
            "deliveries after the restart",
            Duration::from_secs(60),
            |r| r.iter().any(|r| r.ok() && !before.contains(&r.id)),
        )
        .await;
        // Only requests in flight when the database went away may be sent again.
        let mut may_repeat = rig.hook.accepted_between(fault_from, restarted);
        may_repeat.extend(pending);
        rig.settle(&may_repeat).await;
    })
    .await;
}
