//! OTLP/HTTP sink: a batch as protobuf (gzip) to an OpenTelemetry
//! Collector's `/v1/metrics` and `/v1/logs`.
//!
//! Status handling follows OTLP's rules through the HTTP sink's table
//! ([`classify`]): 429/502/503/504 (and every 5xx, 408) retried honouring
//! `Retry-After`; 400 rejects the whole batch, naming no event (the host
//! bisects); 401/403/404… refuse the sender. A 2xx with `partial_success`
//! means the collector dropped some points or records for good: they are
//! counted in [`OtlpStats`] and logged, not resent.
//!
//! A batch holding readings and other events is two requests. When one
//! succeeds and the other fails, the sink remembers (per batch key) the part
//! already taken, so the resend carries only the missing part. OTLP has no
//! idempotency key: a request whose answer was lost is sent again and the
//! collector sees those points or records twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prost::Message;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderName, HeaderValue};
use reqwest::{Response, Url};
use serde::Deserialize;

use crate::envelope::rejected;
use crate::http::{classify, describe, gzip, is_tls_failure, redact_url};
use crate::otlp_map::{self, Requests};
use crate::{Attempt, Secret, Sink, TransportError, USER_AGENT, envelope};

const SINK: &str = "otlp";

/// Batch keys whose first part is delivered; bounded so a host that never
/// resends cannot grow it without end.
const MAX_REMEMBERED: usize = 4096;

/// How much of a success body is read for `partial_success`.
const RESPONSE_BYTES: usize = 64 * 1024;

/// `[[transport]] type = "otlp"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector's OTLP/HTTP base URL, e.g. `http://collector:4318`;
    /// `/v1/metrics` and `/v1/logs` are appended.
    pub endpoint: String,
    /// Extra request headers, e.g. `authorization`; values never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Gzip the protobuf body; on by default.
    #[serde(default = "default_true")]
    pub gzip: bool,
    /// Budget for one request, answer included; 10 000 ms by default.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_true() -> bool {
    true
}
fn default_timeout_ms() -> u64 {
    10_000
}

impl OtlpConfig {
    /// Defaults for everything but the endpoint.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            headers: BTreeMap::new(),
            gzip: true,
            timeout_ms: default_timeout_ms(),
        }
    }
}

/// What collectors dropped although they answered 2xx (`partial_success`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OtlpStats {
    /// Data points reported in `rejected_data_points`.
    pub rejected_data_points: u64,
    /// Log records reported in `rejected_log_records`.
    pub rejected_log_records: u64,
}

/// Which parts of a batch the collector already has.
#[derive(Debug, Clone, Copy, Default)]
struct Done {
    metrics: bool,
    logs: bool,
}

/// Sends batches to an OpenTelemetry Collector over OTLP/HTTP.
pub struct OtlpSink {
    client: reqwest::Client,
    metrics_url: Url,
    logs_url: Url,
    headers: Vec<(HeaderName, HeaderValue)>,
    gzip: bool,
    partial: Mutex<HashMap<String, Done>>,
    rejected_points: AtomicU64,
    rejected_records: AtomicU64,
}

impl std::fmt::Debug for OtlpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpSink")
            .field("metrics_url", &redact_url(self.metrics_url.as_str()))
            .field("logs_url", &redact_url(self.logs_url.as_str()))
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(n, _)| (n, "***"))
                    .collect::<Vec<_>>(),
            )
            .field("gzip", &self.gzip)
            .finish_non_exhaustive()
    }
}

impl OtlpSink {
    /// Validates endpoint and headers now; nothing is sent until a batch.
    pub fn new(config: &OtlpConfig) -> Result<Self, TransportError> {
        let bad = |reason: String| TransportError::Config { sink: SINK, reason };
        let base =
            Url::parse(&config.endpoint).map_err(|e| TransportError::InvalidUrl(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(TransportError::InvalidUrl(format!(
                "scheme {:?} is not http or https",
                base.scheme()
            )));
        }
        let join = |path: &str| {
            let mut url = base.clone();
            let prefix = url.path().trim_end_matches('/').to_owned();
            url.set_path(&format!("{prefix}{path}"));
            url
        };
        let mut headers = Vec::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| TransportError::InvalidHeaderName(name.clone()))?;
            let mut value = HeaderValue::from_str(value.expose())
                .map_err(|_| bad(format!("header {name} is not a valid HTTP header value")))?;
            value.set_sensitive(true);
            headers.push((name, value));
        }
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(Duration::from_millis(config.timeout_ms.max(1)))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| TransportError::Client(e.without_url().to_string()))?;
        Ok(Self {
            client,
            metrics_url: join("/v1/metrics"),
            logs_url: join("/v1/logs"),
            headers,
            gzip: config.gzip,
            partial: Mutex::new(HashMap::new()),
            rejected_points: AtomicU64::new(0),
            rejected_records: AtomicU64::new(0),
        })
    }

    /// What collectors have dropped under `partial_success` so far.
    pub fn stats(&self) -> OtlpStats {
        OtlpStats {
            rejected_data_points: self.rejected_points.load(Ordering::Relaxed),
            rejected_log_records: self.rejected_records.load(Ordering::Relaxed),
        }
    }

    async fn post(&self, url: &Url, message: Vec<u8>) -> Result<Response, Attempt> {
        let mut request = self
            .client
            .post(url.clone())
            .header(CONTENT_TYPE, "application/x-protobuf");
        for (name, value) in &self.headers {
            request = request.header(name.clone(), value.clone());
        }
        request = if self.gzip {
            let compressed =
                gzip(&message).map_err(|e| Attempt::retry(format!("gzip failed: {e}")))?;
            request.header(CONTENT_ENCODING, "gzip").body(compressed)
        } else {
            request.body(message)
        };
        match request.send().await {
            Ok(response) if response.status().is_success() => Ok(response),
            Ok(response) => Err(classify(response).await),
            Err(e) if is_tls_failure(&e) => Err(Attempt::Refused {
                status: None,
                reason: format!("TLS handshake failed: {}", describe(e)),
            }),
            Err(e) => Err(Attempt::retry(describe(e))),
        }
    }

    async fn export(&self, batch_key: &str, body: &[u8]) -> Attempt {
        let env = match envelope::parse(body) {
            Ok(env) => env,
            Err(reason) => return rejected(reason),
        };
        let Requests {
            metrics,
            points,
            logs,
            records,
        } = match otlp_map::map(&env) {
            Ok(requests) => requests,
            Err(reason) => return rejected(reason),
        };
        let mut done = self
            .lock_partial()
            .get(batch_key)
            .copied()
            .unwrap_or_default();
        let mut result = Ok(());
        if points > 0 && !done.metrics {
            result = self.send_metrics(metrics.encode_to_vec()).await;
            done.metrics = result.is_ok();
        }
        if result.is_ok() && records > 0 && !done.logs {
            result = self.send_logs(logs.encode_to_vec()).await;
            done.logs = result.is_ok();
        }
        let mut partial = self.lock_partial();
        match result {
            Ok(()) => {
                partial.remove(batch_key);
                Attempt::Delivered
            }
            Err(attempt) => {
                if (done.metrics || done.logs)
                    && (partial.len() < MAX_REMEMBERED || partial.contains_key(batch_key))
                {
                    partial.insert(batch_key.to_owned(), done);
                }
                attempt
            }
        }
    }

    async fn send_metrics(&self, message: Vec<u8>) -> Result<(), Attempt> {
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
        let mut response = self.post(&self.metrics_url, message).await?;
        let body = read_prefix(&mut response).await;
        if let Ok(answer) = ExportMetricsServiceResponse::decode(body.as_slice())
            && let Some(p) = answer
                .partial_success
                .filter(|p| p.rejected_data_points > 0)
        {
            let n = u64::try_from(p.rejected_data_points).unwrap_or(0);
            self.rejected_points.fetch_add(n, Ordering::Relaxed);
            tracing::warn!(sink = SINK, rejected = n, message = %p.error_message,
                    "collector dropped data points (partial success)");
        }
        Ok(())
    }

    async fn send_logs(&self, message: Vec<u8>) -> Result<(), Attempt> {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
        let mut response = self.post(&self.logs_url, message).await?;
        let body = read_prefix(&mut response).await;
        if let Ok(answer) = ExportLogsServiceResponse::decode(body.as_slice())
            && let Some(p) = answer
                .partial_success
                .filter(|p| p.rejected_log_records > 0)
        {
            let n = u64::try_from(p.rejected_log_records).unwrap_or(0);
            self.rejected_records.fetch_add(n, Ordering::Relaxed);
            tracing::warn!(sink = SINK, rejected = n, message = %p.error_message,
                    "collector dropped log records (partial success)");
        }
        Ok(())
    }

    fn lock_partial(&self) -> std::sync::MutexGuard<'_, HashMap<String, Done>> {
        self.partial.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The start of a success body; a read error just ends it (the status has
/// already said the data is taken).
async fn read_prefix(response: &mut Response) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body
}

impl Sink for OtlpSink {
    async fn send(&self, batch_key: &str, body: &[u8]) -> Attempt {
        self.export(batch_key, body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_secret_headers() {
        let mut config = OtlpConfig::new("http://collector:4318/prefix/");
        config
            .headers
            .insert("authorization".into(), Secret::new("Bearer hunter2"));
        let sink = OtlpSink::new(&config).expect("valid");
        assert_eq!(
            sink.metrics_url.as_str(),
            "http://collector:4318/prefix/v1/metrics"
        );
        assert_eq!(
            sink.logs_url.as_str(),
            "http://collector:4318/prefix/v1/logs"
        );
        assert!(!format!("{sink:?}{config:?}").contains("hunter2"));
        assert!(OtlpSink::new(&OtlpConfig::new("ftp://x")).is_err());
    }
}
