//! The source's engine alerts: `navixy_session_closed` (a logout that could not be
//! renewed) and `navixy_source_down` (no working subscription for `source_down_after`),
//! raised and resolved by a watchdog that follows the session's [`Link`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{error, info};

use super::health::SourceHealth;
use crate::alert::{AlertStatus, AlertTransition, Fingerprint, Severity};
use crate::clock::Clock;
use crate::source::SourceEvent;

/// Engine alert: a `logout` arrived and the session could not be renewed.
pub const SESSION_CLOSED_ALERT: &str = "navixy_session_closed";
/// Engine alert: no working subscription for `source_down_after`.
pub const SOURCE_DOWN_ALERT: &str = "navixy_source_down";

/// Whether a subscription works, as the alert watchdog sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Link {
    Working,
    /// No working subscription since `since`; `session_closed` after a logout that could
    /// not be renewed.
    Down {
        since: Instant,
        session_closed: bool,
    },
}

/// Raises and resolves the source's engine alerts from the link state.
pub(super) struct EngineAlerts {
    /// The source's name: the alerts' `source` label and part of their fingerprints.
    source: Arc<str>,
    clock: Arc<dyn Clock>,
    tx: mpsc::Sender<SourceEvent>,
    health: Arc<SourceHealth>,
    down_after: Duration,
    /// `starts_at` of the firing alerts.
    session_closed_since: Option<DateTime<Utc>>,
    down_since: Option<DateTime<Utc>>,
}

impl EngineAlerts {
    /// A watchdog with no alert firing.
    pub(super) fn new(
        source: Arc<str>,
        clock: Arc<dyn Clock>,
        tx: mpsc::Sender<SourceEvent>,
        health: Arc<SourceHealth>,
        down_after: Duration,
    ) -> EngineAlerts {
        EngineAlerts {
            source,
            clock,
            tx,
            health,
            down_after,
            session_closed_since: None,
            down_since: None,
        }
    }

    /// Runs until the engine or the source is gone.
    pub(super) async fn watch(mut self, mut link: watch::Receiver<Link>) {
        loop {
            let current = *link.borrow_and_update();
            let sent = match current {
                Link::Working => self.resolve_all().await,
                Link::Down {
                    since,
                    session_closed,
                } => {
                    if session_closed
                        && self.session_closed_since.is_none()
                        && !self.fire(SESSION_CLOSED_ALERT).await
                    {
                        return;
                    }
                    if self.down_since.is_none() {
                        tokio::select! {
                            () = tokio::time::sleep_until(since + self.down_after) => {
                                self.fire(SOURCE_DOWN_ALERT).await
                            }
                            changed = link.changed() => {
                                if changed.is_err() {
                                    return;
                                }
                                continue;
                            }
                        }
                    } else {
                        true
                    }
                }
            };
            if !sent || link.changed().await.is_err() {
                return;
            }
        }
    }

    /// Sends a firing transition; false if the engine is gone.
    async fn fire(&mut self, rule: &'static str) -> bool {
        let now = self.clock.now();
        match rule {
            SESSION_CLOSED_ALERT => self.session_closed_since = Some(now),
            _ => self.down_since = Some(now),
        }
        error!(alert = rule, source = %self.source, "Engine alert firing.");
        let transition = self.transition(rule, AlertStatus::Firing, now, now);
        self.tx
            .send(SourceEvent::Alert(Box::new(transition)))
            .await
            .is_ok()
    }

    async fn resolve_all(&mut self) -> bool {
        let now = self.clock.now();
        for (rule, since) in [
            (SESSION_CLOSED_ALERT, self.session_closed_since.take()),
            (SOURCE_DOWN_ALERT, self.down_since.take()),
        ] {
            if let Some(starts_at) = since {
                info!(alert = rule, source = %self.source, "Engine alert resolved.");
                let transition = self.transition(rule, AlertStatus::Resolved, starts_at, now);
                if self
                    .tx
                    .send(SourceEvent::Alert(Box::new(transition)))
                    .await
                    .is_err()
                {
                    return false;
                }
            }
        }
        true
    }

    fn transition(
        &self,
        rule: &'static str,
        status: AlertStatus,
        starts_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> AlertTransition {
        let last_error = self.health.last_error().unwrap_or_else(|| "none".into());
        let (summary, description) = match rule {
            SESSION_CLOSED_ALERT => (
                "Navixy closed the session and it could not be renewed".to_string(),
                format!(
                    "A logout event ended the session. Without source.navixy.login and password the source cannot sign in again: replace the hash or set them. Retrying slowly. Last error: {last_error}"
                ),
            ),
            _ => (
                format!(
                    "No working Navixy subscription for {}",
                    humanize(self.down_after)
                ),
                format!(
                    "No frames from Navixy: alerts based on live data cannot fire. Last error: {last_error}"
                ),
            ),
        };
        AlertTransition {
            fingerprint: Fingerprint::of_source(rule, &self.source, None, None),
            rule: Arc::from(rule),
            status,
            severity: Severity::Critical,
            tracker: None,
            key: None,
            labels: BTreeMap::from([("source".to_string(), self.source.to_string())]),
            annotations: BTreeMap::from([
                ("summary".to_string(), summary),
                ("description".to_string(), description),
            ]),
            value: None,
            starts_at,
            ends_at: (status == AlertStatus::Resolved).then_some(now),
            at: now,
            location: None,
            state: serde_json::Map::new(),
            channels: None,
            occurrence_id: None,
            pending: false,
        }
    }
}

/// `2m`, `90s`, `1h30m`: durations as the config writes them.
fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, 0) => format!("{}ms", d.as_millis()),
        (0, 0, sec) => format!("{sec}s"),
        (0, m, 0) => format!("{m}m"),
        (h, 0, 0) => format!("{h}h"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use chrono::TimeZone;

    #[test]
    fn durations_read_like_the_config() {
        assert_eq!(humanize(Duration::from_secs(120)), "2m");
        assert_eq!(humanize(Duration::from_secs(90)), "1m30s");
        assert_eq!(humanize(Duration::from_secs(5400)), "1h30m");
        assert_eq!(humanize(Duration::from_millis(300)), "300ms");
    }

    fn alerts(
        clock: &ManualClock,
        down_after: Duration,
    ) -> (EngineAlerts, mpsc::Receiver<SourceEvent>) {
        let (tx, rx) = mpsc::channel(16);
        let alerts = EngineAlerts {
            source: Arc::from("navixy"),
            clock: Arc::new(clock.clone()),
            tx,
            health: Arc::new(SourceHealth::new(clock.now())),
            down_after,
            session_closed_since: None,
            down_since: None,
        };
        (alerts, rx)
    }

    fn alert(event: Option<SourceEvent>) -> AlertTransition {
        match event {
            Some(SourceEvent::Alert(t)) => *t,
            other => panic!("expected an alert, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn source_down_fires_after_the_delay_and_resolves_when_working() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap();
        let clock = ManualClock::new(t0);
        let (alerts, mut rx) = alerts(&clock, Duration::from_secs(120));
        let start = Instant::now();
        let (link, link_rx) = watch::channel(Link::Down {
            since: start,
            session_closed: false,
        });
        tokio::spawn(alerts.watch(link_rx));

        // Attempts keep failing (the `since` stays the first failure's).
        tokio::time::sleep(Duration::from_secs(60)).await;
        link.send_replace(Link::Down {
            since: start,
            session_closed: false,
        });
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert!(rx.try_recv().is_err(), "nothing before source_down_after");
        clock.set(t0 + chrono::Duration::seconds(120));
        let fired = alert(rx.recv().await);
        assert_eq!(start.elapsed(), Duration::from_secs(120));
        assert_eq!(fired.rule.as_ref(), SOURCE_DOWN_ALERT);
        assert_eq!(fired.status, AlertStatus::Firing);
        assert_eq!(fired.severity, Severity::Critical);
        assert_eq!(fired.tracker, None);
        assert_eq!(
            fired.fingerprint,
            Fingerprint::new(SOURCE_DOWN_ALERT, None, None)
        );
        assert_eq!(
            fired.annotations["summary"],
            "No working Navixy subscription for 2m"
        );

        clock.set(t0 + chrono::Duration::seconds(200));
        link.send_replace(Link::Working);
        let resolved = alert(rx.recv().await);
        assert_eq!(resolved.status, AlertStatus::Resolved);
        assert_eq!(resolved.starts_at, t0 + chrono::Duration::seconds(120));
        assert_eq!(resolved.ends_at, Some(t0 + chrono::Duration::seconds(200)));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_outage_raises_nothing() {
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap());
        let (alerts, mut rx) = alerts(&clock, Duration::from_secs(120));
        let (link, link_rx) = watch::channel(Link::Working);
        tokio::spawn(alerts.watch(link_rx));
        tokio::time::sleep(Duration::from_secs(10)).await;
        link.send_replace(Link::Down {
            since: Instant::now(),
            session_closed: false,
        });
        tokio::time::sleep(Duration::from_secs(119)).await;
        link.send_replace(Link::Working);
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn session_closed_fires_at_once_and_resolves_with_source_down() {
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap());
        let (alerts, mut rx) = alerts(&clock, Duration::from_secs(120));
        let (link, link_rx) = watch::channel(Link::Working);
        tokio::spawn(alerts.watch(link_rx));
        tokio::task::yield_now().await;
        link.send_replace(Link::Down {
            since: Instant::now(),
            session_closed: true,
        });
        let fired = alert(rx.recv().await);
        assert_eq!(fired.rule.as_ref(), SESSION_CLOSED_ALERT);
        assert_eq!(
            fired.fingerprint,
            Fingerprint::new("navixy_session_closed", None, None)
        );
        let down = alert(rx.recv().await);
        assert_eq!(down.rule.as_ref(), SOURCE_DOWN_ALERT);
        link.send_replace(Link::Working);
        let mut resolved: Vec<String> = vec![alert(rx.recv().await), alert(rx.recv().await)]
            .into_iter()
            .map(|t| {
                assert_eq!(t.status, AlertStatus::Resolved);
                t.rule.to_string()
            })
            .collect();
        resolved.sort();
        assert_eq!(resolved, [SESSION_CLOSED_ALERT, SOURCE_DOWN_ALERT]);
    }
}
