//! The zones rules see: the config's local zones and its GeoJSON zone file, merged into
//! one [`ZoneIndex`] that `in_zone("label")` and `zones()` read.
//!
//! Geometry (shapes, containment, distances) is `crate::geofence`'s; this module only
//! decides which zones there are: local zones first, so a local zone wins a label clash
//! with the file (with a warning).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::config::{ZoneConfig, ZonesConfig};
use crate::geofence::{GeoJsonError, Shape, ShapeError, Zone, ZoneIndex, load_geojson};

/// The named zones of a config (or of a rule test file), indexed. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Zones(Arc<ZoneIndex>);

impl Zones {
    /// The config's zones: its local ones, then those of its `file` (resolved against
    /// `base_dir`), which must read and parse.
    pub fn from_config(zones: &ZonesConfig, base_dir: &Path) -> Result<Zones, GeoJsonError> {
        let imported = match &zones.file {
            Some(file) => load_geojson(&base_dir.join(file))?,
            None => Vec::new(),
        };
        Ok(Zones::build(&zones.local, imported))
    }

    /// Local zones only (a rule test file's).
    pub fn local(zones: &BTreeMap<String, ZoneConfig>) -> Zones {
        Zones::build(zones, Vec::new())
    }

    /// Local zones before `imported` ones, so that a local zone keeps its label. A local
    /// zone that is not a valid shape is left out: `Config::validate` refuses those first.
    fn build(local: &BTreeMap<String, ZoneConfig>, imported: Vec<Zone>) -> Zones {
        let local = local.iter().filter_map(|(label, zone)| match shape(zone) {
            Ok(shape) => Some(Zone::new(label.clone(), shape)),
            Err(e) => {
                tracing::warn!(zone = %label, "zone left out: {e}");
                None
            }
        });
        let index = ZoneIndex::build(local.chain(imported));
        for label in index.duplicates() {
            tracing::warn!(
                zone = %label,
                "zone `{label}` is defined more than once (in the config and its zone file?): the first definition, a local one if any, is used"
            );
        }
        Zones(Arc::new(index))
    }

    pub fn get(&self, name: &str) -> Option<&Zone> {
        self.0.get(name)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.0.get(name).is_some()
    }

    /// The labels of every zone holding (`lat`, `lng`).
    pub fn containing(&self, lat: f64, lng: f64) -> impl Iterator<Item = &str> {
        self.0.containing(lat, lng)
    }

    /// The zone names, one by one.
    pub fn iter_names(&self) -> impl Iterator<Item = &str> {
        self.0.zones().iter().map(|z| z.label.as_str())
    }

    /// The zone names, for error messages.
    pub fn names(&self) -> String {
        if self.0.is_empty() {
            "none defined".into()
        } else {
            self.iter_names().collect::<Vec<_>>().join(", ")
        }
    }
}

/// The shape a config zone describes.
fn shape(zone: &ZoneConfig) -> Result<Shape, ShapeError> {
    match (&zone.circle, &zone.polygon, &zone.sausage) {
        (Some(c), _, _) => Shape::circle(c.lat, c.lng, c.radius_m),
        (None, Some(p), _) => Shape::polygon(p),
        (None, None, Some(s)) => Shape::sausage(&s.points, s.radius_m),
        (None, None, None) => Err(ShapeError::TooFewPolygonPoints(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Circle, Sausage};

    fn circle(lat: f64, lng: f64, radius_m: f64) -> ZoneConfig {
        ZoneConfig {
            circle: Some(Circle { lat, lng, radius_m }),
            polygon: None,
            sausage: None,
        }
    }

    #[test]
    fn local_shapes_are_indexed() {
        let local = BTreeMap::from([
            ("depot".to_string(), circle(52.52, 13.40, 300.0)),
            (
                "yard".to_string(),
                ZoneConfig {
                    circle: None,
                    polygon: Some(vec![
                        [52.50, 13.30],
                        [52.51, 13.30],
                        [52.51, 13.32],
                        [52.50, 13.32],
                    ]),
                    sausage: None,
                },
            ),
            (
                "route".to_string(),
                ZoneConfig {
                    circle: None,
                    polygon: None,
                    sausage: Some(Sausage {
                        points: vec![[52.50, 13.31], [52.52, 13.40]],
                        radius_m: 50.0,
                    }),
                },
            ),
        ]);
        let zones = Zones::local(&local);
        assert_eq!(zones.names(), "depot, route, yard");
        assert!(zones.get("depot").unwrap().contains(52.5205, 13.4005));
        assert!(!zones.get("depot").unwrap().contains(52.53, 13.40));
        let at = |lat, lng| zones.containing(lat, lng).collect::<Vec<_>>();
        // The route's start lies in the yard, its end in the depot.
        assert_eq!(at(52.50, 13.31), ["route", "yard"]);
        assert_eq!(at(52.505, 13.33), Vec::<&str>::new());
        assert_eq!(at(52.52, 13.40), ["depot", "route"]);
    }

    #[test]
    fn the_file_adds_zones_and_a_local_zone_wins_a_clash() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("zones.geojson"),
            r#"{"type": "FeatureCollection", "features": [
                {"type": "Feature", "properties": {"name": "depot", "radius": 10},
                 "geometry": {"type": "Point", "coordinates": [0.0, 0.0]}},
                {"type": "Feature", "properties": {"name": "far", "radius": 100},
                 "geometry": {"type": "Point", "coordinates": [13.0, 50.0]}}
            ]}"#,
        )
        .unwrap();
        let config = ZonesConfig {
            file: Some("zones.geojson".into()),
            navixy: None,
            local: BTreeMap::from([("depot".to_string(), circle(52.52, 13.40, 300.0))]),
        };
        let zones = Zones::from_config(&config, dir.path()).unwrap();
        assert_eq!(zones.names(), "depot, far");
        // The local depot, not the file's one at (0, 0).
        assert_eq!(
            zones.containing(52.52, 13.40).collect::<Vec<_>>(),
            ["depot"]
        );
        assert_eq!(zones.containing(0.0, 0.0).count(), 0);
        assert_eq!(zones.containing(50.0, 13.0).collect::<Vec<_>>(), ["far"]);
    }

    #[test]
    fn a_bad_file_names_itself_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("z.geojson"),
            "{\n  \"type\": \"FeatureCollection\",\n  oops\n}",
        )
        .unwrap();
        let config = ZonesConfig {
            file: Some("z.geojson".into()),
            navixy: None,
            local: BTreeMap::new(),
        };
        let err = Zones::from_config(&config, dir.path())
            .unwrap_err()
            .to_string();
        let path = dir.path().join("z.geojson");
        assert!(
            err.starts_with(&format!("{}:3:3: not valid JSON", path.display())),
            "{err}"
        );
        let missing = ZonesConfig {
            file: Some("nope.geojson".into()),
            navixy: None,
            local: BTreeMap::new(),
        };
        let err = Zones::from_config(&missing, dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nope.geojson: cannot read the zone file"),
            "{err}"
        );
    }
}
