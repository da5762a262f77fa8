//! The connection to the broker: polls the client's event loop, hands each
//! PUBLISH to the committer, subscribes after every CONNACK, and reconnects
//! with bounded exponential backoff after a failure.
//!
//! Each connection gets a new *generation*. A message is acknowledged only
//! on the connection it arrived on: after a reconnect the broker resends
//! every unacknowledged message of the persistent session, and a PUBACK
//! with an old packet id could acknowledge a different, newer message that
//! reuses the id. So acks of an older generation are skipped; the
//! redelivered copy is committed again under the same event ids (see
//! `frame_key`) and acknowledged then.
//!
//! Lifecycle: `input.connected` when a CONNACK arrives, `input.disconnected`
//! when an established connection fails; one correlation id per connection.
//! A failed attempt to connect is logged (at warn for the first of a run of
//! failures) and counted, not published, so a long broker outage is one
//! `input.disconnected`, not one event per attempt.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet, QoS, SubscribeFilter};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::stats::MqttStats;
use crate::lifecycle::{Lifecycle, new_correlation_id};

/// One message from the broker, with the connection it arrived on.
pub struct Received {
    /// The PUBLISH as received (acknowledged with it).
    pub publish: rumqttc::Publish,
    /// The connection's generation (see the module docs).
    pub generation: u64,
}

/// What the connection task needs.
pub struct Connection {
    /// The input's name.
    pub name: String,
    /// `host:port`, for logs and lifecycle payloads.
    pub broker: String,
    /// The topic filters, subscribed with QoS 1 after every CONNACK.
    pub topics: Vec<String>,
    /// The first wait before reconnecting.
    pub backoff_initial: Duration,
    /// The longest wait between attempts.
    pub backoff_max: Duration,
    /// The current connection's generation.
    pub generation: Arc<AtomicU64>,
    /// The input's counters.
    pub stats: Arc<MqttStats>,
    /// Where `input.connected` / `input.disconnected` go.
    pub lifecycle: Lifecycle,
}

impl Connection {
    /// Polls `events` until `cancel` fires or the client disconnected on
    /// purpose, sending every PUBLISH to `to_commit`.
    pub async fn drive(
        self,
        mut events: EventLoop,
        client: AsyncClient,
        to_commit: mpsc::Sender<Received>,
        cancel: CancellationToken,
    ) {
        let mut delay = self.backoff_initial;
        let mut episode: Option<String> = None;
        let mut connected_before = false;
        let mut failing = false;
        loop {
            let polled = tokio::select! {
                () = cancel.cancelled() => break,
                polled = events.poll() => polled,
            };
            match polled {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
                    delay = self.backoff_initial;
                    failing = false;
                    self.stats.connected.store(1, Ordering::Relaxed);
                    if connected_before {
                        MqttStats::add(&self.stats.reconnects, 1);
                    }
                    connected_before = true;
                    let id = new_correlation_id();
                    tracing::info!(input = %self.name, broker = %self.broker, generation,
                        session_present = ack.session_present, "mqtt input connected");
                    self.lifecycle.emit(
                        "input.connected",
                        &id,
                        json!({"input": self.name, "type": "mqtt", "broker": self.broker,
                               "session_present": ack.session_present}),
                    );
                    episode = Some(id);
                    self.subscribe(&client);
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let refused = ack
                        .return_codes
                        .iter()
                        .filter(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                        .count();
                    if refused > 0 {
                        tracing::warn!(input = %self.name, refused, topics = ?self.topics,
                            "mqtt input: the broker refused topic filters");
                    }
                    tracing::info!(input = %self.name, topics = ?self.topics,
                        "mqtt input subscribed");
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    MqttStats::add(&self.stats.received, 1);
                    let received = Received {
                        publish,
                        generation: self.generation.load(Ordering::SeqCst),
                    };
                    let sent = tokio::select! {
                        () = cancel.cancelled() => break,
                        sent = to_commit.send(received) => sent,
                    };
                    if sent.is_err() {
                        break;
                    }
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(err) => {
                    self.stats.connected.store(0, Ordering::Relaxed);
                    if let Some(id) = episode.take() {
                        tracing::warn!(input = %self.name, broker = %self.broker, error = %err,
                            "mqtt input disconnected; reconnecting");
                        self.lifecycle.emit(
                            "input.disconnected",
                            &id,
                            json!({"input": self.name, "type": "mqtt", "broker": self.broker,
                                   "reason": err.to_string()}),
                        );
                    } else {
                        MqttStats::add(&self.stats.connect_failures, 1);
                        if failing {
                            tracing::debug!(input = %self.name, broker = %self.broker,
                                error = %err, retry_in_ms = delay.as_millis() as u64,
                                "mqtt input: cannot connect");
                        } else {
                            tracing::warn!(input = %self.name, broker = %self.broker,
                                error = %err, retry_in_ms = delay.as_millis() as u64,
                                "mqtt input: cannot connect; retrying with backoff");
                        }
                        failing = true;
                    }
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(jittered(delay)) => {}
                    }
                    delay = (delay * 2).min(self.backoff_max);
                }
            }
        }
        self.stats.connected.store(0, Ordering::Relaxed);
        if let Some(id) = episode {
            self.lifecycle.emit(
                "input.disconnected",
                &id,
                json!({"input": self.name, "type": "mqtt", "broker": self.broker,
                       "reason": "the input stopped"}),
            );
        }
    }

    /// Asks for the QoS 1 subscriptions without waiting: the request goes
    /// through the same event loop this task polls, so waiting here for
    /// room in its queue could wait for ever.
    fn subscribe(&self, client: &AsyncClient) {
        let filters: Vec<SubscribeFilter> = self
            .topics
            .iter()
            .map(|t| SubscribeFilter::new(t.clone(), QoS::AtLeastOnce))
            .collect();
        if client.try_subscribe_many(filters.clone()).is_err() {
            let client = client.clone();
            let name = self.name.clone();
            tokio::spawn(async move {
                if let Err(err) = client.subscribe_many(filters).await {
                    tracing::warn!(input = %name, error = %err, "mqtt input: cannot subscribe");
                }
            });
        }
    }
}

/// `delay` less up to a quarter at random, so hosts that lost the same
/// broker do not all come back in the same instant.
fn jittered(delay: Duration) -> Duration {
    let quarter = delay / 4;
    delay - quarter.mul_f64(rand::random::<f64>())
}
