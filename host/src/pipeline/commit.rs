//! What one ingest will commit, and committing it: the accepted events
//! (staged in the buffer file once they pass [`super::STAGE_AFTER_BYTES`]),
//! the dead letters (screened first, see [`super::dead_letters`]), the
//! dead letters a replay settles and the input's position go into one
//! buffer transaction; then the tap, the stage counters and licence usage
//! learn what was stored.

use halyard_buffer::{Commit, Cursor, Record, Staged};
use halyard_trust::usage::Counter;

use super::dead_letters::DeadLetters;
use super::{IngestReport, Pipeline, PipelineError};

impl Pipeline {
    /// Commits `pending` and `cursor` in one buffer transaction and counts
    /// the outcome.
    pub(super) fn commit(
        &mut self,
        pending: &mut Pending,
        cursor: Option<Cursor<'_>>,
        report: &mut IngestReport,
    ) -> Result<(), PipelineError> {
        let dead = std::mem::take(&mut pending.dead);
        let dead = if dead.is_empty() {
            Vec::new()
        } else {
            dead.screen(&mut self.chains.privacy, self.dead_letter_frames)
        };
        let appended = self.buffer.commit(&Commit {
            staged: Some(&pending.staged),
            records: &pending.records,
            dead_letters: &dead,
            cursor,
            // Every ingest asked `Buffer::admit` before running a plugin; a
            // replay did not: its commit is all or nothing.
            admitted: pending.replayed.is_empty(),
            replayed: &pending.replayed,
            // Events and frames replayed through the stages are new events
            // to every transport (their stage outcome may differ).
            only_for: None,
            // Stored with the chunk: transports filter and the shipper
            // counts delivered usage by kind without parsing payloads. (Only
            // known when usage is counted; the buffer ignores runs that do
            // not cover every record and then asks its kind reader.)
            kinds: &pending.kinds,
        })?;
        if let Some(tap) = self.tap.as_ref().filter(|t| t.subscribers() > 0) {
            // What was committed, as committed: after privacy and sampling.
            // A full buffer under `drop_newest` refuses the tail.
            let accepted = usize::try_from(appended.accepted).unwrap_or(usize::MAX);
            let from_staged = accepted.min(pending.staged.len());
            let read_back = self
                .buffer
                .for_each_staged(&pending.staged, from_staged, |p| {
                    tap.send_events([p]);
                });
            if let Err(err) = read_back {
                tracing::warn!(error = %err, "events stream: could not read staged events back");
            }
            tap.send_events(
                pending
                    .records
                    .iter()
                    .take(accepted - from_staged)
                    .map(|r| &r.payload[..]),
            );
        }
        for stage in self.stages() {
            stage.publish();
        }
        report.accepted += appended.accepted;
        if let Some(usage) = &self.usage {
            // The first `accepted` events (in order) were stored; the rest
            // were refused by a full buffer.
            let mut accepted = appended.accepted;
            for (kind, n) in &pending.kinds {
                let stored = accepted.min(*n);
                accepted -= stored;
                usage.add(kind, Counter::Accepted, stored);
                usage.add(kind, Counter::Dropped, n - stored);
            }
            usage.add("(evicted)", Counter::Dropped, appended.evicted_oldest);
        }
        report.buffer_dropped += appended.dropped_newest;
        report.buffer_evicted += appended.evicted_oldest;
        Ok(())
    }

    /// Deletes what an ingest staged, committed or not. A failure only
    /// leaves rows the next open drops, so it is logged, not returned.
    pub(super) fn discard(&self, pending: Pending) {
        if let Err(err) = self.buffer.discard(pending.staged) {
            tracing::warn!(error = %err, "could not delete staged events (dropped at the next start)");
        }
    }
}

/// What one ingest call will commit.
#[derive(Default)]
pub(super) struct Pending {
    /// Accepted events already written ahead to the buffer file, in order
    /// before `records`.
    pub(super) staged: Staged,
    /// Accepted events, encoded, not yet staged.
    pub(super) records: Vec<Record>,
    /// Payload bytes in `records`.
    pub(super) record_bytes: usize,
    /// Accounted bytes of every accepted event, staged or not: what the
    /// ingest will take in the buffer.
    pub(super) stored_bytes: u64,
    /// The kinds of the accepted events (staged, then `records`), in order
    /// and run-length encoded, when usage is counted.
    pub(super) kinds: Vec<(String, u64)>,
    /// Rejected events and frames, screened at commit.
    pub(super) dead: DeadLetters,
    /// Dead letters (row numbers) this commit replays: removed with it.
    pub(super) replayed: Vec<i64>,
}

impl Pending {
    /// Appends one accepted event's kind to `kinds`.
    pub(super) fn push_kind(&mut self, kind: &str) {
        match self.kinds.last_mut() {
            Some((last, n)) if last == kind => *n += 1,
            _ => self.kinds.push((kind.to_string(), 1)),
        }
    }
}
