//! The live Navixy source: keeps one working subscription to Navixy's event stream for as
//! long as the daemon runs, and hands every data frame to the engine as raw text.
//!
//! One attempt is: a hash (the configured one, or `user/auth` with login + password), the
//! tracker list (`tracker/list`, sent on as [`SourceEvent::Trackers`] before any frame of
//! the new connection), the WebSocket, the Atmosphere line, `subscribe`. The subscription
//! *works* once Navixy answers it (or sends data). Any close, error or silence ends the
//! attempt; the next one waits an exponential backoff with jitter capped at
//! `max_backoff`, and starts over from the hash. After a `logout` the source
//! re-authenticates when it has login + password; without them it raises the engine alert
//! `navixy_session_closed` and retries slowly. No working subscription for
//! `source_down_after` raises `navixy_source_down`. Both resolve when a subscription works
//! again.
//!
//! [`SourceHealth`] shows all this to `/readyz` and metrics without locks on the hot path.
//! This module decodes control frames only; data frames are the engine's.

mod engine_alerts;
mod health;
mod session;
mod trackers;

pub use engine_alerts::{SESSION_CLOSED_ALERT, SOURCE_DOWN_ALERT};
pub use health::{HealthSnapshot, SourceHealth, SubscriptionStatuses, TrackerStatus};
pub use session::{NavixySource, SourceError, SourceOptions, simulated};
