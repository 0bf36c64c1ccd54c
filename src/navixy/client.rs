//! The WebSocket client: one connection to Navixy's event stream (`/event/subscription`).
//!
//! A [`Connection`] owns the socket for as long as it lives: it reads the Atmosphere
//! negotiation line, sends `X` heartbeats at the interval that line announces, notices a
//! silent socket (nothing at all for twice the heartbeat), skips frames that are too
//! large or binary, and tells control frames (response, error, logout) from data frames
//! without decoding the data: data frames go to the engine as text, and only the engine
//! pays for decoding them.
//!
//! Reconnecting, sessions and alerts are the source's (`source::navixy`), not this file's:
//! a connection that fails just returns the error.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, warn};
use url::Url;

use super::decode::{DecodeErrorKind, decode_frame};
use super::messages::{ErrorFrame, Frame};
use super::requests::ClientMessage;
use super::rest::{NavixyErrorCode, install_crypto_provider};
use crate::telemetry;

/// The query string Navixy's browser sample sends; harmless, and some deployments expect it.
pub const ATMOSPHERE_QUERY: &str = "X-Atmosphere-tracking-id=0&X-Atmosphere-Framework=2.3.6-javascript&X-Atmosphere-Transport=websocket&Content-Type=application/json&X-atmo-protocol=true";

/// The heartbeat used until (or unless) the server announces one.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);

/// Why a connection could not be opened or ended.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid WebSocket URL `{url}`: {message}")]
    InvalidUrl { url: String, message: String },
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: tungstenite::Error,
    },
    #[error("cannot connect to {url}: no answer within {timeout:?}")]
    ConnectTimeout { url: String, timeout: Duration },
    #[error("the server closed the connection ({reason})")]
    Closed { reason: String },
    #[error("nothing received for {0:?} (twice the heartbeat): the connection is dead")]
    Silent(Duration),
    #[error("WebSocket error: {0}")]
    Transport(#[source] tungstenite::Error),
    /// An error frame, e.g. a wrong hash in `subscribe`.
    #[error("Navixy refused {action}: error {} ({description}): {}", code.code(), code.hint())]
    Refused {
        action: String,
        code: NavixyErrorCode,
        description: String,
    },
    /// The `logout` event: the session hash is no longer valid.
    #[error("Navixy ended the session (logout: {reason})")]
    Logout { reason: String },
}

impl ClientError {
    /// An error frame as a [`ClientError::Refused`].
    pub fn refused(frame: &ErrorFrame) -> ClientError {
        let status = frame.status.as_ref();
        ClientError::Refused {
            action: frame.action.clone().unwrap_or_else(|| "the request".into()),
            code: NavixyErrorCode::from_code(status.and_then(|s| s.code).unwrap_or(0)),
            description: status
                .and_then(|s| s.description.clone())
                .unwrap_or_default(),
        }
    }

    /// The server said the hash or the session is not valid.
    pub fn is_auth(&self) -> bool {
        match self {
            ClientError::Refused { code, .. } => code.is_auth(),
            ClientError::Logout { .. } => true,
            _ => false,
        }
    }
}

/// A URL as messages and logs may show it: without credentials (`user:password@`) and
/// without its query. Text that does not parse as a URL loses what sits between `://`
/// and an `@` all the same.
pub fn shown_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.to_string()
        }
        Err(_) => {
            let start = url.find("://").map_or(0, |i| i + 3);
            let end = url[start..]
                .find(['/', '?'])
                .map_or(url.len(), |i| start + i);
            match url[start..end].rfind('@') {
                Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
                None => url.to_string(),
            }
        }
    }
}

/// The subscription URL: `ws_url` as given, or `api_url` with `https` -> `wss` (`http` ->
/// `ws`) and `/event/subscription` appended; plus the Atmosphere query parameters when
/// the URL has no query of its own.
pub fn subscription_url(api_url: &str, ws_url: Option<&str>) -> Result<Url, ClientError> {
    let invalid = |url: &str, message: String| ClientError::InvalidUrl {
        url: shown_url(url),
        message,
    };
    let mut url = match ws_url {
        Some(ws) => Url::parse(ws).map_err(|e| invalid(ws, e.to_string()))?,
        None => {
            let mut url = Url::parse(api_url).map_err(|e| invalid(api_url, e.to_string()))?;
            let scheme = match url.scheme() {
                "https" => "wss",
                "http" => "ws",
                other => {
                    return Err(invalid(
                        api_url,
                        format!("api_url must be http or https, not `{other}`"),
                    ));
                }
            };
            url.set_scheme(scheme)
                .map_err(|()| invalid(api_url, "cannot change the scheme".into()))?;
            let path = format!("{}/event/subscription", url.path().trim_end_matches('/'));
            url.set_path(&path);
            url
        }
    };
    match url.scheme() {
        "ws" | "wss" => {}
        other => {
            return Err(invalid(
                url.as_str(),
                format!("a WebSocket URL must be ws or wss, not `{other}`"),
            ));
        }
    }
    if url.query().is_none() {
        url.set_query(Some(ATMOSPHERE_QUERY));
    }
    Ok(url)
}

/// Limits and timeouts of one connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionOptions {
    /// Text frames longer than this are counted as oversized and skipped.
    pub max_frame_bytes: usize,
    /// TCP + TLS + upgrade.
    pub connect_timeout: Duration,
    /// How long to wait for the Atmosphere line before subscribing anyway.
    pub handshake_timeout: Duration,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        ConnectionOptions {
            max_frame_bytes: 16 * 1024 * 1024,
            connect_timeout: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

impl ConnectionOptions {
    /// The transport's own limit. Frames between `max_frame_bytes` and this are read and
    /// skipped, so the connection survives them; beyond it tungstenite refuses the message
    /// and the connection is dropped, which bounds the memory one frame can take.
    pub fn hard_limit(&self) -> usize {
        self.max_frame_bytes
            .saturating_mul(4)
            .max(self.max_frame_bytes.saturating_add(1 << 20))
    }

    fn websocket_config(&self) -> WebSocketConfig {
        let hard = self.hard_limit();
        WebSocketConfig::default()
            .max_message_size(Some(hard))
            .max_frame_size(Some(hard))
    }
}

/// What [`Connection::next`] yields.
#[derive(Debug)]
pub enum Incoming {
    /// An event frame for the engine, as it came.
    Data(Utf8Bytes),
    /// A control frame (response, error, logout), decoded, with its text.
    Control { frame: Frame, text: Utf8Bytes },
    /// A frame that was skipped here (oversized, binary) and counted.
    Skipped { kind: DecodeErrorKind, bytes: usize },
}

/// How a text frame is handled, found without decoding it (see [`classify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameClass {
    Heartbeat,
    /// The Atmosphere line `<uuid>|<ms>|X|`.
    Handshake,
    /// `type: response`, `type: error`, or the `logout` event.
    Control,
    /// Everything else: events, and anything malformed (the engine counts those).
    Data,
}

/// Classifies a frame by its top-level `type` and `event` keys only.
///
/// Event frames put `type` and `event` first in practice, so this usually stops after a
/// few dozen bytes; only frames that put them last (the wire's `response`) are scanned
/// further, skipping nested values by brackets and strings without building anything.
pub fn classify(text: &str) -> FrameClass {
    let t = text.trim_ascii();
    if t == "X" {
        return FrameClass::Heartbeat;
    }
    if !t.starts_with('{') {
        return if t.contains('|') {
            FrameClass::Handshake
        } else {
            FrameClass::Data
        };
    }
    let Some((frame_type, event)) = top_level_tags(t.as_bytes()) else {
        return FrameClass::Data;
    };
    match (frame_type, event) {
        (Some(b"response") | Some(b"error"), _) => FrameClass::Control,
        (Some(b"event"), Some(b"logout")) => FrameClass::Control,
        _ => FrameClass::Data,
    }
}

/// The raw values of `type` and `event`, when present.
type Tags<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// The raw string values of the top-level `type` and `event` keys, stopping as soon as
/// the answer is known. `None` when the text is not a well-formed object up to there.
fn top_level_tags(b: &[u8]) -> Option<Tags<'_>> {
    let mut s = Scanner { b, i: 0 };
    let mut frame_type: Option<&[u8]> = None;
    let mut event: Option<&[u8]> = None;
    s.skip_ws();
    s.expect(b'{')?;
    loop {
        s.skip_ws();
        match s.peek()? {
            b'}' => return Some((frame_type, event)),
            b',' => {
                s.i += 1;
                continue;
            }
            _ => {}
        }
        let key = s.string()?;
        s.skip_ws();
        s.expect(b':')?;
        s.skip_ws();
        let wanted = key == b"type" || key == b"event";
        if wanted && s.peek()? == b'"' {
            let value = s.string()?;
            if key == b"type" {
                frame_type = Some(value);
            } else {
                event = Some(value);
            }
            match frame_type {
                Some(b"event") if event.is_some() => return Some((frame_type, event)),
                Some(t) if t != b"event" => return Some((frame_type, event)),
                _ => {}
            }
        } else {
            s.skip_value()?;
        }
    }
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if !c.is_ascii_whitespace() {
                break;
            }
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// A string's raw content (escapes left as they are: the tags never have any).
    fn string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.i;
        loop {
            match *self.b.get(self.i)? {
                b'"' => {
                    let s = &self.b[start..self.i];
                    self.i += 1;
                    return Some(s);
                }
                b'\\' => self.i += 2,
                _ => self.i += 1,
            }
        }
    }

    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match *self.b.get(self.i)? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                while let Some(c) = self.peek() {
                    if matches!(c, b',' | b'}' | b']') || c.is_ascii_whitespace() {
                        break;
                    }
                    self.i += 1;
                }
                Some(())
            }
        }
    }
}

/// The TCP (or TLS) stream a live connection runs on.
pub type LiveStream = MaybeTlsStream<TcpStream>;

/// Opens the WebSocket to `url` (TLS through rustls for `wss`) and waits for the
/// Atmosphere line.
pub async fn connect(
    url: &Url,
    options: ConnectionOptions,
) -> Result<Connection<LiveStream>, ClientError> {
    install_crypto_provider();
    // The hash travels in `subscribe`, not in the URL; credentials in it are not shown.
    let shown = shown_url(url.as_str());
    let opened = tokio::time::timeout(
        options.connect_timeout,
        tokio_tungstenite::connect_async_with_config(
            url.as_str(),
            Some(options.websocket_config()),
            true,
        ),
    )
    .await;
    let (ws, _response) = match opened {
        Err(_) => {
            return Err(ClientError::ConnectTimeout {
                url: shown,
                timeout: options.connect_timeout,
            });
        }
        Ok(Err(source)) => return Err(ClientError::Connect { url: shown, source }),
        Ok(Ok(pair)) => pair,
    };
    Connection::establish(ws, options).await
}

/// One open connection: heartbeats, silence detection, frame limits.
pub struct Connection<S> {
    ws: WebSocketStream<S>,
    options: ConnectionOptions,
    /// The interval the server announced (or [`DEFAULT_HEARTBEAT`]); `X` goes out at this
    /// pace, and twice this without any frame means the socket is dead.
    heartbeat: Duration,
    tracking_id: Option<String>,
    last_received: Instant,
    next_heartbeat: Instant,
    /// A frame read while waiting for the handshake, handed out first by `next`.
    pending: Option<Message>,
    /// Oversized frames are logged once per connection, then only counted.
    logged_oversized: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Wraps an upgraded WebSocket and waits (bounded) for the Atmosphere line. A server
    /// that sends none still works, with the default heartbeat.
    pub async fn establish(
        ws: WebSocketStream<S>,
        options: ConnectionOptions,
    ) -> Result<Connection<S>, ClientError> {
        let now = Instant::now();
        let mut conn = Connection {
            ws,
            options,
            heartbeat: DEFAULT_HEARTBEAT,
            tracking_id: None,
            last_received: now,
            next_heartbeat: now + DEFAULT_HEARTBEAT,
            pending: None,
            logged_oversized: false,
        };
        match tokio::time::timeout(options.handshake_timeout, conn.ws.next()).await {
            Err(_) => warn!(
                timeout = ?options.handshake_timeout,
                "No Atmosphere handshake line from the server; subscribing anyway."
            ),
            Ok(None) => {
                return Err(ClientError::Closed {
                    reason: "closed before the handshake".into(),
                });
            }
            Ok(Some(Err(e))) => return Err(ClientError::Transport(e)),
            Ok(Some(Ok(Message::Text(text))))
                if classify(&text) == FrameClass::Handshake && conn.apply_handshake(&text) =>
            {
                conn.last_received = Instant::now();
            }
            Ok(Some(Ok(other))) => {
                conn.last_received = Instant::now();
                conn.pending = Some(other);
            }
        }
        Ok(conn)
    }

    /// Adopts the heartbeat of an Atmosphere line; false if `text` is not one after all
    /// (then it is handed on like any bad frame, so the engine counts it).
    fn apply_handshake(&mut self, text: &str) -> bool {
        let Ok(Frame::Handshake {
            tracking_id,
            heartbeat_ms,
        }) = decode_frame(text)
        else {
            return false;
        };
        // A zero or absurd interval would spin or never beat: keep it sane.
        let ms = heartbeat_ms.clamp(100, 10 * 60 * 1000);
        self.heartbeat = Duration::from_millis(ms);
        self.next_heartbeat = Instant::now() + self.heartbeat;
        debug!(tracking_id = %tracking_id, heartbeat_ms = ms, "Atmosphere handshake.");
        self.tracking_id = Some(tracking_id);
        true
    }

    /// The heartbeat interval in force.
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    /// The Atmosphere tracking id from the handshake.
    pub fn tracking_id(&self) -> Option<&str> {
        self.tracking_id.as_deref()
    }

    /// Sends a `subscribe` or `unsubscribe`.
    pub async fn send(&mut self, message: &ClientMessage) -> Result<(), ClientError> {
        self.ws
            .send(Message::text(message.to_json()))
            .await
            .map_err(ClientError::Transport)
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }

    /// The next frame worth handing on. Sends heartbeats while it waits; fails when the
    /// connection ends or falls silent for twice the heartbeat.
    ///
    /// Heartbeats: an `X` text frame (what Atmosphere expects) and a WebSocket ping, whose
    /// pong proves the socket alive even from a server that never sends `X` itself.
    pub async fn next(&mut self) -> Result<Incoming, ClientError> {
        loop {
            let message = match self.pending.take() {
                Some(message) => message,
                None => {
                    let silence = self.heartbeat * 2;
                    let deadline = self.last_received + silence;
                    tokio::select! {
                        read = self.ws.next() => match read {
                            None => return Err(ClientError::Closed { reason: "end of stream".into() }),
                            Some(Err(e)) => return Err(ClientError::Transport(e)),
                            Some(Ok(message)) => {
                                self.last_received = Instant::now();
                                message
                            }
                        },
                        () = tokio::time::sleep_until(self.next_heartbeat) => {
                            self.beat().await?;
                            continue;
                        }
                        () = tokio::time::sleep_until(deadline) => {
                            return Err(ClientError::Silent(silence));
                        }
                    }
                }
            };
            match message {
                Message::Text(text) => {
                    if text.len() > self.options.max_frame_bytes {
                        self.skip_oversized(&text);
                        return Ok(Incoming::Skipped {
                            kind: DecodeErrorKind::Oversized,
                            bytes: text.len(),
                        });
                    }
                    match classify(&text) {
                        FrameClass::Heartbeat => continue,
                        FrameClass::Handshake if self.apply_handshake(&text) => continue,
                        FrameClass::Handshake => return Ok(Incoming::Data(text)),
                        FrameClass::Data => return Ok(Incoming::Data(text)),
                        FrameClass::Control => match decode_frame(&text) {
                            Ok(frame) => return Ok(Incoming::Control { frame, text }),
                            // Looked like a control frame but is not one after all: the
                            // engine's decoder counts it like any bad frame.
                            Err(_) => return Ok(Incoming::Data(text)),
                        },
                    }
                }
                Message::Binary(bytes) => {
                    metrics::counter!(telemetry::DECODE_ERRORS, "kind" => DecodeErrorKind::Malformed.as_str())
                        .increment(1);
                    return Ok(Incoming::Skipped {
                        kind: DecodeErrorKind::Malformed,
                        bytes: bytes.len(),
                    });
                }
                Message::Close(frame) => {
                    let reason = frame.map_or_else(
                        || "no reason given".to_string(),
                        |f| format!("code {}, {}", u16::from(f.code), f.reason),
                    );
                    return Err(ClientError::Closed { reason });
                }
                // Pings are answered by tungstenite; pongs only prove liveness.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            }
        }
    }

    async fn beat(&mut self) -> Result<(), ClientError> {
        self.next_heartbeat = Instant::now() + self.heartbeat;
        self.ws
            .feed(Message::text("X"))
            .await
            .map_err(ClientError::Transport)?;
        self.ws
            .feed(Message::Ping(bytes::Bytes::new()))
            .await
            .map_err(ClientError::Transport)?;
        self.ws.flush().await.map_err(ClientError::Transport)
    }

    fn skip_oversized(&mut self, text: &str) {
        metrics::counter!(telemetry::DECODE_ERRORS, "kind" => DecodeErrorKind::Oversized.as_str())
            .increment(1);
        if !self.logged_oversized {
            self.logged_oversized = true;
            let sample: String = text.chars().take(120).collect();
            warn!(
                bytes = text.len(),
                max_frame_bytes = self.options.max_frame_bytes,
                sample = %sample,
                "Oversized frame skipped (raise source.navixy.max_frame_bytes if this is expected); further ones are only counted."
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;
    use tokio_tungstenite::tungstenite::protocol::Role;

    #[test]
    fn urls_are_derived_from_the_api_url() {
        let url = subscription_url("https://api.eu.navixy.com/v2", None).unwrap();
        assert_eq!(
            url.as_str(),
            format!("wss://api.eu.navixy.com/v2/event/subscription?{ATMOSPHERE_QUERY}")
        );
        let url = subscription_url("http://127.0.0.1:8080/v2/", None).unwrap();
        assert_eq!(
            url.as_str(),
            format!("ws://127.0.0.1:8080/v2/event/subscription?{ATMOSPHERE_QUERY}")
        );
        let url = subscription_url("https://x/v2", Some("wss://ws.example.com/sub?a=1")).unwrap();
        assert_eq!(url.as_str(), "wss://ws.example.com/sub?a=1");
        assert!(subscription_url("ftp://x", None).is_err());
        assert!(subscription_url("https://x", Some("https://y")).is_err());
        assert!(subscription_url("not a url", None).is_err());
    }

    #[test]
    fn shown_urls_hide_credentials_and_queries() {
        assert_eq!(
            shown_url("https://ops:s3cret@api.navixy.com/v2?hash=abc"),
            "https://api.navixy.com/v2"
        );
        assert_eq!(
            shown_url("wss://ops@x.example/event/subscription?X-Atmosphere-tracking-id=0"),
            "wss://x.example/event/subscription"
        );
        assert_eq!(shown_url("http://127.0.0.1:9/v2"), "http://127.0.0.1:9/v2");
        // Not a URL: what may be credentials goes all the same.
        assert_eq!(shown_url("https://ops:s3cret@ /v2"), "https://***@ /v2");
        let err = subscription_url("ftp://ops:s3cret@x/v2", None).unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[tokio::test]
    async fn a_failed_connection_does_not_show_the_password() {
        // Port 9 (discard) on loopback: nothing listens, the connection is refused.
        let url = subscription_url("http://ops:s3cret@127.0.0.1:9/v2", None).unwrap();
        let err = connect(&url, ConnectionOptions::default())
            .await
            .err()
            .expect("refused");
        let text = err.to_string();
        assert!(text.contains("127.0.0.1:9"), "{text}");
        assert!(!text.contains("s3cret") && !text.contains("ops"), "{text}");
    }

    #[test]
    fn classification_reads_only_the_top_level_tags() {
        let sample = |name: &str| {
            std::fs::read_to_string(format!(
                "{}/tests/data/source/{name}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap()
        };
        assert_eq!(classify("X"), FrameClass::Heartbeat);
        assert_eq!(classify(&sample("handshake.txt")), FrameClass::Handshake);
        assert_eq!(
            classify(&sample("subscribe_response.json")),
            FrameClass::Control
        );
        assert_eq!(
            classify(&sample("subscribe_response_wire.json")),
            FrameClass::Control
        );
        assert_eq!(classify(&sample("error.json")), FrameClass::Control);
        assert_eq!(classify(&sample("logout.json")), FrameClass::Control);
        assert_eq!(classify(&sample("state_batch_wire.json")), FrameClass::Data);
        assert_eq!(
            classify(&sample("state_batch_documented.json")),
            FrameClass::Data
        );
        assert_eq!(
            classify(&sample("readings_batch_wire.json")),
            FrameClass::Data
        );
        // Nested `type` keys do not count, whatever their order.
        assert_eq!(
            classify(r#"{"data":[{"type":"error"}],"event":"state_batch","type":"event"}"#),
            FrameClass::Data
        );
        assert_eq!(
            classify(r#"{"data":{"x":"}\"{"},"event":"logout","type":"event"}"#),
            FrameClass::Control
        );
        // Junk goes to the engine, which counts it.
        for junk in [
            "",
            "{",
            "{\"type\":",
            "nonsense",
            "[1,2]",
            "{\"type\":\"event\",\"event\":",
        ] {
            assert_eq!(classify(junk), FrameClass::Data, "{junk:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn classification_never_panics(text in r#"[{}\[\]":,\\ a-z0-9|X]{0,64}"#) {
            let _ = classify(&text);
        }

        #[test]
        fn classification_finds_the_tags_wherever_they_are(
            event in "[a-z_]{1,12}",
            padding in "[ \n]{0,3}",
            data_first in proptest::bool::ANY,
        ) {
            let text = if data_first {
                format!(r#"{{"data":[{{"type":"error"}}],{padding}"event":"{event}","type":"event"}}"#)
            } else {
                format!(r#"{{"type":"event",{padding}"event":"{event}","data":[]}}"#)
            };
            let expected = if event == "logout" { FrameClass::Control } else { FrameClass::Data };
            proptest::prop_assert_eq!(classify(&text), expected);
        }
    }

    async fn pair(
        heartbeat_ms: u64,
        max_frame_bytes: usize,
    ) -> (Connection<DuplexStream>, WebSocketStream<DuplexStream>) {
        let (client_io, server_io) = tokio::io::duplex(1 << 20);
        let client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let mut server = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
        server
            .send(Message::text(format!("b623a15d|{heartbeat_ms}|X|")))
            .await
            .unwrap();
        let options = ConnectionOptions {
            max_frame_bytes,
            ..ConnectionOptions::default()
        };
        let conn = Connection::establish(client, options).await.unwrap();
        (conn, server)
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_follow_the_announced_interval() {
        let (mut conn, mut server) = pair(1000, 1024).await;
        assert_eq!(conn.heartbeat(), Duration::from_secs(1));
        assert_eq!(conn.tracking_id(), Some("b623a15d"));
        let start = Instant::now();
        let client = tokio::spawn(async move { conn.next().await.map(|_| ()) });
        // Reading on the server side also answers the client's pings, which keeps the
        // connection alive although the server sends nothing of its own.
        let mut beats = Vec::new();
        while beats.len() < 3 {
            match server.next().await {
                Some(Ok(message)) if message == Message::text("X") => beats.push(start.elapsed()),
                Some(Ok(_)) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            beats,
            [1, 2, 3].map(Duration::from_secs).to_vec(),
            "one X per announced interval"
        );
        drop(server);
        assert!(client.await.unwrap().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn silence_for_twice_the_heartbeat_ends_the_connection() {
        // The server neither sends nor reads (so it does not answer pings either).
        let (mut conn, _server) = pair(1000, 1024).await;
        let start = Instant::now();
        let result = conn.next().await;
        assert!(
            matches!(result, Err(ClientError::Silent(d)) if d == Duration::from_secs(2)),
            "{result:?}"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_keeps_a_connection_alive() {
        let (mut conn, mut server) = pair(1000, 1024).await;
        let server_task = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                server.send(Message::text("X")).await.unwrap();
            }
            server
                .send(Message::text(
                    r#"{"type":"event","event":"state_batch","data":[]}"#,
                ))
                .await
                .unwrap();
            server
        });
        let incoming = conn.next().await.unwrap();
        assert!(matches!(incoming, Incoming::Data(ref t) if t.contains("state_batch")));
        drop(server_task.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn oversized_and_binary_frames_are_skipped_and_the_connection_goes_on() {
        let (mut conn, mut server) = pair(30_000, 64).await;
        let big = format!(
            r#"{{"type":"event","event":"state_batch","data":["{}"]}}"#,
            "a".repeat(500)
        );
        server.send(Message::text(big)).await.unwrap();
        server.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
        server
            .send(Message::text(
                r#"{"type":"event","event":"logout","data":"session closed"}"#,
            ))
            .await
            .unwrap();
        server.send(Message::text("{not json")).await.unwrap();
        server.send(Message::text("junk|with|pipes")).await.unwrap();
        match conn.next().await.unwrap() {
            Incoming::Skipped { kind, bytes } => {
                assert_eq!(kind, DecodeErrorKind::Oversized);
                assert!(bytes > 500);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            conn.next().await.unwrap(),
            Incoming::Skipped {
                kind: DecodeErrorKind::Malformed,
                bytes: 3
            }
        ));
        match conn.next().await.unwrap() {
            Incoming::Control {
                frame: Frame::Logout { reason },
                ..
            } => assert_eq!(reason, "session closed"),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(conn.next().await.unwrap(), Incoming::Data(ref t) if t.as_str() == "{not json")
        );
        // Looks like an Atmosphere line but is not one: handed on, for the engine to count.
        assert!(
            matches!(conn.next().await.unwrap(), Incoming::Data(ref t) if t.as_str() == "junk|with|pipes")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_close_frame_ends_the_connection_with_its_reason() {
        let (mut conn, mut server) = pair(30_000, 1024).await;
        server.close(None).await.unwrap();
        let err = conn.next().await.unwrap_err();
        assert!(matches!(err, ClientError::Closed { .. }), "{err}");
    }
}
