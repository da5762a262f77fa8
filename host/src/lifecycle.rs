//! Lifecycle events: what happens to the host itself (it started, a plugin
//! was quarantined, the breaker opened, the buffer is evicting), published
//! with a stable wire shape so that dashboards and scripts can follow it.
//!
//! The shape (schema version 1) is:
//!
//! ```json
//! {"schema_version":1,"kind":"breaker.open","ts":"2026-11-23T10:00:00.123Z",
//!  "correlation_id":"9f2c…","payload":{"from":"closed","failures":5}}
//! ```
//!
//! Invariants:
//! - fields are only ever added, never renamed or removed, within a schema
//!   version; consumers ignore kinds and payload keys they do not know;
//! - `correlation_id` links the events of one episode: `host.start` and
//!   `host.stop` of one run; `breaker.open`…`breaker.closed` of one outage;
//!   `transport.refused`…`transport.accepted` of one episode of a receiver
//!   refusing this sender; `input.connected`…`input.disconnected` of one
//!   connection of an input to its broker;
//!   `plugin.loaded`, `plugin.trap` and `plugin.quarantined` of one loaded
//!   plugin; `buffer.evicting` of one episode of losses;
//! - publishing never blocks: every event is logged, offered to the live
//!   stream (a bounded broadcast), and, when configured, to the pipeline
//!   through a bounded queue that drops (and counts) rather than waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::tap::{StreamItem, Tap};

/// The version of the wire shape; bumped only for incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// One lifecycle event on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecycleEvent {
    /// The shape's version, so consumers can refuse what they cannot read.
    pub schema_version: u32,
    /// Dotted kind, e.g. `plugin.quarantined`; consumers ignore unknown kinds.
    pub kind: String,
    /// When it happened, RFC 3339 UTC with milliseconds.
    pub ts: String,
    /// Links the events of one episode (see the module docs).
    pub correlation_id: String,
    /// Kind-specific details.
    pub payload: serde_json::Value,
}

impl LifecycleEvent {
    /// A new event stamped now.
    pub fn new(kind: &str, correlation_id: &str, payload: serde_json::Value) -> Self {
        LifecycleEvent {
            schema_version: SCHEMA_VERSION,
            kind: kind.to_string(),
            ts: rfc3339_now(),
            correlation_id: correlation_id.to_string(),
            payload,
        }
    }

    /// Whether this kind signals trouble (logged at `warn`).
    fn is_trouble(&self) -> bool {
        matches!(
            self.kind.as_str(),
            "plugin.rejected"
                | "plugin.trap"
                | "plugin.quarantined"
                | "breaker.open"
                | "transport.refused"
                | "input.disconnected"
                | "buffer.evicting"
                | "buffer.recovered"
                | "buffer.damaged"
                | "licence.grace"
                | "licence.expired"
        )
    }
}

/// A fresh correlation id: 16 random hex digits.
pub fn new_correlation_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Where lifecycle events go. Cheap to clone; every clone publishes to the
/// same places.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    /// The live stream (`/events/stream?lifecycle=true`).
    tap: Tap,
    /// The pipeline, when `[lifecycle] into_pipeline` is set.
    into_pipeline: Option<mpsc::Sender<LifecycleEvent>>,
    /// Events the pipeline queue was too full to take.
    dropped: Arc<AtomicU64>,
    /// Events published, for `/metrics`.
    published: Arc<AtomicU64>,
    /// The audit trail in `data_dir`, when `[audit] enabled`.
    audit: Option<crate::audit::AuditLog>,
}

impl Lifecycle {
    /// Publishes to the log and `tap` only.
    pub fn new(tap: Tap) -> Self {
        Lifecycle {
            tap,
            into_pipeline: None,
            dropped: Arc::new(AtomicU64::new(0)),
            published: Arc::new(AtomicU64::new(0)),
            audit: None,
        }
    }

    /// Also keeps every event in the audit trail `audit`.
    pub fn with_audit(mut self, audit: crate::audit::AuditLog) -> Self {
        self.audit = Some(audit);
        self
    }

    /// The audit trail events go to, if any (to flush it at stop).
    pub fn audit(&self) -> Option<&crate::audit::AuditLog> {
        self.audit.as_ref()
    }

    /// Also hands every event to the returned queue (bounded to `capacity`),
    /// for the host to append into the buffer as an ordinary event.
    pub fn with_pipeline(mut self, capacity: usize) -> (Self, mpsc::Receiver<LifecycleEvent>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.into_pipeline = Some(tx);
        (self, rx)
    }

    /// Publishes `kind` with `payload` under `correlation_id`.
    pub fn emit(&self, kind: &str, correlation_id: &str, payload: serde_json::Value) {
        self.publish(LifecycleEvent::new(kind, correlation_id, payload));
    }

    /// Publishes a ready-made event: logs it, streams it, queues it.
    pub fn publish(&self, event: LifecycleEvent) {
        self.published.fetch_add(1, Ordering::Relaxed);
        let payload = event.payload.to_string();
        // The message reads as words: "breaker open", "plugin quarantined".
        let words = event.kind.replace('.', " ");
        if event.is_trouble() {
            tracing::warn!(target: "halyard::lifecycle", kind = %event.kind,
                correlation_id = %event.correlation_id, %payload, "{words}");
        } else {
            tracing::info!(target: "halyard::lifecycle", kind = %event.kind,
                correlation_id = %event.correlation_id, %payload, "{words}");
        }
        if let Some(tx) = &self.into_pipeline
            && tx.try_send(event.clone()).is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(audit) = &self.audit {
            audit.offer(&event);
        }
        self.tap.send(StreamItem::Lifecycle(Arc::new(event)));
    }

    /// Events published since start.
    pub fn published_total(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Events the pipeline queue refused because it was full.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Now as RFC 3339 UTC with milliseconds, e.g. `2026-11-23T10:00:00.123Z`.
pub fn rfc3339_now() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since.as_millis() as i64)
}

/// Unix milliseconds as RFC 3339 UTC (the transport crate's formatter, so
/// lifecycle events and the event-bus wire shape write the same text).
pub fn rfc3339(unix_ms: i64) -> String {
    halyard_transport::rfc3339_from_unix_ms(unix_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn wire_shape_has_the_documented_fields() {
        let e = LifecycleEvent::new("host.start", "abc", serde_json::json!({"version": "1"}));
        let v = serde_json::to_value(&e).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["schema_version", "kind", "ts", "correlation_id", "payload"]
        );
        assert_eq!(v["schema_version"], 1);
    }
}
