//! `GET /`: the status page, for an operator on site with a browser and
//! nothing else. One self-contained HTML file (inline CSS and vanilla JS, no
//! CDN, no build step), compiled into the binary: it polls `health` every
//! 2 s (verdict and reasons, buffer, breakers, licence, every plugin with
//! its version, hash, state, calls, traps and p50/p99 call time), draws each
//! stage's in/out/rejected/dropped rates over the last 3 minutes from the
//! differences between polls, and follows `events/stream` with kind and
//! source filters. It uses relative URLs, so it works behind a path prefix,
//! and sets text only through `textContent`: a plugin name or an event
//! cannot inject markup.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The page itself.
pub const PAGE: &str = include_str!("page.html");

/// Serves [`PAGE`]. It is static; what it shows comes from the other
/// routes, which the same token protects.
pub async fn get_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src 'self' data:",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}
