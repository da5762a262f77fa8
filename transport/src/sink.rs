//! The one operation every destination offers: try to hand over one batch.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::{FileSink, HttpSink, MqttSink, NatsSink, OtlpSink, RedisStreamSink, StdoutSink};

/// What one send attempt came to, classified for the delivery loop.
///
/// A sink never decides policy (how long to wait, when to give up); it only
/// says whether the receiver took the batch, might take it later, refuses
/// the sender, or objects to the batch's content — and nothing a sink
/// reports ever makes the transport discard a batch by itself: what is done
/// with content a receiver objects to is the host's decision, event by
/// event (see [`Outcome`](crate::Outcome)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver has the batch; the host may acknowledge it.
    Delivered,
    /// The receiver is unreachable or overloaded; the same batch should be
    /// sent again later.
    Retry {
        /// Human-readable cause, for logs (never contains credentials).
        reason: String,
        /// The receiver's `Retry-After`, already capped at
        /// [`MAX_RETRY_AFTER`](crate::MAX_RETRY_AFTER); the loop waits at
        /// least this long.
        retry_after: Option<Duration>,
    },
    /// The receiver refuses *this sender*, whatever the batch holds: a
    /// rejected credential (401/403/407), a wrong endpoint (404/405, other
    /// 4xx that are about the request rather than its events), a TLS
    /// handshake that fails. Retrying cannot help until an operator fixes
    /// the configuration on one side, and dead-lettering would destroy data
    /// that is fine: the batch is held, the breaker opens, and `/health`
    /// names the refusal until a delivery succeeds again.
    Refused {
        /// The HTTP status, or `None` for a TLS failure.
        status: Option<u16>,
        /// For `/health` and logs, e.g. `401 Unauthorized: <body start>`.
        reason: String,
    },
    /// 413: the batch is too large for the receiver; smaller parts may go
    /// through, so the host splits it.
    TooLarge {
        /// The status and the start of the response body.
        reason: String,
    },
    /// 400/422: the receiver refused the batch because of (some of) its
    /// events and stored none of it. `events` lists the ones it named (see
    /// [`EventRejection`]); when empty the host has to find them itself.
    Rejected {
        /// The status and the start of the response body.
        reason: String,
        /// The events the receiver named, by position in the batch.
        events: Vec<EventRejection>,
    },
}

/// One event a receiver named as the cause of a 400/422, by its position in
/// the batch's `events` array (0-based).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct EventRejection {
    /// The event's index in the `events` array of the request.
    pub index: usize,
    /// Why the receiver refused it.
    #[serde(default)]
    pub reason: String,
}

impl Attempt {
    /// A retryable failure without a `Retry-After`; the common case.
    pub fn retry(reason: impl Into<String>) -> Self {
        Attempt::Retry {
            reason: reason.into(),
            retry_after: None,
        }
    }
}

/// A destination for encoded batches.
///
/// Implementations must be safe to call concurrently (several batches may be
/// in flight) and must turn every failure into an [`Attempt`] rather than
/// panic. `batch_key` is the batch's idempotency key: a receiver that sees a
/// key twice must treat the second copy as a duplicate, which is what makes
/// retrying after an ambiguous failure (a timeout) safe.
///
/// Implementations may simply write `async fn send(...)`; the trait spells
/// out `impl Future + Send` so the delivery loop can run on any executor
/// thread.
pub trait Sink: Send + Sync {
    /// Makes one attempt to deliver `body`; never retries by itself.
    fn send(&self, batch_key: &str, body: &[u8]) -> impl Future<Output = Attempt> + Send;
}

impl<S: Sink + ?Sized> Sink for Arc<S> {
    fn send(&self, batch_key: &str, body: &[u8]) -> impl Future<Output = Attempt> + Send {
        (**self).send(batch_key, body)
    }
}

/// Any of the built-in sinks, chosen at run time from the host's
/// configuration without making the host generic over the sink type.
#[derive(Debug)]
pub enum AnySink {
    /// Production: POST to the hub.
    Http(HttpSink),
    /// Local capture, one batch per line.
    File(FileSink),
    /// Debugging, one batch per line on standard output.
    Stdout(StdoutSink),
    /// QoS 1 publishes to an MQTT broker.
    Mqtt(MqttSink),
    /// JetStream publishes, deduplicated by event id.
    Nats(NatsSink),
    /// `XADD` to Redis Streams in the event-bus wire shape.
    Redis(RedisStreamSink),
    /// OTLP/HTTP metrics and logs to an OpenTelemetry Collector.
    Otlp(OtlpSink),
}

impl Sink for AnySink {
    async fn send(&self, batch_key: &str, body: &[u8]) -> Attempt {
        match self {
            AnySink::Http(sink) => sink.send(batch_key, body).await,
            AnySink::File(sink) => sink.send(batch_key, body).await,
            AnySink::Stdout(sink) => sink.send(batch_key, body).await,
            AnySink::Mqtt(sink) => sink.send(batch_key, body).await,
            AnySink::Nats(sink) => sink.send(batch_key, body).await,
            AnySink::Redis(sink) => sink.send(batch_key, body).await,
            AnySink::Otlp(sink) => sink.send(batch_key, body).await,
        }
    }
}

impl From<HttpSink> for AnySink {
    fn from(sink: HttpSink) -> Self {
        AnySink::Http(sink)
    }
}

impl From<FileSink> for AnySink {
    fn from(sink: FileSink) -> Self {
        AnySink::File(sink)
    }
}

impl From<StdoutSink> for AnySink {
    fn from(sink: StdoutSink) -> Self {
        AnySink::Stdout(sink)
    }
}

impl From<MqttSink> for AnySink {
    fn from(sink: MqttSink) -> Self {
        AnySink::Mqtt(sink)
    }
}

impl From<NatsSink> for AnySink {
    fn from(sink: NatsSink) -> Self {
        AnySink::Nats(sink)
    }
}

impl From<RedisStreamSink> for AnySink {
    fn from(sink: RedisStreamSink) -> Self {
        AnySink::Redis(sink)
    }
}

impl From<OtlpSink> for AnySink {
    fn from(sink: OtlpSink) -> Self {
        AnySink::Otlp(sink)
    }
}

/// Returns a copy of `body` as exactly one line: a trailing `\n` added, and
/// any CR/LF inside replaced by spaces.
///
/// In valid JSON a raw CR or LF can only be insignificant whitespace (inside
/// strings they must be escaped), so the replacement keeps the document
/// equivalent while keeping line-oriented readers in step.
pub(crate) fn as_line(body: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(body.len() + 1);
    line.extend(
        body.iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How a host config can choose a sink: an internally tagged enum over
    /// the config structs keeps their `deny_unknown_fields` working.
    #[test]
    fn sink_configs_nest_in_a_tagged_enum() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(tag = "type", rename_all = "lowercase")]
        enum Choice {
            Mqtt(crate::MqttConfig),
            Nats(crate::NatsConfig),
            Redis(crate::RedisStreamConfig),
            Otlp(crate::OtlpConfig),
        }
        let parse = |v: serde_json::Value| serde_json::from_value::<Choice>(v);
        let mqtt = parse(
            serde_json::json!({"type": "mqtt", "host": "h", "per": "batch", "topic": "t/{host_id}"}),
        );
        assert!(matches!(mqtt, Ok(Choice::Mqtt(c)) if c.port == 1883));
        let nats = parse(serde_json::json!({"type": "nats", "url": "nats://h:4222",
            "create_stream": {"name": "S", "subjects": ["halyard.>"]}}));
        assert!(matches!(nats, Ok(Choice::Nats(c)) if c.create_stream.is_some()));
        let redis =
            parse(serde_json::json!({"type": "redis", "url": "redis://h/0", "password": "p"}));
        assert!(matches!(redis, Ok(Choice::Redis(c)) if format!("{c:?}").contains("***")));
        let otlp = parse(serde_json::json!({"type": "otlp", "endpoint": "http://c:4318"}));
        assert!(matches!(otlp, Ok(Choice::Otlp(c)) if c.gzip));
        assert!(parse(serde_json::json!({"type": "redis", "url": "u", "typo": 1})).is_err());
    }

    #[test]
    fn as_line_keeps_one_line_per_batch() {
        assert_eq!(as_line(b"{\"a\":1}"), b"{\"a\":1}\n");
        assert_eq!(as_line(b"{\n  \"a\": 1\r\n}"), b"{   \"a\": 1  }\n");
    }
}
