//! `replay -c FILE EVENTS.jsonl`: feeds a recording through the engine on the event-time
//! clock, as fast as possible or at `--speed N`, and prints each alert transition.
//!
//! [`replay`] is the library entry point; the rule evaluator is passed in as a factory
//! (one evaluator per shard), so this file does not depend on the rules.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::alert::AlertTransition;
use crate::cli::ReplayArgs;
use crate::config::Config;
use crate::engine::{
    Engine, EngineClock, EngineOptions, EngineStats, EvaluatorFactory, NoRules, ShardEvaluator,
};
use crate::navixy::decode::{DecodeErrorKind, StateFields, decode_tracker_list};
use crate::rules::{Evaluator, RuleSet, format_transition};
use crate::source::replay::Recording;
use crate::state::history::HistoryPolicy;

/// Where transitions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransitionOutput {
    /// One line each on stdout.
    #[default]
    Print,
    /// Kept in [`ReplayStats::transitions`] (tests, `test`).
    Collect,
    /// Dropped (benchmarks).
    Discard,
}

#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// N times recorded speed; `None`: as fast as possible.
    pub speed: Option<f64>,
    /// A saved `tracker/list` response.
    pub trackers: Option<PathBuf>,
    /// A progress bar on stderr.
    pub progress: bool,
    pub output: TransitionOutput,
    /// History windows; default: an hour of every series.
    pub history: Option<HistoryPolicy>,
    /// Overrides `engine.workers`.
    pub workers: Option<usize>,
    /// The source-state fields to decode; default: every field.
    pub decode_fields: Option<StateFields>,
}

/// What a replay did.
#[derive(Debug, Clone, Default)]
pub struct ReplayStats {
    pub engine: EngineStats,
    /// Lines that were not recording lines (see `source::replay`).
    pub bad_lines: u64,
    /// Non-blank lines read.
    pub lines: u64,
    pub elapsed: Duration,
    pub transitions_count: u64,
    /// Filled with [`TransitionOutput::Collect`].
    pub transitions: Vec<AlertTransition>,
    /// The engine clock at the end.
    pub end_time: Option<DateTime<Utc>>,
}

impl ReplayStats {
    pub fn updates_per_second(&self) -> f64 {
        self.engine.updates() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `--stats` report.
    pub fn report(&self) -> String {
        let e = &self.engine;
        let errors: Vec<String> = DecodeErrorKind::ALL
            .iter()
            .map(|k| format!("{} {}", k.as_str(), e.decode_errors_of(*k)))
            .collect();
        format!(
            "lines: {} (bad: {})\n\
             frames: {}\n\
             states: {}\n\
             readings: {}\n\
             lifecycle: {}\n\
             iot: {}\n\
             control frames: {}\n\
             decode errors: {} ({})\n\
             unknown events: {}, unknown items: {}, unmapped: {}, stale: {}\n\
             updates: {} in {:.3} s ({:.0} updates/s)\n\
             transitions: {}\n",
            self.lines,
            self.bad_lines,
            e.frames,
            e.states,
            e.readings,
            e.lifecycle,
            e.iot,
            e.control,
            e.decode_errors_total(),
            errors.join(", "),
            e.unknown_events,
            e.unknown_items,
            e.unmapped,
            e.stale,
            e.updates(),
            self.elapsed.as_secs_f64(),
            self.updates_per_second(),
            self.transitions_count,
        )
    }
}

/// How many bad lines and decode errors are reported one by one on stderr.
const REPORTED_LINES: u64 = 20;

/// Replays `events` through an engine whose shards run the evaluators `factory` builds.
pub fn replay(
    config: &Config,
    events: &Path,
    options: ReplayOptions,
    factory: EvaluatorFactory<'_>,
) -> anyhow::Result<ReplayStats> {
    let tz = config
        .sources()
        .iter()
        .find_map(|s| s.navixy.as_ref())
        .map_or(chrono_tz::UTC, |n| n.timezone);
    let mut engine_options = EngineOptions::from_config(config, EngineClock::EventTime);
    engine_options.source = "replay";
    // Throughput over latency: fewer, larger hand-offs to the shards.
    engine_options.batch_size = 1024;
    if let Some(history) = options.history.clone() {
        engine_options.history = history;
    }
    if let Some(workers) = options.workers {
        engine_options.workers = workers;
    }
    if let Some(fields) = options.decode_fields {
        engine_options.decode.state_fields = fields;
    }
    let infos = match &options.trackers {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("{}: cannot read the tracker list", path.display()))?;
            let list = decode_tracker_list(&text)
                .with_context(|| format!("{}: not a tracker/list response", path.display()))?;
            Some(crate::engine::tracker_infos(&list))
        }
        None => None,
    };
    let mut recording = Recording::open(events, tz)
        .with_context(|| format!("{}: cannot open the recording", events.display()))?;
    let total_bytes = std::fs::metadata(events).map(|m| m.len()).unwrap_or(0);

    let (mut engine, transitions) =
        Engine::start(engine_options, factory).context("cannot start the engine workers")?;
    if let Some(infos) = infos {
        engine.set_trackers(infos);
    }
    let output = options.output;
    // Read beside the engine: the channel is bounded, and nothing else would empty it.
    let printer = std::thread::Builder::new()
        .name("replay-output".into())
        .spawn(move || drain_transitions(transitions, output))
        .context("cannot start the output thread")?;

    let progress = options.progress.then(|| {
        let bar = indicatif::ProgressBar::new(total_bytes);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });

    let started = Instant::now();
    let mut pace: Option<(DateTime<Utc>, Instant)> = None;
    let (mut bad_lines, mut lines, mut reported) = (0u64, 0u64, 0u64);
    while let Some(next) = recording.next_frame() {
        let frame = match next.with_context(|| format!("{}: read error", events.display()))? {
            Ok(frame) => frame,
            Err(bad) => {
                lines += 1;
                bad_lines += 1;
                if reported < REPORTED_LINES {
                    reported += 1;
                    eprintln!("{}:{}: {}", events.display(), bad.line, bad.message);
                }
                continue;
            }
        };
        lines += 1;
        if let Some(speed) = options.speed.filter(|s| *s > 0.0)
            && let Some(t) = frame.at.or(engine.now())
        {
            let (t0, wall0) = *pace.get_or_insert((t, Instant::now()));
            let due = wall0 + (t - t0).to_std().unwrap_or_default().div_f64(speed);
            let wait = due.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                // Let the shards catch up (and print) before sleeping.
                engine.flush();
                std::thread::sleep(wait);
            }
        }
        let line = frame.line;
        let problem = match engine.ingest_text(&frame.text, frame.at) {
            Ok(0) => None,
            Ok(dropped) => Some(format!("wrong_type: {dropped} batch item(s) dropped")),
            Err(e) => Some(e.to_string()),
        };
        if let Some(problem) = problem
            && reported < REPORTED_LINES
        {
            reported += 1;
            eprintln!("{}:{line}: {problem}", events.display());
        }
        if let Some(bar) = &progress
            && lines % 4096 == 0
        {
            bar.set_position(recording.bytes_read());
        }
    }
    engine.sync();
    let end_time = engine.now();
    let engine_stats = engine.shutdown();
    let elapsed = started.elapsed();
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let (transitions_count, transitions) = printer
        .join()
        .map_err(|_| anyhow::anyhow!("the output thread failed"))??;
    Ok(ReplayStats {
        engine: engine_stats,
        bad_lines,
        lines,
        elapsed,
        transitions_count,
        transitions,
        end_time,
    })
}

fn drain_transitions(
    mut rx: mpsc::Receiver<AlertTransition>,
    output: TransitionOutput,
) -> std::io::Result<(u64, Vec<AlertTransition>)> {
    let mut count = 0;
    let mut kept = Vec::new();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    while let Some(t) = rx.blocking_recv() {
        count += 1;
        match output {
            TransitionOutput::Print => writeln!(out, "{}", format_transition(&t))?,
            TransitionOutput::Collect => kept.push(t),
            TransitionOutput::Discard => {}
        }
    }
    out.flush()?;
    Ok((count, kept))
}

/// An owned [`EvaluatorFactory`].
type BoxedFactory = Box<dyn Fn(usize) -> Box<dyn ShardEvaluator> + Sync>;

/// The evaluators `replay` runs: the config's rules, compiled once and shared by every
/// shard. A config without rules evaluates nothing, so a replay measures decoding,
/// routing and the cache alone.
fn evaluator_factory(rules: Option<Arc<RuleSet>>) -> BoxedFactory {
    match rules {
        Some(rules) => Box::new(move |_| Box::new(Evaluator::new(Arc::clone(&rules)))),
        None => Box::new(|_| Box::new(NoRules)),
    }
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let rules = if config.rules.is_empty() {
        None
    } else {
        match RuleSet::load(&config) {
            Ok(rules) => Some(Arc::new(rules)),
            Err(errors) => {
                for e in errors {
                    eprintln!("error: {e}");
                }
                return Ok(ExitCode::from(1));
            }
        }
    };
    let history = rules.as_ref().map(|r| r.history_policy());
    // Replay prints only transitions: what no rule, template or payload reads need not be
    // decoded at all.
    let decode_fields = rules.as_ref().map(|r| r.decode_fields());
    let factory = evaluator_factory(rules);
    let options = ReplayOptions {
        speed: args.speed,
        trackers: args.trackers,
        progress: std::io::stdout().is_terminal() && std::io::stderr().is_terminal(),
        output: if args.quiet {
            TransitionOutput::Discard
        } else {
            TransitionOutput::Print
        },
        history,
        workers: None,
        decode_fields,
    };
    let stats = replay(&config, &args.events, options, &*factory)?;
    if args.stats {
        print!("{}", stats.report());
    }
    Ok(ExitCode::SUCCESS)
}
