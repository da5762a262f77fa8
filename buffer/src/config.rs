//! How a buffer is configured and how its size is accounted.

use std::path::PathBuf;

use serde::Deserialize;

/// Bytes charged per record on top of its payload.
///
/// Each row also stores its sequence number, 16-byte id, size, enqueue time,
/// a cell header and an entry in the `(seq, size)` index: roughly 50–70 bytes
/// on disk. Charging a fixed 64 keeps a flood of tiny records from slipping
/// past `max_bytes` while the accounting stays exact and deterministic.
pub const RECORD_OVERHEAD_BYTES: u64 = 64;

/// What `append` does when the new records do not fit under `max_bytes`.
///
/// Edge devices usually prefer fresh telemetry over stale, hence the default;
/// sources that can retry (an HTTP receiver) may prefer to push back instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Evict the oldest records that are not in flight to make room; recent data matters most.
    #[default]
    DropOldest,
    /// Keep the backlog and drop whatever new records do not fit; history matters most.
    DropNewest,
    /// Accept nothing and return [`crate::BufferError::Full`] so the caller can apply back-pressure.
    Block,
}

/// Where the buffer lives and how it behaves when full.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BufferConfig {
    /// The SQLite file; `-wal` and `-shm` side files are created next to it,
    /// so its directory must be writable. Missing directories are created.
    pub path: PathBuf,
    /// Upper bound on the accounted size: the sum of payload lengths plus
    /// [`RECORD_OVERHEAD_BYTES`] per record.
    ///
    /// This bounds that logical figure rather than the file size because the
    /// file size is not a function of the content: it includes free pages
    /// waiting for vacuum, page slack, the WAL between checkpoints and index
    /// pages, and it changes only after a checkpoint. A bound on it would
    /// make admission depend on SQLite internals and be untestable. In
    /// practice the file stays within a small factor of this figure plus the
    /// WAL (capped by `journal_size_limit`, see the crate docs).
    pub max_bytes: u64,
    /// Policy when a new slice does not fit.
    #[serde(default)]
    pub when_full: WhenFull,
    /// `PRAGMA synchronous = FULL` when true: every commit is fsynced, so
    /// accepted records also survive power loss, at a large cost in append
    /// throughput on slow flash. When false (the default), `NORMAL`: in WAL
    /// mode a process crash or kill -9 still loses nothing accepted, but a
    /// power cut may roll back the last few commits.
    #[serde(default)]
    pub synchronous_full: bool,
    /// Most records the dead-letter table keeps; beyond it the oldest are
    /// deleted (counted in [`Stats`](crate::Stats)), so a stream of bad
    /// input cannot fill the device's disk. Dead letters are for
    /// inspection, and the newest say the most about what is wrong now.
    #[serde(default = "default_dead_letter_max")]
    pub dead_letter_max: u64,
    /// Most accounted bytes the dead-letter table keeps (each row's kept
    /// bytes, reason and input name plus [`RECORD_OVERHEAD_BYTES`]); beyond
    /// it the oldest are evicted, counted in [`Stats`](crate::Stats). Rows
    /// alone do not bound the disk: one dead-lettered batch of large events
    /// can weigh more than thousands of small rejects.
    #[serde(default = "default_dead_letter_max_bytes")]
    pub dead_letter_max_bytes: u64,
    /// The consumers (transports) that must each settle a record before it
    /// leaves the buffer; see [`crate::Consumer`]. `None` keeps the ones the
    /// file has (a new file gets one, [`crate::DEFAULT_CONSUMER`]): tools
    /// that open the buffer without shipping must not forget a transport's
    /// backlog. A consumer missing from `Some(list)` is removed at open.
    #[serde(default)]
    pub consumers: Option<Vec<crate::Consumer>>,
    /// SQLite's page cache for the buffer's connection, in KiB (`PRAGMA
    /// cache_size`). Why smaller than SQLite's 2 MiB default: the buffer
    /// writes each chunk once and reads it back once, soon after, so a big
    /// cache mostly keeps pages that will not be read again. 512 KiB
    /// measured 2–3 MB less peak RSS in the pipeline benchmark at the same
    /// CPU per line (BENCHMARKS.md, "Issue 14, sixth round").
    #[serde(default = "default_cache_kib")]
    pub cache_kib: u32,
}

/// The default [`BufferConfig::cache_kib`].
pub const DEFAULT_CACHE_KIB: u32 = 512;

fn default_cache_kib() -> u32 {
    DEFAULT_CACHE_KIB
}

/// The default [`BufferConfig::dead_letter_max`].
pub const DEFAULT_DEAD_LETTER_MAX: u64 = 100_000;

fn default_dead_letter_max() -> u64 {
    DEFAULT_DEAD_LETTER_MAX
}

/// The default [`BufferConfig::dead_letter_max_bytes`]: 64 MiB.
pub const DEFAULT_DEAD_LETTER_MAX_BYTES: u64 = 64 << 20;

fn default_dead_letter_max_bytes() -> u64 {
    DEFAULT_DEAD_LETTER_MAX_BYTES
}

impl BufferConfig {
    /// A config with the default policy ([`WhenFull::DropOldest`]) and
    /// `synchronous = NORMAL`, the usual choice for a device on stable power.
    pub fn new(path: impl Into<PathBuf>, max_bytes: u64) -> Self {
        BufferConfig {
            path: path.into(),
            max_bytes,
            when_full: WhenFull::default(),
            synchronous_full: false,
            dead_letter_max: DEFAULT_DEAD_LETTER_MAX,
            dead_letter_max_bytes: DEFAULT_DEAD_LETTER_MAX_BYTES,
            consumers: None,
            cache_kib: DEFAULT_CACHE_KIB,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_and_config_deserialize_from_host_config_names() {
        let parse = |s: &str| serde_json::from_str::<WhenFull>(s).unwrap();
        assert_eq!(parse(r#""drop_oldest""#), WhenFull::DropOldest);
        assert_eq!(parse(r#""drop_newest""#), WhenFull::DropNewest);
        assert_eq!(parse(r#""block""#), WhenFull::Block);
        assert!(serde_json::from_str::<WhenFull>(r#""DropOldest""#).is_err());
        let config: BufferConfig =
            serde_json::from_str(r#"{"path": "/var/lib/halyard/buffer.db", "max_bytes": 1024}"#)
                .unwrap();
        assert_eq!(
            config,
            BufferConfig::new("/var/lib/halyard/buffer.db", 1024)
        );
    }
}
