//! A record's bytes: owned by the producer that built it, or a shared
//! slice of the chunk it was read back from.
//!
//! Why not `bytes::Bytes`: turning the producer's `Vec` (sized with room
//! to spare) into one allocates a small header per event on the commit
//! path, which cost what sharing saved on the lease path (BENCHMARKS.md,
//! "Issue 14, tenth round"). Here an owned payload stays the `Vec` it was,
//! and a leased one is one reference count on its chunk.

use std::ops::{Deref, Range};
use std::sync::Arc;

/// The encoded event; dereferences to its bytes.
#[derive(Clone)]
pub struct Payload(Repr);

#[derive(Clone)]
enum Repr {
    /// Built by the producer.
    Owned(Vec<u8>),
    /// A part of a chunk read back from the file. A payload kept keeps its
    /// whole chunk in memory: copy it (`to_vec`) to hold it long.
    Shared(Arc<Vec<u8>>, Range<usize>),
}

impl Payload {
    /// Part `range` of `chunk` (the caller checked it is in bounds).
    pub(crate) fn shared(chunk: &Arc<Vec<u8>>, range: Range<usize>) -> Payload {
        Payload(Repr::Shared(Arc::clone(chunk), range))
    }
}

impl Deref for Payload {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Owned(v) => v,
            Repr::Shared(chunk, range) => chunk.get(range.clone()).unwrap_or_default(),
        }
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Payload {
        Payload(Repr::Owned(v))
    }
}

impl From<&[u8]> for Payload {
    fn from(v: &[u8]) -> Payload {
        Payload(Repr::Owned(v.to_vec()))
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        **self == **other
    }
}

impl Eq for Payload {}

impl PartialEq<Vec<u8>> for Payload {
    fn eq(&self, other: &Vec<u8>) -> bool {
        **self == other[..]
    }
}

impl PartialEq<Payload> for Vec<u8> {
    fn eq(&self, other: &Payload) -> bool {
        self[..] == **other
    }
}

impl FromIterator<u8> for Payload {
    fn from_iter<I: IntoIterator<Item = u8>>(bytes: I) -> Payload {
        Payload(Repr::Owned(bytes.into_iter().collect()))
    }
}

impl std::hash::Hash for Payload {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // As the `Vec<u8>` it replaced printed.
        (**self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_and_shared_payloads_of_the_same_bytes_are_equal() {
        let chunk = Arc::new(b"abcdef".to_vec());
        let shared = Payload::shared(&chunk, 2..5);
        assert_eq!(&*shared, b"cde");
        assert_eq!(shared, Payload::from(b"cde".to_vec()));
        assert_eq!(format!("{shared:?}"), format!("{:?}", b"cde".to_vec()));
        // Out of bounds (never made by the buffer) reads as empty, not a panic.
        assert!(Payload::shared(&chunk, 4..9).is_empty());
    }
}
