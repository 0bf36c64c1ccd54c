//! Navixy's context objects as its REST API sends them: geofences (`zone/list`,
//! `zone/point/list`), tracker groups, tags, employees, and the tag bindings of
//! `tracker/list`.
//!
//! Tolerant by design: unknown fields are ignored, and a list item that does not fit its
//! type is skipped and counted in its [`Listed`] (one odd zone must not hide the others),
//! never a failed refresh and never a panic.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeOwned, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::navixy::messages::TrackerId;

/// The items of a Navixy `list` that decoded, and how many did not.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed<T> {
    pub items: Vec<T>,
    /// Items that did not decode and were left out.
    pub skipped: usize,
    /// Why the first skipped item was left out, for the log.
    pub first_error: Option<String>,
}

impl<T> Default for Listed<T> {
    fn default() -> Self {
        Listed {
            items: Vec::new(),
            skipped: 0,
            first_error: None,
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Listed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor<T>(PhantomData<T>);

        impl<'de, T: DeserializeOwned> Visitor<'de> for ListVisitor<T> {
            type Value = Listed<T>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Listed<T>, A::Error> {
                let mut out = Listed::default();
                // Each item is read as any JSON first, so a bad one is skipped whole.
                while let Some(value) = seq.next_element::<serde_json::Value>()? {
                    match T::deserialize(value) {
                        Ok(item) => out.items.push(item),
                        Err(e) => {
                            out.skipped += 1;
                            out.first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                Ok(out)
            }
        }

        deserializer.deserialize_seq(ListVisitor(PhantomData))
    }
}

/// The success body of a Navixy `*/list` call.
#[derive(Debug, Deserialize)]
#[serde(bound = "T: DeserializeOwned")]
pub struct ListAnswer<T: DeserializeOwned> {
    pub list: Listed<T>,
}

/// A latitude and longitude in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct LatLng {
    pub lat: f64,
    pub lng: f64,
}

/// A geofence point (`zone/point/list`, or `points` in `zone/list` with `with_points`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct ZonePoint {
    pub lat: f64,
    pub lng: f64,
    /// A route node the user placed (true) or a point of the road between nodes.
    #[serde(default)]
    pub node: Option<bool>,
}

/// A geofence as `zone/list` sends it. Which fields matter depends on `kind`: a circle
/// has `center` and `radius`; a polygon has `points`; a sausage has `points` (its
/// polyline) and `radius`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NavixyZone {
    pub id: i64,
    /// What rules call it (`in_zone("Depot North")`).
    pub label: String,
    /// `circle`, `polygon` or `sausage`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Metres (Navixy documents an int; a float is accepted).
    #[serde(default)]
    pub radius: Option<f64>,
    #[serde(default)]
    pub center: Option<LatLng>,
    /// Present when asked for `with_points` (and the server honours it); otherwise
    /// `zone/point/list` gives them.
    #[serde(default)]
    pub points: Option<Vec<ZonePoint>>,
    /// Tag ids.
    #[serde(default)]
    pub tags: Option<Vec<i64>>,
}

impl NavixyZone {
    /// Whether the shape is made of points (which `zone/list` may leave out).
    pub fn has_points(&self) -> bool {
        matches!(self.kind.as_str(), "polygon" | "sausage")
    }
}

/// A tracker group (`tracker/group/list`). Navixy's default group, id 0, is not listed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TrackerGroup {
    pub id: i64,
    pub title: String,
    #[serde(default)]
    pub color: Option<String>,
}

/// A tag (`tag/list`): trackers, zones and employees refer to tags by id.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Tag {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub color: Option<String>,
}

/// An employee or driver (`employee/list`), with the tracker assigned to them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Employee {
    pub id: i64,
    /// The tracker this employee drives now; `null` when none.
    #[serde(default)]
    pub tracker_id: Option<TrackerId>,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub middle_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    /// Digits without `+`; may be empty.
    #[serde(default)]
    pub phone: Option<String>,
}

impl Employee {
    /// First, middle and last names, the empty ones left out.
    pub fn full_name(&self) -> String {
        [&self.first_name, &self.middle_name, &self.last_name]
            .into_iter()
            .filter_map(|part| part.as_deref().map(str::trim))
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The part of a `tracker/list` entry that context needs: its group and tags.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TrackerBindings {
    pub id: TrackerId,
    /// 0 (or absent) for Navixy's default group.
    #[serde(default)]
    pub group_id: Option<i64>,
    #[serde(default)]
    pub tag_bindings: Option<Vec<TagBinding>>,
}

/// One tag on a tracker.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct TagBinding {
    pub tag_id: i64,
    /// The tag's position among the tracker's tags.
    #[serde(default)]
    pub ordinal: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_zone_samples_decode() {
        let body = r#"{"success": true, "list": [
          {"id": 985472, "type": "circle", "label": "Zone name", "address": "Karlsplatz, 2",
           "color": "27A9E3", "radius": 150, "center": {"lat": 48.200940, "lng": 16.369856},
           "bounds": {"nw": {"lat": 48.202289, "lng": 16.367832}, "se": {"lat": 48.199591, "lng": 16.371880}},
           "tags": [127, 15]},
          {"id": 12345, "type": "sausage", "label": "Route", "radius": 150,
           "points": [{"lat": 11.0, "lng": 22.0, "node": true}, {"lat": 11.1, "lng": 22.1, "node": false}],
           "tags": [289]}
        ]}"#;
        let answer: ListAnswer<NavixyZone> = serde_json::from_str(body).unwrap();
        assert_eq!(answer.list.skipped, 0);
        let [circle, sausage] = &answer.list.items[..] else {
            panic!("{:?}", answer.list)
        };
        assert_eq!(circle.kind, "circle");
        assert_eq!(circle.radius, Some(150.0));
        assert_eq!(
            circle.center,
            Some(LatLng {
                lat: 48.200940,
                lng: 16.369856
            })
        );
        assert_eq!(circle.tags, Some(vec![127, 15]));
        assert!(!circle.has_points() && sausage.has_points());
        assert_eq!(sausage.points.as_ref().map(Vec::len), Some(2));
    }

    #[test]
    fn bad_items_are_skipped_and_counted_not_fatal() {
        let body = r#"{"list": [
          {"id": 1, "title": "North", "color": "FF6DDC"},
          {"id": "two", "title": "South"},
          {"title": "no id"},
          7,
          {"id": 4, "title": "East", "extra": {"nested": [1, 2]}}
        ]}"#;
        let answer: ListAnswer<TrackerGroup> = serde_json::from_str(body).unwrap();
        let titles: Vec<&str> = answer.list.items.iter().map(|g| g.title.as_str()).collect();
        assert_eq!(titles, ["North", "East"]);
        assert_eq!(answer.list.skipped, 3);
        assert!(
            answer
                .list
                .first_error
                .as_deref()
                .is_some_and(|e| e.contains("invalid type")),
            "{:?}",
            answer.list.first_error
        );
        // Not a list at all is the answer's error, not a skipped item.
        assert!(serde_json::from_str::<ListAnswer<Tag>>(r#"{"list": 3}"#).is_err());
    }

    #[test]
    fn employees_give_their_tracker_and_a_full_name() {
        let body = r#"{"success": true, "count": 2, "list": [
          {"id": 222, "tracker_id": 21001, "first_name": "John", "middle_name": "",
           "last_name": "Smith", "email": "smith@example.com", "phone": "442071111111",
           "location": {"lat": 52.5, "lng": 13.4, "address": "Engeldamm 18"}, "tags": [1, 2]},
          {"id": 223, "tracker_id": null, "first_name": "Ann", "middle_name": "B",
           "last_name": "Lee", "phone": ""}
        ]}"#;
        let answer: ListAnswer<Employee> = serde_json::from_str(body).unwrap();
        let [john, ann] = &answer.list.items[..] else {
            panic!()
        };
        assert_eq!(john.tracker_id, Some(21001));
        assert_eq!(john.full_name(), "John Smith");
        assert_eq!(ann.tracker_id, None);
        assert_eq!(ann.full_name(), "Ann B Lee");
    }
}
