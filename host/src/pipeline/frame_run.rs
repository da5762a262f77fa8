//! A run of frames an input hands to a worker and keeps for a resend,
//! shared rather than copied, and cutting any frames into decode calls.
//!
//! Why: the file input keeps every request it has in flight, so that a
//! failed commit (a full buffer, an earlier batch refused) can be sent again
//! in order. It used to send the worker a full copy of each request: three
//! allocations and a copy of the line per line. A [`FrameRun`] behind an
//! `Arc` is read by the worker where it lies; the decoder only ever borrows
//! frames.

use std::ops::Range;

use super::commit::Pending;
use super::record::chain_link;
use super::{IngestReport, KeyedFrame, MAX_BYTES_PER_CALL, MAX_PER_CALL, Pipeline, PipelineError};
use crate::plugin::Frame;

/// Frames in order, with their stable keys, as two parallel lists so a
/// decode call takes a slice of each.
#[derive(Debug, Default)]
pub struct FrameRun {
    frames: Vec<Frame>,
    keys: Vec<Option<[u8; 16]>>,
}

impl FrameRun {
    /// Appends one frame.
    pub fn push(&mut self, frame: KeyedFrame) {
        self.frames.push(frame.frame);
        self.keys.push(frame.key);
    }

    /// How many frames it holds.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The frames' total size, which sets what the buffer must admit.
    pub fn bytes(&self) -> u64 {
        self.frames.iter().map(|f| f.data.len() as u64).sum()
    }

    /// The frames (and their keys) of one decode call.
    fn slice(&self, call: Range<usize>) -> (&[Option<[u8; 16]>], &[Frame]) {
        (&self.keys[call.clone()], &self.frames[call])
    }

    /// Every frame (and key), as one decode call.
    fn all(&self) -> (&[Option<[u8; 16]>], &[Frame]) {
        (&self.keys, &self.frames)
    }

    /// The frames of each decode call, in order (see [`call_len`]).
    fn calls(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            let rest = &self.frames[at..];
            let n = call_len(rest.iter().map(|f| f.data.len()));
            (n > 0).then(|| {
                at += n;
                at - n..at
            })
        })
    }
}

impl FromIterator<KeyedFrame> for FrameRun {
    fn from_iter<I: IntoIterator<Item = KeyedFrame>>(frames: I) -> Self {
        let mut run = FrameRun::default();
        frames.into_iter().for_each(|f| run.push(f));
        run
    }
}

/// The frames for the next decode call: at most [`MAX_PER_CALL`] frames and
/// [`MAX_BYTES_PER_CALL`] bytes, but always at least one frame if any is
/// left.
fn next_call<I: Iterator<Item = KeyedFrame>>(frames: &mut std::iter::Peekable<I>) -> FrameRun {
    let mut chunk = FrameRun::default();
    let mut bytes = 0;
    while let Some(frame) = frames.next_if(|f| takes(chunk.len(), bytes, f.frame.data.len())) {
        bytes += frame.frame.data.len();
        chunk.push(frame);
    }
    chunk
}

/// How many of the frames (their sizes, in order) the next decode call
/// takes: at most [`MAX_PER_CALL`] frames and [`MAX_BYTES_PER_CALL`] bytes,
/// but always at least one frame if any is left.
fn call_len(sizes: impl Iterator<Item = usize>) -> usize {
    let (mut n, mut bytes) = (0, 0);
    for size in sizes {
        if !takes(n, bytes, size) {
            break;
        }
        n += 1;
        bytes += size;
    }
    n
}

/// Whether a decode call holding `n` frames of `bytes` takes one more of
/// `size`: the one rule for every way frames reach a decoder.
fn takes(n: usize, bytes: usize, size: usize) -> bool {
    n < MAX_PER_CALL && (n == 0 || bytes + size <= MAX_BYTES_PER_CALL)
}

impl Pipeline {
    /// Decodes `frames` call by call and runs each call's events through
    /// the chains into `pending`.
    pub(super) fn decode_and_run(
        &mut self,
        input: &str,
        frames: impl IntoIterator<Item = KeyedFrame>,
        report: &mut IngestReport,
        pending: &mut Pending,
    ) -> Result<(), PipelineError> {
        let mut frames = frames.into_iter().peekable();
        loop {
            let chunk = next_call(&mut frames);
            if chunk.is_empty() {
                return Ok(());
            }
            let (keys, frames) = chunk.all();
            self.run_call(input, keys, frames, report, pending)?;
        }
    }

    /// One decode call's frames (with their keys), decoded and their events
    /// run through the chains into `pending`.
    fn run_call(
        &mut self,
        input: &str,
        keys: &[Option<[u8; 16]>],
        frames: &[Frame],
        report: &mut IngestReport,
        pending: &mut Pending,
    ) -> Result<(), PipelineError> {
        let events = self.decode(input, keys, frames, report, pending)?;
        let origin = self.decoders.get(input).map(chain_link);
        self.run_chains(events, origin, report, pending)
    }

    /// [`Pipeline::ingest_frames_in_turn`] for frames the caller keeps (see
    /// [`FrameRun`]): the same calls, the same one commit.
    pub fn ingest_run_in_turn(
        &mut self,
        input: &str,
        run: &FrameRun,
        position: Option<Vec<u8>>,
        turn: impl FnOnce() -> Result<(), PipelineError>,
    ) -> Result<IngestReport, PipelineError> {
        self.ingest_with(input, position, run.bytes(), turn, |p, report, pending| {
            for call in run.calls() {
                let (keys, frames) = run.slice(call);
                p.run_call(input, keys, frames, report, pending)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(sizes: &[usize]) -> FrameRun {
        sizes
            .iter()
            .map(|&n| KeyedFrame {
                frame: Frame {
                    data: vec![b'x'; n],
                    content_type: String::new(),
                    origin: String::new(),
                },
                key: None,
            })
            .collect()
    }

    #[test]
    fn calls_are_cut_by_count_and_bytes_and_never_empty() {
        let many = run(&vec![1; MAX_PER_CALL + 5]);
        let calls: Vec<_> = many.calls().collect();
        assert_eq!(calls, [0..MAX_PER_CALL, MAX_PER_CALL..MAX_PER_CALL + 5]);
        let half = MAX_BYTES_PER_CALL / 2;
        let big = run(&[half, half, 1, MAX_BYTES_PER_CALL * 2, 3]);
        let calls: Vec<_> = big.calls().collect();
        // Two halves fill a call; an oversized frame still gets one alone.
        assert_eq!(calls, [0..2, 2..3, 3..4, 4..5]);
        assert_eq!(run(&[]).calls().count(), 0);
        assert_eq!(
            big.bytes(),
            (half * 2 + 1 + MAX_BYTES_PER_CALL * 2 + 3) as u64
        );
    }
}
