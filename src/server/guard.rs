//! What keeps a web page from using the admin API through its visitor's browser.
//!
//! A page on another site can send a browser to `http://127.0.0.1:9898` (a form POST, or
//! `fetch` with `mode: no-cors`), and with DNS rebinding it can even read the answer under
//! its own host name. Three checks close that, for the token-less API above all:
//! - `Host` must name this server: the listen address, `localhost`, `127.0.0.1` or `[::1]`
//!   with the listen port, or `server.external_url`'s host; else 421. When listening on
//!   every address (`0.0.0.0`, `[::]`) any IP literal is accepted too: a rebinding page
//!   always sends its own name, never an address.
//! - A state-changing request (anything but GET, HEAD, OPTIONS) whose `Origin` is not one
//!   of those hosts is refused with 403. Clients that send no `Origin` (curl, amtool,
//!   scripts) are not browsers, and pass.
//! - JSON bodies need `Content-Type: application/json` (415 otherwise), so that a form or
//!   a `text/plain` body, which a browser sends cross-site without asking first, is never
//!   read as JSON: see [`super::api::JsonBody`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header, uri::Authority};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::api::ApiError;

/// The hosts this server answers as, from its bound address and `server.external_url`.
#[derive(Debug, Clone)]
pub struct Access {
    /// The bound port (not the configured one, which may be 0).
    port: u16,
    /// Lower-case names and IP literals (`[::1]` with brackets) accepted with `port`.
    hosts: Vec<String>,
    /// Bound to every address: any IP literal is this server.
    any_address: bool,
    /// `server.external_url`'s host and port (the scheme's default when not written).
    external: Option<(String, u16)>,
}

impl Access {
    /// The hosts of a server bound to `local`, also reached as `external_url` (already
    /// checked to be an http(s) URL with a host when the config loaded).
    pub fn new(local: SocketAddr, external_url: Option<&str>) -> Access {
        let mut hosts = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "[::1]".to_string(),
        ];
        let own = ip_literal(local.ip());
        if !hosts.contains(&own) {
            hosts.push(own);
        }
        let external = external_url
            .and_then(|u| url::Url::parse(u.trim()).ok())
            .and_then(|u| {
                Some((
                    u.host_str()?.to_ascii_lowercase(),
                    u.port_or_known_default()?,
                ))
            });
        Access {
            port: local.port(),
            hosts,
            any_address: local.ip().is_unspecified(),
            external,
        }
    }

    /// True when `host` (lower case, IPv6 in brackets) and `port` (`None`: not written,
    /// so the scheme's default) name this server.
    fn allows(&self, host: &str, port: Option<u16>, default_port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let port = port.unwrap_or(default_port);
        if let Some((external_host, external_port)) = &self.external
            && *external_host == host
            && (port == *external_port || port == default_port)
        {
            return true;
        }
        if port != self.port {
            return false;
        }
        self.hosts.contains(&host)
            || (self.any_address
                && host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok())
    }

    /// Checks a request's `Host` (or its absolute URI's authority).
    fn check_host(&self, request: &Request) -> Result<(), ApiError> {
        let authority = match request.uri().authority() {
            Some(authority) => Some(authority.clone()),
            None => request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.parse::<Authority>().ok()),
        };
        let Some(authority) = authority else {
            return Err(misdirected("the request has no valid Host header"));
        };
        if self.allows(authority.host(), authority.port_u16(), 80) {
            Ok(())
        } else {
            Err(misdirected(format!(
                "Host `{authority}` is not this server (it answers as localhost, 127.0.0.1 \
                 or [::1] on port {}, or as server.external_url)",
                self.port
            )))
        }
    }

    /// Checks the `Origin` of a state-changing request.
    fn check_origin(&self, request: &Request) -> Result<(), ApiError> {
        if matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS
        ) {
            return Ok(());
        }
        let Some(origin) = request.headers().get(header::ORIGIN) else {
            return Ok(());
        };
        let text = origin.to_str().unwrap_or("(not text)");
        let same_origin = url::Url::parse(text).ok().is_some_and(|url| {
            matches!(url.scheme(), "http" | "https")
                && url.host_str().is_some_and(|host| {
                    let default = if url.scheme() == "https" { 443 } else { 80 };
                    self.allows(host, url.port(), default)
                })
        });
        if same_origin {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "cross-origin request refused: Origin `{text}` is not this server (set \
                     server.external_url when the API is reached through a proxy)"
                ),
            ))
        }
    }
}

/// `[::1]` for IPv6, `127.0.0.1` for IPv4: as they are written in a `Host` header.
fn ip_literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

fn misdirected(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::MISDIRECTED_REQUEST, message)
}

/// Middleware: 421 for a foreign `Host`, 403 for a cross-origin state change.
pub async fn check_host_and_origin(
    State(access): State<Arc<Access>>,
    request: Request,
    next: Next,
) -> Response {
    if let Err(refused) = access
        .check_host(&request)
        .and_then(|()| access.check_origin(&request))
    {
        tracing::debug!(method = %request.method(), path = %request.uri().path(), "Request refused by the host or origin check.");
        return refused.into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, host: Option<&str>, origin: Option<&str>) -> Request {
        let mut builder = Request::builder().method(method).uri("/api/v1/silences");
        if let Some(host) = host {
            builder = builder.header(header::HOST, host);
        }
        if let Some(origin) = origin {
            builder = builder.header(header::ORIGIN, origin);
        }
        builder.body(axum::body::Body::empty()).unwrap()
    }

    fn host_ok(access: &Access, host: &str) -> bool {
        access
            .check_host(&request(Method::GET, Some(host), None))
            .is_ok()
    }

    #[test]
    fn loopback_names_with_the_port_are_this_server() {
        let access = Access::new("127.0.0.1:9898".parse().unwrap(), None);
        for host in [
            "127.0.0.1:9898",
            "localhost:9898",
            "LOCALHOST:9898",
            "[::1]:9898",
        ] {
            assert!(host_ok(&access, host), "{host}");
        }
        for host in [
            "127.0.0.1:9899",
            "localhost",
            "evil.example:9898",
            "10.0.0.5:9898",
            "[::2]:9898",
        ] {
            assert!(!host_ok(&access, host), "{host}");
        }
        assert!(
            access
                .check_host(&request(Method::GET, None, None))
                .is_err()
        );
    }

    #[test]
    fn the_external_url_and_every_address_when_bound_to_all() {
        let access = Access::new(
            "0.0.0.0:9898".parse().unwrap(),
            Some("https://Alerts.Example.com"),
        );
        for host in [
            "alerts.example.com",
            "alerts.example.com:443",
            "10.1.2.3:9898",
            "[fe80::1]:9898",
            "localhost:9898",
        ] {
            assert!(host_ok(&access, host), "{host}");
        }
        for host in [
            "alerts.example.com:9898",
            "rebind.example:9898",
            "10.1.2.3:80",
        ] {
            assert!(!host_ok(&access, host), "{host}");
        }
    }

    #[test]
    fn state_changes_from_another_origin_are_refused() {
        let access = Access::new("127.0.0.1:9898".parse().unwrap(), None);
        let origin_ok = |method: Method, origin: Option<&str>| {
            access
                .check_origin(&request(method, Some("127.0.0.1:9898"), origin))
                .is_ok()
        };
        assert!(origin_ok(Method::POST, None));
        assert!(origin_ok(Method::POST, Some("http://127.0.0.1:9898")));
        assert!(origin_ok(Method::DELETE, Some("http://localhost:9898")));
        assert!(origin_ok(Method::GET, Some("https://evil.example")));
        assert!(!origin_ok(Method::POST, Some("https://evil.example")));
        assert!(!origin_ok(Method::DELETE, Some("http://localhost:8080")));
        assert!(!origin_ok(Method::POST, Some("null")));
        assert!(!origin_ok(Method::POST, Some("file://")));
    }
}
