//! One module per subcommand; each `run` returns the process exit code.

pub mod check;
pub mod notify_test;
pub mod replay;
pub mod run;
pub mod simulate;
pub mod test;

use std::io::IsTerminal as _;

use crate::cli::LogFormat;

/// Logs go to stderr (stdout is the stdout channel's), human-readable or one JSON object
/// per line; `RUST_LOG` filters (default `info`). Colours only on a terminal, so that a
/// journal or a log file gets plain text.
///
/// No log line carries a secret: config secrets are [`crate::config::Secret`]s, whose
/// `Debug` and `Display` print `***`; URLs are logged without their query (the Navixy
/// WebSocket) or not at all (channel errors, whose URL may be a Slack webhook).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
