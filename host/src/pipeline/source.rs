//! The events path: events a source guest produced when polled (or that
//! were handed in whole), run through the chains and committed. Events the
//! host refuses from a source (over a cap, past the poll's `max`) are
//! dead-lettered one by one with the reason, in the same transaction; they
//! are never a trap (see [`crate::plugin::Polled`]).

use halyard_trust::usage::Counter;

use super::record::chain_link;
use super::{IngestReport, MAX_PER_CALL, Pending, Pipeline, PipelineError};
use crate::event;
use crate::plugin::{Event, Polled};

/// The stored size assumed for one event a host-owned input made, when
/// asking the buffer for room (a `system` reading with its attributes and
/// provenance stamp is ~300 bytes).
pub const MADE_EVENT_BYTES: u64 = 512;

impl Pipeline {
    /// Polls source input `index` for at most `max` events and ingests them.
    pub fn poll_source(&mut self, index: usize, max: u32) -> Result<IngestReport, PipelineError> {
        if index >= self.sources.len() {
            return Ok(IngestReport::default());
        }
        // Under `when_full = "block"` a full buffer is not polled at all:
        // what a source hands over cannot be handed back.
        self.buffer.admit(1)?;
        let Some((_, stage)) = self.sources.get_mut(index) else {
            return Ok(IngestReport::default());
        };
        let polled = match stage.call(|i| i.poll_checked(max)) {
            Some(Ok(polled)) => polled,
            _ => Polled::default(),
        };
        stage.counters.events_out += polled.events.len() as u64;
        let refused = polled.refused.len() as u64;
        stage.counters.rejected += refused;
        stage.counters.refused += refused;
        let refused = polled
            .refused
            .into_iter()
            .map(|(e, reason)| {
                (
                    e,
                    format!("{}: source output refused: {reason}", stage.name),
                )
            })
            .collect();
        let origin = Some(chain_link(stage));
        self.ingest_events_from(polled.events, refused, origin)
    }

    /// Ingests events a source produced (their ids are replaced). Like
    /// [`Pipeline::ingest_frames`], in chain calls of at most
    /// [`MAX_PER_CALL`] events and one buffer transaction.
    pub fn ingest_events(&mut self, events: Vec<Event>) -> Result<IngestReport, PipelineError> {
        self.ingest_events_from(events, Vec::new(), None)
    }

    /// Ingests events a host-owned input made itself (the `system` input):
    /// asks the buffer for room first, as frames do (about
    /// [`MADE_EVENT_BYTES`] each), then runs them like
    /// [`Pipeline::ingest_events`].
    pub fn ingest_input_events(
        &mut self,
        events: Vec<Event>,
    ) -> Result<IngestReport, PipelineError> {
        self.buffer.admit(events.len() as u64 * MADE_EVENT_BYTES)?;
        self.ingest_events_from(events, Vec::new(), None)
    }

    /// [`Pipeline::ingest_events`] from the source named by `origin` (its
    /// chain link), if any, with the events the host `refused` from that
    /// source: they are dead-lettered with their reason in the same
    /// transaction and counted as rejected.
    fn ingest_events_from(
        &mut self,
        mut events: Vec<Event>,
        refused: Vec<(Event, String)>,
        origin: Option<String>,
    ) -> Result<IngestReport, PipelineError> {
        for e in &mut events {
            e.id = event::new_id();
        }
        let mut report = IngestReport::default();
        let mut pending = Pending::default();
        if !refused.is_empty() {
            report.rejected += refused.len() as u64;
            if let Some(usage) = &self.usage {
                // A refused event's kind may be the very string over the cap.
                usage.add("(refused)", Counter::Received, refused.len() as u64);
                usage.add("(refused)", Counter::Rejected, refused.len() as u64);
            }
            for (mut e, reason) in refused {
                e.id = event::new_id();
                pending.dead.event(e, reason);
            }
        }
        let mut events = events.into_iter();
        let mut ran = Ok(());
        while ran.is_ok() {
            let chunk: Vec<Event> = events.by_ref().take(MAX_PER_CALL).collect();
            if chunk.is_empty() {
                break;
            }
            ran = self.run_chains(chunk, origin.clone(), &mut report, &mut pending);
        }
        let committed = ran.and_then(|()| self.commit(&mut pending, None, &mut report));
        self.discard(pending);
        committed?;
        self.totals.add(&report);
        Ok(report)
    }
}
