//! The bearer token of the admin API (`server.token`).
//!
//! Only the token's SHA-256 digest is kept, and a presented token is compared by digest,
//! byte for byte without stopping at the first difference: the time a comparison takes
//! says nothing about how much of a guess was right, nor about the token's length. The
//! token itself is never stored here, so no handler can log it by mistake.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::AppState;
use super::api::ApiError;
use crate::config::Secret;

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
        let presented = digest(presented);
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

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Middleware: 401 unless the request carries the token (when one is configured).
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &state.token {
        let accepted = bearer(request.headers()).is_some_and(|t| token.accepts(t));
        if !accepted {
            let message = if bearer(request.headers()).is_some() {
                "the bearer token is not the one in server.token"
            } else {
                "this endpoint needs `Authorization: Bearer <server.token>`"
            };
            let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"navixy-alerts\""),
            );
            return response;
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_blank_tokens_mean_an_open_api() {
        assert!(Token::from_config(None).is_none());
        assert!(Token::from_config(Some(&Secret::new(""))).is_none());
        assert!(Token::from_config(Some(&Secret::new("  "))).is_none());
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
}
