//! The stage chains every batch runs through: validate → detect → privacy →
//! sample, each a list of plugins, each with the failure policy of its kind:
//!
//! - validator: fail closed: if it traps (or is quarantined) the whole
//!   batch is rejected with the reason and goes to the dead-letter table;
//! - detector: fail open: if it traps the events go on and only its own
//!   new events for the batch are lost (counted); see [`super::detect`];
//! - privacy: fail closed: if it traps the batch is dropped and counted;
//!   unredacted data never ships; a rewrite the host refuses (over a cap)
//!   drops that event alone;
//! - sampler: fail open: if it traps every event is kept.
//!
//! Invariant: every event that enters [`Chains::run`], and every event a
//! detector makes in it, leaves in exactly one of `accepted`, `rejected`,
//! `privacy_dropped` or `sampled_out`.

use crate::plugin::{Action, Event, EventId, Verdict};

use super::detect::{self, DetectorStage};
use super::stage::Stage;

/// The configured chains.
#[derive(Default)]
pub struct Chains {
    /// Validators, in order.
    pub validators: Vec<Stage>,
    /// Detectors, in order (after the validators, before privacy).
    pub detectors: Vec<DetectorStage>,
    /// Privacy policies, in order.
    pub privacy: Vec<Stage>,
    /// Samplers, in order.
    pub samplers: Vec<Stage>,
}

/// Where a batch's events ended up.
#[derive(Debug, Default)]
pub struct ChainOutcome {
    /// Events to buffer and ship.
    pub accepted: Vec<Event>,
    /// Events refused by a validator (or failed closed), with the reason;
    /// they go to the dead-letter table.
    pub rejected: Vec<(Event, String)>,
    /// Events a privacy policy dropped, or dropped because it failed.
    pub privacy_dropped: u64,
    /// The ids of those events (for per-line results), in drop order.
    pub privacy_dropped_ids: Vec<EventId>,
    /// Events a sampler did not keep.
    pub sampled_out: u64,
    /// What the detectors made (counted, and which made each event).
    pub detected: detect::DetectorRun,
}

impl Chains {
    /// Runs `events` through every chain.
    pub fn run(&mut self, mut events: Vec<Event>) -> ChainOutcome {
        let mut outcome = ChainOutcome::default();
        for stage in &mut self.validators {
            if events.is_empty() {
                break;
            }
            events = validate(stage, events, &mut outcome.rejected);
        }
        for d in &mut self.detectors {
            if events.is_empty() {
                break;
            }
            events = detect::detect(d, events, &mut outcome.detected);
        }
        outcome.accepted = events;
        self.run_after_detect(&mut outcome);
        outcome
    }

    /// Runs `outcome.accepted` through the privacy policies and samplers
    /// (the part of the chain after the detectors; a tick's events start
    /// here).
    pub fn run_after_detect(&mut self, outcome: &mut ChainOutcome) {
        let mut events = std::mem::take(&mut outcome.accepted);
        for stage in &mut self.privacy {
            if events.is_empty() {
                break;
            }
            events = redact(
                stage,
                events,
                &mut outcome.privacy_dropped,
                &mut outcome.privacy_dropped_ids,
            );
        }
        for stage in &mut self.samplers {
            if events.is_empty() {
                break;
            }
            events = sample(stage, events, &mut outcome.sampled_out);
        }
        outcome.accepted = events;
    }

    /// Every stage, in pipeline order.
    pub fn stages(&self) -> impl Iterator<Item = &Stage> {
        self.validators
            .iter()
            .chain(self.detectors.iter().map(|d| &d.stage))
            .chain(&self.privacy)
            .chain(&self.samplers)
    }
}

fn validate(
    stage: &mut Stage,
    events: Vec<Event>,
    rejected: &mut Vec<(Event, String)>,
) -> Vec<Event> {
    stage.counters.events_in += events.len() as u64;
    let verdicts = match stage.call(|i| i.validate(&events)) {
        Some(Ok(verdicts)) => verdicts,
        failed => {
            let reason = match failed {
                Some(Err(err)) => format!(
                    "validator {} failed: {}",
                    stage.name,
                    err.without_guest_output()
                ),
                _ => format!("validator {} is {}", stage.name, stage.unavailable()),
            };
            stage.counters.rejected += events.len() as u64;
            rejected.extend(events.into_iter().map(|e| (e, reason.clone())));
            return Vec::new();
        }
    };
    let mut kept = Vec::with_capacity(events.len());
    for (event, verdict) in events.into_iter().zip(verdicts) {
        match verdict {
            Verdict::Accept => kept.push(event),
            Verdict::Reject(reason) => {
                stage.counters.rejected += 1;
                rejected.push((event, format!("{}: {reason}", stage.name)));
            }
        }
    }
    stage.counters.events_out += kept.len() as u64;
    kept
}

fn redact(
    stage: &mut Stage,
    mut events: Vec<Event>,
    dropped: &mut u64,
    dropped_ids: &mut Vec<EventId>,
) -> Vec<Event> {
    stage.counters.events_in += events.len() as u64;
    // Edits are applied to `events` where they lie; `Keep` keeps the event
    // as it now is.
    let Some(Ok(redacted)) = stage.call(|i| i.redact_in_place(&mut events)) else {
        stage.counters.dropped += events.len() as u64;
        *dropped += events.len() as u64;
        dropped_ids.extend(events.iter().map(|e| e.id));
        return Vec::new();
    };
    let actions = redacted.actions;
    if let Some((_, reason)) = redacted.refused.first() {
        // Already drops (fail closed); counted below with the other drops.
        stage.counters.refused += redacted.refused.len() as u64;
        tracing::warn!(plugin = %stage.name, refused = redacted.refused.len(), first = %reason,
            "privacy rewrites refused by the host; the events are dropped");
    }
    let mut kept = Vec::with_capacity(events.len());
    for (event, action) in events.into_iter().zip(actions) {
        match action {
            Action::Keep => kept.push(event),
            Action::Rewrite(rewritten) => kept.push(rewritten),
            Action::Drop => {
                stage.counters.dropped += 1;
                *dropped += 1;
                dropped_ids.push(event.id);
            }
        }
    }
    stage.counters.events_out += kept.len() as u64;
    kept
}

fn sample(stage: &mut Stage, events: Vec<Event>, sampled_out: &mut u64) -> Vec<Event> {
    let total = events.len() as u64;
    stage.counters.events_in += total;
    let Some(Ok(decisions)) = stage.call(|i| i.sample(&events)) else {
        stage.counters.events_out += total;
        return events;
    };
    let kept: Vec<Event> = events
        .into_iter()
        .zip(decisions)
        .filter_map(|(event, keep)| keep.then_some(event))
        .collect();
    let out = kept.len() as u64;
    stage.counters.events_out += out;
    stage.counters.dropped += total - out;
    *sampled_out += total - out;
    kept
}
