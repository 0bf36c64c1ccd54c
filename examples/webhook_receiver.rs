//! A tiny webhook receiver that verifies navixy-alerts' Standard Webhooks signatures.
//!
//! ```text
//! cargo run --example webhook_receiver -- 127.0.0.1:8080 whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD
//! ```
//! Point a `webhook` channel at `http://127.0.0.1:8080/` with the same secret. Each
//! notification is printed once: a retry of an id already seen is acknowledged and
//! skipped, which is how a receiver turns at-least-once delivery into exactly-once effects.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use navixy_alerts::dispatch::channels::webhook;

/// Requests whose timestamp is further than this from our clock are refused (replays).
const TOLERANCE_SECS: i64 = 300;

struct Receiver {
    key: Vec<u8>,
    seen: Mutex<HashSet<String>>,
}

async fn receive(State(rx): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let id = header("webhook-id");
    let Ok(timestamp) = header("webhook-timestamp").parse::<i64>() else {
        return StatusCode::BAD_REQUEST;
    };
    if (chrono::Utc::now().timestamp() - timestamp).abs() > TOLERANCE_SECS {
        eprintln!("{id}: timestamp too far from now, refused");
        return StatusCode::UNAUTHORIZED;
    }
    if !webhook::verify(&rx.key, id, timestamp, &body, header("webhook-signature")) {
        eprintln!("{id}: bad signature, refused");
        return StatusCode::UNAUTHORIZED;
    }
    let first_time = rx
        .seen
        .lock()
        .map(|mut s| s.insert(id.to_owned()))
        .unwrap_or(true);
    if !first_time {
        eprintln!("{id}: already seen, acknowledged again");
        return StatusCode::NO_CONTENT;
    }
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(n) => {
            let data = &n["data"];
            println!(
                "{id} {} {} ({}): {} alert(s)",
                n["type"].as_str().unwrap_or("?"),
                data["group_key"].as_str().unwrap_or("?"),
                data["reason"].as_str().unwrap_or("?"),
                data["alerts"].as_array().map_or(0, Vec::len)
            );
            for a in data["alerts"].as_array().into_iter().flatten() {
                println!(
                    "  {} {} {} tracker={} {}",
                    a["status"].as_str().unwrap_or("?"),
                    a["rule"].as_str().unwrap_or("?"),
                    a["severity"].as_str().unwrap_or("?"),
                    a["tracker"]["id"],
                    a["annotations"]["summary"].as_str().unwrap_or("")
                );
            }
            StatusCode::NO_CONTENT
        }
        Err(e) => {
            eprintln!("{id}: not JSON: {e}");
            StatusCode::BAD_REQUEST
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(secret)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: webhook_receiver ADDR whsec_SECRET");
    };
    let key = webhook::decode_secret(&secret).map_err(anyhow::Error::msg)?;
    let state = Arc::new(Receiver {
        key,
        seen: Mutex::new(HashSet::new()),
    });
    let app = axum::Router::new().fallback(receive).with_state(state);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
