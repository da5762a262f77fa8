//! The host's key-value store for detectors (contract 0.3.0 `kv` import).
//!
//! Why: a detector's instance is soft (recreated after a trap or a hot
//! swap), so windows and episode flags that must outlive a restart live
//! here. Writes are staged by the host and committed in the same
//! transaction as the batch they belong to; reads see the call's own
//! writes. Keys are 1 to 256 bytes, values at most 64 KiB, and the
//! namespace is bounded by the host's `kv_max_bytes`; a write past a
//! limit returns the host's error and changes nothing.
//!
//! Only a detector has a store, and only inside `detect` and `tick`:
//! elsewhere `get` is `None` and writes fail.

#[cfg(target_arch = "wasm32")]
use crate::bindings::detector::halyard::plugin0_3_0::kv as host;

/// The value under `key`, if any.
pub fn get(key: &str) -> Option<Vec<u8>> {
    #[cfg(target_arch = "wasm32")]
    return host::get(key);
    #[cfg(not(target_arch = "wasm32"))]
    native::get(key)
}

/// Stores `value` under `key`; the error names the limit it broke.
pub fn set(key: &str, value: &[u8]) -> Result<(), String> {
    #[cfg(target_arch = "wasm32")]
    return host::set(key, value);
    #[cfg(not(target_arch = "wasm32"))]
    native::set(key, value)
}

/// Removes `key` (absent is fine).
pub fn delete(key: &str) -> Result<(), String> {
    #[cfg(target_arch = "wasm32")]
    return host::delete(key);
    #[cfg(not(target_arch = "wasm32"))]
    native::delete(key)
}

/// Every key starting with `prefix`, in byte order (at most 10000).
pub fn keys(prefix: &str) -> Vec<String> {
    #[cfg(target_arch = "wasm32")]
    return host::keys(prefix);
    #[cfg(not(target_arch = "wasm32"))]
    native::keys(prefix)
}

/// Bytes the namespace holds and its bound.
pub fn usage() -> (u64, u64) {
    #[cfg(target_arch = "wasm32")]
    return host::usage();
    #[cfg(not(target_arch = "wasm32"))]
    native::usage()
}

/// Off wasm (a guest's own unit tests) the store is an in-memory map with
/// no bound, so detector logic can be tested natively.
#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    thread_local! {
        static STORE: RefCell<BTreeMap<String, Vec<u8>>> = const { RefCell::new(BTreeMap::new()) };
    }

    pub(super) fn get(key: &str) -> Option<Vec<u8>> {
        STORE.with(|s| s.borrow().get(key).cloned())
    }

    pub(super) fn set(key: &str, value: &[u8]) -> Result<(), String> {
        STORE.with(|s| s.borrow_mut().insert(key.to_string(), value.to_vec()));
        Ok(())
    }

    pub(super) fn delete(key: &str) -> Result<(), String> {
        STORE.with(|s| s.borrow_mut().remove(key));
        Ok(())
    }

    pub(super) fn keys(prefix: &str) -> Vec<String> {
        STORE.with(|s| {
            s.borrow()
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect()
        })
    }

    pub(super) fn usage() -> (u64, u64) {
        let used = STORE.with(|s| {
            s.borrow()
                .iter()
                .map(|(k, v)| (k.len() + v.len()) as u64)
                .sum()
        });
        (used, u64::MAX)
    }
}
