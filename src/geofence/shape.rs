//! One geofence: a label and its shape (circle, polygon or sausage), whether a point lies
//! in it, and the bounding box the index files it under.
//!
//! Coordinates are degrees, `x` = longitude and `y` = latitude as `geo` expects. Distances
//! are on the sphere (haversine, the mean Earth radius), the same as `distance_m`: a
//! city-sized zone is within centimetres of the ellipsoid's answer for our purpose.

use geo::{
    Closest, Coord, Distance, Haversine, HaversineClosestPoint, Intersects, Line, LineString,
    MultiPolygon, Point, Polygon, Rect,
};

/// The mean Earth radius (IUGG) that `geo`'s haversine uses, in metres.
const EARTH_RADIUS_M: f64 = 6_371_008.8;
/// Metres per degree of latitude on that sphere.
const METRES_PER_DEGREE: f64 = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;

/// A shape that cannot be a geofence, with what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShapeError {
    #[error("latitude {0} is not within -90..90")]
    Latitude(f64),
    #[error("longitude {0} is not within -180..180")]
    Longitude(f64),
    #[error("radius {0} m is not a positive number of metres")]
    Radius(f64),
    #[error("a polygon needs at least 3 points, this one has {0}")]
    TooFewPolygonPoints(usize),
    #[error("a sausage (a route with a radius) needs at least 2 points, this one has {0}")]
    TooFewRoutePoints(usize),
}

/// A polygon as `[lat, lng]` rings: the outer one, then its holes.
pub type Rings = (Vec<[f64; 2]>, Vec<Vec<[f64; 2]>>);

/// Where a geofence is.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// Every point within `radius_m` of the centre (the edge counts as inside).
    Circle { center: Point<f64>, radius_m: f64 },
    /// One or more polygons, holes excluded; a point on an edge counts as inside.
    Polygon(MultiPolygon<f64>),
    /// Navixy's "sausage": every point within `radius_m` of the polyline (a route corridor).
    Sausage {
        route: LineString<f64>,
        radius_m: f64,
    },
}

impl Shape {
    /// A circle around (`lat`, `lng`).
    pub fn circle(lat: f64, lng: f64, radius_m: f64) -> Result<Shape, ShapeError> {
        let center = point(lat, lng)?;
        Ok(Shape::Circle {
            center,
            radius_m: radius(radius_m)?,
        })
    }

    /// A polygon from its `[lat, lng]` vertices; the last connects back to the first.
    pub fn polygon(points: &[[f64; 2]]) -> Result<Shape, ShapeError> {
        Ok(Shape::Polygon(MultiPolygon(vec![ring_polygon(
            points,
            &[],
        )?])))
    }

    /// Several polygons, each an outer ring and its holes, as `[lat, lng]` vertices.
    pub fn multi_polygon(polygons: &[Rings]) -> Result<Shape, ShapeError> {
        let polygons = polygons
            .iter()
            .map(|(outer, holes)| ring_polygon(outer, holes))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Shape::Polygon(MultiPolygon(polygons)))
    }

    /// A corridor of `radius_m` around the polyline through `[lat, lng]` points.
    pub fn sausage(points: &[[f64; 2]], radius_m: f64) -> Result<Shape, ShapeError> {
        if points.len() < 2 {
            return Err(ShapeError::TooFewRoutePoints(points.len()));
        }
        Ok(Shape::Sausage {
            route: line(points)?,
            radius_m: radius(radius_m)?,
        })
    }

    /// Whether (`lat`, `lng`) lies in the shape; edges count as inside.
    pub fn contains(&self, lat: f64, lng: f64) -> bool {
        let p = Point::new(lng, lat);
        match self {
            Shape::Circle { center, radius_m } => Haversine.distance(*center, p) <= *radius_m,
            Shape::Polygon(polygons) => polygons.intersects(&p),
            Shape::Sausage { route, radius_m } => {
                route.lines().any(|line| within(&line, p, *radius_m))
            }
        }
    }

    /// The smallest lat/lng box holding the shape, radius included (never too small, a
    /// little large at the corners of a circle: the exact test follows it).
    pub fn bounding_box(&self) -> Rect<f64> {
        match self {
            Shape::Circle { center, radius_m } => expand(Rect::new(center.0, center.0), *radius_m),
            Shape::Polygon(polygons) => {
                let mut coords = polygons.0.iter().flat_map(|p| p.exterior().0.iter());
                bounds(&mut coords)
            }
            Shape::Sausage { route, radius_m } => expand(bounds(&mut route.0.iter()), *radius_m),
        }
    }
}

impl Shape {
    /// The boxes the index files the shape under, each with the part it bounds: one box
    /// for a circle or a polygon, one per segment for a sausage (a long winding route's
    /// single box would hold much of a city, and every lookup there would test it).
    pub(super) fn part_boxes(&self) -> Vec<(Option<usize>, Rect<f64>)> {
        match self {
            Shape::Sausage { route, radius_m } => route
                .lines()
                .enumerate()
                .map(|(k, line)| {
                    let rect = bounds(&mut [line.start, line.end].iter());
                    (Some(k), expand(rect, *radius_m))
                })
                .collect(),
            _ => vec![(None, self.bounding_box())],
        }
    }

    /// Whether (`lat`, `lng`) lies in part `part` of the shape (see
    /// [`Self::part_boxes`]), or in the whole shape for `None`.
    pub(super) fn part_contains(&self, part: Option<usize>, lat: f64, lng: f64) -> bool {
        match (self, part) {
            (Shape::Sausage { route, radius_m }, Some(k)) => {
                let (Some(start), Some(end)) = (route.0.get(k), route.0.get(k + 1)) else {
                    return false;
                };
                within(&Line::new(*start, *end), Point::new(lng, lat), *radius_m)
            }
            _ => self.contains(lat, lng),
        }
    }
}

/// Whether `p` is within `radius_m` of a segment (a repeated point is a point).
fn within(line: &Line<f64>, p: Point<f64>, radius_m: f64) -> bool {
    if line.start == line.end {
        return Haversine.distance(Point(line.start), p) <= radius_m;
    }
    match line.haversine_closest_point(&p) {
        Closest::Intersection(_) => true,
        Closest::SinglePoint(q) => Haversine.distance(q, p) <= radius_m,
        Closest::Indeterminate => false,
    }
}

/// Great-circle distance in metres between two points given in degrees (`distance_m` in
/// rules; the same sphere the shapes use).
pub fn distance_m(lat1: f64, lng1: f64, lat2: f64, lng2: f64) -> f64 {
    Haversine.distance(Point::new(lng1, lat1), Point::new(lng2, lat2))
}

/// A named geofence.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    /// What rules call it: `in_zone("Depot North")`.
    pub label: String,
    pub shape: Shape,
}

impl Zone {
    pub fn new(label: impl Into<String>, shape: Shape) -> Zone {
        Zone {
            label: label.into(),
            shape,
        }
    }

    pub fn contains(&self, lat: f64, lng: f64) -> bool {
        self.shape.contains(lat, lng)
    }
}

fn point(lat: f64, lng: f64) -> Result<Point<f64>, ShapeError> {
    if !(-90.0..=90.0).contains(&lat) {
        return Err(ShapeError::Latitude(lat));
    }
    if !(-180.0..=180.0).contains(&lng) {
        return Err(ShapeError::Longitude(lng));
    }
    Ok(Point::new(lng, lat))
}

fn radius(radius_m: f64) -> Result<f64, ShapeError> {
    if radius_m.is_finite() && radius_m > 0.0 {
        Ok(radius_m)
    } else {
        Err(ShapeError::Radius(radius_m))
    }
}

fn line(points: &[[f64; 2]]) -> Result<LineString<f64>, ShapeError> {
    points
        .iter()
        .map(|[lat, lng]| point(*lat, *lng).map(|p| p.0))
        .collect::<Result<Vec<Coord<f64>>, _>>()
        .map(LineString)
}

fn ring_polygon(outer: &[[f64; 2]], holes: &[Vec<[f64; 2]>]) -> Result<Polygon<f64>, ShapeError> {
    // A closed ring repeats its first point: that copy is not a vertex of its own.
    let vertices = |ring: &[[f64; 2]]| {
        if ring.len() > 1 && ring.first() == ring.last() {
            ring.len() - 1
        } else {
            ring.len()
        }
    };
    for ring in std::iter::once(outer).chain(holes.iter().map(Vec::as_slice)) {
        if vertices(ring) < 3 {
            return Err(ShapeError::TooFewPolygonPoints(vertices(ring)));
        }
    }
    let interiors = holes
        .iter()
        .map(|h| line(h))
        .collect::<Result<Vec<_>, _>>()?;
    // `Polygon::new` closes the rings.
    Ok(Polygon::new(line(outer)?, interiors))
}

/// The box of some coordinates (the constructors guarantee at least one).
fn bounds(coords: &mut dyn Iterator<Item = &Coord<f64>>) -> Rect<f64> {
    let first = coords.next().copied().unwrap_or(Coord { x: 0.0, y: 0.0 });
    let (mut min, mut max) = (first, first);
    for c in coords {
        min.x = min.x.min(c.x);
        min.y = min.y.min(c.y);
        max.x = max.x.max(c.x);
        max.y = max.y.max(c.y);
    }
    Rect::new(min, max)
}

/// Grows a box by `metres` on every side. A degree of longitude shrinks towards the
/// poles, so the widening uses the latitude farthest from the equator; near a pole the
/// box spans every longitude.
fn expand(rect: Rect<f64>, metres: f64) -> Rect<f64> {
    let dlat = metres / METRES_PER_DEGREE;
    let (min, max) = (rect.min(), rect.max());
    let lat_lo = (min.y - dlat).max(-90.0);
    let lat_hi = (max.y + dlat).min(90.0);
    let widest = lat_lo.abs().max(lat_hi.abs()).to_radians().cos();
    let dlng = if widest > 1e-6 {
        (dlat / widest).min(360.0)
    } else {
        360.0
    };
    Rect::new(
        Coord {
            x: (min.x - dlng).max(-180.0),
            y: lat_lo,
        },
        Coord {
            x: (max.x + dlng).min(180.0),
            y: lat_hi,
        },
    )
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

    /// The point `metres` north of (`lat`, `lng`).
    fn north(lat: f64, lng: f64, metres: f64) -> (f64, f64) {
        (lat + metres / METRES_PER_DEGREE, lng)
    }

    /// The point `metres` east of (`lat`, `lng`), along the parallel.
    fn east(lat: f64, lng: f64, metres: f64) -> (f64, f64) {
        (
            lat,
            lng + metres / (METRES_PER_DEGREE * lat.to_radians().cos()),
        )
    }

    #[test]
    fn a_circle_holds_its_centre_and_its_edge_and_nothing_past_it() {
        let depot = Shape::circle(52.52, 13.40, 300.0).unwrap();
        assert!(depot.contains(52.52, 13.40));
        let (lat, lng) = north(52.52, 13.40, 299.9);
        assert!(depot.contains(lat, lng));
        let (lat, lng) = north(52.52, 13.40, 300.1);
        assert!(!depot.contains(lat, lng));
        let (lat, lng) = east(52.52, 13.40, 299.0);
        assert!(depot.contains(lat, lng));
        let (lat, lng) = east(52.52, 13.40, 301.0);
        assert!(!depot.contains(lat, lng));
        // The box holds the whole circle.
        let bbox = depot.bounding_box();
        let (lat, _) = north(52.52, 13.40, 300.0);
        assert!(bbox.max().y >= lat && bbox.min().y <= 52.52 - (lat - 52.52));
        let (_, lng) = east(52.52, 13.40, 300.0);
        assert!(bbox.max().x >= lng);
    }

    #[test]
    fn a_polygon_holds_its_inside_and_edges_but_not_its_hole() {
        let yard = Shape::polygon(&[
            [52.50, 13.30],
            [52.51, 13.30],
            [52.51, 13.32],
            [52.50, 13.32],
        ])
        .unwrap();
        assert!(yard.contains(52.505, 13.31));
        assert!(yard.contains(52.50, 13.31), "on the southern edge");
        assert!(yard.contains(52.51, 13.32), "on a vertex");
        assert!(!yard.contains(52.505, 13.3201));
        assert!(!yard.contains(52.4999, 13.31));
        let bbox = yard.bounding_box();
        assert_eq!((bbox.min().y, bbox.min().x), (52.50, 13.30));
        assert_eq!((bbox.max().y, bbox.max().x), (52.51, 13.32));

        // A concave L: the notch is outside.
        let l = Shape::polygon(&[
            [0.0, 0.0],
            [0.0, 2.0],
            [1.0, 2.0],
            [1.0, 1.0],
            [2.0, 1.0],
            [2.0, 0.0],
            [0.0, 0.0],
        ])
        .unwrap();
        assert!(l.contains(0.5, 1.5));
        assert!(l.contains(1.5, 0.5));
        assert!(!l.contains(1.5, 1.5));

        let holed = Shape::multi_polygon(&[(
            vec![[0.0, 0.0], [0.0, 4.0], [4.0, 4.0], [4.0, 0.0]],
            vec![vec![[1.0, 1.0], [1.0, 2.0], [2.0, 2.0], [2.0, 1.0]]],
        )])
        .unwrap();
        assert!(holed.contains(3.0, 3.0));
        assert!(!holed.contains(1.5, 1.5));
    }

    #[test]
    fn a_sausage_follows_every_segment_of_its_route() {
        // An L-shaped route with a bend: east 2 km, then north 2 km.
        let start = (52.50, 13.30);
        let bend = east(start.0, start.1, 2_000.0);
        let end = north(bend.0, bend.1, 2_000.0);
        let route = [[start.0, start.1], [bend.0, bend.1], [end.0, end.1]];
        let corridor = Shape::sausage(&route, 100.0).unwrap();
        // On each segment, and at its ends (the corridor has round caps).
        let mid_first = east(start.0, start.1, 1_000.0);
        assert!(corridor.contains(mid_first.0, mid_first.1));
        let mid_second = north(bend.0, bend.1, 1_000.0);
        assert!(corridor.contains(mid_second.0, mid_second.1));
        assert!(corridor.contains(end.0, end.1));
        // 90 m off the first segment is in, 110 m is out.
        let (lat, lng) = north(mid_first.0, mid_first.1, 90.0);
        assert!(corridor.contains(lat, lng));
        let (lat, lng) = north(mid_first.0, mid_first.1, 110.0);
        assert!(!corridor.contains(lat, lng));
        // 90 m east of the second segment is in, 110 m is out.
        let (lat, lng) = east(mid_second.0, mid_second.1, 90.0);
        assert!(corridor.contains(lat, lng));
        let (lat, lng) = east(mid_second.0, mid_second.1, 110.0);
        assert!(!corridor.contains(lat, lng));
        // Beyond the end cap, and inside the bend's elbow but far from both legs.
        let (lat, lng) = north(end.0, end.1, 150.0);
        assert!(!corridor.contains(lat, lng));
        let elbow = north(mid_first.0, mid_first.1, 1_000.0);
        assert!(!corridor.contains(elbow.0, elbow.1));
        // The box holds the corridor on every side.
        let bbox = corridor.bounding_box();
        let (lat, _) = north(end.0, end.1, 100.0);
        assert!(bbox.max().y >= lat);
        let (_, lng) = east(bend.0, bend.1, 100.0);
        assert!(bbox.max().x >= lng);
        assert!(bbox.min().y < start.0 && bbox.min().x < start.1);
    }

    #[test]
    fn bad_shapes_are_refused_with_the_reason() {
        assert_eq!(
            Shape::circle(91.0, 0.0, 10.0),
            Err(ShapeError::Latitude(91.0))
        );
        assert_eq!(
            Shape::circle(0.0, 181.0, 10.0),
            Err(ShapeError::Longitude(181.0))
        );
        assert_eq!(Shape::circle(0.0, 0.0, 0.0), Err(ShapeError::Radius(0.0)));
        assert!(matches!(
            Shape::circle(f64::NAN, 0.0, 1.0),
            Err(ShapeError::Latitude(_))
        ));
        assert!(matches!(
            Shape::circle(0.0, 0.0, f64::INFINITY),
            Err(ShapeError::Radius(_))
        ));
        assert_eq!(
            Shape::polygon(&[[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]),
            Err(ShapeError::TooFewPolygonPoints(2))
        );
        assert_eq!(
            Shape::sausage(&[[0.0, 0.0]], 10.0),
            Err(ShapeError::TooFewRoutePoints(1))
        );
        assert_eq!(
            Shape::sausage(&[[0.0, 0.0], [0.0, 1.0]], -1.0),
            Err(ShapeError::Radius(-1.0))
        );
    }

    #[test]
    fn boxes_near_a_pole_widen_to_every_longitude() {
        let cap = Shape::circle(89.9999, 10.0, 1_000.0).unwrap();
        let bbox = cap.bounding_box();
        assert_eq!(bbox.max().y, 90.0);
        assert_eq!((bbox.min().x, bbox.max().x), (-180.0, 180.0));
        assert!(cap.contains(89.9999, -170.0));
    }
}
