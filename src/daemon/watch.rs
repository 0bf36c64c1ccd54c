//! Reload on rule file change: watches the folders of the config's `rules:` patterns
//! (not the files: editors save by writing a new file and renaming it over the old one,
//! which a watch on the old file would not see) and reloads once the changes have settled.
//!
//! Only events on files that a pattern matches count, so an editor's swap and backup
//! files do not reload anything. A burst of changes (a `git checkout`, an editor that
//! writes twice) becomes one reload [`DEBOUNCE`] after the last change, and never later
//! than [`MAX_DELAY`] after the first.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::reload::{Reloader, Trigger};
use crate::config::Config;
use crate::rules::load::glob_match;

/// Quiet time after the last change before the reload.
pub const DEBOUNCE: Duration = Duration::from_millis(500);
/// The longest a reload waits for changes to settle.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// The watched folders, each with the file names (or name patterns) of rule files in it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Folders(BTreeMap<PathBuf, Vec<String>>);

impl Folders {
    /// The folders of a config's `rules:` patterns.
    pub fn of(config: &Config) -> Folders {
        let mut folders: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
        for pattern in &config.rules {
            let path = config.resolve(pattern);
            let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                continue;
            };
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            // Canonical, so that an event's path compares equal however the pattern
            // spelled the folder (`examples/../rules`).
            let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
            folders
                .entry(dir)
                .or_default()
                .push(name.to_string_lossy().into_owned());
        }
        Folders(folders)
    }

    /// True when `path` is a rule file of a watched folder.
    pub fn is_rule_file(&self, path: &Path) -> bool {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        else {
            return false;
        };
        let names = self.0.get(dir).or_else(|| {
            dir.canonicalize()
                .ok()
                .and_then(|canonical| self.0.get(&canonical))
        });
        names.is_some_and(|names| names.iter().any(|pattern| glob_match(pattern, name)))
    }

    fn dirs(&self) -> impl Iterator<Item = &PathBuf> {
        self.0.keys()
    }
}

/// Watches the rule folders and reloads on change until `stop` completes. Returns at
/// once (with a warning) when the platform cannot watch files: SIGHUP and the API still
/// reload.
pub async fn run(reloader: Arc<Reloader>, stop: impl Future<Output = ()> + Send) {
    let (tx, mut events) = mpsc::unbounded_channel();
    let mut watcher = match notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    }) {
        Ok(watcher) => watcher,
        Err(e) => {
            warn!(error = %e, "Cannot watch the rule files; reload with SIGHUP or POST /api/v1/reload.");
            return;
        }
    };
    let mut patterns = reloader.patterns();
    let mut folders = Folders::default();
    let initial = Folders::of(&patterns.borrow_and_update());
    rewatch(&mut watcher, &mut folders, initial);

    tokio::pin!(stop);
    let mut first: Option<Instant> = None;
    let mut due: Option<Instant> = None;
    let mut reported_error = false;
    loop {
        tokio::select! {
            () = &mut stop => break,
            event = events.recv() => match event {
                None => break,
                Some(Ok(event)) => {
                    if matches!(event.kind, EventKind::Access(_)) {
                        continue;
                    }
                    if let Some(path) = event.paths.iter().find(|p| folders.is_rule_file(p)) {
                        debug!(path = %path.display(), "Rule file changed.");
                        let now = Instant::now();
                        let first = *first.get_or_insert(now);
                        due = Some((now + DEBOUNCE).min(first + MAX_DELAY));
                    }
                }
                Some(Err(e)) => {
                    if !reported_error {
                        warn!(error = %e, "Watching the rule files failed; further errors are not logged.");
                        reported_error = true;
                    }
                }
            },
            () = sleep_until(due), if due.is_some() => {
                due = None;
                first = None;
                // The outcome is logged and counted by the reloader.
                let _ = reloader.reload(Trigger::FileChange).await;
            }
            changed = patterns.changed() => {
                if changed.is_err() {
                    break;
                }
                let next = Folders::of(&patterns.borrow_and_update());
                rewatch(&mut watcher, &mut folders, next);
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// Moves the watches from the folders watched now to `next`.
fn rewatch(watcher: &mut impl Watcher, current: &mut Folders, next: Folders) {
    if *current == next {
        return;
    }
    for dir in current.dirs() {
        if !next.0.contains_key(dir) {
            let _ = watcher.unwatch(dir);
        }
    }
    for dir in next.dirs() {
        if current.0.contains_key(dir) {
            continue;
        }
        match watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => info!(folder = %dir.display(), "Watching rule files."),
            Err(e) => {
                warn!(folder = %dir.display(), error = %e, "Cannot watch this rule folder; its changes need SIGHUP or POST /api/v1/reload.")
            }
        }
    }
    *current = next;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_files_are_the_ones_the_patterns_match() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules");
        std::fs::create_dir(&rules).unwrap();
        let yaml = "source: { simulator: { trackers: 1 } }\nrules: [rules/*.yaml, extra.yaml]\n";
        let config = Config::from_yaml(yaml, &dir.path().join("config.yaml"), |_| None).unwrap();
        let folders = Folders::of(&config);
        let rules = rules.canonicalize().unwrap();
        let base = dir.path().canonicalize().unwrap();
        assert!(folders.is_rule_file(&rules.join("fuel.yaml")));
        assert!(!folders.is_rule_file(&rules.join(".fuel.yaml.swp")));
        assert!(!folders.is_rule_file(&rules.join("fuel.yaml~")));
        assert!(folders.is_rule_file(&base.join("extra.yaml")));
        assert!(!folders.is_rule_file(&base.join("config.yaml")));
        // The same folder spelled another way.
        assert!(folders.is_rule_file(&rules.join("../rules/fuel.yaml")));
    }
}
