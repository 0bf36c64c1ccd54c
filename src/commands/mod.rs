//! One module per subcommand; each `run` returns the process exit code.

pub mod check;
pub mod replay;
pub mod run;
pub mod simulate;
pub mod test;

use crate::cli::LogFormat;

/// Logs go to stderr, human-readable or JSON; `RUST_LOG` filters (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
