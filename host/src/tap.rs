//! The live tap: every event the host accepted (after the privacy and
//! sampler stages, exactly as it was committed to the buffer) and every
//! lifecycle event, offered to whoever watches `/events/stream`.
//!
//! Invariant: publishing never blocks and never allocates per subscriber.
//! The tap is a bounded [`tokio::sync::broadcast`] ring: a subscriber that
//! falls more than `capacity` items behind misses them and is dropped by the
//! stream (see [`crate::status`]); the pipeline never waits for anyone.
//! When nobody watches, publishing costs one atomic load.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::lifecycle::LifecycleEvent;

/// One item on the tap.
#[derive(Debug, Clone)]
pub enum StreamItem {
    /// An accepted event, as the JSON bytes stored in the buffer.
    Event(Arc<[u8]>),
    /// A lifecycle event.
    Lifecycle(Arc<LifecycleEvent>),
}

/// The publishing side; cheap to clone.
#[derive(Debug, Clone)]
pub struct Tap {
    tx: broadcast::Sender<StreamItem>,
}

impl Tap {
    /// A tap that keeps at most `capacity` items for slow subscribers.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Tap { tx }
    }

    /// Offers `item` to every subscriber; never blocks.
    pub fn send(&self, item: StreamItem) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(item);
        }
    }

    /// Offers accepted event payloads; skipped entirely when nobody watches.
    pub fn send_events<'a>(&self, payloads: impl IntoIterator<Item = &'a [u8]>) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        for p in payloads {
            let _ = self.tx.send(StreamItem::Event(Arc::from(p)));
        }
    }

    /// A new subscriber, seeing items from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<StreamItem> {
        self.tx.subscribe()
    }

    /// How many subscribers are connected.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}
