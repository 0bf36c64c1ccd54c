//! Retry timing on tokio's paused clock: a receiver that never answers is retried with
//! growing delays for `notify.retry_for` (24 h by default), then given up and kept as
//! failed. A day passes in a moment, and nothing sleeps for real.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use navixy_alerts::clock::Clock;
use navixy_alerts::dispatch::{DispatchOptions, Dispatcher};
use navixy_alerts::store::Store;

use super::support::{config, eventually, firing, shutdown, t0};

/// The engine clock following tokio's (paused) clock.
struct TokioClock {
    start: tokio::time::Instant,
    base: DateTime<Utc>,
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        self.base + chrono::Duration::from_std(self.start.elapsed()).unwrap_or_default()
    }
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_receiver_is_retried_for_a_day_then_given_up() {
    let dir = tempfile::tempdir().unwrap();
    // A loopback port with nothing listening: every attempt fails at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = config(
        dir.path(),
        &format!(
            "channels: {{ ops: {{ type: webhook, url: \"http://127.0.0.1:{port}/hook\" }} }}\n\
             routes: [{{ channels: [ops] }}]\n\
             notify: {{ group_wait: 0s, repeat_interval: 2d }}\n\
             storage: {{ path: alerts.db }}\n"
        ),
    );
    let store = Store::open(&cfg).unwrap();
    let clock = Arc::new(TokioClock {
        start: tokio::time::Instant::now(),
        base: t0(),
    });
    let (_stop, on_stop) = shutdown();
    let dispatcher = Dispatcher::start_with(
        &cfg,
        store.clone(),
        clock.clone(),
        on_stop,
        DispatchOptions::default(),
    )
    .await
    .unwrap();
    dispatcher.submit(firing("fuel_drain", 1)).await.unwrap();

    eventually("the notification to be given up", || {
        let store = store.clone();
        async move { !store.list_failed(1).await.unwrap().is_empty() }
    })
    .await;
    let failed = &store.list_failed(1).await.unwrap()[0];
    let day = chrono::Duration::hours(24);
    // Backoff from 1 s doubling to 5 min, in the upper half of each step: between 288
    // (all 5 min) and 576 (all 2.5 min) attempts in a day, plus the short early ones.
    assert!(
        (288..=600).contains(&failed.attempts),
        "attempts: {}",
        failed.attempts
    );
    let error = failed.last_error.as_deref().unwrap();
    assert!(
        error.starts_with(&format!(
            "gave up after {} attempts over 86400s: ",
            failed.attempts
        )),
        "{error}"
    );
    // The last attempt was at the deadline, not before it and not a backoff step after it
    // (a late step is at least 2.5 min). The paused clock auto-advances while the store's
    // thread works, so a loaded machine adds some seconds: the bound allows for them.
    let finished = failed.finished_at.unwrap();
    assert!(finished >= failed.created_at + day, "{finished}");
    assert!(
        finished < failed.created_at + day + chrono::Duration::seconds(120),
        "{finished}"
    );
    assert_eq!(dispatcher.outbox_depth(), 0);
}
