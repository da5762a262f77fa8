//! Bearer-token access to the status server, so it can listen beyond
//! loopback.
//!
//! With a token (`[health] token`, or `HALYARD_STATUS_TOKEN` when the config
//! gives none) every route needs it, the page at `/` and the event stream
//! included, as either:
//! - `Authorization: Bearer <token>` (`curl -H`, `halyard tail --token`);
//! - `Authorization: Basic …` with the token as the password (any user
//!   name): a browser asks for it once and sends it with every request the
//!   page makes, `EventSource` included, which cannot set headers itself.
//!
//! Anything else is answered 401 with both challenges, before any handler
//! runs. Tokens are compared in constant time and never logged.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use subtle::ConstantTimeEq;

use crate::config::IngestToken;

/// The environment variable that gives the token when `[health] token` is
/// not set.
pub const TOKEN_ENV: &str = "HALYARD_STATUS_TOKEN";

/// The token in force: the config's, else the environment's; `None` (open)
/// when neither is set or the variable is empty.
pub fn token_from(config: Option<&IngestToken>) -> Option<IngestToken> {
    config.cloned().or_else(|| {
        std::env::var(TOKEN_ENV)
            .ok()
            .filter(|t| !t.is_empty())
            .map(IngestToken::new)
    })
}

/// Whether `headers` carry `token`.
pub fn authorized(headers: &HeaderMap, token: &IngestToken) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    let presented: Vec<u8> = if scheme.eq_ignore_ascii_case("bearer") {
        rest.trim().as_bytes().to_vec()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else {
            return false;
        };
        match decoded.iter().position(|&b| b == b':') {
            Some(colon) => decoded[colon + 1..].to_vec(),
            None => return false,
        }
    } else {
        return false;
    };
    presented.ct_eq(token.expose().as_bytes()).into()
}

/// The middleware: passes authorized requests on, answers the rest 401.
pub async fn require(
    State(token): State<Option<IngestToken>>,
    request: Request,
    next: Next,
) -> Response {
    match &token {
        Some(token) if !authorized(request.headers(), token) => {
            let mut response = (
                StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({
                    "error": "this status server needs its token: `Authorization: Bearer <token>`"
                })),
            )
                .into_response();
            let challenges = response.headers_mut();
            challenges.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"halyard\""),
            );
            challenges.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"halyard\", charset=\"UTF-8\""),
            );
            response
        }
        _ => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn bearer_or_basic_password_and_nothing_else() {
        let token = IngestToken::new("s3cret-token");
        let basic = |cred: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(cred)
            )
        };
        assert!(authorized(&with("Bearer s3cret-token"), &token));
        assert!(authorized(&with("bearer  s3cret-token"), &token));
        assert!(authorized(&with(&basic("anyone:s3cret-token")), &token));
        assert!(authorized(&with(&basic(":s3cret-token")), &token));
        assert!(!authorized(&HeaderMap::new(), &token));
        assert!(!authorized(&with("Bearer s3cret-toke"), &token));
        assert!(!authorized(&with("Bearer s3cret-token2"), &token));
        assert!(!authorized(&with("s3cret-token"), &token));
        assert!(!authorized(&with(&basic("s3cret-token")), &token));
        assert!(!authorized(&with(&basic("s3cret-token:")), &token));
        assert!(!authorized(&with("Basic !!!"), &token));
    }
}
