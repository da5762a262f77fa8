//! The plugin traits, one per plugin kind.
//!
//! Why: each trait is the whole of what a plugin author writes. `init` builds
//! the instance from its config; the SDK stores the instance and routes every
//! stage call to it. The `*_batch` methods are what the host actually calls
//! (one call per batch); their defaults map the per-event method, and a
//! plugin overrides them only when it can do a batch better. The
//! `*_views` methods are the batch read in place, without owned copies;
//! their defaults copy and call the `*_batch` method.
//!
//! Instance state is soft: the host recreates the instance after a trap or a
//! reload and calls `init` again, so never rely on state surviving.

use crate::{
    Action, Config, Event, EventSink, Events, Frame, Frames, InitError, Redaction, Verdict,
};

/// A detector (contract 0.3.0): sees the events its chain accepted and
/// returns *new* events (alerts, summaries). The events it sees go on
/// unchanged whatever it returns.
///
/// Its state across batches, restarts and hot swaps belongs in
/// [`crate::kv`], not in `self`: the instance is soft, the store is
/// committed with each batch.
pub trait Detector: Sized + 'static {
    /// Builds the instance from its config; an error refuses the plugin.
    fn init(config: &Config) -> Result<Self, InitError>;

    /// Looks at a batch of accepted events; returns new events (the host
    /// assigns their ids).
    fn detect(&mut self, events: Vec<Event>) -> Vec<Event>;

    /// Called every `tick_ms` (the plugin's config key) with the host's
    /// wall clock in nanoseconds since the Unix epoch, so a time window can
    /// close without new input. The default makes nothing.
    fn tick(&mut self, now_ns: i64) -> Vec<Event> {
        let _ = now_ns;
        Vec::new()
    }
}

/// A source: polled by the host on an interval, returns new events.
pub trait Source: Sized + 'static {
    /// Builds the instance from its config; an error refuses the plugin.
    fn init(config: &Config) -> Result<Self, InitError>;

    /// Returns the events produced since the last poll, at most `max` (the
    /// SDK truncates longer results). Empty means nothing new.
    fn poll(&mut self, max: u32) -> Vec<Event>;
}

/// A decoder: turns raw frames from host-owned inputs into events.
pub trait Decoder: Sized + 'static {
    /// Builds the instance from its config; an error refuses the plugin.
    fn init(config: &Config) -> Result<Self, InitError>;

    /// Decodes one frame into zero or more events, or says why it cannot.
    /// A failed frame goes to the host's dead-letter table.
    fn decode(&mut self, frame: Frame) -> Result<Vec<Event>, String>;

    /// Decodes a batch: one result per frame, in order.
    fn decode_batch(&mut self, frames: Vec<Frame>) -> Vec<Result<Vec<Event>, String>> {
        frames.into_iter().map(|frame| self.decode(frame)).collect()
    }

    /// Decodes a batch read in place, pushing the events into `out`: one
    /// result per frame, in order, each the number of events the frame
    /// gave ([`EventSink::frame`] counts them, and takes back a failed
    /// frame's). What the host actually calls. The default copies the
    /// frames, calls [`Decoder::decode_batch`] and pushes its events;
    /// override it to decode from the host's bytes into the batch with no
    /// copies in between.
    fn decode_views(
        &mut self,
        frames: &Frames<'_>,
        out: &mut EventSink<'_>,
    ) -> Vec<Result<u32, String>> {
        self.decode_batch(frames.to_frames())
            .into_iter()
            .map(|result| {
                result.map(|events| {
                    events.iter().for_each(|event| out.push_event(event));
                    // `max_events_out` bounds a call far below u32.
                    u32::try_from(events.len()).unwrap_or(u32::MAX)
                })
            })
            .collect()
    }
}

/// A validator: decides whether each event is valid.
pub trait Validator: Sized + 'static {
    /// Builds the instance from its config; an error refuses the plugin.
    fn init(config: &Config) -> Result<Self, InitError>;

    /// The verdict on one event.
    fn validate(&mut self, event: &Event) -> Verdict;

    /// The verdicts on a batch: one per event, in order.
    fn validate_batch(&mut self, events: Vec<Event>) -> Vec<Verdict> {
        events.iter().map(|event| self.validate(event)).collect()
    }

    /// The verdicts on a batch read in place ([`crate::EventRef`]s, no
    /// copies): what the host actually calls. The default copies the
    /// events and calls [`Validator::validate_batch`]; override it when
    /// the per-event copies matter (they are most of a simple check's cost).
    fn validate_views(&mut self, events: &Events<'_>) -> Vec<Verdict> {
        self.validate_batch(events.to_events())
    }
}

/// A privacy policy: keeps, rewrites or drops each event before it leaves.
pub trait Privacy: Sized + 'static {
    /// Builds the instance from its config; an error refuses the plugin.
    fn init(config: &Config) -> Result<Self, InitError>;

    /// The action for one event. Return [`Action::Keep`] when nothing
    /// changes, so the host need not copy the event back.
    fn redact(&mut self, event: Event) -> Action;

    /// The actions for a batch: one per event, in order.
    fn redact_batch(&mut self, events: Vec<Event>) -> Vec<Action> {
        events.into_iter().map(|event| self.redact(event)).collect()
    }

    /// The decisions for a batch read in place, with changes said as
    /// [`crate::Edit`]s: what the host actually calls. The default copies
    /// the events and calls [`Privacy::redact_batch`] (the SDK then turns
    /// each rewrite into the smallest edit it can); override it to skip
    /// the copies and the diff.
    fn redact_views(&mut self, events: &Events<'_>) -> Vec<Redaction> {
        self.redact_batch(events.to_events())
            .into_iter()
            .map(Redaction::from)
            .collect()
    }
}

/// A sampler: decides which events are worth keeping.
pub trait Sampler: Sized + 'static {
    /// Builds the instance from its config; an error refuses the plugin.
    fn init(config: &Config) -> Result<Self, InitError>;

    /// True keeps the event.
    fn sample(&mut self, event: &Event) -> bool;

    /// The decisions for a batch: one per event, in order.
    fn sample_batch(&mut self, events: Vec<Event>) -> Vec<bool> {
        events.iter().map(|event| self.sample(event)).collect()
    }

    /// The decisions for a batch read in place: what the host actually
    /// calls. The default copies the events and calls
    /// [`Sampler::sample_batch`]; override it to skip the copies.
    fn sample_views(&mut self, events: &Events<'_>) -> Vec<bool> {
        self.sample_batch(events.to_events())
    }
}
