//! The `http` input: an ingest endpoint. A client `POST`s a body of frames,
//! one per line, to `/v1/ingest` (or `/`); each line goes to the input's
//! decoder and through the stage chains like a file line.
//!
//! Invariant: **2xx means committed.** The answer is sent only after the
//! pipeline thread has replied for the request's frames, i.e. after its
//! events are committed to the buffer (or rejected, dead-lettered, dropped
//! by a policy; the counts say which). A client that got 2xx may forget
//! what it sent. Any other answer means none of the request's events were
//! accepted, so the client may send it again:
//!
//! | answer | when |
//! |---|---|
//! | 200 `{"accepted","rejected","decode_errors","dropped"}` | committed |
//! | 400 | the body is not valid gzip |
//! | 413 | the body, or its decompressed form, exceeds the cap (16 MiB) |
//! | 415 | a `Content-Encoding` other than gzip or identity |
//! | 503 + `Retry-After: 1` | the buffer is full and refuses the batch (`when_full = "block"`) |
//! | 503 | the host is shutting down |
//! | 500 | any other pipeline failure, with the message |
//!
//! Lines are split on `\n`; a trailing `\r` is stripped and blank lines are
//! skipped. Frames from this input carry no stable key: each event gets a
//! fresh id, so a request re-sent after a lost 2xx is stored twice.
//!
//! Shutdown: when the stop signal turns true the server stops accepting
//! connections and lets requests in flight finish (for at most
//! [`SHUTDOWN_GRACE`]); the pipeline thread still answers them, so a request
//! that was handed over is still answered after its commit.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use flate2::read::MultiGzDecoder;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use super::worker::Work;
use crate::pipeline::{IngestReport, KeyedFrame, PipelineError};
use crate::plugin::Frame;

/// The default cap on a request body, before and after decompression.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 << 20;
/// How long requests in flight may take to finish once the input is asked
/// to stop; connections still open after that are dropped unanswered.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The content type a frame gets when the request names none.
const DEFAULT_CONTENT_TYPE: &str = "application/x-ndjson";

/// An http input whose socket is bound but which does not serve yet: split
/// from [`HttpInput::run`] so that a port in use fails `halyard run` at
/// start, before anything else runs.
pub struct HttpInput {
    name: String,
    listener: TcpListener,
    local_addr: SocketAddr,
    max_body_bytes: usize,
}

impl HttpInput {
    /// Binds `listen` for the input `name`.
    pub async fn bind(name: &str, listen: SocketAddr) -> std::io::Result<HttpInput> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        Ok(HttpInput {
            name: name.to_string(),
            listener,
            local_addr,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        })
    }

    /// The address actually bound (the real port when the config said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `stop` turns true, then stops accepting, lets requests
    /// in flight finish (at most [`SHUTDOWN_GRACE`]) and drops its sender,
    /// so the pipeline thread can stop once it has answered them.
    pub async fn run(self, work: Sender<Work>, stop: watch::Receiver<bool>) {
        let state = Arc::new(Shared {
            name: self.name.clone(),
            origin: format!("http:{}", self.name),
            work: Mutex::new(Some(work)),
            max_body_bytes: self.max_body_bytes,
        });
        let app = Router::new()
            .route("/v1/ingest", post(ingest))
            .route("/", post(ingest))
            .layer(DefaultBodyLimit::disable())
            .with_state(state.clone());
        tracing::info!(input = %self.name, listen = %self.local_addr, "http input serving");
        let serve = axum::serve(self.listener, app)
            .with_graceful_shutdown(stopped(stop.clone()))
            .into_future();
        let grace = async {
            stopped(stop).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            result = serve => {
                if let Err(err) = result {
                    tracing::error!(input = %self.name, error = %err, "http input failed");
                }
            }
            () = grace => {
                tracing::warn!(
                    input = %self.name,
                    "http input: requests still open after the shutdown grace; dropping them"
                );
            }
        }
        // Connections dropped above may still run on their own tasks; they
        // find no sender and answer 503, and none keeps the pipeline alive.
        state.take_sender();
        tracing::info!(input = %self.name, "http input stopped");
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// What every request needs.
struct Shared {
    name: String,
    origin: String,
    /// The way to the pipeline thread; `None` once the input stopped.
    work: Mutex<Option<Sender<Work>>>,
    max_body_bytes: usize,
}

impl Shared {
    /// A sender for one request, if the input still runs. Clones are held
    /// only while sending, so taking this one releases the pipeline.
    fn sender(&self) -> Option<Sender<Work>> {
        self.work
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn take_sender(&self) {
        self.work
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }
}

/// The 200 answer: what happened to the request's frames, after the commit.
#[derive(Debug, Serialize)]
struct Answer {
    /// Events committed to the buffer.
    accepted: u64,
    /// Events a validator rejected (dead-lettered).
    rejected: u64,
    /// Lines that failed to decode (dead-lettered).
    decode_errors: u64,
    /// Events a privacy policy dropped, a sampler left out, or the buffer
    /// refused under `drop_newest`.
    dropped: u64,
}

impl From<&IngestReport> for Answer {
    fn from(r: &IngestReport) -> Answer {
        Answer {
            accepted: r.accepted,
            rejected: r.rejected,
            decode_errors: r.decode_errors,
            dropped: r.privacy_dropped + r.sampled_out + r.buffer_dropped,
        }
    }
}

/// A refused request; nothing of it was accepted.
#[derive(Debug)]
enum Refusal {
    /// The body is not valid gzip.
    BadRequest(String),
    /// The body or its decompressed form exceeds the cap.
    TooLarge(usize),
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
    fn into_response(self) -> Response {
        let retry = matches!(self, Refusal::BufferFull);
        let (status, code, message) = match self {
            Refusal::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m),
            Refusal::TooLarge(max) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("body or its decompressed form exceeds {max} bytes"),
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
        if retry {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// `POST /v1/ingest`: read at most the cap, decompress, split into frames,
/// hand them to the pipeline thread and answer after its commit.
async fn ingest(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Answer>, Refusal> {
    let max = shared.max_body_bytes;
    let gzip = is_gzip(&headers)?;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(Refusal::TooLarge(max));
    }
    let raw = Limited::new(body, max)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                Refusal::TooLarge(max)
            } else {
                Refusal::BadRequest(format!("could not read the body: {e}"))
            }
        })?
        .to_bytes();
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_CONTENT_TYPE)
        .to_string();
    let origin = shared.origin.clone();
    // Decompressing and splitting a large body is CPU work: off the async workers.
    let frames = tokio::task::spawn_blocking(move || -> Result<Vec<KeyedFrame>, Refusal> {
        let body = if gzip { gunzip(&raw, max)? } else { raw };
        Ok(frames(&body, &content_type, &origin))
    })
    .await
    .map_err(|e| Refusal::Internal(format!("reading the body failed: {e}")))??;
    if frames.is_empty() {
        return Ok(Json(Answer::from(&IngestReport::default())));
    }

    let (reply, answer) = oneshot::channel();
    let sent = shared.sender().is_some_and(|work| {
        work.send(Work::Frames {
            input: shared.name.clone(),
            frames,
            position: None,
            reply,
        })
        .is_ok()
    });
    if !sent {
        return Err(Refusal::ShuttingDown);
    }
    match answer.await {
        Ok(Ok(report)) => Ok(Json(Answer::from(&report))),
        Ok(Err(PipelineError::Buffer(halyard_buffer::BufferError::Full { .. }))) => {
            tracing::debug!(input = %shared.name, "buffer full; answering 503");
            Err(Refusal::BufferFull)
        }
        Ok(Err(err)) => {
            tracing::error!(input = %shared.name, error = %err, "request not accepted");
            Err(Refusal::Internal(err.to_string()))
        }
        Err(_) => Err(Refusal::ShuttingDown),
    }
}

/// Whether the body is gzip, from `Content-Encoding`.
fn is_gzip(headers: &HeaderMap) -> Result<bool, Refusal> {
    let Some(value) = headers.get(CONTENT_ENCODING) else {
        return Ok(false);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text.eq_ignore_ascii_case("gzip") || text.eq_ignore_ascii_case("x-gzip") {
        Ok(true)
    } else if text.is_empty() || text.eq_ignore_ascii_case("identity") {
        Ok(false)
    } else {
        Err(Refusal::UnsupportedEncoding(
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        ))
    }
}

/// Decompresses, never producing more than `max` bytes: a gzip bomb is cut
/// off at `max + 1` bytes and refused, whatever it would expand to.
fn gunzip(body: &[u8], max: usize) -> Result<Bytes, Refusal> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max));
    MultiGzDecoder::new(body)
        .take((max as u64).saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| Refusal::BadRequest(format!("body is not valid gzip: {e}")))?;
    if out.len() > max {
        return Err(Refusal::TooLarge(max));
    }
    Ok(Bytes::from(out))
}

/// One frame per line: split on `\n`, a trailing `\r` stripped, blank
/// lines skipped. The last line needs no `\n`.
fn frames(body: &[u8], content_type: &str, origin: &str) -> Vec<KeyedFrame> {
    body.split(|b| *b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(|line| KeyedFrame {
            frame: Frame {
                data: line.to_vec(),
                content_type: content_type.to_string(),
                origin: origin.to_string(),
            },
            key: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn lines(body: &[u8]) -> Vec<Vec<u8>> {
        frames(body, "t", "http:x")
            .into_iter()
            .map(|f| f.frame.data)
            .collect()
    }

    #[test]
    fn lines_split_on_newline_strip_cr_and_skip_blanks() {
        assert_eq!(
            lines(b"a\r\n\n  \r\nb\nc"),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        assert!(lines(b"").is_empty());
        assert!(lines(b"\n\r\n").is_empty());
        let f = &frames(b"x", "text/plain", "http:web")[0];
        assert_eq!(
            (
                f.frame.content_type.as_str(),
                f.frame.origin.as_str(),
                f.key
            ),
            ("text/plain", "http:web", None)
        );
    }

    #[test]
    fn gzip_is_capped_after_decompression() {
        let gz = |data: &[u8]| {
            let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
            enc.write_all(data).expect("write to memory");
            enc.finish().expect("finish gzip")
        };
        let zeros = vec![0u8; 1 << 20];
        assert!(matches!(
            gunzip(&gz(&zeros), 1000),
            Err(Refusal::TooLarge(1000))
        ));
        assert_eq!(
            gunzip(&gz(&zeros[..1000]), 1000).map(|b| b.len()).ok(),
            Some(1000)
        );
        assert!(matches!(
            gunzip(b"not gzip", 1000),
            Err(Refusal::BadRequest(_))
        ));
    }

    #[test]
    fn only_gzip_and_identity_encodings_are_read() {
        let mut h = HeaderMap::new();
        assert!(matches!(is_gzip(&h), Ok(false)));
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("GZIP"));
        assert!(matches!(is_gzip(&h), Ok(true)));
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert!(matches!(is_gzip(&h), Err(Refusal::UnsupportedEncoding(_))));
    }

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
        };
        let a = Answer::from(&report);
        assert_eq!(
            (a.accepted, a.rejected, a.decode_errors, a.dropped),
            (5, 2, 1, 13)
        );
    }
}
