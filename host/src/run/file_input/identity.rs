//! Which file a file input is reading, known by its content: the stored
//! read position, the content fingerprint in it, and the key the file's
//! event ids are derived from.
//!
//! A device and inode name a file only while it exists: once it is deleted
//! the inode is free, and the next file may get it. So a file is recognised
//! by a **fingerprint** of its first bytes (as Vector's checksum fingerprint
//! and the OpenTelemetry filelog receiver do): SHA-256 of its first
//! [`FINGERPRINT_BYTES`] bytes, or of all of it while it is shorter. A short
//! file's fingerprint grows with it (the stored one must be a prefix of
//! what the file now holds), until it covers the full 1024 bytes.
//!
//! Invariants:
//! - a stored position is resumed only in a file whose first bytes match
//!   its fingerprint and that still reaches its offset; any other file at
//!   the path is a new file and is read from its beginning;
//! - a file's id key is fixed the first time one of its lines is read, from
//!   its fingerprint at that moment (which covers at least its whole first
//!   line) and its device and inode, and is stored with every position: the
//!   same file keeps its ids across restarts, and a new file (even one that
//!   reuses an old inode) gets ids of its own;
//! - positions written before fingerprints existed (`{dev, ino, offset}`)
//!   are still read: they resume the file with that device and inode, as
//!   before, and the next commit stores the fingerprint.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How many leading bytes identify a file. 1024 as in the OpenTelemetry
/// filelog receiver (`fingerprint_size`): enough to hold a few timestamped
/// lines, so two files rarely start alike; small enough to re-read on every
/// chunk to notice a file truncated and rewritten in place.
pub const FINGERPRINT_BYTES: usize = 1024;

/// SHA-256 of a file's first `len` bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// How many leading bytes it covers (at most [`FINGERPRINT_BYTES`]).
    pub len: u64,
    /// Their SHA-256, in hex.
    pub sha256: String,
}

impl Fingerprint {
    /// The fingerprint of a file whose first bytes are `head` (as read by
    /// the file input; only the first [`FINGERPRINT_BYTES`] count).
    pub fn of(head: &[u8]) -> Fingerprint {
        let head = &head[..head.len().min(FINGERPRINT_BYTES)];
        Fingerprint {
            len: head.len() as u64,
            sha256: hex::encode(Sha256::digest(head)),
        }
    }

    /// Whether a file whose first bytes are now `head` is the file this
    /// fingerprint was taken of: it holds at least as many bytes, and they
    /// start the same.
    pub fn matches(&self, head: &[u8]) -> bool {
        usize::try_from(self.len)
            .ok()
            .and_then(|len| head.get(..len))
            .is_some_and(|prefix| hex::encode(Sha256::digest(prefix)) == self.sha256)
    }

    /// This fingerprint, or a longer one if `head` (the same file, grown)
    /// holds more of the first [`FINGERPRINT_BYTES`]: a file first seen
    /// short is then told apart from others that merely start the same.
    pub fn grown(&self, head: &[u8]) -> Fingerprint {
        let covered = usize::try_from(self.len).unwrap_or(usize::MAX);
        if covered < FINGERPRINT_BYTES && head.len() > covered && self.matches(head) {
            Fingerprint::of(head)
        } else {
            self.clone()
        }
    }
}

/// A file input's stored read position (JSON in the buffer's cursor
/// table, committed with the events of the lines before `offset`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The device of the file.
    pub dev: u64,
    /// Its inode.
    pub ino: u64,
    /// Offset just past the last line committed.
    pub offset: u64,
    /// Its content fingerprint; `None` in positions stored before
    /// fingerprints existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
    /// The first half of every frame key of this file (hex of 8 bytes),
    /// so the same file keeps its ids after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl Position {
    /// The id key stored with this position, if any (and well formed).
    pub fn file_key(&self) -> Option<[u8; 8]> {
        let bytes = hex::decode(self.key.as_deref()?).ok()?;
        bytes.try_into().ok()
    }
}

/// The file now at the path: where it is and what it starts with.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// Its device and inode.
    pub file: (u64, u64),
    /// Its length.
    pub len: u64,
    /// Its first bytes (up to [`FINGERPRINT_BYTES`]).
    pub head: &'a [u8],
}

/// Where to read a file from, and the id key it already has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The offset to read from.
    pub offset: u64,
    /// The file's id key, if it was fixed before (a resumed file).
    pub key: Option<[u8; 8]>,
    /// Whether this continues the stored position (false: a new file).
    pub same_file: bool,
}

/// Decides where to read `seen` from, given the last position of this
/// input (stored, or the file read until now) and, for an input that has
/// none, whether to start at the end.
pub fn resume(last: Option<&Position>, seen: Seen<'_>, start_at_end: bool) -> Resume {
    let new_file = Resume {
        offset: 0,
        key: None,
        same_file: false,
    };
    let Some(last) = last else {
        return Resume {
            offset: if start_at_end { seen.len } else { 0 },
            ..new_file
        };
    };
    let same = match &last.fingerprint {
        Some(fp) => fp.matches(seen.head),
        // Stored before fingerprints: the old rule, device and inode.
        None => (last.dev, last.ino) == seen.file,
    };
    if same && last.offset <= seen.len {
        Resume {
            offset: last.offset,
            key: last.file_key(),
            same_file: true,
        }
    } else {
        new_file
    }
}

/// The first half of every frame key of a file: 8 bytes of SHA-256 over
/// the input's name, the file's fingerprint and its device and inode.
/// The fingerprint makes a new file's ids its own even when it reuses an
/// old file's inode; the inode keeps apart two files whose first bytes
/// were alike when their keys were fixed.
pub fn file_key(input: &str, fingerprint: &Fingerprint, file: (u64, u64)) -> [u8; 8] {
    let digest = Sha256::new()
        .chain_update((input.len() as u64).to_be_bytes())
        .chain_update(input.as_bytes())
        .chain_update(fingerprint.len.to_be_bytes())
        .chain_update(fingerprint.sha256.as_bytes())
        .chain_update(file.0.to_be_bytes())
        .chain_update(file.1.to_be_bytes())
        .finalize();
    let mut key = [0u8; 8];
    key.copy_from_slice(&digest[..8]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(file: (u64, u64), head: &[u8]) -> Seen<'_> {
        Seen {
            file,
            len: head.len() as u64,
            head,
        }
    }

    fn position(file: (u64, u64), offset: u64, head: &[u8]) -> Position {
        Position {
            dev: file.0,
            ino: file.1,
            offset,
            fingerprint: Some(Fingerprint::of(head)),
            key: Some(hex::encode(file_key("in", &Fingerprint::of(head), file))),
        }
    }

    #[test]
    fn a_grown_file_still_matches_and_its_fingerprint_grows_to_the_limit() {
        let fp = Fingerprint::of(b"first\n");
        assert!(fp.matches(b"first\nsecond\n"));
        assert!(!fp.matches(b"first"), "shorter than the fingerprint");
        assert!(!fp.matches(b"other\nsecond\n"));
        let grown = fp.grown(b"first\nsecond\n");
        assert_eq!(grown.len, 13);
        assert_eq!(fp.grown(b"other\nsecond\n"), fp, "another file: unchanged");
        let big = vec![b'x'; 3 * FINGERPRINT_BYTES];
        assert_eq!(Fingerprint::of(&big).len, FINGERPRINT_BYTES as u64);
        assert_eq!(
            Fingerprint::of(&big[..FINGERPRINT_BYTES]).grown(&big).len,
            FINGERPRINT_BYTES as u64
        );
    }

    #[test]
    fn a_reused_inode_with_other_content_is_a_new_file() {
        let old = position((1, 7), 12, b"old line 1\nold line 2\n");
        let r = resume(
            Some(&old),
            seen((1, 7), b"new file, longer than twelve\n"),
            false,
        );
        assert_eq!((r.offset, r.key, r.same_file), (0, None, false));
    }

    #[test]
    fn the_same_content_resumes_with_its_key_even_under_another_inode() {
        let old = position((1, 7), 11, b"old line 1\n");
        let r = resume(Some(&old), seen((1, 9), b"old line 1\nold line 2\n"), false);
        assert_eq!(r.offset, 11);
        assert_eq!(r.key, old.file_key());
        assert!(r.same_file);
    }

    #[test]
    fn a_truncated_file_starts_over() {
        let old = position((1, 7), 22, b"old line 1\n");
        let r = resume(Some(&old), seen((1, 7), b"old line 1\n"), false);
        assert_eq!((r.offset, r.same_file), (0, false));
    }

    #[test]
    fn positions_without_a_fingerprint_resume_by_inode() {
        let legacy: Position = serde_json::from_str(r#"{"dev":1,"ino":7,"offset":5}"#).unwrap();
        assert_eq!(
            (legacy.fingerprint.clone(), legacy.file_key()),
            (None, None)
        );
        let r = resume(Some(&legacy), seen((1, 7), b"line\nline\n"), false);
        assert_eq!((r.offset, r.key, r.same_file), (5, None, true));
        let r = resume(Some(&legacy), seen((1, 8), b"line\nline\n"), false);
        assert_eq!((r.offset, r.same_file), (0, false));
    }

    #[test]
    fn without_a_position_start_at_decides() {
        let s = seen((1, 7), b"a\nb\n");
        assert_eq!(resume(None, s, true).offset, 4);
        assert_eq!(resume(None, s, false).offset, 0);
    }

    #[test]
    fn keys_differ_by_content_and_by_inode() {
        let a = Fingerprint::of(b"a\n");
        let b = Fingerprint::of(b"b\n");
        assert_ne!(file_key("in", &a, (1, 7)), file_key("in", &b, (1, 7)));
        assert_ne!(file_key("in", &a, (1, 7)), file_key("in", &a, (1, 8)));
        assert_ne!(file_key("in", &a, (1, 7)), file_key("other", &a, (1, 7)));
        assert_eq!(file_key("in", &a, (1, 7)), file_key("in", &a, (1, 7)));
    }
}
