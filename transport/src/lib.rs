//! # Halyard's transport
//!
//! Takes batches the host has already encoded (an idempotency key and a JSON
//! body) and delivers them to the hub, with retry, backoff and a circuit
//! breaker.
//!
//! Besides the hub ([`HttpSink`]), batches can go into infrastructure a fleet
//! already runs: an MQTT broker ([`MqttSink`]), NATS JetStream
//! ([`NatsSink`], deduplicated by event id), Redis Streams
//! ([`RedisStreamSink`]) or an OpenTelemetry Collector ([`OtlpSink`]). Each
//! parses the same envelope and sends its events one by one; README.md
//! describes their configuration and duplicate semantics.
//!
//! ## Invariants
//!
//! 1. **Exactly one outcome per batch.** [`Delivery::deliver`] returns once,
//!    with [`Outcome::Delivered`] (ack it), [`Outcome::TooLarge`] (413: split
//!    it), [`Outcome::Rejected`] (400/422: the receiver objects to some of
//!    its events, named or not) or [`Outcome::NotSent`] (shutdown: keep it
//!    buffered).
//! 2. **The transport never discards a batch.** What to give up on is the
//!    host's decision, and only event by event, for events the receiver
//!    refused for their content. While the hub is unreachable, slow or
//!    failing (connect errors, timeouts, 408, 429, 5xx) the transport keeps
//!    retrying for as long as it takes; while it refuses the sender (401,
//!    403, 404, 405, 407 and every other 4xx but 400/413/422, or a TLS
//!    handshake failure) the batch is held, the breaker opens at once, and
//!    [`TransportStats::refusal`] names the refusal until a delivery
//!    succeeds. The host's durable buffer holds the data meanwhile.
//! 3. **Shutdown is prompt and lossless.** Cancelling the shutdown token ends
//!    any backoff, breaker wait or request in flight at once with `NotSent`.
//!    An interrupted request may still have reached the hub; because the
//!    batch is resent later under the same key, the receiver dedupes it.
//! 4. **The same key on every attempt.** Every attempt of a batch carries its
//!    key in `Idempotency-Key`, so retries after ambiguous failures (a
//!    timeout after the hub committed) are safe: delivery is at-least-once,
//!    made effectively-once by the receiver.
//! 5. **A down hub is not hammered.** Retries back off exponentially with
//!    full jitter ([`Backoff`]), honour `Retry-After` (capped at
//!    [`MAX_RETRY_AFTER`]), and after `failure_threshold` consecutive
//!    failures the [`Breaker`] opens: no request at all is sent until the
//!    probe interval passes (1 s, doubling per failed probe up to the
//!    recovery timeout), then exactly one probe decides. A 400/413/422
//!    counts as a success for the breaker: the hub is up.
//! 6. **Credentials never reach logs.** API keys live in [`Secret`], whose
//!    `Debug`/`Display` print `***`; URLs are shown with password and query
//!    masked, and error reasons never include the URL.
//! 7. **Time is tokio's.** All waits use `tokio::time`, so tests drive the
//!    backoff and breaker with paused time instead of sleeping.
//!
//! ## Usage
//!
//! ```no_run
//! use halyard_transport::*;
//! use tokio_util::sync::CancellationToken;
//! # async fn run() -> Result<(), TransportError> {
//! let mut http = HttpConfig::new("https://hub.example/v1/batches");
//! http.api_key = Some(Secret::new("…"));
//! let delivery = Delivery::new(
//!     HttpSink::new(&http)?,
//!     Backoff::new(RetryConfig::default()),
//!     Breaker::new(BreakerConfig::default()),
//! );
//! let shutdown = CancellationToken::new();
//! let body = encode_batch_raw("3-17", "edge-7", "0.1.0", [br#"{"n":1}"#.as_slice()]);
//! match delivery.deliver("3-17", &body, &shutdown).await {
//!     Outcome::Delivered { .. } => { /* buffer.ack(&batch) */ }
//!     Outcome::TooLarge { .. } => { /* deliver each half */ }
//!     Outcome::Rejected { events, .. } => { /* dead-letter `events`, send the rest */ }
//!     Outcome::NotSent { .. } => { /* buffer.nack(&batch); stop */ }
//! }
//! # Ok(()) }
//! ```
//!
//! The wire format is described in the crate's README.md.

#![warn(missing_docs)]

mod backoff;
mod breaker;
mod delivery;
mod encode;
mod envelope;
mod error;
mod file;
mod headers;
mod http;
mod mqtt;
mod mqtt_config;
mod nats;
mod otlp;
mod otlp_map;
mod redis_stream;
mod retry_after;
mod secret;
mod sink;
mod stats;
mod stdout;
mod template;

pub use backoff::{Backoff, RetryConfig};
pub use breaker::{Breaker, BreakerConfig, BreakerState, Transition};
pub use delivery::{Delivery, Outcome};
pub use encode::{encode_batch, encode_batch_raw};
pub use envelope::rfc3339_from_unix_ms;
pub use error::TransportError;
pub use file::FileSink;
pub use headers::HeaderHook;
pub use http::{HttpConfig, HttpSink, IDEMPOTENCY_KEY, USER_AGENT};
pub use mqtt::MqttSink;
pub use mqtt_config::{MqttConfig, MqttPer, MqttTls};
pub use nats::{NatsConfig, NatsSink, NatsStream};
pub use otlp::{OtlpConfig, OtlpSink, OtlpStats};
pub use redis_stream::{RedisStreamConfig, RedisStreamSink};
pub use retry_after::{MAX_RETRY_AFTER, parse_retry_after};
pub use secret::Secret;
pub use sink::{AnySink, Attempt, EventRejection, Sink};
pub use stats::{Refusal, StatsSnapshot, TransportStats};
pub use stdout::StdoutSink;

/// Re-exported so callers name the same shutdown token type as
/// [`Delivery::deliver`] without depending on `tokio-util` themselves.
pub use tokio_util::sync::CancellationToken;
