//! The console's static files, embedded in the binary: our stylesheet and script, and
//! Leaflet 1.9.4 (BSD-2-Clause, `static/LICENSE-leaflet`) as published on npm.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// (name, content type, bytes).
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("static/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("static/console.js"),
    ),
    (
        "leaflet.js",
        "text/javascript; charset=utf-8",
        include_bytes!("static/leaflet.js"),
    ),
    (
        "leaflet.css",
        "text/css; charset=utf-8",
        include_bytes!("static/leaflet.css"),
    ),
    (
        "LICENSE-leaflet",
        "text/plain; charset=utf-8",
        include_bytes!("static/LICENSE-leaflet"),
    ),
];

/// `GET /console/static/{file}`: cached for an hour (the binary's version is the file's).
pub async fn file(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, format!("no static file `{name}`")).into_response(),
    }
}
