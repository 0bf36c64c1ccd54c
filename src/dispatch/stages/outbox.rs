//! The outbox stage, last of a flush: one notification with every member that got
//! through the stages, written to the outbox in the flush's transaction. From there the
//! channel's sender ([`crate::dispatch::outbox`]) delivers it.
//!
//! Firing alerts come first, then resolved ones, each part in fingerprint order. Each
//! member now believes what the notification says: firing since now, or nothing. The
//! notification carries each alert's ack in force, and each firing alert's ack link when
//! links are made.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Decision, Flush, History, Need};
use crate::alert::{AlertStatus, AlertTransition, Fingerprint};
use crate::dispatch::group::{Member, Queued};
use crate::dispatch::notification::{Notification, NotificationKind};
use crate::store::{self, Outcome, StoreError};

/// Writes the notification for `picked` (sorted here) and updates their members;
/// `first`: the group has never notified. Every member it touches is added to `dirty`.
pub(crate) fn queue(
    f: &Flush<'_>,
    labels: &BTreeMap<String, String>,
    first: bool,
    members: &mut BTreeMap<Fingerprint, Member>,
    picked: &mut [(Fingerprint, Need)],
    dirty: &mut Vec<Fingerprint>,
    history: &mut dyn History,
) -> Result<Queued, StoreError> {
    picked.sort_by_key(|(fp, need)| (*need == Need::Resolve, fp.clone()));
    let reason = reason(first, members, picked);
    let alerts: Vec<Arc<AlertTransition>> = picked
        .iter()
        .filter_map(|(fp, _)| members.get(fp).map(|m| Arc::clone(&m.alert)))
        .collect();
    let status = if alerts.iter().any(|a| a.status == AlertStatus::Firing) {
        AlertStatus::Firing
    } else {
        AlertStatus::Resolved
    };
    let mut acks = BTreeMap::new();
    let mut ack_urls = BTreeMap::new();
    for a in &alerts {
        if a.status != AlertStatus::Firing {
            continue;
        }
        if let Some(ack) = store::active_ack(f.conn, &a.fingerprint, f.now)? {
            acks.insert(a.fingerprint.0.clone(), ack);
        }
        if let Some(links) = f.links {
            ack_urls.insert(a.fingerprint.0.clone(), links.url(a, f.now));
        }
    }
    let id = f.group;
    let notification = Notification {
        id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
        receiver: id.channel.to_string(),
        group_key: id.key.to_string(),
        group_labels: labels.clone(),
        status,
        reason,
        created_at: f.now,
        alerts,
        kind: NotificationKind::Alerts,
        acks,
        ack_urls,
    };
    let seq = store::insert_outbox(
        f.conn,
        &notification.id,
        &id.channel,
        &id.key,
        f.now,
        &store::to_json("a notification", &notification)?,
    )?;
    for (fp, _) in picked.iter() {
        let Some(m) = members.get_mut(fp) else {
            continue;
        };
        f.log(&m.alert, Outcome::Queued, Some(&notification.id), None)?;
        history.record(&f.record(
            &m.alert,
            Decision::Queued {
                notification: &notification.id,
            },
        ));
        m.told_firing_at = match m.alert.status {
            AlertStatus::Firing => Some(f.now),
            AlertStatus::Resolved => None,
        };
        m.changes = 0;
        m.sent.push(f.now);
        dirty.push(fp.clone());
    }
    Ok(Queued {
        seq,
        notification: Arc::new(notification),
    })
}

/// Why a notification goes out, for humans: `first notification`, else the kinds of
/// change in it; plus a note when flap damping held back state changes.
fn reason(
    first: bool,
    members: &BTreeMap<Fingerprint, Member>,
    picked: &[(Fingerprint, Need)],
) -> String {
    let mut text = if first {
        "first notification".to_owned()
    } else {
        let mut parts = Vec::new();
        for (need, word) in [
            (Need::New, "new alerts"),
            (Need::Resolve, "resolved"),
            (Need::Repeat, "repeat"),
        ] {
            if picked.iter().any(|(_, n)| *n == need) {
                parts.push(word);
            }
        }
        parts.join(", ")
    };
    let (flapping, changes) = picked
        .iter()
        .filter_map(|(fp, _)| members.get(fp))
        .filter(|m| m.changes > 1)
        .fold((0u32, 0u32), |(n, c), m| (n + 1, c + m.changes));
    if flapping > 0 {
        let alerts = if flapping == 1 { "alert" } else { "alerts" };
        text.push_str(&format!(
            "; flapping: {flapping} {alerts} changed state {changes} times since last notified"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::stages::tests::{Recorder, flush_of, member, secs, settings};
    use crate::dispatch::testing::{firing, resolved};

    fn members(ts: Vec<AlertTransition>) -> BTreeMap<Fingerprint, Member> {
        ts.into_iter()
            .map(|t| (t.fingerprint.clone(), member(t)))
            .collect()
    }

    #[test]
    fn the_reason_names_the_kinds_of_change_and_the_damped_flapping() {
        let mut ms = members(vec![firing("a", 1), firing("a", 2), firing("a", 3)]);
        let fps: Vec<Fingerprint> = ms.keys().cloned().collect();
        let picked = |needs: &[Need]| -> Vec<(Fingerprint, Need)> {
            fps.iter().cloned().zip(needs.iter().copied()).collect()
        };
        assert_eq!(
            reason(true, &ms, &picked(&[Need::Repeat])),
            "first notification"
        );
        assert_eq!(
            reason(
                false,
                &ms,
                &picked(&[Need::Repeat, Need::Resolve, Need::New])
            ),
            "new alerts, resolved, repeat"
        );
        ms.get_mut(&fps[0]).unwrap().changes = 3;
        ms.get_mut(&fps[1]).unwrap().changes = 2;
        assert_eq!(
            reason(false, &ms, &picked(&[Need::New, Need::New])),
            "new alerts; flapping: 2 alerts changed state 5 times since last notified"
        );
        assert_eq!(
            reason(false, &ms, &picked(&[Need::Resolve])),
            "resolved; flapping: 1 alert changed state 3 times since last notified"
        );
    }

    #[test]
    fn one_notification_firing_first_is_written_and_its_members_told() {
        let conn = store::test_connection();
        let s = settings();
        let f = flush_of(&conn, &s, secs(60), false);
        let fired = firing("a", 1);
        let mut ms = members(vec![resolved(&fired, secs(30)), firing("a", 2)]);
        for m in ms.values_mut() {
            m.told_firing_at = (m.alert.status == AlertStatus::Resolved).then(|| secs(0));
        }
        let mut picked: Vec<(Fingerprint, Need)> = vec![
            (fired.fingerprint.clone(), Need::Resolve),
            (firing("a", 2).fingerprint, Need::New),
        ];
        let labels = BTreeMap::from([("rule".to_owned(), "a".to_owned())]);
        let mut dirty = Vec::new();
        let mut history = Recorder::default();
        let q = queue(
            &f,
            &labels,
            false,
            &mut ms,
            &mut picked,
            &mut dirty,
            &mut history,
        )
        .unwrap();

        let n = &q.notification;
        assert_eq!(n.status, AlertStatus::Firing);
        assert_eq!(n.reason, "new alerts, resolved");
        assert_eq!(n.created_at, secs(60));
        assert_eq!(n.group_labels, labels);
        let order: Vec<_> = n
            .alerts
            .iter()
            .map(|a| (a.tracker.as_ref().unwrap().id, a.status.as_str()))
            .collect();
        assert_eq!(order, [(2, "firing"), (1, "resolved")]);
        let pending = store::load_pending(&conn).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].seq, q.seq);
        assert_eq!(pending[0].id, n.id);

        let told: Vec<_> = ms
            .values()
            .map(|m| (m.told_firing_at, m.sent.clone()))
            .collect();
        assert!(told.contains(&(Some(secs(60)), vec![secs(60)])));
        assert!(told.contains(&(None, vec![secs(60)])));
        assert_eq!(dirty.len(), 2);
        assert_eq!(history.decisions(), ["queued", "queued"]);
        let log = store::recent_log(&conn, 10).unwrap();
        assert!(
            log.iter().all(|e| e.outcome == Outcome::Queued
                && e.notification_id.as_deref() == Some(n.id.as_str()))
        );
    }
}
