//! The tracker list while a session lives: its periodic refresh, and what the
//! subscription's answer says of blocked trackers.

use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::health::{SubscriptionStatuses, TrackerStatus};
use crate::backoff::Backoff;
use crate::config::Secret;
use crate::navixy::messages::{SourceIx, TrackerInfo};
use crate::navixy::rest::RestClient;
use crate::source::SourceEvent;

/// Refreshes the tracker list after `first`, then every `every`, while a connection
/// lives; returns only when the engine is gone. Failures are retried with a backoff that
/// honours `Retry-After`.
pub(super) async fn refresh_trackers(
    source: SourceIx,
    rest: RestClient,
    hash: Secret,
    first: Duration,
    every: Duration,
    tx: mpsc::Sender<SourceEvent>,
    mut backoff: Backoff,
) {
    let every = every.max(Duration::from_millis(100));
    let mut delay = first.max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(delay).await;
        match rest.tracker_list(&hash).await {
            Ok(list) => {
                debug!(trackers = list.len(), "Tracker list refreshed.");
                if tx.send(SourceEvent::Trackers(source, list)).await.is_err() {
                    return;
                }
                backoff.reset();
                delay = every;
            }
            Err(e) => {
                delay = backoff.next_delay_at_least(e.retry_after()).min(every);
                warn!(error = %e, retry_in = ?delay, "Tracker list refresh failed; keeping the previous one.");
            }
        }
    }
}

/// Sets each listed tracker's `blocked` to what the subscription's statuses say of it
/// (`blocked` or `normal`; other statuses say nothing); true if any changed.
pub(super) fn amend_blocked(listed: &mut [TrackerInfo], statuses: &SubscriptionStatuses) -> bool {
    let mut changed = false;
    for info in listed {
        let said = statuses
            .values()
            .find_map(|by_id| match by_id.get(&info.id) {
                Some(TrackerStatus::Blocked) => Some(true),
                Some(TrackerStatus::Normal) => Some(false),
                _ => None,
            });
        if said.is_some() && said != info.blocked {
            info.blocked = said;
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn the_subscription_amends_what_the_list_said_of_blocks() {
        let listed = |id, blocked| TrackerInfo {
            id,
            blocked,
            ..TrackerInfo::default()
        };
        let mut list = vec![
            listed(1, Some(false)),
            listed(2, Some(true)),
            listed(3, None),
            listed(4, Some(false)),
        ];
        let statuses = BTreeMap::from([(
            "state_batch".to_string(),
            BTreeMap::from([
                (1, TrackerStatus::Blocked),
                (2, TrackerStatus::Normal),
                (3, TrackerStatus::Unknown),
            ]),
        )]);
        assert!(amend_blocked(&mut list, &statuses));
        let blocked: Vec<_> = list.iter().map(|t| t.blocked).collect();
        // 3: `unknown` says nothing; 4: not in the answer.
        assert_eq!(blocked, [Some(true), Some(false), None, Some(false)]);
        // Said again, nothing changes: the list is not sent again.
        assert!(!amend_blocked(&mut list, &statuses));
    }
}
