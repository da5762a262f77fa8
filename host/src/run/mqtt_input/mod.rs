//! The `mqtt` input: a host-owned MQTT 3.1.1 client subscribed with QoS 1
//! to the configured topic filters; each message is one frame for the
//! input's decoder, with `origin = "mqtt:<topic>"` (so a decoder can map
//! `sensors/<device>/<metric>` to source and kind).
//!
//! Invariants:
//! - **PUBACK means committed.** Acks are manual: a message is acknowledged
//!   only after the pipeline thread replied that its events are committed
//!   to the buffer (or it was dead-lettered). A kill -9 before that leaves
//!   it unacknowledged, and the broker resends it to the next run;
//! - **persistent session**: `clean_session = false` under a stable client
//!   id, so the broker keeps the subscriptions and queues the QoS 1
//!   messages published while the host is down (up to the broker's own
//!   queue limits, e.g. Mosquitto's `max_queued_messages`);
//! - **stable ids**: a message's event ids derive from the input name, its
//!   topic and its payload ([`commit::frame_key`]), so a redelivered message
//!   is the same events and the receiver de-duplicates it;
//! - a message over `max_message_bytes` is dead-lettered (first 4 KiB),
//!   counted and acknowledged, never decoded; the client itself takes
//!   packets up to MQTT's own maximum, so no message the broker delivers
//!   can break the connection (the broker's `message_size_limit` bounds the
//!   memory one message may take);
//! - the connection is retried forever with bounded exponential backoff
//!   (`reconnect_initial_ms` doubling to `reconnect_max_ms`, jittered).
//!
//! Duplicates: what was committed but whose PUBACK the broker had not
//! processed when the host died (or the connection dropped) is delivered
//! again and committed again: the acks in the client's queue
//! (`batch_max_messages` + 16), one commit's worth waiting for room, and
//! after a kill -9 also acks still in the sockets (a reset connection
//! discards what the broker had not read). Those copies carry the same
//! event ids, so the receiver keeps one.
//!
//! Shutdown: when the stop signal turns true the input finishes the batch
//! in hand (commit, then acks), sends DISCONNECT after the acks, and ends;
//! anything unacknowledged is resent to the next run.

mod commit;
mod connection;
mod stats;
mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, TlsConfiguration, Transport};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::worker::Work;
use crate::lifecycle::Lifecycle;
use commit::{Committer, Limits};
use connection::Connection;

pub use commit::frame_key;
pub use stats::{MqttSnapshot, MqttStats};
pub use tls::TlsSetupError;

/// The largest packet the client accepts: MQTT's own maximum remaining
/// length, so an oversized message arrives and is dead-lettered instead of
/// breaking the connection (and being resent for ever).
const MAX_PACKET_BYTES: usize = 268_435_455;
/// The largest packet the client sends (SUBSCRIBE, PUBACK, PINGREQ).
const MAX_OUTGOING_BYTES: usize = 1 << 20;
/// How long the stop waits for DISCONNECT to go out after the last acks.
const DISCONNECT_GRACE: Duration = Duration::from_millis(500);

/// An mqtt input ready to run (its client options and TLS config built).
pub struct MqttInput {
    name: String,
    broker: String,
    options: MqttOptions,
    topics: Vec<String>,
    limits: Limits,
    backoff_initial: Duration,
    backoff_max: Duration,
    stats: Arc<MqttStats>,
    lifecycle: Lifecycle,
}

/// Checks what [`MqttInput::from_config`] would refuse (a CA file that is
/// missing or holds no certificate), for `halyard config check`.
pub fn check_tls(config: &crate::config::MqttInput) -> Result<(), TlsSetupError> {
    match &config.tls {
        Some(tls) => tls::client_config(tls.ca_file.as_deref()).map(drop),
        None => Ok(()),
    }
}

impl MqttInput {
    /// Builds the input from its config; `host_id` names the default
    /// client id. Fails only on unusable TLS settings (a missing CA file).
    pub fn from_config(
        config: &crate::config::MqttInput,
        host_id: &str,
        lifecycle: Lifecycle,
    ) -> Result<MqttInput, TlsSetupError> {
        let (host, port) = config
            .host_port()
            .unwrap_or_else(|| (config.broker.clone(), 1883));
        let limits = Limits {
            max_message_bytes: usize::try_from(config.max_message_bytes).unwrap_or(usize::MAX),
            batch_max_messages: usize::try_from(config.batch_max_messages.max(1))
                .unwrap_or(usize::MAX),
            batch_max_bytes: usize::try_from(config.batch_max_bytes).unwrap_or(usize::MAX),
        };
        let mut options = MqttOptions::new(config.client_id_for(host_id), host, port);
        options
            .set_keep_alive(Duration::from_secs(config.keep_alive_s.max(1)))
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_OUTGOING_BYTES)
            // Room for a whole batch of acks, so acking never waits on the
            // event loop that delivers the next messages.
            .set_request_channel_capacity(limits.batch_max_messages.saturating_add(16));
        if let Some(username) = &config.username {
            let password = config
                .password
                .as_ref()
                .map(|p| p.secret().expose().to_string())
                .unwrap_or_default();
            options.set_credentials(username.clone(), password);
        }
        if let Some(tls) = &config.tls {
            let client = tls::client_config(tls.ca_file.as_deref())?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(client)));
        }
        Ok(MqttInput {
            name: config.name.clone(),
            broker: config.broker.clone(),
            options,
            topics: config.topics.clone(),
            limits,
            backoff_initial: Duration::from_millis(config.reconnect_initial_ms.max(1)),
            backoff_max: Duration::from_millis(config.reconnect_max_ms.max(1)),
            stats: Arc::new(MqttStats::new(&config.name)),
            lifecycle,
        })
    }

    /// The input's name in the config.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The input's counters, for `/metrics`.
    pub fn stats(&self) -> Arc<MqttStats> {
        self.stats.clone()
    }

    /// Connects, subscribes and commits messages until `stop` turns true;
    /// then finishes the batch in hand, acknowledges it, disconnects and
    /// drops its sender.
    pub async fn run(self, work: Sender<Work>, stop: watch::Receiver<bool>) {
        let name = self.name.clone();
        let stats = self.stats.clone();
        let capacity = self.options.request_channel_capacity();
        let (client, events) = AsyncClient::new(self.options, capacity);
        let (to_commit, from_broker) = mpsc::channel(self.limits.batch_max_messages.max(16));
        let generation = Arc::new(AtomicU64::new(0));
        let cancel = CancellationToken::new();
        tracing::info!(input = %self.name, broker = %self.broker, topics = ?self.topics,
            "mqtt input starting");
        let connection = Connection {
            name: self.name.clone(),
            broker: self.broker.clone(),
            topics: self.topics,
            backoff_initial: self.backoff_initial,
            backoff_max: self.backoff_max,
            generation: generation.clone(),
            stats: self.stats.clone(),
            lifecycle: self.lifecycle,
        };
        let mut driving =
            tokio::spawn(connection.drive(events, client.clone(), to_commit, cancel.clone()));
        let committer = Committer {
            name: self.name.clone(),
            limits: self.limits,
            client: client.clone(),
            generation,
            stats: self.stats.clone(),
            unacked: Default::default(),
        };
        committer.run(from_broker, work, stop).await;
        // The acks just queued go out before the goodbye (one queue, in
        // order); without a connection there is no one to say it to.
        let mut ended = false;
        if stats.connected.load(Ordering::Relaxed) == 1 {
            let _ = tokio::time::timeout(DISCONNECT_GRACE, client.disconnect()).await;
            ended = tokio::time::timeout(DISCONNECT_GRACE, &mut driving)
                .await
                .is_ok();
        }
        if !ended {
            cancel.cancel();
            let _ = driving.await;
        }
        let s = stats.snapshot();
        tracing::info!(input = %name, received = s.received, acked = s.acked,
            decode_failures = s.decode_failures, oversized = s.oversized,
            reconnects = s.reconnects, "mqtt input stopped");
    }
}
