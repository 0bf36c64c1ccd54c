//! Who holds which source's lease, as this instance last saw it: published by
//! [`super::Leases`] after every round, read by the daemon, `/readyz`, the metrics and
//! the console.

use chrono::{DateTime, SecondsFormat};
use serde::Serialize;
use utoipa::ToSchema;

/// The cluster as seen from this instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct ClusterView {
    /// This instance's `cluster.instance`.
    pub instance: String,
    /// `owner` while it holds at least one source, else `standby`.
    pub role: String,
    /// The sources this instance holds, in config order.
    pub owns: Vec<String>,
    /// Every configured source's lease.
    pub sources: Vec<SourceLease>,
    /// The first lease this instance lost, and how: it exits then, to start again as a
    /// standby.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<String>,
    /// Why the last look at the database failed, if it did (the view is then older).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One source's lease.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SourceLease {
    pub source: String,
    /// The instance holding (or last holding) the lease; `None` when nobody ever has.
    pub owner: Option<String>,
    /// Incremented by each acquisition: the fence's proof that a holder is still the one.
    pub epoch: i64,
    /// When the lease runs out unless renewed, on the database's clock (RFC 3339).
    pub expires_at: Option<String>,
    /// Whether the lease is in force at the database's clock when it was read.
    pub live: bool,
    /// Whether this instance holds it.
    pub held: bool,
}

impl ClusterView {
    /// The view before the first look at the database.
    pub fn starting(instance: &str, sources: &[String]) -> ClusterView {
        ClusterView {
            instance: instance.to_owned(),
            role: "standby".into(),
            owns: Vec::new(),
            sources: sources
                .iter()
                .map(|source| SourceLease {
                    source: source.clone(),
                    owner: None,
                    epoch: 0,
                    expires_at: None,
                    live: false,
                    held: false,
                })
                .collect(),
            lost: None,
            error: None,
        }
    }

    /// The lease of `source`.
    pub fn source(&self, source: &str) -> Option<&SourceLease> {
        self.sources.iter().find(|s| s.source == source)
    }

    /// Whether this instance holds `source`.
    pub fn holds(&self, source: &str) -> bool {
        self.owns.iter().any(|s| s == source)
    }
}

/// A database time in milliseconds as RFC 3339.
pub fn rfc3339_ms(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}
