//! The `navixy-alerts` binary: parse the command line, run the command, map errors to
//! exit codes (1 for a failed check or test, 2 for anything else that stops a command,
//! 70 for a panic in any thread: the process stops rather than run without that thread,
//! and its supervisor starts it again; notifications are durable across that).

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
    exit_on_panic();
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

/// A panic is a bug, and a daemon with one of its threads gone is half alive (an engine
/// that evaluates nothing behind a `/readyz` that says ready). After the standard report,
/// the panic is logged as an error and the process exits with 70 (EX_SOFTWARE).
fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        // The database thread turns a panic in a query into that query's error and
        // stays usable: that one is not fatal.
        if name == "navixy-alerts-store" {
            return;
        }
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = navixy_alerts::daemon::panic_message(info.payload());
        tracing::error!(thread = name, %location, %message, "Internal error: a thread panicked; the process stops (exit 70).");
        std::process::exit(70);
    }));
}
