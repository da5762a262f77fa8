//! Sending dead letters back through the pipeline once their cause is
//! fixed (a validator corrected, a decoder updated): events through the
//! validators and samplers (they were stored after the privacy stages, see
//! [`super::dead_letters`]), frames through their input's decoder and every
//! stage.
//!
//! Invariants:
//! - a replayed dead letter keeps its identity: events keep their id, and a
//!   frame is keyed by its dead-letter id, so its events get the same ids
//!   on every replay and a receiver de-duplicates a replay that was already
//!   delivered;
//! - the dead-letter rows replayed are deleted in the same buffer
//!   transaction that commits their new outcome (accepted, dead-lettered
//!   again, dropped), so a crash leaves each row either still a dead letter
//!   or replayed, never both or neither;
//! - a replay never drops what it replays because the buffer is full: that
//!   commit fails with [`halyard_buffer::BufferError::Full`] and writes
//!   nothing (see [`halyard_buffer::Commit::replayed`]).

use super::commit::Pending;
use super::{IngestReport, KeyedFrame, MAX_PER_CALL, Pipeline, PipelineError};
use crate::plugin::Event;

impl Pipeline {
    /// Runs dead-lettered `events` (ids kept) through the validators and
    /// samplers and commits the outcome together with the removal of
    /// dead-letter `rows`.
    ///
    /// Not through the privacy stages: a dead-lettered event was stored as
    /// they left it, and running them again would redact the redacted (a
    /// salted hash of a hash). For the same reason an event rejected again
    /// is stored as it is. Its provenance chain lists the stages of this
    /// run: the validators and samplers.
    pub fn replay_events(
        &mut self,
        events: Vec<Event>,
        rows: Vec<i64>,
    ) -> Result<IngestReport, PipelineError> {
        let privacy = std::mem::take(&mut self.chains.privacy);
        let result = self.replay_screened(events, rows);
        self.chains.privacy = privacy;
        result
    }

    /// [`Pipeline::replay_events`] with the privacy stages taken out.
    fn replay_screened(
        &mut self,
        events: Vec<Event>,
        rows: Vec<i64>,
    ) -> Result<IngestReport, PipelineError> {
        let mut report = IngestReport::default();
        let mut pending = Pending {
            replayed: rows,
            ..Pending::default()
        };
        let mut events = events.into_iter().peekable();
        let mut ran = Ok(());
        while ran.is_ok() && events.peek().is_some() {
            let chunk: Vec<Event> = events.by_ref().take(MAX_PER_CALL).collect();
            ran = self.run_chains(chunk, None, &mut report, &mut pending);
        }
        self.settle(ran, pending, report)
    }

    /// Decodes dead-lettered `frames` of input `input` again and ingests
    /// the events, committing them together with the removal of
    /// dead-letter `rows`. Like [`Pipeline::ingest_frames`] without moving
    /// the input's read position.
    pub fn replay_frames(
        &mut self,
        input: &str,
        frames: Vec<KeyedFrame>,
        rows: Vec<i64>,
    ) -> Result<IngestReport, PipelineError> {
        if !self.has_decoder(input) {
            return Err(PipelineError::UnknownInput(input.to_string()));
        }
        let mut report = IngestReport::default();
        let mut pending = Pending {
            replayed: rows,
            ..Pending::default()
        };
        let ran = self.decode_and_run(input, frames, &mut report, &mut pending);
        self.settle(ran, pending, report)
    }

    /// Commits what a replay `ran` into `pending` (not admitted ahead: a
    /// replay's commit is all or nothing) and deletes what it staged.
    fn settle(
        &mut self,
        ran: Result<(), PipelineError>,
        mut pending: Pending,
        mut report: IngestReport,
    ) -> Result<IngestReport, PipelineError> {
        let committed = ran.and_then(|()| self.commit(&mut pending, None, &mut report));
        self.discard(pending);
        committed?;
        self.totals.add(&report);
        Ok(report)
    }

    /// Whether input `input` has a decoder, i.e. its dead-lettered frames
    /// can be replayed.
    pub fn has_decoder(&self, input: &str) -> bool {
        self.decoders.contains_key(input)
    }
}
