//! Load tests behind `BENCHMARKS.md`.
//!
//! `latency`: the latency from a frame leaving a Navixy server to the webhook request
//! arriving at a receiver, at a steady update rate. On loopback it starts a server that
//! speaks Navixy's protocol (REST `tracker/list`; WebSocket: the Atmosphere line,
//! `subscribe` and its `response`, then `state_batch` frames of full wire states at the
//! rate asked), the real daemon (the release binary, `run -c` with the stock rules and a
//! webhook channel, `group_wait: 0s`) and a webhook receiver. Every tracker reports once
//! per round; in each round one tracker in `--alert-every` turns its ignition on (and off
//! again the next round), which the stock rule `ignition_on` alerts on. The send time of
//! each such frame is kept per tracker; the receiver looks it up when the tracker's
//! `ignition_on` firing arrives. Prints p50, p90, p99, p99.9 and max, and the daemon's
//! CPU use. `--sse-clients N` also keeps N consoles open on the daemon during the run
//! (each fetches `/` once, then reads `GET /api/v1/events` as a browser's `EventSource`
//! does) and one client that opens the stream and never reads (the daemon must drop it,
//! not wait for it).
//!
//! `decode`: decodes a recording's frames on one thread, nothing else: the baseline that
//! the end-to-end `replay` is compared with.
//!
//! `throughput` (`loadtest/throughput.rs`): a recording served as fast as the daemon reads
//! it, the daemon's CPU time and memory for it, next to `replay` of the same recording.
//!
//! ```text
//! cargo build --release --bin navixy-alerts --example loadtest --example gen_fleet
//! target/release/examples/loadtest latency --rate 20000 --seconds 30
//! target/release/examples/loadtest decode /tmp/fleet.jsonl
//! target/release/examples/loadtest throughput --trackers 8000 --minutes 30
//! ```
//!
//! The stock rule `geofence_exit` (`for: 1m`) fires for every tracker a minute after its
//! first state (the generated fleet is outside the depot), so a latency run stays under a
//! minute: `--warmup` + `--seconds` must be below 55.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{SecondsFormat, Utc};
use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use navixy_alerts::navixy::decode::decode_frame;
use navixy_alerts::navixy::messages::Frame;
use navixy_alerts::source::replay::Recording;

#[path = "loadtest/consoles.rs"]
mod consoles;
#[path = "loadtest/throughput.rs"]
mod throughput;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Frame-to-webhook latency at a steady update rate, through the real daemon.
    Latency(LatencyArgs),
    /// Decode a recording's frames alone, on one thread.
    Decode {
        /// A recording (`examples/gen_fleet.rs` writes one).
        recording: PathBuf,
    },
    /// A recording as fast as the daemon reads it: its CPU and memory, next to `replay`'s.
    Throughput(throughput::ThroughputArgs),
}

#[derive(clap::Args)]
struct LatencyArgs {
    /// Updates (full tracker states) per second.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Trackers in the fleet; each reports once per round of `trackers / rate` seconds.
    #[arg(long, default_value_t = 20_000)]
    trackers: u64,
    /// Frames per second (each a `state_batch` of `rate / frames` states).
    #[arg(long, default_value_t = 100)]
    frames: u64,
    /// One tracker in this many turns its ignition on in each round.
    #[arg(long, default_value_t = 200)]
    alert_every: u64,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Seconds of load before the first alert (connection, first states, warm caches).
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// The daemon binary; default: `navixy-alerts` next to this example's folder.
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Rule files (globs) for the daemon; default: the stock rules.
    #[arg(long)]
    rules: Option<String>,
    /// Folder for the config, the database and the daemon's log; default: a temp dir.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The daemon's `storage.path`; default: `loadtest.db` in `--dir`. `:memory:`, or a
    /// file on tmpfs (`/dev/shm/...`), shows what the disk's fsync costs; a
    /// `postgres://` URL (an empty database) runs the daemon on PostgreSQL.
    #[arg(long)]
    storage: Option<String>,
    /// The daemon's `engine.eval_interval` (the ticker that re-evaluates every tracker).
    #[arg(long, default_value = "10s")]
    eval_interval: String,
    /// Write every sample (`seconds since the start,latency ms`) to this CSV file.
    #[arg(long)]
    samples: Option<PathBuf>,
    /// Consoles following the daemon's event stream during the run, plus one that never
    /// reads (0: none, and no slow reader).
    #[arg(long, default_value_t = 0)]
    sse_clients: usize,
}

/// The daemon's `storage:` for `--storage`: a PostgreSQL URL or a SQLite path.
fn storage_yaml(storage: &str) -> String {
    if storage.starts_with("postgres://") || storage.starts_with("postgresql://") {
        format!("{{ postgres: {{ url: \"{storage}\" }} }}")
    } else {
        format!("{{ path: \"{storage}\" }}")
    }
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Mode::Latency(args) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(latency(args)),
        Mode::Decode { recording } => decode(&recording),
        Mode::Throughput(args) => throughput::throughput(args),
    }
}

// ---------------------------------------------------------------------------------------
// decode

fn decode(path: &Path) -> anyhow::Result<()> {
    let mut recording = Recording::open(path, chrono_tz::UTC)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    let (mut frames, mut updates, mut errors) = (0u64, 0u64, 0u64);
    let wall = Instant::now();
    let cpu = thread_cpu();
    // Reading lines is part of neither figure: the frames are decoded as they are read,
    // and the time of reading alone is measured in a second pass below.
    while let Some(next) = recording.next_frame() {
        let Ok(frame) = next? else {
            errors += 1;
            continue;
        };
        frames += 1;
        match decode_frame(&frame.text) {
            Ok(Frame::StateBatch { items, .. } | Frame::ReadingsBatch { items, .. }) => {
                updates += items.len() as u64
            }
            Ok(Frame::State { .. }) => updates += 1,
            Ok(_) => {}
            Err(_) => errors += 1,
        }
    }
    let (wall, cpu) = (wall.elapsed(), thread_cpu() - cpu);

    let mut recording = Recording::open(path, chrono_tz::UTC)?;
    let read_cpu = thread_cpu();
    let mut bytes = 0usize;
    while let Some(next) = recording.next_frame() {
        if let Ok(frame) = next? {
            bytes += frame.text.len();
        }
    }
    let read_cpu = thread_cpu() - read_cpu;
    let decode_cpu = cpu.saturating_sub(read_cpu);
    println!(
        "decode: {frames} frames, {updates} updates ({errors} errors), {:.1} MB of frames",
        bytes as f64 / 1e6
    );
    println!(
        "decode: wall {:.2} s ({:.0} updates/s); CPU {:.2} s ({:.0} updates per CPU-second); \
         reading lines alone {:.2} s CPU; decoding alone {:.0} updates per CPU-second",
        wall.as_secs_f64(),
        updates as f64 / wall.as_secs_f64(),
        cpu.as_secs_f64(),
        updates as f64 / cpu.as_secs_f64(),
        read_cpu.as_secs_f64(),
        updates as f64 / decode_cpu.as_secs_f64().max(1e-9),
    );
    Ok(())
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The daemon binary: `bin`, or `navixy-alerts` in the folder above this example's.
fn daemon_binary(bin: Option<&Path>) -> anyhow::Result<PathBuf> {
    let bin = match bin {
        Some(bin) => bin.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("navixy-alerts"))
            .context("cannot find the daemon binary; pass --bin")?,
    };
    if !bin.exists() {
        bail!(
            "{}: no such binary (cargo build --release --bin navixy-alerts)",
            bin.display()
        );
    }
    Ok(bin)
}

/// User + system CPU time of a process, from `/proc/PID/stat`.
fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let (utime, stime): (u64, u64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_millis((utime + stime) * 1000 / ticks))
}

// ---------------------------------------------------------------------------------------
// latency

const HASH: &str = "0123456789abcdef0123456789abcdef";
const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const FIRST_TRACKER: u64 = 100_000;
const FIRST_SOURCE: u64 = 500_000;

/// Send times (monotonic, and wall for the stages) of the frames that turned a tracker's
/// ignition on, by tracker id, and the samples measured so far.
#[derive(Default)]
struct Ledger {
    sent: Mutex<HashMap<u64, (Instant, chrono::DateTime<Utc>)>>,
    samples: Mutex<Vec<Sample>>,
    /// `ignition_on` firings that matched no send time (should stay 0).
    unmatched: AtomicU64,
    /// Other notifications (resolves, other rules).
    other: AtomicU64,
}

async fn latency(args: LatencyArgs) -> anyhow::Result<()> {
    if args.warmup + args.seconds >= 55 {
        bail!("--warmup + --seconds must stay below 55 (geofence_exit fires after a minute)");
    }
    if args.rate == 0 || args.frames == 0 || args.trackers < args.rate / args.frames {
        bail!("need --rate > 0, --frames > 0 and at least rate / frames trackers");
    }
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = daemon_binary(args.bin.as_deref())?;
    let temp = tempfile::tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;

    let ledger = Arc::new(Ledger::default());
    let receiver = start_receiver(ledger.clone()).await?;
    let rest = start_rest(generated_tracker_list(args.trackers)).await?;
    let ws_listener = TcpListener::bind("127.0.0.1:0").await?;
    let ws = ws_listener.local_addr()?;
    // The admin server's port, chosen here so that the consoles know where it is.
    let admin = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;

    let rules = args
        .rules
        .clone()
        .unwrap_or_else(|| crate_dir.join("rules/*.yaml").display().to_string());
    let config = format!(
        r#"source:
  navixy:
    api_url: http://{rest}/v2
    ws_url: ws://{ws}/v2/event/subscription
    hash: {HASH}
    timezone: UTC
    subscribe: [state_batch]
    rate_limit: 1s
rules: ["{rules}"]
engine: {{ eval_interval: {eval_interval}, max_event_age: 15m }}
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
        eval_interval = args.eval_interval,
        storage = storage_yaml(
            &args
                .storage
                .clone()
                .unwrap_or_else(|| dir.join("loadtest.db").display().to_string())
        ),
    );
    let config_path = dir.join("loadtest.yaml");
    std::fs::write(&config_path, config)?;
    let log_path = dir.join("daemon.log");
    let mut daemon = DaemonProcess::start_logged(
        "daemon",
        Command::new(&bin).args(["run", "-c"]).arg(&config_path),
        &log_path,
    )?;

    // One connection at a time; the latest one gets the stream.
    let ids = (0..args.trackers).map(|i| FIRST_TRACKER + i).collect();
    let (mut conn_rx, connections) = serve_navixy(ws_listener, ids, &["state_batch"]);
    let subscribed = {
        let waited =
            tokio::time::timeout(Duration::from_secs(30), conn_rx.wait_for(|c| c.is_some())).await;
        matches!(waited, Ok(Ok(_)))
    };
    if !subscribed {
        bail!(
            "the daemon did not subscribe within 30 s; its log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }

    let consoles = (args.sse_clients > 0)
        .then(|| consoles::Consoles::open(admin, args.sse_clients))
        .transpose()?;
    if let Some(consoles) = &consoles {
        consoles.wait_connected(Duration::from_secs(30))?;
    }
    let stream = stream(&args, conn_rx, ledger.clone(), daemon.0.id()).await?;
    // Whatever is still on its way.
    let expected = stream.alerts;
    let deadline = Instant::now() + Duration::from_secs(10);
    while (ledger.samples.lock().len() as u64) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu = process_cpu(daemon.0.id());
    // Before the daemon stops: the slow reader drains what was kept for it.
    let consoles = consoles.map(consoles::Consoles::finish);
    daemon.stop();

    let mut samples = std::mem::take(&mut *ledger.samples.lock());
    samples.sort_by_key(|s| s.sent);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    if let Some(path) = &args.samples {
        let mut csv = String::from("sent_s,total_ms,read_ms,decided_ms\n");
        let opt = |d: Option<Duration>| d.map_or(String::new(), |d| format!("{:.3}", ms(d)));
        for s in &samples {
            let _ = writeln!(
                csv,
                "{:.4},{:.3},{},{}",
                (s.sent - stream.started).as_secs_f64(),
                ms(s.total),
                opt(s.read),
                opt(s.decided)
            );
        }
        std::fs::write(path, csv)?;
    }
    println!(
        "load: {} updates in {:.2} s ({:.0} updates/s) in {} frames; sender behind schedule by at most {:.1} ms; {} connection(s)",
        stream.updates,
        stream.elapsed.as_secs_f64(),
        stream.updates as f64 / stream.elapsed.as_secs_f64(),
        stream.frames,
        ms(stream.max_lag),
        connections.load(Ordering::Relaxed),
    );
    if let (Some(cpu), Some(before)) = (cpu, stream.daemon_cpu_at_start) {
        let used = cpu.saturating_sub(before);
        println!(
            "daemon CPU during the measured load: {:.2} s of {:.2} s ({:.0} % of one core)",
            used.as_secs_f64(),
            stream.measured.as_secs_f64(),
            100.0 * used.as_secs_f64() / stream.measured.as_secs_f64()
        );
    }
    println!(
        "alerts: {} ignition_on firings sent, {} arrived ({} unmatched), {} other notifications",
        expected,
        samples.len(),
        ledger.unmatched.load(Ordering::Relaxed),
        ledger.other.load(Ordering::Relaxed),
    );
    let stage = |name: &str, values: Vec<Duration>| {
        let d = Distribution::new(values);
        println!(
            "{name}: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            ms(d.pct(0.50)),
            ms(d.pct(0.90)),
            ms(d.pct(0.99)),
            ms(d.pct(0.999)),
            ms(d.max()),
        );
    };
    // Stages first (wall clock, millisecond times in the payload), the total last.
    stage(
        "  send -> engine has decoded the frame",
        samples.iter().filter_map(|s| s.read).collect(),
    );
    stage(
        "  decoded -> notification decided",
        samples
            .iter()
            .filter_map(|s| Some(s.decided?.saturating_sub(s.read?)))
            .collect(),
    );
    stage(
        "  decided -> webhook request (commit, HTTP)",
        samples
            .iter()
            .filter_map(|s| Some(s.total.saturating_sub(s.decided?)))
            .collect(),
    );
    stage(
        "frame -> webhook",
        samples.iter().map(|s| s.total).collect(),
    );
    if let Some(report) = consoles {
        println!("{report}");
    }
    if let Some(keep) = &args.dir {
        eprintln!("kept: {}", keep.display());
    }
    Ok(())
}

/// One `ignition_on` firing: when its frame was sent, the whole latency, and when (after
/// the send) the engine read the frame and the dispatcher decided the notification.
struct Sample {
    sent: Instant,
    total: Duration,
    read: Option<Duration>,
    decided: Option<Duration>,
}

/// Sorted durations.
struct Distribution(Vec<Duration>);

impl Distribution {
    fn new(mut values: Vec<Duration>) -> Distribution {
        values.sort();
        Distribution(values)
    }
    /// The smallest value at or above the `p` quantile (nearest rank).
    fn pct(&self, p: f64) -> Duration {
        let n = self.0.len();
        if n == 0 {
            return Duration::ZERO;
        }
        self.0[((n as f64 * p).ceil() as usize).clamp(1, n) - 1]
    }
    fn max(&self) -> Duration {
        self.0.last().copied().unwrap_or_default()
    }
}

/// The daemon, in a process group of its own with whatever `--bin` wrapper started it
/// (`perf`, `strace`, `valgrind`, a script): stopping signals the whole group, so a
/// wrapper that does not pass the signal on leaves no daemon running into the next
/// measurement. Killed if the run ends early.
struct DaemonProcess(Child);

impl DaemonProcess {
    /// Starts `command` (stdin closed, stdout and stderr into `log_path`) in a process
    /// group of its own, and says so as `what`.
    fn start_logged(
        what: &str,
        command: &mut Command,
        log_path: &Path,
    ) -> anyhow::Result<DaemonProcess> {
        use std::os::unix::process::CommandExt as _;
        let log = std::fs::File::create(log_path)?;
        let program = command.get_program().to_owned();
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        eprintln!(
            "{what} {} (pid {}), log {}",
            program.display(),
            child.id(),
            log_path.display()
        );
        Ok(DaemonProcess(child))
    }

    /// Sends `signal` to the daemon's process group; 0 only asks whether any of the group
    /// is left.
    fn signal(&self, signal: libc::c_int) -> bool {
        let Ok(pid) = libc::pid_t::try_from(self.0.id()) else {
            return false;
        };
        // SAFETY: kill(2) on the group our child leads. The group's id stays taken, and
        // cannot name another group, while any process of it is left, the child's zombie
        // included until it is reaped.
        unsafe { libc::kill(-pid, signal) == 0 }
    }

    /// True once the child has ended (and is reaped) and nothing of its group is left: a
    /// wrapper may end before the daemon it started has drained.
    fn gone(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(Some(_))) && !self.signal(0)
    }

    fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        // Long enough for a daemon run under valgrind (`--bin` a wrapper script), which
        // drains and writes its profile at the stop.
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if self.gone() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal(libc::SIGKILL);
        let _ = self.0.wait();
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if !self.gone() {
            self.signal(libc::SIGKILL);
            let _ = self.0.wait();
        }
    }
}

/// A Navixy WebSocket on `listener` sending `events`: the client's subscription as it
/// comes (one connection at a time, the latest one gets the stream), and how many times
/// it connected.
fn serve_navixy(
    listener: TcpListener,
    ids: Vec<u64>,
    events: &'static [&'static str],
) -> (watch::Receiver<Option<ConnectionSink>>, Arc<AtomicU64>) {
    let (conn_tx, conn_rx) = watch::channel::<Option<ConnectionSink>>(None);
    let connections = Arc::new(AtomicU64::new(0));
    tokio::spawn(accept_loop(
        listener,
        ids,
        events,
        conn_tx,
        connections.clone(),
    ));
    (conn_rx, connections)
}

type ConnectionSink = Arc<
    tokio::sync::Mutex<
        futures_util::stream::SplitSink<tokio_tungstenite::WebSocketStream<TcpStream>, Message>,
    >,
>;

/// Accepts WebSocket connections: the Atmosphere line, the answer to `subscribe` (every
/// tracker of `ids` `normal` in each of `events`), then hands the connection to the stream.
async fn accept_loop(
    listener: TcpListener,
    ids: Vec<u64>,
    events: &'static [&'static str],
    connection: watch::Sender<Option<ConnectionSink>>,
    connections: Arc<AtomicU64>,
) {
    let mut statuses = String::from("{");
    for (n, id) in ids.iter().enumerate() {
        if n > 0 {
            statuses.push(',');
        }
        let _ = write!(statuses, r#""{id}":"normal""#);
    }
    statuses.push('}');
    let data: Vec<String> = events
        .iter()
        .map(|e| format!(r#""{e}":{{"value":{statuses}}}"#))
        .collect();
    let names: Vec<String> = events.iter().map(|e| format!(r#""{e}""#)).collect();
    let response: Arc<str> = format!(
        r#"{{"type":"response","action":"subscription/subscribe","events":[{}],"data":{{{}}}}}"#,
        names.join(","),
        data.join(",")
    )
    .into();
    while let Ok((tcp, _)) = listener.accept().await {
        let response = response.clone();
        let _ = tcp.set_nodelay(true);
        connections.fetch_add(1, Ordering::Relaxed);
        let connection = connection.clone();
        tokio::spawn(async move {
            let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            let (mut sink, mut source) = ws.split();
            let handshake = format!("{}|30000|X|", uuid::Uuid::new_v4());
            if sink.send(Message::text(handshake)).await.is_err() {
                return;
            }
            let sink = Arc::new(tokio::sync::Mutex::new(sink));
            while let Some(Ok(message)) = source.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                if text.contains("\"subscribe\"") {
                    if sink
                        .lock()
                        .await
                        .send(Message::text(response.to_string()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    connection.send_replace(Some(sink.clone()));
                }
                // `X` heartbeats and anything else: read and ignored.
            }
        });
    }
}

/// The `tracker/list` response of the latency test's generated fleet.
fn generated_tracker_list(trackers: u64) -> String {
    let mut list = String::from(r#"{"success":true,"list":["#);
    for i in 0..trackers {
        if i > 0 {
            list.push(',');
        }
        let _ = write!(
            list,
            r#"{{"id":{},"label":"Truck {}","group_id":1,"clone":false,"source":{{"id":{},"device_id":"35617306{:07}","model":"teltonika_fmb920","blocked":false,"tariff_id":1,"phone":null,"status_listing_id":null,"creation_date":"2024-03-01 10:00:00","tariff_end_date":null}}}}"#,
            FIRST_TRACKER + i,
            i + 1,
            FIRST_SOURCE + i,
            i
        );
    }
    list.push_str("]}");
    list
}

/// Navixy's REST calls the daemon makes: `user/auth` (any login) answers a session hash,
/// every other call the `tracker/list` response `list`.
async fn start_rest(list: String) -> anyhow::Result<SocketAddr> {
    let list: Arc<str> = list.into();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let list = list.clone();
        async move {
            // The fleet has no zones, groups, tags or drivers: their lists are empty.
            let path = uri.path();
            let body = if path.ends_with("/user/auth") {
                format!(r#"{{"success":true,"hash":"{HASH}"}}"#)
            } else if path.ends_with("/tracker/list") {
                list.as_ref().to_owned()
            } else {
                r#"{"success":true,"list":[]}"#.to_owned()
            };
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// The webhook receiver: the arrival time of each `ignition_on` firing against the send
/// time of the frame that caused it.
async fn start_receiver(ledger: Arc<Ledger>) -> anyhow::Result<SocketAddr> {
    async fn hook(State(ledger): State<Arc<Ledger>>, body: Bytes) -> impl IntoResponse {
        let arrived = Instant::now();
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return StatusCode::BAD_REQUEST;
        };
        let alerts = body["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for alert in alerts {
            let firing = alert["status"] == "firing" && alert["rule"] == "ignition_on";
            let tracker = alert["tracker"]["id"].as_u64();
            match (firing, tracker) {
                (true, Some(id)) => match ledger.sent.lock().remove(&id) {
                    Some((sent, sent_wall)) => {
                        // The stages, from the wall clock (the daemon runs on it too):
                        // `starts_at` is the engine's clock once it decoded the frame
                        // (it reads the clock per frame, after decoding), `timestamp`
                        // the dispatcher's when it decided the notification (before
                        // its commit).
                        let wall = |v: &serde_json::Value| {
                            v.as_str()
                                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                                .map(|t| t.with_timezone(&Utc))
                        };
                        let total = arrived - sent;
                        let read = wall(&alert["starts_at"]).map(|t| t - sent_wall);
                        let decided = wall(&body["timestamp"]).map(|t| t - sent_wall);
                        ledger.samples.lock().push(Sample {
                            sent,
                            total,
                            read: read.and_then(|d| d.to_std().ok()),
                            decided: decided.and_then(|d| d.to_std().ok()),
                        });
                    }
                    None => {
                        ledger.unmatched.fetch_add(1, Ordering::Relaxed);
                    }
                },
                _ => {
                    ledger.other.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        StatusCode::OK
    }
    let app = axum::Router::new().fallback(hook).with_state(ledger);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

struct Streamed {
    started: Instant,
    updates: u64,
    frames: u64,
    alerts: u64,
    elapsed: Duration,
    measured: Duration,
    max_lag: Duration,
    daemon_cpu_at_start: Option<Duration>,
}

/// Streams `rate` updates per second for `warmup + seconds`, `frames` frames per second.
async fn stream(
    args: &LatencyArgs,
    mut connection: watch::Receiver<Option<ConnectionSink>>,
    ledger: Arc<Ledger>,
    daemon_pid: u32,
) -> anyhow::Result<Streamed> {
    let per_frame = (args.rate / args.frames).max(1);
    let period = Duration::from_secs_f64(per_frame as f64 / args.rate as f64);
    let total_frames = (args.warmup + args.seconds) * args.rate / per_frame;
    let warmup_frames = args.warmup * args.rate / per_frame;
    let mut text = String::with_capacity(per_frame as usize * 1200);
    let mut crossing: Vec<u64> = Vec::new();
    let (mut next_tracker, mut updates, mut alerts) = (0u64, 0u64, 0u64);
    let mut max_lag = Duration::ZERO;
    let start = tokio::time::Instant::now();
    let started = Instant::now();
    let mut measured_from = None;
    let mut daemon_cpu_at_start = None;
    for n in 0..total_frames {
        let due = start + period * n as u32;
        tokio::time::sleep_until(due).await;
        max_lag = max_lag.max(tokio::time::Instant::now() - due);
        if n == warmup_frames {
            measured_from = Some(Instant::now());
            daemon_cpu_at_start = process_cpu(daemon_pid);
        }
        let measuring = n >= warmup_frames;
        text.clear();
        crossing.clear();
        text.push_str(r#"{"type":"event","event":"state_batch","data":["#);
        let now = Utc::now();
        let at = now.to_rfc3339_opts(SecondsFormat::Millis, true);
        let since =
            (now - chrono::Duration::minutes(10)).to_rfc3339_opts(SecondsFormat::Secs, true);
        for k in 0..per_frame {
            let i = next_tracker % args.trackers;
            let round = next_tracker / args.trackers;
            next_tracker += 1;
            let ignition = measuring && (i + round).is_multiple_of(args.alert_every);
            if ignition {
                crossing.push(FIRST_TRACKER + i);
            }
            if k > 0 {
                text.push(',');
            }
            write_state(&mut text, i, ignition, &at, &since);
        }
        text.push_str("]}");
        updates += per_frame;
        let sink = connection.borrow_and_update().clone();
        let Some(sink) = sink else {
            bail!("the daemon disconnected");
        };
        {
            let mut sent = ledger.sent.lock();
            let now = (Instant::now(), Utc::now());
            for id in &crossing {
                sent.insert(*id, now);
            }
        }
        alerts += crossing.len() as u64;
        // A reconnect replaces the sink: the next frame goes to the new connection.
        if sink
            .lock()
            .await
            .send(Message::text(text.clone()))
            .await
            .is_err()
        {
            let _ = tokio::time::timeout(Duration::from_secs(5), connection.changed()).await;
        }
    }
    let elapsed = start.elapsed();
    Ok(Streamed {
        started,
        updates,
        frames: total_frames,
        alerts,
        elapsed,
        measured: measured_from.map_or(elapsed, |t| t.elapsed()),
        max_lag,
        daemon_cpu_at_start,
    })
}

/// A full wire state of tracker `i`, parked outside the depot, ignition as given.
fn write_state(out: &mut String, i: u64, ignition: bool, at: &str, since: &str) {
    // Spread around Berlin, north-east of the depot circle.
    let lat = 52.55 + (i % 200) as f64 * 0.0007;
    let lng = 13.45 + (i / 200 % 200) as f64 * 0.0011;
    let _ = write!(
        out,
        r#"{{"type":"source_state_event","state":{{"source_id":{source},"gps":{{"updated":"{at}","signal_level":100,"location":{{"lat":{lat:.6},"lng":{lng:.6}}},"heading":{heading},"speed":0,"alt":42}},"connection_status":"active","movement_status":"parked","movement_status_update":"{since}","ignition":{ignition},"ignition_update":"{at}","gsm":{{"updated":"{at}","signal_level":80,"network_name":"Loadtest","roaming":false}},"last_update":"{at}","battery_level":95,"battery_update":"{at}","inputs":[false,false,false,false],"inputs_update":"{since}","outputs":[false,false],"outputs_update":"{since}","additional":{{"event_code":{{"value":"42","updated":"{at}"}}}}}}}}"#,
        source = FIRST_SOURCE + i,
        heading = i % 360,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `--bin` wrapper that ends at once on SIGTERM, leaving behind a process of its
    /// group that ignores the signal (a daemon still draining): stopping waits for that
    /// one too, and leaves nothing of the group running.
    #[test]
    fn stopping_waits_for_the_whole_process_group() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let log = dir.path().join("wrapper.log");
        let mut wrapper = Command::new("sh");
        wrapper.args([
            "-c",
            "sh -c 'trap \"\" TERM; echo ready; sleep 1' & trap 'exit 0' TERM; wait",
        ]);
        let mut process =
            DaemonProcess::start_logged("wrapper", &mut wrapper, &log).expect("sh starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("ready")) {
            assert!(Instant::now() < deadline, "the straggler never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        process.stop();
        assert!(
            !process.signal(0),
            "a process of the daemon's group is still running after stop"
        );
    }
}
