//! `loadtest latency --sse-clients N`: open consoles on the daemon under test.
//!
//! Each console fetches `/` once, then follows `GET /api/v1/events` as a browser's
//! `EventSource` does: it reads every chunk as it comes and parses each event's JSON. (The
//! Alerts page also refetches its list after a transition, one request at a time per
//! page; that is not simulated here.) One more client opens the stream with a tiny
//! receive buffer and never reads until the load is over: the daemon must drop it (end
//! its stream once it falls a buffer behind), never wait for it.
//!
//! The consoles run on a thread and runtime of their own, so that they do not delay the
//! frames the load generator sends.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

#[derive(Default)]
struct Stats {
    connected: AtomicUsize,
    pages: AtomicUsize,
    /// Events read, per console.
    events: Mutex<Vec<u64>>,
    /// Streams the daemon ended while the load ran.
    ended: AtomicUsize,
    bytes: AtomicU64,
    errors: Mutex<Vec<String>>,
}

/// The consoles, running.
pub struct Consoles {
    stats: Arc<Stats>,
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<SlowReader>,
    n: usize,
}

/// What became of the client that never read.
enum SlowReader {
    /// Its stream ended (the chunked body's last chunk) after this many bytes.
    Dropped(u64),
    /// Still open this long after it started reading, with this many bytes read.
    Open(Duration, u64),
    Failed(String),
}

impl Consoles {
    /// Opens `n` consoles and the slow reader on the admin server at `admin`.
    pub fn open(admin: SocketAddr, n: usize) -> anyhow::Result<Consoles> {
        navixy_alerts::navixy::rest::install_crypto_provider();
        let stats = Arc::new(Stats::default());
        stats.events.lock().resize(n, 0);
        let (stop, stopped) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = {
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("consoles".into())
                .spawn(move || {
                    runtime.block_on(async move {
                        let http = reqwest::Client::new();
                        for i in 0..n {
                            let (http, stats, stopped) =
                                (http.clone(), stats.clone(), stopped.clone());
                            tokio::spawn(async move {
                                if let Err(e) = console(i, admin, &http, &stats, stopped).await {
                                    stats.errors.lock().push(format!("console {i}: {e:#}"));
                                }
                            });
                        }
                        slow_reader(admin, stopped).await
                    })
                })?
        };
        Ok(Consoles {
            stats,
            stop,
            thread,
            n,
        })
    }

    /// Waits until every console follows the stream (the admin server may still be
    /// starting).
    pub fn wait_connected(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while self.stats.connected.load(Ordering::Acquire) < self.n {
            if let Some(e) = self.stats.errors.lock().first() {
                bail!("{e}");
            }
            if Instant::now() > deadline {
                bail!(
                    "only {} of {} consoles connected within {within:?}",
                    self.stats.connected.load(Ordering::Acquire),
                    self.n
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops the consoles, lets the slow reader read what was kept for it, and reports.
    pub fn finish(self) -> Report {
        let _ = self.stop.send(true);
        let slow = self
            .thread
            .join()
            .unwrap_or_else(|_| SlowReader::Failed("the consoles' thread panicked".into()));
        let events = self.stats.events.lock().clone();
        let errors = self.stats.errors.lock().clone();
        Report {
            consoles: self.n,
            pages: self.stats.pages.load(Ordering::Relaxed),
            min: events.iter().copied().min().unwrap_or(0),
            max: events.iter().copied().max().unwrap_or(0),
            bytes: self.stats.bytes.load(Ordering::Relaxed),
            ended: self.stats.ended.load(Ordering::Relaxed),
            errors,
            slow,
        }
    }
}

/// What the consoles saw.
pub struct Report {
    consoles: usize,
    pages: usize,
    min: u64,
    max: u64,
    bytes: u64,
    ended: usize,
    errors: Vec<String>,
    slow: SlowReader,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "consoles: {} followed /api/v1/events ({} fetched /): {}..{} events each, {:.1} MB in all, {} stream(s) ended by the daemon",
            self.consoles,
            self.pages,
            self.min,
            self.max,
            self.bytes as f64 / 1e6,
            self.ended
        )?;
        match &self.slow {
            SlowReader::Dropped(bytes) => write!(
                f,
                "; the reader that never read was dropped (its stream ended after {:.1} kB)",
                *bytes as f64 / 1e3
            )?,
            SlowReader::Open(after, bytes) => write!(
                f,
                "; the reader that never read is still open {after:?} after it began to read ({:.1} kB)",
                *bytes as f64 / 1e3
            )?,
            SlowReader::Failed(e) => write!(f, "; the reader that never read: {e}")?,
        }
        for e in self.errors.iter().take(3) {
            write!(f, "\n  error: {e}")?;
        }
        Ok(())
    }
}

async fn console(
    i: usize,
    admin: SocketAddr,
    http: &reqwest::Client,
    stats: &Stats,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // The admin server starts with the daemon: try until it answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        match http.get(format!("http://{admin}/")).send().await {
            Ok(r) => break r,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).context("GET /"),
        }
    };
    if !page.status().is_success() {
        bail!("GET / answered {}", page.status());
    }
    page.text().await.context("GET /")?;
    stats.pages.fetch_add(1, Ordering::Relaxed);
    let mut events = http
        .get(format!("http://{admin}/api/v1/events"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .context("GET /api/v1/events")?;
    if !events.status().is_success() {
        bail!("GET /api/v1/events answered {}", events.status());
    }
    stats.connected.fetch_add(1, Ordering::Release);
    let mut line: Vec<u8> = Vec::new();
    let mut read = 0u64;
    loop {
        let chunk = tokio::select! {
            chunk = events.chunk() => chunk.context("reading /api/v1/events")?,
            _ = stopped.wait_for(|s| *s) => break,
        };
        let Some(chunk) = chunk else {
            if !*stopped.borrow() {
                stats.ended.fetch_add(1, Ordering::Relaxed);
            }
            break;
        };
        stats.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        // Lines as `EventSource` splits them; each `data:` is one event's JSON.
        for &b in chunk.iter() {
            if b != b'\n' {
                line.push(b);
                continue;
            }
            if let Some(data) = line.strip_prefix(b"data:") {
                let _: serde_json::Value =
                    serde_json::from_slice(data).context("an event's data is not JSON")?;
                read += 1;
            }
            line.clear();
        }
        stats.events.lock()[i] = read;
    }
    Ok(())
}

/// Opens the stream with a 4 kB receive buffer and reads nothing until told to stop;
/// then reads what the daemon kept for it, for at most 10 s.
async fn slow_reader(admin: SocketAddr, mut stopped: watch::Receiver<bool>) -> SlowReader {
    let run = async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        let mut stream = socket.connect(admin).await?;
        stream
            .write_all(
                format!(
                    "GET /api/v1/events HTTP/1.1\r\nHost: {admin}\r\nAccept: text/event-stream\r\n\r\n"
                )
                .as_bytes(),
            )
            .await?;
        let _ = stopped.wait_for(|s| *s).await;
        let started = Instant::now();
        let mut total = 0u64;
        let mut tail: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Ok(Ok(0)) => return Ok::<_, std::io::Error>(SlowReader::Dropped(total)),
                Ok(Ok(n)) => {
                    total += n as u64;
                    tail.extend_from_slice(&buf[..n]);
                    // The chunked body's last chunk: the daemon ended the stream.
                    if tail.ends_with(b"\r\n0\r\n\r\n") {
                        return Ok(SlowReader::Dropped(total));
                    }
                    let keep = tail.len().saturating_sub(8);
                    tail.drain(..keep);
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(SlowReader::Open(started.elapsed(), total)),
            }
        }
    };
    run.await
        .unwrap_or_else(|e| SlowReader::Failed(e.to_string()))
}
