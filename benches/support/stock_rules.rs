//! The stock rules of `rules/`, loaded as the demo config loads them (with its `depot`
//! zone), for the benches that evaluate them.

use std::path::PathBuf;

use navixy_alerts::config::{Circle, ZoneConfig};
use navixy_alerts::rules::zones::Zones;
use navixy_alerts::rules::{LoadOptions, RuleSet};

pub fn stock_rules() -> RuleSet {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let depot = ZoneConfig {
        circle: Some(Circle {
            lat: 52.52,
            lng: 13.40,
            radius_m: 300.0,
        }),
        polygon: None,
        sausage: None,
    };
    let options = LoadOptions {
        zones: Zones::local(&[("depot".to_string(), depot)].into_iter().collect()),
        ..LoadOptions::default()
    };
    RuleSet::from_files(&files, &options).unwrap_or_else(|e| panic!("{e:?}"))
}
