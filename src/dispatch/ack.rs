//! Acknowledgement, as delivery sees it: the signed ack links notifications carry, and
//! the notification a `send_acks` channel gets when an alert it heard of is acknowledged.
//!
//! The ack itself is made through the admin API or a link and kept by
//! [`crate::store`] (`acks`). Its effects live where they act: dedup holds repeats of an
//! acknowledged alert ([`super::stages::dedup`]), the outbox stage puts each alert's
//! `ack` and `ack_url` in the notification, escalation skips its steps
//! ([`super::escalation`]), and a resolve ends it ([`super::group`]).
//!
//! # Ack links
//! `{external_url}/ack/{fingerprint}.{starts_at ms}.{expires ms}.{signature}`: the
//! signature is HMAC-SHA256, under a key kept in the store, of the three fields before
//! it, base64url. The link names one firing (a later firing of the same alert is another
//! alert, which the link cannot acknowledge) and expires [`LINK_LIFETIME`] after the
//! notification was decided.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::group::after;
use super::notification::{Notification, NotificationKind};
use crate::alert::{Ack, AlertTransition, Fingerprint};
use crate::store::from_ms;

/// How long an ack link works.
pub const LINK_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// What signs and checks ack links: the server's external URL and the store's key.
#[derive(Clone)]
pub struct AckLinks {
    /// `server.external_url` without a trailing `/`.
    base: String,
    key: Arc<[u8]>,
}

impl std::fmt::Debug for AckLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckLinks")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// What a valid link names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkClaims {
    pub fingerprint: Fingerprint,
    /// When the firing it acknowledges started.
    pub starts_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Why a link is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this link is not a valid acknowledgement link")]
    Forged,
    #[error("this link has expired")]
    Expired,
}

impl AckLinks {
    pub fn new(external_url: &str, key: &[u8]) -> AckLinks {
        AckLinks {
            base: external_url.trim().trim_end_matches('/').to_owned(),
            key: Arc::from(key),
        }
    }

    fn sign(&self, payload: &str) -> String {
        // HMAC takes a key of any length: this cannot fail.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(payload.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// The token of a link to acknowledge `t`'s firing, valid until [`LINK_LIFETIME`]
    /// after `now`.
    pub fn token(&self, t: &AlertTransition, now: DateTime<Utc>) -> String {
        let expires = after(now, LINK_LIFETIME);
        let payload = format!(
            "{}.{}.{}",
            t.fingerprint.0,
            t.starts_at.timestamp_millis(),
            expires.timestamp_millis()
        );
        let signature = self.sign(&payload);
        format!("{payload}.{signature}")
    }

    /// The link to acknowledge `t`'s firing.
    pub fn url(&self, t: &AlertTransition, now: DateTime<Utc>) -> String {
        format!("{}/ack/{}", self.base, self.token(t, now))
    }

    /// What a token names, if it was signed with this key and has not expired at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<LinkClaims, LinkError> {
        let (payload, signature) = token.rsplit_once('.').ok_or(LinkError::Forged)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| LinkError::Forged)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).map_err(|_| LinkError::Forged)?;
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| LinkError::Forged)?;
        let mut parts = payload.split('.');
        let (Some(fp), Some(starts), Some(expires), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(LinkError::Forged);
        };
        let ms = |s: &str| s.parse::<i64>().map(from_ms).map_err(|_| LinkError::Forged);
        let claims = LinkClaims {
            fingerprint: Fingerprint(fp.to_owned()),
            starts_at: ms(starts)?,
            expires_at: ms(expires)?,
        };
        if now >= claims.expires_at {
            return Err(LinkError::Expired);
        }
        Ok(claims)
    }
}

/// The notification telling channel `receiver` (in its group `group_key`) that `alert`
/// was acknowledged: a new id, `status: firing`, the alert with its ack.
pub(crate) fn notification(
    receiver: &str,
    group_key: &str,
    alert: &AlertTransition,
    ack: &Ack,
    now: DateTime<Utc>,
) -> Notification {
    let reason = match ack.comment.as_str() {
        "" => format!("acknowledged by {}", ack.by),
        comment => format!("acknowledged by {}: {comment}", ack.by),
    };
    Notification {
        id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
        receiver: receiver.to_owned(),
        group_key: group_key.to_owned(),
        group_labels: Default::default(),
        status: alert.status,
        reason,
        created_at: now,
        alerts: vec![Arc::new(alert.clone())],
        kind: NotificationKind::Acknowledged,
        acks: [(alert.fingerprint.0.clone(), ack.clone())].into(),
        ack_urls: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::testing::{firing, t0};

    fn links() -> AckLinks {
        AckLinks::new(
            "https://alerts.example.com/",
            b"0123456789abcdef0123456789abcdef",
        )
    }

    #[test]
    fn a_link_names_the_firing_and_expires_after_a_day() {
        let t = firing("fuel_drain", 7);
        let url = links().url(&t, t0());
        let token = url.strip_prefix("https://alerts.example.com/ack/").unwrap();
        let claims = links().verify(token, t0()).unwrap();
        assert_eq!(claims.fingerprint, t.fingerprint);
        assert_eq!(claims.starts_at, t.starts_at);
        assert_eq!(claims.expires_at, t0() + chrono::Duration::hours(24));
        let late = t0() + chrono::Duration::hours(24);
        assert_eq!(links().verify(token, late), Err(LinkError::Expired));
    }

    #[test]
    fn a_changed_or_foreign_link_is_refused() {
        let t = firing("fuel_drain", 7);
        let token = links().token(&t, t0());
        let other = AckLinks::new("https://alerts.example.com", b"another key");
        assert_eq!(other.verify(&token, t0()), Err(LinkError::Forged));
        // A later expiry with the old signature.
        let (fields, signature) = token.rsplit_once('.').unwrap();
        let (head, expires) = fields.rsplit_once('.').unwrap();
        let longer: i64 = expires.parse::<i64>().unwrap() + 3_600_000;
        let forged = format!("{head}.{longer}.{signature}");
        assert_eq!(links().verify(&forged, t0()), Err(LinkError::Forged));
        for junk in ["", "x", "a.b.c.d", "....", "%00"] {
            assert_eq!(links().verify(junk, t0()), Err(LinkError::Forged));
        }
    }
}
