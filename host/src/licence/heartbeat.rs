//! The heartbeat: reports usage to the licence server and renews the token.
//!
//! Invariant: usage is reported exactly once, across restarts and crashes.
//! With a buffer (as `run` has), usage lives in the buffer file: the
//! pipeline stores each ingest's counts with its commit, and each attempt
//! first moves what was counted in memory since (deliveries) into the
//! buffer too, then sends everything stored, with the buffer's durable
//! report `seq` and `epoch`. Only a 2xx answer subtracts exactly what was
//! sent and advances `seq`, so a report repeated after a lost answer, a
//! failure or a crash (same `seq`, whichever run sends it) holds
//! everything the earlier one did: the server keeps the last report per
//! `(host_id, epoch, seq)`. Without a buffer (tests, tools) the in-memory
//! [`UsageWindow`] is sent and committed the same way.
//!
//! A failed attempt is retried with exponential backoff (1 s doubling to
//! `retry_max_s`, full jitter). Failures start the licence's grace period;
//! a success ends it. `run` makes one last attempt at shutdown
//! ([`Heartbeat::final_beat`]).
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
    /// The usage stored in the buffer could not be read or updated.
    #[error("usage in the buffer: {0}")]
    Buffer(#[from] halyard_buffer::BufferError),
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

/// A heartbeat sender; a clone sends for the same boot (the final
/// heartbeat at shutdown uses one).
#[derive(Clone)]
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

    /// The heartbeat at shutdown: stores what was counted in memory in the
    /// buffer (so a failure or the deadline loses nothing: the next start
    /// reports it), then tries once to send, until `deadline`.
    pub async fn final_beat(&self, deadline: tokio::time::Instant) {
        if let Err(error) = self.store_counted() {
            tracing::error!(%error, "cannot store the last usage counts in the buffer");
        }
        match tokio::time::timeout_at(deadline, self.beat_once()).await {
            Ok(Ok(())) => tracing::info!("final heartbeat sent"),
            Ok(Err(error)) => {
                tracing::warn!(%error, "final heartbeat failed; usage is reported after the next start")
            }
            Err(_) => tracing::warn!(
                "shutdown timeout: final heartbeat not answered; usage is reported after the next start"
            ),
        }
    }

    /// Moves what was counted in memory (deliveries) into the buffer.
    fn store_counted(&self) -> Result<(), HeartbeatError> {
        let Some(buffer) = &self.buffer else {
            return Ok(());
        };
        let counted = self.usage.snapshot();
        if counted.is_empty() {
            return Ok(());
        }
        buffer.add_usage(&super::stored_usage::to_counts(&counted))?;
        self.usage.commit(&counted)?;
        Ok(())
    }

    /// One attempt: snapshot, send, and on success commit and renew.
    pub async fn beat_once(&self) -> Result<(), HeartbeatError> {
        self.store_counted()?;
        let stored = match &self.buffer {
            Some(buffer) => Some(buffer.usage()?),
            None => None,
        };
        self.usage.set_uptime(self.started.elapsed());
        if let Some(buffer) = &self.buffer {
            self.usage.set_buffer_depth(buffer.stats().records);
        }
        let mut snapshot = self.usage.snapshot();
        if let Some(stored) = &stored {
            let gauges = (snapshot.buffer_depth, snapshot.uptime_secs);
            snapshot = super::stored_usage::from_counts(&stored.counts);
            (snapshot.buffer_depth, snapshot.uptime_secs) = gauges;
            snapshot.seq = stored.seq;
        }
        let mut usage = serde_json::to_value(&snapshot).unwrap_or_default();
        if let (Some(stored), Some(obj)) = (&stored, usage.as_object_mut()) {
            obj.insert("epoch".into(), stored.epoch.into());
        }
        let body = serde_json::json!({
            "host_id": self.host_id,
            "boot_id": self.boot_id,
            "version": env!("CARGO_PKG_VERSION"),
            "licence": self.licence.state().name(),
            "usage": usage,
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
        match (&self.buffer, &stored) {
            (Some(buffer), Some(stored)) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                if !buffer.usage_reported(stored.seq, &stored.counts, now)? {
                    tracing::warn!(
                        seq = stored.seq,
                        "usage report already recorded; not subtracted twice"
                    );
                }
            }
            _ => self.usage.commit(&snapshot)?,
        }
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
