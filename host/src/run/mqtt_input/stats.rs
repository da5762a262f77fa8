//! The counters of one mqtt input, read by `/metrics` on each scrape. Plain
//! atomics: the input's tasks bump them, the status server only reads, so
//! serving metrics never waits on the input.

use std::sync::atomic::{AtomicU64, Ordering};

/// What one mqtt input has done since the host started.
#[derive(Debug, Default)]
pub struct MqttStats {
    /// The input's name (the `input` label).
    pub name: String,
    /// Messages the broker delivered (redeliveries included).
    pub received: AtomicU64,
    /// Messages acknowledged to the broker (PUBACK sent), each only after
    /// its events were committed.
    pub acked: AtomicU64,
    /// Messages whose frame the decoder refused (dead-lettered).
    pub decode_failures: AtomicU64,
    /// Messages over `max_message_bytes` (dead-lettered, never decoded).
    pub oversized: AtomicU64,
    /// Connections made after the first one (the broker restarted, the
    /// network dropped).
    pub reconnects: AtomicU64,
    /// Failed connection attempts (broker down, refused, TLS failure).
    pub connect_failures: AtomicU64,
    /// 1 while connected to the broker, else 0.
    pub connected: AtomicU64,
}

/// A copy of [`MqttStats`] at one moment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MqttSnapshot {
    /// See [`MqttStats::received`].
    pub received: u64,
    /// See [`MqttStats::acked`].
    pub acked: u64,
    /// See [`MqttStats::decode_failures`].
    pub decode_failures: u64,
    /// See [`MqttStats::oversized`].
    pub oversized: u64,
    /// See [`MqttStats::reconnects`].
    pub reconnects: u64,
    /// See [`MqttStats::connect_failures`].
    pub connect_failures: u64,
    /// See [`MqttStats::connected`].
    pub connected: bool,
}

impl MqttStats {
    /// Counters for the input `name`, all zero.
    pub fn new(name: &str) -> MqttStats {
        MqttStats {
            name: name.to_string(),
            ..MqttStats::default()
        }
    }

    /// Adds `n` to `counter`.
    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> MqttSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MqttSnapshot {
            received: get(&self.received),
            acked: get(&self.acked),
            decode_failures: get(&self.decode_failures),
            oversized: get(&self.oversized),
            reconnects: get(&self.reconnects),
            connect_failures: get(&self.connect_failures),
            connected: get(&self.connected) == 1,
        }
    }
}
