//! Which tracker an event is about. State and lifecycle events name a *source* (device)
//! id; readings and iot events name the *tracker* id; `tracker/list` links the two and
//! gives each tracker its label.

use crate::navixy::messages::TrackerInfo;
use crate::navixy::messages::{IdHashMap, SourceId, TrackerId, TrackerList};

/// source_id -> tracker_id, from a `tracker/list` response.
///
/// Empty (no list loaded): a state's source_id stands in for its tracker id, so a
/// recording replays without a list. Loaded: a source id that is not in the list is
/// *not* guessed at, since source ids and tracker ids are different number spaces and a
/// guess could land on another tracker; the event is counted as unmapped instead.
#[derive(Debug, Clone, Default)]
pub struct IdMap {
    by_source: IdHashMap<SourceId, TrackerId>,
    /// A source id not in the map stands for itself even when the map is loaded.
    fallback: bool,
}

impl IdMap {
    pub fn from_infos(infos: &[TrackerInfo]) -> IdMap {
        IdMap {
            by_source: infos
                .iter()
                .filter_map(|i| i.source_id.map(|s| (s, i.id)))
                .collect(),
            fallback: false,
        }
    }

    /// Source id -> tracker id pairs, where a source id that is not among them stands for
    /// itself: the rule tests' map, where a series names the source ids it maps and
    /// frames of any other source keep their own ids.
    pub fn with_fallback(pairs: impl IntoIterator<Item = (SourceId, TrackerId)>) -> IdMap {
        IdMap {
            by_source: pairs.into_iter().collect(),
            fallback: true,
        }
    }

    /// The tracker of a source id; `None` when a list is loaded and does not have it.
    pub fn tracker_of(&self, source_id: SourceId) -> Option<TrackerId> {
        if self.by_source.is_empty() {
            return Some(source_id);
        }
        match self.by_source.get(&source_id) {
            Some(tracker_id) => Some(*tracker_id),
            None if self.fallback => Some(source_id),
            None => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_source.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_source.len()
    }
}

/// The trackers of a `tracker/list` response, as the cache keeps them.
pub fn tracker_infos(list: &TrackerList) -> Vec<TrackerInfo> {
    list.list.iter().map(TrackerInfo::from).collect()
}
