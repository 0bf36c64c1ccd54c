//! The `navixy-alerts` binary: parse the command line, run the command, map errors to
//! exit codes (1 for a failed check or test, 2 for anything else that stops a command).

use std::process::ExitCode;

use clap::Parser;
use navixy_alerts::cli::{Cli, Command};
use navixy_alerts::commands;

/// Decoded states are allocated by the thread that reads frames and freed by the shard
/// threads that merge them: glibc's malloc serialises such cross-thread frees on its arena
/// lock (a fifth of the reader's time, measured), mimalloc frees them without a shared lock.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    commands::init_logging(cli.log_format);
    let result = match cli.command {
        Command::Run(args) => commands::run::run(args),
        Command::Check(args) => commands::check::run(args),
        Command::Test(args) => commands::test::run(args),
        Command::Replay(args) => commands::replay::run(args),
        Command::Simulate(args) => commands::simulate::run(args),
        Command::NotifyTest(args) => commands::notify_test::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
