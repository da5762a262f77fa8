//! The production sink: POST each batch to the hub over HTTP(S).

use std::error::Error as _;
use std::fmt;
use std::io::Write as _;
use std::time::{Duration, SystemTime};

use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Response, StatusCode, Url};

use crate::{Attempt, EventRejection, HeaderHook, Secret, Sink, TransportError, parse_retry_after};

/// `User-Agent` of every request, so the hub can tell host versions apart.
pub const USER_AGENT: &str = concat!("halyard/", env!("CARGO_PKG_VERSION"));

/// The request header carrying the batch key, which the receiver uses to
/// recognise a batch it already has.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// How much of an error response's body goes into the reason.
const REASON_BODY_BYTES: usize = 200;

/// How much of a 400/422 body is read for the list of rejected events:
/// enough for an entry per event of any batch the host builds.
const REJECTION_BODY_BYTES: usize = 1 << 20;

/// How much of a success response's body is read so the connection can be
/// reused; a longer body just costs a new connection.
const DRAIN_BYTES: usize = 64 * 1024;

/// Where and how to reach the hub.
#[derive(Clone, PartialEq)]
pub struct HttpConfig {
    /// The hub's ingest endpoint, `http://` or `https://`.
    pub url: String,
    /// Sent in `api_key_header` when set.
    pub api_key: Option<Secret>,
    /// Header that carries the API key; `x-api-key` by default.
    pub api_key_header: String,
    /// Gzip the body (`Content-Encoding: gzip`); telemetry JSON shrinks
    /// several-fold, which matters on metered edge links. On by default.
    pub gzip: bool,
    /// Budget for a whole request, response included; a hung hub must not
    /// hold a batch forever. 10 s by default.
    pub timeout: Duration,
    /// Budget for establishing the connection (TCP + TLS); 5 s by default.
    pub connect_timeout: Duration,
    /// Headers computed from each body (the host's batch signature).
    pub extra_headers: Option<HeaderHook>,
}

impl HttpConfig {
    /// Defaults for everything but the URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            api_key: None,
            api_key_header: "x-api-key".to_owned(),
            gzip: true,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            extra_headers: None,
        }
    }
}

impl fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConfig")
            .field("url", &redact_url(&self.url))
            .field("api_key", &self.api_key)
            .field("api_key_header", &self.api_key_header)
            .field("gzip", &self.gzip)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl fmt::Display for HttpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "POST {}", redact_url(&self.url))?;
        if self.gzip {
            f.write_str(" (gzip)")?;
        }
        if self.api_key.is_some() {
            write!(f, " with {}: ***", self.api_key_header)?;
        }
        Ok(())
    }
}

/// The URL with any password and query string masked: both are places
/// people put credentials, and configs end up in logs.
pub(crate) fn redact_url(raw: &str) -> String {
    let Ok(mut url) = Url::parse(raw) else {
        return "<invalid URL>".to_owned();
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    if url.query().is_some() {
        url.set_query(Some("***"));
    }
    url.to_string()
}

/// Sends batches to the hub; one client (and connection pool) for all of
/// them.
pub struct HttpSink {
    client: reqwest::Client,
    url: Url,
    api_key: Option<(HeaderName, HeaderValue)>,
    gzip: bool,
    extra_headers: Option<HeaderHook>,
}

impl fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSink")
            .field("url", &redact_url(self.url.as_str()))
            .field(
                "api_key",
                &self.api_key.as_ref().map(|(name, _)| (name, "***")),
            )
            .field("gzip", &self.gzip)
            .finish()
    }
}

impl HttpSink {
    /// Validates the configuration up front, so a typo fails at startup
    /// rather than on the first batch.
    pub fn new(config: &HttpConfig) -> Result<Self, TransportError> {
        let url = Url::parse(&config.url).map_err(|e| TransportError::InvalidUrl(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TransportError::InvalidUrl(format!(
                "scheme {:?} is not http or https",
                url.scheme()
            )));
        }
        let api_key = match &config.api_key {
            None => None,
            Some(key) => {
                let name =
                    HeaderName::from_bytes(config.api_key_header.as_bytes()).map_err(|_| {
                        TransportError::InvalidHeaderName(config.api_key_header.clone())
                    })?;
                let mut value = HeaderValue::from_str(key.expose())
                    .map_err(|_| TransportError::InvalidApiKey)?;
                // Keeps the value out of HTTP/2 header compression tables
                // and out of reqwest's own Debug output.
                value.set_sensitive(true);
                Some((name, value))
            }
        };
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            // A redirected POST turns into a GET in most clients; a hub URL
            // that redirects is a configuration error to surface, not follow.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| TransportError::Client(e.without_url().to_string()))?;
        Ok(Self {
            client,
            url,
            api_key,
            gzip: config.gzip,
            extra_headers: config.extra_headers.clone(),
        })
    }

    async fn post(&self, batch_key: &str, body: &[u8]) -> Attempt {
        let Ok(key) = HeaderValue::from_str(batch_key) else {
            // A host bug, not the data's fault: hold the batch and say so.
            return Attempt::Refused {
                status: None,
                reason: "the batch key is not a valid HTTP header value".to_owned(),
            };
        };
        let mut request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_KEY, key);
        if let Some((name, value)) = &self.api_key {
            request = request.header(name.clone(), value.clone());
        }
        for (name, value) in self.extra_headers.iter().flat_map(|h| h.headers(body)) {
            request = request.header(name, value);
        }
        request = if self.gzip {
            match gzip(body) {
                Ok(compressed) => request.header(CONTENT_ENCODING, "gzip").body(compressed),
                Err(e) => return Attempt::retry(format!("gzip failed: {e}")),
            }
        } else {
            request.body(body.to_vec())
        };
        match request.send().await {
            Ok(response) => classify(response).await,
            Err(e) if is_tls_failure(&e) => Attempt::Refused {
                status: None,
                reason: format!("TLS handshake failed: {}", describe(e)),
            },
            Err(e) => Attempt::retry(describe(e)),
        }
    }
}

impl Sink for HttpSink {
    async fn send(&self, batch_key: &str, body: &[u8]) -> Attempt {
        self.post(batch_key, body).await
    }
}

/// Sorts a response by what its status says about the batch (the table in
/// the README's "Delivery guarantees"):
///
/// - 2xx: delivered;
/// - 408, 429, 5xx: "not now" — retry with backoff (honouring
///   `Retry-After`);
/// - 413: "too big" — the host splits the batch;
/// - 400, 422: "not these events" — the host dead-letters the events the
///   body names (`{"rejected": [{"index": n, "reason": "…"}]}`), or bisects
///   to find them;
/// - every other 4xx (401, 403, 404, 405, 407, 409, 410, 415, …): "not this
///   sender" — the batch is held and the breaker opens;
/// - 1xx/3xx: a wrong URL — retry (the breaker opens) rather than lose it.
pub(crate) async fn classify(mut response: Response) -> Attempt {
    let status = response.status();
    if status.is_success() {
        let _ = read_prefix(&mut response, DRAIN_BYTES).await;
        return Attempt::Delivered;
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let code = status.as_u16();
    if is_content_rejection(status) {
        let body = read_prefix(&mut response, REJECTION_BODY_BYTES).await;
        return Attempt::Rejected {
            reason: format!("HTTP {code}: {}", reason_text(&body)),
            events: rejected_events(&body),
        };
    }
    let prefix = read_prefix(&mut response, REASON_BODY_BYTES).await;
    let body = String::from_utf8_lossy(&prefix);
    if is_retryable(status) {
        Attempt::Retry {
            reason: format!("HTTP {code}: {body}"),
            retry_after,
        }
    } else if status == StatusCode::PAYLOAD_TOO_LARGE {
        Attempt::TooLarge {
            reason: format!("HTTP {code}: {body}"),
        }
    } else if status.is_client_error() {
        let name = status.canonical_reason().unwrap_or("Client Error");
        Attempt::Refused {
            status: Some(code),
            reason: format!("{code} {name}: {body}"),
        }
    } else {
        // 1xx/3xx: the hub did not refuse the batch, the URL is wrong.
        // Keep it buffered (the breaker will open) instead of losing it.
        Attempt::Retry {
            reason: format!("HTTP {code} (redirects are not followed; check the hub URL): {body}"),
            retry_after,
        }
    }
}

/// 400 and 422: the receiver objects to what the batch holds, not to the
/// sender, so the events it objects to are the only ones to give up on.
fn is_content_rejection(status: StatusCode) -> bool {
    status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY
}

/// The first [`REASON_BODY_BYTES`] of a body, as text.
fn reason_text(body: &[u8]) -> String {
    let cut = body.len().min(REASON_BODY_BYTES);
    String::from_utf8_lossy(&body[..cut]).into_owned()
}

/// The events a 400/422 body names: `{"rejected": [{"index": n, "reason":
/// "…"}, …]}` (other fields ignored). Anything else — not JSON, no
/// `rejected`, a malformed entry — names none, and the host bisects.
fn rejected_events(body: &[u8]) -> Vec<EventRejection> {
    #[derive(serde::Deserialize)]
    struct Answer {
        rejected: Vec<EventRejection>,
    }
    serde_json::from_slice::<Answer>(body).map_or_else(|_| Vec::new(), |a| a.rejected)
}

/// Statuses that say "not now" rather than "not this".
fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// Reads at most `limit` bytes of the body; errors just end the read, since
/// the status has already decided the outcome.
async fn read_prefix(response: &mut Response, limit: usize) -> Vec<u8> {
    let mut prefix = Vec::new();
    while prefix.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(limit - prefix.len());
                prefix.extend_from_slice(&chunk[..take]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    prefix
}

/// A retry reason for a failed request: the kind first (`timeout`,
/// `connect error`) then the cause chain, without the URL (it may carry
/// credentials).
pub(crate) fn describe(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect error"
    } else {
        "request failed"
    };
    let error = error.without_url();
    let mut reason = format!("{kind}: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}

/// Whether a failed request failed in the TLS handshake (an untrusted or
/// expired certificate, a client certificate the server refuses, TLS spoken
/// to a plain-HTTP port): configuration to fix, not an outage to wait out.
pub(crate) fn is_tls_failure(error: &reqwest::Error) -> bool {
    let mut source = error.source();
    while let Some(cause) = source {
        if is_rustls(cause) {
            return true;
        }
        source = cause.source();
    }
    false
}

/// A rustls error, possibly inside (nested) `io::Error`s, whose `source`
/// skips the error they wrap.
fn is_rustls(error: &(dyn std::error::Error + 'static)) -> bool {
    if error.is::<rustls::Error>() {
        return true;
    }
    error
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .is_some_and(|inner| is_rustls(inner))
}

/// Compresses at level 1: on telemetry JSON it gets most of level 6's
/// ratio for a fraction of the CPU, and on a 2-core device CPU is what the
/// pipeline is short of.
pub(crate) fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4 + 64), Compression::fast());
    encoder.write_all(body)?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_credentials() {
        let mut config = HttpConfig::new("https://user:hunter2@hub.example/ingest?token=abc123");
        config.api_key = Some(Secret::new("sk-live-0123456789"));
        for shown in [
            format!("{config:?}"),
            format!("{config:#?}"),
            config.to_string(),
        ] {
            for secret in ["sk-live-0123456789", "hunter2", "abc123"] {
                assert!(!shown.contains(secret), "{secret} leaked in {shown}");
            }
            assert!(shown.contains("hub.example/ingest"), "{shown}");
        }
        let sink = HttpSink::new(&config).expect("valid config");
        let shown = format!("{sink:?}");
        for secret in ["sk-live-0123456789", "hunter2", "abc123"] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
    }

    #[test]
    fn bad_configs_fail_at_startup() {
        let bad = |config: HttpConfig| HttpSink::new(&config).err().map(|e| e.to_string());
        assert!(bad(HttpConfig::new("not a url")).is_some());
        assert!(bad(HttpConfig::new("ftp://hub.example/")).is_some());
        let mut config = HttpConfig::new("http://127.0.0.1:1/");
        config.api_key = Some(Secret::new("line\nbreak"));
        let message = bad(config.clone()).expect("newline in key is refused");
        assert!(!message.contains("line"), "{message}");
        config.api_key = Some(Secret::new("ok"));
        config.api_key_header = "bad header".to_owned();
        assert!(bad(config).is_some());
    }

    #[test]
    fn rejected_events_read_the_documented_contract_and_nothing_else() {
        let named = rejected_events(
            br#"{"error":"bad_request","rejected":[{"index":3,"reason":"no id"},{"index":7}]}"#,
        );
        assert_eq!(
            named,
            [
                EventRejection {
                    index: 3,
                    reason: "no id".into()
                },
                EventRejection {
                    index: 7,
                    reason: String::new()
                }
            ]
        );
        for body in [
            &b""[..],
            b"bad",
            br#"{"rejected":[{"index":-1}]}"#,
            br#"{"x":1}"#,
        ] {
            assert!(rejected_events(body).is_empty(), "{body:?}");
        }
    }

    #[test]
    fn status_classes() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(
                is_retryable(StatusCode::from_u16(code).expect("valid")),
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 409, 413, 422] {
            assert!(
                !is_retryable(StatusCode::from_u16(code).expect("valid")),
                "{code}"
            );
        }
    }
}
