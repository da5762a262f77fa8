//! The live tap: every event the host accepted (after the privacy and
//! sampler stages, exactly as it was committed to the buffer) and every
//! lifecycle event, offered to whoever watches `/events/stream`.
//!
//! Every item gets an id, `<epoch>-<seq>`: `epoch` is random per run (so an
//! id from before a restart is never taken for one of this run), `seq`
//! counts every item published, watched or not. The last `capacity` items
//! are kept in a resume window, so a client that reconnects with
//! `Last-Event-ID` gets what it missed ([`Tap::resume`]), or learns exactly
//! how many items are gone.
//!
//! Invariants:
//! - publishing never blocks on a subscriber: the tap is a bounded
//!   [`tokio::sync::broadcast`] ring; a subscriber that falls more than
//!   `capacity` items behind misses them and is dropped by the stream (see
//!   [`crate::status`]); the pipeline never waits for anyone;
//! - the window is kept only while someone watches or watched within
//!   [`RESUME_LINGER`]; otherwise publishing costs an atomic load, a clock
//!   read and one counter add per batch, and the window is emptied (its
//!   items would be older than the gap after them);
//! - the window's ids are contiguous (`first..next`), so what a client
//!   missed is one subtraction.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::lifecycle::LifecycleEvent;

/// How long the resume window keeps recording after the last subscriber
/// left: a client reconnecting within this gets what it missed.
pub const RESUME_LINGER: Duration = Duration::from_secs(60);

/// One item on the tap.
#[derive(Debug, Clone)]
pub enum StreamItem {
    /// An accepted event, as the JSON bytes stored in the buffer.
    Event(Arc<[u8]>),
    /// A lifecycle event.
    Lifecycle(Arc<LifecycleEvent>),
}

/// An item with its sequence number in this run.
#[derive(Debug, Clone)]
pub struct Tapped {
    /// Counts every item published since start.
    pub seq: u64,
    /// The item.
    pub item: StreamItem,
}

/// What a reconnecting client missed and cannot have back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// Its id is from an earlier run (or not one of ours): everything
    /// between is gone; how much is unknown.
    OtherRun,
    /// This many items after its id left the window before it came back.
    Missed(u64),
}

/// A subscription that resumes after `Last-Event-ID`.
pub struct Resumed {
    /// What is gone, if anything.
    pub gap: Option<Gap>,
    /// Items from the window the client has not seen, oldest first.
    pub replay: Vec<Tapped>,
    /// Items from now on (all after `replay`).
    pub live: broadcast::Receiver<Tapped>,
}

struct Window {
    items: VecDeque<Tapped>,
    /// The next item's sequence number.
    next: u64,
}

#[derive(Debug)]
struct Inner {
    tx: broadcast::Sender<Tapped>,
    window: Mutex<Window>,
    capacity: usize,
    epoch: String,
    origin: Instant,
    /// Milliseconds since `origin` until which the window records with no
    /// subscriber.
    linger_until_ms: AtomicU64,
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window")
            .field("items", &self.items.len())
            .field("next", &self.next)
            .finish()
    }
}

/// The publishing side; cheap to clone.
#[derive(Debug, Clone)]
pub struct Tap {
    inner: Arc<Inner>,
}

impl Tap {
    /// A tap that keeps at most `capacity` items for slow subscribers and
    /// for clients resuming.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let (tx, _) = broadcast::channel(capacity);
        Tap {
            inner: Arc::new(Inner {
                tx,
                window: Mutex::new(Window {
                    items: VecDeque::new(),
                    next: 1,
                }),
                capacity,
                epoch: format!("{:08x}", rand::random::<u32>()),
                origin: Instant::now(),
                linger_until_ms: AtomicU64::new(0),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.inner.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether anyone watches, or watched within [`RESUME_LINGER`]: only
    /// then are items worth building.
    pub fn wanted(&self) -> bool {
        self.inner.tx.receiver_count() > 0
            || self.now_ms() < self.inner.linger_until_ms.load(Ordering::Relaxed)
    }

    /// A subscriber left: keep recording for [`RESUME_LINGER`] so it can
    /// resume.
    pub fn linger(&self) {
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(RESUME_LINGER.as_millis()).unwrap_or(u64::MAX));
        self.inner
            .linger_until_ms
            .fetch_max(until, Ordering::Relaxed);
    }

    /// `n` items were published while nobody wanted them: their numbers are
    /// used up (so a resuming client learns it missed them) and the window
    /// is emptied.
    pub fn skip(&self, n: u64) {
        if n == 0 {
            return;
        }
        let mut w = self.lock();
        w.next += n;
        w.items.clear();
    }

    fn push(&self, w: &mut Window, item: StreamItem) {
        let tapped = Tapped { seq: w.next, item };
        w.next += 1;
        if w.items.len() == self.inner.capacity {
            w.items.pop_front();
        }
        w.items.push_back(tapped.clone());
        let _ = self.inner.tx.send(tapped);
    }

    /// Offers `item` to every subscriber; never blocks.
    pub fn send(&self, item: StreamItem) {
        if !self.wanted() {
            self.skip(1);
            return;
        }
        let mut w = self.lock();
        self.push(&mut w, item);
    }

    /// Offers accepted event payloads (the caller checked [`Tap::wanted`]).
    pub fn send_events<'a>(&self, payloads: impl IntoIterator<Item = &'a [u8]>) {
        let mut w = self.lock();
        for p in payloads {
            self.push(&mut w, StreamItem::Event(Arc::from(p)));
        }
    }

    /// A new subscriber, seeing items from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Tapped> {
        self.inner.tx.subscribe()
    }

    /// A subscriber resuming after `last_id` (its `Last-Event-ID`): the
    /// window's items after it, what is gone, and the live items after the
    /// replay, with nothing lost or doubled between the two.
    pub fn resume(&self, last_id: Option<&str>) -> Resumed {
        let w = self.lock();
        let live = self.inner.tx.subscribe();
        let Some(last_id) = last_id else {
            return Resumed {
                gap: None,
                replay: Vec::new(),
                live,
            };
        };
        let last = last_id
            .split_once('-')
            .filter(|(epoch, _)| *epoch == self.inner.epoch)
            .and_then(|(_, seq)| seq.parse::<u64>().ok())
            .filter(|&seq| seq < w.next);
        let first = w.items.front().map_or(w.next, |t| t.seq);
        let (gap, from) = match last {
            None => (Some(Gap::OtherRun), first),
            Some(last) if last + 1 < first => (Some(Gap::Missed(first - last - 1)), first),
            Some(last) => (None, last + 1),
        };
        let replay = w.items.iter().filter(|t| t.seq >= from).cloned().collect();
        Resumed { gap, replay, live }
    }

    /// The SSE id of item `seq`.
    pub fn id_of(&self, seq: u64) -> String {
        format!("{}-{seq}", self.inner.epoch)
    }

    /// How many subscribers are connected.
    pub fn subscribers(&self) -> usize {
        self.inner.tx.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u8) -> StreamItem {
        StreamItem::Event(Arc::from(&[n][..]))
    }

    fn seqs(items: &[Tapped]) -> Vec<u64> {
        items.iter().map(|t| t.seq).collect()
    }

    #[test]
    fn resume_replays_the_window_or_counts_what_is_gone() {
        let tap = Tap::new(4);
        let _watching = tap.subscribe();
        for n in 0..3 {
            tap.send(event(n));
        }
        let r = tap.resume(Some(&tap.id_of(1)));
        assert_eq!((r.gap, seqs(&r.replay)), (None, vec![2, 3]));
        for n in 3..8 {
            tap.send(event(n));
        }
        // The window holds 5..=8; 2..=4 are gone.
        let r = tap.resume(Some(&tap.id_of(1)));
        assert_eq!(r.gap, Some(Gap::Missed(3)));
        assert_eq!(seqs(&r.replay), vec![5, 6, 7, 8]);
        let r = tap.resume(Some(&tap.id_of(8)));
        assert_eq!((r.gap, r.replay.len()), (None, 0));
        let r = tap.resume(Some("0badf00d-3"));
        assert_eq!(r.gap, Some(Gap::OtherRun));
        assert_eq!(r.replay.len(), 4);
        let r = tap.resume(Some(&tap.id_of(99)));
        assert_eq!(r.gap, Some(Gap::OtherRun), "an id from the future");
    }

    #[test]
    fn unwatched_items_use_up_numbers_and_empty_the_window() {
        let tap = Tap::new(4);
        let mut rx = tap.subscribe();
        tap.send(event(0));
        drop(rx);
        assert!(!tap.wanted(), "no subscriber, no linger");
        tap.skip(3);
        rx = tap.subscribe();
        tap.send(event(1));
        assert_eq!(rx.try_recv().unwrap().seq, 5);
        let r = tap.resume(Some(&tap.id_of(1)));
        assert_eq!((r.gap, seqs(&r.replay)), (Some(Gap::Missed(3)), vec![5]));
        drop((rx, r));
        tap.linger();
        assert!(tap.wanted(), "a client that just left may come back");
    }
}
