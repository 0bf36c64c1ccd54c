//! Dedup and repeat: what the channel has not heard about an alert. A firing alert is
//! told once, then again every `repeat_interval`; a resolve is told once, and only to a
//! channel that was told the alert fired. An acknowledged alert gets no repeat while its
//! ack is in force. Whatever the channel already knows goes no further. An occurrence of
//! an event rule is always new: it leaves its group once told (see
//! [`group`](crate::dispatch::group)), so it never repeats and never resolves.

use chrono::{DateTime, Utc};

use super::{Decision, Flush, History, elapsed};
use crate::alert::AlertStatus;
use crate::dispatch::group::Member;
use crate::dispatch::routes::Settings;
use crate::store::{self, StoreError};

/// What a notification tells the channel about an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// Firing, and the channel has not been told.
    New,
    /// Firing, told, and `repeat_interval` has passed since.
    Repeat,
    /// Resolved while the channel believes it firing.
    Resolve,
}

/// What the channel knows of an alert, as dedup sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum News {
    Tell(Need),
    /// Told it is firing; no repeat is due.
    Known,
    /// A repeat is due, but the group's last notification is still being delivered.
    RepeatWaits,
    /// Resolved, and the channel does not believe it firing: nothing to say ever again.
    Nothing,
}

/// Classifies a member. `undelivered`: the group has a notification still being
/// retried; a repeat would only queue behind it (a long outage would end in a burst of
/// stale repeats), so it waits for the first flush after the delivery.
pub(crate) fn news(m: &Member, settings: &Settings, undelivered: bool, now: DateTime<Utc>) -> News {
    match (m.alert.status, m.told_firing_at) {
        (AlertStatus::Firing, None) => News::Tell(Need::New),
        (AlertStatus::Firing, Some(at)) if elapsed(at, now) < settings.repeat_interval => {
            News::Known
        }
        (AlertStatus::Firing, Some(_)) if undelivered => News::RepeatWaits,
        (AlertStatus::Firing, Some(_)) => News::Tell(Need::Repeat),
        (AlertStatus::Resolved, Some(_)) => News::Tell(Need::Resolve),
        (AlertStatus::Resolved, None) => News::Nothing,
    }
}

/// The stage: the member's news, if any; what the channel already knows is recorded
/// (not logged: the log says what happened, not what did not).
pub(crate) fn exec(
    f: &Flush<'_>,
    m: &Member,
    history: &mut dyn History,
) -> Result<Option<Need>, StoreError> {
    let decision = match news(m, f.settings, f.undelivered, f.now) {
        News::Tell(Need::Repeat)
            if store::active_ack(f.conn, &m.alert.fingerprint, f.now)?.is_some() =>
        {
            Decision::Acknowledged
        }
        News::Tell(need) => return Ok(Some(need)),
        News::Nothing => return Ok(None),
        News::Known => Decision::Deduped,
        News::RepeatWaits => Decision::RepeatWaits,
    };
    history.record(&f.record(&m.alert, decision));
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::stages::tests::{Recorder, flush_of, member, secs, settings};
    use crate::dispatch::testing::{firing, resolved};

    #[test]
    fn a_firing_alert_is_new_until_told_then_known_until_the_repeat_interval() {
        let s = settings();
        let mut m = member(firing("fuel_drain", 1));
        assert_eq!(news(&m, &s, false, secs(0)), News::Tell(Need::New));
        // Undelivered notifications do not hold back a new alert.
        assert_eq!(news(&m, &s, true, secs(0)), News::Tell(Need::New));
        m.told_firing_at = Some(secs(0));
        assert_eq!(news(&m, &s, false, secs(3599)), News::Known);
        assert_eq!(news(&m, &s, false, secs(3600)), News::Tell(Need::Repeat));
        assert_eq!(news(&m, &s, true, secs(3600)), News::RepeatWaits);
    }

    #[test]
    fn a_resolve_is_news_only_to_a_channel_told_it_fired() {
        let s = settings();
        let t = firing("fuel_drain", 1);
        let mut m = member(resolved(&t, secs(5)));
        assert_eq!(news(&m, &s, false, secs(10)), News::Nothing);
        m.told_firing_at = Some(secs(0));
        assert_eq!(news(&m, &s, false, secs(10)), News::Tell(Need::Resolve));
        assert_eq!(news(&m, &s, true, secs(10)), News::Tell(Need::Resolve));
    }

    #[test]
    fn what_the_channel_knows_is_recorded_not_logged() {
        let conn = crate::store::test_connection();
        let s = settings();
        let mut history = Recorder::default();
        let mut m = member(firing("fuel_drain", 1));
        let f = flush_of(&conn, &s, secs(60), true);
        assert_eq!(exec(&f, &m, &mut history).unwrap(), Some(Need::New));
        m.told_firing_at = Some(secs(0));
        assert_eq!(exec(&f, &m, &mut history).unwrap(), None);
        let f = flush_of(&conn, &s, secs(3600), true);
        assert_eq!(exec(&f, &m, &mut history).unwrap(), None);
        assert_eq!(history.decisions(), ["deduped", "repeat-waits"]);
        assert!(crate::store::recent_log(&conn, 10).unwrap().is_empty());
    }
}
