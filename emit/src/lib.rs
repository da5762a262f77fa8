//! `halyard-emit`: hand events from an application to a Halyard host and
//! learn, per event, what became of each — accepted (with the id the host
//! gave it), rejected by a validator (with the reason), dropped by a
//! privacy policy, sampled out, or not decodable.
//!
//! ```no_run
//! # async fn run() -> Result<(), halyard_emit::EmitError> {
//! use halyard_emit::{Client, EventResult};
//! let client = Client::new("unix:/run/halyard/ingest.sock")?; // or "http://127.0.0.1:8080"
//! let event = serde_json::json!({"device": "pump-1", "metric": "temp", "value": 21.5, "ts": 1700000000000u64});
//! match client.emit(&event).await? {
//!     EventResult::Accepted { id } => println!("stored as {id}"),
//!     other => println!("not stored: {other:?}"),
//! }
//! # Ok(()) }
//! ```
//!
//! Each event is sent as one JSON line to the host's http input (over TCP
//! or its Unix socket, the same HTTP/1.1 either way) with
//! `?results=lines`; the host answers only after its commit, so an
//! `Accepted` event is durable in the host's buffer. The host's decoder
//! decides how a line becomes an event (the example `jsonl-decoder` reads
//! `device`, `metric`, `value`, `ts`, …).
//!
//! Retries: a 503 (the host's buffer is full, or it is busy) or 429 means
//! nothing was stored, so the request is sent again after the host's
//! `Retry-After`, within [`RetryPolicy`]'s attempts and time. So is a
//! connection that could not be made. A connection that fails *after* the
//! request was sent is not retried ([`EmitError::Interrupted`]): the host
//! may have stored the events, and a retry could store them twice.

#![deny(missing_docs)]

mod error;
mod result;
mod transport;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

pub use error::EmitError;
pub use result::EventResult;
use transport::{Failure, Target};

/// The most events one request may carry when it asks for per-event
/// results (the host refuses more with 413 `too_many_lines`).
pub const MAX_BATCH_EVENTS: usize = 10_000;

/// When and how often a refused or unreachable request is sent again.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: never retry).
    pub max_attempts: u32,
    /// Time from the first attempt after which no retry starts.
    pub max_elapsed: Duration,
    /// The wait before a retry when the host gave no `Retry-After` (or the
    /// connection failed); doubled after each such retry.
    pub initial_delay: Duration,
    /// The longest single wait, whatever `Retry-After` says.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 8 attempts within 60 s, 200 ms first wait, 10 s longest.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            max_elapsed: Duration::from_secs(60),
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// One retry about to happen, for [`Client::on_retry`].
#[derive(Debug, Clone)]
pub struct Retry {
    /// The attempt that failed (from 1).
    pub attempt: u32,
    /// Why: `503 buffer_full`, `429 …`, or the connection error.
    pub reason: String,
    /// How long the client waits before the next attempt.
    pub wait: Duration,
}

/// A batch's results and how many attempts it took.
#[derive(Debug, Clone)]
pub struct BatchReport {
    /// One result per event, in the order given.
    pub results: Vec<EventResult>,
    /// Attempts made (1: no retry was needed).
    pub attempts: u32,
}

type RetryHook = Arc<dyn Fn(&Retry) + Send + Sync>;

/// A client of one host's http input. Cheap to clone; each request uses a
/// fresh connection.
#[derive(Clone)]
pub struct Client {
    target: Target,
    token: Option<String>,
    retry: RetryPolicy,
    timeout: Duration,
    max_answer_bytes: usize,
    on_retry: Option<RetryHook>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Client")
            .field("target", &self.target.to_string())
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Client {
    /// A client for `endpoint`: `http://host:port` (path `/v1/ingest`),
    /// `http://host:port/path`, `unix:/path/to/socket` or an absolute
    /// socket path. (No TLS: for a host on the same machine or network.)
    pub fn new(endpoint: &str) -> Result<Client, EmitError> {
        let bad = |reason| EmitError::Endpoint {
            endpoint: endpoint.to_string(),
            reason,
        };
        let target = if let Some(rest) = endpoint.strip_prefix("http://") {
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/v1/ingest"),
            };
            if authority.is_empty() || !authority.contains(':') {
                return Err(bad("give host:port, e.g. http://127.0.0.1:8080"));
            }
            if path.contains('?') || path.contains('#') {
                return Err(bad("the path may not carry a query or fragment"));
            }
            Target::Tcp {
                authority: authority.to_string(),
                path: path.to_string(),
            }
        } else {
            let path = endpoint.strip_prefix("unix:").unwrap_or(endpoint);
            if !path.starts_with('/') {
                return Err(bad(
                    "expected http://host:port[/path], unix:/path or an absolute socket path",
                ));
            }
            Target::Unix(PathBuf::from(path))
        };
        Ok(Client {
            target,
            token: None,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(120),
            max_answer_bytes: 16 << 20,
            on_retry: None,
        })
    }

    /// Sends `token` as `Authorization: Bearer` (for an input with
    /// `auth = { tokens = [...] }`).
    pub fn with_token(mut self, token: impl Into<String>) -> Client {
        self.token = Some(token.into());
        self
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Client {
        self.retry = retry;
        self
    }

    /// The most one attempt may take, from connecting to the end of the
    /// answer (default 120 s: the host's body timeout plus its commit).
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// Calls `hook` before each retry (to log it, or count it).
    pub fn on_retry(mut self, hook: impl Fn(&Retry) + Send + Sync + 'static) -> Client {
        self.on_retry = Some(Arc::new(hook));
        self
    }

    /// Emits one event; its result.
    pub async fn emit<T: Serialize>(&self, event: &T) -> Result<EventResult, EmitError> {
        let mut report = self.emit_batch_report(std::slice::from_ref(event)).await?;
        report
            .results
            .pop()
            .ok_or_else(|| EmitError::BadAnswer("no result".into()))
    }

    /// Emits `events` in one request (at most [`MAX_BATCH_EVENTS`]); one
    /// result per event, in order. All or nothing: on `Err` none of them
    /// was stored, except as [`EmitError`] says otherwise.
    pub async fn emit_batch<T: Serialize>(
        &self,
        events: &[T],
    ) -> Result<Vec<EventResult>, EmitError> {
        Ok(self.emit_batch_report(events).await?.results)
    }

    /// Like [`Client::emit_batch`], also saying how many attempts it took.
    pub async fn emit_batch_report<T: Serialize>(
        &self,
        events: &[T],
    ) -> Result<BatchReport, EmitError> {
        if events.len() > MAX_BATCH_EVENTS {
            return Err(EmitError::BatchTooLarge {
                got: events.len(),
                max: MAX_BATCH_EVENTS,
            });
        }
        if events.is_empty() {
            return Ok(BatchReport {
                results: Vec::new(),
                attempts: 0,
            });
        }
        let body = lines(events)?;
        let started = Instant::now();
        let mut backoff = self.retry.initial_delay;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let exchange = transport::exchange(
                &self.target,
                self.token.as_deref(),
                body.clone(),
                self.max_answer_bytes,
            );
            let (reason, asked) = match tokio::time::timeout(self.timeout, exchange).await {
                Err(_) => return Err(EmitError::Timeout(self.timeout)),
                Ok(Err(Failure::Exchange(message))) => {
                    return Err(EmitError::Interrupted {
                        target: self.target.to_string(),
                        message,
                    });
                }
                Ok(Err(Failure::Connect(source))) => {
                    if attempt >= self.retry.max_attempts {
                        return Err(EmitError::Connect {
                            target: self.target.to_string(),
                            source,
                        });
                    }
                    (format!("connect: {source}"), None)
                }
                Ok(Ok(reply)) if (200..300).contains(&reply.status) => {
                    let results = result::per_event(&reply.body, events.len())
                        .map_err(EmitError::BadAnswer)?;
                    return Ok(BatchReport {
                        results,
                        attempts: attempt,
                    });
                }
                Ok(Ok(reply)) => {
                    let refusal: result::Refusal =
                        serde_json::from_slice(&reply.body).unwrap_or_default();
                    if !matches!(reply.status, 503 | 429) {
                        return Err(EmitError::Refused {
                            status: reply.status,
                            code: refusal.error,
                            message: refusal.message,
                        });
                    }
                    let asked = reply
                        .retry_after
                        .as_deref()
                        .and_then(transport::retry_after);
                    (format!("{} {}", reply.status, refusal.error), asked)
                }
            };
            let wait = asked.unwrap_or(backoff).min(self.retry.max_delay);
            if asked.is_none() {
                backoff = (backoff * 2).min(self.retry.max_delay);
            }
            let elapsed = started.elapsed();
            if attempt >= self.retry.max_attempts || elapsed + wait > self.retry.max_elapsed {
                return Err(EmitError::RetriesExhausted {
                    attempts: attempt,
                    elapsed,
                    last: reason,
                });
            }
            if let Some(hook) = &self.on_retry {
                hook(&Retry {
                    attempt,
                    reason,
                    wait,
                });
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// The request body: each event as one line of compact JSON (which never
/// holds a raw newline).
fn lines<T: Serialize>(events: &[T]) -> Result<Bytes, EmitError> {
    let mut body = Vec::new();
    for (index, event) in events.iter().enumerate() {
        serde_json::to_writer(&mut body, event)
            .map_err(|source| EmitError::Serialize { index, source })?;
        body.push(b'\n');
    }
    Ok(Bytes::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let t = |e: &str| Client::new(e).map(|c| c.target.to_string());
        assert_eq!(
            t("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080/v1/ingest"
        );
        assert_eq!(t("http://h:1/in").unwrap(), "http://h:1/in");
        assert_eq!(t("unix:/run/h.sock").unwrap(), "unix:/run/h.sock");
        assert_eq!(t("/run/h.sock").unwrap(), "unix:/run/h.sock");
        for bad in ["https://h:1", "http://h", "run/h.sock", "http://h:1/x?y"] {
            assert!(matches!(t(bad), Err(EmitError::Endpoint { .. })), "{bad}");
        }
    }

    #[test]
    fn each_event_is_one_line() {
        let body = lines(&[serde_json::json!({"a": "x\ny"}), serde_json::json!(1)]).unwrap();
        assert_eq!(&body[..], b"{\"a\":\"x\\ny\"}\n1\n");
    }

    #[tokio::test]
    async fn a_refusal_that_persists_exhausts_the_policy() {
        // A server that answers every request 503 with Retry-After: 0.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 65536];
                let _ = s.read(&mut buf).await;
                let body = r#"{"error":"busy","message":"m"}"#;
                let answer = format!(
                    "HTTP/1.1 503 Service Unavailable\r\nretry-after: 0\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        let retries = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = retries.clone();
        let client = Client::new(&format!("http://{addr}"))
            .unwrap()
            .with_retry(RetryPolicy {
                max_attempts: 3,
                ..RetryPolicy::default()
            })
            .on_retry(move |_| {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        let err = client.emit(&serde_json::json!({})).await.unwrap_err();
        assert!(
            matches!(&err, EmitError::RetriesExhausted { attempts: 3, last, .. } if last == "503 busy"),
            "{err}"
        );
        assert_eq!(retries.load(std::sync::atomic::Ordering::SeqCst), 2);
        server.abort();
    }
}

#[cfg(test)]
mod refused_at_accept {
    use super::*;

    /// A server that, like the host beyond `max_connections`, answers 503
    /// at accept without reading the request and closes: retried, not an
    /// unknown outcome.
    #[tokio::test]
    async fn a_connection_refused_at_accept_is_retried() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                let body = r#"{"error":"too_many_connections","message":"m"}"#;
                let answer = format!(
                    "HTTP/1.1 503 Service Unavailable\r\nretry-after: 0\r\nconnection: close\r\n\
                     content-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.try_write(answer.as_bytes());
                drop(s);
            }
        });
        let client = Client::new(&format!("http://{addr}"))
            .unwrap()
            .with_retry(RetryPolicy {
                max_attempts: 3,
                ..RetryPolicy::default()
            });
        let big: Vec<_> = (0..10)
            .map(|i| serde_json::json!({"i": i, "pad": "x".repeat(100)}))
            .collect();
        let err = client.emit_batch(&big).await.unwrap_err();
        assert!(
            matches!(&err, EmitError::RetriesExhausted { attempts: 3, last, .. }
                if last == "503 too_many_connections"),
            "{err}"
        );
        server.abort();
    }
}
