//! `GET /events/stream`: Server-Sent Events of what the host accepted,
//! after the privacy and sampler stages (never raw input), plus lifecycle
//! events on request.
//!
//! Query filters:
//! - `kind=K`: events whose dotted kind is `K` or starts with `K.` (so
//!   `kind=temp` matches `temp` and `temp.max` but not `temperature`);
//!   applies to lifecycle kinds too (`kind=breaker`);
//! - `source=S`: events from source `S` exactly (data events only);
//! - `lifecycle=true`: include lifecycle events (`event: lifecycle`).
//!
//! Invariant: a slow client never slows the pipeline. Each client reads a
//! bounded broadcast ring (see [`crate::tap`]); one that falls behind by more
//! than the ring's capacity gets a final `event: dropped` and is
//! disconnected, and `halyard_stream_clients_dropped_total` counts it.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use crate::tap::{StreamItem, Tap};

/// The query string of `/events/stream`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamFilter {
    /// Dotted kind prefix.
    pub kind: Option<String>,
    /// Exact source.
    pub source: Option<String>,
    /// Include lifecycle events.
    #[serde(default)]
    pub lifecycle: bool,
}

impl StreamFilter {
    fn kind_matches(&self, kind: &str) -> bool {
        match &self.kind {
            None => true,
            Some(k) => {
                kind == k
                    || kind
                        .strip_prefix(k.as_str())
                        .is_some_and(|r| r.starts_with('.'))
            }
        }
    }

    /// The SSE event for `item`, or `None` when the filter excludes it.
    fn render(&self, item: &StreamItem) -> Option<SseEvent> {
        match item {
            StreamItem::Event(payload) => {
                if self.kind.is_some() || self.source.is_some() {
                    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
                    if !self.kind_matches(v["kind"].as_str().unwrap_or("")) {
                        return None;
                    }
                    if let Some(s) = &self.source
                        && v["source"].as_str() != Some(s.as_str())
                    {
                        return None;
                    }
                }
                let text = std::str::from_utf8(payload).ok()?;
                Some(SseEvent::default().event("event").data(text))
            }
            StreamItem::Lifecycle(event) => {
                if !self.lifecycle || !self.kind_matches(&event.kind) {
                    return None;
                }
                let text = serde_json::to_string(event.as_ref()).ok()?;
                Some(SseEvent::default().event("lifecycle").data(text))
            }
        }
    }
}

/// The clients of the stream, for `/metrics`.
#[derive(Debug, Default)]
pub struct StreamClients {
    connected: AtomicUsize,
    dropped: AtomicU64,
}

impl StreamClients {
    /// Clients connected now.
    pub fn connected(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }

    /// Clients dropped for falling behind, since start.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Counts a client while its stream exists.
struct Connected(Arc<StreamClients>);

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

struct State {
    shutdown: CancellationToken,
    rx: Option<broadcast::Receiver<StreamItem>>,
    filter: StreamFilter,
    clients: Connected,
}

/// The SSE response for one client.
pub fn respond(
    tap: &Tap,
    clients: Arc<StreamClients>,
    filter: StreamFilter,
    shutdown: CancellationToken,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>> + use<>> {
    clients.connected.fetch_add(1, Ordering::Relaxed);
    let state = State {
        shutdown,
        rx: Some(tap.subscribe()),
        filter,
        clients: Connected(clients),
    };
    let stream = futures_util::stream::unfold(state, |mut state| async move {
        loop {
            let rx = state.rx.as_mut()?;
            // Items already published (such as `host.stop`) go out before
            // the stream ends at shutdown.
            let received = tokio::select! {
                biased;
                r = rx.recv() => r,
                _ = state.shutdown.cancelled() => return None,
            };
            match received {
                Ok(item) => {
                    if let Some(event) = state.filter.render(&item) {
                        return Some((Ok(event), state));
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    state.rx = None;
                    state.clients.0.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(missed, "event stream client fell behind; disconnected");
                    let event = SseEvent::default()
                        .event("dropped")
                        .data(format!("{{\"missed\":{missed}}}"));
                    return Some((Ok(event), state));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_prefix_is_by_dotted_segment() {
        let f = StreamFilter {
            kind: Some("temp".into()),
            ..StreamFilter::default()
        };
        assert!(f.kind_matches("temp"));
        assert!(f.kind_matches("temp.max"));
        assert!(!f.kind_matches("temperature"));
        assert!(!f.kind_matches("humidity"));
    }
}
