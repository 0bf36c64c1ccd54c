//! `loadtest throughput`: what the live path (`run`: Navixy WebSocket → engine → outbox →
//! webhook) costs per update, next to `replay` of the same recording and rules.
//!
//! On loopback: a Navixy server (REST `user/auth` and `tracker/list` of the recording's
//! fleet; WebSocket: the Atmosphere line, `subscribe` and its `response`, then every frame
//! of the recording as fast as the daemon reads it: the socket's backpressure is the only
//! pacing), a webhook receiver that counts notifications, and the real daemon (`run -c`
//! with a SQLite file in a temp dir). Once every frame is sent, the daemon has counted
//! them (`/metrics`) and it has gone quiet (no CPU, no new transition or notification for
//! two seconds), its CPU time (`/proc/PID/stat`) and peak RSS (`VmHWM`) are read. Two
//! rates are printed: over the whole wall time, until the last notification, and until
//! the router had counted the last update (polled every 100 ms until then); between the
//! two, the last updates' notifications, which `group_interval` holds up to a second. Then
//! `replay` runs the same config, recording and tracker list as a child, measured by
//! `wait4`'s rusage.
//!
//! With `--node-red`, the same recording is then served the same way to a Node-RED flow
//! doing the two default rules by hand (`node_red.rs`), for the SPEC's comparison with a
//! hand-rolled flow.
//!
//! Without a recording, `gen_fleet` (next to this example) writes one whose last round is
//! about now: `run` reads the engine clock from the wall, and data a month old would be
//! stale there (no notifications) and old for every rule reading `since`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use navixy_alerts::source::replay::Recording;
use navixy_alerts::telemetry;

#[path = "node_red.rs"]
mod node_red;

use super::{
    ConnectionSink, DaemonProcess, SECRET, daemon_binary, process_cpu, serve_navixy, start_rest,
};

#[derive(clap::Args)]
pub struct ThroughputArgs {
    /// A recording (`gen_fleet` JSONL); default: generate one (`--trackers`, `--minutes`).
    fleet: Option<PathBuf>,
    /// The recording's saved `tracker/list` (`gen_fleet --tracker-list`); needed with a
    /// recording: the server answers it and `replay` maps source ids with it.
    #[arg(long)]
    tracker_list: Option<PathBuf>,
    /// Trackers of the generated fleet.
    #[arg(long, default_value_t = 2_000)]
    trackers: u64,
    /// Minutes of event time of the generated fleet.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Updates of the generated fleet instead of `--minutes`.
    #[arg(long, conflicts_with = "minutes")]
    updates: Option<u64>,
    /// Seconds of event time between two rounds of the generated fleet.
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// Rule files (a glob); default: `examples/bench-rules.yaml`. `stock`: `rules/*.yaml`.
    #[arg(long)]
    rules: Option<String>,
    /// The daemon binary; default: `navixy-alerts` next to this example's folder.
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Folder for the config, the database, the logs (and a generated fleet); default: a
    /// temp dir, removed at the end.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Seconds the whole live run (connect, stream, settle) and the replay may each take.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// The daemon's database: a file (default `throughput.db` in `--dir`, made anew for
    /// each run) or a `postgres://` URL (an empty database).
    #[arg(long)]
    storage: Option<String>,
    /// A Node-RED launcher (`node_modules/.bin/node-red`, version 4): also run the same
    /// recording through `examples/loadtest/node-red/flows.json`, the two default rules
    /// written by hand, and report its CPU next to `run`'s.
    #[arg(long, conflicts_with = "rules")]
    node_red: Option<PathBuf>,
}

/// The run: the live path, then `replay`, then the ratio.
pub fn throughput(args: ThroughputArgs) -> anyhow::Result<()> {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = daemon_binary(args.bin.as_deref())?;
    let temp = tempfile::tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;

    let (fleet, list_path) = match (&args.fleet, &args.tracker_list) {
        (Some(fleet), Some(list)) => (fleet.clone(), list.clone()),
        (Some(fleet), None) => bail!(
            "{}: a recording needs its tracker list (--tracker-list, as `gen_fleet --tracker-list` wrote it)",
            fleet.display()
        ),
        (None, _) => generate(&args, &dir)?,
    };
    let list = std::fs::read_to_string(&list_path)
        .with_context(|| format!("{}: cannot read", list_path.display()))?;
    let ids = tracker_ids(&list).with_context(|| format!("{}", list_path.display()))?;
    let first_at = first_frame_time(&fleet)?;

    let rules = match args.rules.as_deref() {
        None => crate_dir
            .join("examples/bench-rules.yaml")
            .display()
            .to_string(),
        Some("stock") => crate_dir.join("rules/*.yaml").display().to_string(),
        Some(glob) => glob.to_owned(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let storage = match &args.storage {
        Some(storage) => storage.clone(),
        None => {
            // A database left by an earlier run in the same `--dir` holds its alerts as
            // firing: the repeats would not be notified, and the figures not comparable.
            let db = dir.join("throughput.db");
            for suffix in ["", "-wal", "-shm"] {
                let file = PathBuf::from(format!("{}{suffix}", db.display()));
                if file.exists() {
                    std::fs::remove_file(&file)
                        .with_context(|| format!("{}: cannot remove", file.display()))?;
                }
            }
            db.display().to_string()
        }
    };
    let timeout = Duration::from_secs(args.timeout);
    let live = runtime.block_on(async {
        tokio::time::timeout(
            timeout,
            live(
                &bin,
                &dir,
                &fleet,
                list.clone(),
                ids.clone(),
                &rules,
                first_at,
                &storage,
            ),
        )
        .await
        .unwrap_or_else(|_| bail!("the live run took longer than --timeout {timeout:?}"))
    })?;
    let flowed = match &args.node_red {
        Some(node_red) => Some(runtime.block_on(async {
            tokio::time::timeout(timeout, node_red::flow(node_red, &dir, &fleet, list, ids))
                .await
                .unwrap_or_else(|_| {
                    bail!("the Node-RED run took longer than --timeout {timeout:?}")
                })
        })?),
        None => None,
    };
    drop(runtime);

    let replay = replay(
        &bin,
        &dir,
        &live.config,
        &fleet,
        &list_path,
        Duration::from_secs(args.timeout),
    )?;
    report(&live, &replay, flowed.as_ref());
    if args.dir.is_some() {
        eprintln!("kept: {}", dir.display());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// the recording

/// Writes a fleet with `gen_fleet` into `dir`, its last round about now.
fn generate(args: &ThroughputArgs, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let gen_fleet = std::env::current_exe()?
        .parent()
        .map(|d| d.join("gen_fleet"))
        .context("cannot find gen_fleet next to this example")?;
    if !gen_fleet.exists() {
        bail!(
            "{}: no such binary (cargo build --release --example gen_fleet)",
            gen_fleet.display()
        );
    }
    let (fleet, list) = (dir.join("fleet.jsonl"), dir.join("fleet-trackers.json"));
    let interval = args.interval.max(1);
    // A round holds every tracker's state, and every third one its readings too.
    let seconds = match args.updates {
        Some(updates) => updates * 3 / (args.trackers.max(1) * 4) * interval,
        None => args.minutes * 60,
    };
    let start = Utc::now() - chrono::Duration::seconds(seconds as i64);
    let mut command = Command::new(&gen_fleet);
    command
        .arg("--trackers")
        .arg(args.trackers.to_string())
        .arg("--interval")
        .arg(interval.to_string())
        .arg("--start")
        .arg(start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .arg("--out")
        .arg(&fleet)
        .arg("--tracker-list")
        .arg(&list);
    match args.updates {
        Some(updates) => command.arg("--updates").arg(updates.to_string()),
        None => command.arg("--minutes").arg(args.minutes.to_string()),
    };
    let status = command
        .status()
        .with_context(|| format!("starting {}", gen_fleet.display()))?;
    if !status.success() {
        bail!("{} failed: {status}", gen_fleet.display());
    }
    Ok((fleet, list))
}

/// The tracker ids of a saved `tracker/list` response.
fn tracker_ids(list: &str) -> anyhow::Result<Vec<u64>> {
    let value: serde_json::Value =
        serde_json::from_str(list).context("not a tracker/list response (JSON)")?;
    let items = value["list"]
        .as_array()
        .context("not a tracker/list response: no `list` array")?;
    items
        .iter()
        .enumerate()
        .map(|(n, item)| {
            item["id"]
                .as_u64()
                .with_context(|| format!("list[{n}]: no numeric `id`"))
        })
        .collect()
}

/// The recording time of the first frame: how old the data is, for `max_event_age`.
fn first_frame_time(fleet: &Path) -> anyhow::Result<chrono::DateTime<Utc>> {
    let mut recording = Recording::open(fleet, chrono_tz::UTC)
        .with_context(|| format!("{}: cannot open", fleet.display()))?;
    while let Some(next) = recording.next_frame() {
        if let Ok(frame) = next.with_context(|| format!("{}: cannot read", fleet.display()))? {
            return frame.at.with_context(|| {
                format!(
                    "{}: the first frame has no recording time (`at`)",
                    fleet.display()
                )
            });
        }
    }
    bail!("{}: no frames", fleet.display())
}

// ---------------------------------------------------------------------------------------
// the live path

/// What the webhook receiver saw: requests, and the alerts in them by status.
#[derive(Default)]
struct Received {
    notifications: AtomicU64,
    firing: AtomicU64,
    resolved: AtomicU64,
}

impl Received {
    fn total(&self) -> u64 {
        self.notifications.load(Ordering::Relaxed)
    }
}

/// The live run's figures.
struct Live {
    config: PathBuf,
    frames: u64,
    updates: u64,
    transitions: u64,
    /// Of `transitions`, the waits inside a `for` that `run` reports for the history and
    /// `replay` does not.
    waits: u64,
    wall: Duration,
    /// Until the router had counted every update.
    routed: Duration,
    cpu: Duration,
    peak_rss_kib: Option<u64>,
    received: Arc<Received>,
}

#[allow(clippy::too_many_arguments)] // The run's inputs, each used once, in one place.
async fn live(
    bin: &Path,
    dir: &Path,
    fleet: &Path,
    list: String,
    ids: Vec<u64>,
    rules: &str,
    first_at: chrono::DateTime<Utc>,
    storage: &str,
) -> anyhow::Result<Live> {
    let received = Arc::new(Received::default());
    let receiver = start_counter(received.clone()).await?;
    let rest = start_rest(list).await?;
    let ws_listener = TcpListener::bind("127.0.0.1:0").await?;
    let ws = ws_listener.local_addr()?;
    // The admin port: a free one now, the daemon's a moment later.
    let admin = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;

    // Nothing in the recording may be stale on the wall clock, or `run` would not
    // notify what `replay` does.
    let age = (Utc::now() - first_at).num_seconds().max(0) + 15 * 60;
    let config = format!(
        r#"source:
  navixy:
    api_url: http://{rest}/v2
    ws_url: ws://{ws}/v2/event/subscription
    login: loadtest
    password: loadtest
    timezone: UTC
    subscribe: [state_batch, readings_batch]
rules: ["{rules}"]
engine: {{ eval_interval: 10s, max_event_age: {age}s }}
zones:
  depot: {{ circle: {{ lat: 52.52, lng: 13.40, radius_m: 300 }} }}
channels:
  hook: {{ type: webhook, url: "http://{receiver}/hook", secret: "{SECRET}", timeout: 10s }}
routes:
  - channels: [hook]
notify: {{ group_by: [rule, tracker_id], group_wait: 0s, group_interval: 1s, repeat_interval: 4h }}
storage: {storage}
server: {{ listen: "{admin}" }}
"#,
        storage = super::storage_yaml(storage),
    );
    let config_path = dir.join("throughput.yaml");
    std::fs::write(&config_path, config)?;
    let log_path = dir.join("daemon.log");
    let mut daemon = DaemonProcess::start_logged(
        "daemon",
        Command::new(bin).args(["run", "-c"]).arg(&config_path),
        &log_path,
    )?;
    let pid = daemon.0.id();
    let (mut conn_rx, connections) = serve_navixy(ws_listener, ids, NAVIXY_EVENTS);
    let (frames, started) = serve_fleet(&mut conn_rx, fleet, "the daemon", &log_path).await?;

    let settled = settle(admin, pid, frames, &received).await?;
    let cpu = process_cpu(pid).context("cannot read the daemon's CPU time")?;
    let peak_rss_kib = peak_rss_kib(pid);
    let connections = connections.load(Ordering::Relaxed);
    daemon.stop();
    if connections != 1 {
        bail!(
            "the daemon connected {connections} times: a reconnect re-reads the stream, the figures do not hold"
        );
    }
    Ok(Live {
        config: config_path,
        frames,
        updates: settled.updates,
        transitions: settled.transitions,
        waits: settled.waits,
        wall: settled.done.saturating_duration_since(started),
        routed: settled.routed.saturating_duration_since(started),
        cpu,
        peak_rss_kib,
        received,
    })
}

/// Waits (30 s at most) for the client to subscribe, then sends it every frame of `fleet`
/// as fast as it reads them: the socket's backpressure is the only pacing. Returns the
/// frames sent and when the first was.
async fn serve_fleet(
    conn_rx: &mut watch::Receiver<Option<ConnectionSink>>,
    fleet: &Path,
    client: &str,
    log_path: &Path,
) -> anyhow::Result<(u64, Instant)> {
    let waited =
        tokio::time::timeout(Duration::from_secs(30), conn_rx.wait_for(|c| c.is_some())).await;
    let sink = match waited {
        Ok(Ok(sink)) => sink.clone(),
        _ => None,
    };
    let Some(sink) = sink else {
        bail!(
            "{client} did not subscribe within 30 s; its log:\n{}",
            std::fs::read_to_string(log_path).unwrap_or_default()
        );
    };

    // The file is read on a thread of its own; the socket sets the pace.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(256);
    let reader = {
        let fleet = fleet.to_path_buf();
        std::thread::spawn(move || -> anyhow::Result<()> {
            let mut recording = Recording::open(&fleet, chrono_tz::UTC)?;
            while let Some(next) = recording.next_frame() {
                if let Ok(frame) = next?
                    && tx.blocking_send(frame.text.into_owned()).is_err()
                {
                    break;
                }
            }
            Ok(())
        })
    };
    let started = Instant::now();
    let mut frames = 0u64;
    while let Some(text) = rx.recv().await {
        if sink.lock().await.send(Message::text(text)).await.is_err() {
            bail!(
                "{client} closed the WebSocket after {frames} frames; its log: {}",
                log_path.display()
            );
        }
        frames += 1;
    }
    match reader.join() {
        Ok(read) => read.with_context(|| format!("{}: cannot read", fleet.display()))?,
        Err(_) => bail!("the recording's reader thread panicked"),
    }
    eprintln!(
        "sent {frames} frames in {:.1} s; waiting for {client}",
        started.elapsed().as_secs_f64()
    );
    Ok((frames, started))
}

/// The daemon's counters once it is done.
struct Settled {
    updates: u64,
    transitions: u64,
    /// Transitions counted with `status="pending"`.
    waits: u64,
    /// The last moment it was seen working.
    done: Instant,
    /// The first poll that found every update counted by the router (its rules evaluated
    /// a few milliseconds later): what remains until `done` is the notifications of the
    /// last updates, which `group_interval` holds back for up to a second.
    routed: Instant,
}

/// How long the daemon must stay quiet to count as done.
const QUIET: Duration = Duration::from_secs(2);
/// What the fleet's Navixy WebSocket sends, to the daemon and to Node-RED alike.
const NAVIXY_EVENTS: &[&str] = &["state_batch", "readings_batch"];
/// Below this share of one core, the daemon counts as idle (its ticker, the checkpointer).
const IDLE_CPU: f64 = 0.1;

/// Polls `/metrics` and the daemon's CPU until it has counted every frame sent and then
/// stayed quiet for [`QUIET`]: no CPU beyond [`IDLE_CPU`], no new transition, an empty
/// outbox, no new notification.
async fn settle(
    admin: SocketAddr,
    pid: u32,
    frames: u64,
    received: &Received,
) -> anyhow::Result<Settled> {
    let mut last = (Duration::ZERO, 0u64, 0u64);
    let mut done = Instant::now();
    // Polled more often until the last update is counted, which it times.
    let (mut updates, mut routed, mut counting) = (0, Instant::now(), true);
    let mut polled = Instant::now();
    loop {
        let poll = Duration::from_millis(if counting { 100 } else { 250 });
        let metrics = scrape(admin).await?;
        let seen = metric_sum(&metrics, telemetry::FRAMES) as u64;
        let counted = metric_sum(&metrics, telemetry::UPDATES) as u64;
        if counted != updates {
            (updates, routed) = (counted, Instant::now());
        } else if seen >= frames {
            counting = false;
        }
        let transitions = metric_sum(&metrics, telemetry::ALERT_TRANSITIONS) as u64;
        let outbox = metric_sum(&metrics, telemetry::OUTBOX_DEPTH);
        let cpu = process_cpu(pid).context("the daemon exited")?;
        let now = (cpu, transitions, received.total());
        let busy = seen < frames
            || outbox > 0.0
            || now.1 != last.1
            || now.2 != last.2
            || (cpu.saturating_sub(last.0)).as_secs_f64()
                > IDLE_CPU * polled.elapsed().as_secs_f64();
        polled = Instant::now();
        last = now;
        if busy {
            done = Instant::now();
        } else if done.elapsed() >= QUIET {
            return Ok(Settled {
                updates: counted,
                transitions,
                waits: metric_sum_labelled(
                    &metrics,
                    telemetry::ALERT_TRANSITIONS,
                    "status=\"pending\"",
                ) as u64,
                done,
                routed,
            });
        }
        tokio::time::sleep(poll).await;
    }
}

/// `GET /metrics` of the daemon's admin server (HTTP/1.0: the answer ends with the
/// connection).
async fn scrape(admin: SocketAddr) -> anyhow::Result<String> {
    let mut tcp = TcpStream::connect(admin)
        .await
        .with_context(|| format!("cannot reach the daemon's admin server at {admin}"))?;
    // The admin server answers only requests addressed to it (`Host` its own address).
    tcp.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {admin}\r\n\r\n").as_bytes())
        .await?;
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await?;
    match answer.split_once("\r\n\r\n") {
        Some((head, body))
            if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") =>
        {
            Ok(body.to_owned())
        }
        _ => bail!(
            "GET http://{admin}/metrics: {}",
            answer.lines().next().unwrap_or("no answer")
        ),
    }
}

/// The sum of every series of metric `name` in a Prometheus text page.
fn metric_sum(page: &str, name: &str) -> f64 {
    metric_sum_labelled(page, name, "")
}

/// [`metric_sum`] over the series whose labels contain `label` (`status="pending"`).
fn metric_sum_labelled(page: &str, name: &str, label: &str) -> f64 {
    page.lines()
        .filter(|line| {
            line.strip_prefix(name).is_some_and(|rest| {
                (rest.starts_with('{') || rest.starts_with(' '))
                    && rest
                        .split(' ')
                        .next()
                        .is_some_and(|labels| labels.contains(label))
            })
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `VmHWM` of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A webhook receiver that counts requests and the alerts in them.
async fn start_counter(received: Arc<Received>) -> anyhow::Result<SocketAddr> {
    async fn hook(State(received): State<Arc<Received>>, body: Bytes) -> StatusCode {
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return StatusCode::BAD_REQUEST;
        };
        received.notifications.fetch_add(1, Ordering::Relaxed);
        for alert in body["data"]["alerts"].as_array().into_iter().flatten() {
            let counter = match alert["status"].as_str() {
                Some("firing") => &received.firing,
                _ => &received.resolved,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        StatusCode::OK
    }
    let app = axum::Router::new().fallback(hook).with_state(received);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

// ---------------------------------------------------------------------------------------
// replay

/// `replay`'s figures.
struct Replayed {
    updates: Option<u64>,
    transitions: Option<u64>,
    wall: Duration,
    cpu: Duration,
    peak_rss_kib: u64,
}

/// Runs `replay -c config --stats --quiet --trackers list fleet` and measures it.
fn replay(
    bin: &Path,
    dir: &Path,
    config: &Path,
    fleet: &Path,
    list: &Path,
    timeout: Duration,
) -> anyhow::Result<Replayed> {
    let out_path = dir.join("replay.log");
    let out = std::fs::File::create(&out_path)?;
    let started = Instant::now();
    let child = Command::new(bin)
        .args(["replay", "-c"])
        .arg(config)
        .args(["--stats", "--quiet", "--trackers"])
        .arg(list)
        .arg(fleet)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {} replay", bin.display()))?;
    let pid = libc::pid_t::try_from(child.id())?;
    let mut status = 0;
    // SAFETY: rusage is plain data; all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 on our own child, writing into values we own.
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if reaped == pid {
            break;
        }
        if reaped < 0 {
            bail!("waiting for replay: {}", std::io::Error::last_os_error());
        }
        if started.elapsed() > timeout {
            // SAFETY: kill(2) on our own, not yet reaped, child; then reap it.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::wait4(pid, &mut status, 0, &mut usage);
            }
            bail!("replay took longer than --timeout {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let wall = started.elapsed();
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("replay failed (wait status {status}):\n{output}");
    }
    let field = |name: &str| -> Option<u64> {
        let line = output.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].split_whitespace().next()?.parse().ok()
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Replayed {
        updates: field("updates:"),
        transitions: field("transitions:"),
        wall,
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
        peak_rss_kib: usage.ru_maxrss as u64,
    })
}

// ---------------------------------------------------------------------------------------
// the report

/// `N updates[ in F frames]; wall W s (U updates/s); CPU C s (P s per million updates)`.
fn figures(updates: u64, frames: Option<u64>, wall: Duration, cpu: Duration) -> String {
    let frames = frames.map_or(String::new(), |f| format!(" in {f} frames"));
    format!(
        "{updates} updates{frames}; wall {:.2} s ({:.0} updates/s); CPU {:.2} s ({:.2} s per \
         million updates)",
        wall.as_secs_f64(),
        updates as f64 / wall.as_secs_f64().max(1e-9),
        cpu.as_secs_f64(),
        per_million(cpu, updates),
    )
}

fn per_million(cpu: Duration, updates: u64) -> f64 {
    cpu.as_secs_f64() * 1e6 / updates.max(1) as f64
}

fn rss(kib: Option<u64>) -> String {
    kib.map_or("unknown".into(), |k| {
        format!("{:.0} MiB", k as f64 / 1024.0)
    })
}

fn report(live: &Live, replay: &Replayed, flowed: Option<&node_red::Flowed>) {
    let received = &live.received;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "run:    {}; every update routed after {:.2} s ({:.0} updates/s), the rest of the wall \
         the last notifications; {} transitions ({} of them waits inside a `for`, which replay \
         does not report); {} notifications received ({} firing, {} resolved alerts); peak \
         RSS {}",
        figures(live.updates, Some(live.frames), live.wall, live.cpu),
        live.routed.as_secs_f64(),
        live.updates as f64 / live.routed.as_secs_f64().max(1e-9),
        live.transitions,
        live.waits,
        received.total(),
        received.firing.load(Ordering::Relaxed),
        received.resolved.load(Ordering::Relaxed),
        rss(live.peak_rss_kib),
    );
    let updates = replay.updates.unwrap_or(live.updates);
    let _ = writeln!(
        out,
        "replay: {}; {} transitions; peak RSS {}",
        figures(updates, None, replay.wall, replay.cpu),
        replay
            .transitions
            .map_or("unknown".into(), |t| t.to_string()),
        rss(Some(replay.peak_rss_kib)),
    );
    let _ = writeln!(
        out,
        "run / replay: {:.2}x CPU per update",
        per_million(live.cpu, live.updates) / per_million(replay.cpu, updates).max(1e-9)
    );
    if let Some(flowed) = flowed {
        let received = &flowed.received;
        let _ = writeln!(
            out,
            "node-red: {}; {} webhook requests ({} firing, {} resolved); peak RSS {}",
            figures(live.updates, Some(flowed.frames), flowed.wall, flowed.cpu),
            received.total(),
            received.firing.load(Ordering::Relaxed),
            received.resolved.load(Ordering::Relaxed),
            rss(flowed.peak_rss_kib),
        );
        let _ = writeln!(
            out,
            "node-red / run: {:.2}x CPU",
            flowed.cpu.as_secs_f64() / live.cpu.as_secs_f64().max(1e-9)
        );
    }
    let decided = live.transitions.saturating_sub(live.waits);
    if let Some(replayed) = replay.transitions
        && replayed != decided
    {
        // `run` ticks its rules on the wall clock, `replay` on the recording's, and the
        // recording's minutes pass in seconds: rules that read the clock ("no data for
        // 30 minutes", "parked for an hour") answer differently, and more so in an older
        // recording.
        let _ = writeln!(
            out,
            "warning: run made {decided} transitions besides its waits and replay \
             {replayed}: not the same work. `run` reads its rules' clock from the wall and \
             `replay` from the recording, whose minutes pass here in seconds, so rules \
             that read the clock answer differently; a FLEET recorded long ago widens \
             the gap (without one, a fresh fleet is made)."
        );
    }
    print!("{out}");
}
