//! Cutting a file's bytes into lines, in bounded memory.
//!
//! Invariants:
//! - a line is handed out only once its `\n` was read; a partial last line
//!   waits for the rest;
//! - no more than `max_line_bytes` of one line is ever held: past that the
//!   line is *too long*, only its first [`PREFIX_BYTES`] are kept (for the
//!   dead letter), and the rest is skipped up to the next `\n`, however far
//!   away;
//! - [`Splitter::settled`] is the offset just past the last line handed
//!   out (blank lines included): the position to store once those lines are
//!   committed. A restart there finds the same lines, too-long ones
//!   included.

/// How much of a too-long line is kept for its dead letter: enough to see
/// what wrote it, far too little to matter for memory.
pub const PREFIX_BYTES: usize = 4096;

/// A complete line and where it sits in the file.
#[derive(Debug, PartialEq, Eq)]
pub struct Line {
    /// Its bytes, without the `\n` (or `\r\n`).
    pub bytes: Vec<u8>,
    /// Offset of its first byte.
    pub start: u64,
    /// Offset just past its `\n`.
    pub end: u64,
}

/// A line longer than the limit: what is kept of it.
#[derive(Debug, PartialEq, Eq)]
pub struct LongLine {
    /// Its first [`PREFIX_BYTES`] bytes.
    pub prefix: Vec<u8>,
    /// Its length without the `\n`.
    pub len: u64,
    /// Offset of its first byte.
    pub start: u64,
    /// Offset just past its `\n`.
    pub end: u64,
}

/// What the splitter hands out.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// A line to decode.
    Line(Line),
    /// A line over the limit, to dead-letter.
    TooLong(LongLine),
}

impl Piece {
    /// Offset just past the piece's `\n`.
    pub fn end(&self) -> u64 {
        match self {
            Piece::Line(l) => l.end,
            Piece::TooLong(l) => l.end,
        }
    }
}

/// Cuts the bytes of one file, fed in order, into lines.
#[derive(Debug)]
pub struct Splitter {
    /// The longest line held whole.
    max_line: usize,
    /// The bytes of the current line read so far (at most `max_line`),
    /// or its prefix once it is too long.
    partial: Vec<u8>,
    /// Length of the current line read so far.
    partial_len: u64,
    /// Whether the current line is over the limit.
    too_long: bool,
    /// Offset of the current line's first byte (= the settled offset).
    line_start: u64,
}

impl Splitter {
    /// A splitter for a file read from `offset` (a line start).
    pub fn new(max_line: usize, offset: u64) -> Splitter {
        Splitter {
            max_line,
            partial: Vec::new(),
            partial_len: 0,
            too_long: false,
            line_start: offset,
        }
    }

    /// Offset just past the last line handed out.
    pub fn settled(&self) -> u64 {
        self.line_start
    }

    /// Offset of the next byte to feed.
    pub fn next_offset(&self) -> u64 {
        self.line_start + self.partial_len
    }

    /// Feeds the next bytes of the file; complete lines are pushed onto
    /// `out` in order (blank ones are passed over).
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Piece>) {
        while let Some(nl) = bytes.iter().position(|b| *b == b'\n') {
            self.take(&bytes[..nl]);
            let end = self.next_offset() + 1;
            let start = std::mem::replace(&mut self.line_start, end);
            let len = std::mem::take(&mut self.partial_len);
            if std::mem::take(&mut self.too_long) {
                out.push(Piece::TooLong(LongLine {
                    prefix: std::mem::take(&mut self.partial),
                    len,
                    start,
                    end,
                }));
            } else {
                let raw = self.partial.strip_suffix(b"\r").unwrap_or(&self.partial);
                if !raw.iter().all(u8::is_ascii_whitespace) {
                    out.push(Piece::Line(Line {
                        bytes: raw.to_vec(),
                        start,
                        end,
                    }));
                }
                self.partial.clear();
            }
            bytes = &bytes[nl + 1..];
        }
        self.take(bytes);
    }

    /// Adds bytes of the current line, keeping at most `max_line` of it
    /// (or [`PREFIX_BYTES`] once it is too long).
    fn take(&mut self, bytes: &[u8]) {
        self.partial_len += bytes.len() as u64;
        if !self.too_long && self.partial.len() + bytes.len() > self.max_line {
            self.too_long = true;
            self.partial.truncate(PREFIX_BYTES);
            // Give back what the long line held.
            self.partial.shrink_to(PREFIX_BYTES);
        }
        let room = if self.too_long {
            PREFIX_BYTES.saturating_sub(self.partial.len())
        } else {
            bytes.len()
        };
        self.partial
            .extend_from_slice(&bytes[..room.min(bytes.len())]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max_line: usize, chunks: &[&[u8]]) -> (Vec<Piece>, Splitter) {
        let mut s = Splitter::new(max_line, 100);
        let mut out = Vec::new();
        for chunk in chunks {
            s.feed(chunk, &mut out);
        }
        (out, s)
    }

    fn line(bytes: &[u8], start: u64, end: u64) -> Piece {
        Piece::Line(Line {
            bytes: bytes.to_vec(),
            start,
            end,
        })
    }

    #[test]
    fn lines_across_chunks_blank_lines_and_a_partial_tail() {
        let (out, s) = split(64, &[b"ab", b"c\r\n\n  \nde", b"f\ngh"]);
        assert_eq!(out, vec![line(b"abc", 100, 105), line(b"def", 109, 113)]);
        assert_eq!(s.settled(), 113, "the partial `gh` is not settled");
        assert_eq!(s.next_offset(), 115);
    }

    #[test]
    fn a_line_over_the_limit_is_cut_to_its_prefix_and_skipped() {
        let long = vec![b'x'; 3 * PREFIX_BYTES];
        let (out, s) = split(PREFIX_BYTES * 2, &[b"ok\n", &long, &long, b"\nnext\n"]);
        let total = 6 * PREFIX_BYTES as u64;
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], line(b"ok", 100, 103));
        let Piece::TooLong(l) = &out[1] else {
            panic!("{:?}", out[1]);
        };
        assert_eq!((l.start, l.len, l.end), (103, total, 103 + total + 1));
        assert_eq!(l.prefix, vec![b'x'; PREFIX_BYTES]);
        assert_eq!(out[2], line(b"next", 104 + total, 109 + total));
        assert_eq!(s.settled(), 109 + total);
    }

    #[test]
    fn memory_stays_bounded_while_a_line_never_ends() {
        let mut s = Splitter::new(1024, 0);
        let mut out = Vec::new();
        let chunk = vec![b'y'; 64 << 10];
        for _ in 0..64 {
            s.feed(&chunk, &mut out);
        }
        assert!(out.is_empty());
        assert!(s.partial.capacity() <= PREFIX_BYTES.max(1024) * 2);
        assert_eq!((s.settled(), s.next_offset()), (0, 64 * (64 << 10)));
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_kept() {
        let at = vec![b'z'; 10];
        let (out, _) = split(10, &[&at, b"\n"]);
        assert_eq!(out, vec![line(&at, 100, 111)]);
    }
}
