//! Per-frame outcomes of one ingest, for a client that asked what became
//! of each line it sent (the http input's `?results=lines`).
//!
//! Why a trace beside the counters: the counters say how many events went
//! where; an application handing over its own events needs to know which
//! ones, in order, to retry or report the right ones. The trace is kept
//! only for an ingest that asked ([`super::Pipeline::ingest_traced`]);
//! every other ingest pays one `Option` check per plugin call.
//!
//! How an event is followed: its id is assigned by the host at decode time
//! and kept by every stage (a privacy rewrite keeps the original id), so
//! the frame → ids map made at decode, plus which ids the chains accepted,
//! rejected or privacy-dropped, says where each event went. An event that
//! is in none of those was left out by a sampler (the chains' invariant:
//! every event leaves in exactly one of the four). Under `when_full =
//! "drop_newest"` the buffer refuses the tail of the accepted events; the
//! commit's count of refused events marks that many of the last accepted
//! ids as dropped by the buffer.

use std::collections::HashMap;

use crate::plugin::{Event, EventId};

/// What became of one event.
#[derive(Debug, Clone, PartialEq)]
pub enum EventOutcome {
    /// Committed to the buffer under this id.
    Accepted(EventId),
    /// A validator refused it (dead-lettered), with the reason.
    Rejected(String),
    /// Not stored, and not an error of the event: by a privacy policy or
    /// by the buffer's `drop_newest` policy.
    Dropped(DropCause),
    /// A sampler left it out.
    SampledOut,
}

/// Who dropped an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropCause {
    /// A privacy policy (or a privacy stage failing closed).
    Privacy,
    /// The buffer was full under `when_full = "drop_newest"`.
    Buffer,
}

/// What became of one frame (one line of a request), in frame order.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameOutcome {
    /// The decoder refused it (or failed), with the reason; dead-lettered.
    DecodeError(String),
    /// It decoded into these events (possibly none), in decoder order.
    Decoded(Vec<EventOutcome>),
}

/// The trace of one ingest in progress.
#[derive(Debug, Default)]
pub(super) struct Trace {
    /// Per frame, in order: the decode failure or the ids decoded.
    frames: Vec<Slot>,
    /// Where each decoded event went, by id; absent: sampled out.
    outcomes: HashMap<(u64, u64), EventOutcome>,
    /// Accepted ids in commit order, to mark a refused tail.
    accepted: Vec<(u64, u64)>,
}

#[derive(Debug)]
enum Slot {
    Failed(String),
    Decoded(Vec<(u64, u64)>),
}

fn key(id: &EventId) -> (u64, u64) {
    (id.hi, id.lo)
}

impl Trace {
    /// The next frame failed to decode.
    pub(super) fn failed(&mut self, reason: &str) {
        self.frames.push(Slot::Failed(reason.to_string()));
    }

    /// The next frame decoded into `events` (already given their ids).
    pub(super) fn decoded(&mut self, events: &[Event]) {
        self.frames
            .push(Slot::Decoded(events.iter().map(|e| key(&e.id)).collect()));
    }

    /// The chains accepted `events`, in the order they will be committed.
    pub(super) fn accepted<'a>(&mut self, events: impl IntoIterator<Item = &'a Event>) {
        for e in events {
            self.accepted.push(key(&e.id));
            self.outcomes
                .insert(key(&e.id), EventOutcome::Accepted(e.id));
        }
    }

    /// A validator rejected the event `id` for `reason`.
    pub(super) fn rejected(&mut self, id: &EventId, reason: &str) {
        self.outcomes
            .insert(key(id), EventOutcome::Rejected(reason.to_string()));
    }

    /// A privacy policy dropped the event `id`.
    pub(super) fn privacy_dropped(&mut self, id: &EventId) {
        self.outcomes
            .insert(key(id), EventOutcome::Dropped(DropCause::Privacy));
    }

    /// Every frame's outcome, once the ingest committed; `buffer_dropped`
    /// is how many accepted events the buffer refused (its tail).
    pub(super) fn resolve(mut self, buffer_dropped: u64) -> Vec<FrameOutcome> {
        let refused = usize::try_from(buffer_dropped).unwrap_or(usize::MAX);
        let tail = self.accepted.len().saturating_sub(refused);
        for id in &self.accepted[tail..] {
            self.outcomes
                .insert(*id, EventOutcome::Dropped(DropCause::Buffer));
        }
        let mut outcomes = self.outcomes;
        self.frames
            .into_iter()
            .map(|slot| match slot {
                Slot::Failed(reason) => FrameOutcome::DecodeError(reason),
                Slot::Decoded(ids) => FrameOutcome::Decoded(
                    ids.iter()
                        .map(|id| outcomes.remove(id).unwrap_or(EventOutcome::SampledOut))
                        .collect(),
                ),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(lo: u64) -> Event {
        let mut e = crate::event::from_json(&serde_json::json!({
            "time_ns": 1, "source": "s", "kind": "k"
        }))
        .expect("an event");
        e.id = EventId { hi: 7, lo };
        e
    }

    #[test]
    fn each_frame_gets_its_events_outcomes_in_order() {
        let mut t = Trace::default();
        let (a, b, c, d, e) = (event(1), event(2), event(3), event(4), event(5));
        t.decoded(std::slice::from_ref(&a));
        t.failed("bad json");
        t.decoded(&[]);
        t.decoded(&[b.clone(), c.clone(), d.clone(), e.clone()]);
        t.rejected(&b.id, "too cold");
        t.privacy_dropped(&c.id);
        t.accepted([&a, &e]);
        let out = t.resolve(1);
        assert_eq!(
            out,
            vec![
                FrameOutcome::Decoded(vec![EventOutcome::Accepted(a.id)]),
                FrameOutcome::DecodeError("bad json".into()),
                FrameOutcome::Decoded(vec![]),
                FrameOutcome::Decoded(vec![
                    EventOutcome::Rejected("too cold".into()),
                    EventOutcome::Dropped(DropCause::Privacy),
                    EventOutcome::SampledOut,
                    // The last accepted event is the tail the buffer refused.
                    EventOutcome::Dropped(DropCause::Buffer),
                ]),
            ]
        );
    }
}
