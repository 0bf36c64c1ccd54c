//! Zones from a GeoJSON file (`zones: { file: zones.geojson }`): a FeatureCollection whose
//! features are Polygons and MultiPolygons, Points with a radius (circles) and LineStrings
//! with a radius (sausages), each labelled by its `name` (or `label`) property.
//!
//! The file is the user's: any feature that is not a zone is an error naming the file and
//! the feature's index (and label when it has one), never a zone silently left out.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::shape::{Rings, Shape, Zone};

/// A GeoJSON zone file that cannot be used, and where.
#[derive(Debug, thiserror::Error)]
pub enum GeoJsonError {
    #[error("{}: cannot read the zone file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: not valid JSON: {message}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Collection { path: PathBuf, message: String },
    #[error("{}: feature {index}{}: {message}", path.display(), label.as_ref().map(|l| format!(" ({l:?})")).unwrap_or_default())]
    Feature {
        path: PathBuf,
        /// The feature's position in `features`, from 0.
        index: usize,
        label: Option<String>,
        message: String,
    },
}

/// Reads and parses the zone file at `path`.
pub fn load_geojson(path: &Path) -> Result<Vec<Zone>, GeoJsonError> {
    let text = std::fs::read_to_string(path).map_err(|source| GeoJsonError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_geojson(&text, path)
}

/// Parses a FeatureCollection; `path` names the file in errors.
pub fn parse_geojson(text: &str, path: &Path) -> Result<Vec<Zone>, GeoJsonError> {
    let root: Value = serde_json::from_str(text).map_err(|e| GeoJsonError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let collection_error = |message: &str| GeoJsonError::Collection {
        path: path.to_path_buf(),
        message: message.to_string(),
    };
    if root.get("type").and_then(Value::as_str) != Some("FeatureCollection") {
        return Err(collection_error(
            "expected a GeoJSON FeatureCollection (`\"type\": \"FeatureCollection\"`)",
        ));
    }
    let Some(features) = root.get("features").and_then(Value::as_array) else {
        return Err(collection_error(
            "the FeatureCollection has no `features` array",
        ));
    };
    features
        .iter()
        .enumerate()
        .map(|(index, feature)| {
            let label = feature_label(feature);
            feature_zone(feature, label.as_deref()).map_err(|message| GeoJsonError::Feature {
                path: path.to_path_buf(),
                index,
                label,
                message,
            })
        })
        .collect()
}

fn properties(feature: &Value) -> Option<&Map<String, Value>> {
    feature.get("properties").and_then(Value::as_object)
}

/// The `name` property, or else `label`, when it is a non-empty string.
fn feature_label(feature: &Value) -> Option<String> {
    let props = properties(feature)?;
    ["name", "label"]
        .iter()
        .filter_map(|key| props.get(*key).and_then(Value::as_str))
        .map(str::trim)
        .find(|s| !s.is_empty())
        .map(str::to_string)
}

fn feature_zone(feature: &Value, label: Option<&str>) -> Result<Zone, String> {
    if feature.get("type").and_then(Value::as_str) != Some("Feature") {
        return Err("not a GeoJSON Feature (`\"type\": \"Feature\"`)".into());
    }
    let label = label.ok_or("no label: give it a `name` (or `label`) property")?;
    let geometry = feature
        .get("geometry")
        .and_then(Value::as_object)
        .ok_or("no geometry")?;
    let kind = geometry
        .get("type")
        .and_then(Value::as_str)
        .ok_or("the geometry has no `type`")?;
    let coordinates = geometry
        .get("coordinates")
        .ok_or("the geometry has no `coordinates`")?;
    let radius = || -> Result<f64, String> {
        let props = properties(feature);
        let value = ["radius_m", "radius"]
            .iter()
            .find_map(|key| props.and_then(|p| p.get(*key)));
        match value {
            Some(v) => v
                .as_f64()
                .ok_or_else(|| format!("the radius must be a number of metres, not {v}")),
            None => Err(format!(
                "a {kind} zone needs a `radius_m` property (metres)"
            )),
        }
    };
    let shape = match kind {
        "Point" => {
            let [lat, lng] = position(coordinates)?;
            Shape::circle(lat, lng, radius()?)
        }
        "LineString" => Shape::sausage(&positions(coordinates)?, radius()?),
        "Polygon" => Shape::multi_polygon(&[rings(coordinates)?]),
        "MultiPolygon" => {
            let polygons = coordinates
                .as_array()
                .ok_or("MultiPolygon coordinates must be an array of polygons")?
                .iter()
                .map(rings)
                .collect::<Result<Vec<_>, _>>()?;
            if polygons.is_empty() {
                return Err("the MultiPolygon has no polygons".into());
            }
            Shape::multi_polygon(&polygons)
        }
        other => {
            return Err(format!(
                "{other} is not a zone: use Polygon, MultiPolygon, Point (with `radius_m`) or LineString (with `radius_m`)"
            ));
        }
    };
    shape
        .map(|shape| Zone::new(label, shape))
        .map_err(|e| e.to_string())
}

/// A GeoJSON position `[lng, lat]` (an altitude after them is ignored), as `[lat, lng]`.
fn position(value: &Value) -> Result<[f64; 2], String> {
    let numbers = value
        .as_array()
        .filter(|a| a.len() >= 2)
        .and_then(|a| Some([a[0].as_f64()?, a[1].as_f64()?]));
    match numbers {
        Some([lng, lat]) => Ok([lat, lng]),
        None => Err(format!(
            "a position must be [longitude, latitude], not {value}"
        )),
    }
}

fn positions(value: &Value) -> Result<Vec<[f64; 2]>, String> {
    value
        .as_array()
        .ok_or_else(|| format!("expected an array of positions, not {value}"))?
        .iter()
        .map(position)
        .collect()
}

/// A polygon's rings: the outer one, then its holes.
fn rings(value: &Value) -> Result<Rings, String> {
    let rings = value
        .as_array()
        .ok_or("Polygon coordinates must be an array of rings")?
        .iter()
        .map(positions)
        .collect::<Result<Vec<_>, _>>()?;
    let mut rings = rings.into_iter();
    let outer = rings.next().ok_or("the polygon has no rings")?;
    Ok((outer, rings.collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Zone>, String> {
        parse_geojson(text, Path::new("zones.geojson")).map_err(|e| e.to_string())
    }

    #[test]
    fn every_zone_kind_loads_with_its_label() {
        let text = r#"{
          "type": "FeatureCollection",
          "features": [
            {"type": "Feature", "properties": {"name": "Depot", "radius_m": 300},
             "geometry": {"type": "Point", "coordinates": [13.40, 52.52]}},
            {"type": "Feature", "properties": {"label": "Yard", "colour": "red"},
             "geometry": {"type": "Polygon", "coordinates": [[[13.30, 52.50], [13.32, 52.50], [13.32, 52.51], [13.30, 52.51], [13.30, 52.50]]]}},
            {"type": "Feature", "properties": {"name": "Sites"},
             "geometry": {"type": "MultiPolygon", "coordinates": [
               [[[0, 0], [1, 0], [1, 1], [0, 0]]],
               [[[10, 10], [11, 10], [11, 11], [10, 10]]]]}},
            {"type": "Feature", "properties": {"name": "A10", "radius": 50},
             "geometry": {"type": "LineString", "coordinates": [[13.0, 52.0, 40.0], [13.1, 52.0]]}}
          ]
        }"#;
        let zones = parse(text).unwrap();
        let labels: Vec<&str> = zones.iter().map(|z| z.label.as_str()).collect();
        assert_eq!(labels, ["Depot", "Yard", "Sites", "A10"]);
        assert_eq!(zones[0].shape, Shape::circle(52.52, 13.40, 300.0).unwrap());
        assert!(zones[1].contains(52.505, 13.31));
        assert!(!zones[1].contains(52.505, 13.33));
        assert!(
            zones[2].contains(10.2, 10.8),
            "lat 10.2, lng 10.8 is in the second"
        );
        assert!(!zones[2].contains(10.8, 10.2));
        assert_eq!(
            zones[3].shape,
            Shape::sausage(&[[52.0, 13.0], [52.0, 13.1]], 50.0).unwrap()
        );
    }

    #[test]
    fn errors_name_the_file_the_feature_and_the_fix() {
        let feature = |props: &str, geometry: &str| {
            format!(
                r#"{{"type":"FeatureCollection","features":[
                  {{"type":"Feature","properties":{{"name":"Ok","radius_m":5}},"geometry":{{"type":"Point","coordinates":[0,0]}}}},
                  {{"type":"Feature","properties":{props},"geometry":{geometry}}}]}}"#
            )
        };
        let point = r#"{"type":"Point","coordinates":[13.4,52.5]}"#;
        assert_eq!(
            parse(&feature("{}", point)).unwrap_err(),
            "zones.geojson: feature 1: no label: give it a `name` (or `label`) property"
        );
        assert_eq!(
            parse(&feature(r#"{"name":"Depot"}"#, point)).unwrap_err(),
            "zones.geojson: feature 1 (\"Depot\"): a Point zone needs a `radius_m` property (metres)"
        );
        assert_eq!(
            parse(&feature(r#"{"name":"Depot","radius_m":"big"}"#, point)).unwrap_err(),
            "zones.geojson: feature 1 (\"Depot\"): the radius must be a number of metres, not \"big\""
        );
        assert_eq!(
            parse(&feature(
                r#"{"name":"Depot","radius_m":5}"#,
                r#"{"type":"Point","coordinates":[13.4,95]}"#
            ))
            .unwrap_err(),
            "zones.geojson: feature 1 (\"Depot\"): latitude 95 is not within -90..90"
        );
        assert_eq!(
            parse(&feature(
                r#"{"name":"P"}"#,
                r#"{"type":"Polygon","coordinates":[[[0,0],[1,1],[0,0]]]}"#
            ))
            .unwrap_err(),
            "zones.geojson: feature 1 (\"P\"): a polygon needs at least 3 points, this one has 2"
        );
        assert_eq!(
            parse(&feature(
                r#"{"name":"P"}"#,
                r#"{"type":"Polygon","coordinates":[[[0],[1,1],[0,0]]]}"#
            ))
            .unwrap_err(),
            "zones.geojson: feature 1 (\"P\"): a position must be [longitude, latitude], not [0]"
        );
        assert_eq!(
            parse(&feature(
                r#"{"name":"G"}"#,
                r#"{"type":"GeometryCollection","coordinates":[]}"#
            ))
            .unwrap_err(),
            "zones.geojson: feature 1 (\"G\"): GeometryCollection is not a zone: use Polygon, MultiPolygon, Point (with `radius_m`) or LineString (with `radius_m`)"
        );
        assert_eq!(
            parse(&feature(r#"{"name":"N"}"#, "null")).unwrap_err(),
            "zones.geojson: feature 1 (\"N\"): no geometry"
        );
        assert_eq!(
            parse(r#"{"type":"Feature"}"#).unwrap_err(),
            "zones.geojson: expected a GeoJSON FeatureCollection (`\"type\": \"FeatureCollection\"`)"
        );
        let err =
            parse("{\n  \"type\": \"FeatureCollection\",\n  \"features\": [,]\n}").unwrap_err();
        assert!(
            err.starts_with("zones.geojson:3:16: not valid JSON"),
            "{err}"
        );
        let err = load_geojson(Path::new("/nonexistent/zones.geojson")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/zones.geojson: cannot read the zone file"),
            "{err}"
        );
    }
}
