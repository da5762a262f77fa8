//! The shared wasmtime engine: compiler settings, the epoch ticker that
//! enforces call deadlines, and the linker every plugin is instantiated with.
//!
//! One [`Runtime`] serves every plugin of a host. Dropping it stops the
//! ticker thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::bindings::HostImports;
use super::cache::CompileCache;
use super::error::LoadError;
use super::host::HostState;

/// How often the epoch advances. Deadlines are whole multiples of it, so a
/// call is interrupted at most one tick early or late.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The engine, linker and compile cache shared by every plugin.
pub struct Runtime {
    /// Compiles and runs components; cheap to clone (reference-counted).
    pub(crate) engine: Engine,
    /// WASI (deny-all by default) plus the Halyard host imports.
    pub(crate) linker: Linker<HostState>,
    /// Compiled artefacts on disk, keyed by content hash; `None` disables it.
    pub(crate) cache: Option<CompileCache>,
    /// Advances the epoch; stopped on drop.
    _ticker: EpochTicker,
    /// Signers whose `.sig` makes a component loadable; empty means
    /// signatures are not required (see [`Runtime::require_signatures`]).
    pub(crate) trusted_keys: Vec<halyard_trust::PublicKey>,
}

impl Runtime {
    /// Builds the engine and linker. `cache_dir` enables the on-disk compile
    /// cache: a warm load (hash, deserialize, probe `init`) measured 0.7–0.8 ms
    /// against 80–120 ms for a cold compile (release build; BENCHMARKS.md).
    pub fn new(cache_dir: Option<std::path::PathBuf>) -> Result<Self, LoadError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        // Component-model async support costs ~300 ns per call and no plugin
        // kind uses it.
        config.concurrency_support(false);
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine {
            message: e.to_string(),
        })?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| LoadError::Engine {
            message: e.to_string(),
        })?;
        HostImports::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s).map_err(
            |e| LoadError::Engine {
                message: e.to_string(),
            },
        )?;
        let cache = cache_dir.map(|dir| CompileCache::new(dir, &engine));
        let ticker = EpochTicker::start(engine.clone());
        Ok(Runtime {
            engine,
            linker,
            cache,
            _ticker: ticker,
            trusted_keys: Vec::new(),
        })
    }

    /// From now on every [`Runtime::load`] requires a valid `FILE.sig` by
    /// one of `keys` (none: signatures are not required). The signature is
    /// checked over the very bytes that are then compiled.
    pub fn require_signatures(&mut self, keys: Vec<halyard_trust::PublicKey>) {
        self.trusted_keys = keys;
    }

    /// The compile cache, if enabled.
    pub fn cache(&self) -> Option<&CompileCache> {
        self.cache.as_ref()
    }
}

/// The number of epoch ticks that make up `deadline`, rounded up so a call
/// never gets less time than configured.
pub(crate) fn deadline_ticks(deadline: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    let ticks = deadline.as_nanos().div_ceil(tick);
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}

/// A thread that increments the engine's epoch every [`EPOCH_TICK`].
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("halyard-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .ok();
        EpochTicker { stop, thread }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
