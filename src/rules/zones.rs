//! Geofences for `in_zone("name")`: circles and polygons from the config's `zones`, and
//! great-circle distance for `distance_m`.
//!
//! Polygons are small (a yard, a depot) so a planar ray-casting test on lat/lng is exact
//! enough; circles use the haversine distance.

use std::collections::BTreeMap;

use crate::config::ZoneConfig;

/// Mean Earth radius in metres (IUGG), the usual choice for haversine.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// One geofence.
#[derive(Debug, Clone, PartialEq)]
pub enum Zone {
    Circle {
        lat: f64,
        lng: f64,
        radius_m: f64,
    },
    /// `[lat, lng]` vertices; the last connects back to the first.
    Polygon(Vec<[f64; 2]>),
}

impl Zone {
    /// Whether a point lies inside (on the circle's edge counts as inside).
    pub fn contains(&self, lat: f64, lng: f64) -> bool {
        match self {
            Zone::Circle {
                lat: clat,
                lng: clng,
                radius_m,
            } => distance_m(*clat, *clng, lat, lng) <= *radius_m,
            Zone::Polygon(points) => polygon_contains(points, lat, lng),
        }
    }
}

/// The named zones of a config (or of a rule test file).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Zones(BTreeMap<String, Zone>);

impl Zones {
    /// Converts the config's zones; `Config::validate` already checked their shape, and a
    /// zone with neither shape is skipped rather than trusted.
    pub fn from_config(zones: &BTreeMap<String, ZoneConfig>) -> Zones {
        let mut out = BTreeMap::new();
        for (name, zone) in zones {
            let z = match (&zone.circle, &zone.polygon) {
                (Some(c), _) => Zone::Circle {
                    lat: c.lat,
                    lng: c.lng,
                    radius_m: c.radius_m,
                },
                (None, Some(p)) if p.len() >= 3 => Zone::Polygon(p.clone()),
                _ => continue,
            };
            out.insert(name.clone(), z);
        }
        Zones(out)
    }

    pub fn get(&self, name: &str) -> Option<&Zone> {
        self.0.get(name)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// The zone names, one by one.
    pub fn iter_names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The zone names, for error messages.
    pub fn names(&self) -> String {
        if self.0.is_empty() {
            "none defined".into()
        } else {
            self.0
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

/// Great-circle distance in metres between two points given in degrees.
pub fn distance_m(lat1: f64, lng1: f64, lat2: f64, lng2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lng2 - lng1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
}

/// Even-odd ray casting on (lng, lat) as planar coordinates.
fn polygon_contains(points: &[[f64; 2]], lat: f64, lng: f64) -> bool {
    let mut inside = false;
    let mut j = points.len().wrapping_sub(1);
    for (i, p) in points.iter().enumerate() {
        let (yi, xi) = (p[0], p[1]);
        let (yj, xj) = (points[j][0], points[j][1]);
        if (yi > lat) != (yj > lat) && lng < (xj - xi) * (lat - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haversine_matches_known_distance() {
        // Berlin Alexanderplatz to Brandenburger Tor is about 2.5 km.
        let d = distance_m(52.5219, 13.4132, 52.5163, 13.3777);
        assert!((d - 2_480.0).abs() < 50.0, "{d}");
        assert_eq!(distance_m(1.0, 2.0, 1.0, 2.0), 0.0);
    }

    #[test]
    fn circle_and_polygon() {
        let c = Zone::Circle {
            lat: 52.52,
            lng: 13.40,
            radius_m: 300.0,
        };
        assert!(c.contains(52.5205, 13.4005));
        assert!(!c.contains(52.53, 13.40));
        let p = Zone::Polygon(vec![
            [52.50, 13.30],
            [52.51, 13.30],
            [52.51, 13.32],
            [52.50, 13.32],
        ]);
        assert!(p.contains(52.505, 13.31));
        assert!(!p.contains(52.505, 13.33));
        assert!(!p.contains(52.49, 13.31));
    }
}
