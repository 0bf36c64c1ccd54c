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
///
/// The WebSocket library prints every frame at `trace`, and the `subscribe` frame holds the
/// Navixy session hash: it stays at `debug` unless `RUST_LOG` names it (see [`log_filter`]).
pub fn init_logging(format: LogFormat) {
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Libraries whose `trace` output dumps raw traffic, secrets included (the WebSocket
/// frames carry the session hash). They log at `debug` at most unless named explicitly.
const RAW_TRAFFIC: &[&str] = &["tungstenite", "tokio_tungstenite"];

/// The filter for `RUST_LOG` (`None`, empty or invalid: `info`), with [`RAW_TRAFFIC`]
/// capped at `debug` when the default level is `trace` and the directives do not name
/// them: `RUST_LOG=trace` traces this crate without printing the hash;
/// `RUST_LOG=trace,tungstenite=trace` prints the frames.
pub fn log_filter(rust_log: Option<&str>) -> tracing_subscriber::EnvFilter {
    let spec = rust_log.map(str::trim).filter(|s| !s.is_empty());
    let parsed = spec.and_then(|s| tracing_subscriber::EnvFilter::try_new(s).ok());
    let Some((spec, mut filter)) = spec.zip(parsed) else {
        return tracing_subscriber::EnvFilter::new("info");
    };
    let traces_all = spec
        .split(',')
        .any(|directive| directive.trim().eq_ignore_ascii_case("trace"));
    for target in RAW_TRAFFIC {
        if !traces_all || names(spec, target) {
            continue;
        }
        if let Ok(directive) = format!("{target}=debug").parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Whether a directive of `spec` is about `target` or one of its modules.
fn names(spec: &str, target: &str) -> bool {
    spec.split(',').any(|directive| {
        let name = directive.split(['=', '[']).next().unwrap_or("").trim();
        name == target
            || name
                .strip_prefix(target)
                .is_some_and(|rest| rest.starts_with("::"))
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::log_filter;

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What a subscriber with `RUST_LOG=rust_log` prints for a frame dump of the WebSocket
    /// library and a trace line of this crate.
    fn logged(rust_log: &str) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(log_filter(Some(rust_log)))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "tungstenite::protocol", "Sending frame: {{\"hash\":\"SESSION-HASH\"}}");
            tracing::trace!(target: "tokio_tungstenite::compat", "frame SESSION-HASH-2");
            tracing::debug!(target: "tungstenite::handshake", "handshake done");
            tracing::trace!(target: "navixy_alerts::source", "own trace line");
        });
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn trace_keeps_the_websocket_frames_and_their_hash_out() {
        let text = logged("trace");
        assert!(!text.contains("SESSION-HASH"), "{text}");
        assert!(text.contains("handshake done"), "{text}");
        assert!(text.contains("own trace line"), "{text}");
    }

    #[test]
    fn debug_leaves_the_websocket_library_at_debug() {
        let text = logged("debug");
        assert!(text.contains("handshake done"), "{text}");
        assert!(!text.contains("SESSION-HASH"), "{text}");
        assert!(!text.contains("own trace line"), "{text}");
    }

    #[test]
    fn naming_the_websocket_library_prints_its_frames() {
        let text = logged("trace,tungstenite=trace");
        assert!(text.contains("SESSION-HASH\""), "{text}");
        // Only the library named: the other one stays capped.
        assert!(!text.contains("SESSION-HASH-2"), "{text}");
    }

    #[test]
    fn no_or_bad_rust_log_means_info() {
        for spec in ["", "[[[not a filter", "   ", "info"] {
            let text = logged(spec);
            assert!(!text.contains("own trace line"), "{spec}: {text}");
            assert!(!text.contains("handshake done"), "{spec}: {text}");
        }
    }
}
