//! Reconnects, refused hashes, logouts, and the engine alerts they raise and resolve.

use std::time::Instant;

use navixy_alerts::alert::{AlertStatus, Fingerprint, Severity};
use navixy_alerts::navixy::messages::{BatchItem, Frame};
use navixy_alerts::source::SourceEvent;

use super::*;

#[tokio::test]
async fn reconnects_after_an_abrupt_drop_and_resubscribes() {
    bounded(async {
        let sim = simulator(sim_options()).await;
        let mut run = start(sim.clone(), config(&sim, &api_key(&sim))).await;
        run.next_frame().await;
        assert_eq!(run.health.reconnects(), 0);

        // No close frame: the TCP connection just goes away.
        sim.drop_connections();
        run.health
            .wait_until(|h| h.reconnects() >= 1 && h.is_connected())
            .await;
        // After the drop: the tracker list again, then a full snapshot again.
        loop {
            if let SourceEvent::Trackers(_, list) = run.next().await
                && sim.stats().tracker_lists == 2
            {
                assert_eq!(list.len(), 20);
                break;
            }
        }
        let snapshot = loop {
            if let Frame::StateBatch { items, .. } = run.next_frame().await {
                break items;
            }
        };
        let states = snapshot
            .iter()
            .filter(|i| matches!(i, BatchItem::State(_)))
            .count();
        assert_eq!(states, 20, "a full snapshot follows each subscribe");
        let stats = sim.stats();
        assert_eq!(stats.connections, 2);
        assert_eq!(stats.subscriptions, 2);
        assert!(
            run.health
                .last_error()
                .is_some_and(|e| e.contains("WebSocket") || e.contains("closed"))
        );
        assert!(
            run.drain()
                .iter()
                .all(|e| !matches!(e, SourceEvent::Alert(_))),
            "a short outage raises no engine alert"
        );
        run.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_wrong_hash_is_named_and_retried_with_backoff() {
    bounded(async {
        let sim = simulator(sim_options()).await;
        let config = config(
            &sim,
            "    hash: not-a-valid-hash\n    source_down_after: 300ms\n",
        );
        let mut run = start(sim.clone(), config).await;
        let started = Instant::now();
        run.health.wait_until(|h| h.reconnects() >= 3).await;
        let error = run.health.last_error().expect("an error");
        assert!(error.contains("Wrong hash"), "{error}");
        assert!(
            error.contains("source.navixy.hash"),
            "the error names the setting: {error}"
        );

        // No working subscription for source_down_after: the engine alert.
        let alert = run.next_alert().await;
        assert_eq!(alert.rule.as_ref(), "navixy_source_down");
        assert_eq!(alert.status, AlertStatus::Firing);
        assert_eq!(alert.severity, Severity::Critical);
        assert_eq!(alert.tracker, None);
        assert_eq!(
            alert.fingerprint,
            Fingerprint::new("navixy_source_down", None, None)
        );
        assert!(alert.annotations["description"].contains("Wrong hash"));

        // Backoff, not a tight loop: every delay is at least half its base (20 ms
        // doubling to 200 ms), so the attempts are bounded by the time spent.
        let attempts = sim.stats().refused_subscriptions;
        let bound = 4 + started.elapsed().as_millis() as u64 / 100 + 1;
        assert!(
            attempts <= bound,
            "{attempts} attempts in {:?}",
            started.elapsed()
        );
        assert!(
            run.drain()
                .iter()
                .all(|e| !matches!(e, SourceEvent::RawFrame { .. })),
            "no frames without a subscription"
        );
        run.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_refused_subscription_recovers_and_resolves_source_down() {
    bounded(async {
        let sim = simulator(sim_options()).await;
        sim.refuse_subscriptions(Some(3));
        let extra = format!("{}    source_down_after: 300ms\n", api_key(&sim));
        let mut run = start(sim.clone(), config(&sim, &extra)).await;
        let alert = run.next_alert().await;
        assert_eq!(
            (alert.rule.as_ref(), alert.status),
            ("navixy_source_down", AlertStatus::Firing)
        );
        assert!(
            run.health
                .last_error()
                .unwrap()
                .contains("error 3 (Wrong hash)")
        );
        assert!(!run.health.is_connected());

        sim.refuse_subscriptions(None);
        let resolved = run.next_alert().await;
        assert_eq!(resolved.rule.as_ref(), "navixy_source_down");
        assert_eq!(resolved.status, AlertStatus::Resolved);
        assert_eq!(resolved.starts_at, alert.starts_at);
        assert!(resolved.ends_at.is_some());
        assert!(run.health.is_connected());
        run.next_frame().await;
        run.stop().await;
    })
    .await
}

#[tokio::test]
async fn logout_with_credentials_signs_in_again_and_resubscribes() {
    bounded(async {
        let sim = simulator(sim_options()).await;
        let extra = format!(
            "    login: {}\n    password: {}\n",
            sim.login(),
            sim.password()
        );
        let mut run = start(sim.clone(), config(&sim, &extra)).await;
        run.next_frame().await;
        assert_eq!(sim.stats().auths, 1);

        sim.logout();
        run.health
            .wait_until(|h| h.is_connected() && h.reconnects() >= 1)
            .await;
        let stats = sim.stats();
        assert_eq!(stats.auths, 2, "a new session hash after the logout");
        assert_eq!(stats.subscriptions, 2);
        assert_eq!(
            stats.refused_subscriptions, 0,
            "the old hash was not tried again"
        );
        assert!(run.health.last_error().unwrap().contains("logout"));
        assert!(!run.health.session_closed());
        // Frames flow again, and no engine alert was raised.
        let mut events = run.drain();
        run.next_frame().await;
        events.extend(run.drain());
        assert!(events.iter().all(|e| !matches!(e, SourceEvent::Alert(_))));
        run.stop().await;
    })
    .await
}

#[tokio::test]
async fn logout_without_credentials_raises_session_closed_until_the_key_works() {
    bounded(async {
        let sim = simulator(sim_options()).await;
        let extra = format!("{}    source_down_after: 1h\n", api_key(&sim));
        let mut run = start(sim.clone(), config(&sim, &extra)).await;
        run.next_frame().await;

        // The key is revoked and the session ends.
        sim.set_api_key_valid(false);
        sim.logout();
        let alert = run.next_alert().await;
        assert_eq!(alert.rule.as_ref(), "navixy_session_closed");
        assert_eq!(alert.status, AlertStatus::Firing);
        assert_eq!(alert.severity, Severity::Critical);
        assert_eq!(alert.tracker, None);
        assert_eq!(
            alert.fingerprint,
            Fingerprint::new("navixy_session_closed", None, None)
        );
        assert!(alert.annotations["description"].contains("login and password"));
        assert!(run.health.session_closed());

        // Retried slowly: later attempts are refused with error 4.
        run.health
            .wait_until(|h| h.last_error().is_some_and(|e| e.contains("error 4")))
            .await;
        assert!(run.health.session_closed());

        // The key works again: the next retry subscribes and the alert resolves.
        sim.set_api_key_valid(true);
        let resolved = run.next_alert().await;
        assert_eq!(resolved.rule.as_ref(), "navixy_session_closed");
        assert_eq!(resolved.status, AlertStatus::Resolved);
        assert_eq!(resolved.starts_at, alert.starts_at);
        assert!(run.health.is_connected());
        assert!(!run.health.session_closed());
        run.next_frame().await;
        run.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_logout_after_a_password_change_raises_session_closed() {
    bounded(async {
        let sim = simulator(sim_options()).await;
        let extra = format!(
            "    login: {}\n    password: {}\n    source_down_after: 1h\n",
            sim.login(),
            sim.password()
        );
        let mut run = start(sim.clone(), config(&sim, &extra)).await;
        run.next_frame().await;

        // The user changed the password elsewhere: the next user/auth is refused.
        let old = sim.password();
        sim.set_password("changed");
        sim.logout();
        let alert = run.next_alert().await;
        assert_eq!(alert.rule.as_ref(), "navixy_session_closed");
        assert_eq!(alert.status, AlertStatus::Firing);
        assert!(run.health.last_error().unwrap().contains("error 102"));

        sim.set_password(old);
        let resolved = run.next_alert().await;
        assert_eq!(resolved.rule.as_ref(), "navixy_session_closed");
        assert_eq!(resolved.status, AlertStatus::Resolved);
        assert!(run.health.is_connected());
        run.stop().await;
    })
    .await
}
