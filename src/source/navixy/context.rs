//! Navixy's context (zones, groups, tags, drivers) while a session lives: fetched once
//! before the subscription starts, so that the first evaluation already sees Navixy's
//! zones, then again every `refresh`. A failed fetch keeps the last good snapshot, logs a
//! warning and counts `navixy_alerts_context_refreshes_total{result="error"}` (labelled
//! with the source's name as well); the next
//! try comes after a backoff (never later than `refresh`).

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::clock::Clock;
use crate::config::Secret;
use crate::navixy::context::{SharedContext, fetch_all};
use crate::navixy::rest::{RestClient, RestError};
use crate::telemetry;

/// Where a source keeps its context, and how often it fetches it again.
#[derive(Clone)]
pub struct ContextRefresh {
    pub shared: Arc<SharedContext>,
    pub every: Duration,
}

/// Fetches the whole context once and swaps it in; on failure keeps the previous one.
pub(super) async fn fetch_once(
    source: &str,
    rest: &RestClient,
    hash: &Secret,
    shared: &SharedContext,
    clock: &dyn Clock,
) -> Result<(), RestError> {
    match fetch_all(rest, hash).await {
        Ok(context) => {
            let (zones, groups, drivers) = (
                context.zones.len(),
                context.groups.len(),
                context.drivers_by_tracker.len(),
            );
            let first = !shared.is_loaded();
            shared.store(context, clock.now());
            metrics::counter!(telemetry::CONTEXT_REFRESHES, "result" => "ok", "source" => source.to_string())
                .increment(1);
            if first {
                info!(zones, groups, drivers, "Navixy context loaded.");
            } else {
                debug!(zones, groups, drivers, "Navixy context refreshed.");
            }
            Ok(())
        }
        Err(e) => {
            metrics::counter!(telemetry::CONTEXT_REFRESHES, "result" => "error", "source" => source.to_string())
                .increment(1);
            shared.note_failure();
            let kept = if shared.is_loaded() {
                "keeping the last good one"
            } else {
                "rules see the config's zones only until it loads"
            };
            warn!(error = %e, "Navixy context (zones, groups, tags, drivers) could not be fetched; {kept}.");
            Err(e)
        }
    }
}

/// Fetches the context after `first`, then every `every` (sooner after a failure, with a
/// backoff that honours `Retry-After`). Never returns: the session drops it.
pub(super) async fn refresh_context(
    source: Arc<str>,
    rest: RestClient,
    hash: Secret,
    refresh: ContextRefresh,
    clock: Arc<dyn Clock>,
    first: Duration,
    mut backoff: Backoff,
) {
    let every = refresh.every.max(Duration::from_millis(100));
    let mut delay = first;
    loop {
        tokio::time::sleep(delay).await;
        match fetch_once(&source, &rest, &hash, &refresh.shared, clock.as_ref()).await {
            Ok(()) => {
                backoff.reset();
                delay = every;
            }
            Err(e) => delay = backoff.next_delay_at_least(e.retry_after()).min(every),
        }
    }
}
