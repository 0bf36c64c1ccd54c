//! The live Navixy source: keeps one working subscription to Navixy's event stream for as
//! long as the daemon runs, and hands every data frame to the engine as raw text.
//!
//! - `session`: the runner. Each attempt gets a hash (configured, or `user/auth`), the
//!   tracker list, the WebSocket and `subscribe`; any close, error or silence ends it and
//!   the next waits a backoff. A `logout` re-authenticates when login + password are set.
//! - `health`: what `/readyz` and metrics see, without locks on the hot path.
//! - `engine_alerts`: `navixy_session_closed` and `navixy_source_down`.
//! - `trackers`: the tracker list's refresh and what the subscription says of blocks.
//! - `context`: Navixy's zones, groups, tags and drivers, fetched and refreshed for rules.
//!
//! Control frames are decoded here; data frames are the engine's.

mod context;
mod engine_alerts;
mod health;
mod session;
mod trackers;

pub use context::ContextRefresh;
pub use engine_alerts::{SESSION_CLOSED_ALERT, SOURCE_DOWN_ALERT};
pub use health::{HealthSnapshot, SourceHealth, SubscriptionStatuses, TrackerStatus};
pub use session::{NavixySource, SourceError, SourceOptions, simulated};
