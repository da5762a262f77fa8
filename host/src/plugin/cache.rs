//! The on-disk compile cache.
//!
//! Compiling a component with Cranelift takes tens of milliseconds (hundreds
//! in a debug build); a whole load from a precompiled artefact, probe
//! instance included, measured under 1 ms (BENCHMARKS.md). Artefacts
//! are keyed by the SHA-256 of the component bytes *and* the engine's
//! compatibility hash, so an artefact from another wasmtime version or engine
//! configuration is never even opened.
//!
//! An artefact is native code, loaded without the signature check its
//! component passed, so the cache must not be a way around signatures:
//! - every artefact file starts with an HMAC-SHA256 tag over its name and
//!   bytes under a host secret (`<cache dir>.key`, 0600; `data_dir/cache.key`
//!   for `halyard run`; see `halyard_trust::cache_mac`). A file whose tag
//!   does not verify — written by someone without the secret, altered, or
//!   renamed — is logged, deleted and recompiled, never loaded;
//! - the directory is 0700 (tightened, with a log line, if found looser);
//! - without the secret (it cannot be read or created) the cache is off:
//!   every load compiles.
//!
//! Invariant: the cache only ever loads files this host wrote itself, written
//! to a temporary file and renamed into place, so a reader never sees a
//! partial artefact. A corrupt or incompatible artefact is a cache miss.

#[cfg(feature = "compiler")]
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use halyard_trust::cache_mac::{CacheKey, CacheKeyOrigin, TAG_LEN};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of precompiled components.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    /// Distinguishes artefacts of differently configured engines.
    engine_tag: String,
    /// Authenticates artefacts; `None` (no secret): nothing is loaded or
    /// stored.
    key: Option<Arc<CacheKey>>,
}

impl CompileCache {
    /// A cache in `dir` (created 0700) for artefacts of `engine`, with the
    /// secret in `<dir>.key` (created 0600 on first use).
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        let engine_tag = engine_tag(engine);
        let key = match private_dir(&dir)
            .and_then(|()| CacheKey::load_or_create(&key_path(&dir)).map_err(|e| e.to_string()))
        {
            Ok((key, origin)) => {
                match origin {
                    CacheKeyOrigin::Created => tracing::info!(path = %key_path(&dir).display(),
                        "compile-cache secret created (0600)"),
                    CacheKeyOrigin::Tightened { was } => tracing::warn!(
                        path = %key_path(&dir).display(), was = format!("{was:o}"),
                        "compile-cache secret was readable by others: tightened to 0600"),
                    CacheKeyOrigin::Loaded => {}
                }
                Some(Arc::new(key))
            }
            Err(err) => {
                tracing::warn!(dir = %dir.display(), error = %err,
                    "compile cache off: no usable cache directory or secret");
                None
            }
        };
        CompileCache {
            dir,
            engine_tag,
            key,
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the artefact for a component with this content hash lives.
    pub fn artefact_path(&self, sha256_hex: &str) -> PathBuf {
        self.dir.join(self.artefact_name(sha256_hex))
    }

    fn artefact_name(&self, sha256_hex: &str) -> String {
        format!("{sha256_hex}-{}.cwasm", self.engine_tag)
    }

    /// The precompiled component, if an authentic, usable artefact exists.
    ///
    /// The artefact is read into memory rather than memory-mapped: a mapped
    /// file that someone truncates or rewrites in place would kill the host
    /// with SIGBUS, and reading ~200 KB costs microseconds. Its tag is
    /// checked on the bytes in memory, which are the bytes deserialized.
    pub fn load(&self, engine: &Engine, sha256_hex: &str) -> Option<Component> {
        let key = self.key.as_ref()?;
        let path = self.artefact_path(sha256_hex);
        let bytes = std::fs::read(&path).ok()?;
        let name = self.artefact_name(sha256_hex);
        let authentic =
            bytes.len() > TAG_LEN && key.verify(&name, &bytes[TAG_LEN..], &bytes[..TAG_LEN]);
        if !authentic {
            tracing::warn!(path = %path.display(),
                "compile-cache artefact failed authentication: deleted, not loaded; recompiling");
            let _ = std::fs::remove_file(&path);
            return None;
        }
        // SAFETY: the artefact's tag verified under this host's secret, so
        // this host wrote these bytes in `store` below, from
        // `Component::serialize` of this same engine configuration (the
        // name carries the compatibility hash, and the tag covers the
        // name). Wasmtime checks the header and engine compatibility again,
        // so a damaged file is an error here, not undefined behaviour.
        match unsafe { Component::deserialize(engine, &bytes[TAG_LEN..]) } {
            Ok(component) => Some(component),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "discarding unusable compile-cache artefact");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Writes the artefact for `component`. Failure only costs a recompile
    /// next time, so it is logged and otherwise ignored.
    pub fn store(&self, sha256_hex: &str, component: &Component) {
        let Some(key) = &self.key else { return };
        if let Err(err) = self.try_store(key, sha256_hex, component) {
            tracing::warn!(dir = %self.dir.display(), error = %err, "cannot write compile-cache artefact");
        }
    }

    fn try_store(
        &self,
        key: &CacheKey,
        sha256_hex: &str,
        component: &Component,
    ) -> std::io::Result<()> {
        let artefact = component
            .serialize()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut bytes = key.tag(&self.artefact_name(sha256_hex), &artefact).to_vec();
        bytes.extend_from_slice(&artefact);
        private_dir(&self.dir).map_err(std::io::Error::other)?;
        let final_path = self.artefact_path(sha256_hex);
        let tmp = tempfile_in(&self.dir)?;
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, &final_path)
    }
}

/// `<dir>.key`: the secret beside the cache directory.
/// The engine's compatibility hash, in artefact names.
#[cfg(feature = "compiler")]
fn engine_tag(engine: &Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Without the compiler nothing is compiled, so nothing is cached; the
/// runtime does not open a cache at all (see `Runtime::new`).
#[cfg(not(feature = "compiler"))]
fn engine_tag(_engine: &Engine) -> String {
    "runtime-only".to_string()
}

fn key_path(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".key");
    PathBuf::from(name)
}

/// Creates `dir` 0700, or tightens an existing one that group or others
/// may use (logged).
fn private_dir(dir: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    crate::data_dir::tighten(dir, 0o700).map_err(|e| format!("{}: {e}", dir.display()))
}

/// A unique temporary file name in `dir` (not created).
fn tempfile_in(dir: &Path) -> std::io::Result<PathBuf> {
    let name = format!(".tmp-{}-{:016x}", std::process::id(), rand::random::<u64>());
    Ok(dir.join(name))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_tampered_or_foreign_artefact_is_deleted_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        let engine = Engine::default();
        let cache = CompileCache::new(cache_dir.clone(), &engine);
        assert_eq!(
            std::fs::metadata(&cache_dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(key_path(&cache_dir))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        let bytes = std::fs::read(halyard_test_components::RANGE_VALIDATOR).unwrap();
        let component = Component::from_binary(&engine, &bytes).unwrap();
        cache.store("abc", &component);
        assert!(cache.load(&engine, "abc").is_some());
        // One flipped byte in the code: refused and deleted.
        let path = cache.artefact_path("abc");
        let mut file = std::fs::read(&path).unwrap();
        let last = file.len() - 1;
        file[last] ^= 1;
        std::fs::write(&path, &file).unwrap();
        assert!(cache.load(&engine, "abc").is_none());
        assert!(!path.exists(), "a file that fails the MAC is deleted");
        // An artefact tagged by another host's secret (another cache dir).
        let other = CompileCache::new(dir.path().join("other"), &engine);
        other.store("abc", &component);
        std::fs::copy(other.artefact_path("abc"), &path).unwrap();
        assert!(cache.load(&engine, "abc").is_none());
        // A valid artefact moved under another content hash.
        cache.store("abc", &component);
        std::fs::copy(&path, cache.artefact_path("def")).unwrap();
        assert!(cache.load(&engine, "def").is_none());
        assert!(cache.load(&engine, "abc").is_some());
    }
}
