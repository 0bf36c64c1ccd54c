//! The REST calls the source needs: `user/auth` (login + password -> session hash)
//! and `tracker/list` (tracker ids, labels and the source id each one's states carry);
//! and those that read Navixy's context (zones and their points, groups, tags,
//! employees; the types are in [`super::context`]).
//!
//! Navixy answers errors as `{"success":false,"status":{"code":N,"description":"..."}}`,
//! often with a non-2xx HTTP status; [`RestError`] keeps the code typed so the caller can
//! tell a bad hash (renew the session or say so) from a rate limit (back off) from a
//! network hiccup (retry). Hashes and passwords never appear in an error or a log line.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;

use super::messages::TrackerInfo;
use crate::config::Secret;

use super::context::{
    Employee, ListAnswer, Listed, NavixyZone, Tag, TrackerBindings, TrackerGroup, ZonePoint,
};
use super::messages::TrackerList;

/// Navixy's API error codes that change what the source does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NavixyErrorCode {
    /// 3: the hash is not a valid hash.
    WrongHash,
    /// 4: user or API key not found, or the session ended.
    SessionEnded,
    /// 7: invalid parameters.
    InvalidParameters,
    /// 11: access denied.
    AccessDenied,
    /// 15: too many requests (REST allows 50 per second per user).
    TooManyRequests,
    /// 208: the device is blocked.
    DeviceBlocked,
    /// Any other code.
    Other(i64),
}

impl NavixyErrorCode {
    pub fn from_code(code: i64) -> Self {
        match code {
            3 => NavixyErrorCode::WrongHash,
            4 => NavixyErrorCode::SessionEnded,
            7 => NavixyErrorCode::InvalidParameters,
            11 => NavixyErrorCode::AccessDenied,
            15 => NavixyErrorCode::TooManyRequests,
            208 => NavixyErrorCode::DeviceBlocked,
            other => NavixyErrorCode::Other(other),
        }
    }

    pub fn code(self) -> i64 {
        match self {
            NavixyErrorCode::WrongHash => 3,
            NavixyErrorCode::SessionEnded => 4,
            NavixyErrorCode::InvalidParameters => 7,
            NavixyErrorCode::AccessDenied => 11,
            NavixyErrorCode::TooManyRequests => 15,
            NavixyErrorCode::DeviceBlocked => 208,
            NavixyErrorCode::Other(code) => code,
        }
    }

    /// The hash (or session) is not accepted: renewing it, or a human, must fix it.
    pub fn is_auth(self) -> bool {
        matches!(
            self,
            NavixyErrorCode::WrongHash | NavixyErrorCode::SessionEnded
        )
    }

    /// What the user should check, for error messages.
    pub fn hint(self) -> &'static str {
        match self {
            NavixyErrorCode::WrongHash => {
                "the hash is not valid: check source.navixy.hash (an API key or session hash of 32 characters)"
            }
            NavixyErrorCode::SessionEnded => {
                "the API key or user was not found, or the session ended: check source.navixy.hash, or set login and password so that the session can be renewed"
            }
            NavixyErrorCode::InvalidParameters => "Navixy rejected the request's parameters",
            NavixyErrorCode::AccessDenied => {
                "access denied: the user may not use this call or these trackers"
            }
            NavixyErrorCode::TooManyRequests => "too many requests: backing off",
            NavixyErrorCode::DeviceBlocked => "the device is blocked",
            NavixyErrorCode::Other(_) => "Navixy refused the request",
        }
    }
}

/// A REST call that failed.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// Navixy answered with an error status.
    #[error("Navixy {call}: error {} ({description}): {}", code.code(), code.hint())]
    Navixy {
        call: &'static str,
        code: NavixyErrorCode,
        description: String,
    },
    /// HTTP 429 (or code 15): wait at least `retry_after` when the server said so.
    #[error("Navixy {call}: too many requests (HTTP 429)")]
    RateLimited {
        call: &'static str,
        retry_after: Option<Duration>,
    },
    /// A non-2xx answer without a Navixy error body.
    #[error("Navixy {call}: HTTP {status}")]
    Http {
        call: &'static str,
        status: StatusCode,
    },
    /// The answer was not the JSON Navixy sends.
    #[error("Navixy {call}: unexpected answer: {message}")]
    InvalidResponse { call: &'static str, message: String },
    /// Connecting, TLS, a timeout, or reading the body.
    #[error("Navixy {call}: {source}")]
    Transport {
        call: &'static str,
        #[source]
        source: reqwest::Error,
    },
}

impl RestError {
    /// The Navixy code, when Navixy gave one.
    pub fn navixy_code(&self) -> Option<NavixyErrorCode> {
        match self {
            RestError::Navixy { code, .. } => Some(*code),
            RestError::RateLimited { .. } => Some(NavixyErrorCode::TooManyRequests),
            _ => None,
        }
    }

    /// The hash or the login was refused (codes 3 and 4).
    pub fn is_auth(&self) -> bool {
        self.navixy_code().is_some_and(NavixyErrorCode::is_auth)
    }

    /// How long the server asked us to wait, for rate limits.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RestError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn is_rate_limited(&self) -> bool {
        self.navixy_code() == Some(NavixyErrorCode::TooManyRequests)
    }
}

/// Installs the process-wide rustls crypto provider (ring) once. Both the REST client and
/// the WebSocket client build rustls configs, which need one; a second install is a no-op.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A REST client bound to one API base URL (`https://api.eu.navixy.com/v2`).
#[derive(Debug, Clone)]
pub struct RestClient {
    http: reqwest::Client,
    /// Without a trailing slash; calls append `/user/auth` etc.
    base: String,
}

impl RestClient {
    /// A client for `api_url`; `timeout` bounds each whole call.
    pub fn new(api_url: &str, timeout: Duration) -> Result<RestClient, RestError> {
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("navixy-alerts/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| RestError::Transport {
                call: "client",
                source,
            })?;
        Ok(RestClient {
            http,
            base: api_url.trim_end_matches('/').to_string(),
        })
    }

    /// The API base this client calls.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `user/auth`: a new session hash for a login and password.
    pub async fn auth(&self, login: &str, password: &Secret) -> Result<Secret, RestError> {
        #[derive(Deserialize)]
        struct Auth {
            hash: Option<String>,
        }
        let body = serde_json::json!({ "login": login, "password": password.expose() });
        let auth: Auth = self.call("user/auth", &body).await?;
        match auth.hash {
            Some(hash) if !hash.is_empty() => Ok(Secret::new(hash)),
            _ => Err(RestError::InvalidResponse {
                call: "user/auth",
                message: "success without a hash".into(),
            }),
        }
    }

    /// `tracker/list`: every tracker of the account, as the cache's [`TrackerInfo`].
    pub async fn tracker_list(&self, hash: &Secret) -> Result<Vec<TrackerInfo>, RestError> {
        let body = serde_json::json!({ "hash": hash.expose() });
        let list: TrackerList = self.call("tracker/list", &body).await?;
        Ok(list.list.iter().map(TrackerInfo::from).collect())
    }

    /// `zone/list` with `with_points`: every geofence, with the points of polygons and
    /// sausages when the server includes them (see [`Self::zone_point_list`]).
    pub async fn zone_list(&self, hash: &Secret) -> Result<Listed<NavixyZone>, RestError> {
        let body = serde_json::json!({ "hash": hash.expose(), "with_points": true });
        self.list("zone/list", &body).await
    }

    /// `zone/point/list`: the points of one polygon or sausage (error 201 when the zone
    /// is gone, 230 for a circle).
    pub async fn zone_point_list(
        &self,
        hash: &Secret,
        zone_id: i64,
    ) -> Result<Listed<ZonePoint>, RestError> {
        let body = serde_json::json!({ "hash": hash.expose(), "zone_id": zone_id });
        self.list("zone/point/list", &body).await
    }

    /// `tracker/group/list`: the account's groups (the default group 0 is not listed).
    pub async fn tracker_group_list(
        &self,
        hash: &Secret,
    ) -> Result<Listed<TrackerGroup>, RestError> {
        let body = serde_json::json!({ "hash": hash.expose() });
        self.list("tracker/group/list", &body).await
    }

    /// `tag/list`: every tag of the account.
    pub async fn tag_list(&self, hash: &Secret) -> Result<Listed<Tag>, RestError> {
        let body = serde_json::json!({ "hash": hash.expose() });
        self.list("tag/list", &body).await
    }

    /// `employee/list`: every employee, each with the tracker assigned to them.
    pub async fn employee_list(&self, hash: &Secret) -> Result<Listed<Employee>, RestError> {
        let body = serde_json::json!({ "hash": hash.expose() });
        self.list("employee/list", &body).await
    }

    /// `tracker/list` read for each tracker's group and `tag_bindings`.
    pub async fn tracker_tag_bindings(
        &self,
        hash: &Secret,
    ) -> Result<Listed<TrackerBindings>, RestError> {
        let body = serde_json::json!({ "hash": hash.expose() });
        self.list("tracker/list", &body).await
    }

    /// A `*/list` call whose items are decoded one by one (bad ones skipped, counted).
    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        call: &'static str,
        body: &serde_json::Value,
    ) -> Result<Listed<T>, RestError> {
        let answer: ListAnswer<T> = self.call(call, body).await?;
        Ok(answer.list)
    }

    /// POSTs a JSON body and returns the success body, or the typed error.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        call: &'static str,
        body: &serde_json::Value,
    ) -> Result<T, RestError> {
        let url = format!("{}/{call}", self.base);
        let response = self
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .map_err(|source| RestError::Transport {
                call,
                // The URL may carry credentials (`user:password@`); the call names it.
                source: source.without_url(),
            })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response
            .bytes()
            .await
            .map_err(|source| RestError::Transport {
                call,
                // The URL may carry credentials (`user:password@`); the call names it.
                source: source.without_url(),
            })?;
        parse_answer(call, status, retry_after, &bytes)
    }
}

/// Interprets one REST answer: Navixy's error body wins over the HTTP status, because
/// Navixy sends its codes with 4xx statuses too.
pub fn parse_answer<T: serde::de::DeserializeOwned>(
    call: &'static str,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<T, RestError> {
    #[derive(Deserialize)]
    struct Envelope {
        success: Option<bool>,
        status: Option<Status>,
    }
    #[derive(Deserialize)]
    struct Status {
        code: Option<i64>,
        description: Option<String>,
    }
    let envelope: Option<Envelope> = serde_json::from_slice(body).ok();
    if let Some(Envelope {
        success: Some(false),
        status,
    }) = envelope
    {
        let (code, description) = status.map_or((None, None), |s| (s.code, s.description));
        let code = NavixyErrorCode::from_code(code.unwrap_or(0));
        if code == NavixyErrorCode::TooManyRequests {
            return Err(RestError::RateLimited { call, retry_after });
        }
        return Err(RestError::Navixy {
            call,
            code,
            description: description.unwrap_or_default(),
        });
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Err(RestError::RateLimited { call, retry_after });
    }
    if !status.is_success() {
        return Err(RestError::Http { call, status });
    }
    serde_json::from_slice(body).map_err(|e| RestError::InvalidResponse {
        call,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_list_sample_maps_ids_and_labels() {
        let body = include_bytes!("../../tests/data/source/tracker_list.json");
        let list: TrackerList = parse_answer("tracker/list", StatusCode::OK, None, body).unwrap();
        assert_eq!(
            list.list.iter().map(TrackerInfo::from).collect::<Vec<_>>(),
            vec![TrackerInfo {
                source: 0,
                id: 21080,
                source_id: Some(10284),
                label: Some("Truck 7".into()),
                group_id: Some(3),
                blocked: Some(false),
            }]
        );
    }

    #[tokio::test]
    async fn a_failed_call_does_not_show_the_url() {
        // Credentials (reqwest moves them to a header) and a token in the path (a proxy's
        // route, say), which only dropping the URL keeps out of the message.
        let url = "http://ops:s3cret@127.0.0.1:9/t0ken/v2";
        let client = RestClient::new(url, Duration::from_secs(5)).unwrap();
        let err = client.tracker_list(&Secret::new("h")).await.unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(text.contains("tracker/list"), "{text}");
        assert!(
            !text.contains("s3cret") && !text.contains("t0ken"),
            "{text}"
        );
    }

    #[test]
    fn navixy_error_bodies_are_typed_whatever_the_http_status() {
        let body = br#"{"success":false,"status":{"code":4,"description":"User or API key not found or session ended"}}"#;
        let err = parse_answer::<TrackerList>("tracker/list", StatusCode::FORBIDDEN, None, body)
            .unwrap_err();
        assert!(err.is_auth());
        assert_eq!(err.navixy_code(), Some(NavixyErrorCode::SessionEnded));
        let text = err.to_string();
        assert!(text.contains("error 4"), "{text}");
        assert!(text.contains("session ended"), "{text}");

        let body = br#"{"success":false,"status":{"code":15,"description":"Too many requests"}}"#;
        let err = parse_answer::<TrackerList>(
            "tracker/list",
            StatusCode::OK,
            Some(Duration::from_secs(3)),
            body,
        )
        .unwrap_err();
        assert!(err.is_rate_limited());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));

        let err =
            parse_answer::<TrackerList>("tracker/list", StatusCode::TOO_MANY_REQUESTS, None, b"")
                .unwrap_err();
        assert!(err.is_rate_limited());

        let err =
            parse_answer::<TrackerList>("tracker/list", StatusCode::BAD_GATEWAY, None, b"<html>")
                .unwrap_err();
        assert!(matches!(err, RestError::Http { .. }));

        let err =
            parse_answer::<TrackerList>("tracker/list", StatusCode::OK, None, b"{\"list\":3}")
                .unwrap_err();
        assert!(matches!(err, RestError::InvalidResponse { .. }));
    }

    #[test]
    fn codes_round_trip() {
        for code in [3, 4, 7, 11, 15, 208, 99] {
            assert_eq!(NavixyErrorCode::from_code(code).code(), code);
        }
    }
}
