//! NATS JetStream sink: every event published with its id as `Nats-Msg-Id`
//! and counted delivered only when the stream has acknowledged it.
//!
//! JetStream drops a message whose `Nats-Msg-Id` it has seen within the
//! stream's duplicate window (and still acknowledges it, flagged
//! `duplicate`), so a batch resent after a timeout or a host crash adds no
//! duplicates, as long as the resend comes within that window (2 min by
//! default; raise `duplicate_window_ms` for hosts that can be down longer).

use std::future::IntoFuture as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::context::{Context, ContextBuilder, PublishErrorKind};
use async_nats::jetstream::stream;
use async_nats::{ConnectOptions, HeaderMap};
use bytes::Bytes;
use futures_util::future::join_all;
use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::envelope::{self, rejected};
use crate::template::{Template, Values};
use crate::{Attempt, Secret, Sink, TransportError};

const SINK: &str = "nats";

/// Publishes awaited together at most; below the client's ack-in-flight
/// limit (5 000) so one huge batch cannot wait on itself.
const CHUNK: usize = 1000;

/// The stream to create, or check, before the first publish.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NatsStream {
    /// Stream name, e.g. `HALYARD`.
    pub name: String,
    /// Subjects the stream captures, e.g. `["halyard.>"]`; must cover the
    /// subject template, or publishes find no stream.
    pub subjects: Vec<String>,
    /// How long JetStream remembers message ids to drop resends; 120 000 ms
    /// (two minutes, JetStream's default) unless set.
    #[serde(default = "default_duplicate_window_ms")]
    pub duplicate_window_ms: u64,
}

fn default_duplicate_window_ms() -> u64 {
    120_000
}

/// TLS towards the server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NatsTls {
    /// PEM file of a private CA to trust in addition to the platform's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// `[[transport]] type = "nats"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL, e.g. `nats://127.0.0.1:4222` (`tls://` for TLS).
    pub url: String,
    /// Subject template with `{host_id}`, `{kind}`, `{source}`; substituted
    /// values have `*`, `>`, whitespace and NUL replaced by `_`. Default
    /// `halyard.{host_id}.{kind}`.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Username, with `password`.
    #[serde(default)]
    pub username: Option<String>,
    /// Password; never logged.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Token authentication instead of username/password; never logged.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Require TLS, trusting `ca_file` if given.
    #[serde(default)]
    pub tls: Option<NatsTls>,
    /// How long a publish waits for its PubAck; 10 000 ms by default.
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// Create the stream if missing, or check that the existing one covers
    /// these subjects with this duplicate window.
    #[serde(default)]
    pub create_stream: Option<NatsStream>,
}

fn default_subject() -> String {
    "halyard.{host_id}.{kind}".to_owned()
}
fn default_ack_timeout_ms() -> u64 {
    10_000
}

impl NatsConfig {
    /// Defaults for everything but the URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            subject: default_subject(),
            username: None,
            password: None,
            token: None,
            tls: None,
            ack_timeout_ms: default_ack_timeout_ms(),
            create_stream: None,
        }
    }
}

/// Replaces what NATS treats as wildcards or separators-breakers in a
/// subject token; an empty value becomes `_` (empty tokens are invalid).
fn sanitise(value: &str, out: &mut String) {
    if value.is_empty() {
        out.push('_');
        return;
    }
    out.extend(value.chars().map(|c| match c {
        '*' | '>' | '\0' => '_',
        c if c.is_whitespace() => '_',
        c => c,
    }));
}

/// Publishes events to NATS JetStream.
pub struct NatsSink {
    url: String,
    options: std::sync::Mutex<Option<Box<ConnectOptions>>>,
    subject: Template,
    ack_timeout: Duration,
    stream: Option<NatsStream>,
    context: OnceCell<Context>,
    stream_ready: OnceCell<()>,
    duplicates: AtomicU64,
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSink")
            .field("subject", &self.subject)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl NatsSink {
    /// Checks the configuration now; connects in the background on the first
    /// batch, so a server that is down at start is just a retry.
    pub fn new(config: &NatsConfig) -> Result<Self, TransportError> {
        let bad = |reason: String| TransportError::Config { sink: SINK, reason };
        let subject = Template::parse(SINK, &config.subject, true)?;
        if config.subject.contains(['*', '>', ' ', '\0']) {
            return Err(bad(format!(
                "subject {:?} contains a wildcard or space",
                config.subject
            )));
        }
        if config.url.parse::<async_nats::ServerAddr>().is_err() {
            return Err(bad(format!("invalid server URL {:?}", config.url)));
        }
        if config.url.contains('@') {
            return Err(bad(
                "put credentials in username/password/token, not the URL".into(),
            ));
        }
        let ack_timeout = Duration::from_millis(config.ack_timeout_ms.max(1));
        let mut options = ConnectOptions::new()
            .name(concat!("halyard/", env!("CARGO_PKG_VERSION")))
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .reconnect_delay_callback(|attempts| {
                // 100 ms doubling to 2 s: a restarted server is found quickly.
                let exp = u32::try_from(attempts.min(5)).unwrap_or(5);
                Duration::from_millis(100 * 2u64.pow(exp)).min(Duration::from_secs(2))
            });
        match (&config.username, &config.password, &config.token) {
            (Some(user), Some(pass), None) => {
                options = options.user_and_password(user.clone(), pass.expose().to_owned());
            }
            (None, None, Some(token)) => options = options.token(token.expose().to_owned()),
            (None, None, None) => {}
            _ => return Err(bad("set username and password, or token, not a mix".into())),
        }
        if let Some(tls) = &config.tls {
            options = options.require_tls(true);
            if let Some(ca) = &tls.ca_file {
                if !ca.is_file() {
                    return Err(bad(format!("CA file {} does not exist", ca.display())));
                }
                options = options.add_root_certificates(ca.clone());
            }
        }
        if let Some(stream) = &config.create_stream
            && (stream.name.is_empty() || stream.subjects.is_empty())
        {
            return Err(bad("create_stream needs a name and subjects".into()));
        }
        Ok(Self {
            url: config.url.clone(),
            options: std::sync::Mutex::new(Some(Box::new(options))),
            subject,
            ack_timeout,
            stream: config.create_stream.clone(),
            context: OnceCell::new(),
            stream_ready: OnceCell::new(),
            duplicates: AtomicU64::new(0),
        })
    }

    /// Messages JetStream acknowledged as duplicates (dropped, already
    /// stored): each is a resend the `Nats-Msg-Id` made harmless.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    async fn context(&self) -> Result<&Context, Attempt> {
        self.context
            .get_or_try_init(|| async {
                let options = self
                    .options
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                let Some(options) = options else {
                    return Err(Attempt::retry("NATS connect already in progress"));
                };
                // With retry_on_initial_connect this returns at once; only a
                // malformed URL fails here.
                let client =
                    options
                        .connect(self.url.as_str())
                        .await
                        .map_err(|e| Attempt::Refused {
                            status: None,
                            reason: format!("NATS: {e}"),
                        })?;
                let mut builder = ContextBuilder::new().timeout(self.ack_timeout);
                builder = builder.max_ack_inflight(5_000);
                Ok(builder.build(client))
            })
            .await
    }

    /// Creates or checks the configured stream once per sink.
    async fn ensure_stream(&self, js: &Context) -> Result<(), Attempt> {
        let Some(wanted) = &self.stream else {
            return Ok(());
        };
        self.stream_ready
            .get_or_try_init(|| async {
                let window = Duration::from_millis(wanted.duplicate_window_ms);
                let config = stream::Config {
                    name: wanted.name.clone(),
                    subjects: wanted.subjects.clone(),
                    duplicate_window: window,
                    ..Default::default()
                };
                let found = js
                    .get_or_create_stream(config)
                    .await
                    .map_err(|e| Attempt::retry(format!("NATS stream {}: {e}", wanted.name)))?;
                let have = &found.cached_info().config;
                let missing: Vec<&String> = wanted
                    .subjects
                    .iter()
                    .filter(|s| !have.subjects.contains(s))
                    .collect();
                if !missing.is_empty() || have.duplicate_window != window {
                    return Err(Attempt::Refused {
                        status: None,
                        reason: format!(
                            "NATS stream {} exists with subjects {:?} and duplicate window {:?}, \
                             not {:?} / {window:?}",
                            wanted.name, have.subjects, have.duplicate_window, wanted.subjects
                        ),
                    });
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    async fn publish(&self, body: &[u8]) -> Attempt {
        let env = match envelope::parse(body) {
            Ok(env) => env,
            Err(reason) => return rejected(reason),
        };
        let mut messages = Vec::with_capacity(env.events.len());
        for event in &env.events {
            let head = match envelope::head(event) {
                Ok(head) => head,
                Err(reason) => return rejected(reason),
            };
            let mut subject = String::new();
            let values = Values {
                host_id: &env.host.id,
                kind: &head.kind,
                source: &head.source,
            };
            self.subject.render(&values, sanitise, &mut subject);
            let mut headers = HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, head.id.as_ref());
            messages.push((
                subject,
                headers,
                Bytes::copy_from_slice(event.get().as_bytes()),
            ));
        }
        let js = match self.context().await {
            Ok(js) => js,
            Err(attempt) => return attempt,
        };
        if let Err(attempt) = self.ensure_stream(js).await {
            return attempt;
        }
        let mut messages = messages.into_iter().peekable();
        while messages.peek().is_some() {
            let mut acks = Vec::with_capacity(CHUNK);
            for (subject, headers, payload) in messages.by_ref().take(CHUNK) {
                match js.publish_with_headers(subject, headers, payload).await {
                    Ok(ack) => acks.push(ack.into_future()),
                    Err(e) => return classify(e.kind(), &e.to_string()),
                }
            }
            for ack in join_all(acks).await {
                match ack {
                    Ok(ack) if ack.duplicate => {
                        self.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => return classify(e.kind(), &e.to_string()),
                }
            }
        }
        Attempt::Delivered
    }
}

/// A failed publish: no stream is configuration to fix, too big a message
/// the host splits, the rest (timeouts, a lost connection) retried.
fn classify(kind: PublishErrorKind, message: &str) -> Attempt {
    match kind {
        PublishErrorKind::StreamNotFound => Attempt::Refused {
            status: None,
            reason: format!("NATS: no stream captures the subject ({message})"),
        },
        PublishErrorKind::MaxPayloadExceeded => Attempt::TooLarge {
            reason: format!("NATS: {message}"),
        },
        _ => Attempt::retry(format!("NATS: {message}")),
    }
}

impl Sink for NatsSink {
    async fn send(&self, _batch_key: &str, body: &[u8]) -> Attempt {
        self.publish(body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_checks_and_sanitising() {
        let mut config = NatsConfig::new("nats://127.0.0.1:1");
        config.password = Some(Secret::new("hunter2"));
        assert!(NatsSink::new(&config).is_err(), "password without user");
        config.username = Some("u".into());
        let sink = NatsSink::new(&config).expect("valid");
        assert!(!format!("{sink:?}{config:?}").contains("hunter2"));
        config.subject = "a.*.{kind}".into();
        assert!(NatsSink::new(&config).is_err());
        let mut out = String::new();
        sanitise("a b*c>", &mut out);
        sanitise("", &mut out);
        assert_eq!(out, "a_b_c__");
    }
}
