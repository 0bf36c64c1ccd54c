//! Dispatcher costs on a real SQLite file: recording transitions (one `synchronous=FULL`
//! commit per batch) and the latency from `submit` to the webhook request arriving at a
//! loopback receiver.
//!
//! `cargo bench --bench dispatch`
//!
//! With `ITERATIONS=N` in the environment the benches skip criterion and run their work
//! exactly N times (those whose name contains the first argument, if one is given), so
//! an instruction count (`valgrind --tool=callgrind`) of two builds is of the same work:
//! criterion picks its iteration count from the time an iteration takes.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use criterion::{Criterion, criterion_group};
use tempfile::TempDir;
use tokio::runtime::Runtime;
use tokio::sync::mpsc::UnboundedReceiver;

use navixy_alerts::alert::AlertTransition;
use navixy_alerts::clock::SystemClock;
use navixy_alerts::config::Config;
use navixy_alerts::dispatch::testing::firing;
use navixy_alerts::dispatch::{Dispatcher, DispatcherHandle};
use navixy_alerts::store::Store;

/// A firing transition stamped now (the latency is measured from `at`).
fn transition(rule: &str, tracker: i64) -> AlertTransition {
    let now = chrono::Utc::now();
    let mut t = firing(rule, tracker);
    t.starts_at = now;
    t.at = now;
    t
}

fn config(dir: &Path, yaml: &str) -> Config {
    let text = format!("source: {{ simulator: {{}} }}\nstorage: {{ path: bench.db }}\n{yaml}");
    Config::from_yaml(&text, &dir.join("config.yaml"), |_| None).unwrap()
}

async fn start(cfg: &Config) -> DispatcherHandle {
    let store = Store::open(cfg).unwrap();
    Dispatcher::start(cfg, store, Arc::new(SystemClock), std::future::pending())
        .await
        .unwrap()
}

/// A dispatcher that groups for an hour: its benches measure recording, not delivery.
struct Recording {
    // Fields drop in order: the dispatcher before its runtime, the database's directory last.
    dispatcher: DispatcherHandle,
    rt: Runtime,
    next: i64,
    _dir: TempDir,
}

impl Recording {
    fn new() -> Self {
        let rt = Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(
            dir.path(),
            "channels: { console: { type: stdout } }\nroutes: [{ channels: [console] }]\n\
             notify: { group_by: [rule, tracker_id], group_wait: 1h }\n",
        );
        let dispatcher = rt.block_on(start(&cfg));
        Recording {
            dispatcher,
            rt,
            next: 0,
            _dir: dir,
        }
    }

    /// `iters` transitions, each submitted alone (one commit each).
    fn submit_one(&mut self, iters: u64) -> Duration {
        self.rt.block_on(async {
            let begin = Instant::now();
            for _ in 0..iters {
                self.next += 1;
                let t = transition("fuel_drain", self.next);
                self.dispatcher.submit(t).await.unwrap();
            }
            begin.elapsed()
        })
    }

    /// `iters` batches of 1,000 transitions (one commit each); building a batch is not timed.
    fn submit_batch_1000(&mut self, iters: u64) -> Duration {
        self.rt.block_on(async {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let batch: Vec<_> = (0..1000)
                    .map(|_| {
                        self.next += 1;
                        transition("fuel_drain", self.next)
                    })
                    .collect();
                let begin = Instant::now();
                self.dispatcher.submit_batch(batch).await.unwrap();
                total += begin.elapsed();
            }
            total
        })
    }
}

/// A dispatcher delivering at once to a webhook on a loopback receiver.
struct ToWebhook {
    dispatcher: DispatcherHandle,
    /// When each request arrived at the receiver.
    arrived: UnboundedReceiver<Instant>,
    rt: Runtime,
    next: i64,
    samples: Vec<Duration>,
    _dir: TempDir,
}

impl ToWebhook {
    fn new() -> Self {
        let rt = Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (tx, arrived) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let addr = rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let app = axum::Router::new().fallback(move || {
                let _ = tx.send(Instant::now());
                async { StatusCode::NO_CONTENT }
            });
            tokio::spawn(async move { axum::serve(listener, app).await });
            addr
        });
        let cfg = config(
            dir.path(),
            &format!(
                "channels: {{ ops: {{ type: webhook, url: \"http://{addr}/hook\", \
                 secret: \"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\" }} }}\n\
                 routes: [{{ channels: [ops] }}]\n\
                 notify: {{ group_by: [rule, tracker_id], group_wait: 0s }}\n"
            ),
        );
        let dispatcher = rt.block_on(start(&cfg));
        ToWebhook {
            dispatcher,
            arrived,
            rt,
            next: 0,
            samples: Vec::new(),
            _dir: dir,
        }
    }

    /// `iters` transitions, each submitted once the previous one's request has arrived.
    fn submit(&mut self, iters: u64) -> Duration {
        self.rt.block_on(async {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                self.next += 1;
                let t = transition("fuel_drain", self.next);
                let begin = Instant::now();
                self.dispatcher.submit(t).await.unwrap();
                let arrived = self.arrived.recv().await.unwrap();
                let took = arrived - begin;
                self.samples.push(took);
                total += took;
            }
            total
        })
    }

    fn report(&mut self) {
        let samples = &mut self.samples;
        samples.sort();
        if samples.is_empty() {
            return;
        }
        let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
        eprintln!(
            "submit -> webhook request: n={} p50={:?} p99={:?} max={:?}",
            samples.len(),
            pct(0.50),
            pct(0.99),
            samples[samples.len() - 1]
        );
    }
}

fn record(c: &mut Criterion) {
    let mut rec = Recording::new();
    let mut group = c.benchmark_group("dispatch_record");
    group.bench_function("submit_one", |b| {
        b.iter_custom(|iters| rec.submit_one(iters))
    });
    group.throughput(criterion::Throughput::Elements(1000));
    group.bench_function("submit_batch_1000", |b| {
        b.iter_custom(|iters| rec.submit_batch_1000(iters))
    });
    group.finish();
}

fn webhook_latency(c: &mut Criterion) {
    let mut hook = ToWebhook::new();
    c.bench_function("dispatch_submit_to_webhook", |b| {
        b.iter_custom(|iters| hook.submit(iters))
    });
    hook.report();
}

criterion_group!(benches, record, webhook_latency);

/// Runs each bench's work `iters` times, outside criterion.
fn fixed(iters: u64, filter: &str) {
    let run = |name: &str, work: &mut dyn FnMut(u64) -> Duration| {
        if name.contains(filter) {
            let took = work(iters);
            println!("{name}: {iters} iterations, {took:?}");
        }
    };
    let mut rec = Recording::new();
    run("dispatch_record/submit_one", &mut |n| rec.submit_one(n));
    run("dispatch_record/submit_batch_1000", &mut |n| {
        rec.submit_batch_1000(n)
    });
    drop(rec);
    let mut hook = ToWebhook::new();
    run("dispatch_submit_to_webhook", &mut |n| hook.submit(n));
    hook.report();
}

fn main() {
    let iterations = std::env::var("ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok());
    match iterations {
        Some(iters) => {
            let filter = std::env::args()
                .skip(1)
                .find(|a| !a.starts_with('-'))
                .unwrap_or_default();
            fixed(iters, &filter);
        }
        None => {
            benches();
            Criterion::default().configure_from_args().final_summary();
        }
    }
}
