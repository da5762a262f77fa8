//! Committing messages and acknowledging them: messages that arrive
//! together (queued while the previous commit ran) are gathered, up to
//! `batch_max_messages` and `batch_max_bytes`, into one pipeline request,
//! and every message of it is acknowledged (PUBACK) only after the pipeline
//! thread replied that its events are committed to the buffer.
//!
//! A message over `max_message_bytes` is never decoded: its first 4 KiB are
//! dead-lettered with a reason naming the limit and the topic, committed
//! like any other part of the batch, and then it is acknowledged too (the
//! broker would otherwise resend it for ever).
//!
//! Acks never wait: they are handed to the client's request queue with
//! `try_ack`, and those that find it full are kept and tried again. Why:
//! the queue is drained by the same event loop that delivers messages, and
//! that loop waits for the committer to take the next message; a committer
//! waiting for room to ack would close the circle (a broker that sends more
//! than the queues hold at once, as Mosquitto does on session resume,
//! deadlocked it).
//!
//! Nothing is acknowledged that is not committed: when the host stops (or
//! dies) between a commit and its acks, the broker resends those messages
//! and they are committed again under the same event ids, which the
//! receiver de-duplicates.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::time::Duration;

use rumqttc::{AsyncClient, QoS};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, watch};

use super::connection::Received;
use super::stats::MqttStats;
use crate::pipeline::{IngestReport, KeyedFrame, PipelineError};
use crate::plugin::Frame;
use crate::run::worker::Work;

/// What is kept of a message over `max_message_bytes`.
const KEPT_BYTES: usize = 4096;
/// How long to wait before retrying a commit the buffer refused.
const RETRY_WAIT: Duration = Duration::from_millis(100);
/// How soon acks that found the client's request queue full are tried
/// again.
const ACK_RETRY: Duration = Duration::from_millis(10);
/// How long the stop waits for the last acks to find room in the queue.
const ACK_DRAIN: Duration = Duration::from_secs(1);
/// The content type of a message's frame: MQTT 3.1.1 carries none, and
/// the WIT contract says "empty when unknown".
const CONTENT_TYPE: &str = "";

/// The bounds on one message and one commit.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Larger messages are dead-lettered, never decoded.
    pub max_message_bytes: usize,
    /// The most messages per commit.
    pub batch_max_messages: usize,
    /// The most payload bytes per commit.
    pub batch_max_bytes: usize,
}

/// Gathers, commits and acknowledges an input's messages.
pub struct Committer {
    /// The input's name.
    pub name: String,
    /// The bounds.
    pub limits: Limits,
    /// Where PUBACKs go.
    pub client: AsyncClient,
    /// The generation of the current connection (acks of older ones are
    /// skipped; see `connection.rs`).
    pub generation: Arc<AtomicU64>,
    /// The input's counters.
    pub stats: Arc<MqttStats>,
    /// Committed messages whose ack found the request queue full, in order.
    pub unacked: VecDeque<(rumqttc::Publish, u64)>,
}

/// One part of a batch: messages decoded together, or one refused.
enum Part<'a> {
    Decode(&'a [Received]),
    Refuse(&'a Received),
}

impl Committer {
    /// Commits what `from_broker` brings until `stop` turns true or the
    /// connection task ends; the batch in hand is finished first.
    pub async fn run(
        mut self,
        mut from_broker: mpsc::Receiver<Received>,
        work: Sender<Work>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut carry: Option<Received> = None;
        loop {
            let first = match carry.take() {
                Some(first) => first,
                None => tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    next = from_broker.recv() => match next {
                        Some(next) => next,
                        None => break,
                    },
                    () = tokio::time::sleep(ACK_RETRY), if !self.unacked.is_empty() => {
                        self.flush_acks();
                        continue;
                    }
                },
            };
            let mut bytes = self.counted_bytes(&first);
            let mut batch = vec![first];
            while batch.len() < self.limits.batch_max_messages {
                let Ok(next) = from_broker.try_recv() else {
                    break;
                };
                let size = self.counted_bytes(&next);
                if bytes + size > self.limits.batch_max_bytes {
                    carry = Some(next);
                    break;
                }
                bytes += size;
                batch.push(next);
            }
            if !self.commit(&batch, &work, &mut stop).await {
                break;
            }
        }
        // The last acks go out before the input disconnects (bounded: the
        // event loop may be gone).
        let drained = tokio::time::Instant::now() + ACK_DRAIN;
        self.flush_acks();
        while !self.unacked.is_empty() && tokio::time::Instant::now() < drained {
            tokio::time::sleep(ACK_RETRY).await;
            self.flush_acks();
        }
    }

    /// The bytes a message adds to a commit (what is kept of it).
    fn counted_bytes(&self, r: &Received) -> usize {
        let len = r.publish.payload.len();
        if len > self.limits.max_message_bytes {
            KEPT_BYTES.min(len)
        } else {
            len
        }
    }

    /// Commits `batch` part by part, acknowledging each part after its
    /// commit; false if the input stopped before all of it was committed.
    async fn commit(
        &mut self,
        batch: &[Received],
        work: &Sender<Work>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut start = 0;
        let mut parts = Vec::new();
        for (i, r) in batch.iter().enumerate() {
            if r.publish.payload.len() > self.limits.max_message_bytes {
                if start < i {
                    parts.push(Part::Decode(&batch[start..i]));
                }
                parts.push(Part::Refuse(r));
                start = i + 1;
            }
        }
        if start < batch.len() {
            parts.push(Part::Decode(&batch[start..]));
        }
        for part in parts {
            let (done, messages): (bool, &[Received]) = match part {
                Part::Decode(messages) => (self.decode(messages, work, stop).await, messages),
                Part::Refuse(message) => (
                    self.refuse(message, work, stop).await,
                    std::slice::from_ref(message),
                ),
            };
            if !done {
                return false;
            }
            self.ack(messages);
        }
        true
    }

    /// Hands `messages` to the decoder and waits for the commit.
    async fn decode(
        &self,
        messages: &[Received],
        work: &Sender<Work>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let report = self
            .send(work, stop, |reply| Work::Frames {
                input: self.name.clone(),
                frames: Arc::new(messages.iter().map(|m| self.frame(m, None)).collect()),
                position: None,
                ticket: None,
                reply,
            })
            .await;
        if let Some(report) = &report {
            MqttStats::add(&self.stats.decode_failures, report.decode_errors);
        }
        report.is_some()
    }

    /// Dead-letters a message over `max_message_bytes` (its first 4 KiB).
    async fn refuse(
        &self,
        message: &Received,
        work: &Sender<Work>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let p = &message.publish;
        let reason = format!(
            "{}: message on topic {:?} is {} bytes, over max_message_bytes ({}); first {} bytes kept",
            self.name,
            p.topic,
            p.payload.len(),
            self.limits.max_message_bytes,
            KEPT_BYTES.min(p.payload.len())
        );
        tracing::warn!(input = %self.name, topic = %p.topic, len = p.payload.len(),
            max_message_bytes = self.limits.max_message_bytes,
            "mqtt message over max_message_bytes dead-lettered");
        let done = self
            .send(work, stop, |reply| Work::Refuse {
                input: self.name.clone(),
                frame: self.frame(message, Some(KEPT_BYTES)),
                reason: reason.clone(),
                position: None,
                ticket: None,
                reply,
            })
            .await
            .is_some();
        if done {
            MqttStats::add(&self.stats.oversized, 1);
        }
        done
    }

    /// A message as a frame: its payload (at most `keep` bytes of it), the
    /// topic as `origin`, and a key derived from the input, the topic and
    /// the payload, so a redelivered message yields the same event ids.
    fn frame(&self, message: &Received, keep: Option<usize>) -> KeyedFrame {
        let p = &message.publish;
        let data = match keep {
            Some(keep) => p.payload[..keep.min(p.payload.len())].to_vec(),
            None => p.payload.to_vec(),
        };
        KeyedFrame {
            frame: Frame {
                data,
                content_type: CONTENT_TYPE.into(),
                origin: format!("mqtt:{}", p.topic),
            },
            key: Some(frame_key(&self.name, &p.topic, &p.payload)),
        }
    }

    /// Sends the request `make` builds and waits for its commit, retrying
    /// while the buffer is full (the broker keeps the messages meanwhile).
    /// `None` if the input stopped first: nothing of it was committed.
    async fn send(
        &self,
        work: &Sender<Work>,
        stop: &mut watch::Receiver<bool>,
        make: impl Fn(oneshot::Sender<Result<IngestReport, PipelineError>>) -> Work,
    ) -> Option<IngestReport> {
        loop {
            let (reply, answer) = oneshot::channel();
            work.send(make(reply)).ok()?;
            match answer.await {
                Ok(Ok(report)) => return Some(report),
                Ok(Err(PipelineError::ShuttingDown)) | Err(_) => return None,
                Ok(Err(PipelineError::Buffer(halyard_buffer::BufferError::Full { .. }))) => {}
                Ok(Err(err)) => {
                    tracing::error!(input = %self.name, error = %err,
                        "mqtt messages not accepted; retrying (not acknowledged meanwhile)");
                }
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return None,
                () = tokio::time::sleep(RETRY_WAIT) => {}
            }
        }
    }

    /// Acknowledges committed messages (QoS 1 and 2; QoS 0 has no ack).
    fn ack(&mut self, messages: &[Received]) {
        self.unacked.extend(
            messages
                .iter()
                .filter(|m| m.publish.qos != QoS::AtMostOnce)
                .map(|m| (m.publish.clone(), m.generation)),
        );
        self.flush_acks();
    }

    /// Hands waiting acks to the client's queue until it is full. An ack of
    /// a message from an earlier connection is dropped: the broker resends
    /// that message, and its copy is committed and acknowledged instead.
    fn flush_acks(&mut self) {
        let generation = self.generation.load(Ordering::SeqCst);
        let mut skipped = 0u64;
        while let Some((publish, arrived_on)) = self.unacked.front() {
            if *arrived_on != generation {
                skipped += 1;
                self.unacked.pop_front();
                continue;
            }
            if self.client.try_ack(publish).is_err() {
                break;
            }
            MqttStats::add(&self.stats.acked, 1);
            self.unacked.pop_front();
        }
        if skipped > 0 {
            tracing::debug!(input = %self.name, skipped,
                "committed messages from a lost connection not acknowledged; the broker resends them");
        }
    }
}

/// The stable key of a message's frame: the first 16 bytes of SHA-256 over
/// the input's name, the topic and the payload. Why content: MQTT has no
/// message id that survives redelivery across connections (packet ids are
/// per connection and reused), and the same bytes on the same topic are
/// the same reading for a telemetry stream; a publisher that sends truly
/// repeated readings must make them differ (a timestamp or a sequence
/// number), or the receiver keeps one.
pub fn frame_key(input: &str, topic: &str, payload: &[u8]) -> [u8; 16] {
    let digest = Sha256::new()
        .chain_update(b"halyard-mqtt\0")
        .chain_update(input.as_bytes())
        .chain_update([0])
        .chain_update(topic.as_bytes())
        .chain_update([0])
        .chain_update(payload)
        .finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_depends_on_input_topic_and_payload_only() {
        let k = frame_key("m", "sensors/a/temp", b"{\"v\":1}");
        assert_eq!(k, frame_key("m", "sensors/a/temp", b"{\"v\":1}"));
        assert_ne!(k, frame_key("n", "sensors/a/temp", b"{\"v\":1}"));
        assert_ne!(k, frame_key("m", "sensors/b/temp", b"{\"v\":1}"));
        assert_ne!(k, frame_key("m", "sensors/a/temp", b"{\"v\":2}"));
        // The separators keep (topic, payload) splits apart.
        assert_ne!(frame_key("m", "a", b"b"), frame_key("m", "ab", b""));
    }
}
