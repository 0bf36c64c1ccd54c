//! Zone lookups per second in a [`ZoneIndex`] of 5,000 zones around a city (Berlin):
//! circles of 50-500 m, polygons of 4-12 vertices a few hundred metres across, and
//! sausages (route corridors of 5-30 points, 50-200 m wide), for random points over the
//! same area: `containing` (every zone holding the point) and `contains` (one label).
//!
//! Time is the benchmark thread's CPU time (see `support/cpu_time.rs`), so the figure is
//! per core even while other processes share the machine.
//!
//! `cargo bench --bench zones`

use std::hint::black_box;

use cpu_time::ThreadCpuTime;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use navixy_alerts::geofence::{Shape, Zone, ZoneIndex};

#[path = "support/cpu_time.rs"]
#[allow(dead_code)]
mod cpu_time;

const ZONES: usize = 5_000;
const POINTS: usize = 10_000;
/// The city: (lat, lng) corners.
const AREA: ((f64, f64), (f64, f64)) = ((52.33, 13.05), (52.70, 13.75));
/// Metres in a degree of latitude, near enough for generating shapes.
const DEGREE_M: f64 = 111_195.0;

fn random_point(rng: &mut fastrand::Rng) -> (f64, f64) {
    let ((lat0, lng0), (lat1, lng1)) = AREA;
    (
        lat0 + rng.f64() * (lat1 - lat0),
        lng0 + rng.f64() * (lng1 - lng0),
    )
}

/// (lat, lng) `metres` away from a point in direction `bearing` (radians from north).
fn offset((lat, lng): (f64, f64), metres: f64, bearing: f64) -> [f64; 2] {
    let dlat = metres * bearing.cos() / DEGREE_M;
    let dlng = metres * bearing.sin() / (DEGREE_M * lat.to_radians().cos());
    [lat + dlat, lng + dlng]
}

fn zones(rng: &mut fastrand::Rng) -> Vec<Zone> {
    (0..ZONES)
        .map(|i| {
            let centre = random_point(rng);
            let shape = match i % 3 {
                0 => Shape::circle(centre.0, centre.1, 50.0 + rng.f64() * 450.0),
                1 => {
                    // A star-shaped polygon: vertices at rising bearings, varying radii.
                    let n = rng.usize(4..=12);
                    let points: Vec<[f64; 2]> = (0..n)
                        .map(|k| {
                            let bearing = std::f64::consts::TAU * k as f64 / n as f64;
                            offset(centre, 100.0 + rng.f64() * 300.0, bearing)
                        })
                        .collect();
                    Shape::polygon(&points)
                }
                _ => {
                    // A route wandering from the centre, 200-600 m per leg.
                    let n = rng.usize(5..=30);
                    let mut at = centre;
                    let mut bearing = rng.f64() * std::f64::consts::TAU;
                    let points: Vec<[f64; 2]> = (0..n)
                        .map(|_| {
                            let here = [at.0, at.1];
                            bearing += (rng.f64() - 0.5) * 1.2;
                            let next = offset(at, 200.0 + rng.f64() * 400.0, bearing);
                            at = (next[0], next[1]);
                            here
                        })
                        .collect();
                    Shape::sausage(&points, 50.0 + rng.f64() * 150.0)
                }
            };
            Zone::new(
                format!("zone {i}"),
                shape.expect("generated shapes are valid"),
            )
        })
        .collect()
}

fn lookups(c: &mut Criterion<ThreadCpuTime>) {
    let mut rng = fastrand::Rng::with_seed(7);
    let index = ZoneIndex::build(zones(&mut rng));
    assert_eq!(index.len(), ZONES);
    let points: Vec<(f64, f64)> = (0..POINTS).map(|_| random_point(&mut rng)).collect();
    let hits: usize = points
        .iter()
        .map(|&(lat, lng)| index.containing(lat, lng).count())
        .sum();
    eprintln!(
        "{ZONES} zones, {POINTS} random points: {:.2} zones hold a point on average",
        hits as f64 / POINTS as f64
    );

    let mut group = c.benchmark_group("zones");
    group.throughput(Throughput::Elements(POINTS as u64));
    group.bench_function("containing", |b| {
        b.iter(|| {
            let mut found = 0;
            for &(lat, lng) in &points {
                found += index.containing(black_box(lat), black_box(lng)).count();
            }
            assert_eq!(found, hits);
            found
        })
    });
    // One label per point, as a rule's `in_zone("...")` asks.
    let labels: Vec<String> = (0..POINTS).map(|i| format!("zone {}", i % ZONES)).collect();
    group.bench_function("contains_label", |b| {
        b.iter(|| {
            points
                .iter()
                .zip(&labels)
                .filter(|((lat, lng), label)| index.contains(label, *lat, *lng) == Some(true))
                .count()
        })
    });
    group.finish();

    let mut build = c.benchmark_group("zones_build");
    build.sample_size(10);
    let all = zones(&mut fastrand::Rng::with_seed(7));
    build.bench_function("build_5000", |b| {
        b.iter(|| ZoneIndex::build(black_box(all.clone())).len())
    });
    build.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime::default());
    targets = lookups
}
criterion_main!(benches);
