//! The cluster as the admin server tells it: the `cluster` part of `/readyz`, and the
//! small server a standby runs while it holds no source (`/healthz`, `/readyz`,
//! `/metrics`, and a page saying who runs what).
//!
//! A standby has no engine to ask nor alerts of its own to show: the full API and console
//! come up once it holds a source's lease.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio::sync::watch;

use super::api::ApiError;
use super::auth::{Auth, bearer};
use crate::cluster::ClusterView;
use crate::config::ServerConfig;

/// What the standby's routes read.
#[derive(Clone)]
pub struct StandbyState {
    /// The leases as last seen.
    pub cluster: watch::Receiver<ClusterView>,
    /// `None` when this process has no Prometheus recorder.
    pub metrics: Option<PrometheusHandle>,
    pub auth: Auth,
}

/// `/readyz` of a standby.
#[derive(Debug, Serialize)]
struct StandbyReadiness {
    /// A standby is ready while it can read the leases: it is there to take over.
    ready: bool,
    cluster: ClusterView,
}

/// The standby's routes: `/healthz` open, the rest behind the token like the full API.
pub fn standby_router(state: StandbyState, local: SocketAddr, server: &ServerConfig) -> Router {
    let access = Arc::new(super::Access::new(local, server.external_url.as_deref()));
    let guarded = Router::new()
        .route("/readyz", get(standby_readyz))
        .route("/metrics", get(standby_metrics))
        .route("/", get(standby_page))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(guarded)
        .with_state(state)
        .fallback(|| async {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "this instance is a standby: it runs no source yet (see /readyz for who does)",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            access,
            super::guard::check_host_and_origin,
        ))
}

/// Any configured token (every route here only reads); open without tokens.
async fn require_token(
    State(state): State<StandbyState>,
    request: Request,
    next: Next,
) -> Response {
    if !state.auth.required()
        || bearer(request.headers()).is_some_and(|t| state.auth.tokens.find(t).is_some())
    {
        return next.run(request).await;
    }
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "this endpoint needs `Authorization: Bearer <server.token>`",
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"navixy-alerts\""),
    );
    response
}

async fn standby_readyz(State(state): State<StandbyState>) -> Response {
    let cluster = state.cluster.borrow().clone();
    let ready = cluster.error.is_none();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(StandbyReadiness { ready, cluster })).into_response()
}

async fn standby_metrics(State(state): State<StandbyState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this process records no metrics",
        )
        .into_response(),
    }
}

/// A page for whoever opens the console of a standby: the cluster, and where to go.
async fn standby_page(State(state): State<StandbyState>) -> Html<String> {
    let view = state.cluster.borrow().clone();
    let mut rows = String::new();
    for lease in &view.sources {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&lease.source),
            escape(lease.owner.as_deref().unwrap_or("(nobody yet)")),
            lease.epoch,
            escape(lease.expires_at.as_deref().unwrap_or("")),
        ));
    }
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>navixy-alerts: standby</title></head>\
         <body><h1>{} is a standby</h1><p>It runs no source: the instance holding a source's lease \
         runs its alerts and the console. This one takes over a source whose lease runs out.</p>\
         <table><tr><th>Source</th><th>Owner</th><th>Epoch</th><th>Lease until</th></tr>{rows}</table>{}</body></html>",
        escape(&view.instance),
        view.error
            .as_deref()
            .map(|e| format!("<p>The leases cannot be read: {}</p>", escape(e)))
            .unwrap_or_default(),
    ))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Serves the standby's routes on `listener` until `shutdown` completes.
pub async fn run_standby(
    listener: tokio::net::TcpListener,
    state: StandbyState,
    server: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let limits = super::listener::Limits {
        header_timeout: server.header_timeout,
        max_connections: server.max_connections,
    };
    super::listener::serve(
        listener,
        standby_router(state, local, &server),
        limits,
        shutdown,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::SourceLease;
    use crate::config::Secret;

    #[tokio::test]
    async fn a_standby_says_who_runs_what_behind_the_token() {
        crate::navixy::rest::install_crypto_provider();
        let mut view = ClusterView::starting("b", &["navixy".to_string()]);
        view.sources[0] = SourceLease {
            source: "navixy".into(),
            owner: Some("a".into()),
            epoch: 3,
            expires_at: Some("2026-12-06T18:00:00.000Z".into()),
            live: true,
            held: false,
        };
        let (_keep, cluster) = watch::channel(view);
        let server = ServerConfig {
            token: Some(Secret::new("root")),
            ..ServerConfig::default()
        };
        let state = StandbyState {
            cluster,
            metrics: None,
            auth: Auth::from_config(&server),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run_standby(listener, state, server, async move {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::new();
        let get = |path: &str, token: Option<&str>| {
            let mut request = client.get(format!("http://{addr}{path}"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            async move {
                let response = request.send().await.unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            }
        };
        assert_eq!(get("/healthz", None).await, (200, "ok".into()));
        assert_eq!(get("/readyz", None).await.0, 401);
        let (status, body) = get("/readyz", Some("root")).await;
        assert_eq!(status, 200);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            serde_json::json!({
                "ready": true,
                "cluster": {
                    "instance": "b", "role": "standby", "owns": [],
                    "sources": [{
                        "source": "navixy", "owner": "a", "epoch": 3,
                        "expires_at": "2026-12-06T18:00:00.000Z", "live": true, "held": false
                    }]
                }
            })
        );
        let (status, body) = get("/api/v1/alerts", Some("root")).await;
        assert_eq!(status, 503);
        assert!(body.contains("this instance is a standby"), "{body}");
        assert_eq!(get("/metrics", Some("root")).await.0, 503);
        let _ = stop.send(());
        task.await.unwrap().unwrap();
    }
}
