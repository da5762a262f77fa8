//! Frames an input refuses before any plugin sees them (a file line over
//! the input's `max_line_bytes`): dead-lettered with the input's reason,
//! committed with the input's position, and counted as decode errors (a
//! frame that never became an event).

use halyard_buffer::Cursor;
use halyard_trust::usage::Counter;

use super::record::frame_record;
use super::{IngestReport, KeyedFrame, Pending, Pipeline, PipelineError};

impl Pipeline {
    /// Dead-letters `frame` from input `input` with `reason` (prefixed
    /// with the input's name), without decoding it, and commits `position`
    /// (the input's read position just past it) in the same transaction:
    /// on `Ok` the frame is accounted for and a restart does not read it
    /// again.
    pub fn refuse_frame(
        &mut self,
        input: &str,
        frame: KeyedFrame,
        reason: &str,
        position: Option<Vec<u8>>,
    ) -> Result<IngestReport, PipelineError> {
        if !self.decoders.contains_key(input) {
            return Err(PipelineError::UnknownInput(input.to_string()));
        }
        let mut report = IngestReport {
            decode_errors: 1,
            ..IngestReport::default()
        };
        let mut pending = Pending::default();
        // A frame like any undecodable one: a digest unless the config
        // opts in to raw frames (see `dead_letters.rs`).
        pending.dead.frame(
            input,
            frame_record(&frame.frame.data, &frame.key),
            format!("{input}: {reason}"),
        );
        let cursor = position.as_deref().map(|value| Cursor {
            name: input,
            value: Some(value),
        });
        if let Some(usage) = &self.usage {
            usage.add("(undecoded)", Counter::Received, 1);
            usage.add("(undecoded)", Counter::Rejected, 1);
        }
        let committed = self.commit(&mut pending, cursor, &mut report);
        self.discard(pending);
        committed?;
        self.totals.add(&report);
        Ok(report)
    }
}
