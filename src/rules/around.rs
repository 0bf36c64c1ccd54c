//! What a tracker's rules see around it, beyond its own data: the source's Navixy
//! context (imported zones, groups, tags, drivers) and the other trackers' last
//! positions, for `nearby` and `distance_to`.
//!
//! Both are snapshots swapped whole and read without a lock. Positions are published by
//! each shard's evaluator once per tick (`eval_interval`), into a slot of its own: a
//! shard never writes another's slot, and a reader loads every slot atomically. So
//! `nearby` sees the fleet as of the last tick, never a half-written shard, and finds
//! its neighbours through an R-tree rather than by measuring the whole fleet.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rstar::primitives::GeomWithData;
use rstar::{AABB, RTree};

use crate::geofence::distance_m;
use crate::navixy::context::SharedContext;
use crate::navixy::messages::{IdHashMap, SourceIx, TrackerId};

/// The Navixy context and positions one rule set reads.
#[derive(Debug, Clone)]
pub struct Around {
    /// The first source's context, swapped by its refresher; an empty one without a
    /// source (rule tests, replay).
    pub(crate) navixy: Arc<SharedContext>,
    /// Every source's name and context by source index (the first is `navixy`'s); empty
    /// without sources: then every tracker is the default source's.
    pub(crate) sources: Arc<[(Arc<str>, Arc<SharedContext>)]>,
    /// `zones: { navixy: ... }` is set: Navixy's zones count, and `in_zone` of a label
    /// not (yet) known is false with a warning rather than an error.
    pub(crate) import_zones: bool,
    pub(crate) positions: Arc<Positions>,
    /// Some rule reads positions: only then do evaluators note and publish them.
    pub(crate) publish_positions: bool,
}

impl Default for Around {
    fn default() -> Self {
        Around {
            navixy: SharedContext::new(),
            sources: Arc::from(Vec::new()),
            import_zones: false,
            publish_positions: false,
            positions: Arc::new(Positions::default()),
        }
    }
}

impl Around {
    /// The Navixy context of a tracker's source (its account's zones, groups, tags and
    /// drivers).
    pub(crate) fn context(&self, source: SourceIx) -> &Arc<SharedContext> {
        match self.sources.get(usize::from(source)) {
            Some((_, context)) if source > 0 => context,
            _ => &self.navixy,
        }
    }

    /// The name of a tracker's source: its alerts' `source` label.
    pub(crate) fn source_name(&self, source: SourceIx) -> &str {
        self.sources
            .get(usize::from(source))
            .map_or(crate::alert::DEFAULT_SOURCE, |(name, _)| name)
    }
}

/// One tracker's last position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    pub id: TrackerId,
    pub lat: f64,
    pub lng: f64,
}

/// One shard's published positions: by id for `distance_to`, and an R-tree for
/// `nearby`, so that a fleet of thousands costs a lookup about what a handful do.
#[derive(Debug, Default)]
pub struct ShardPositions {
    by_id: IdHashMap<TrackerId, (f64, f64)>,
    /// Points are `[lng, lat]`, as in the zone index.
    tree: RTree<GeomWithData<[f64; 2], TrackerId>>,
}

impl ShardPositions {
    fn new(latest: &IdHashMap<TrackerId, (f64, f64)>) -> ShardPositions {
        let points = latest
            .iter()
            .map(|(&id, &(lat, lng))| GeomWithData::new([lng, lat], id))
            .collect();
        ShardPositions {
            by_id: latest.clone(),
            tree: RTree::bulk_load(points),
        }
    }
}

type Slot = ArcSwap<ShardPositions>;

/// Every shard's last published positions.
#[derive(Debug, Default)]
pub struct Positions {
    slots: ArcSwap<Vec<Arc<Slot>>>,
}

impl Positions {
    /// A slot for one evaluator to publish into; give it back with [`Self::release`].
    pub fn register(&self) -> Arc<Slot> {
        let slot = Arc::new(ArcSwap::from_pointee(ShardPositions::default()));
        self.slots.rcu(|slots| {
            let mut slots = Vec::clone(slots);
            slots.push(slot.clone());
            slots
        });
        slot
    }

    /// Forgets a slot (its evaluator is gone).
    pub fn release(&self, slot: &Arc<Slot>) {
        self.slots.rcu(|slots| {
            slots
                .iter()
                .filter(|s| !Arc::ptr_eq(s, slot))
                .cloned()
                .collect::<Vec<_>>()
        });
    }

    /// Where `id` was at the last publication.
    pub fn find(&self, id: TrackerId) -> Option<Position> {
        self.slots.load().iter().find_map(|slot| {
            slot.load()
                .by_id
                .get(&id)
                .map(|&(lat, lng)| Position { id, lat, lng })
        })
    }

    /// The trackers other than `except` within `radius_m` of (`lat`, `lng`), nearest
    /// first, with their distances.
    pub fn within(
        &self,
        lat: f64,
        lng: f64,
        radius_m: f64,
        except: TrackerId,
    ) -> Vec<(TrackerId, f64)> {
        // A degree of latitude is at least 110 km: a box that holds the circle first.
        let dlat = radius_m / 110_000.0;
        let dlng = dlat / lat.to_radians().cos().abs().max(0.01);
        let bbox = AABB::from_corners([lng - dlng, lat - dlat], [lng + dlng, lat + dlat]);
        let mut out = Vec::new();
        for slot in self.slots.load().iter() {
            for p in slot.load().tree.locate_in_envelope(&bbox) {
                let [plng, plat] = *p.geom();
                if p.data == except {
                    continue;
                }
                let d = distance_m(lat, lng, plat, plng);
                if d <= radius_m {
                    out.push((p.data, d));
                }
            }
        }
        out.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        out
    }
}

/// One evaluator's side of [`Positions`]: the last position of each of its trackers, and
/// its slot. Publishes once per tick (a live tick evaluated in slices calls it per slice,
/// so calls less than a second apart publish nothing new).
#[derive(Debug)]
pub(crate) struct Publisher {
    positions: Arc<Positions>,
    slot: Arc<Slot>,
    latest: IdHashMap<TrackerId, (f64, f64)>,
    published_at: Option<i64>,
}

impl Publisher {
    pub fn new(positions: Arc<Positions>) -> Publisher {
        let slot = positions.register();
        Publisher {
            positions,
            slot,
            latest: IdHashMap::default(),
            published_at: None,
        }
    }

    /// Notes a tracker's position (or that it has none).
    pub fn note(&mut self, id: TrackerId, at: Option<(f64, f64)>) {
        match at {
            Some(p) => {
                self.latest.insert(id, p);
            }
            None => {
                self.latest.remove(&id);
            }
        }
    }

    /// Publishes what it noted, at tick time `now_ms`.
    pub fn publish(&mut self, now_ms: i64) {
        if self
            .published_at
            .is_some_and(|at| (at..at + 1_000).contains(&now_ms))
        {
            return;
        }
        self.published_at = Some(now_ms);
        self.slot.store(Arc::new(ShardPositions::new(&self.latest)));
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.positions.release(&self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_publish_and_readers_see_every_slot() {
        let positions = Arc::new(Positions::default());
        let mut a = Publisher::new(positions.clone());
        let mut b = Publisher::new(positions.clone());
        a.note(1, Some((52.5200, 13.4000)));
        a.note(2, Some((52.5203, 13.4000)));
        b.note(3, Some((52.5300, 13.4000)));
        // Nothing is seen before a publication.
        assert_eq!(positions.find(1), None);
        a.publish(10_000);
        b.publish(10_000);
        assert_eq!(positions.find(3).map(|p| p.lat), Some(52.53));
        let near: Vec<TrackerId> = positions
            .within(52.5200, 13.4000, 100.0, 1)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(near, [2]);
        let all = positions.within(52.5200, 13.4000, 2_000.0, 0);
        assert_eq!(all.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 2, 3]);
        assert!((all[2].1 - 1_112.0).abs() < 2.0, "{all:?}");
        // Once per tick: a second publication within the second changes nothing.
        a.note(2, None);
        a.publish(10_500);
        assert!(positions.find(2).is_some());
        a.publish(20_000);
        assert!(positions.find(2).is_none());
        // A dropped evaluator's trackers are gone with its slot.
        drop(b);
        assert_eq!(positions.find(3), None);
    }
}
