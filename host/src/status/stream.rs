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
//! Every item carries an SSE `id`. A client reconnecting with
//! `Last-Event-ID` first gets what it missed from the tap's bounded resume
//! window (see [`crate::tap`]), filtered like the rest; when some of it is
//! gone, an `event: dropped` with `{"missed":N,"resumed":true}` (or
//! `{"missed":null,"resumed":true}` when its id is from an earlier run)
//! comes first, and the stream goes on.
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

use crate::tap::{Gap, StreamItem, Tap, Tapped};

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

    /// The SSE event for `tapped` (with its id), or `None` when the filter
    /// excludes it.
    fn render(&self, tap: &Tap, tapped: &Tapped) -> Option<SseEvent> {
        self.render_item(&tapped.item)
            .map(|e| e.id(tap.id_of(tapped.seq)))
    }

    fn render_item(&self, item: &StreamItem) -> Option<SseEvent> {
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

/// Counts a client while its stream exists; when it ends, the tap keeps
/// its resume window for a while, so the client can come back.
struct Connected(Arc<StreamClients>, Tap);

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.connected.fetch_sub(1, Ordering::Relaxed);
        self.1.linger();
    }
}

struct State {
    shutdown: CancellationToken,
    /// What the client missed, sent first.
    gap: Option<Gap>,
    /// Items from the resume window, sent next, oldest last (popped).
    replay: Vec<Tapped>,
    rx: Option<broadcast::Receiver<Tapped>>,
    filter: StreamFilter,
    clients: Connected,
}

/// The SSE response for one client, resuming after `last_event_id` (its
/// `Last-Event-ID` header) when given.
pub fn respond(
    tap: &Tap,
    clients: Arc<StreamClients>,
    filter: StreamFilter,
    last_event_id: Option<&str>,
    shutdown: CancellationToken,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>> + use<>> {
    clients.connected.fetch_add(1, Ordering::Relaxed);
    let resumed = tap.resume(last_event_id);
    let mut replay = resumed.replay;
    replay.reverse();
    let state = State {
        shutdown,
        gap: resumed.gap,
        replay,
        rx: Some(resumed.live),
        filter,
        clients: Connected(clients, tap.clone()),
    };
    let stream = futures_util::stream::unfold(state, |mut state| async move {
        if let Some(gap) = state.gap.take() {
            let missed = match gap {
                Gap::Missed(n) => n.to_string(),
                Gap::OtherRun => "null".to_string(),
            };
            let event = SseEvent::default()
                .event("dropped")
                .data(format!("{{\"missed\":{missed},\"resumed\":true}}"));
            return Some((Ok(event), state));
        }
        while let Some(tapped) = state.replay.pop() {
            if let Some(event) = state.filter.render(&state.clients.1, &tapped) {
                return Some((Ok(event), state));
            }
        }
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
                Ok(tapped) => {
                    if let Some(event) = state.filter.render(&state.clients.1, &tapped) {
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
