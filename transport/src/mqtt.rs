//! MQTT sink: publish each event (or each batch) at QoS 1 and count it
//! delivered only when the broker has acknowledged every message (PUBACK).
//!
//! rumqttc does not tell a publisher which packet id its message got, but it
//! assigns ids in the order requests leave its channel and reports each as
//! `Outgoing::Publish(pkid)`. So publishes are queued under one lock, each
//! with a waiter pushed in the same order, and the event-loop task pairs the
//! n-th outgoing id with the n-th waiter, then the PUBACK with the id.
//!
//! Any connection error ends that connection for good: every waiter still
//! open gets `Retry`, and the next batch opens a fresh, clean session. The
//! broker may already hold messages whose PUBACK was lost, so the resend can
//! duplicate them: MQTT 3.1.1 at QoS 1 has no way to prevent that.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, NetworkOptions,
    Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use tokio::sync::oneshot;

use crate::envelope::{self, Envelope, rejected};
use crate::template::{Template, Values};
use crate::{Attempt, MqttConfig, MqttPer, Secret, Sink, TransportError};

pub(crate) const SINK: &str = "mqtt";

/// Replaces what MQTT treats as wildcards or forbids in a topic.
fn sanitise(value: &str, out: &mut String) {
    out.extend(value.chars().map(|c| match c {
        '+' | '#' | '\0' => '_',
        c => c,
    }));
}

/// How a failed connection or publish ends the attempt.
#[derive(Debug, Clone)]
enum Failure {
    Retry(String),
    Refused(String),
}

impl Failure {
    fn attempt(self) -> Attempt {
        match self {
            Failure::Retry(reason) => Attempt::retry(reason),
            Failure::Refused(reason) => Attempt::Refused {
                status: None,
                reason,
            },
        }
    }
}

type Waiter = oneshot::Sender<Result<(), Failure>>;

#[derive(Default)]
struct ConnState {
    /// Set once the connection failed; it is never used again.
    dead: Option<Failure>,
    /// Published, packet id not yet known, in request order.
    awaiting_id: VecDeque<Waiter>,
    /// Sent, awaiting PUBACK.
    inflight: HashMap<u16, Waiter>,
}

impl ConnState {
    fn fail(&mut self, failure: Failure) {
        for waiter in self
            .awaiting_id
            .drain(..)
            .chain(self.inflight.drain().map(|(_, w)| w))
        {
            let _ = waiter.send(Err(failure.clone()));
        }
        self.dead = Some(failure);
    }
}

/// One broker connection (one clean session) and its event-loop task.
struct Conn {
    client: AsyncClient,
    state: Arc<Mutex<ConnState>>,
    /// Held while queueing a batch's publishes, so waiters and requests
    /// enter their queues in the same order.
    order: tokio::sync::Mutex<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Conn {
    fn open(options: MqttOptions) -> Self {
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        // Without it Nagle holds a batch's last small PUBLISH until the
        // broker's delayed ACK (~40 ms), which caps a batch at ~25/s.
        let mut network = NetworkOptions::new();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let state = Arc::new(Mutex::new(ConnState::default()));
        let task = tokio::spawn(drive(eventloop, Arc::clone(&state)));
        Self {
            client,
            state,
            order: tokio::sync::Mutex::new(()),
            task,
        }
    }

    /// Failed, or its event-loop task ended some other way (a panic).
    fn is_dead(&self) -> bool {
        lock(&self.state).dead.is_some() || self.task.is_finished()
    }
}

fn lock(state: &Mutex<ConnState>) -> std::sync::MutexGuard<'_, ConnState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Polls the event loop, pairing packet ids with waiters, until the
/// connection fails; then fails every open waiter.
async fn drive(mut eventloop: EventLoop, state: Arc<Mutex<ConnState>>) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let mut s = lock(&state);
                if let Some(waiter) = s.awaiting_id.pop_front() {
                    s.inflight.insert(pkid, waiter);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(waiter) = lock(&state).inflight.remove(&ack.pkid) {
                    let _ = waiter.send(Ok(()));
                }
            }
            Ok(_) => {}
            Err(error) => {
                let failure = classify(&error);
                tracing::warn!(sink = SINK, %error, "MQTT connection lost");
                lock(&state).fail(failure);
                return;
            }
        }
    }
}

/// Credentials and TLS problems need an operator; the rest is an outage.
fn classify(error: &ConnectionError) -> Failure {
    match error {
        ConnectionError::ConnectionRefused(
            code @ (ConnectReturnCode::BadUserNamePassword
            | ConnectReturnCode::NotAuthorized
            | ConnectReturnCode::BadClientId
            | ConnectReturnCode::RefusedProtocolVersion),
        ) => Failure::Refused(format!("MQTT broker refused the connection: {code:?}")),
        ConnectionError::Tls(e) => Failure::Refused(format!("MQTT TLS failed: {e}")),
        other => Failure::Retry(format!("MQTT: {other}")),
    }
}

/// The rustls client config: trusting `ca_file` (PEM, for a private CA) or
/// else the Mozilla roots. Built with the ring provider explicitly, since
/// rustls cannot choose one by itself when several are compiled in.
fn client_tls(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let unreadable =
                |e: &dyn std::fmt::Display| format!("cannot read CA file {}: {e}", path.display());
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(&e))? {
                let cert = cert.map_err(|e| unreadable(&e))?;
                roots.add(cert).map_err(|e| unreadable(&e))?;
            }
            if roots.is_empty() {
                return Err(format!("CA file {} holds no certificate", path.display()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Publishes batches to an MQTT broker at QoS 1.
pub struct MqttSink {
    options: Box<MqttOptions>,
    topic: Template,
    per: MqttPer,
    retain: bool,
    max_packet_size: usize,
    ack_timeout: Duration,
    conn: Mutex<Option<Arc<Conn>>>,
}

impl std::fmt::Debug for MqttSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (host, port) = self.options.broker_address();
        f.debug_struct("MqttSink")
            .field("broker", &format!("{host}:{port}"))
            .field("topic", &self.topic)
            .field("per", &self.per)
            .finish_non_exhaustive()
    }
}

impl MqttSink {
    /// Checks the configuration (template, CA file) now; connects lazily on
    /// the first batch, so a broker that is down at start is just a retry.
    pub fn new(config: &MqttConfig) -> Result<Self, TransportError> {
        let bad = |reason: String| TransportError::Config { sink: SINK, reason };
        let topic = Template::parse(SINK, &config.topic, config.per == MqttPer::Event)?;
        if config.topic.contains(['+', '#', '\0']) {
            return Err(bad(format!("topic {:?} contains + # or NUL", config.topic)));
        }
        let client_id = config
            .client_id
            .clone()
            .unwrap_or_else(|| format!("halyard-{:016x}", rand::random::<u64>()));
        let mut options = MqttOptions::new(client_id, config.host.clone(), config.port);
        options
            .set_clean_session(true)
            .set_keep_alive(Duration::from_secs(config.keep_alive_secs.max(5)))
            .set_max_packet_size(config.max_packet_size, config.max_packet_size)
            .set_inflight(config.max_inflight.max(1));
        match (&config.username, &config.password) {
            (Some(user), password) => {
                let password = password.as_ref().map(Secret::expose).unwrap_or_default();
                options.set_credentials(user.clone(), password);
            }
            (None, Some(_)) => return Err(bad("a password needs a username".into())),
            (None, None) => {}
        }
        if let Some(tls) = &config.tls {
            let tls_config = client_tls(tls.ca_file.as_deref()).map_err(bad)?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(tls_config),
            )));
        }
        Ok(Self {
            options: Box::new(options),
            topic,
            per: config.per,
            retain: config.retain,
            max_packet_size: config.max_packet_size,
            ack_timeout: Duration::from_millis(config.ack_timeout_ms.max(1)),
            conn: Mutex::new(None),
        })
    }

    /// The live connection, or a new one if there is none or it failed.
    fn connection(&self) -> Arc<Conn> {
        let mut slot = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some(conn) if !conn.is_dead() => Arc::clone(conn),
            _ => {
                let conn = Arc::new(Conn::open((*self.options).clone()));
                *slot = Some(Arc::clone(&conn));
                conn
            }
        }
    }

    /// The (topic, payload) messages of one batch.
    fn messages<'a>(
        &self,
        env: &Envelope<'a>,
        body: &'a [u8],
    ) -> Result<Vec<(String, &'a [u8])>, String> {
        let mut topic = String::new();
        match self.per {
            MqttPer::Batch => {
                let values = Values {
                    host_id: &env.host.id,
                    kind: "",
                    source: "",
                };
                self.topic.render(&values, sanitise, &mut topic);
                Ok(vec![(topic, body)])
            }
            MqttPer::Event => env
                .events
                .iter()
                .map(|event| {
                    let head = envelope::head(event)?;
                    let values = Values {
                        host_id: &env.host.id,
                        kind: &head.kind,
                        source: &head.source,
                    };
                    self.topic.render(&values, sanitise, &mut topic);
                    Ok((topic.clone(), event.get().as_bytes()))
                })
                .collect(),
        }
    }

    async fn publish(&self, body: &[u8]) -> Attempt {
        let env = match envelope::parse(body) {
            Ok(env) => env,
            Err(reason) => return rejected(reason),
        };
        let messages = match self.messages(&env, body) {
            Ok(messages) => messages,
            Err(reason) => return rejected(reason),
        };
        // MQTT encodes a topic's length in 16 bits; an event whose kind or
        // source makes it longer cannot be published at all.
        if messages
            .iter()
            .any(|(t, _)| t.len() > usize::from(u16::MAX))
        {
            return rejected("MQTT topic longer than 65535 bytes".to_owned());
        }
        // Fixed header (5) + topic length (2) + packet id (2).
        if let Some((topic, payload)) = messages
            .iter()
            .find(|(t, p)| t.len() + p.len() + 9 > self.max_packet_size)
        {
            return Attempt::TooLarge {
                reason: format!(
                    "MQTT message of {} bytes to {topic} exceeds max_packet_size {}",
                    payload.len(),
                    self.max_packet_size
                ),
            };
        }
        let conn = self.connection();
        let mut acks = Vec::with_capacity(messages.len());
        {
            let _order = conn.order.lock().await;
            for (topic, payload) in messages {
                let (tx, rx) = oneshot::channel();
                {
                    let mut state = lock(&conn.state);
                    if let Some(failure) = &state.dead {
                        return failure.clone().attempt();
                    }
                    state.awaiting_id.push_back(tx);
                }
                if let Err(e) = conn
                    .client
                    .publish(topic, QoS::AtLeastOnce, self.retain, payload)
                    .await
                {
                    // Never queued, so never given a packet id: take its
                    // waiter back (it is the last, under `order`).
                    lock(&conn.state).awaiting_id.pop_back();
                    return Attempt::retry(format!("MQTT client closed: {e}"));
                }
                acks.push(rx);
            }
        }
        let count = acks.len();
        let all = async {
            for ack in acks {
                match ack.await {
                    Ok(Ok(())) => {}
                    Ok(Err(failure)) => return Err(failure),
                    Err(_) => return Err(Failure::Retry("MQTT connection dropped".into())),
                }
            }
            Ok(())
        };
        match tokio::time::timeout(self.ack_timeout, all).await {
            Ok(Ok(())) => Attempt::Delivered,
            Ok(Err(failure)) => failure.attempt(),
            Err(_) => Attempt::retry(format!(
                "MQTT: not all {count} PUBACKs within {:?}",
                self.ack_timeout
            )),
        }
    }
}

impl Sink for MqttSink {
    async fn send(&self, _batch_key: &str, body: &[u8]) -> Attempt {
        self.publish(body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_checked_up_front_and_secrets_hidden() {
        let mut config = MqttConfig::new("127.0.0.1", 1);
        config.username = Some("u".into());
        config.password = Some(Secret::new("hunter2"));
        let sink = MqttSink::new(&config).expect("valid");
        assert!(!format!("{sink:?}{config:?}").contains("hunter2"));
        config.per = MqttPer::Batch;
        assert!(MqttSink::new(&config).is_err(), "{{kind}} per batch");
        config.topic = "a/+/{host_id}".into();
        assert!(MqttSink::new(&config).is_err());
        let parsed: Result<MqttConfig, _> =
            serde_json::from_value(serde_json::json!({"host": "h", "qos": 2}));
        assert!(parsed.is_err(), "unknown fields are refused");
        let mut out = String::new();
        sanitise("a+b#c\0", &mut out);
        assert_eq!(out, "a_b_c_");
    }
}
