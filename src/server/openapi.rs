//! The OpenAPI 3.1 document of the admin API, served at `/api/v1/openapi.json`.
//!
//! It is built from the same `OpenApiRouter` that serves the routes ([`super::routes`]):
//! a handler is only reachable if it was registered with its `#[utoipa::path]`, so the
//! document cannot list a route that does not exist nor miss one that does. Built once,
//! on the first request.

use std::sync::LazyLock;

use utoipa::Modify;
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

/// The parts of the document that are not a route: its title, the bearer scheme.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "navixy-alerts admin API",
        description = "Health, metrics, live alerts, the alert history and its event stream, \
                       trackers, silences, the outbox and rule reloads. With `server.token` or \
                       `server.tokens` set, every endpoint but `/healthz` needs \
                       `Authorization: Bearer <token>`; a viewer's token reads, an operator's \
                       also silences and acknowledges, an admin's may do anything (else 403)."
    ),
    modifiers(&BearerToken),
    security(("bearer" = [])),
    components(schemas(super::api::ErrorBody))
)]
struct Base;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`server.token`"))
                    .build(),
            ),
        );
    }
}

/// The base document, for [`super::routes`] to add its paths to.
pub fn base() -> OpenApi {
    Base::openapi()
}

/// The whole document.
pub fn document() -> OpenApi {
    super::routes().into_openapi()
}

/// The document as JSON, built once.
pub fn json() -> &'static str {
    static JSON: LazyLock<String> = LazyLock::new(|| {
        document()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"the document does not serialize: {e}\"}}"))
    });
    &JSON
}
