//! The data path inside the host, from frames or source events to the
//! buffer:
//!
//! ```text
//! frames ─► decode ─► ids ─► validate ─► detect ─► privacy ─► sample ─► buffer
//!             │                  │          │  ▲         │          │
//!             └► dead letter ◄───┘          └──┘      dropped   sampled out
//!                                      new events (alerts), tick
//! ```
//!
//! Invariants:
//! - an event is *accepted* only once [`Pipeline::ingest_frames`] or
//!   [`Pipeline::ingest_events`] returns `Ok`: its buffer transaction is
//!   committed;
//! - every frame and event is accounted for in exactly one counter:
//!   accepted, dead-lettered, privacy-dropped, sampled out, or dropped by the
//!   buffer's overflow policy;
//! - a frame or event whose guest output breaks a host cap is refused alone
//!   (dead-lettered with the reason; for privacy, dropped and counted) and
//!   is never a trap: the rest of its call goes on, and no input can
//!   quarantine a plugin that way;
//! - a dead letter keeps only what the privacy chain lets through (see
//!   [`dead_letters`]): refused events are screened by the privacy stages
//!   before they are stored, undecodable frames keep only a digest unless
//!   the config opts in to raw frames;
//! - ids are assigned here, never trusted from guests; a frame with a stable
//!   key (a file offset) yields the same ids every time it is read, so a
//!   re-read after a crash is de-duplicated by the receiver.
//!
//! The pipeline is synchronous and owns every plugin instance: it runs on a
//! dedicated thread, never on an async runtime's worker.

mod admission;
mod build;
mod chain;
mod commit;
mod dead_letters;
mod detect;
mod frame_run;
mod native;
mod record;
mod refuse;
mod replay;
mod restage;
mod settle;
mod shared_frames;
mod source;
mod stage;
mod trace;

use std::collections::HashMap;
use std::sync::Arc;

use halyard_buffer::{Buffer, BufferError, Cursor};
use halyard_trust::usage::{Counter, UsageWindow};

use crate::event;
use crate::plugin::{Event, Frame, FrameError, Frames, LoadError, PluginKind};
use crate::tap::Tap;

pub use build::{ChainSeeds, plugin_options};
pub use chain::{ChainOutcome, Chains};
pub use detect::{DetectorStage, MIN_TICK, TICK_MS_KEY, tick_ms};
pub use frame_run::FrameRun;
pub use native::{NativeFactory, NativeStages, StagePlugin};
pub use record::id_bytes;
pub use restage::{ChainPlan, Slot};
pub use shared_frames::{SharedFrames, SpanError};
pub use stage::{QuarantinePolicy, Stage, StageCounters, StageSeed};
pub use trace::{DropCause, EventOutcome, FrameOutcome};

use commit::Pending;
use record::{chain_link, derived_id, event_record, frame_record};

/// The most frames, or events, one plugin call gets. A larger ingest is cut
/// into calls of this size (so each stays well within its CPU deadline) and
/// committed in one buffer transaction.
pub const MAX_PER_CALL: usize = 1000;

/// The most frame bytes one decode call gets (at least one frame, however
/// large). Why: a call's output must fit the plugin's output cap (16 MiB by
/// default) or the whole call fails as a trap, and a decoder's output can
/// be ~10× its input (many tiny attributes); and a call must end within its
/// deadline (100 ms by default). 256 KiB keeps both far off for valid
/// frames; it is also what the file input reads at once, and ordinary lines
/// reach [`MAX_PER_CALL`] first.
pub const MAX_BYTES_PER_CALL: usize = 256 << 10;

/// Encoded events one ingest holds in memory before it stages them in the
/// buffer file ([`Buffer::stage`]). Why: a 15 MiB request decodes into
/// ~200k events, several times its size once encoded and stamped; held
/// until the single commit they made each request cost ~6× its body. Staged
/// in 4 MiB slices, an ingest's memory is its input plus this much, and the
/// commit is still all-or-nothing. Ordinary batches (a file read, a small
/// request) never reach it and pay nothing.
pub const STAGE_AFTER_BYTES: usize = 4 << 20;

/// A frame from a host-owned input, with an optional stable key.
pub struct KeyedFrame {
    /// The raw frame.
    pub frame: Frame,
    /// A stable identity (e.g. file identity + byte offset): events decoded
    /// from it get ids derived from it instead of random ones.
    pub key: Option<[u8; 16]>,
}

/// What one ingest call did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestReport {
    /// Events committed to the buffer.
    pub accepted: u64,
    /// Frames that failed to decode (dead-lettered).
    pub decode_errors: u64,
    /// Events rejected by validators (dead-lettered).
    pub rejected: u64,
    /// Events dropped by privacy policies.
    pub privacy_dropped: u64,
    /// Events not kept by samplers.
    pub sampled_out: u64,
    /// Events the buffer refused (`drop_newest`).
    pub buffer_dropped: u64,
    /// Older events the buffer evicted to make room (`drop_oldest`).
    pub buffer_evicted: u64,
    /// New events detectors made (they then end up accepted, dropped by
    /// privacy or sampled out like any other).
    pub detected: u64,
    /// Detector calls (`detect` or `tick`) whose output was lost: a trap,
    /// a quarantined detector, or output over a host cap. The batch's
    /// events went on.
    pub detector_failures: u64,
}

impl IngestReport {
    /// Adds `other`'s counts to these (totals over batches or workers).
    pub fn add(&mut self, other: &IngestReport) {
        self.accepted += other.accepted;
        self.decode_errors += other.decode_errors;
        self.rejected += other.rejected;
        self.privacy_dropped += other.privacy_dropped;
        self.sampled_out += other.sampled_out;
        self.buffer_dropped += other.buffer_dropped;
        self.buffer_evicted += other.buffer_evicted;
        self.detected += other.detected;
        self.detector_failures += other.detector_failures;
    }
}

/// Why the pipeline could not be built or could not take a batch.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A configured plugin was refused.
    #[error("{role} plugin {path}: {source}")]
    Plugin {
        /// Where it is used (`input sensors decoder`, `validate[0]`).
        role: String,
        /// The component file.
        path: String,
        /// Why it was refused.
        source: Box<LoadError>,
    },
    /// The buffer refused the batch or failed.
    #[error(transparent)]
    Buffer(#[from] BufferError),
    /// Frames arrived for an input that has no decoder.
    #[error("no decoder for input `{0}`")]
    UnknownInput(String),
    /// The host is shutting down and its stop deadline passed before these
    /// frames were taken: nothing of them was accepted.
    #[error("the host is shutting down: not accepted")]
    ShuttingDown,
    /// A detector's `tick_ms` config value is not a whole number of
    /// milliseconds.
    #[error("{role}: `config.tick_ms` must be a whole number of milliseconds (is `{value}`)")]
    BadTick {
        /// Where it is used (`stages.detect[0]`).
        role: String,
        /// The value given.
        value: String,
    },
    /// An earlier batch of the same input was not accepted, so this one,
    /// which carries a read position past it, was not committed either:
    /// the input sends both again, in order.
    #[error("an earlier batch of this input was not accepted: not accepted")]
    EarlierBatchRefused,
}

/// The decoders and stage chains, and the buffer they feed.
pub struct Pipeline {
    decoders: HashMap<String, Stage>,
    sources: Vec<(String, Stage)>,
    chains: Chains,
    buffer: Arc<Buffer>,
    /// How much room an ingest asks the buffer for before it runs.
    admission: admission::Admission,
    /// Everything ingested so far.
    pub totals: IngestReport,
    /// Where committed events are offered to `/events/stream`.
    tap: Option<Tap>,
    /// Stamps provenance on accepted events; `None` leaves them unstamped.
    /// Shared by every pipeline worker (one sequence counter per host).
    stamper: Option<Arc<std::sync::Mutex<crate::provenance::Stamper>>>,
    /// Where one ingest's event counts by kind are collected for the
    /// licence heartbeat until its commit stores them in the buffer. Each
    /// worker's pipeline has its own: a commit takes everything it holds.
    usage: Option<Arc<UsageWindow>>,
    /// Traps per plugin already counted into `usage`.
    traps_counted: HashMap<String, u64>,
    /// When a stage is quarantined; stages added by a reload get it too.
    quarantine: QuarantinePolicy,
    /// Registers stages added by a reload with `/plugins`; `None` when
    /// unobserved.
    registrar: Option<crate::status::plugins::Registrar>,
    /// What a dead-lettered frame keeps (`[buffer] dead_letter_frames`).
    dead_letter_frames: crate::config::DeadLetterFrames,
    /// Per-frame outcomes of the ingest in progress, when its client asked
    /// for them ([`Pipeline::ingest_traced`]); `None` otherwise.
    trace: Option<trace::Trace>,
}

impl Pipeline {
    /// The names of the source inputs, in config order.
    pub fn source_names(&self) -> Vec<String> {
        self.sources.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Decodes frames from input `input` and ingests the events. Frames
    /// that fail to decode, or all frames when the decoder traps, go to the
    /// dead-letter table with the reason.
    ///
    /// More than [`MAX_PER_CALL`] frames are decoded and run through the
    /// chains in calls of that size; the accepted events, the dead letters
    /// and `position` (the input's read position just past these frames,
    /// if it has one) are committed in one buffer transaction, so on `Err`
    /// nothing was, and after a crash the position matches the events.
    ///
    /// `input_bytes` (the frames' total size) sets how much room the buffer
    /// must have under `when_full = "block"` before anything runs (see
    /// `admission.rs`): a full buffer refuses the frames with
    /// [`BufferError::Full`] *before* decoding, so a retried frame never
    /// meets a plugin twice and is counted once.
    pub fn ingest_frames(
        &mut self,
        input: &str,
        frames: impl IntoIterator<Item = KeyedFrame>,
        position: Option<Vec<u8>>,
        input_bytes: u64,
    ) -> Result<IngestReport, PipelineError> {
        self.ingest_frames_in_turn(input, frames, position, input_bytes, || Ok(()))
    }

    /// Like [`Pipeline::ingest_frames`], and also says what became of each
    /// frame, in order (see [`FrameOutcome`]), for a client that asked per
    /// line. The outcomes are those of the committed ingest: on `Err`
    /// nothing was accepted and there are none.
    pub fn ingest_traced(
        &mut self,
        input: &str,
        frames: impl IntoIterator<Item = KeyedFrame>,
        input_bytes: u64,
    ) -> Result<(IngestReport, Vec<FrameOutcome>), PipelineError> {
        self.trace = Some(trace::Trace::default());
        let result = self.ingest_frames(input, frames, None, input_bytes);
        let trace = self.trace.take().unwrap_or_default();
        let report = result?;
        let outcomes = trace.resolve(report.buffer_dropped);
        Ok((report, outcomes))
    }

    /// Like [`Pipeline::ingest_frames`], but waits for `turn` between
    /// running the stages and committing: with several pipeline workers,
    /// one input's batches are staged in parallel and committed in the
    /// input's order. An `Err` from `turn` commits nothing and is returned.
    pub fn ingest_frames_in_turn(
        &mut self,
        input: &str,
        frames: impl IntoIterator<Item = KeyedFrame>,
        position: Option<Vec<u8>>,
        input_bytes: u64,
        turn: impl FnOnce() -> Result<(), PipelineError>,
    ) -> Result<IngestReport, PipelineError> {
        self.ingest_with(input, position, input_bytes, turn, |p, report, pending| {
            p.decode_and_run(input, frames, report, pending)
        })
    }

    /// One ingest: admits `input_bytes`, lets `run` decode and run the
    /// chains into the pending commit, waits for `turn`, commits.
    fn ingest_with(
        &mut self,
        input: &str,
        position: Option<Vec<u8>>,
        input_bytes: u64,
        turn: impl FnOnce() -> Result<(), PipelineError>,
        run: impl FnOnce(&mut Self, &mut IngestReport, &mut Pending) -> Result<(), PipelineError>,
    ) -> Result<IngestReport, PipelineError> {
        if !self.decoders.contains_key(input) {
            return Err(PipelineError::UnknownInput(input.to_string()));
        }
        self.buffer.admit(self.admission.estimate(input_bytes))?;
        let mut report = IngestReport::default();
        let mut pending = Pending::default();
        let ran = run(self, &mut report, &mut pending);
        let cursor = position.as_deref().map(|value| Cursor {
            name: input,
            value: Some(value),
        });
        let committed = ran
            .and_then(|()| turn())
            .and_then(|()| self.commit(&mut pending, cursor, &mut report));
        self.admission.learn(input_bytes, pending.stored_bytes);
        self.discard(pending);
        committed?;
        self.totals.add(&report);
        Ok(report)
    }

    /// The read position input `input` last committed with its events.
    pub fn position(&self, input: &str) -> Result<Option<Vec<u8>>, PipelineError> {
        Ok(self.buffer.cursor(input)?)
    }

    /// Decodes one call's worth of frames; failures are dead-lettered and
    /// counted in `report`.
    fn decode(
        &mut self,
        input: &str,
        keys: &[Option<[u8; 16]>],
        raw: Frames<'_>,
        report: &mut IngestReport,
        pending: &mut Pending,
    ) -> Result<Vec<Event>, PipelineError> {
        let decoder = self
            .decoders
            .get_mut(input)
            .ok_or_else(|| PipelineError::UnknownInput(input.to_string()))?;
        decoder.counters.events_in += raw.len() as u64;
        let mut decode_errors = 0;
        let dead = &mut pending.dead;
        let mut events = Vec::new();
        let mut refused = 0;
        match decoder.call(|i| i.decode_frames_checked(raw)) {
            Some(Ok(results)) => {
                for (i, (result, key)) in results.into_iter().zip(keys).enumerate() {
                    let reason = match result {
                        Ok(decoded) => {
                            let first = events.len();
                            for (n, mut e) in decoded.into_iter().enumerate() {
                                e.id = match key {
                                    Some(k) => derived_id(k, n),
                                    None => event::new_id(),
                                };
                                events.push(e);
                            }
                            if let Some(trace) = &mut self.trace {
                                trace.decoded(&events[first..]);
                            }
                            continue;
                        }
                        Err(FrameError::Decoder(reason)) => {
                            format!("{input}: decode failed: {reason}")
                        }
                        Err(FrameError::Refused(reason)) => {
                            refused += 1;
                            format!("{input}: decoder output refused: {reason}")
                        }
                    };
                    decode_errors += 1;
                    if let Some(trace) = &mut self.trace {
                        trace.failed(&reason);
                    }
                    dead.frame(input, frame_record(raw.data(i), key), reason);
                }
            }
            failed => {
                let reason = match failed {
                    Some(Err(err)) => {
                        format!("{input}: decoder failed: {}", err.without_guest_output())
                    }
                    _ => format!(
                        "{input}: decoder {} is {}",
                        decoder.name,
                        decoder.unavailable()
                    ),
                };
                decode_errors += raw.len() as u64;
                if let Some(trace) = &mut self.trace {
                    (0..raw.len()).for_each(|_| trace.failed(&reason));
                }
                for (i, k) in keys.iter().enumerate().take(raw.len()) {
                    dead.frame(input, frame_record(raw.data(i), k), reason.clone());
                }
            }
        }
        decoder.counters.events_out += events.len() as u64;
        decoder.counters.rejected += decode_errors;
        decoder.counters.refused += refused;
        if refused > 0 {
            // Input-driven (any client can send such lines): no warning.
            tracing::debug!(input, decoder = %decoder.name, refused,
                "frames refused: the decoder's events broke a host cap");
        }
        report.decode_errors += decode_errors;
        if let Some(usage) = &self.usage {
            // Frames that never became events have no kind of their own.
            usage.add("(undecoded)", Counter::Received, decode_errors);
            usage.add("(undecoded)", Counter::Rejected, decode_errors);
        }
        Ok(events)
    }

    /// Offers every committed event to `tap` from now on.
    pub fn set_tap(&mut self, tap: Tap) {
        self.tap = Some(tap);
    }

    /// Stops stamping provenance and lets go of the shared counter: when
    /// every worker has, the counter is dropped and gives back the unused
    /// rest of its block (a clean stop leaves no gap in `seq`).
    pub fn release_provenance(&mut self) {
        self.stamper = None;
    }

    /// Stamps provenance on every event accepted from now on.
    pub fn set_provenance(&mut self, stamper: crate::provenance::Stamper) {
        self.stamper = Some(Arc::new(std::sync::Mutex::new(stamper)));
    }

    /// Counts events by kind for the licence heartbeat: each ingest counts
    /// into `usage`, and its commit moves the counts into the buffer in the
    /// same transaction (the heartbeat reads them there). `usage` must be
    /// this pipeline's own, shared with no other counter: a commit takes
    /// everything it holds.
    pub fn set_usage(&mut self, usage: Arc<UsageWindow>) {
        self.usage = Some(usage);
    }

    /// Every stage with its role and, for decoders and sources, its input.
    pub fn stages_with_roles(&mut self) -> Vec<(PluginKind, Option<String>, &mut Stage)> {
        let mut out = Vec::new();
        for (name, stage) in &mut self.sources {
            out.push((PluginKind::Source, Some(name.clone()), stage));
        }
        for (name, stage) in &mut self.decoders {
            out.push((PluginKind::Decoder, Some(name.clone()), stage));
        }
        let chains = &mut self.chains;
        for stage in &mut chains.validators {
            out.push((PluginKind::Validator, None, stage));
        }
        for d in &mut chains.detectors {
            out.push((PluginKind::Detector, None, &mut d.stage));
        }
        for stage in &mut chains.privacy {
            out.push((PluginKind::Privacy, None, stage));
        }
        for stage in &mut chains.samplers {
            out.push((PluginKind::Sampler, None, stage));
        }
        out
    }

    /// Every decoder, source and chain stage with its counters.
    pub fn stages(&self) -> impl Iterator<Item = &Stage> {
        self.sources
            .iter()
            .map(|(_, s)| s)
            .chain(self.decoders.values())
            .chain(self.chains.stages())
    }
}
