//! Hot reload of the rule set (SIGHUP, `POST /api/v1/reload`, a rule file that changed).
//!
//! A reload reads the rule files again, with the `rules:` globs and `zones:` of the
//! config file as it is now (the rest of the config, channels included, is the one the
//! daemon started with: channels and routes live in the dispatcher, which a reload does
//! not touch). The new set is loaded and checked whole; on any error nothing changes and
//! every problem is reported. Only a set that loads replaces the old one, in each shard
//! between two messages: the new evaluator takes over the firing alerts of the old one
//! ([`ShardRules::take_over`]), so an alert of a rule that is still there keeps its
//! fingerprint and does not fire again, and an alert of a rule that is gone resolves.
//!
//! Pending alerts (inside their `for`) start their wait again: only announced firing
//! alerts carry over, as after a restart.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use parking_lot::RwLock;
use serde::Serialize;
use tokio::sync::{Mutex, watch};
use tracing::{error, info};

use crate::alert::{AlertRecord, AlertTransition, PendingAlert};
use crate::clock::Clock;
use crate::config::Config;
use crate::console::data::LastReload;
use crate::engine::{EngineHandle, ShardEvaluator};
use crate::rules::{Evaluator, RuleSet};
use crate::server::{ReloadRefused, ReloadRules};
use crate::state::TrackerState;
use crate::telemetry;

/// What asked for a reload, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Signal,
    Api,
    FileChange,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "sighup",
            Trigger::Api => "api",
            Trigger::FileChange => "file_change",
        }
    }
}

/// A reload that took effect.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReloadReport {
    /// Rules in force now.
    pub rules: usize,
    /// The rule files loaded.
    pub files: Vec<PathBuf>,
    /// Rules that were not there before.
    pub added: Vec<String>,
    /// Rules that are gone (their firing alerts resolve).
    pub removed: Vec<String>,
}

/// Why a reload was rejected; the old rule set keeps running.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config file no longer loads.
    #[error("{0}")]
    Config(String),
    /// The new rule set has errors, each naming its file, line, rule and field.
    #[error("the new rule set has {} error(s); the previous one keeps running", .0.len())]
    Rules(Vec<String>),
    /// The daemon is stopping.
    #[error("the engine has stopped")]
    Stopped,
}

impl ReloadError {
    /// Every problem, one message each.
    pub fn messages(&self) -> Vec<String> {
        match self {
            ReloadError::Rules(errors) => errors.clone(),
            other => vec![other.to_string()],
        }
    }
}

/// Reloads the rule set of a running engine. One reload runs at a time.
pub struct Reloader {
    /// The config the daemon started with; a reload takes only `rules` and `zones` from
    /// the file as it is now.
    config: Config,
    engine: EngineHandle,
    clock: Arc<dyn Clock>,
    gauges: Arc<AlertGauges>,
    current: RwLock<Arc<RuleSet>>,
    /// The config whose `rules:` patterns are in force, for the file watcher (which
    /// follows them when a reload changes them).
    in_force: watch::Sender<Config>,
    /// Held for the whole of a reload: two at once would race on which set ends up
    /// installed.
    busy: Mutex<()>,
    /// The outcome of the last reload, for the console's Rules page.
    last: RwLock<Option<LastReload>>,
}

impl Reloader {
    pub fn new(
        config: Config,
        rules: Arc<RuleSet>,
        engine: EngineHandle,
        clock: Arc<dyn Clock>,
        gauges: Arc<AlertGauges>,
    ) -> Reloader {
        let (in_force, _) = watch::channel(config.clone());
        Reloader {
            config,
            engine,
            clock,
            gauges,
            current: RwLock::new(rules),
            in_force,
            busy: Mutex::new(()),
            last: RwLock::new(None),
        }
    }

    /// The rule set in force.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.current.read().clone()
    }

    /// The config whose `rules:` patterns are in force; changes after a reload that
    /// changed them.
    pub fn patterns(&self) -> watch::Receiver<Config> {
        self.in_force.subscribe()
    }

    /// The evaluator of one shard for `rules`, resuming `resumed` and `pending` (its own
    /// trackers' firing alerts and the pending ones the last stop kept, at start;
    /// nothing on a reload, where the evaluator takes over from its predecessor instead).
    pub fn evaluator(
        rules: Arc<RuleSet>,
        clock: Arc<dyn Clock>,
        gauges: Arc<AlertGauges>,
        shard: usize,
        resumed: &[AlertRecord],
        pending: &[PendingAlert],
    ) -> ShardRules {
        let mut inner = Evaluator::new(rules);
        // The history records each wait; resumed ones were recorded by the run before.
        inner.report_pending();
        inner.restore(resumed);
        inner.restore_pending(pending);
        ShardRules {
            inner,
            clock,
            gauges,
            shard,
        }
    }

    /// Loads the rule files again and, if the whole set is good, puts it in force.
    /// Logs and counts the outcome either way.
    pub async fn reload(&self, trigger: Trigger) -> Result<ReloadReport, ReloadError> {
        self.reload_by(trigger, None).await
    }

    /// [`Reloader::reload`], recording who asked (an API token's name).
    pub async fn reload_by(
        &self,
        trigger: Trigger,
        by: Option<String>,
    ) -> Result<ReloadReport, ReloadError> {
        let _busy = self.busy.lock().await;
        let result = self.try_reload().await;
        *self.last.write() = Some(LastReload {
            at: self.clock.now(),
            trigger: trigger.as_str(),
            by,
            outcome: match &result {
                Ok(report) => format!(
                    "{} rules in force ({} added, {} removed)",
                    report.rules,
                    report.added.len(),
                    report.removed.len()
                ),
                Err(e) => e.to_string(),
            },
            errors: result
                .as_ref()
                .err()
                .map(ReloadError::messages)
                .unwrap_or_default(),
        });
        let trigger = trigger.as_str();
        match &result {
            Ok(report) => {
                metrics::counter!(telemetry::RELOADS, "result" => "ok").increment(1);
                info!(
                    trigger,
                    rules = report.rules,
                    added = ?report.added,
                    removed = ?report.removed,
                    "Rule set reloaded."
                );
            }
            Err(e) => {
                metrics::counter!(telemetry::RELOADS, "result" => "error").increment(1);
                for message in e.messages() {
                    error!(trigger, error = %message, "Reload rejected.");
                }
                error!(
                    trigger,
                    "Reload rejected; the previous rule set keeps running."
                );
            }
        }
        result
    }

    async fn try_reload(&self) -> Result<ReloadReport, ReloadError> {
        let config = self.fresh_config()?;
        let load = {
            let config = config.clone();
            // Compiling a rule set is CPU work: off the async workers.
            tokio::task::spawn_blocking(move || RuleSet::load(&config))
        };
        let rules = match load.await {
            // The source's Navixy context goes on serving the new set.
            Ok(Ok(rules)) => Arc::new(
                rules
                    .with_navixy_context(self.rules().navixy_context())
                    .with_sources(self.rules().sources()),
            ),
            Ok(Err(errors)) => {
                return Err(ReloadError::Rules(
                    errors.iter().map(ToString::to_string).collect(),
                ));
            }
            Err(_) => return Err(ReloadError::Stopped),
        };

        let old = self.rules();
        let names = |set: &RuleSet| -> BTreeSet<String> {
            set.rules().iter().map(|r| r.name.to_string()).collect()
        };
        let (before, after) = (names(&old), names(&rules));
        let report = ReloadReport {
            rules: rules.len(),
            files: rules.files().to_vec(),
            added: after.difference(&before).cloned().collect(),
            removed: before.difference(&after).cloned().collect(),
        };

        crate::server::metrics::register_rules(&rules);
        let engine = self.engine.clone();
        let clock = self.clock.clone();
        let gauges = self.gauges.clone();
        let installed = rules.clone();
        // Sending to a shard blocks while its queue is full (back-pressure), which async
        // code must not do.
        tokio::task::spawn_blocking(move || {
            // History first: the new rules may read longer windows than the old ones.
            engine.set_history(installed.history_policy());
            engine.replace_evaluators(&|shard| {
                Box::new(Reloader::evaluator(
                    installed.clone(),
                    clock.clone(),
                    gauges.clone(),
                    shard,
                    &[],
                    &[],
                )) as Box<dyn ShardEvaluator>
            });
            // When this returns, every shard evaluates with the new set.
            engine.sync_blocking();
        })
        .await
        .map_err(|_| ReloadError::Stopped)?;

        *self.current.write() = rules;
        self.in_force.send_replace(config);
        Ok(report)
    }

    /// The start config with `rules` and `zones` as the config file says now. A config
    /// that does not come from a file (tests build it from text) is taken as it was.
    fn fresh_config(&self) -> Result<Config, ReloadError> {
        let mut config = self.config.clone();
        if config.path.is_file() {
            let file =
                Config::load(&config.path).map_err(|e| ReloadError::Config(e.to_string()))?;
            config.rules = file.rules;
            config.zones = file.zones;
        }
        Ok(config)
    }
}

/// The live alert gauges (`navixy_alerts_alerts{state}`): the shards report how many
/// alerts they hold (pending and firing), the forwarder how many are firing.
#[derive(Debug)]
pub struct AlertGauges {
    /// Live alerts per shard, as of its last tick.
    live: Vec<AtomicI64>,
    /// Firing alerts of trackers (engine alerts have no shard), as committed.
    firing: AtomicI64,
}

impl AlertGauges {
    pub fn new(shards: usize) -> AlertGauges {
        AlertGauges {
            live: (0..shards.max(1)).map(|_| AtomicI64::new(0)).collect(),
            firing: AtomicI64::new(0),
        }
    }

    /// The forwarder's count of firing tracker alerts.
    pub fn set_firing(&self, n: i64) {
        self.firing.store(n, Ordering::Relaxed);
        self.publish();
    }

    fn set_live(&self, shard: usize, n: usize) {
        if let Some(slot) = self.live.get(shard) {
            slot.store(n as i64, Ordering::Relaxed);
        }
        self.publish();
    }

    fn publish(&self) {
        let live: i64 = self.live.iter().map(|n| n.load(Ordering::Relaxed)).sum();
        let firing = self.firing.load(Ordering::Relaxed);
        metrics::gauge!(telemetry::ALERTS, "state" => "firing").set(firing as f64);
        metrics::gauge!(telemetry::ALERTS, "state" => "pending").set((live - firing).max(0) as f64);
    }
}

/// The daemon's shard evaluator: the rule [`Evaluator`], able to take over from the one
/// it replaces on a reload, and reporting its live alerts to the gauges.
pub struct ShardRules {
    inner: Evaluator,
    /// Stamps the resolves of alerts whose rule a reload removed.
    clock: Arc<dyn Clock>,
    gauges: Arc<AlertGauges>,
    shard: usize,
}

impl ShardEvaluator for ShardRules {
    fn on_update(
        &mut self,
        tracker: &TrackerState,
        now: DateTime<Utc>,
        notify: bool,
        out: &mut Vec<AlertTransition>,
    ) {
        self.inner.on_update(tracker, now, notify, out);
    }

    fn on_tick(
        &mut self,
        trackers: &mut dyn Iterator<Item = &TrackerState>,
        now: DateTime<Utc>,
        out: &mut Vec<AlertTransition>,
    ) {
        self.inner.on_tick(trackers, now, out);
        self.gauges.set_live(self.shard, self.inner.live_count());
    }

    fn firing(&self) -> Vec<AlertRecord> {
        self.inner.firing()
    }

    fn pending(&self) -> Vec<PendingAlert> {
        self.inner.pending()
    }

    fn take_over_pending(&mut self, pending: Vec<PendingAlert>) {
        self.inner.restore_pending(&pending);
    }

    fn take_over(&mut self, firing: Vec<AlertRecord>, out: &mut Vec<AlertTransition>) {
        let restored = self.inner.restore(&firing);
        let now = self.clock.now();
        for record in restored.orphaned {
            info!(rule = %record.rule, fingerprint = %record.fingerprint, "Resolving an alert whose rule was removed.");
            out.push(record.last.resolved_at(now));
        }
    }
}

/// `POST /api/v1/reload` of the admin API.
impl ReloadRules for Reloader {
    fn reload_rules(&self, by: &str) -> BoxFuture<'_, Result<serde_json::Value, ReloadRefused>> {
        let by = by.to_owned();
        Box::pin(async move {
            match self.reload_by(Trigger::Api, Some(by)).await {
                // Counts, names and paths: it serializes (a non-UTF-8 path reports null).
                Ok(report) => Ok(serde_json::to_value(report).unwrap_or_default()),
                Err(ReloadError::Stopped) => {
                    Err(ReloadRefused::Unavailable(ReloadError::Stopped.to_string()))
                }
                Err(e) => Err(ReloadRefused::Invalid {
                    error: e.to_string(),
                    errors: e.messages(),
                }),
            }
        })
    }

    fn rules_in_force(&self) -> Option<Arc<RuleSet>> {
        Some(self.rules())
    }

    fn last_reload(&self) -> Option<LastReload> {
        self.last.read().clone()
    }
}
