//! The route stage: which channels a transition goes to ([`Router`] decides). A rule
//! that names a channel the config lacks has that channel dropped, logged for every
//! transition; an alert no route matches, from a rule without channels, is logged as
//! `unrouted` and goes nowhere (the warning says it once per rule).

use std::collections::HashSet;
use std::sync::Arc;

use crate::store::Conn;
use chrono::{DateTime, Utc};

use super::{Decision, DeliveryRecord, History, log};
use crate::alert::AlertTransition;
use crate::dispatch::routes::{Router, Target};
use crate::store::{Outcome, StoreError};

/// The route stage.
pub(crate) struct Route {
    router: Arc<Router>,
    /// Rules already warned about as unrouted.
    unrouted_warned: HashSet<Arc<str>>,
}

impl Route {
    pub fn new(router: Arc<Router>) -> Route {
        Route {
            router,
            unrouted_warned: HashSet::new(),
        }
    }

    /// The channels `t` goes to, each with its route's settings; empty when none.
    pub fn exec(
        &mut self,
        conn: &Conn,
        t: &AlertTransition,
        now: DateTime<Utc>,
        history: &mut dyn History,
    ) -> Result<Vec<Target>, StoreError> {
        let routed = self.router.route(t);
        for name in &routed.unknown_channels {
            tracing::warn!(rule = %t.rule, channel = %name, "Rule names an unknown channel.");
            let reason = format!("the rule names channel `{name}`, which is not configured");
            log(
                conn,
                now,
                t,
                Some(name),
                Outcome::Dropped,
                None,
                Some(reason.clone()),
            )?;
            history.record(&DeliveryRecord {
                at: now,
                alert: t,
                channel: Some(name),
                group_key: None,
                decision: Decision::Dropped { reason: &reason },
            });
        }
        if routed.targets.is_empty() && routed.unknown_channels.is_empty() {
            if self.unrouted_warned.insert(t.rule.clone()) {
                tracing::warn!(
                    rule = %t.rule,
                    "No route matches this rule's alerts and it names no channels: \
                     they are recorded, not sent."
                );
            }
            log(conn, now, t, None, Outcome::Unrouted, None, None)?;
            history.record(&DeliveryRecord {
                at: now,
                alert: t,
                channel: None,
                group_key: None,
                decision: Decision::Unrouted,
            });
        }
        Ok(routed.targets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::stages::tests::{Recorder, secs};
    use crate::dispatch::testing::{config, firing};
    use crate::store;

    fn route(yaml: &str) -> Route {
        Route::new(Arc::new(Router::new(&config(yaml)).unwrap()))
    }

    fn log(conn: &Conn) -> Vec<(String, Option<String>, Option<String>)> {
        let mut entries = store::recent_log(conn, 100).unwrap();
        entries.reverse();
        entries
            .into_iter()
            .map(|e| (e.outcome.as_str().to_owned(), e.channel, e.detail))
            .collect()
    }

    #[test]
    fn a_routed_alert_gets_its_channels_with_their_route() {
        let mut r = route(
            "channels: { ops: { type: stdout }, mail: { type: stdout } }\n\
             routes: [{ match: { rule: fuel_drain }, channels: [mail, ops] }]\n",
        );
        let conn = store::test_connection();
        let mut history = Recorder::default();
        let targets = r
            .exec(&conn, &firing("fuel_drain", 1), secs(0), &mut history)
            .unwrap();
        let got: Vec<_> = targets
            .iter()
            .map(|t| (t.channel.to_string(), t.route.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("mail".to_owned(), "routes[0]".to_owned()),
                ("ops".to_owned(), "routes[0]".to_owned())
            ]
        );
        assert!(log(&conn).is_empty());
        assert!(history.decisions().is_empty());
    }

    #[test]
    fn an_unrouted_alert_is_logged_at_every_transition() {
        let mut r = route(
            "channels: { ops: { type: stdout } }\n\
             routes: [{ match: { rule: speeding }, channels: [ops] }]\n",
        );
        let conn = store::test_connection();
        let mut history = Recorder::default();
        for at in [0, 5] {
            let targets = r
                .exec(&conn, &firing("fuel_drain", 1), secs(at), &mut history)
                .unwrap();
            assert!(targets.is_empty());
        }
        assert_eq!(
            log(&conn),
            [
                ("unrouted".into(), None, None),
                ("unrouted".into(), None, None)
            ]
        );
        assert_eq!(history.decisions(), ["unrouted", "unrouted"]);
        assert_eq!(r.unrouted_warned.len(), 1);
    }

    #[test]
    fn an_unknown_channel_is_dropped_and_named() {
        let mut r = route("channels: { ops: { type: stdout } }\n");
        let conn = store::test_connection();
        let mut history = Recorder::default();
        let mut t = firing("fuel_drain", 1);
        t.channels = Some(vec!["ops".into(), "pager".into()]);
        let targets = r.exec(&conn, &t, secs(0), &mut history).unwrap();
        assert_eq!(targets.len(), 1);
        assert_eq!(&*targets[0].channel, "ops");
        assert_eq!(
            log(&conn),
            [(
                "dropped".into(),
                Some("pager".into()),
                Some("the rule names channel `pager`, which is not configured".into())
            )]
        );
        assert_eq!(history.decisions(), ["dropped"]);
    }
}
