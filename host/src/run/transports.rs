//! The transport registry: from `[transport]` / `[[transport]]` to running
//! deliveries, in one place.
//!
//! Adding a protocol is one module in the transport crate (its sink and
//! config struct), one `TransportConfig` variant, and one arm in [`sink`]
//! (plus, when its output must stay in order, one in [`ordered`]). Nothing
//! else in the host matches on transport types: the shipper, metrics,
//! health and reload all work on the [`Transport`]s built here.

use std::sync::Arc;
use std::time::Duration;

use halyard_transport::{
    AnySink, Backoff, Breaker, BreakerConfig, Delivery, FileSink, HeaderHook, HttpConfig, HttpSink,
    MqttSink, NatsSink, OtlpSink, RedisStreamSink, Secret, StdoutSink,
};

use super::ship::BatchLimits;
use crate::config::{BatchSection, HostConfig, NamedTransport, TransportConfig};

/// Why a transport could not be built.
#[derive(Debug, thiserror::Error)]
#[error("transport `{name}`: {reason}")]
pub struct TransportBuildError {
    /// The transport's name.
    pub name: String,
    /// What the sink said.
    pub reason: String,
}

/// One configured transport, ready to ship: its own sink, retry, breaker
/// and batch limits, and its buffer consumer name.
pub struct Transport {
    /// Its name (`default` for a single `[transport]`): the buffer consumer
    /// it reads as, its metrics label and its `/health` entry.
    pub name: String,
    /// The sink behind its own backoff and breaker.
    pub delivery: Arc<Delivery<AnySink>>,
    /// The batch limits it starts with.
    pub limits: BatchLimits,
}

/// The sink `config` asks for. The one place that matches on transport
/// types: a new protocol adds its arm here.
pub fn sink(config: &TransportConfig, sign: Option<HeaderHook>) -> Result<AnySink, String> {
    Ok(match config {
        TransportConfig::Http {
            url,
            api_key,
            api_key_header,
            gzip,
            timeout_ms,
        } => {
            let mut http = HttpConfig::new(url.clone());
            http.api_key = api_key.clone().filter(|k| !k.is_empty()).map(Secret::new);
            http.api_key_header = api_key_header.clone();
            http.gzip = *gzip;
            http.timeout = Duration::from_millis(*timeout_ms);
            http.extra_headers = sign;
            HttpSink::new(&http).map_err(|e| e.to_string())?.into()
        }
        TransportConfig::File { path } => FileSink::open(path).map_err(|e| e.to_string())?.into(),
        TransportConfig::Stdout => StdoutSink::new().into(),
        TransportConfig::Mqtt(c) => MqttSink::new(c).map_err(|e| e.to_string())?.into(),
        TransportConfig::Nats(c) => NatsSink::new(c).map_err(|e| e.to_string())?.into(),
        TransportConfig::Redis(c) => RedisStreamSink::new(c).map_err(|e| e.to_string())?.into(),
        TransportConfig::Otlp(c) => OtlpSink::new(c).map_err(|e| e.to_string())?.into(),
    })
}

/// Whether a sink must see batches in order (one in flight): a file or
/// stdout is read back line by line, so a reordered batch would be a lie.
/// Brokers and collectors take batches in parallel (each event carries its
/// id and time).
pub fn ordered(config: &TransportConfig) -> bool {
    matches!(
        config,
        TransportConfig::File { .. } | TransportConfig::Stdout
    )
}

/// The batch limits of `transport`: its own `batch` table or the
/// top-level `[batch]`; an ordered sink keeps one batch in flight.
pub fn limits(transport: &NamedTransport, top: &BatchSection) -> BatchLimits {
    let batch = transport.batch_or(top);
    BatchLimits {
        max_events: batch.max_events,
        max_bytes: batch.max_bytes,
        max_age: Duration::from_millis(batch.max_age_ms),
        max_in_flight: if ordered(&transport.sink) {
            1
        } else {
            batch.max_in_flight.max(1)
        },
    }
}

/// Every transport of `config`, each with its own backoff and breaker.
/// `sign` adds the provenance headers to every HTTP request.
pub fn build(
    config: &HostConfig,
    sign: Option<HeaderHook>,
) -> Result<Vec<Transport>, TransportBuildError> {
    config
        .transports
        .list
        .iter()
        .map(|t| {
            let sink = sink(&t.sink, sign.clone()).map_err(|reason| TransportBuildError {
                name: t.name.clone(),
                reason,
            })?;
            let retry = t.retry_or(&config.retry);
            let breaker = t.breaker_or(&config.breaker);
            let delivery = Delivery::new(
                sink,
                Backoff::new(super::retry_config(retry)),
                Breaker::new(BreakerConfig {
                    failure_threshold: breaker.failure_threshold,
                    recovery_timeout: Duration::from_millis(breaker.recovery_timeout_ms),
                    ..BreakerConfig::default()
                }),
            );
            Ok(Transport {
                name: t.name.clone(),
                delivery: Arc::new(delivery),
                limits: limits(t, &config.batch),
            })
        })
        .collect()
}

/// Reads an encoded event's `kind`, so `kinds` filters can route it in the
/// buffer (see [`halyard_buffer::Buffer::set_kind_reader`]).
pub fn kind_of(payload: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Kind<'a> {
        #[serde(borrow)]
        kind: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Kind<'_>>(payload)
        .ok()
        .and_then(|k| k.kind)
        .map(|k| k.into_owned())
}
