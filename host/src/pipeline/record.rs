//! How events and undecodable frames become buffer records, and the ids
//! and provenance links they carry.

use halyard_buffer::Record;
use sha2::{Digest, Sha256};

use super::Stage;
use crate::event;
use crate::plugin::{Event, EventId};

/// The event's id as 16 bytes, big-endian.
pub fn id_bytes(id: &EventId) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&id.hi.to_be_bytes());
    out[8..].copy_from_slice(&id.lo.to_be_bytes());
    out
}

/// The id of the `n`th event decoded from the frame with stable `key`.
///
/// A key whose second half is a position below 2^48 (the file input's byte
/// offset) gives `hi` = the key's first half and `lo` = position << 16 |
/// `n`: ids of one file are ordered, so the receiver's index appends. Other
/// keys, or more than 65 536 events from one frame, get ids hashed from the
/// key instead.
pub(super) fn derived_id(key: &[u8; 16], n: usize) -> EventId {
    let half = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&key[i..i + 8]);
        u64::from_be_bytes(b)
    };
    let (hi, position) = (half(0), half(8));
    if let Ok(n) = u16::try_from(n)
        && position < 1 << 48
    {
        return EventId {
            hi,
            lo: (position << 16) | u64::from(n),
        };
    }
    let digest = Sha256::new()
        .chain_update(key)
        .chain_update((n as u64).to_be_bytes())
        .finalize();
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&digest[i..i + 8]);
        u64::from_be_bytes(b)
    };
    EventId {
        hi: word(0),
        lo: word(8),
    }
}

/// An accepted event as a buffer record: its id and its JSON form.
pub(super) fn event_record(e: &Event) -> Record {
    Record {
        id: id_bytes(&e.id),
        payload: crate::event_wire::to_vec(e),
    }
}

/// A frame that failed to decode, kept raw for the dead-letter table.
pub(super) fn frame_record(data: &[u8], key: &Option<[u8; 16]>) -> Record {
    Record {
        id: key.unwrap_or_else(|| id_bytes(&event::new_id())),
        payload: data.to_vec(),
    }
}

/// A stage as a provenance chain link: `name@<12 hex of its sha256>`, or
/// `name@native` for a native stand-in.
pub(super) fn chain_link(stage: &Stage) -> String {
    if stage.is_unloaded() {
        // Only a sampler lets events past an unloaded stage (fail open).
        return format!("{}@unloaded", stage.name);
    }
    match stage.plugin() {
        Some(p) => {
            halyard_trust::provenance::ChainLink::new(stage.name.clone(), &p.sha256).to_string()
        }
        None => format!("{}@native", stage.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(file: u64, offset: u64) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&file.to_be_bytes());
        k[8..].copy_from_slice(&offset.to_be_bytes());
        k
    }

    #[test]
    fn ids_from_file_offsets_are_ordered_and_distinct() {
        let ids: Vec<[u8; 16]> = [(0, 0), (0, 1), (1, 0), (120, 0), (120, 3)]
            .iter()
            .map(|&(offset, n)| id_bytes(&derived_id(&key(7, offset), n)))
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, ids, "ordered by (offset, n) and distinct");
        assert_eq!(derived_id(&key(7, 120), 3), derived_id(&key(7, 120), 3));
    }

    #[test]
    fn other_keys_fall_back_to_hashed_ids() {
        let far = key(7, 1 << 48);
        let a = derived_id(&far, 0);
        assert_ne!(a.hi, 7, "hashed, not the key's first half");
        assert_eq!(a, derived_id(&far, 0), "still stable");
        let many = derived_id(&key(7, 5), 70_000);
        assert_ne!(many.hi, 7);
    }
}
