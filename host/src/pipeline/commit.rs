//! What one ingest will commit, and committing it: the accepted events
//! (staged in the buffer file once they pass [`super::STAGE_AFTER_BYTES`]),
//! the dead letters (screened first, see [`super::dead_letters`]), the
//! dead letters a replay settles, the input's position, the detectors'
//! `kv` writes and the licence usage this ingest counted go into one
//! buffer transaction (so after any
//! crash the usage matches what was stored: an ingest a restart redoes was
//! not counted); then the tap and the stage counters learn what was stored.

use halyard_buffer::{AppendOutcome, Commit, Cursor, Record, Staged, UsageCounts};
use halyard_trust::usage::UsageSnapshot;

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
        // What this ingest counted, plus the split of its accepted events
        // into stored and refused, which only the transaction knows.
        let counted = self.usage.as_ref().map(|u| u.snapshot());
        let kinds = &pending.kinds;
        let rows = |outcome: &AppendOutcome| {
            let mut snapshot = counted.clone().unwrap_or_default();
            count_stored(&mut snapshot, kinds, outcome);
            crate::licence::stored_usage::to_counts(&snapshot)
        };
        let usage = counted
            .as_ref()
            .filter(|c| !c.is_empty() || !kinds.is_empty())
            .map(|_| UsageCounts(&rows));
        // The detectors' kv writes of this batch, in its transaction.
        let (kv, kv_taken) = super::detect::take_writes(self.chains.detectors.iter());
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
            usage,
            // Stored with the chunk: transports filter and the shipper
            // counts delivered usage by kind without parsing payloads. (The
            // buffer ignores runs that do not cover every record, e.g. a
            // replay's, and then asks its kind reader.)
            kinds: &pending.kinds,
            kv: &kv,
        });
        super::detect::settle(kv_taken, appended.is_ok());
        if let Some(usage) = &self.usage {
            // Stored with the commit, or (on failure) forgotten: the input
            // redoes the work and counts it again.
            usage.take();
        }
        let appended = appended?;
        if let Some(tap) = self.tap.as_ref().filter(|t| !t.wanted()) {
            // Nobody watches: the events only use up their stream ids, so a
            // client resuming later learns it missed them.
            tap.skip(appended.accepted);
        } else if let Some(tap) = &self.tap {
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
        report.buffer_dropped += appended.dropped_newest;
        report.buffer_evicted += appended.evicted_oldest;
        Ok(())
    }

    /// Deletes what an ingest staged, committed or not, and forgets the
    /// usage of an ingest that failed before its commit (its input redoes
    /// it). A failure only leaves rows the next open drops, so it is
    /// logged, not returned.
    pub(super) fn discard(&self, pending: Pending) {
        // Detector kv writes of an ingest that did not commit are forgotten
        // (after a commit there are none left).
        super::detect::forget(self.chains.detectors.iter());
        if let Some(usage) = &self.usage {
            usage.take();
        }
        if let Err(err) = self.buffer.discard(pending.staged) {
            tracing::warn!(error = %err, "could not delete staged events (dropped at the next start)");
        }
    }
}

/// Adds the outcome of a commit to the usage it stores: the first
/// `accepted` events (in order, by `kinds`) were stored, the rest refused
/// by a full buffer; evicted records are dropped too.
fn count_stored(snapshot: &mut UsageSnapshot, kinds: &[(String, u64)], outcome: &AppendOutcome) {
    let mut accepted = outcome.accepted;
    for (kind, n) in kinds {
        let stored = accepted.min(*n);
        accepted -= stored;
        let counts = snapshot.events.entry(kind.clone()).or_default();
        counts.accepted += stored;
        counts.dropped += n - stored;
    }
    if outcome.evicted_oldest > 0 {
        snapshot
            .events
            .entry("(evicted)".to_owned())
            .or_default()
            .dropped += outcome.evicted_oldest;
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
