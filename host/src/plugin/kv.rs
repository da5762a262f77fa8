//! The `kv` import of contract 0.3.0: a detector's key-value namespace as
//! the host keeps it, and the per-call transaction a guest writes through.
//!
//! Three layers, read top first:
//! 1. the call's own staged writes ([`KvCall`], in the instance's
//!    `HostState`), dropped if the call traps;
//! 2. the batch's writes: what earlier calls of the same batch staged
//!    ([`KvNamespace::batch`]), written to the buffer file in the batch's own
//!    transaction ([`KvNamespace::take_batch`]) and then folded into
//! 3. the committed state, loaded from the buffer file at start.
//!
//! Invariant: a namespace never holds more than its bound (keys plus
//! values, all three layers applied); a write that would pass it, or a key
//! or value over its own cap, is refused with an error the guest sees and
//! changes nothing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use wasmtime::StoreContextMut;
use wasmtime::component::Linker;

use super::host::HostState;

/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// The largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 << 10;
/// The default bound of one namespace (`[stages] kv_max_bytes`).
pub const DEFAULT_MAX_BYTES: u64 = 1 << 20;
/// The most keys one `keys` call returns.
pub const MAX_KEYS_LISTED: usize = 10_000;

/// A staged change: a new value, or `None` for a delete.
type Change = Option<Vec<u8>>;

/// One detector's namespace: committed entries and the open batch's writes.
#[derive(Debug)]
pub struct KvNamespace {
    name: String,
    max_bytes: u64,
    committed: BTreeMap<String, Vec<u8>>,
    committed_bytes: u64,
    batch: BTreeMap<String, Change>,
    /// Bytes with `batch` applied.
    bytes: u64,
}

/// A saved open batch (see [`KvNamespace::open_batch`]).
#[derive(Debug)]
pub struct OpenBatch {
    batch: BTreeMap<String, Change>,
    bytes: u64,
}

/// A namespace shared by every instance (and version) of one detector.
pub type KvHandle = Arc<Mutex<KvNamespace>>;

fn entry_bytes(key: &str, value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

impl KvNamespace {
    /// A namespace named `name` holding `entries` (as committed), bounded
    /// at `max_bytes`. Entries past the bound (the bound was lowered since
    /// they were written) are kept: only new writes are refused.
    pub fn new(name: String, max_bytes: u64, entries: Vec<(String, Vec<u8>)>) -> KvHandle {
        let committed: BTreeMap<String, Vec<u8>> = entries.into_iter().collect();
        let bytes = committed.iter().map(|(k, v)| entry_bytes(k, v)).sum();
        Arc::new(Mutex::new(KvNamespace {
            name,
            max_bytes,
            committed,
            committed_bytes: bytes,
            batch: BTreeMap::new(),
            bytes,
        }))
    }

    /// Locks `handle` (a poisoned lock is still usable: the data is plain).
    pub fn lock(handle: &KvHandle) -> MutexGuard<'_, KvNamespace> {
        handle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The namespace's name (the detector's stage name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes held now (open batch included) and the bound.
    pub fn usage(&self) -> (u64, u64) {
        (self.bytes, self.max_bytes)
    }

    /// Committed entries (for tests and `plugin` tooling).
    pub fn committed(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.committed
    }

    fn batch_value(&self, key: &str) -> Option<Option<&[u8]>> {
        match self.batch.get(key) {
            Some(change) => Some(change.as_deref()),
            None => self.committed.get(key).map(|v| Some(v.as_slice())),
        }
    }

    /// The open batch as it is now, to put back with
    /// [`KvNamespace::restore_batch`] if a call's output is refused.
    pub fn open_batch(&self) -> OpenBatch {
        OpenBatch {
            batch: self.batch.clone(),
            bytes: self.bytes,
        }
    }

    /// Puts back the open batch saved by [`KvNamespace::open_batch`]: the
    /// writes of the calls since are dropped.
    pub fn restore_batch(&mut self, saved: OpenBatch) {
        self.batch = saved.batch;
        self.bytes = saved.bytes;
    }

    /// The open batch's writes as buffer writes, in key order, and the
    /// batch closed: call it when building the commit. After the commit,
    /// [`KvNamespace::committed_ok`] or [`KvNamespace::rolled_back`].
    pub fn take_batch(&mut self) -> Vec<(String, Change)> {
        std::mem::take(&mut self.batch).into_iter().collect()
    }

    /// The writes of [`KvNamespace::take_batch`] were committed.
    pub fn committed_ok(&mut self, writes: Vec<(String, Change)>) {
        for (key, change) in writes {
            match change {
                Some(value) => {
                    self.committed.insert(key, value);
                }
                None => {
                    self.committed.remove(&key);
                }
            }
        }
        self.committed_bytes = self.committed.iter().map(|(k, v)| entry_bytes(k, v)).sum();
        self.bytes = self.bytes_with_batch();
    }

    /// The batch was not committed: its writes are forgotten (the input
    /// sends the batch again, and it runs against the committed state).
    pub fn rolled_back(&mut self) {
        self.batch.clear();
        self.bytes = self.committed_bytes;
    }

    /// Bytes with the open batch applied over the committed state.
    fn bytes_with_batch(&self) -> u64 {
        let mut bytes = i128::from(self.committed_bytes);
        for (k, change) in &self.batch {
            if let Some(v) = self.committed.get(k) {
                bytes -= i128::from(entry_bytes(k, v));
            }
            if let Some(v) = change {
                bytes += i128::from(entry_bytes(k, v));
            }
        }
        u64::try_from(bytes).unwrap_or(0)
    }
}

/// One call's transaction: its staged writes over the namespace.
#[derive(Debug)]
pub struct KvCall {
    ns: KvHandle,
    staged: BTreeMap<String, Change>,
    /// Bytes with the batch and `staged` applied.
    bytes: u64,
}

impl KvCall {
    /// Opens a call's transaction on `ns`.
    pub fn begin(ns: KvHandle) -> KvCall {
        let bytes = KvNamespace::lock(&ns).bytes;
        KvCall {
            ns,
            staged: BTreeMap::new(),
            bytes,
        }
    }

    /// The call returned: its writes join the batch's.
    pub fn finish(self) {
        let mut ns = KvNamespace::lock(&self.ns);
        ns.batch.extend(self.staged);
        ns.bytes = self.bytes;
    }

    fn get(&self, key: &str) -> Option<Vec<u8>> {
        if let Some(change) = self.staged.get(key) {
            return change.clone();
        }
        let ns = KvNamespace::lock(&self.ns);
        ns.batch_value(key).flatten().map(<[u8]>::to_vec)
    }

    fn current_len(&self, key: &str) -> u64 {
        self.get(key).map_or(0, |v| entry_bytes(key, &v))
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        check_key(&key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(format!(
                "kv: value of {} bytes for key `{key}` is over the {MAX_VALUE_BYTES}-byte value cap",
                value.len()
            ));
        }
        let max = KvNamespace::lock(&self.ns).max_bytes;
        let after = self.bytes - self.current_len(&key) + entry_bytes(&key, &value);
        if after > max {
            return Err(format!(
                "kv: namespace full: writing `{key}` would hold {after} bytes, over kv_max_bytes = {max}"
            ));
        }
        self.bytes = after;
        self.staged.insert(key, Some(value));
        Ok(())
    }

    fn delete(&mut self, key: String) -> Result<(), String> {
        check_key(&key)?;
        self.bytes -= self.current_len(&key);
        self.staged.insert(key, None);
        Ok(())
    }

    fn keys(&self, prefix: &str) -> Vec<String> {
        let ns = KvNamespace::lock(&self.ns);
        let mut keys = std::collections::BTreeSet::new();
        let layers = ns
            .committed
            .range(prefix.to_string()..)
            .map(|(k, _)| k)
            .chain(ns.batch.range(prefix.to_string()..).map(|(k, _)| k))
            .chain(self.staged.range(prefix.to_string()..).map(|(k, _)| k));
        for key in layers {
            if key.starts_with(prefix) {
                keys.insert(key.clone());
            }
        }
        drop(ns);
        keys.into_iter()
            .filter(|k| self.get(k).is_some())
            .take(MAX_KEYS_LISTED)
            .collect()
    }
}

fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "kv: a key must be 1 to {MAX_KEY_BYTES} bytes (this one is {})",
            key.len()
        ));
    }
    Ok(())
}

const NO_TRANSACTION: &str = "kv: no transaction: the store is open only inside detect and tick";

/// Links `halyard:plugin/kv@0.3.0` for every plugin (only detectors have
/// a transaction; for the rest every call answers "no transaction").
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    let mut kv = linker.instance("halyard:plugin/kv@0.3.0")?;
    kv.func_wrap(
        "get",
        |store: StoreContextMut<'_, HostState>, (key,): (String,)| {
            Ok((store.data().kv.as_ref().and_then(|c| c.get(&key)),))
        },
    )?;
    kv.func_wrap(
        "set",
        |mut store: StoreContextMut<'_, HostState>, (key, value): (String, Vec<u8>)| {
            Ok((match store.data_mut().kv.as_mut() {
                Some(call) => call.set(key, value),
                None => Err(NO_TRANSACTION.to_string()),
            },))
        },
    )?;
    kv.func_wrap(
        "delete",
        |mut store: StoreContextMut<'_, HostState>, (key,): (String,)| {
            Ok((match store.data_mut().kv.as_mut() {
                Some(call) => call.delete(key),
                None => Err(NO_TRANSACTION.to_string()),
            },))
        },
    )?;
    kv.func_wrap(
        "keys",
        |store: StoreContextMut<'_, HostState>, (prefix,): (String,)| {
            Ok((store
                .data()
                .kv
                .as_ref()
                .map(|c| c.keys(&prefix))
                .unwrap_or_default(),))
        },
    )?;
    kv.func_wrap("usage", |store: StoreContextMut<'_, HostState>, (): ()| {
        Ok(((store
            .data()
            .kv
            .as_ref()
            .map(|c| (c.bytes, KvNamespace::lock(&c.ns).max_bytes))
            .unwrap_or((0, 0))),))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_writes_are_read_back_bounded_and_applied_only_on_commit() {
        let ns = KvNamespace::new("d".into(), 20, vec![("a".into(), b"123".to_vec())]);
        let mut call = KvCall::begin(ns.clone());
        assert_eq!(call.get("a"), Some(b"123".to_vec()));
        call.set("b".into(), b"xy".to_vec()).unwrap();
        assert_eq!(call.get("b"), Some(b"xy".to_vec()));
        // 4 + 3 = 7 bytes held; "c" + 13 bytes = 14 → 21 > 20.
        let err = call.set("c".into(), vec![0; 13]).unwrap_err();
        assert!(err.contains("kv_max_bytes = 20"), "{err}");
        call.delete("a".into()).unwrap();
        call.set("c".into(), vec![0; 13]).unwrap();
        assert_eq!(call.keys(""), vec!["b".to_string(), "c".to_string()]);
        call.finish();
        let mut guard = KvNamespace::lock(&ns);
        assert_eq!(guard.usage(), (17, 20));
        assert_eq!(
            guard.committed().len(),
            1,
            "nothing applied before the commit"
        );
        let writes = guard.take_batch();
        guard.committed_ok(writes);
        assert_eq!(guard.committed().keys().collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(guard.usage(), (17, 20));
    }

    #[test]
    fn a_rolled_back_batch_leaves_the_committed_state() {
        let ns = KvNamespace::new("d".into(), 100, Vec::new());
        let mut call = KvCall::begin(ns.clone());
        call.set("k".into(), b"v".to_vec()).unwrap();
        call.finish();
        let mut guard = KvNamespace::lock(&ns);
        let _ = guard.take_batch();
        guard.rolled_back();
        assert_eq!(guard.usage(), (0, 100));
        assert!(guard.committed().is_empty());
    }

    #[test]
    fn a_restored_open_batch_drops_the_writes_of_the_calls_since() {
        let ns = KvNamespace::new("d".into(), 100, Vec::new());
        let mut first = KvCall::begin(ns.clone());
        first.set("kept".into(), b"1".to_vec()).unwrap();
        first.finish();
        let saved = KvNamespace::lock(&ns).open_batch();
        let mut refused = KvCall::begin(ns.clone());
        refused.set("dropped".into(), b"2".to_vec()).unwrap();
        refused.finish();
        KvNamespace::lock(&ns).restore_batch(saved);
        let call = KvCall::begin(ns.clone());
        assert_eq!(call.keys(""), ["kept".to_string()]);
        assert_eq!(KvNamespace::lock(&ns).usage(), (5, 100));
    }

    #[test]
    fn oversized_keys_and_values_are_refused() {
        let ns = KvNamespace::new("d".into(), 1 << 30, Vec::new());
        let mut call = KvCall::begin(ns);
        assert!(call.set("k".repeat(257), Vec::new()).is_err());
        assert!(call.set(String::new(), Vec::new()).is_err());
        assert!(call.set("k".into(), vec![0; MAX_VALUE_BYTES + 1]).is_err());
        assert!(call.set("k".into(), vec![0; MAX_VALUE_BYTES]).is_ok());
    }
}
