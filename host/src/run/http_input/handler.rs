//! One request: route, authenticate, admit under `max_in_flight`, read the
//! body within its timeout and cap, hand the frames to the pipeline thread
//! and answer after its commit. Every check that needs only the headers
//! runs before a byte of the body is read.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::http::header::{
    ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::{HeaderValue, Method, Request, Response, StatusCode};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::json;
use tokio::sync::oneshot;

use super::auth::Verdict;
use super::body;
use super::results::{self, LineResult, MAX_RESULT_LINES};
use super::tally::Event;
use super::{Peer, Shared};
use crate::pipeline::{IngestReport, PipelineError, SharedFrames};
use crate::run::worker::Work;

/// The content type a frame gets when the request names none.
const DEFAULT_CONTENT_TYPE: &str = "application/x-ndjson";

/// Answers one request; never fails (a refusal is an answer).
pub async fn handle(
    shared: &Arc<Shared>,
    peer: &Peer,
    request: Request<Incoming>,
) -> Response<Body> {
    match shared.auth.check(request.headers()) {
        Verdict::Allowed => {}
        verdict => {
            shared.tally.note(Event::Unauthorized, peer);
            return Refusal::Unauthorized(verdict).into_response();
        }
    }
    let path = request.uri().path();
    if path != "/v1/ingest" && path != "/" {
        return Refusal::NotFound.into_response();
    }
    if request.method() != Method::POST {
        return Refusal::MethodNotAllowed.into_response();
    }
    match ingest(shared, request).await {
        Ok(answer) => Json(answer).into_response(),
        Err(refusal) => {
            match &refusal {
                Refusal::Busy => shared.tally.note(Event::Busy, peer),
                Refusal::BodyTimeout(_) => shared.tally.note(Event::BodyTimeout, peer),
                _ => {}
            }
            refusal.into_response()
        }
    }
}

/// The 200 answer: what happened to the request's frames, after the commit.
#[derive(Debug, Serialize)]
pub struct Answer {
    /// Events committed to the buffer.
    accepted: u64,
    /// Events a validator rejected (dead-lettered).
    rejected: u64,
    /// Lines that failed to decode (dead-lettered).
    decode_errors: u64,
    /// Events a privacy policy dropped, a sampler left out, or the buffer
    /// refused under `drop_newest`.
    dropped: u64,
    /// Each line's result, only when the request asked (`?results=lines`).
    #[serde(skip_serializing_if = "Option::is_none")]
    lines: Option<Vec<LineResult>>,
}

impl From<&IngestReport> for Answer {
    fn from(r: &IngestReport) -> Answer {
        Answer {
            accepted: r.accepted,
            rejected: r.rejected,
            decode_errors: r.decode_errors,
            dropped: r.privacy_dropped + r.sampled_out + r.buffer_dropped,
            lines: None,
        }
    }
}

/// A refused request; nothing of it was accepted.
#[derive(Debug)]
pub enum Refusal {
    /// No valid token (401); says whether one was sent at all.
    Unauthorized(Verdict),
    /// Neither `/v1/ingest` nor `/`.
    NotFound,
    /// Not a `POST`.
    MethodNotAllowed,
    /// `max_in_flight` requests are already being read or processed.
    Busy,
    /// The body did not arrive within `body_timeout_ms`.
    BodyTimeout(Duration),
    /// The body is not valid gzip, or could not be read.
    BadRequest(String),
    /// The body or its decompressed form exceeds the cap.
    TooLarge(usize),
    /// Per-line results were asked for more lines than a request may carry
    /// then ([`MAX_RESULT_LINES`]); nothing was run.
    TooManyLines(usize),
    /// A `Content-Encoding` this input does not read.
    UnsupportedEncoding(String),
    /// The buffer is full (`when_full = "block"`): retry later.
    BufferFull,
    /// The host is shutting down.
    ShuttingDown,
    /// Any other pipeline failure.
    Internal(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response<Body> {
        // Refused before the body was read whole: close the connection
        // rather than read what the client still sends.
        let close = matches!(
            self,
            Refusal::Unauthorized(_)
                | Refusal::Busy
                | Refusal::BodyTimeout(_)
                | Refusal::TooLarge(_)
                | Refusal::UnsupportedEncoding(_)
                | Refusal::NotFound
                | Refusal::MethodNotAllowed
        );
        let retry = matches!(self, Refusal::BufferFull | Refusal::Busy);
        let challenge = match &self {
            Refusal::Unauthorized(Verdict::Wrong) => {
                Some(r#"Bearer realm="halyard", error="invalid_token""#)
            }
            Refusal::Unauthorized(_) => Some(r#"Bearer realm="halyard""#),
            _ => None,
        };
        let allow = matches!(self, Refusal::MethodNotAllowed);
        let (status, code, message) = match self {
            Refusal::Unauthorized(_) => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong token: send `Authorization: Bearer <token>` or the API-key \
                 header; nothing was accepted"
                    .to_string(),
            ),
            Refusal::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "POST to /v1/ingest".to_string(),
            ),
            Refusal::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "POST to /v1/ingest".to_string(),
            ),
            Refusal::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many requests in flight; nothing was accepted, retry later".to_string(),
            ),
            Refusal::BodyTimeout(t) => (
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the body did not arrive within {} ms; nothing was accepted",
                    t.as_millis()
                ),
            ),
            Refusal::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m),
            Refusal::TooLarge(max) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("body or its decompressed form exceeds {max} bytes"),
            ),
            Refusal::TooManyLines(lines) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_lines",
                format!(
                    "{lines} lines with per-line results asked; at most {MAX_RESULT_LINES} per \
                     request (split the batch); nothing was accepted"
                ),
            ),
            Refusal::UnsupportedEncoding(e) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                format!("content-encoding {e:?} is not supported (use gzip or none)"),
            ),
            Refusal::BufferFull => (
                StatusCode::SERVICE_UNAVAILABLE,
                "buffer_full",
                "the buffer is full; nothing was accepted, retry later".to_string(),
            ),
            Refusal::ShuttingDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the host is shutting down; nothing was accepted".to_string(),
            ),
            Refusal::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", m),
        };
        let mut response =
            (status, Json(json!({ "error": code, "message": message }))).into_response();
        let headers = response.headers_mut();
        if retry {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(challenge) = challenge {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        if allow {
            headers.insert(ALLOW, HeaderValue::from_static("POST"));
        }
        if close {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// An authenticated `POST`: admit it, read it, decompress, split into
/// frames, hand them to the pipeline thread and answer after its commit.
async fn ingest(shared: &Arc<Shared>, request: Request<Incoming>) -> Result<Answer, Refusal> {
    let (parts, incoming) = request.into_parts();
    let per_line = results::asked(parts.uri.query());
    let headers = parts.headers;
    let max = shared.limits.max_body_bytes;
    let gzip = body::is_gzip(&headers)?;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(Refusal::TooLarge(max));
    }
    // Held until the answer: what is read and processed at once is bounded.
    let _slot = shared
        .in_flight
        .clone()
        .try_acquire_owned()
        .map_err(|_| Refusal::Busy)?;
    let raw = body::read(incoming, max, shared.limits.body_timeout, declared).await?;
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_CONTENT_TYPE)
        .to_string();
    let origin = shared.origin.clone();
    // Decompressing and splitting a large body is CPU work: off the async workers.
    type Split = (SharedFrames, Option<Vec<u32>>);
    let (frames, numbers) = tokio::task::spawn_blocking(move || -> Result<Split, Refusal> {
        let body = if gzip {
            let plain = body::gunzip(&raw, max)?;
            drop(raw);
            plain
        } else {
            raw
        };
        if per_line {
            let (frames, numbers) = body::numbered_frames(body, &content_type, &origin)?;
            if frames.len() > MAX_RESULT_LINES {
                return Err(Refusal::TooManyLines(frames.len()));
            }
            Ok((frames, Some(numbers)))
        } else {
            Ok((body::frames(body, &content_type, &origin)?, None))
        }
    })
    .await
    .map_err(|e| Refusal::Internal(format!("reading the body failed: {e}")))??;
    if frames.is_empty() {
        let mut answer = Answer::from(&IngestReport::default());
        answer.lines = numbers.map(|_| Vec::new());
        return Ok(answer);
    }

    let (reply, answer) = oneshot::channel();
    let (outcomes, traced) = match numbers {
        Some(numbers) => {
            let (to, from) = oneshot::channel();
            (Some(to), Some((from, numbers)))
        }
        None => (None, None),
    };
    let sent = shared.sender().is_some_and(|work| {
        work.send(Work::SharedFrames {
            input: shared.name.clone(),
            frames,
            outcomes,
            reply,
        })
        .is_ok()
    });
    if !sent {
        return Err(Refusal::ShuttingDown);
    }
    match answer.await {
        Ok(Ok(report)) => {
            let mut answer = Answer::from(&report);
            if let Some((from, numbers)) = traced {
                // Sent before the report, so already here. Never missing
                // in practice; if it were, the events are committed all
                // the same, so the answer stays 2xx (without `lines`).
                match from.await {
                    Ok(outcomes) => answer.lines = Some(results::render(outcomes, &numbers)),
                    Err(_) => tracing::error!(input = %shared.name,
                        "committed, but the pipeline sent no per-line results"),
                }
            }
            Ok(answer)
        }
        Ok(Err(PipelineError::Buffer(halyard_buffer::BufferError::Full { .. }))) => {
            tracing::debug!(input = %shared.name, "buffer full; answering 503");
            Err(Refusal::BufferFull)
        }
        // Past the stop deadline: nothing of it was accepted.
        Ok(Err(PipelineError::ShuttingDown)) => Err(Refusal::ShuttingDown),
        Ok(Err(err)) => {
            tracing::error!(input = %shared.name, error = %err, "request not accepted");
            Err(Refusal::Internal(err.to_string()))
        }
        Err(_) => Err(Refusal::ShuttingDown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_sums_what_was_dropped() {
        let report = IngestReport {
            accepted: 5,
            decode_errors: 1,
            rejected: 2,
            privacy_dropped: 3,
            sampled_out: 4,
            buffer_dropped: 6,
            buffer_evicted: 7,
            detected: 0,
            detector_failures: 0,
        };
        let a = Answer::from(&report);
        assert_eq!(
            (a.accepted, a.rejected, a.decode_errors, a.dropped),
            (5, 2, 1, 13)
        );
    }

    #[test]
    fn refusals_carry_their_headers() {
        let r = Refusal::Unauthorized(Verdict::Wrong).into_response();
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()[WWW_AUTHENTICATE],
            r#"Bearer realm="halyard", error="invalid_token""#
        );
        assert_eq!(r.headers()[CONNECTION], "close");
        let r = Refusal::Unauthorized(Verdict::Missing).into_response();
        assert_eq!(r.headers()[WWW_AUTHENTICATE], r#"Bearer realm="halyard""#);
        let r = Refusal::Busy.into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[RETRY_AFTER], "1");
        let r = Refusal::BodyTimeout(Duration::from_millis(5)).into_response();
        assert_eq!(r.status(), 408);
        assert_eq!(r.headers()[CONNECTION], "close");
        let r = Refusal::BufferFull.into_response();
        assert!(r.headers().get(CONNECTION).is_none(), "the body was read");
    }
}
