//! [`ZoneIndex`]: every geofence of a source, built once per refresh and read by every
//! evaluation: which zones hold a point, and whether one named zone does.
//!
//! An R-tree of bounding boxes (radii included) answers "which boxes hold this point" in
//! logarithmic time; only those few zones get the exact (and costlier) test. So thousands
//! of zones cost a lookup about what a handful do.

use std::collections::HashMap;

use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};

use super::shape::Zone;

/// A box in the tree: the zone's position in `zones`, and the part of its shape the box
/// bounds (a sausage's segment; `None` for the whole shape).
type Entry = GeomWithData<Rectangle<[f64; 2]>, (usize, Option<usize>)>;

/// The zones by label, and the tree over their boxes. Immutable once built: a refresh
/// builds a new one and swaps it in.
#[derive(Debug, Default)]
pub struct ZoneIndex {
    zones: Vec<Zone>,
    by_label: HashMap<String, usize>,
    tree: RTree<Entry>,
    /// Labels given more than once: the first zone kept each one.
    duplicates: Vec<String>,
}

impl ZoneIndex {
    /// Indexes `zones`. A label names one zone: when two zones share one, the first wins
    /// (pass local zones before imported ones so that a local zone wins a clash) and the
    /// label is listed in [`Self::duplicates`] for the caller to warn about.
    pub fn build(zones: impl IntoIterator<Item = Zone>) -> ZoneIndex {
        let mut kept = Vec::new();
        let mut by_label = HashMap::new();
        let mut duplicates = Vec::new();
        for zone in zones {
            if by_label.contains_key(&zone.label) {
                duplicates.push(zone.label);
                continue;
            }
            by_label.insert(zone.label.clone(), kept.len());
            kept.push(zone);
        }
        let entries = kept
            .iter()
            .enumerate()
            .flat_map(|(i, zone)| {
                zone.shape
                    .part_boxes()
                    .into_iter()
                    .map(move |(part, bbox)| {
                        let (min, max) = (bbox.min(), bbox.max());
                        let rect = Rectangle::from_corners([min.x, min.y], [max.x, max.y]);
                        GeomWithData::new(rect, (i, part))
                    })
            })
            .collect();
        ZoneIndex {
            zones: kept,
            by_label,
            // Bulk loading packs the tree better than inserting one by one.
            tree: RTree::bulk_load(entries),
            duplicates,
        }
    }

    /// The labels of every zone holding (`lat`, `lng`), each once, in the order given.
    pub fn containing(&self, lat: f64, lng: f64) -> impl Iterator<Item = &str> {
        let point = AABB::from_point([lng, lat]);
        let mut hits: Vec<usize> = self
            .tree
            .locate_in_envelope_intersecting(&point)
            .filter(|entry| {
                let (zone, part) = entry.data;
                self.zones[zone].shape.part_contains(part, lat, lng)
            })
            .map(|entry| entry.data.0)
            .collect();
        // Two segments of one route may both hold the point.
        hits.sort_unstable();
        hits.dedup();
        hits.into_iter().map(|i| self.zones[i].label.as_str())
    }

    /// Whether the zone labelled `label` holds (`lat`, `lng`); `None` when no zone has
    /// that label (the caller decides whether that deserves a warning).
    pub fn contains(&self, label: &str, lat: f64, lng: f64) -> Option<bool> {
        let zone = self.get(label)?;
        Some(zone.contains(lat, lng))
    }

    pub fn get(&self, label: &str) -> Option<&Zone> {
        self.by_label.get(label).map(|&i| &self.zones[i])
    }

    /// Every zone, in the order given (duplicates left out).
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    pub fn len(&self) -> usize {
        self.zones.len()
    }

    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// Labels that were given to more than one zone (each extra one dropped).
    pub fn duplicates(&self) -> &[String] {
        &self.duplicates
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geofence::Shape;

    fn labels(index: &ZoneIndex, lat: f64, lng: f64) -> Vec<&str> {
        let mut out: Vec<&str> = index.containing(lat, lng).collect();
        out.sort_unstable();
        out
    }

    fn city() -> ZoneIndex {
        ZoneIndex::build([
            Zone::new("Depot", Shape::circle(52.52, 13.40, 300.0).unwrap()),
            Zone::new(
                "Yard",
                Shape::polygon(&[
                    [52.519, 13.399],
                    [52.522, 13.399],
                    [52.522, 13.405],
                    [52.519, 13.405],
                ])
                .unwrap(),
            ),
            Zone::new(
                "Route A",
                Shape::sausage(&[[52.52, 13.40], [52.52, 13.50], [52.55, 13.50]], 200.0).unwrap(),
            ),
            // Its box holds the test point below, its shape does not.
            Zone::new(
                "Triangle",
                Shape::polygon(&[[52.60, 13.30], [52.70, 13.30], [52.60, 13.40]]).unwrap(),
            ),
        ])
    }

    #[test]
    fn containing_lists_every_zone_holding_the_point_and_no_other() {
        let index = city();
        assert_eq!(index.len(), 4);
        assert_eq!(
            labels(&index, 52.5201, 13.4001),
            vec!["Depot", "Route A", "Yard"]
        );
        assert_eq!(labels(&index, 52.52, 13.45), vec!["Route A"]);
        assert_eq!(labels(&index, 52.535, 13.5005), vec!["Route A"]);
        assert_eq!(labels(&index, 52.535, 13.45), Vec::<&str>::new());
        // At the route's bend both legs hold the point: the label comes once.
        assert_eq!(labels(&index, 52.5201, 13.5001), vec!["Route A"]);
        // In the triangle's box but across its diagonal.
        assert_eq!(labels(&index, 52.69, 13.39), Vec::<&str>::new());
        assert_eq!(labels(&index, 52.61, 13.31), vec!["Triangle"]);
        assert_eq!(labels(&index, -33.0, 151.0), Vec::<&str>::new());
    }

    #[test]
    fn contains_by_label_and_unknown_labels() {
        let index = city();
        assert_eq!(index.contains("Depot", 52.52, 13.40), Some(true));
        assert_eq!(index.contains("Depot", 52.53, 13.40), Some(false));
        assert_eq!(index.contains("Nowhere", 52.52, 13.40), None);
        assert!(ZoneIndex::default().is_empty());
        assert_eq!(ZoneIndex::default().containing(0.0, 0.0).count(), 0);
    }

    #[test]
    fn the_first_zone_of_a_label_wins_and_the_clash_is_reported() {
        let index = ZoneIndex::build([
            Zone::new("Depot", Shape::circle(52.52, 13.40, 300.0).unwrap()),
            Zone::new("Depot", Shape::circle(48.20, 16.37, 300.0).unwrap()),
        ]);
        assert_eq!(index.len(), 1);
        assert_eq!(index.duplicates(), ["Depot".to_string()]);
        assert_eq!(index.contains("Depot", 52.52, 13.40), Some(true));
        assert_eq!(index.containing(48.20, 16.37).count(), 0);
    }
}
