//! Integration tests: rules. The `test` command on the stock rules and on failing files,
//! loading rule sets from a config, evaluation (faults, restarts, stale data, payloads),
//! which evaluator answers the stock rules, and zones from a config and its GeoJSON file.

mod command;
mod evaluation;
mod fast_path;
mod loading;
mod mistakes;
mod nearby;
mod zones;

use std::path::{Path, PathBuf};

/// The repository's folder.
pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The stock rule files, sorted.
pub(crate) fn stock_rule_files() -> Vec<PathBuf> {
    yaml_files(&repo().join("rules"))
}

pub(crate) fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}
