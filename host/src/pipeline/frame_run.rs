//! A run of frames an input hands to a worker and keeps for a resend,
//! shared rather than copied, and cutting any frames into decode calls.
//!
//! Why: the file input keeps every request it has in flight, so that a
//! failed commit (a full buffer, an earlier batch refused) can be sent again
//! in order. It used to send the worker a full copy of each request: three
//! allocations and a copy of the line per line. A [`FrameRun`] behind an
//! `Arc` is read by the worker where it lies; the decoder only ever borrows
//! frames. A run holds its frames packed ([`Frames::Packed`]): every line's
//! bytes in one buffer, and one content type and origin for each group of
//! frames that share them, so a line costs no allocation of its own and a
//! flat decoder's call is one copy of the buffer.

use std::ops::Range;

use super::commit::Pending;
use super::record::chain_link;
use super::{IngestReport, KeyedFrame, MAX_BYTES_PER_CALL, MAX_PER_CALL, Pipeline, PipelineError};
use crate::plugin::{Frame, Frames, Packed};

/// Frames in order, packed, with their stable keys.
#[derive(Debug, Default)]
pub struct FrameRun {
    /// Every frame's bytes back to back.
    data: Vec<u8>,
    /// Where each frame ends in `data`.
    ends: Vec<usize>,
    keys: Vec<Option<[u8; 16]>>,
    /// (first frame, content type, origin) of each group of consecutive
    /// frames that share them, in order.
    groups: Vec<(usize, String, String)>,
}

impl FrameRun {
    /// Appends one frame.
    pub fn push(&mut self, frame: KeyedFrame) {
        let f = frame.frame;
        self.push_parts(frame.key, &f.data, &f.content_type, &f.origin);
    }

    /// Appends one frame from its parts: the bytes are copied into the
    /// run's buffer, and the content type and origin are stored only when
    /// they differ from the previous frame's.
    pub fn push_parts(
        &mut self,
        key: Option<[u8; 16]>,
        data: &[u8],
        content_type: &str,
        origin: &str,
    ) {
        let same = self
            .groups
            .last()
            .is_some_and(|(_, c, o)| c == content_type && o == origin);
        if !same {
            self.groups
                .push((self.ends.len(), content_type.to_owned(), origin.to_owned()));
        }
        self.data.extend_from_slice(data);
        self.ends.push(self.data.len());
        self.keys.push(key);
    }

    /// Makes room for about `frames` more frames of `bytes` in all, so a
    /// run filled line by line does not grow by doubling.
    pub fn reserve(&mut self, frames: usize, bytes: usize) {
        self.data.reserve(bytes);
        self.ends.reserve(frames);
        self.keys.reserve(frames);
    }

    /// How many frames it holds.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The frames' total size, which sets what the buffer must admit.
    pub fn bytes(&self) -> u64 {
        self.data.len() as u64
    }

    /// Where frame `i` starts in `data`.
    fn start(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.ends[i - 1] }
    }

    /// The frames (and their keys) of one decode call, which lies within
    /// one group (see [`FrameRun::calls`]).
    fn slice(&self, call: Range<usize>) -> (&[Option<[u8; 16]>], Frames<'_>) {
        let group = self
            .groups
            .partition_point(|(first, ..)| *first <= call.start);
        let (content_type, origin) = match group.checked_sub(1).and_then(|g| self.groups.get(g)) {
            Some((_, c, o)) => (c.as_str(), o.as_str()),
            None => ("", ""),
        };
        let packed = Packed {
            data: &self.data,
            base: self.start(call.start),
            ends: &self.ends[call.clone()],
            content_type,
            origin,
        };
        (&self.keys[call], Frames::Packed(packed))
    }

    /// The frames of each decode call, in order: cut where the content
    /// type or origin changes and by [`call_len`].
    fn calls(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            let group_end = self
                .groups
                .iter()
                .map(|(first, ..)| *first)
                .find(|&first| first > at)
                .unwrap_or(self.len());
            let n = call_len((at..group_end).map(|i| self.ends[i] - self.start(i)));
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

/// The frames (and keys) for the next decode call: at most
/// [`MAX_PER_CALL`] frames and [`MAX_BYTES_PER_CALL`] bytes, but always at
/// least one frame if any is left. They are moved, not packed: these
/// frames were made one by one, so packing them would copy each once more.
fn next_call<I: Iterator<Item = KeyedFrame>>(
    frames: &mut std::iter::Peekable<I>,
) -> (Vec<Option<[u8; 16]>>, Vec<Frame>) {
    let (mut keys, mut call, mut bytes) = (Vec::new(), Vec::new(), 0);
    while let Some(f) = frames.next_if(|f| takes(call.len(), bytes, f.frame.data.len())) {
        bytes += f.frame.data.len();
        keys.push(f.key);
        call.push(f.frame);
    }
    (keys, call)
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
            let (keys, call) = next_call(&mut frames);
            if call.is_empty() {
                return Ok(());
            }
            self.run_call(input, &keys, Frames::Each(&call), report, pending)?;
        }
    }

    /// One decode call's frames (with their keys), decoded and their events
    /// run through the chains into `pending`.
    fn run_call(
        &mut self,
        input: &str,
        keys: &[Option<[u8; 16]>],
        frames: Frames<'_>,
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

    #[test]
    fn calls_are_cut_where_the_origin_or_content_type_changes() {
        let frame = |data: &str, content_type: &str, origin: &str| KeyedFrame {
            frame: Frame {
                data: data.as_bytes().to_vec(),
                content_type: content_type.into(),
                origin: origin.into(),
            },
            key: Some([data.len() as u8; 16]),
        };
        let run: FrameRun = [
            frame("a", "t", "o1"),
            frame("bb", "t", "o1"),
            frame("", "t", "o2"),
            frame("ccc", "u", "o2"),
            frame("d", "u", "o2"),
        ]
        .into_iter()
        .collect();
        let calls: Vec<_> = run.calls().collect();
        assert_eq!(calls, [0..2, 2..3, 3..5]);
        let read: Vec<(Vec<&[u8]>, &str, &str, usize)> = calls
            .into_iter()
            .map(|call| {
                let (keys, frames) = run.slice(call);
                let Frames::Packed(p) = frames else {
                    panic!("a run is packed")
                };
                let data = (0..frames.len()).map(|i| frames.data(i)).collect();
                (data, p.content_type, p.origin, keys.len())
            })
            .collect();
        assert_eq!(
            read,
            [
                (vec![&b"a"[..], b"bb"], "t", "o1", 2),
                (vec![&b""[..]], "t", "o2", 1),
                (vec![&b"ccc"[..], b"d"], "u", "o2", 2),
            ]
        );
        assert_eq!(run.bytes(), 7);
        // The owned form of a packed call is the records that went in.
        let (_, last) = run.slice(3..5);
        let owned = last.owned();
        assert_eq!(
            (owned[0].data.as_slice(), owned[1].content_type.as_str()),
            (&b"ccc"[..], "u")
        );
    }
}
