//! Frames that share one buffer: a request body and where its lines are,
//! turned into [`Frame`] values only as the pipeline takes them, one
//! plugin call's worth at a time.
//!
//! Why: a [`Frame`] owns its bytes and two strings (the WIT record's
//! shape), so building one per line up front costs a copy of the body plus
//! two allocations per line for the whole request — for a 16 MiB body of
//! short lines, several times the body. Here a request costs its body plus
//! 8 bytes per line, and at most [`super::MAX_PER_CALL`] frames exist at
//! once.

use bytes::Bytes;

use super::KeyedFrame;
use crate::plugin::Frame;

/// A body and the byte spans of its frames, yielding one [`KeyedFrame`]
/// per span, in order (no stable key: each event gets a fresh id).
pub struct SharedFrames {
    data: Bytes,
    /// `(start, end)` byte offsets into `data`, in order.
    spans: Vec<(u32, u32)>,
    content_type: String,
    origin: String,
    /// The next span to yield.
    next: usize,
}

/// A span outside the buffer, or a buffer too large for `u32` offsets.
#[derive(Debug, thiserror::Error)]
#[error("frame span {start}..{end} is outside a buffer of {len} bytes")]
pub struct SpanError {
    start: usize,
    end: usize,
    len: usize,
}

impl SharedFrames {
    /// Frames of `data` at `spans` (byte ranges, each within `data`), all
    /// with `content_type` and `origin`.
    pub fn new(
        data: Bytes,
        spans: impl IntoIterator<Item = std::ops::Range<usize>>,
        content_type: &str,
        origin: &str,
    ) -> Result<SharedFrames, SpanError> {
        let len = data.len();
        let spans = spans
            .into_iter()
            .map(|r| {
                let fits = r.start <= r.end && r.end <= len;
                match (u32::try_from(r.start), u32::try_from(r.end)) {
                    (Ok(start), Ok(end)) if fits => Ok((start, end)),
                    _ => Err(SpanError {
                        start: r.start,
                        end: r.end,
                        len,
                    }),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SharedFrames {
            data,
            spans,
            content_type: content_type.to_string(),
            origin: origin.to_string(),
            next: 0,
        })
    }

    /// Bytes of the frames not yet taken: what the buffer must have room
    /// for before they are decoded.
    pub fn bytes(&self) -> usize {
        self.spans[self.next..]
            .iter()
            .map(|(start, end)| end.saturating_sub(*start) as usize)
            .sum()
    }

    /// Frames not yet taken.
    pub fn len(&self) -> usize {
        self.spans.len() - self.next
    }

    /// Whether every frame was taken (or there were none).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Iterator for SharedFrames {
    type Item = KeyedFrame;

    fn next(&mut self) -> Option<KeyedFrame> {
        let (start, end) = *self.spans.get(self.next)?;
        self.next += 1;
        let frame = KeyedFrame {
            frame: Frame {
                data: self.data[start as usize..end as usize].to_vec(),
                content_type: self.content_type.clone(),
                origin: self.origin.clone(),
            },
            key: None,
        };
        if self.next == self.spans.len() {
            // The last frame is out: release the body now, before the
            // pipeline commits (and holds every encoded event), not when
            // the iterator is dropped after it.
            self.data = Bytes::new();
            self.spans = Vec::new();
            self.next = 0;
        }
        Some(frame)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), Some(self.len()))
    }
}

impl ExactSizeIterator for SharedFrames {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yields_each_span_as_a_frame_in_order() {
        let data = Bytes::from_static(b"ab\ncd\nef");
        let mut frames = SharedFrames::new(data, [0..2, 6..8, 3..3], "t", "http:x").unwrap();
        assert_eq!(frames.len(), 3);
        let first = frames.next().unwrap();
        assert_eq!(
            (
                first.frame.data.as_slice(),
                first.frame.content_type.as_str(),
                first.frame.origin.as_str(),
                first.key
            ),
            (&b"ab"[..], "t", "http:x", None)
        );
        let rest: Vec<Vec<u8>> = frames.by_ref().map(|f| f.frame.data).collect();
        assert_eq!(rest, vec![b"ef".to_vec(), Vec::new()]);
        assert!(frames.is_empty());
        assert!(frames.next().is_none(), "stays exhausted");
        assert!(frames.data.is_empty(), "the body is released");
    }

    #[test]
    fn spans_outside_the_buffer_are_refused() {
        let data = Bytes::from_static(b"abc");
        assert!(SharedFrames::new(data.clone(), [0..1, 0..4], "", "").is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = [0..1, 2..1];
        assert!(SharedFrames::new(data, backwards, "", "").is_err());
    }
}
