//! Fixtures for the stages' unit tests, and the composition: the order of the stages as
//! the groups drive them, seen through the history sink.

use std::sync::Arc;
use std::time::Duration;

use crate::store::Conn;
use chrono::{DateTime, Utc};

use super::*;
use crate::dispatch::group::Groups;
use crate::dispatch::testing::{config, firing, resolved, t0};
use crate::store::{NewSilence, SilenceMatcher};

pub(crate) fn secs(n: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(n)
}

/// Settings with a one-hour repeat.
pub(crate) fn settings() -> Settings {
    Settings {
        group_by: vec!["rule".into()],
        group_wait: Duration::from_secs(10),
        group_interval: Duration::from_secs(60),
        repeat_interval: Duration::from_secs(3600),
        send_resolved: true,
        mute_time_intervals: Vec::new(),
        active_time_intervals: Vec::new(),
    }
}

/// A flush of the group `ops`/`g` at `now`.
pub(crate) fn flush_of<'a>(
    conn: &'a Conn,
    settings: &'a Settings,
    now: DateTime<Utc>,
    undelivered: bool,
) -> Flush<'a> {
    let group: &'static GroupId = Box::leak(Box::new(GroupId::new("ops", "g")));
    Flush {
        conn,
        now,
        group,
        settings,
        undelivered,
        links: None,
    }
}

pub(crate) fn member(t: AlertTransition) -> Member {
    Member::new(Arc::new(t))
}

pub(crate) fn candidate_of(member: &mut Member, need: Need) -> Candidate<'_> {
    Candidate {
        member,
        need,
        dirty: false,
    }
}

/// Stores a silence; returns its id. The caller bumps the generation it refreshes with.
pub(crate) fn add_silence(
    conn: &Conn,
    matchers: Vec<SilenceMatcher>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> String {
    let s = NewSilence {
        matchers,
        starts_at: Some(from),
        ends_at: to,
        created_by: String::new(),
        comment: String::new(),
    }
    .into_silence(from)
    .unwrap();
    conn.execute(
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
    s.id
}

/// `(stage, decision, channel, tracker)`.
type Step = (String, String, String, i64);

/// A history sink that keeps a [`Step`] per record; clones share it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Recorder(Arc<parking_lot::Mutex<Vec<Step>>>);

impl Recorder {
    pub fn decisions(&self) -> Vec<String> {
        self.0.lock().iter().map(|r| r.1.clone()).collect()
    }

    pub fn take(&self) -> Vec<Step> {
        std::mem::take(&mut *self.0.lock())
    }
}

impl History for Recorder {
    fn record(&mut self, r: &DeliveryRecord<'_>) {
        self.0.lock().push((
            r.decision.stage().to_owned(),
            r.decision.as_str().to_owned(),
            r.channel.unwrap_or("-").to_owned(),
            r.alert.tracker.as_ref().map_or(0, |t| t.id),
        ));
    }
}

const CONFIG: &str = r#"
channels:
  ops: { type: stdout }
routes:
  - match: { rule: lost }
    channels: []
  - channels: [ops]
notify: { group_by: [rule], group_wait: 10s, group_interval: 1m, repeat_interval: 4h }
"#;

struct Harness {
    conn: Conn,
    groups: Groups,
    history: Recorder,
    generation: u64,
}

impl Harness {
    fn new() -> Harness {
        let router = Arc::new(Router::new(&config(CONFIG)).unwrap());
        let history = Recorder::default();
        let mut groups = Groups::new(router);
        groups.set_history(Box::new(history.clone()));
        Harness {
            conn: store::test_connection(),
            groups,
            history,
            generation: 0,
        }
    }

    fn at(&mut self, t: Option<AlertTransition>, now: DateTime<Utc>) -> usize {
        let tx = self.conn.transaction().unwrap();
        if let Some(t) = t {
            self.groups.apply(&tx, t, now).unwrap();
        }
        let mut out = Vec::new();
        self.groups
            .flush_due(&tx, now, self.generation, &mut out)
            .unwrap();
        tx.commit().unwrap();
        out.len()
    }

    /// Silences the trackers whose id matches `ids` (a regex).
    fn silence_trackers(&mut self, ids: &str, from: i64, to: i64) {
        let m = SilenceMatcher {
            name: "tracker_id".into(),
            value: ids.to_owned(),
            is_regex: true,
            is_equal: true,
        };
        add_silence(&self.conn, vec![m], secs(from), secs(to));
        self.generation += 1;
    }

    /// `stage:decision:tracker` for every record since the last call.
    fn steps(&self) -> Vec<String> {
        self.history
            .take()
            .into_iter()
            .map(|(stage, decision, _, tracker)| format!("{stage}:{decision}:{tracker}"))
            .collect()
    }
}

#[test]
fn every_stage_reports_what_it_did_to_each_alert() {
    let mut h = Harness::new();
    let one = firing("fuel_drain", 1);
    h.at(Some(one.clone()), secs(0));
    h.at(Some(firing("lost", 9)), secs(1));
    assert_eq!(h.steps(), ["group:grouped:1", "route:unrouted:9"]);

    assert_eq!(h.at(None, secs(10)), 1);
    assert_eq!(h.steps(), ["outbox:queued:1"]);
    // Told: the next flushes have nothing to say about it.
    assert_eq!(h.at(None, secs(70)), 0);
    assert_eq!(h.steps(), ["dedup:deduped:1"]);

    h.at(Some(resolved(&one, secs(80))), secs(80));
    assert_eq!(h.steps(), ["group:grouped:1"]);
    assert_eq!(h.at(None, secs(130)), 1);
    assert_eq!(h.steps(), ["outbox:queued:1"]);
}

#[test]
fn dedup_comes_before_the_silence_and_the_silence_before_the_flap_cap() {
    let mut h = Harness::new();
    h.at(Some(firing("fuel_drain", 1)), secs(0));
    h.at(None, secs(10));
    h.steps();
    // Told and not due for a repeat: a silence changes nothing and is not logged.
    h.silence_trackers("1|2", 20, 100_000);
    h.at(Some(firing("fuel_drain", 2)), secs(30));
    assert_eq!(h.steps(), ["group:grouped:2"]);
    assert_eq!(h.at(None, secs(70)), 0);
    let mut steps = h.steps();
    steps.sort();
    assert_eq!(steps, ["dedup:deduped:1", "silence:silenced:2"]);
    let silenced: Vec<_> = store::recent_log(&h.conn, 100)
        .unwrap()
        .into_iter()
        .filter(|e| e.outcome == Outcome::Silenced)
        .map(|e| e.tracker_id)
        .collect();
    assert_eq!(silenced, [Some(2)]);
}

#[test]
fn a_flapping_alert_is_capped_after_the_muting_stages() {
    let mut h = Harness::new();
    let t = firing("fuel_drain", 1);
    // Fire and resolve, each flushed: six notifications within the hour.
    let mut now = 0;
    for i in 0..6 {
        let change = if i % 2 == 0 {
            t.clone()
        } else {
            resolved(&t, secs(now))
        };
        h.at(Some(change), secs(now));
        now += 60;
        assert_eq!(h.at(None, secs(now)), 1, "notification {i}");
    }
    h.steps();
    h.at(Some(t.clone()), secs(now));
    h.at(None, secs(now + 60));
    assert_eq!(h.steps(), ["group:grouped:1", "flap:flap-capped:1"]);
    // Silenced as well: the silence says so, the cap is not reached.
    h.silence_trackers("1", now + 60, 100_000);
    h.at(None, secs(now + 120));
    assert_eq!(h.steps(), ["silence:silenced:1"]);
}
