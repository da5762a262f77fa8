//! Provenance: who produced an event and which exact plugins touched it,
//! and who sent a batch.
//!
//! Every accepted event gets a `provenance` object in its JSON:
//!
//! ```json
//! "provenance":{"host_id":"edge-7","host_version":"0.1.0","seq":4711,
//!               "chain":["csv-decoder@1a2b3c4d5e6f","range-validator@…"]}
//! ```
//!
//! - `seq` is unique and increasing per host, **across restarts**: the
//!   counter reserves blocks of [`SEQ_BLOCK`] numbers in `data_dir/provenance.seq`
//!   (written and synced before any number of the block is used), so a
//!   crash skips at most the rest of a block and never repeats a number.
//!   A clean stop gives the unused rest of the block back (the counter is
//!   dropped: it writes the next unused number), so a restart continues
//!   without a gap. Gaps are allowed only after a crash (or an event the
//!   full buffer refused after it was numbered).
//! - `chain` names the decoder or source and every validator, privacy and
//!   sampler stage the event went through, as `name@<12 hex of sha256>`
//!   (`name@native` for a native stand-in).
//!
//! Batches are signed with the host's Ed25519 key (`data_dir/host.key`,
//! created on first run with mode 0600) over the exact body bytes; the
//! signature travels in the `X-Halyard-Signature` header (see
//! `halyard_trust::provenance`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use halyard_buffer::Record;
use halyard_trust::keys::{self, KeyOrigin};
use halyard_trust::{KeyPair, provenance};

use crate::plugin::Event;

/// Sequence numbers reserved per write of the counter file: one small
/// synced write per this many events.
pub const SEQ_BLOCK: u64 = 4096;

/// The sequence counter's file name in the data directory.
pub const SEQ_FILE: &str = "provenance.seq";

/// The host key's file name in the data directory.
pub const HOST_KEY_FILE: &str = "host.key";

/// Why provenance could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ProvenanceSetupError {
    /// The host key could not be loaded or created.
    #[error("host key {path}: {source}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        source: halyard_trust::KeyError,
    },
    /// The sequence counter file could not be read or written.
    #[error("provenance counter {path}: {source}")]
    Counter {
        /// The counter file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// Loads the host's key from `data_dir/host.key`, creating it (0600) on
/// first run; logs the public key so operators can register it with their
/// receiver.
pub fn host_key(data_dir: &Path) -> Result<Arc<KeyPair>, ProvenanceSetupError> {
    let path = data_dir.join(HOST_KEY_FILE);
    let (key, origin) =
        keys::load_or_create(&path).map_err(|source| ProvenanceSetupError::Key {
            path: path.clone(),
            source,
        })?;
    let created = matches!(origin, KeyOrigin::Created);
    tracing::info!(public_key = %key.public_key(), key_id = %key.key_id(), created,
        "host key for batch signatures");
    Ok(Arc::new(key))
}

/// The `X-Halyard-Signature` header for a batch body, as the transport's
/// extra-headers hook.
pub fn signature_headers(key: Arc<KeyPair>) -> halyard_transport::HeaderHook {
    halyard_transport::HeaderHook::new(move |body: &[u8]| {
        vec![(
            provenance::SIGNATURE_HEADER.to_ascii_lowercase(),
            provenance::sign_batch(body, &key),
        )]
    })
}

/// The per-host sequence counter, persisted in blocks.
#[derive(Debug)]
pub struct SeqCounter {
    path: PathBuf,
    next: u64,
    /// Numbers below this are covered by the file (a restart starts here).
    reserved_until: u64,
}

impl SeqCounter {
    /// Opens the counter at `path`; a missing file starts at 0.
    pub fn open(path: PathBuf) -> Result<Self, ProvenanceSetupError> {
        let next = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .map_err(|_| ProvenanceSetupError::Counter {
                    path: path.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not a number"),
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => return Err(ProvenanceSetupError::Counter { path, source }),
        };
        let mut counter = SeqCounter {
            path,
            next,
            reserved_until: next,
        };
        counter
            .reserve()
            .map_err(|source| ProvenanceSetupError::Counter {
                path: counter.path.clone(),
                source,
            })?;
        Ok(counter)
    }

    /// The next sequence number.
    pub fn next_seq(&mut self) -> u64 {
        if self.next >= self.reserved_until
            && let Err(error) = self.reserve()
        {
            // Keep counting in memory: the numbers stay unique within this
            // run; a restart could repeat some, which the log says.
            tracing::error!(%error, path = %self.path.display(),
                "cannot persist the provenance sequence counter");
            self.reserved_until = self.next.saturating_add(SEQ_BLOCK);
        }
        let n = self.next;
        self.next += 1;
        n
    }

    /// Writes `next + SEQ_BLOCK` durably (temp file, fsync, rename).
    fn reserve(&mut self) -> std::io::Result<()> {
        let until = self.next.saturating_add(SEQ_BLOCK);
        self.write(until)
    }

    /// Writes `until` durably as the first number a restart may use.
    fn write(&mut self, until: u64) -> std::io::Result<()> {
        let tmp = self.path.with_extension("seq.tmp");
        // Owner-only, like everything else in `data_dir`.
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?
        };
        writeln!(file, "{until}")?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        self.reserved_until = until;
        Ok(())
    }
}

impl Drop for SeqCounter {
    /// A clean stop: gives back the unused rest of the block, so the next
    /// start continues at the next unused number. (A crash skips this and
    /// the rest of the block.)
    fn drop(&mut self) {
        if self.next < self.reserved_until
            && let Err(error) = self.write(self.next)
        {
            tracing::warn!(%error, path = %self.path.display(),
                "cannot give back the unused provenance numbers; the next start skips them");
        }
    }
}

/// Stamps accepted events with provenance; owned by the pipeline.
///
/// The `provenance` member is the same for every event of a chain run but
/// its `seq`, so its JSON is rendered once around the number (serialising
/// it per event was ~5 % of the host's CPU): the host id once, the chain
/// whenever it changes.
#[derive(Debug)]
pub struct Stamper {
    seq: SeqCounter,
    /// `{"host_id":…,"host_version":…,"seq":`
    head: Vec<u8>,
    /// The chain `tail` was rendered for.
    chain: Vec<String>,
    /// `,"chain":[…]}`
    tail: Vec<u8>,
}

/// The `provenance` member, in this key order.
#[derive(serde::Serialize)]
struct Stamp<'a> {
    host_id: &'a str,
    host_version: &'static str,
    seq: u64,
    chain: &'a [String],
}

impl Stamper {
    /// A stamper for `host_id` whose counter lives in `data_dir`.
    pub fn open(host_id: &str, data_dir: &Path) -> Result<Self, ProvenanceSetupError> {
        Ok(Stamper::with_counter(
            host_id,
            SeqCounter::open(data_dir.join(SEQ_FILE))?,
        ))
    }

    fn with_counter(host_id: &str, seq: SeqCounter) -> Stamper {
        // Rendered by serde_json itself, cut where the number goes, so the
        // bytes are what serialising a `Stamp` gives.
        let stamp = Stamp {
            host_id,
            host_version: env!("CARGO_PKG_VERSION"),
            seq: 0,
            chain: &[],
        };
        let text = serde_json::to_vec(&stamp).unwrap_or_default();
        let head = match text.windows(6).position(|w| w == b"\"seq\":") {
            Some(at) => text[..at + 6].to_vec(),
            None => Vec::new(),
        };
        let mut stamper = Stamper {
            seq,
            head,
            chain: Vec::new(),
            tail: Vec::new(),
        };
        stamper.render_tail(&[]);
        stamper
    }

    fn render_tail(&mut self, chain: &[String]) {
        self.chain = chain.to_vec();
        self.tail = b",\"chain\":".to_vec();
        if serde_json::to_writer(&mut self.tail, chain).is_err() {
            self.tail.extend_from_slice(b"[]");
        }
        self.tail.push(b'}');
    }

    /// The buffer record of an accepted event, with its provenance.
    pub fn record(&mut self, e: &Event, chain: &[String]) -> Record {
        if self.chain != chain {
            self.render_tail(chain);
        }
        let mut seq = itoa::Buffer::new();
        let seq = seq.format(self.seq.next_seq()).as_bytes();
        Record {
            id: crate::pipeline::id_bytes(&e.id),
            payload: crate::event_wire::to_vec_with_raw(e, &[&self.head, seq, &self.tail]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_survives_restarts_without_repeating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provenance.seq");
        let mut c = SeqCounter::open(path.clone()).unwrap();
        let first: Vec<u64> = (0..5).map(|_| c.next_seq()).collect();
        assert_eq!(first, vec![0, 1, 2, 3, 4]);
        std::mem::forget(c); // a crash: the rest of the block is skipped
        let mut c = SeqCounter::open(path.clone()).unwrap();
        assert_eq!(c.next_seq(), SEQ_BLOCK);
        for _ in 0..SEQ_BLOCK {
            c.next_seq();
        }
        std::mem::forget(c);
        let mut c = SeqCounter::open(path.clone()).unwrap();
        assert_eq!(c.next_seq(), 3 * SEQ_BLOCK);
        // A clean stop gives the rest of the block back: no gap.
        drop(c);
        let mut c = SeqCounter::open(path.clone()).unwrap();
        assert_eq!(c.next_seq(), 3 * SEQ_BLOCK + 1);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    #[test]
    fn the_host_key_is_created_once_with_owner_only_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = host_key(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(HOST_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = host_key(dir.path()).unwrap();
        assert_eq!(a.public_key(), b.public_key());
    }

    /// The pre-rendered stamp is byte for byte what serialising the
    /// `provenance` member gives, across chain changes and a host id that
    /// needs escaping.
    #[test]
    fn stamps_are_the_serialised_member() {
        let dir = tempfile::tempdir().unwrap();
        let host_id = "edge \"7\"\u{1}é";
        let mut stamper = Stamper::open(host_id, dir.path()).unwrap();
        let event = crate::plugin::Event {
            id: crate::plugin::EventId { hi: 1, lo: 2 },
            time_ns: 3,
            source: "d1".into(),
            kind: "temp".into(),
            value: Some(1.5),
            unit: None,
            attributes: Vec::new(),
            body: None,
        };
        let a = vec!["dec@0123456789ab".to_owned(), "v\"x@native".to_owned()];
        let b = vec!["dec@0123456789ab".to_owned()];
        for (seq, chain) in [(0, &a), (1, &a), (2, &b), (3, &Vec::new()), (4, &a)] {
            let stamp = Stamp {
                host_id,
                host_version: env!("CARGO_PKG_VERSION"),
                seq,
                chain,
            };
            let expected = crate::event_wire::to_vec_with(&event, Some(&stamp));
            let got = stamper.record(&event, chain).payload;
            assert_eq!(
                String::from_utf8(got).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }
}
