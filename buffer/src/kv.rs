//! The detectors' key-value store: one namespace per detector, in the
//! buffer file, written only inside a [`Commit`](crate::Commit).
//!
//! Why here: a detector's state must change exactly when the batch that
//! changed it is stored, or a crash between the two would make an alert
//! fire twice (state lost, events kept) or never (state kept, events lost).
//! Writing the staged changes in the batch's own SQLite transaction makes
//! the two one. The host keeps the bounds (key, value and namespace sizes);
//! this table only stores what it is given.

use rusqlite::Transaction;

use crate::buffer::Buffer;
use crate::error::{BufferError, Context};

/// One staged change to a detector's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvWrite {
    /// The namespace (the detector's stage name).
    pub namespace: String,
    /// The key.
    pub key: String,
    /// The new value, or `None` to delete the key.
    pub value: Option<Vec<u8>>,
}

impl Buffer {
    /// Every entry of `namespace`, in key order: what a detector's
    /// namespace holds as committed (the host loads it once at start).
    pub fn kv_entries(&self, namespace: &str) -> Result<Vec<(String, Vec<u8>)>, BufferError> {
        self.repairing(|| {
            let inner = self.lock();
            let mut stmt = inner
                .conn
                .prepare_cached("SELECT key, value FROM kv WHERE ns = ?1 ORDER BY key")
                .ctx("kv: read")?;
            let rows = stmt
                .query_map([namespace], |row| Ok((row.get(0)?, row.get(1)?)))
                .ctx("kv: read")?;
            rows.collect::<Result<Vec<_>, _>>().ctx("kv: read")
        })
    }
}

/// Applies `writes`, in order, inside `tx`.
pub(crate) fn apply(tx: &Transaction<'_>, writes: &[KvWrite]) -> Result<(), BufferError> {
    for w in writes {
        match &w.value {
            Some(value) => tx
                .prepare_cached(
                    "INSERT INTO kv (ns, key, value) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value",
                )
                .and_then(|mut stmt| stmt.execute((&w.namespace, &w.key, value)))
                .ctx("commit: kv set")?,
            None => tx
                .prepare_cached("DELETE FROM kv WHERE ns = ?1 AND key = ?2")
                .and_then(|mut stmt| stmt.execute((&w.namespace, &w.key)))
                .ctx("commit: kv delete")?,
        };
    }
    Ok(())
}
