//! How events and undecodable frames become buffer records, and the ids
//! and provenance links they carry.

use halyard_buffer::Record;
use sha2::{Digest, Sha256};

use super::Stage;
use crate::event;
use crate::plugin::{Event, EventId, Frame};

/// The event's id as 16 bytes, big-endian.
pub fn id_bytes(id: &EventId) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&id.hi.to_be_bytes());
    out[8..].copy_from_slice(&id.lo.to_be_bytes());
    out
}

/// The id of the `n`th event decoded from the frame with stable `key`.
pub(super) fn derived_id(key: &[u8; 16], n: usize) -> EventId {
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
        payload: serde_json::to_vec(&event::to_json(e)).unwrap_or_default(),
    }
}

/// A frame that failed to decode, kept raw for the dead-letter table.
pub(super) fn frame_record(frame: &Frame, key: &Option<[u8; 16]>) -> Record {
    Record {
        id: key.unwrap_or_else(|| id_bytes(&event::new_id())),
        payload: frame.data.clone(),
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
