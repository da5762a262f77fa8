//! The frames of one decode call, as the caller holds them.
//!
//! Why two shapes: the WIT record [`Frame`] owns its bytes, its content
//! type and its origin, so an input that builds one per line makes three
//! allocations per line, and a flat decoder (contract 0.2.0 and later)
//! then copies every line again into one `frame-batch`. The file input
//! instead packs a run of lines back to back ([`Packed`]): one buffer, one
//! list of end offsets, one content type and one origin, which is already
//! the `frame-batch` layout, so a flat decode call copies the run with one
//! `memcpy`. Only a 0.1.0 decoder or a native stand-in, which take the WIT
//! record, get owned frames made for them ([`Frames::owned`]).

use std::borrow::Cow;

use super::Frame;

/// The frames of one decode call.
#[derive(Debug, Clone, Copy)]
pub enum Frames<'a> {
    /// Frames owned one by one, as tools, tests and the older inputs
    /// build them.
    Each(&'a [Frame]),
    /// Frames back to back in one buffer, sharing a content type and an
    /// origin.
    Packed(Packed<'a>),
}

/// Frames back to back: frame `i` is `data[start(i)..ends[i]]`, where
/// `start(0)` is `base` and `start(i)` is `ends[i - 1]`. Offsets are into
/// `data`, which may hold more than these frames (a run cut into calls
/// shares its buffer).
#[derive(Debug, Clone, Copy)]
pub struct Packed<'a> {
    /// The buffer the frames lie in.
    pub data: &'a [u8],
    /// Where the first frame starts in `data`.
    pub base: usize,
    /// Where each frame ends in `data`, in order; never decreasing, never
    /// past `data.len()`, and the first never before `base`.
    pub ends: &'a [usize],
    /// Every frame's media type.
    pub content_type: &'a str,
    /// Every frame's origin.
    pub origin: &'a str,
}

impl<'a> Packed<'a> {
    /// The bytes of frame `i`.
    ///
    /// # Panics
    /// If `i` is out of range or the offsets break the type's rules, which
    /// only code in this crate builds.
    pub fn frame(&self, i: usize) -> &'a [u8] {
        let start = if i == 0 { self.base } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }

    /// Every frame's bytes back to back (a contiguous part of `data`).
    pub fn bytes(&self) -> &'a [u8] {
        match self.ends.last() {
            Some(&end) => &self.data[self.base..end],
            None => &[],
        }
    }
}

impl<'a> Frames<'a> {
    /// How many frames the call holds.
    pub fn len(&self) -> usize {
        match self {
            Frames::Each(frames) => frames.len(),
            Frames::Packed(packed) => packed.ends.len(),
        }
    }

    /// Whether the call holds no frame.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of frame `i` (panics if out of range).
    pub fn data(&self, i: usize) -> &'a [u8] {
        match self {
            Frames::Each(frames) => &frames[i].data,
            Frames::Packed(packed) => packed.frame(i),
        }
    }

    /// The frames as WIT records: borrowed when they are, made otherwise.
    pub fn owned(&self) -> Cow<'a, [Frame]> {
        match self {
            Frames::Each(frames) => Cow::Borrowed(frames),
            Frames::Packed(packed) => Cow::Owned(
                (0..packed.ends.len())
                    .map(|i| Frame {
                        data: packed.frame(i).to_vec(),
                        content_type: packed.content_type.to_owned(),
                        origin: packed.origin.to_owned(),
                    })
                    .collect(),
            ),
        }
    }
}

impl<'a> From<&'a [Frame]> for Frames<'a> {
    fn from(frames: &'a [Frame]) -> Self {
        Frames::Each(frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_frames_read_back_as_the_records_they_stand_for() {
        let data = b"xxab\ncdefg";
        let ends = [4, 6, 6, 10];
        let packed = Packed {
            data,
            base: 2,
            ends: &ends,
            content_type: "t",
            origin: "o",
        };
        let frames = Frames::Packed(packed);
        assert_eq!(frames.len(), 4);
        let got: Vec<&[u8]> = (0..frames.len()).map(|i| frames.data(i)).collect();
        assert_eq!(got, [&b"ab"[..], b"\nc", b"", b"defg"]);
        assert_eq!(packed.bytes(), b"ab\ncdefg");
        let owned = frames.owned();
        assert_eq!(owned.len(), 4);
        assert_eq!(owned[3].data, b"defg");
        assert_eq!(
            (owned[0].content_type.as_str(), owned[0].origin.as_str()),
            ("t", "o")
        );
        let none = Packed {
            ends: &[],
            ..packed
        };
        assert!(Frames::Packed(none).is_empty());
        assert_eq!(none.bytes(), b"");
    }
}
