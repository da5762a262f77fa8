//! Redis Streams sink: one `XADD` per event, pipelined per batch, in the
//! event-bus wire shape (`schema_version`, `kind`, `ts`, `correlation_id`,
//! `payload`) that the host's lifecycle events already use.
//!
//! The batch is delivered when Redis has answered every `XADD` of the
//! pipeline. Redis has no idempotent `XADD`, so a batch resent after an
//! ambiguous failure (a timeout, a connection lost after Redis executed the
//! pipeline) is appended again: consumers that must not double count dedupe
//! on the event `id` inside `payload`.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, IntoConnectionInfo, RedisError};
use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::envelope::{self, LIFECYCLE_PREFIX, rejected};
use crate::{Attempt, Secret, Sink, TransportError};

const SINK: &str = "redis";

/// The event-bus wire shape's version, as the host's lifecycle events carry it.
pub(crate) const SCHEMA_VERSION: &str = "1";

/// `[[transport]] type = "redis"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisStreamConfig {
    /// `redis://host:port/db`; credentials go in `username`/`password`,
    /// never the URL, which is logged. TLS (`rediss://`) is not built in
    /// and is refused at startup.
    pub url: String,
    /// ACL user, with `password`.
    #[serde(default)]
    pub username: Option<String>,
    /// Password; never logged.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Stream key events go to; `halyard:events` by default.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Stream for lifecycle events (kind `halyard.…`); `None` keeps them in
    /// `stream` with everything else.
    #[serde(default)]
    pub lifecycle_stream: Option<String>,
    /// `MAXLEN ~ N` on every `XADD`: Redis trims to about this many entries
    /// so the stream cannot fill its memory; 1 000 000 by default, 0 for no
    /// trimming.
    #[serde(default = "default_max_len")]
    pub max_len: u64,
    /// Budget for one pipeline's answers; 10 000 ms by default.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_stream() -> String {
    "halyard:events".to_owned()
}
fn default_max_len() -> u64 {
    1_000_000
}
fn default_timeout_ms() -> u64 {
    10_000
}

impl RedisStreamConfig {
    /// Defaults for everything but the URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            username: None,
            password: None,
            stream: default_stream(),
            lifecycle_stream: None,
            max_len: default_max_len(),
            timeout_ms: default_timeout_ms(),
        }
    }
}

/// Appends events to Redis Streams.
pub struct RedisStreamSink {
    client: redis::Client,
    config: RedisStreamConfig,
    conn: OnceCell<ConnectionManager>,
}

impl std::fmt::Debug for RedisStreamSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RedisStreamSink {
    /// Checks the URL now; connects on the first batch (and reconnects by
    /// itself), so a Redis that is down at start is just a retry.
    pub fn new(config: &RedisStreamConfig) -> Result<Self, TransportError> {
        let bad = |reason: String| TransportError::Config { sink: SINK, reason };
        let info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| bad(format!("invalid URL: {e}")))?;
        if info.redis_settings().password().is_some() {
            return Err(bad("put the password in `password`, not the URL".into()));
        }
        let mut settings = info.redis_settings().clone();
        if let Some(user) = &config.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &config.password {
            settings = settings.set_password(password.expose());
        }
        if config.stream.is_empty() || config.lifecycle_stream.as_deref() == Some("") {
            return Err(bad("stream names must not be empty".into()));
        }
        let client = redis::Client::open(info.set_redis_settings(settings))
            .map_err(|e| bad(format!("invalid URL: {e}")))?;
        Ok(Self {
            client,
            config: config.clone(),
            conn: OnceCell::new(),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, Attempt> {
        self.conn
            .get_or_try_init(|| async {
                let timeout = Duration::from_millis(self.config.timeout_ms.max(1));
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout.min(Duration::from_secs(5))))
                    .set_response_timeout(Some(timeout))
                    .set_max_delay(Duration::from_secs(2))
                    .set_number_of_retries(1);
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
                    .map_err(|e| classify(&e))
            })
            .await
            .cloned()
    }

    async fn append(&self, body: &[u8]) -> Attempt {
        let env = match envelope::parse(body) {
            Ok(env) => env,
            Err(reason) => return rejected(reason),
        };
        let mut pipe = redis::pipe();
        for event in &env.events {
            let head = match envelope::head(event) {
                Ok(head) => head,
                Err(reason) => return rejected(reason),
            };
            let lifecycle = head.kind.starts_with(LIFECYCLE_PREFIX);
            let stream = match (&self.config.lifecycle_stream, lifecycle) {
                (Some(stream), true) => stream,
                _ => &self.config.stream,
            };
            let xadd = pipe.cmd("XADD").arg(stream);
            if self.config.max_len > 0 {
                xadd.arg("MAXLEN").arg("~").arg(self.config.max_len);
            }
            xadd.arg("*")
                .arg("schema_version")
                .arg(SCHEMA_VERSION)
                .arg("kind")
                .arg(&*head.kind)
                .arg("ts")
                .arg(envelope::rfc3339_millis(head.time_ns))
                .arg("correlation_id")
                .arg(correlation_id(event.get(), lifecycle, &head.id))
                .arg("payload")
                .arg(event.get());
        }
        let mut conn = match self.connection().await {
            Ok(conn) => conn,
            Err(attempt) => return attempt,
        };
        match pipe.query_async::<Vec<String>>(&mut conn).await {
            Ok(ids) if ids.len() == env.events.len() => Attempt::Delivered,
            Ok(ids) => Attempt::retry(format!(
                "Redis answered {} of {} XADDs",
                ids.len(),
                env.events.len()
            )),
            Err(e) => classify(&e),
        }
    }
}

/// The episode a lifecycle event belongs to (its body's `correlation_id`);
/// for other events their own id, so every entry has one to join on.
fn correlation_id(raw: &str, lifecycle: bool, id: &str) -> String {
    #[derive(Deserialize)]
    struct Body {
        correlation_id: String,
    }
    #[derive(Deserialize)]
    struct WithBody {
        body: Body,
    }
    if lifecycle && let Ok(with) = serde_json::from_str::<WithBody>(raw) {
        return with.body.correlation_id;
    }
    id.to_owned()
}

/// Credentials and wrong key types need an operator; the rest is an outage.
fn classify(error: &RedisError) -> Attempt {
    let needs_operator =
        |code: &str| matches!(code, "WRONGTYPE" | "NOPERM" | "NOAUTH" | "WRONGPASS");
    // A pipeline reports the server errors of its commands in a list.
    let in_pipeline = error
        .clone()
        .into_server_errors()
        .is_some_and(|errors| errors.iter().any(|(_, e)| needs_operator(e.code())));
    let refused = error.kind() == ErrorKind::AuthenticationFailed
        || error.code().is_some_and(needs_operator)
        || in_pipeline;
    let reason = format!("Redis: {error}");
    if refused {
        Attempt::Refused {
            status: None,
            reason,
        }
    } else {
        Attempt::retry(reason)
    }
}

impl Sink for RedisStreamSink {
    async fn send(&self, _batch_key: &str, body: &[u8]) -> Attempt {
        self.append(body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_checks_and_correlation() {
        let mut config = RedisStreamConfig::new("redis://:hunter2@127.0.0.1:1/0");
        assert!(RedisStreamSink::new(&config).is_err(), "password in URL");
        config.url = "redis://127.0.0.1:1/0".into();
        config.password = Some(Secret::new("hunter2"));
        let sink = RedisStreamSink::new(&config).expect("valid");
        assert!(!format!("{sink:?}").contains("hunter2"));
        let tls = RedisStreamSink::new(&RedisStreamConfig::new("rediss://127.0.0.1:1/0"));
        assert!(tls.is_err(), "TLS is not built in; refused at startup");
        let raw = r#"{"id":"ab","kind":"halyard.host.start","body":{"correlation_id":"c1"}}"#;
        assert_eq!(correlation_id(raw, true, "ab"), "c1");
        assert_eq!(correlation_id(raw, false, "ab"), "ab");
    }
}
