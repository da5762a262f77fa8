//! The plugin traits, one per plugin kind.
//!
//! Why: each trait is the whole of what a plugin author writes. `init` builds
//! the instance from its config; the SDK stores the instance and routes every
//! stage call to it. The `*_batch` methods are what the host actually calls
//! (one call per batch); their defaults map the per-event method, and a
//! plugin overrides them only when it can do a batch better.
//!
//! Instance state is soft: the host recreates the instance after a trap or a
//! reload and calls `init` again, so never rely on state surviving.

use crate::{Action, Config, Event, Frame, InitError, Verdict};

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
}
