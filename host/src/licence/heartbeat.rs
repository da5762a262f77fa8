//! The heartbeat: reports usage to the licence server and renews the token.
//!
//! Invariant: usage is reported exactly once. Each attempt sends a
//! [`UsageWindow::snapshot`] (everything since the last *successful* send);
//! only a 2xx answer commits that snapshot. A failed attempt commits
//! nothing and is retried with exponential backoff (1 s doubling to
//! `retry_max_s`, full jitter), so the next attempt carries the whole
//! period. Failures start the licence's grace period; a success ends it.
//!
//! The request is `POST endpoint` with the API key in its header and a JSON
//! body `{"host_id","boot_id","version","licence","usage":{…}}`; the answer
//! may be `{"token":"hl1.…"}`, a renewed token.

use std::sync::Arc;
use std::time::Duration;

use halyard_buffer::Buffer;
use halyard_transport::{Backoff, RetryConfig, Secret};
use halyard_trust::licence::Token;
use halyard_trust::usage::{UsageError, UsageWindow, heartbeat_delay};
use rand::SeedableRng;
use rand::rngs::StdRng;
use reqwest::header::{HeaderName, HeaderValue};
use tokio_util::sync::CancellationToken;

use super::Licence;
use crate::config::LicenceSection;

/// Why one heartbeat attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum HeartbeatError {
    /// No answer (connection refused, timeout, …).
    #[error("licence server unreachable: {0}")]
    Unreachable(String),
    /// An answer other than 2xx.
    #[error("licence server answered {0}")]
    Status(u16),
    /// The snapshot was already committed (cannot happen with one sender).
    #[error(transparent)]
    Stale(#[from] UsageError),
    /// The endpoint or API key header cannot be used.
    #[error("heartbeat config: {0}")]
    Config(String),
}

/// Where and how often to send heartbeats.
#[derive(Debug, Clone)]
pub struct HeartbeatConfig {
    /// The licence server's URL.
    pub endpoint: String,
    /// Its API key (never logged).
    pub api_key: Option<Secret>,
    /// The header carrying the key.
    pub api_key_header: String,
    /// Time between heartbeats, before jitter.
    pub interval: Duration,
    /// Backoff between failed attempts.
    pub retry: RetryConfig,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl HeartbeatConfig {
    /// From `[licence]`; `None` without an endpoint.
    pub fn from_section(s: &LicenceSection) -> Option<HeartbeatConfig> {
        let secs = |v: f64| Duration::try_from_secs_f64(v).unwrap_or(Duration::MAX);
        Some(HeartbeatConfig {
            endpoint: s.endpoint.clone().filter(|u| !u.trim().is_empty())?,
            api_key: s.api_key.clone().filter(|k| !k.is_empty()).map(Secret::new),
            api_key_header: s.api_key_header.clone(),
            interval: secs(s.heartbeat_interval_s),
            retry: RetryConfig {
                initial: Duration::from_secs(1).min(secs(s.retry_max_s)),
                max: secs(s.retry_max_s),
                multiplier: 2.0,
            },
            timeout: secs(s.timeout_s),
        })
    }
}

/// A heartbeat sender.
pub struct Heartbeat {
    config: HeartbeatConfig,
    client: reqwest::Client,
    key: Option<(HeaderName, HeaderValue)>,
    usage: Arc<UsageWindow>,
    licence: Arc<Licence>,
    buffer: Option<Arc<Buffer>>,
    host_id: String,
    /// Tells this run's reports from an earlier run's (whose `seq` also
    /// started at 0).
    boot_id: String,
    started: tokio::time::Instant,
}

impl Heartbeat {
    /// A sender for `config`; checks the API key header up front.
    pub fn new(
        config: HeartbeatConfig,
        usage: Arc<UsageWindow>,
        licence: Arc<Licence>,
        buffer: Option<Arc<Buffer>>,
        host_id: &str,
    ) -> Result<Heartbeat, HeartbeatError> {
        let key = match &config.api_key {
            None => None,
            Some(key) => {
                let name =
                    HeaderName::from_bytes(config.api_key_header.as_bytes()).map_err(|_| {
                        HeartbeatError::Config("api_key_header is not a header name".into())
                    })?;
                let mut value = HeaderValue::from_str(key.expose())
                    .map_err(|_| HeartbeatError::Config("api_key is not a header value".into()))?;
                value.set_sensitive(true);
                Some((name, value))
            }
        };
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| HeartbeatError::Config(e.without_url().to_string()))?;
        Ok(Heartbeat {
            config,
            client,
            key,
            usage,
            licence,
            buffer,
            host_id: host_id.to_owned(),
            boot_id: crate::lifecycle::new_correlation_id(),
            started: tokio::time::Instant::now(),
        })
    }

    /// Sends heartbeats until `stop`: one at start, then every interval
    /// ±15 %, each retried with backoff until it succeeds.
    pub async fn run(self, stop: CancellationToken) {
        let mut rng = StdRng::from_os_rng();
        let backoff = Backoff::new(self.config.retry.clone());
        let mut delay = Duration::ZERO;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled() => return,
            }
            let mut failures = 0u32;
            loop {
                match self.beat_once().await {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::warn!(%error, failures = failures + 1, "heartbeat failed; usage kept for the next attempt");
                        self.licence.heartbeat_failed();
                        tokio::select! {
                            _ = tokio::time::sleep(backoff.delay(failures)) => {}
                            _ = stop.cancelled() => return,
                        }
                        failures = failures.saturating_add(1);
                    }
                }
            }
            delay = heartbeat_delay(self.config.interval, &mut rng);
        }
    }

    /// One attempt: snapshot, send, and on success commit and renew.
    pub async fn beat_once(&self) -> Result<(), HeartbeatError> {
        self.usage.set_uptime(self.started.elapsed());
        if let Some(buffer) = &self.buffer {
            self.usage.set_buffer_depth(buffer.stats().records);
        }
        let snapshot = self.usage.snapshot();
        let body = serde_json::json!({
            "host_id": self.host_id,
            "boot_id": self.boot_id,
            "version": env!("CARGO_PKG_VERSION"),
            "licence": self.licence.state().name(),
            "usage": snapshot,
        });
        let mut request = self
            .client
            .post(&self.config.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some((name, value)) = &self.key {
            request = request.header(name.clone(), value.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| HeartbeatError::Unreachable(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(HeartbeatError::Status(status.as_u16()));
        }
        let answer: serde_json::Value = response
            .bytes()
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        self.usage.commit(&snapshot)?;
        let renewed = answer
            .get("token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.trim().is_empty())
            .map(Token::new);
        self.licence.heartbeat_succeeded(renewed);
        tracing::info!(seq = snapshot.seq, "heartbeat sent");
        Ok(())
    }
}
