//! The command line (clap derive). `main` parses it and calls [`crate::commands`].

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "navixy-alerts",
    version,
    about = "Alerting engine for Navixy fleets"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Run(RunArgs),
    /// Validate the config and every rule; exit 1 on any error.
    Check(CheckArgs),
    /// Run rule unit tests; exit 1 on failure.
    Test(TestArgs),
    /// Feed recorded frames through the rules on the event-time clock.
    Replay(ReplayArgs),
    /// Serve a simulated fleet over a Navixy-compatible API.
    Simulate(SimulateArgs),
    /// Send a sample notification through one channel; exit 1 if it is not accepted, 2 if
    /// the config has no such channel.
    NotifyTest(NotifyTestArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[arg(short, long)]
    pub config: PathBuf,
    /// Append every received frame, with its arrival time, to this JSONL file.
    #[arg(long)]
    pub record: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[arg(short, long)]
    pub config: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Rule test files (YAML).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[arg(short, long)]
    pub config: PathBuf,
    /// Recorded frames, one per line (a frame, or `{"at": ..., "frame": ...}`).
    pub events: PathBuf,
    /// Replay at N times recorded speed instead of as fast as possible.
    #[arg(long)]
    pub speed: Option<f64>,
    /// Print throughput and error counts at the end.
    #[arg(long)]
    pub stats: bool,
    /// A saved `tracker/list` response: source_id -> tracker_id and labels.
    #[arg(long)]
    pub trackers: Option<PathBuf>,
    /// Do not print transitions (for benchmarks).
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[arg(long, default_value_t = 20)]
    pub trackers: u32,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 60.0)]
    pub speed: f64,
    /// Add malformed frames and connection drops.
    #[arg(long)]
    pub chaos: bool,
    /// Send the documented instead of the wire shapes.
    #[arg(long)]
    pub documented_shapes: bool,
    /// The first tracker id: a second account (another `simulate` beside the first,
    /// another seed) may overlap the first one's ids.
    #[arg(long, default_value_t = 21_001)]
    pub first_tracker: i64,
    /// The login `user/auth` accepts.
    #[arg(long, default_value = "demo")]
    pub login: String,
    /// The password `user/auth` accepts.
    #[arg(long, default_value = "demo")]
    pub password: String,
}

#[derive(Debug, clap::Args)]
pub struct NotifyTestArgs {
    #[arg(short, long)]
    pub config: PathBuf,
    /// The channel's name under `channels:`.
    pub channel: String,
}
