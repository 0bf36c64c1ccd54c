//! Who may call the admin API: the bearer tokens (`server.token`, an admin named `admin`,
//! and `server.tokens` with their roles), the console's login sessions, and the role each
//! request needs.
//!
//! Only each token's SHA-256 digest is kept, and a presented token is compared with every
//! digest, byte for byte without stopping at the first difference nor at the first match:
//! the time a check takes says nothing about how much of a guess was right, nor about a
//! token's length or which one matched. The tokens themselves are never stored here, so
//! no handler can log one by mistake.
//!
//! A request that passes gets a [`Caller`] extension (its name and role) that handlers
//! read to record who acknowledged or silenced.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::AppState;
use super::api::ApiError;
use crate::config::{Role, Secret, ServerConfig};

/// What a request must present, as a digest.
#[derive(Clone, PartialEq, Eq)]
pub struct Token([u8; 32]);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

impl Token {
    /// The token of `server.token`; `None` when it is unset or empty (an open API).
    pub fn from_config(token: Option<&Secret>) -> Option<Token> {
        token
            .filter(|t| !t.expose().trim().is_empty())
            .map(|t| Token(digest(t.expose().trim())))
    }

    /// True when `presented` is this token.
    pub fn accepts(&self, presented: &str) -> bool {
        self.matches(&digest(presented))
    }

    fn matches(&self, presented: &[u8; 32]) -> bool {
        let difference = self
            .0
            .iter()
            .zip(presented.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(difference) == 0
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Who made a request, as handlers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: Arc<str>,
    pub role: Role,
}

impl Caller {
    /// The caller of an API without tokens (loopback only): may do anything.
    fn open() -> Caller {
        Caller {
            name: Arc::from("anonymous"),
            role: Role::Admin,
        }
    }
}

/// Every token, with its name and role.
#[derive(Debug, Clone, Default)]
pub struct Tokens(Arc<Vec<(Token, Caller)>>);

impl Tokens {
    /// `server.token` (an admin named `admin`) and `server.tokens`.
    pub fn from_config(server: &ServerConfig) -> Tokens {
        let mut all = Vec::new();
        if let Some(token) = Token::from_config(server.token.as_ref()) {
            all.push((
                token,
                Caller {
                    name: Arc::from("admin"),
                    role: Role::Admin,
                },
            ));
        }
        for t in &server.tokens {
            if let Some(token) = Token::from_config(Some(&t.token)) {
                let caller = Caller {
                    name: Arc::from(t.name.trim()),
                    role: t.role,
                };
                all.push((token, caller));
            }
        }
        Tokens(Arc::new(all))
    }

    /// No token is configured: the API is open (and on loopback).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The caller whose token `presented` is. Every digest is compared, whichever matches.
    pub fn find(&self, presented: &str) -> Option<Caller> {
        let presented = digest(presented);
        let mut found = None;
        for (token, caller) in self.0.iter() {
            if token.matches(&presented) && found.is_none() {
                found = Some(caller.clone());
            }
        }
        found
    }
}

/// The console's session cookie.
pub const SESSION_COOKIE: &str = "na_session";
/// A session ends after this long without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);

/// The console's logins, in memory (a restart logs everybody out).
#[derive(Debug, Default)]
pub struct Sessions(Mutex<HashMap<String, (Caller, Instant)>>);

impl Sessions {
    /// A new session for `caller`; its id is 32 random bytes from the system's generator,
    /// in hex.
    pub fn open(&self, caller: Caller) -> Result<String, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut sessions = self.0.lock();
        sessions.retain(|_, (_, seen)| now.duration_since(*seen) < SESSION_IDLE);
        sessions.insert(id.clone(), (caller, now));
        Ok(id)
    }

    /// The caller of a live session, which it keeps alive; `None` when unknown or idle
    /// too long.
    pub fn touch(&self, id: &str) -> Option<Caller> {
        let now = Instant::now();
        let mut sessions = self.0.lock();
        let (caller, seen) = sessions.get_mut(id)?;
        if now.duration_since(*seen) >= SESSION_IDLE {
            sessions.remove(id);
            return None;
        }
        *seen = now;
        Some(caller.clone())
    }

    pub fn close(&self, id: &str) {
        self.0.lock().remove(id);
    }
}

/// The tokens and the sessions, shared by the routes.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    pub tokens: Tokens,
    pub sessions: Arc<Sessions>,
    /// Session cookies are `Secure` (the console is reached over https).
    secure_cookies: bool,
}

impl Auth {
    pub fn from_config(server: &ServerConfig) -> Auth {
        Auth {
            tokens: Tokens::from_config(server),
            sessions: Arc::default(),
            secure_cookies: server
                .external_url
                .as_deref()
                .is_some_and(|u| u.trim().to_ascii_lowercase().starts_with("https://")),
        }
    }

    /// Whether requests need a token (or a session).
    pub fn required(&self) -> bool {
        !self.tokens.is_empty()
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The value of cookie `name`.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v.trim()).filter(|v| !v.is_empty())
        })
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The role a request needs: viewers read; operators also acknowledge alerts and add or
/// remove silences; everything else that changes state (reload, retry) is for admins.
pub fn required_role(method: &Method, path: &str) -> Role {
    if !changes_state(method) {
        return Role::Viewer;
    }
    let path = path.trim_end_matches('/');
    let ack = path.starts_with("/api/v1/alerts/") && path.ends_with("/ack");
    if ack || path == "/api/v1/silences" || path.starts_with("/api/v1/silences/") {
        Role::Operator
    } else {
        Role::Admin
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"navixy-alerts\""),
    );
    response
}

/// Middleware: who the caller is (a bearer token, or the console's session cookie), 401
/// when nobody, 403 when the role is too low; the [`Caller`] goes to the handler.
pub async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let auth = &state.auth;
    let caller = if !auth.required() {
        Caller::open()
    } else if let Some(presented) = bearer(request.headers()) {
        match auth.tokens.find(presented) {
            Some(caller) => caller,
            None => {
                return unauthorized("the bearer token is not the one in server.token");
            }
        }
    } else if let Some(id) = cookie(request.headers(), SESSION_COOKIE) {
        let Some(caller) = auth.sessions.touch(id) else {
            return unauthorized("the console session has ended; log in again");
        };
        // The guard refuses another site's `Origin`; a browser sends one with every
        // state change, so a cookie without it did not come from the console.
        if changes_state(request.method()) && !request.headers().contains_key(header::ORIGIN) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "a state change with the session cookie needs this server's `Origin`",
            )
            .into_response();
        }
        caller
    } else {
        return unauthorized("this endpoint needs `Authorization: Bearer <server.token>`");
    };
    let needed = required_role(request.method(), request.uri().path());
    if caller.role < needed {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "`{}` is a {}; {} {} needs an {} or more",
                caller.name,
                caller.role.as_str(),
                request.method(),
                request.uri().path(),
                needed.as_str()
            ),
        )
        .into_response();
    }
    // The console reads the role alone (it knows nothing of the server's types).
    request.extensions_mut().insert(caller.role);
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// `POST /login`'s body: a form field or JSON.
#[derive(Debug, Deserialize)]
struct Login {
    token: String,
    /// Where to go after: a path on this server.
    #[serde(default)]
    next: Option<String>,
}

/// Where a login sends the browser: `next` when it is a path here, else `/`.
fn landing(next: Option<&str>) -> &str {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or("/")
}

fn see_other(to: &str, cookie: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(to) = HeaderValue::from_str(to) {
        headers.insert(header::LOCATION, to);
    }
    if let Ok(cookie) = HeaderValue::from_str(cookie) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    response
}

/// `POST /login` (form field `token`, or JSON `{"token"}`; optional `next`): opens a
/// console session and sets its cookie, then 303 to `next` or `/`. 401 for a wrong token.
pub async fn login(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    let login: Option<Login> = if json {
        serde_json::from_slice(&body).ok()
    } else {
        let mut token = None;
        let mut next = None;
        for (k, v) in url::form_urlencoded::parse(&body) {
            match &*k {
                "token" => token = Some(v.into_owned()),
                "next" => next = Some(v.into_owned()),
                _ => {}
            }
        }
        token.map(|token| Login { token, next })
    };
    let Some(login) = login else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "log in with a form field `token` or JSON `{\"token\": \"...\"}`",
        )
        .into_response();
    };
    let Some(caller) = state.auth.tokens.find(login.token.trim()) else {
        return unauthorized("that token is not one of server.token or server.tokens");
    };
    let name = caller.name.clone();
    let id = match state.auth.sessions.open(caller) {
        Ok(id) => id,
        Err(e) => {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot make a session id: {e}"),
            )
            .into_response();
        }
    };
    tracing::info!(name = %name, "Console login.");
    let secure = if state.auth.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        SESSION_IDLE.as_secs()
    );
    see_other(landing(login.next.as_deref()), &cookie)
}

/// `POST /logout`: ends the session and clears its cookie, then 303 to `/login`.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        state.auth.sessions.close(id);
    }
    see_other(
        "/login",
        &format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AccessToken;

    #[test]
    fn empty_or_blank_tokens_mean_an_open_api() {
        assert!(Token::from_config(None).is_none());
        assert!(Token::from_config(Some(&Secret::new(""))).is_none());
        assert!(Token::from_config(Some(&Secret::new("  "))).is_none());
        assert!(Tokens::from_config(&ServerConfig::default()).is_empty());
    }

    #[test]
    fn only_the_exact_token_is_accepted() {
        let token = Token::from_config(Some(&Secret::new("s3cret-token"))).unwrap();
        assert!(token.accepts("s3cret-token"));
        assert!(!token.accepts("s3cret-toke"));
        assert!(!token.accepts("s3cret-token2"));
        assert!(!token.accepts(""));
        assert_eq!(format!("{token:?}"), "Token(***)");
    }

    #[test]
    fn each_token_names_its_caller_and_role() {
        let server = ServerConfig {
            token: Some(Secret::new("root")),
            tokens: vec![
                AccessToken {
                    name: "alice".into(),
                    token: Secret::new("a-token"),
                    role: Role::Viewer,
                },
                AccessToken {
                    name: "bob".into(),
                    token: Secret::new("b-token"),
                    role: Role::Operator,
                },
            ],
            ..ServerConfig::default()
        };
        let tokens = Tokens::from_config(&server);
        let who = |t: &str| tokens.find(t).map(|c| (c.name.to_string(), c.role));
        assert_eq!(who("root"), Some(("admin".into(), Role::Admin)));
        assert_eq!(who("a-token"), Some(("alice".into(), Role::Viewer)));
        assert_eq!(who("b-token"), Some(("bob".into(), Role::Operator)));
        assert_eq!(who("c-token"), None);
    }

    #[test]
    fn roles_needed_by_method_and_path() {
        let need = |m: Method, p: &str| required_role(&m, p);
        assert_eq!(need(Method::GET, "/api/v1/silences"), Role::Viewer);
        assert_eq!(need(Method::GET, "/api/v1/events"), Role::Viewer);
        assert_eq!(need(Method::POST, "/api/v1/silences"), Role::Operator);
        assert_eq!(
            need(Method::DELETE, "/api/v1/silences/sil_1"),
            Role::Operator
        );
        assert_eq!(need(Method::POST, "/api/v1/alerts/abc/ack"), Role::Operator);
        assert_eq!(
            need(Method::DELETE, "/api/v1/alerts/abc/ack"),
            Role::Operator
        );
        assert_eq!(need(Method::POST, "/api/v1/reload"), Role::Admin);
        assert_eq!(
            need(Method::POST, "/api/v1/notifications/x/retry"),
            Role::Admin
        );
    }

    #[test]
    fn session_cookies_are_secure_behind_https() {
        let behind = |url: &str| {
            Auth::from_config(&ServerConfig {
                external_url: Some(url.into()),
                ..ServerConfig::default()
            })
            .secure_cookies
        };
        assert!(behind("https://alerts.example.com"));
        assert!(!behind("http://alerts.example.com"));
        assert!(!Auth::from_config(&ServerConfig::default()).secure_cookies);
    }

    #[test]
    fn a_login_lands_only_on_this_server() {
        assert_eq!(landing(None), "/");
        assert_eq!(landing(Some("/alerts?x=1")), "/alerts?x=1");
        assert_eq!(landing(Some("//evil.example")), "/");
        assert_eq!(landing(Some("https://evil.example")), "/");
        assert_eq!(landing(Some("/\\evil.example")), "/");
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_end_after_twelve_idle_hours() {
        let sessions = Sessions::default();
        let caller = Caller {
            name: Arc::from("alice"),
            role: Role::Viewer,
        };
        let id = sessions.open(caller.clone()).unwrap();
        assert_eq!(id.len(), 64);
        tokio::time::advance(SESSION_IDLE - Duration::from_secs(1)).await;
        assert_eq!(
            sessions.touch(&id),
            Some(caller.clone()),
            "kept alive by use"
        );
        tokio::time::advance(SESSION_IDLE - Duration::from_secs(1)).await;
        assert_eq!(sessions.touch(&id), Some(caller));
        tokio::time::advance(SESSION_IDLE).await;
        assert_eq!(sessions.touch(&id), None);
        let other = sessions.open(Caller::open()).unwrap();
        sessions.close(&other);
        assert_eq!(sessions.touch(&other), None);
    }

    #[test]
    fn bearer_headers_are_read_in_any_case() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=1; na_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
