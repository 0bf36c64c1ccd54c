//! [`SharedContext`]: a source's latest good [`NavixyContext`], swapped whole by the
//! source's refresher and read by every rule evaluation without a lock.
//!
//! The refresher (in `crate::source::navixy`) stores a snapshot after each successful
//! `fetch_all`; a failed refresh stores nothing, so rules go on with the last good one.
//! Rules load the snapshot once per tracker evaluation (an atomic read).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::{ArcSwap, Guard};
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use tracing::warn;

use super::NavixyContext;
use crate::geofence::ZoneIndex;

/// One refresh's context with its zones indexed.
#[derive(Debug, Default)]
pub struct ContextSnapshot {
    pub context: NavixyContext,
    /// Navixy's geofences only (local zones are the rule set's).
    pub zones: ZoneIndex,
    /// When it was fetched; `None` until the first refresh succeeds.
    pub loaded_at: Option<DateTime<Utc>>,
}

/// The context of one source as rules see it now.
#[derive(Debug, Default)]
pub struct SharedContext {
    current: ArcSwap<ContextSnapshot>,
    /// The labels of the config's own zones, which win a clash with Navixy's.
    local_labels: Mutex<BTreeSet<String>>,
    /// Labels already warned about (a clash, or `in_zone` of a label no zone has), so
    /// that a refresh every few minutes does not repeat the same warning.
    warned: Mutex<HashSet<String>>,
    /// Refreshes that failed (the snapshot stayed as it was).
    failed: AtomicU64,
}

impl SharedContext {
    pub fn new() -> Arc<SharedContext> {
        Arc::new(SharedContext::default())
    }

    /// The snapshot in force (an atomic read; hold it for one evaluation, not longer).
    pub fn load(&self) -> Guard<Arc<ContextSnapshot>> {
        self.current.load()
    }

    /// Whether a refresh has succeeded yet.
    pub fn is_loaded(&self) -> bool {
        self.current.load().loaded_at.is_some()
    }

    /// Swaps in a freshly fetched context; warns once per label that a local zone shadows.
    pub fn store(&self, context: NavixyContext, at: DateTime<Utc>) {
        let zones = context.zone_index();
        for label in zones.duplicates() {
            self.warn_once(format!("dup:{label}"), || {
                warn!(zone = %label, "Navixy has more than one zone with this label; the first one is used.");
            });
        }
        self.warn_clashes(&zones);
        self.current.store(Arc::new(ContextSnapshot {
            context,
            zones,
            loaded_at: Some(at),
        }));
    }

    /// Counts a refresh that failed; the snapshot stays.
    pub fn note_failure(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// How many refreshes failed so far.
    pub fn failed_refreshes(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// The labels of the config's zones (called when a rule set is installed): each of
    /// them hides a Navixy zone of the same label.
    pub fn set_local_labels<'a>(&self, labels: impl IntoIterator<Item = &'a str>) {
        *self.local_labels.lock() = labels.into_iter().map(str::to_string).collect();
        self.warn_clashes(&self.current.load().zones);
    }

    fn warn_clashes(&self, zones: &ZoneIndex) {
        let local = self.local_labels.lock().clone();
        for zone in zones.zones() {
            if local.contains(&zone.label) {
                self.warn_once(format!("clash:{}", zone.label), || {
                    warn!(zone = %zone.label, "A zone of the config and a Navixy zone share this label: the config's zone is used.");
                });
            }
        }
    }

    /// Warns that `in_zone` asked for a label no zone has, once per label.
    pub fn warn_unknown_zone(&self, label: &str) {
        self.warn_once(format!("unknown:{label}"), || {
            warn!(zone = %label, "in_zone: no zone has this label (yet): it reads as false.");
        });
    }

    fn warn_once(&self, key: String, warn: impl FnOnce()) {
        if self.warned.lock().insert(key) {
            warn();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geofence::{Shape, Zone};

    #[test]
    fn a_store_swaps_the_whole_snapshot() {
        let shared = SharedContext::new();
        assert!(!shared.is_loaded());
        assert!(shared.load().zones.is_empty());
        let held = shared.load_full_for_test();
        let context = NavixyContext {
            zones: vec![Zone::new(
                "Depot",
                Shape::circle(52.52, 13.40, 300.0).unwrap(),
            )],
            ..NavixyContext::default()
        };
        shared.store(context, DateTime::<Utc>::UNIX_EPOCH);
        assert!(shared.is_loaded());
        assert_eq!(
            shared.load().zones.contains("Depot", 52.52, 13.40),
            Some(true)
        );
        // A reader that loaded before the swap keeps its snapshot whole.
        assert!(held.zones.is_empty());
    }

    impl SharedContext {
        fn load_full_for_test(&self) -> Arc<ContextSnapshot> {
            self.current.load_full()
        }
    }
}
