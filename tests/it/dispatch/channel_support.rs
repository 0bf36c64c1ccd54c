//! A provider's receiver on 127.0.0.1:0 for the channel tests: it records every request
//! and answers what the test's handler says (which checks the provider's documented
//! request shape and answers as the provider would). Also a channel built from YAML.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;

use navixy_alerts::dispatch::Channel;
use navixy_alerts::dispatch::channels::http_client;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Request {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// The answer: a status, extra headers, a body.
pub type Answer = (u16, Vec<(&'static str, String)>, String);
type Handler = dyn Fn(&Request, usize) -> Answer + Send + Sync;

#[derive(Clone)]
pub struct Provider {
    pub base: String,
    requests: Arc<Mutex<Vec<Request>>>,
    handler: Arc<Handler>,
}

async fn handle(
    State(p): State<Provider>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = Request {
        method,
        path: uri.path().to_owned(),
        headers,
        body,
    };
    let n = {
        let mut requests = p.requests.lock();
        requests.push(request.clone());
        requests.len() - 1
    };
    let (status, headers, body) = (p.handler)(&request, n);
    let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
    for (name, value) in headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

impl Provider {
    /// `handler(request, index)`: index counts requests from 0.
    pub async fn start(
        handler: impl Fn(&Request, usize) -> Answer + Send + Sync + 'static,
    ) -> Provider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let provider = Provider {
            base: format!("http://{}", listener.local_addr().unwrap()),
            requests: Arc::default(),
            handler: Arc::new(handler),
        };
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(provider.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        provider
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().clone()
    }
}

/// A channel from one YAML flow mapping, as `channels.<name>` would hold it.
pub fn channel(name: &str, yaml: &str) -> Channel {
    let config: navixy_alerts::config::ChannelConfig = serde_saphyr::from_str(yaml).unwrap();
    Channel::build(name, &config, &http_client().unwrap()).unwrap()
}

/// A JSON answer.
pub fn json(status: u16, body: serde_json::Value) -> Answer {
    (
        status,
        vec![("content-type", "application/json".into())],
        body.to_string(),
    )
}
