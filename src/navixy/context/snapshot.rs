//! [`NavixyContext`]: one account's zones, groups, tags and drivers at one moment, and
//! [`fetch_all`], which reads them all from the REST API.
//!
//! A snapshot is immutable: a refresh fetches a new one and swaps it in whole, so a rule
//! never sees the zones of one refresh with the groups of another.

use std::collections::BTreeMap;

use tracing::{debug, warn};

use crate::config::Secret;
use crate::geofence::{Shape, Zone, ZoneIndex};
use crate::navixy::messages::TrackerId;
use crate::navixy::rest::{NavixyErrorCode, RestClient, RestError};

use super::types::{Employee, Listed, NavixyZone, Tag, TrackerGroup, ZonePoint};

/// The driver a tracker reports as `tracker.driver`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Driver {
    /// The employee id.
    pub id: i64,
    /// First, middle and last names.
    pub name: String,
    /// Digits without `+`; `None` when Navixy has none.
    pub phone: Option<String>,
}

impl From<&Employee> for Driver {
    fn from(e: &Employee) -> Driver {
        Driver {
            id: e.id,
            name: e.full_name(),
            phone: e.phone.clone().filter(|p| !p.trim().is_empty()),
        }
    }
}

/// Items Navixy sent that the snapshot left out, per list: odd ones are logged, counted
/// here, and never fail a refresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Zones that did not decode, of an unknown type, or with an impossible shape.
    pub zones: usize,
    pub groups: usize,
    pub tags: usize,
    pub employees: usize,
    /// `tracker/list` entries whose tags could not be read.
    pub trackers: usize,
}

/// One account's context: what rules read as `in_zone`, `tracker.group`, `tracker.tags`
/// and `tracker.driver`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NavixyContext {
    /// Every geofence that is a usable shape, by Navixy's label, in `zone/list` order.
    pub zones: Vec<Zone>,
    /// Tracker groups by id; the default group (0) is not among them.
    pub groups: BTreeMap<i64, TrackerGroup>,
    /// Tags by id.
    pub tags: BTreeMap<i64, Tag>,
    /// The employee assigned to each tracker that has one.
    pub drivers_by_tracker: BTreeMap<TrackerId, Driver>,
    /// Each tracker's tag ids, in Navixy's order (from `tracker/list`).
    pub tags_by_tracker: BTreeMap<TrackerId, Vec<i64>>,
    pub skipped: Skipped,
}

impl NavixyContext {
    /// The title of a tracker's group: `None` for the default group (id 0), no group, or a
    /// group that is not (yet) listed.
    pub fn group_title(&self, group_id: Option<i64>) -> Option<&str> {
        let id = group_id.filter(|&id| id != 0)?;
        self.groups.get(&id).map(|g| g.title.as_str())
    }

    /// A tracker's tag names, in Navixy's order; tags not (yet) listed are left out.
    pub fn tracker_tags(&self, tracker: TrackerId) -> Vec<&str> {
        self.tags_by_tracker
            .get(&tracker)
            .into_iter()
            .flatten()
            .filter_map(|id| self.tags.get(id))
            .map(|tag| tag.name.as_str())
            .collect()
    }

    pub fn driver(&self, tracker: TrackerId) -> Option<&Driver> {
        self.drivers_by_tracker.get(&tracker)
    }

    /// The spatial index over this snapshot's zones.
    pub fn zone_index(&self) -> ZoneIndex {
        ZoneIndex::build(self.zones.iter().cloned())
    }
}

/// Fetches the whole context of the account `hash` opens: the five lists concurrently,
/// then `zone/point/list` for each polygon or sausage whose points `zone/list` left out.
///
/// Errors are the REST client's, typed as for `tracker/list` (auth, rate limit,
/// transport): the caller keeps its previous snapshot and retries. A zone deleted between
/// the two calls is skipped.
pub async fn fetch_all(rest: &RestClient, hash: &Secret) -> Result<NavixyContext, RestError> {
    let (zones, groups, tags, employees, trackers) = tokio::try_join!(
        rest.zone_list(hash),
        rest.tracker_group_list(hash),
        rest.tag_list(hash),
        rest.employee_list(hash),
        rest.tracker_tag_bindings(hash),
    )?;
    let mut context = NavixyContext {
        skipped: Skipped {
            zones: zones.skipped,
            groups: groups.skipped,
            tags: tags.skipped,
            employees: employees.skipped,
            trackers: trackers.skipped,
        },
        ..NavixyContext::default()
    };
    log_skipped("zone/list", &zones);
    log_skipped("tracker/group/list", &groups);
    log_skipped("tag/list", &tags);
    log_skipped("employee/list", &employees);
    log_skipped("tracker/list", &trackers);

    for mut zone in zones.items {
        if zone.has_points() && zone.points.is_none() {
            match rest.zone_point_list(hash, zone.id).await {
                Ok(points) if points.skipped == 0 => zone.points = Some(points.items),
                Ok(points) => {
                    // A polygon missing a vertex is another polygon: leave it out.
                    warn!(
                        zone_id = zone.id,
                        label = %zone.label,
                        skipped = points.skipped,
                        error = points.first_error.as_deref().unwrap_or(""),
                        "Navixy zone has unreadable points; the zone is left out."
                    );
                    context.skipped.zones += 1;
                    continue;
                }
                // Deleted since `zone/list`, or no points after all.
                Err(RestError::Navixy {
                    code: NavixyErrorCode::Other(201 | 230),
                    ..
                }) => {
                    debug!(
                        zone_id = zone.id,
                        "Navixy zone vanished while its points were read."
                    );
                    context.skipped.zones += 1;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        match zone_shape(&zone) {
            Ok(shape) => context.zones.push(Zone::new(zone.label, shape)),
            Err(reason) => {
                warn!(zone_id = zone.id, label = %zone.label, %reason, "Navixy zone left out.");
                context.skipped.zones += 1;
            }
        }
    }
    context.groups = groups.items.into_iter().map(|g| (g.id, g)).collect();
    context.tags = tags.items.into_iter().map(|t| (t.id, t)).collect();
    for employee in &employees.items {
        if let Some(tracker) = employee.tracker_id {
            // Navixy binds one employee per tracker; should two claim one, the first stays.
            context
                .drivers_by_tracker
                .entry(tracker)
                .or_insert_with(|| Driver::from(employee));
        }
    }
    for tracker in trackers.items {
        let mut bindings = tracker.tag_bindings.unwrap_or_default();
        if bindings.is_empty() {
            continue;
        }
        bindings.sort_by_key(|b| b.ordinal.unwrap_or(i64::MAX));
        context
            .tags_by_tracker
            .insert(tracker.id, bindings.iter().map(|b| b.tag_id).collect());
    }
    Ok(context)
}

fn log_skipped<T>(call: &'static str, listed: &Listed<T>) {
    if listed.skipped > 0 {
        warn!(
            call,
            skipped = listed.skipped,
            error = listed.first_error.as_deref().unwrap_or(""),
            "Navixy sent list items that could not be read; they are left out."
        );
    }
}

/// The geometry of a Navixy zone, or why it has none.
pub fn zone_shape(zone: &NavixyZone) -> Result<Shape, String> {
    let points = || -> Vec<[f64; 2]> {
        zone.points
            .iter()
            .flatten()
            .map(|p: &ZonePoint| [p.lat, p.lng])
            .collect()
    };
    let radius = || {
        zone.radius
            .ok_or_else(|| format!("a {} zone without a radius", zone.kind))
    };
    let shape = match zone.kind.as_str() {
        "circle" => {
            let center = zone.center.ok_or("a circle without a center")?;
            Shape::circle(center.lat, center.lng, radius()?)
        }
        "polygon" => Shape::polygon(&points()),
        "sausage" => Shape::sausage(&dedup(points()), radius()?),
        other => return Err(format!("unknown zone type {other:?}")),
    };
    shape.map_err(|e| e.to_string())
}

/// A route without repeated consecutive points (a zero-length segment has no direction).
fn dedup(mut points: Vec<[f64; 2]>) -> Vec<[f64; 2]> {
    points.dedup();
    points
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::navixy::context::types::LatLng;

    fn zone(kind: &str, radius: Option<f64>, points: &[[f64; 2]]) -> NavixyZone {
        NavixyZone {
            id: 1,
            label: "Z".into(),
            kind: kind.into(),
            radius,
            center: Some(LatLng {
                lat: 52.52,
                lng: 13.40,
            }),
            points: Some(
                points
                    .iter()
                    .map(|[lat, lng]| ZonePoint {
                        lat: *lat,
                        lng: *lng,
                        node: None,
                    })
                    .collect(),
            ),
            tags: None,
        }
    }

    #[test]
    fn each_navixy_zone_type_becomes_its_shape() {
        assert_eq!(
            zone_shape(&zone("circle", Some(150.0), &[])),
            Ok(Shape::circle(52.52, 13.40, 150.0).unwrap())
        );
        let square = [[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]];
        assert_eq!(
            zone_shape(&zone("polygon", None, &square)),
            Ok(Shape::polygon(&square).unwrap())
        );
        assert_eq!(
            zone_shape(&zone(
                "sausage",
                Some(50.0),
                &[[0.0, 0.0], [0.0, 0.0], [0.0, 1.0]]
            )),
            Ok(Shape::sausage(&[[0.0, 0.0], [0.0, 1.0]], 50.0).unwrap())
        );
        assert_eq!(
            zone_shape(&zone("circle", None, &[])),
            Err("a circle zone without a radius".into())
        );
        assert_eq!(
            zone_shape(&zone("sausage", Some(50.0), &[[0.0, 0.0]])),
            Err("a sausage (a route with a radius) needs at least 2 points, this one has 1".into())
        );
        assert_eq!(
            zone_shape(&zone("cloud", None, &[])),
            Err("unknown zone type \"cloud\"".into())
        );
    }

    #[test]
    fn lookups_follow_navixy_conventions() {
        let mut context = NavixyContext::default();
        context.groups.insert(
            1,
            TrackerGroup {
                id: 1,
                title: "North".into(),
                color: None,
            },
        );
        for (id, name) in [(1, "reefer"), (2, "leased")] {
            context.tags.insert(
                id,
                Tag {
                    id,
                    name: name.into(),
                    color: None,
                },
            );
        }
        context.tags_by_tracker.insert(7, vec![2, 1, 99]);
        assert_eq!(context.group_title(Some(1)), Some("North"));
        assert_eq!(context.group_title(Some(0)), None, "the default group");
        assert_eq!(context.group_title(None), None);
        assert_eq!(context.group_title(Some(5)), None);
        assert_eq!(context.tracker_tags(7), ["leased", "reefer"]);
        assert!(context.tracker_tags(8).is_empty());
    }
}
