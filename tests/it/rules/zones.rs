//! Zones from a config: local shapes and a GeoJSON zone file, merged into the index that
//! `in_zone` and `zones()` read, and a bad zone file reported with its place.

use std::path::Path;

use navixy_alerts::config::Config;
use navixy_alerts::rules::RuleSet;
use navixy_alerts::rules::zones::Zones;

use super::repo;

fn config(dir: &Path, zones: &str) -> Config {
    let text = format!(
        "source: {{ simulator: {{ trackers: 2 }} }}\nrules: [rules.yaml]\nzones:\n{zones}channels:\n  ops: {{ type: stdout }}\n"
    );
    std::fs::write(
        dir.join("rules.yaml"),
        "rules:\n  - name: at_yard\n    when: in_zone(\"Yard\") || \"depot\" in zones()\n",
    )
    .unwrap();
    let path = dir.join("navixy-alerts.yaml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap()
}

#[test]
fn the_example_zone_file_and_local_zones_load_together() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("examples/zones.geojson"),
        dir.path().join("zones.geojson"),
    )
    .unwrap();
    let config = config(
        dir.path(),
        "  file: zones.geojson\n  depot: { circle: { lat: 52.52, lng: 13.40, radius_m: 300 } }\n  Yard: { sausage: { points: [[0, 0], [0, 0.01]], radius_m: 50 } }\n",
    );
    assert_eq!(config.zones.file.as_deref(), Some("zones.geojson"));
    let zones = Zones::from_config(&config.zones, &config.base_dir).unwrap();
    // The config's `Yard` (a sausage at 0, 0) wins over the file's polygon.
    assert_eq!(zones.names(), "Yard, depot, Depot North, B96 corridor");
    assert_eq!(zones.containing(0.0, 0.005).collect::<Vec<_>>(), ["Yard"]);
    assert_eq!(zones.containing(52.505, 13.31).count(), 0);
    assert_eq!(
        zones.containing(52.52, 13.40).collect::<Vec<_>>(),
        ["depot", "B96 corridor"]
    );
    assert_eq!(
        zones.containing(52.54, 13.405).collect::<Vec<_>>(),
        ["Depot North"]
    );
    RuleSet::load(&config).unwrap();
}

#[test]
fn a_bad_zone_file_fails_the_load_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("zones.geojson"),
        "{\"type\": \"FeatureCollection\",\n \"features\": [1,]}\n",
    )
    .unwrap();
    let config = config(dir.path(), "  file: zones.geojson\n");
    let errors: Vec<String> = RuleSet::load(&config)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    let path = dir.path().join("zones.geojson");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(&format!("{}:2:17: not valid JSON", path.display())),
        "{errors:?}"
    );
}

#[test]
fn a_bad_local_zone_names_its_key_and_line() {
    for (zones, message) in [
        (
            "  r: { sausage: { points: [[0, 0]], radius_m: 5 } }\n",
            "3:3: zones.r: a sausage needs at least 2 points (the route it follows)",
        ),
        (
            "  r: { sausage: { points: [[0, 0], [95, 0]], radius_m: 5 } }\n",
            "3:36: zones.r.sausage.points: `[95, 0]` is not a [lat, lng] point (lat -90 to 90, lng -180 to 180)",
        ),
        (
            "  r: { circle: { lat: 0, lng: 0, radius_m: 5 }, polygon: [[0, 0], [0, 1], [1, 1]] }\n",
            "3:3: zones.r: set exactly one of `circle`, `polygon` or `sausage`",
        ),
        (
            "  file: ''\n",
            "3:3: zones.file: empty (name a GeoJSON zone file)",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        let text = format!("source: {{ simulator: {{}} }}\nzones:\n{zones}");
        std::fs::write(&path, &text).unwrap();
        let err = Config::load(&path).unwrap_err();
        let shown = navixy_alerts::commands::check::describe(&err, &text);
        assert_eq!(shown, format!("{}:{message}", path.display()));
    }
}
