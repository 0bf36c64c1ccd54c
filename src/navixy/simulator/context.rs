//! The simulated account's context, as Navixy's REST API serves it: geofences of the
//! three types, tracker groups, tags, and employees assigned to trackers.
//!
//! It tells the fleet's story: the `Depot` circle holds the depot where half the fleet
//! starts (the demo config's `depot`), the `Yard` polygon surrounds the yard where vehicle
//! 2 (index 1) parks and loses fuel, and the `Corridor` sausage follows the opening trip
//! of vehicle 1 (index 0), which leaves the depot and speeds within minutes. Everything
//! is a function of the seed and the fleet size, like the fleet itself.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::fleet::{self, DEPOT, Fleet, mix};
use crate::navixy::messages::TrackerId;

/// The depot circle's radius: every vehicle that starts at the depot is within 200 m.
pub const DEPOT_RADIUS_M: f64 = 300.0;
/// Half the width of the route corridor.
pub const CORRIDOR_RADIUS_M: f64 = 150.0;

/// A geofence's geometry, points as (lat, lng).
#[derive(Debug, Clone, PartialEq)]
pub enum ZoneGeometry {
    Circle {
        center: (f64, f64),
        radius_m: f64,
    },
    Polygon(Vec<(f64, f64)>),
    Sausage {
        points: Vec<(f64, f64)>,
        radius_m: f64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimZone {
    pub id: i64,
    pub label: String,
    pub geometry: ZoneGeometry,
    pub tags: Vec<i64>,
}

/// An employee; `tracker_id` is the tracker they drive, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct SimEmployee {
    pub id: i64,
    pub tracker_id: Option<TrackerId>,
    pub first_name: &'static str,
    pub last_name: &'static str,
    pub phone: String,
}

/// Everything the context endpoints serve. Fixed for the simulator's life.
#[derive(Debug, Clone, PartialEq)]
pub struct SimContext {
    pub zones: Vec<SimZone>,
    /// (id, title, color); the default group 0 is not listed, as Navixy does.
    pub groups: Vec<(i64, &'static str, &'static str)>,
    /// (id, name, color).
    pub tags: Vec<(i64, &'static str, &'static str)>,
    pub employees: Vec<SimEmployee>,
    /// Each tracker's tag ids, in order.
    pub tracker_tags: BTreeMap<TrackerId, Vec<i64>>,
}

pub const GROUPS: [(i64, &str, &str); 3] = [
    (1, "Dispatch North", "FF6DDC"),
    (2, "Dispatch South", "27A9E3"),
    (3, "Dispatch East", "8BC34A"),
];

const TAG_REFRIGERATED: i64 = 1;
const TAG_LEASED: i64 = 2;
const TAG_HEAVY: i64 = 3;
const TAG_SITE: i64 = 4;

const TAGS: [(i64, &str, &str); 4] = [
    (TAG_REFRIGERATED, "refrigerated", "03A9F4"),
    (TAG_LEASED, "leased", "FFC107"),
    (TAG_HEAVY, "heavy", "795548"),
    (TAG_SITE, "site", "4CAF50"),
];

const FIRST_NAMES: [&str; 12] = [
    "Anna", "Ben", "Clara", "David", "Eva", "Felix", "Greta", "Hannes", "Ida", "Jonas", "Karla",
    "Lukas",
];
const LAST_NAMES: [&str; 8] = [
    "Schmidt", "Mueller", "Weber", "Becker", "Hoffmann", "Wagner", "Koch", "Richter",
];

impl SimContext {
    /// The context of `fleet` (at second 0) for `seed`.
    pub fn new(seed: u64, fleet: &Fleet) -> SimContext {
        let (yard_lat, yard_lng) = fleet::start_position(seed, 1);
        // A skewed quadrilateral of about 270 × 270 m around the yard.
        let yard = vec![
            (yard_lat - 0.0012, yard_lng - 0.0020),
            (yard_lat - 0.0010, yard_lng + 0.0021),
            (yard_lat + 0.0013, yard_lng + 0.0019),
            (yard_lat + 0.0011, yard_lng - 0.0018),
        ];
        let zones = vec![
            SimZone {
                id: 101,
                label: "Depot".into(),
                geometry: ZoneGeometry::Circle {
                    center: DEPOT,
                    radius_m: DEPOT_RADIUS_M,
                },
                tags: vec![TAG_SITE],
            },
            SimZone {
                id: 102,
                label: "Yard".into(),
                geometry: ZoneGeometry::Polygon(yard),
                tags: vec![TAG_SITE],
            },
            SimZone {
                id: 103,
                label: "Corridor".into(),
                geometry: ZoneGeometry::Sausage {
                    // A point every 20 s: at most ~750 m apart, so the chords stay well
                    // within the corridor however the vehicle turns in between.
                    points: fleet::opening_trip(seed, 0, 20, 3600),
                    radius_m: CORRIDOR_RADIUS_M,
                },
                tags: Vec::new(),
            },
        ];
        let mut employees = Vec::new();
        let mut tracker_tags = BTreeMap::new();
        for v in &fleet.vehicles {
            let i = v.index;
            // Three in four vehicles have a driver assigned.
            if i % 4 != 3 {
                let r = mix(seed ^ mix(0xD71E ^ i as u64));
                employees.push(SimEmployee {
                    id: 500 + i as i64,
                    tracker_id: Some(v.tracker_id),
                    first_name: FIRST_NAMES[(r % 12) as usize],
                    last_name: LAST_NAMES[((r >> 8) % 8) as usize],
                    phone: format!("4915{:08}", (r >> 16) % 100_000_000),
                });
            }
            let mut tags = Vec::new();
            match i % 4 {
                0 => tags.push(TAG_HEAVY),
                2 => tags.push(TAG_REFRIGERATED),
                _ => {}
            }
            if i % 5 == 0 {
                tags.push(TAG_LEASED);
            }
            if !tags.is_empty() {
                tracker_tags.insert(v.tracker_id, tags);
            }
        }
        // The dispatcher drives nothing.
        employees.push(SimEmployee {
            id: 499,
            tracker_id: None,
            first_name: "Dana",
            last_name: "Dispatcher",
            phone: String::new(),
        });
        SimContext {
            zones,
            groups: GROUPS.to_vec(),
            tags: TAGS.to_vec(),
            employees,
            tracker_tags,
        }
    }

    pub fn zone(&self, id: i64) -> Option<&SimZone> {
        self.zones.iter().find(|z| z.id == id)
    }

    /// `tag_bindings` of a tracker, as `tracker/list` carries them.
    pub fn tag_bindings(&self, tracker: TrackerId) -> Value {
        let tags = self
            .tracker_tags
            .get(&tracker)
            .map_or(&[][..], Vec::as_slice);
        tags.iter()
            .enumerate()
            .map(|(ordinal, tag_id)| json!({ "tag_id": tag_id, "ordinal": ordinal + 1 }))
            .collect()
    }

    /// The `zone/list` answer; points inline only `with_points`, as Navixy does.
    pub fn zone_list(&self, with_points: bool) -> Value {
        let list: Vec<Value> = self
            .zones
            .iter()
            .map(|zone| zone_json(zone, with_points))
            .collect();
        json!({ "success": true, "list": list })
    }

    pub fn group_list(&self) -> Value {
        let list: Vec<Value> = self
            .groups
            .iter()
            .map(|(id, title, color)| json!({ "id": id, "title": title, "color": color }))
            .collect();
        json!({ "success": true, "list": list })
    }

    pub fn tag_list(&self) -> Value {
        let list: Vec<Value> = self
            .tags
            .iter()
            .map(|(id, name, color)| {
                json!({ "id": id, "avatar_file_name": null, "name": name, "color": color })
            })
            .collect();
        json!({ "success": true, "list": list })
    }

    pub fn employee_list(&self) -> Value {
        let list: Vec<Value> = self.employees.iter().map(employee_json).collect();
        json!({ "success": true, "list": list, "count": self.employees.len() })
    }

    /// The `tracker/employee/read` answer for a tracker.
    pub fn tracker_employee(&self, tracker: TrackerId) -> Value {
        let current = self
            .employees
            .iter()
            .find(|e| e.tracker_id == Some(tracker));
        let last_change = current.map(|e| {
            json!({
                "old_employee_id": null,
                "new_employee_id": e.id,
                "location": null,
                "changed": "2024-03-01 10:00:00",
                "origin": "supervisor",
                "hardware_key": null
            })
        });
        json!({
            "success": true,
            "current": current.map(employee_json),
            "last_change": last_change
        })
    }
}

fn point_json((lat, lng): (f64, f64)) -> Value {
    json!({ "lat": lat, "lng": lng, "node": true })
}

/// Points of a polygon or sausage, for `zone/point/list`.
pub fn points_json(zone: &SimZone) -> Option<Value> {
    let points = match &zone.geometry {
        ZoneGeometry::Circle { .. } => return None,
        ZoneGeometry::Polygon(points) | ZoneGeometry::Sausage { points, .. } => points,
    };
    Some(points.iter().copied().map(point_json).collect())
}

fn zone_json(zone: &SimZone, with_points: bool) -> Value {
    let all: Vec<(f64, f64)> = match &zone.geometry {
        ZoneGeometry::Circle { center, .. } => vec![*center],
        ZoneGeometry::Polygon(points) | ZoneGeometry::Sausage { points, .. } => points.clone(),
    };
    let lat = all.iter().map(|p| p.0);
    let lng = all.iter().map(|p| p.1);
    let bounds = json!({
        "nw": { "lat": lat.clone().fold(f64::MIN, f64::max), "lng": lng.clone().fold(f64::MAX, f64::min) },
        "se": { "lat": lat.fold(f64::MAX, f64::min), "lng": lng.fold(f64::MIN, f64::max) }
    });
    let mut out = json!({
        "id": zone.id,
        "label": zone.label,
        "address": "",
        "color": "27A9E3",
        "bounds": bounds,
        "tags": zone.tags,
    });
    match &zone.geometry {
        ZoneGeometry::Circle { center, radius_m } => {
            out["type"] = json!("circle");
            out["radius"] = json!(radius_m);
            out["center"] = json!({ "lat": center.0, "lng": center.1 });
        }
        ZoneGeometry::Polygon(_) => out["type"] = json!("polygon"),
        ZoneGeometry::Sausage { radius_m, .. } => {
            out["type"] = json!("sausage");
            out["radius"] = json!(radius_m);
        }
    }
    if with_points && let Some(points) = points_json(zone) {
        out["points"] = points;
    }
    out
}

fn employee_json(e: &SimEmployee) -> Value {
    json!({
        "id": e.id,
        "tracker_id": e.tracker_id,
        "first_name": e.first_name,
        "middle_name": "",
        "last_name": e.last_name,
        "email": "",
        "phone": e.phone,
        "driver_license_number": "",
        "driver_license_cats": "C",
        "driver_license_issue_date": null,
        "driver_license_valid_till": null,
        "hardware_key": null,
        "icon_id": null,
        "avatar_file_name": null,
        "department_id": null,
        "location": null,
        "tags": []
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geofence::Shape;
    use chrono::TimeZone;

    fn context(trackers: u32, seed: u64) -> (Fleet, SimContext) {
        let start = chrono::Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap();
        let fleet = Fleet::new(trackers, seed, start);
        let context = SimContext::new(seed, &fleet);
        (fleet, context)
    }

    fn shape(zone: &SimZone) -> Shape {
        let latlng =
            |points: &[(f64, f64)]| points.iter().map(|&(a, b)| [a, b]).collect::<Vec<_>>();
        match &zone.geometry {
            ZoneGeometry::Circle { center, radius_m } => {
                Shape::circle(center.0, center.1, *radius_m).unwrap()
            }
            ZoneGeometry::Polygon(points) => Shape::polygon(&latlng(points)).unwrap(),
            ZoneGeometry::Sausage { points, radius_m } => {
                Shape::sausage(&latlng(points), *radius_m).unwrap()
            }
        }
    }

    #[test]
    fn the_zones_hold_what_the_fleet_does() {
        let (mut fleet, context) = context(20, 42);
        let [depot, yard, corridor] = &context.zones[..] else {
            panic!()
        };
        let (depot, yard, corridor) = (shape(depot), shape(yard), shape(corridor));
        // Half the fleet starts at the depot; vehicle index 1 in its yard.
        for v in &fleet.vehicles {
            assert_eq!(
                depot.contains(v.lat, v.lng),
                v.index % 2 == 0,
                "{}",
                v.label
            );
        }
        assert!(yard.contains(fleet.vehicles[1].lat, fleet.vehicles[1].lng));
        // Vehicle index 0 drives its opening trip inside the corridor all along.
        assert!(corridor.contains(fleet.vehicles[0].lat, fleet.vehicles[0].lng));
        let mut left_depot = false;
        for t in 1..=1200 {
            fleet.advance_to(t);
            let v = &fleet.vehicles[0];
            assert!(
                corridor.contains(v.lat, v.lng),
                "second {t}: {}, {}",
                v.lat,
                v.lng
            );
            left_depot |= !depot.contains(v.lat, v.lng);
        }
        assert!(left_depot, "the corridor leads out of the depot");
        // The yard stays put while its vehicle parks and drains.
        fleet.advance_to(600);
        assert!(yard.contains(fleet.vehicles[1].lat, fleet.vehicles[1].lng));
    }

    #[test]
    fn the_same_seed_serves_the_same_context() {
        assert_eq!(context(20, 7).1, context(20, 7).1);
        assert_ne!(context(20, 7).1.zones, context(20, 8).1.zones);
        let (fleet, context) = context(20, 42);
        let drivers = context
            .employees
            .iter()
            .filter(|e| e.tracker_id.is_some())
            .count();
        assert_eq!(drivers, 15);
        assert!(fleet.vehicles.iter().any(|v| v.group_id == 0));
        assert_eq!(
            context.tag_bindings(fleet.vehicles[0].tracker_id),
            json!([{"tag_id": 3, "ordinal": 1}, {"tag_id": 2, "ordinal": 2}])
        );
        let zones = context.zone_list(false);
        assert!(zones["list"][2].get("points").is_none());
        assert_eq!(zones["list"][2]["type"], "sausage");
        let zones = context.zone_list(true);
        assert!(
            zones["list"][2]["points"]
                .as_array()
                .is_some_and(|p| p.len() > 10)
        );
        assert!(
            zones["list"][0].get("points").is_none(),
            "a circle has none"
        );
    }
}
