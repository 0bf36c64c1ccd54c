//! Geofences as geometry: circles, polygons and sausages (a route with a radius), a
//! GeoJSON zone file loader, and [`ZoneIndex`], the spatial index that answers which
//! zones hold a point.
//!
//! Where zones come from (the config, a GeoJSON file, Navixy's `zone/list`) and what rules
//! do with them are not this module's business: it takes labelled shapes and answers
//! point queries, nothing else.

mod geojson;
mod index;
mod shape;

pub use geojson::{GeoJsonError, load_geojson, parse_geojson};
pub use index::ZoneIndex;
pub use shape::{Rings, Shape, ShapeError, Zone, distance_m};
