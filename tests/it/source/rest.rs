//! The REST client against the simulator, and against a server that rate-limits.

use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use navixy_alerts::config::Secret;
use navixy_alerts::navixy::rest::{NavixyErrorCode, RestClient, RestError};

use super::*;

#[tokio::test]
async fn auth_and_tracker_list_against_the_simulator() {
    bounded(async {
        let sim = simulator(sim_options()).await;
        let rest = RestClient::new(&sim.api_url(), Duration::from_secs(5)).unwrap();
        let hash = rest
            .auth(sim.login(), &Secret::new(sim.password()))
            .await
            .unwrap();
        assert_eq!(hash.expose().len(), 32);
        assert_eq!(format!("{hash:?}"), "\"***\"", "hashes never print");
        let list = rest.tracker_list(&hash).await.unwrap();
        assert_eq!(list, sim.trackers());

        let err = rest
            .auth(sim.login(), &Secret::new("wrong"))
            .await
            .unwrap_err();
        assert_eq!(err.navixy_code(), Some(NavixyErrorCode::Other(102)));
        let err = rest
            .tracker_list(&Secret::new("0123456789abcdef0123456789abcdef"))
            .await
            .unwrap_err();
        assert_eq!(err.navixy_code(), Some(NavixyErrorCode::SessionEnded));
        assert!(err.is_auth());
        let err = rest.tracker_list(&Secret::new("short")).await.unwrap_err();
        assert_eq!(err.navixy_code(), Some(NavixyErrorCode::WrongHash));
        assert!(
            !err.to_string().contains("short"),
            "the hash is not in the message: {err}"
        );

        // After a logout the session hash is dead, and the API key still works.
        sim.logout();
        let err = rest.tracker_list(&hash).await.unwrap_err();
        assert!(err.is_auth());
        assert!(rest.tracker_list(&Secret::new(sim.api_key())).await.is_ok());
        sim.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn rate_limits_are_typed_with_their_retry_after() {
    bounded(async {
        let app = axum::Router::new()
            .route(
                "/v2/tracker/list",
                axum::routing::post(|| async {
                    (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "7")], "slow down").into_response()
                }),
            )
            .route(
                "/v2/user/auth",
                axum::routing::post(|| async {
                    axum::Json(serde_json::json!({"success": false, "status": {"code": 15, "description": "Too many requests"}}))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let rest = RestClient::new(&format!("http://{addr}/v2/"), Duration::from_secs(5)).unwrap();

        let err = rest.tracker_list(&Secret::new("h")).await.unwrap_err();
        assert!(matches!(err, RestError::RateLimited { .. }), "{err:?}");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
        let err = rest.auth("u", &Secret::new("p")).await.unwrap_err();
        assert!(err.is_rate_limited());
        assert_eq!(err.navixy_code(), Some(NavixyErrorCode::TooManyRequests));
        server.abort();
    })
    .await
}
