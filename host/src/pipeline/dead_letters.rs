//! What a dead letter may keep at rest. Dead letters sit on the device's
//! disk and can be read by anyone with `halyard deadletter show`, so they
//! hold no more than an accepted event would:
//!
//! - an event refused before the buffer (a validator's reject, a validator
//!   that failed closed, a source event over a host cap) is run through the
//!   privacy stages first, exactly as an accepted event would be, and kept
//!   in its redacted form; an event the privacy stages drop (or that a
//!   failing privacy stage drops, fail closed) keeps only its id and reason;
//! - a frame that did not decode never met a privacy policy (there was no
//!   event to give it), so by default it keeps only its length and SHA-256
//!   (`[buffer] dead_letter_frames = "digest"`); its raw bytes are kept only
//!   with the explicit opt-in `dead_letter_frames = "raw"`.
//!
//! Screening is not traffic: it does not count toward a privacy stage's
//! events in/out or drops (those describe the data path), but its calls and
//! traps count like any other, so a privacy plugin that traps on rejected
//! events is quarantined as it would be on accepted ones.

use halyard_buffer::{Kept, NewDeadLetter, Origin, Record};
use sha2::{Digest, Sha256};

use super::MAX_PER_CALL;
use super::record::id_bytes;
use super::stage::Stage;
use crate::config::DeadLetterFrames;
use crate::plugin::{Action, Event};

/// Dead letters found during one ingest, not yet screened.
#[derive(Default)]
pub(super) struct DeadLetters {
    /// Refused events with the reason, in order.
    events: Vec<(Event, String)>,
    /// Frames that did not decode: input, the frame as a record, reason.
    frames: Vec<(String, Record, String)>,
}

impl DeadLetters {
    /// Sets aside an event refused before the buffer.
    pub(super) fn event(&mut self, event: Event, reason: String) {
        self.events.push((event, reason));
    }

    /// Sets aside a frame of input `input` that did not decode.
    pub(super) fn frame(&mut self, input: &str, frame: Record, reason: String) {
        self.frames.push((input.to_string(), frame, reason));
    }

    /// Whether nothing was set aside.
    pub(super) fn is_empty(&self) -> bool {
        self.events.is_empty() && self.frames.is_empty()
    }

    /// What the dead-letter table may keep of them: events through the
    /// `privacy` chain, frames as `frames` says (see the module docs).
    pub(super) fn screen(
        self,
        privacy: &mut [Stage],
        frames: DeadLetterFrames,
    ) -> Vec<NewDeadLetter> {
        let mut out = Vec::with_capacity(self.events.len() + self.frames.len());
        for (input, frame, reason) in self.frames {
            let kept = match frames {
                DeadLetterFrames::Raw => Kept::Payload(frame.payload),
                DeadLetterFrames::Digest => Kept::Digest {
                    len: frame.payload.len() as u64,
                    sha256: Sha256::digest(&frame.payload).into(),
                },
            };
            out.push(NewDeadLetter {
                id: frame.id,
                origin: Origin::Frame { input },
                kept,
                reason,
            });
        }
        let mut events = self.events.into_iter().peekable();
        while events.peek().is_some() {
            let (chunk, reasons): (Vec<Event>, Vec<String>) =
                events.by_ref().take(MAX_PER_CALL).unzip();
            let ids: Vec<[u8; 16]> = chunk.iter().map(|e| id_bytes(&e.id)).collect();
            for ((screened, id), reason) in redact(privacy, chunk).into_iter().zip(ids).zip(reasons)
            {
                out.push(NewDeadLetter {
                    id,
                    origin: Origin::Event,
                    kept: match screened {
                        Some(e) => Kept::Payload(crate::event_wire::to_vec(&e)),
                        None => Kept::Nothing,
                    },
                    reason,
                });
            }
        }
        out
    }
}

/// `events` after every stage of `privacy`, in order; `None` where a stage
/// dropped the event or failed (fail closed, as on the data path).
fn redact(privacy: &mut [Stage], events: Vec<Event>) -> Vec<Option<Event>> {
    let mut slots: Vec<Option<Event>> = events.into_iter().map(Some).collect();
    for stage in privacy {
        let (at, mut batch): (Vec<usize>, Vec<Event>) = slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, slot)| slot.take().map(|e| (i, e)))
            .unzip();
        if batch.is_empty() {
            break;
        }
        // Anything but a full answer leaves every slot empty: dropped.
        // Edits are applied to `batch` where the events lie.
        if let Some(Ok(redacted)) = stage.call(|p| p.redact_in_place(&mut batch)) {
            for ((i, event), action) in at.into_iter().zip(batch).zip(redacted.actions) {
                slots[i] = match action {
                    Action::Keep => Some(event),
                    Action::Rewrite(rewritten) => Some(rewritten),
                    Action::Drop => None,
                };
            }
        }
    }
    slots
}
