//! The error answers: a status and a small JSON body a sender can log.

use axum::Json;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ReceiverError;

/// A request the receiver refuses. Each variant is one status code, so the
/// host's transport can tell "fix the sender" (400, 401, 413, 415) from "try
/// again later" (503).
#[derive(Debug)]
pub(crate) enum ApiError {
    /// The body is not what the wire format says; nothing was stored.
    BadRequest(String),
    /// Some events are refused (each named by index in `events`, with why);
    /// nothing was stored. The sender may drop just these and re-send the
    /// rest.
    EventsRejected(Vec<(usize, String)>),
    /// More events than `max_batch_events`; nothing was stored.
    TooManyEvents { events: usize, limit: usize },
    /// An API key is configured and the request's is missing or wrong.
    Unauthorized,
    /// The body, or its decompressed form, exceeds `max_body_bytes`.
    TooLarge(usize),
    /// A `Content-Encoding` other than gzip or identity.
    UnsupportedEncoding(String),
    /// The store failed; the batch was not committed and may be re-sent.
    Unavailable,
    /// The batch's provenance signature is missing (when required), made
    /// by an unknown key, or does not match the body (tampered).
    Forbidden(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::EventsRejected(_) => StatusCode::BAD_REQUEST,
            Self::TooManyEvents { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) | Self::EventsRejected(_) => "bad_request",
            Self::TooManyEvents { .. } => "payload_too_large",
            Self::Unauthorized => "unauthorized",
            Self::TooLarge(_) => "payload_too_large",
            Self::UnsupportedEncoding(_) => "unsupported_encoding",
            Self::Unavailable => "store_unavailable",
            Self::Forbidden(_) => "provenance_refused",
        }
    }

    fn message(&self) -> String {
        match self {
            Self::BadRequest(reason) => reason.clone(),
            Self::EventsRejected(events) => match events.first() {
                Some((index, reason)) => format!(
                    "{} event(s) refused, the first events[{index}]: {reason}",
                    events.len()
                ),
                None => "events refused".to_owned(),
            },
            Self::TooManyEvents { events, limit } => {
                format!("{events} events in one batch; at most {limit} are accepted")
            }
            Self::Unauthorized => "missing or wrong API key".to_owned(),
            Self::TooLarge(limit) => {
                format!("body or its decompressed form exceeds {limit} bytes")
            }
            Self::UnsupportedEncoding(encoding) => {
                format!("content-encoding {encoding:?} is not supported (use gzip or none)")
            }
            Self::Unavailable => "the store failed; nothing was stored, retry later".to_owned(),
            Self::Forbidden(reason) => reason.clone(),
        }
    }
}

impl From<ReceiverError> for ApiError {
    fn from(error: ReceiverError) -> Self {
        tracing::warn!(error = %error, "store failed; answering 503");
        Self::Unavailable
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.code(), "message": self.message() });
        if let Self::EventsRejected(events) = &self {
            body["rejected"] = events
                .iter()
                .map(|(index, reason)| json!({"index": index, "reason": reason}))
                .collect();
        }
        let mut response = (self.status(), Json(body)).into_response();
        if matches!(self, Self::Unavailable) {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
