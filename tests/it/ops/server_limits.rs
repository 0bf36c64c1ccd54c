//! The admin server under idle and half-sent connections: each must send its request
//! headers within `server.header_timeout` or be closed, and only `server.max_connections`
//! are held at once (the others wait in the kernel's accept queue), so that a client
//! cannot use up the daemon's file descriptors.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::server::{Daemon, Hook, LIMIT, TOKEN, always, config_text, eventually};

async fn daemon_with(server: &str) -> Daemon {
    let hook = Hook::start().await;
    let text = config_text(&hook.url, ":memory:").replace(
        &format!("server: {{ listen: \"127.0.0.1:0\", token: \"{TOKEN}\" }}"),
        &format!("server: {{ listen: \"127.0.0.1:0\", token: \"{TOKEN}\", {server} }}"),
    );
    assert!(text.contains(server), "{text}");
    Daemon::start_with(&text, &[("always.yaml", always("limits_watch"))], hook).await
}

fn addr(daemon: &Daemon) -> String {
    daemon.base.trim_start_matches("http://").to_string()
}

/// A connection that sent the start of a request and stopped.
async fn half_sent(addr: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ").as_bytes())
        .await
        .unwrap();
    stream
}

/// Reads until the server closes the connection (or resets it); fails after [`LIMIT`].
async fn closed_by_the_server(mut stream: TcpStream, what: &str) {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(LIMIT, stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "{what}: still open after {LIMIT:?}");
}

async fn healthz(daemon: &Daemon) -> bool {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    match client.get(daemon.url("/healthz")).send().await {
        Ok(response) => response.status().as_u16() == 200,
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_are_closed_after_the_header_timeout() {
    let daemon = daemon_with("header_timeout: 300ms, max_connections: 8").await;
    let addr = addr(&daemon);
    let mut held = Vec::new();
    for _ in 0..12 {
        held.push(("silent", TcpStream::connect(&addr).await.unwrap()));
        held.push(("half-sent", half_sent(&addr).await));
    }
    // A kept-alive connection that sent one whole request and then nothing.
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    kept.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    held.push(("kept-alive", kept));

    // Three times the cap is held open by clients, and the API still answers.
    eventually("/healthz to answer", || async {
        healthz(&daemon).await.then_some(())
    })
    .await;
    for (what, stream) in held {
        closed_by_the_server(stream, what).await;
    }
    daemon.stop().await;
}

/// The accept queue length of the IPv4 socket listening on `port` (Linux: `rx_queue` of a
/// listening socket in `/proc/net/tcp`).
#[cfg(target_os = "linux")]
fn accept_queue(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!(":{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let listening = fields.get(3) == Some(&"0A");
        if !(listening && fields.get(1)?.ends_with(&local)) {
            return None;
        }
        let (_, rx) = fields.get(4)?.split_once(':')?;
        u64::from_str_radix(rx, 16).ok()
    })
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_in_the_accept_queue() {
    let daemon = daemon_with("header_timeout: 1h, max_connections: 4").await;
    let addr = addr(&daemon);
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(half_sent(&addr).await);
    }
    // Four are served (and wait for their headers); six wait unaccepted.
    eventually("six connections in the accept queue", || async {
        (accept_queue(port) == Some(6)).then_some(())
    })
    .await;
    // Four clients give up: four more are accepted.
    held.drain(..4);
    eventually("two connections in the accept queue", || async {
        (accept_queue(port) == Some(2)).then_some(())
    })
    .await;
    held.clear();
    eventually("/healthz to answer", || async {
        healthz(&daemon).await.then_some(())
    })
    .await;
    assert_eq!(accept_queue(port), Some(0));
    daemon.stop().await;
}
