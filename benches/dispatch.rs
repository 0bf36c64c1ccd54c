//! Dispatcher costs on a real SQLite file: recording transitions (one `synchronous=FULL`
//! commit per batch) and the latency from `submit` to the webhook request arriving at a
//! loopback receiver.
//!
//! `cargo bench --bench dispatch`

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use criterion::{Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;

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

fn record(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Grouped for an hour: this measures recording, not delivery.
    let cfg = config(
        dir.path(),
        "channels: { console: { type: stdout } }\nroutes: [{ channels: [console] }]\n\
         notify: { group_by: [rule, tracker_id], group_wait: 1h }\n",
    );
    let dispatcher = rt.block_on(start(&cfg));
    let mut group = c.benchmark_group("dispatch_record");
    let mut next = 0i64;
    group.bench_function("submit_one", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let begin = Instant::now();
                for _ in 0..iters {
                    next += 1;
                    let t = transition("fuel_drain", next);
                    dispatcher.submit(t).await.unwrap();
                }
                begin.elapsed()
            })
        })
    });
    group.throughput(criterion::Throughput::Elements(1000));
    group.bench_function("submit_batch_1000", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let batch: Vec<_> = (0..1000)
                        .map(|_| {
                            next += 1;
                            transition("fuel_drain", next)
                        })
                        .collect();
                    let begin = Instant::now();
                    dispatcher.submit_batch(batch).await.unwrap();
                    total += begin.elapsed();
                }
                total
            })
        })
    });
    group.finish();
}

fn webhook_latency(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
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
    let mut next = 0i64;
    let mut samples = Vec::new();
    c.bench_function("dispatch_submit_to_webhook", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    next += 1;
                    let t = transition("fuel_drain", next);
                    let begin = Instant::now();
                    dispatcher.submit(t).await.unwrap();
                    let arrived = rx.recv().await.unwrap();
                    let took = arrived - begin;
                    samples.push(took);
                    total += took;
                }
                total
            })
        })
    });
    samples.sort();
    if !samples.is_empty() {
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

criterion_group!(benches, record, webhook_latency);
criterion_main!(benches);
