//! The on-disk compile cache.
//!
//! Compiling a component with Cranelift takes tens of milliseconds (hundreds
//! in a debug build); a whole load from a precompiled artefact, probe
//! instance included, measured under 1 ms (BENCHMARKS.md). Artefacts
//! are keyed by the SHA-256 of the component bytes *and* the engine's
//! compatibility hash, so an artefact from another wasmtime version or engine
//! configuration is never even opened.
//!
//! Invariant: the cache only ever loads files this host wrote itself, written
//! to a temporary file and renamed into place, so a reader never sees a
//! partial artefact. A corrupt or incompatible artefact is a cache miss.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of precompiled components.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    /// Distinguishes artefacts of differently configured engines.
    engine_tag: String,
}

impl CompileCache {
    /// A cache in `dir` (created on first store) for artefacts of `engine`.
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        CompileCache {
            dir,
            engine_tag: format!("{:016x}", hasher.finish()),
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the artefact for a component with this content hash lives.
    pub fn artefact_path(&self, sha256_hex: &str) -> PathBuf {
        self.dir
            .join(format!("{sha256_hex}-{}.cwasm", self.engine_tag))
    }

    /// The precompiled component, if a usable artefact exists.
    ///
    /// The artefact is read into memory rather than memory-mapped: a mapped
    /// file that someone truncates or rewrites in place would kill the host
    /// with SIGBUS, and reading ~200 KB costs microseconds.
    pub fn load(&self, engine: &Engine, sha256_hex: &str) -> Option<Component> {
        let path = self.artefact_path(sha256_hex);
        let bytes = std::fs::read(&path).ok()?;
        // SAFETY: the file name is derived from the content hash and the
        // engine's compatibility hash, and only `store` below writes such
        // names, from `Component::serialize` of this same engine
        // configuration, via temp file + rename. Wasmtime checks the
        // artefact's header and engine compatibility before using it, so a
        // damaged file is an error here, not undefined behaviour.
        match unsafe { Component::deserialize(engine, &bytes) } {
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
        if let Err(err) = self.try_store(sha256_hex, component) {
            tracing::warn!(dir = %self.dir.display(), error = %err, "cannot write compile-cache artefact");
        }
    }

    fn try_store(&self, sha256_hex: &str, component: &Component) -> std::io::Result<()> {
        let bytes = component
            .serialize()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        std::fs::create_dir_all(&self.dir)?;
        let final_path = self.artefact_path(sha256_hex);
        let tmp = tempfile_in(&self.dir)?;
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, &final_path)
    }
}

/// A unique temporary file name in `dir` (not created).
fn tempfile_in(dir: &Path) -> std::io::Result<PathBuf> {
    let name = format!(".tmp-{}-{:016x}", std::process::id(), rand::random::<u64>());
    Ok(dir.join(name))
}
