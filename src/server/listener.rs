//! The accept loop: how many connections the admin server holds, and for how long an idle
//! one may stay.
//!
//! `axum::serve` accepts every connection and waits for its request forever, so a client
//! that opens a thousand connections and sends half a request on each takes the process's
//! file descriptors (1,024 by default), and then the WebSocket, SQLite and the channels
//! fail with it. Here:
//! - at most `server.max_connections` are served at once; the others wait in the kernel's
//!   accept queue, costing this process no descriptor, until one ends;
//! - a connection must send its request headers within `server.header_timeout`, and on a
//!   kept-alive connection its next request within the same time (hyper's header read
//!   timeout), or it is closed;
//! - a request body must arrive within the same time ([`super::api::JsonBody`]).
//!
//! Only HTTP/1.1 is served: the API needs nothing more, and it keeps one timeout rule.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long the loop waits after an accept error that is not the client's (out of file
/// descriptors, say) before it tries again, instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The connection limits of `server:`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting, closes
/// idle connections, and waits for the requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        // A permit first: at the cap, connections stay in the accept queue.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    if !is_connection_error(&e) {
                        tracing::warn!(error = %e, "The admin API cannot accept a connection; trying again.");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "Admin API connection ended with an error.");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Errors of one connection (reset before it was accepted), not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}
