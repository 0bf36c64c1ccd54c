//! Grouping, dedup, flap damping and silences, driven with exact times.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::store::Conn;
use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::dispatch::testing::{config, firing, resolved, t0};
use crate::store::{NewSilence, SilenceMatcher};

pub(super) const CONFIG: &str = r#"
channels:
  ops: { type: stdout }
  mail: { type: stdout }
routes:
  - match: { rule: quiet }
    channels: [ops]
    send_resolved: false
  - channels: [ops]
notify: { group_by: [rule], group_wait: 10s, group_interval: 1m, repeat_interval: 4h }
"#;

pub(super) struct Harness {
    pub(super) conn: Conn,
    pub(super) groups: Groups,
    silence_generation: u64,
}

pub(super) fn secs(n: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(n)
}

impl Harness {
    pub(super) fn new(yaml: &str) -> Harness {
        let router = Arc::new(Router::new(&config(yaml)).unwrap());
        Harness {
            conn: store::test_connection(),
            groups: Groups::new(router),
            silence_generation: 0,
        }
    }

    /// What the dispatcher does for a submit at `at`: apply, then flush what is due.
    pub(super) fn submit(
        &mut self,
        t: AlertTransition,
        at: DateTime<Utc>,
    ) -> Vec<Arc<Notification>> {
        let tx = self.conn.transaction().unwrap();
        self.groups.apply(&tx, t, at).unwrap();
        let mut out = Vec::new();
        self.groups
            .flush_due(&tx, at, self.silence_generation, &mut out)
            .unwrap();
        tx.commit().unwrap();
        out.into_iter().map(|q| q.notification).collect()
    }

    /// A timer wake-up at `at`.
    fn tick(&mut self, at: DateTime<Utc>) -> Vec<Arc<Notification>> {
        let tx = self.conn.transaction().unwrap();
        let mut out = Vec::new();
        self.groups
            .flush_due(&tx, at, self.silence_generation, &mut out)
            .unwrap();
        tx.commit().unwrap();
        out.into_iter().map(|q| q.notification).collect()
    }

    /// Ticks every second from `from` to `to` (inclusive), collecting what is sent.
    pub(super) fn run(&mut self, from: i64, to: i64) -> Vec<(i64, Arc<Notification>)> {
        (from..=to)
            .flat_map(|s| self.tick(secs(s)).into_iter().map(move |n| (s, n)))
            .collect()
    }

    pub(super) fn log(&self) -> Vec<(String, Option<String>, String)> {
        let mut entries = store::recent_log(&self.conn, 1000).unwrap();
        entries.reverse();
        entries
            .into_iter()
            .map(|e| (e.outcome.as_str().to_owned(), e.channel, e.status))
            .collect()
    }

    pub(super) fn silence(&mut self, matchers: Vec<SilenceMatcher>, from: i64, to: i64) {
        let s = NewSilence {
            matchers,
            starts_at: Some(secs(from)),
            ends_at: secs(to),
            created_by: String::new(),
            comment: String::new(),
        }
        .into_silence(secs(from))
        .unwrap();
        self.conn
            .execute(
                "INSERT INTO silences (id, matchers, starts_at, ends_at, created_by, comment, created_at)
                 VALUES (?1, ?2, ?3, ?4, '', '', 0)",
                crate::store::params![
                    s.id,
                    serde_json::to_string(&s.matchers).unwrap(),
                    s.starts_at.timestamp_millis(),
                    s.ends_at.timestamp_millis()
                ],
            )
            .unwrap();
        self.silence_generation += 1;
    }
}

fn trackers(n: &Notification) -> Vec<(i64, &'static str)> {
    n.alerts
        .iter()
        .map(|a| (a.tracker.as_ref().unwrap().id, a.status.as_str()))
        .collect()
}

#[test]
fn alerts_of_a_group_wait_group_wait_and_go_out_together() {
    let mut h = Harness::new(CONFIG);
    assert!(h.submit(firing("fuel_drain", 1), secs(0)).is_empty());
    assert!(h.submit(firing("fuel_drain", 2), secs(4)).is_empty());
    // Another rule is another group.
    assert!(h.submit(firing("speeding", 3), secs(5)).is_empty());

    let sent = h.run(0, 20);
    assert_eq!(sent.len(), 2);
    let (at, n) = &sent[0];
    assert_eq!(*at, 10, "group_wait after the group's first alert");
    assert_eq!(n.receiver, "ops");
    assert_eq!(n.group_key, r#"routes[1]:{rule="fuel_drain"}"#);
    assert_eq!(n.group_labels["rule"], "fuel_drain");
    assert_eq!(n.reason, "first notification");
    assert_eq!(n.status, AlertStatus::Firing);
    assert_eq!(n.created_at, secs(10));
    assert_eq!(trackers(n), [(1, "firing"), (2, "firing")]);
    assert!(n.id.starts_with("msg_") && n.id.len() == 36, "{}", n.id);
    assert_eq!(sent[1].0, 15);
    assert_eq!(trackers(&sent[1].1), [(3, "firing")]);

    // Written to the outbox in the same transaction.
    let pending = store::load_pending(&h.conn).unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0].id, n.id);
    let stored: Notification = serde_json::from_str(&pending[0].payload).unwrap();
    assert_eq!(&stored, n.as_ref());
}

#[test]
fn later_alerts_wait_for_the_next_group_interval() {
    let mut h = Harness::new(CONFIG);
    h.submit(firing("fuel_drain", 1), secs(0));
    assert_eq!(h.run(0, 10).len(), 1);
    h.submit(firing("fuel_drain", 2), secs(30));
    let sent = h.run(11, 80);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, 70, "first flush at 10 s, then every minute");
    assert_eq!(sent[0].1.reason, "new alerts");
    // Only what the receiver has not heard: tracker 1 is not repeated.
    assert_eq!(trackers(&sent[0].1), [(2, "firing")]);
}

#[test]
fn a_firing_alert_repeats_only_after_repeat_interval() {
    let mut h = Harness::new(CONFIG);
    let t = firing("fuel_drain", 1);
    h.submit(t.clone(), secs(0));
    assert_eq!(h.run(0, 10).len(), 1);
    // The same firing again (an evaluator restarted without its state) is not news.
    assert!(h.submit(t, secs(70)).is_empty());
    let four_hours = 4 * 3600;
    let mut sent = Vec::new();
    for s in (80..=four_hours + 70).step_by(10) {
        sent.extend(h.tick(secs(s)).into_iter().map(|n| (s, n)));
    }
    assert_eq!(sent.len(), 1);
    // Flushes run at 10 + k*60; the first one at or after 10 + 4h.
    assert_eq!(sent[0].0, 10 + four_hours);
    assert_eq!(sent[0].1.reason, "repeat");
    assert_eq!(sent[0].1.alerts[0].starts_at, t0(), "keeps when it started");
}

#[test]
fn a_resolve_is_sent_once_and_the_live_alert_is_forgotten() {
    let mut h = Harness::new(CONFIG);
    let t = firing("fuel_drain", 1);
    h.submit(t.clone(), secs(0));
    assert_eq!(store::load_live_alerts(&h.conn).unwrap().len(), 1);
    h.run(0, 10);
    h.submit(resolved(&t, secs(20)), secs(20));
    assert!(store::load_live_alerts(&h.conn).unwrap().is_empty());
    // A duplicate resolve changes nothing.
    h.submit(resolved(&t, secs(25)), secs(25));
    let sent = h.run(11, 300);
    assert_eq!(sent.len(), 1);
    let (at, n) = &sent[0];
    assert_eq!(*at, 70);
    assert_eq!(n.status, AlertStatus::Resolved);
    assert_eq!(n.event_type(), "alert.resolved");
    assert_eq!(n.reason, "resolved");
    assert_eq!(n.alerts[0].ends_at, Some(secs(20)));
    // Kept as a tombstone for the flap window, then gone with its group.
    assert_eq!(h.groups.size(), (1, 1));
    h.tick(secs(70 + 3600));
    assert_eq!(h.groups.size(), (0, 0));
    let groups: i64 = h
        .conn
        .query_one(
            "SELECT count(*) FROM groups",
            crate::store::params![],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(groups, 0);
}

#[test]
fn send_resolved_false_skips_resolves() {
    let mut h = Harness::new(CONFIG);
    let t = firing("quiet", 1);
    h.submit(t.clone(), secs(0));
    assert_eq!(h.run(0, 10).len(), 1);
    h.submit(resolved(&t, secs(20)), secs(20));
    assert!(h.run(11, 200).is_empty());
    assert!(
        h.log()
            .contains(&("dropped".into(), Some("ops".into()), "resolved".into()))
    );
}

#[test]
fn an_alert_resolved_before_its_first_notification_sends_nothing() {
    let mut h = Harness::new(CONFIG);
    let t = firing("fuel_drain", 1);
    h.submit(t.clone(), secs(0));
    h.submit(resolved(&t, secs(5)), secs(5));
    assert!(h.run(0, 200).is_empty());
    assert_eq!(h.groups.size(), (0, 0));
    assert_eq!(
        h.log(),
        [("dropped".into(), Some("ops".into()), "resolved".into())]
    );
}

#[test]
fn resolve_and_fire_again_within_an_interval_is_coalesced() {
    let mut h = Harness::new(CONFIG);
    let t = firing("fuel_drain", 1);
    h.submit(t.clone(), secs(0));
    assert_eq!(h.run(0, 10).len(), 1);
    // Flaps between two flushes (10 s and 70 s): the receiver still believes "firing".
    h.submit(resolved(&t, secs(20)), secs(20));
    h.submit(firing("fuel_drain", 1), secs(30));
    assert!(h.run(11, 130).is_empty());
    assert!(
        h.log()
            .contains(&("coalesced".into(), Some("ops".into()), "firing".into()))
    );
    // When it resolves for good, the one resolve says it flapped.
    h.submit(resolved(&t, secs(140)), secs(140));
    let sent = h.run(131, 200);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, 190);
    assert_eq!(
        sent[0].1.reason,
        "resolved; flapping: 1 alert changed state 3 times since last notified"
    );
}

#[test]
fn a_flapping_alert_is_capped_per_hour_then_summarised() {
    let mut h = Harness::new(CONFIG);
    let t = firing("fuel_drain", 1);
    // Fires and resolves across each flush, so every flush has news: notifications at
    // 10, 70, 130, ... until the cap of six per hour.
    let mut sent = Vec::new();
    for k in 0..11i64 {
        let at = k * 60;
        let change = if k % 2 == 0 {
            firing("fuel_drain", 1)
        } else {
            resolved(&t, secs(at))
        };
        sent.extend(h.submit(change, secs(at)).into_iter().map(|n| (at, n)));
        sent.extend(h.run(at + 1, at + 59));
    }
    let times: Vec<i64> = sent.iter().map(|(at, _)| *at).collect();
    assert_eq!(
        times,
        [10, 70, 130, 190, 250, 310],
        "six in the first hour, then held"
    );
    assert!(h.log().iter().any(|(o, _, _)| o == "held"));
    // The receiver last heard "resolved" (310 s); the alert ends firing (k = 10, 600 s).
    // That waits until the first of the six leaves the window (10 s + 1 h) and goes out
    // once, with the damped changes counted.
    let later = h.run(660, 3700);
    assert_eq!(later.len(), 1, "{later:?}");
    assert_eq!(later[0].0, 3610);
    let n = &later[0].1;
    assert_eq!(trackers(n), [(1, "firing")]);
    assert_eq!(
        n.reason,
        "new alerts; flapping: 1 alert changed state 5 times since last notified"
    );
}

#[test]
fn silenced_alerts_are_logged_once_and_sent_when_the_silence_ends() {
    let mut h = Harness::new(CONFIG);
    h.silence(
        vec![SilenceMatcher {
            name: "tracker_id".into(),
            value: "1|2".into(),
            is_regex: true,
            is_equal: true,
        }],
        0,
        100,
    );
    h.submit(firing("fuel_drain", 1), secs(0));
    h.submit(firing("fuel_drain", 3), secs(1));
    let sent = h.run(0, 90);
    assert_eq!(sent.len(), 1);
    assert_eq!(trackers(&sent[0].1), [(3, "firing")]);
    let silenced: Vec<_> = h
        .log()
        .into_iter()
        .filter(|(o, _, _)| o == "silenced")
        .collect();
    assert_eq!(silenced.len(), 1, "logged once, not at every flush");
    // The silence ends at 100 s; the next flush (130 s) tells the receiver.
    let sent = h.run(91, 200);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, 130);
    assert_eq!(trackers(&sent[0].1), [(1, "firing")]);
    assert_eq!(sent[0].1.reason, "new alerts");
}

#[test]
fn unrouted_alerts_are_recorded_not_sent() {
    let mut h = Harness::new(
        "channels: { ops: { type: stdout } }\nroutes: [{ match: { severity: info }, channels: [ops] }]\n",
    );
    h.submit(firing("fuel_drain", 1), secs(0));
    h.submit(firing("fuel_drain", 2), secs(0));
    assert!(h.run(0, 100).is_empty());
    assert_eq!(
        h.log(),
        [
            ("unrouted".into(), None, "firing".into()),
            ("unrouted".into(), None, "firing".into())
        ]
    );
    assert_eq!(store::load_live_alerts(&h.conn).unwrap().len(), 2);
}

#[test]
fn a_rules_own_channels_bypass_routes_with_the_notify_defaults() {
    let mut h = Harness::new(CONFIG);
    let mut t = firing("fuel_drain", 1);
    t.channels = Some(vec!["mail".into()]);
    h.submit(t, secs(0));
    let sent = h.run(0, 20);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.receiver, "mail");
    assert_eq!(sent[0].1.group_key, r#"rule:{rule="fuel_drain"}"#);
}

#[test]
fn group_state_survives_a_restart() {
    let mut h = Harness::new(CONFIG);
    let t = firing("fuel_drain", 1);
    h.submit(t.clone(), secs(0));
    h.submit(firing("fuel_drain", 2), secs(1));
    assert_eq!(h.run(0, 10).len(), 1);
    h.submit(firing("fuel_drain", 3), secs(20));

    // A new process: groups from the database, nothing in memory.
    let router = Arc::new(Router::new(&config(CONFIG)).unwrap());
    let names: Vec<Arc<str>> = vec![Arc::from("ops"), Arc::from("mail")];
    h.groups = Groups::load(&h.conn, router, &names).unwrap();
    assert_eq!(h.groups.size(), (1, 3));
    // The evaluator restored nothing and fires tracker 1 again: not news.
    h.submit(firing("fuel_drain", 1), secs(30));
    h.submit(resolved(&t, secs(40)), secs(40));
    let sent = h.run(11, 80);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, 70, "the flush schedule survives too");
    assert_eq!(trackers(&sent[0].1), [(3, "firing"), (1, "resolved")]);
    assert_eq!(sent[0].1.reason, "new alerts, resolved");
}

#[test]
fn a_restart_keeps_group_wait() {
    let mut h = Harness::new(CONFIG);
    h.submit(firing("fuel_drain", 1), secs(0));
    let router = Arc::new(Router::new(&config(CONFIG)).unwrap());
    h.groups = Groups::load(&h.conn, router, &[Arc::from("ops")]).unwrap();
    assert!(h.run(0, 9).is_empty());
    assert_eq!(h.run(10, 10).len(), 1);
}

#[test]
fn groups_of_a_removed_channel_are_dropped_on_load() {
    let mut h = Harness::new(CONFIG);
    h.submit(firing("fuel_drain", 1), secs(0));
    let router = Arc::new(Router::new(&config(CONFIG)).unwrap());
    let groups = Groups::load(&h.conn, router, &[Arc::from("mail")]).unwrap();
    assert_eq!(groups.size(), (0, 0));
    let rows: i64 = h
        .conn
        .query_one(
            "SELECT count(*) FROM group_members",
            crate::store::params![],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 0);
}

#[test]
fn repeats_wait_while_the_group_has_an_undelivered_notification() {
    let mut h = Harness::new(CONFIG);
    let undelivered = Undelivered::default();
    h.groups.set_undelivered(undelivered.clone());
    h.submit(firing("fuel_drain", 1), secs(0));
    let first = h.run(0, 10);
    assert_eq!(first.len(), 1);
    let key = first[0].1.group_key.clone();
    undelivered.add("ops", &key);
    // The receiver is down past repeat_interval: no repeat piles up behind it.
    let four_hours = 4 * 3600;
    let sent: Vec<_> = (70..=four_hours + 600)
        .step_by(60)
        .flat_map(|s| h.tick(secs(s)))
        .collect();
    assert!(sent.is_empty());
    // Delivered at last: the repeat goes out at the next flush.
    undelivered.done("ops", &key);
    let sent = h.run(four_hours + 601, four_hours + 700);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.reason, "repeat");
}

#[test]
fn a_member_written_with_its_alerts_json_made_once_reads_as_before() {
    let mut m = Member::new(Arc::new(firing("speeding", 1)));
    m.told_firing_at = Some(secs(60));
    m.changes = 3;
    m.sent = vec![secs(60), secs(120)];
    let mut json = AlertJson::default();
    let once = row_json(&m, Some(json.of(&m.alert).unwrap())).unwrap();
    assert_eq!(once, member_row(&m).unwrap());
    let row: StoredMember = store::from_json("a group member", &once).unwrap();
    let back = row.into_member(None).unwrap();
    assert_eq!(back.alert, m.alert);
    assert_eq!(back.told_firing_at, m.told_firing_at);
    assert_eq!(back.changes, 3);
    assert_eq!(back.sent, m.sent);
}

#[test]
fn a_firing_again_with_a_later_start_is_stored_with_the_first_start_everywhere() {
    let mut h = Harness::new(CONFIG);
    let t = firing("fuel_drain", 1);
    h.submit(t.clone(), secs(0));
    let mut again = t.clone();
    again.starts_at = secs(60);
    again.at = secs(60);
    h.submit(again, secs(60));
    let live = store::load_live_alert(&h.conn, &t.fingerprint)
        .unwrap()
        .unwrap();
    assert_eq!(live.starts_at, t0());
    assert_eq!(live.at, secs(60));
    let router = Arc::new(Router::new(&config(CONFIG)).unwrap());
    h.groups = Groups::load(&h.conn, router, &[Arc::from("ops")]).unwrap();
    let member = h.groups.groups.values().next().unwrap().members[&t.fingerprint].clone();
    assert_eq!(*member.alert, live);
}

/// The member rows of a group, by fingerprint, as JSON values.
fn member_rows(h: &Harness) -> BTreeMap<String, serde_json::Value> {
    store::load_groups(&h.conn)
        .unwrap()
        .into_iter()
        .flat_map(|g| g.members)
        .map(|(fp, json)| (fp, serde_json::from_str(&json).unwrap()))
        .collect()
}

#[test]
fn a_firing_members_row_leaves_its_alert_to_the_live_row_and_a_load_takes_it_back() {
    let mut h = Harness::new(CONFIG);
    let t = firing("fuel_drain", 1);
    h.submit(t.clone(), secs(0));
    assert_eq!(h.run(0, 10).len(), 1);
    let rows = member_rows(&h);
    let row = &rows[&t.fingerprint.0];
    assert!(row.get("alert").is_none(), "{row}");
    assert_eq!(row["changes"], 0);
    assert_eq!(row["told_firing_at"], "2026-01-01T10:00:10Z");

    let router = Arc::new(Router::new(&config(CONFIG)).unwrap());
    h.groups = Groups::load(&h.conn, router, &[Arc::from("ops")]).unwrap();
    let member = &h.groups.groups.values().next().unwrap().members[&t.fingerprint];
    assert_eq!(*member.alert, t);
    assert_eq!(member.told_firing_at, Some(secs(10)));
    // Resolved, the live row goes and the member's row holds the resolve itself.
    let r = resolved(&t, secs(20));
    h.submit(r.clone(), secs(20));
    let rows = member_rows(&h);
    let stored: AlertTransition =
        serde_json::from_value(rows[&t.fingerprint.0]["alert"].clone()).unwrap();
    assert_eq!(stored, r);
    let router = Arc::new(Router::new(&config(CONFIG)).unwrap());
    h.groups = Groups::load(&h.conn, router, &[Arc::from("ops")]).unwrap();
    let sent = h.run(21, 80);
    assert_eq!(sent.len(), 1);
    assert_eq!(trackers(&sent[0].1), [(1, "resolved")]);
}

#[test]
fn a_member_whose_alert_is_not_the_live_one_writes_its_own() {
    let mut h = Harness::new(CONFIG);
    let t = firing("fuel_drain", 1);
    h.submit(t.clone(), secs(0));
    assert!(member_rows(&h)[&t.fingerprint.0].get("alert").is_none());
    // A newer firing that did not reach this group (its routes changed).
    let mut newer = t.clone();
    newer.at = secs(5);
    let tx = h.conn.transaction().unwrap();
    h.groups.share_live_alert(&Arc::new(newer), &[]).unwrap();
    h.groups.write(&tx).unwrap();
    tx.commit().unwrap();
    let rows = member_rows(&h);
    let stored: AlertTransition =
        serde_json::from_value(rows[&t.fingerprint.0]["alert"].clone()).unwrap();
    assert_eq!(stored, t);
}

#[test]
fn a_member_without_its_alert_and_no_live_row_is_dropped_on_load() {
    let mut h = Harness::new(CONFIG);
    let t = firing("fuel_drain", 1);
    h.submit(t.clone(), secs(0));
    h.conn
        .execute("DELETE FROM live_alerts", crate::store::params![])
        .unwrap();
    let router = Arc::new(Router::new(&config(CONFIG)).unwrap());
    h.groups = Groups::load(&h.conn, router, &[Arc::from("ops")]).unwrap();
    assert_eq!(h.groups.size().1, 0);
    assert!(member_rows(&h).is_empty());
}

#[test]
fn a_transition_is_shared_by_its_member_and_its_notification_not_copied() {
    let mut h = Harness::new(CONFIG);
    let t = firing("fuel_drain", 1);
    h.submit(t.clone(), secs(0));
    let sent = h.run(0, 10);
    assert_eq!(sent.len(), 1);
    let member = &h.groups.groups.values().next().unwrap().members[&t.fingerprint];
    assert_eq!(*member.alert, t);
    assert!(Arc::ptr_eq(&member.alert, &sent[0].1.alerts[0]));
    // A newer transition of the alert (a repeated firing, its start corrected to the
    // first one's) replaces the member's, and leaves the notification already made as
    // it was: shared is never changed in place.
    let mut again = t.clone();
    again.starts_at = secs(30);
    again.at = secs(30);
    h.submit(again, secs(30));
    let member = &h.groups.groups.values().next().unwrap().members[&t.fingerprint];
    assert_eq!((member.alert.starts_at, member.alert.at), (t0(), secs(30)));
    assert!(!Arc::ptr_eq(&member.alert, &sent[0].1.alerts[0]));
    assert_eq!(*sent[0].1.alerts[0], t);
}
