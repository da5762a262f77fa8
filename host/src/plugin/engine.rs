//! The shared wasmtime engine: compiler settings, the epoch ticker that
//! enforces call deadlines, and the linker every plugin is instantiated with.
//!
//! One [`Runtime`] serves every plugin of a host. Dropping it stops the
//! ticker thread.
//!
//! Compiles started on a thread that called [`lower_this_thread_priority`]
//! (the reload thread) run on that thread alone, at its low priority, so a
//! cold hot swap takes CPU only when the data path leaves some idle.

use std::cell::Cell;
#[cfg(feature = "compiler")]
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::bindings::HostImports;
use super::cache::CompileCache;
use super::call_mode::{CallMode, CallPolicy};
use super::error::LoadError;
use super::host::HostState;

/// How often the epoch advances. Deadlines are whole multiples of it, so a
/// call is interrupted at most one tick early or late.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The engine, linker and compile cache shared by every plugin.
pub struct Runtime {
    /// Compiles and runs components; cheap to clone (reference-counted).
    /// Its compiles are spread over wasmtime's thread pool, which runs at
    /// normal priority.
    pub(crate) engine: Engine,
    /// Compiles for low-priority threads: `engine`'s settings with
    /// parallel compilation off, so the whole compile runs on the calling
    /// thread. Its artefacts are loaded into `engine` (the setting is not
    /// part of the compatibility hash). `None` if the hashes differ anyway;
    /// then every compile uses `engine`.
    #[cfg(feature = "compiler")]
    pub(crate) background: Option<Engine>,
    /// WASI (deny-all by default, its async implementation) plus the
    /// Halyard host imports: for plugins called with
    /// [`CallMode::Async`](super::call_mode::CallMode).
    pub(crate) linker: Linker<HostState>,
    /// The same with WASI's synchronous implementation: for plugins that
    /// cannot wait, called with plain `call`s (see [`super::call_mode`]).
    pub(crate) sync_linker: Linker<HostState>,
    /// Compiled artefacts on disk, keyed by content hash; `None` disables it.
    pub(crate) cache: Option<CompileCache>,
    /// Advances the epoch; stopped on drop.
    _ticker: EpochTicker,
    /// Signers whose `.sig` makes a component loadable; empty means
    /// signatures are not required (see [`Runtime::require_signatures`]).
    pub(crate) trusted_keys: Vec<halyard_trust::PublicKey>,
    /// The largest component file [`Runtime::load`] reads
    /// (`[plugins] max_file_mb`); see [`super::file`].
    pub(crate) max_file_bytes: u64,
    /// Which plugins get synchronous calls: [`CallPolicy::Auto`] in every
    /// real runtime.
    pub(crate) policy: CallPolicy,
    /// The host's fleet (`[licence] fleet`): a plugin signature scoped to a
    /// fleet verifies only on hosts of that fleet.
    pub(crate) fleet: Option<String>,
}

impl Runtime {
    /// Builds the engine and linker. `cache_dir` enables the on-disk compile
    /// cache: a warm load (hash, deserialize, probe `init`) measured 0.7–0.8 ms
    /// against 80–120 ms for a cold compile (release build; BENCHMARKS.md).
    pub fn new(cache_dir: Option<std::path::PathBuf>) -> Result<Self, LoadError> {
        Self::build(cache_dir, CallPolicy::Auto)
    }

    /// A runtime whose calls are all plain synchronous wasmtime calls, with
    /// WASI linked synchronously: the call mechanism before issue 11.
    ///
    /// For measurement only: the stage benchmark runs it next to
    /// [`Runtime::new`] in the same process, so the cost of the real call
    /// mechanism is a same-run ratio (BENCHMARKS.md, "Stage cost"). A guest
    /// blocked in a host call (sleep, poll, stream, socket) is **not** cut at
    /// its deadline here, only running code is (epoch), so nothing but a
    /// benchmark may build one.
    #[doc(hidden)]
    pub fn sync_baseline(cache_dir: Option<std::path::PathBuf>) -> Result<Self, LoadError> {
        Self::build(cache_dir, CallPolicy::AlwaysSync)
    }

    /// A runtime that calls every plugin through the async mechanism, even
    /// one that cannot wait and would get plain calls from [`Runtime::new`].
    ///
    /// For measurement and tests of that mechanism only: it is as safe as
    /// [`Runtime::new`], just slower per call.
    #[doc(hidden)]
    pub fn async_only(cache_dir: Option<std::path::PathBuf>) -> Result<Self, LoadError> {
        Self::build(cache_dir, CallPolicy::AlwaysAsync)
    }

    fn build(cache_dir: Option<std::path::PathBuf>, policy: CallPolicy) -> Result<Self, LoadError> {
        let config = engine_config();
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine {
            message: e.to_string(),
        })?;
        #[cfg(feature = "compiler")]
        let background = {
            let mut config = config;
            config.parallel_compilation(false);
            Engine::new(&config)
                .ok()
                .filter(|bg| compatibility_hash(bg) == compatibility_hash(&engine))
        };

        let linker = new_linker(&engine, CallMode::Async)?;
        let sync_linker = new_linker(&engine, CallMode::Sync)?;
        // Without the compiler nothing is compiled here, so there is
        // nothing to cache.
        let cache = cache_dir
            .filter(|_| cfg!(feature = "compiler"))
            .map(|dir| CompileCache::new(dir, &engine));
        let ticker = EpochTicker::start(engine.clone());
        Ok(Runtime {
            engine,
            #[cfg(feature = "compiler")]
            background,
            linker,
            sync_linker,
            cache,
            _ticker: ticker,
            trusted_keys: Vec::new(),
            max_file_bytes: super::file::DEFAULT_MAX_FILE_BYTES,
            policy,
            fleet: None,
        })
    }

    /// From now on every [`Runtime::load`] requires a valid `FILE.sig` by
    /// one of `keys` (none: signatures are not required). The signature is
    /// checked over the very bytes that are then compiled.
    pub fn require_signatures(&mut self, keys: Vec<halyard_trust::PublicKey>) {
        self.trusted_keys = keys;
    }

    /// From now on [`Runtime::load`] refuses component files larger than
    /// `bytes`, before reading them.
    pub fn set_max_file_bytes(&mut self, bytes: u64) {
        self.max_file_bytes = bytes;
    }

    /// The host's fleet, which fleet-scoped plugin signatures must name.
    pub fn set_fleet(&mut self, fleet: Option<String>) {
        self.fleet = fleet;
    }

    /// The largest component file [`Runtime::load`] reads.
    pub fn max_file_bytes(&self) -> u64 {
        self.max_file_bytes
    }

    /// The compile cache, if enabled.
    pub fn cache(&self) -> Option<&CompileCache> {
        self.cache.as_ref()
    }
}

/// The engine settings every plugin runs under. `halyard plugin compile`
/// uses the same ones (for its `--target`), so what it writes loads here:
/// wasmtime refuses an artefact made under other settings.
fn engine_config() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    // Every guest entry is a `call_async` future (always available with
    // the `async` feature) so a guest waiting in a host call can be cut
    // at its deadline (see `super::deadline`).
    // Component-model async support costs ~300 ns per call and no plugin
    // kind uses it.
    config.concurrency_support(false);
    // For profiling only: `HALYARD_PERF_MAP=1` has wasmtime write
    // `/tmp/perf-<pid>.map`, so `perf report` names guest functions
    // instead of `[unknown]` (BENCHMARKS.md, "Where the time goes").
    if std::env::var_os(PERF_MAP_ENV).is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config
}

/// The environment variable that turns on wasmtime's perf map.
pub const PERF_MAP_ENV: &str = "HALYARD_PERF_MAP";

/// Compiles the component `bytes` for `target` (a target triple such as
/// `aarch64-unknown-linux-gnu`; `None`: this machine's architecture) into
/// a precompiled plugin: what `halyard plugin compile` writes for a host
/// built without the compiler. Only baseline CPU features of the target
/// are used, so the artefact runs on every CPU of that architecture.
#[cfg(feature = "compiler")]
pub fn precompile_for(bytes: &[u8], target: Option<&str>) -> Result<Vec<u8>, LoadError> {
    let failed = |e: wasmtime::Error| LoadError::Engine {
        message: format!("{e:#}"),
    };
    let mut config = engine_config();
    let triple = target.map_or_else(|| native_triple().to_string(), str::to_string);
    // An explicit target: wasmtime then assumes no CPU feature beyond the
    // architecture's baseline (no host-CPU detection).
    config.target(&triple).map_err(failed)?;
    let engine = Engine::new(&config).map_err(failed)?;
    engine.precompile_component(bytes).map_err(failed)
}

/// The target triple this binary was built for.
#[cfg(feature = "compiler")]
fn native_triple() -> &'static str {
    if cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        "x86_64-unknown-linux-gnu"
    } else if cfg!(all(target_arch = "aarch64", target_os = "linux")) {
        "aarch64-unknown-linux-gnu"
    } else if cfg!(all(target_arch = "aarch64", target_os = "macos")) {
        "aarch64-apple-darwin"
    } else {
        std::env::consts::ARCH
    }
}

/// WASI (its implementation for `mode`) plus the Halyard host imports.
fn new_linker(engine: &Engine, mode: CallMode) -> Result<Linker<HostState>, LoadError> {
    let failed = |e: wasmtime::Error| LoadError::Engine {
        message: e.to_string(),
    };
    let mut linker = Linker::new(engine);
    match mode {
        CallMode::Sync => wasmtime_wasi::p2::add_to_linker_sync(&mut linker),
        CallMode::Async => wasmtime_wasi::p2::add_to_linker_async(&mut linker),
    }
    .map_err(failed)?;
    HostImports::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
        .map_err(failed)?;
    super::kv::add_to_linker(&mut linker).map_err(failed)?;
    Ok(linker)
}

#[cfg(feature = "compiler")]
fn compatibility_hash(engine: &Engine) -> u64 {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.finish()
}

thread_local! {
    /// Set by [`lower_this_thread_priority`].
    static LOW_PRIORITY: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread asked for low priority, so its compiles
/// must stay on it.
#[cfg(feature = "compiler")]
pub(crate) fn low_priority_thread() -> bool {
    LOW_PRIORITY.with(Cell::get)
}

/// Gives the calling thread the lowest CPU priority, and keeps every
/// compile it starts on it.
///
/// For the thread that loads plugins while the pipeline runs (hot reload).
/// A cold load compiles with Cranelift for 100–200 ms of CPU; at normal
/// priority on a two-core machine that took the data path below 80 % of its
/// throughput in most cold swaps (BENCHMARKS.md, "Hot swap"). At the lowest
/// priority the compile gets the CPU the data path leaves idle, and the
/// swap takes longer.
///
/// Lowering the priority alone would not do it: wasmtime spreads a compile
/// over its thread pool, whose threads the first (startup) compile started
/// at normal priority. So after this call [`Runtime::load`] on this thread
/// compiles single-threaded, on this thread.
///
/// On Linux the thread moves to the idle scheduling class (`SCHED_IDLE`:
/// it runs only when no normal thread wants the CPU, and a waking normal
/// thread preempts it at once), with nice 19 in case that is refused.
/// Both apply to the calling thread alone. Elsewhere only the
/// single-threaded compile applies. Failures are logged and otherwise
/// ignored.
pub fn lower_this_thread_priority() {
    LOW_PRIORITY.with(|low| low.set(true));
    #[cfg(target_os = "linux")]
    linux::lower_this_thread_priority();
}

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::c_int;

    /// `struct sched_param`: glibc has just the priority; musl adds reserved
    /// fields, which the spare zeroes cover.
    #[repr(C)]
    struct SchedParam {
        sched_priority: c_int,
        _reserved: [u64; 6],
    }

    // From the C library std already links.
    unsafe extern "C" {
        /// `pthread_t` is an `unsigned long` (glibc) or a pointer (musl).
        fn pthread_self() -> usize;
        fn pthread_setschedparam(thread: usize, policy: c_int, param: *const SchedParam) -> c_int;
        fn setpriority(which: c_int, who: u32, prio: c_int) -> c_int;
    }

    const SCHED_IDLE: c_int = 5;
    const PRIO_PROCESS: c_int = 0;
    const NICE_LOWEST: c_int = 19;

    pub(super) fn lower_this_thread_priority() {
        // SAFETY: plain calls with integer arguments; `who = 0` is the
        // calling thread, since Linux keeps nice values per thread.
        if unsafe { setpriority(PRIO_PROCESS, 0, NICE_LOWEST) } != 0 {
            let err = std::io::Error::last_os_error();
            tracing::warn!(error = %err, "cannot lower the nice value of the plugin loader thread");
        }
        let param = SchedParam {
            sched_priority: 0,
            _reserved: [0; 6],
        };
        // SAFETY: `param` outlives the call, which only reads it;
        // `pthread_self` is always a valid handle for the calling thread.
        let rc = unsafe { pthread_setschedparam(pthread_self(), SCHED_IDLE, &param) };
        if rc != 0 {
            let err = std::io::Error::from_raw_os_error(rc);
            tracing::warn!(error = %err, "cannot move the plugin loader thread to SCHED_IDLE");
        }
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::plugin::PluginOptions;

    /// The nice value and scheduling policy of the calling thread, from
    /// `/proc/thread-self/stat`.
    #[cfg(target_os = "linux")]
    fn sched_of_this_thread() -> (i64, i64) {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The fields after the command name's closing parenthesis start at
        // field 3 (state); nice is field 19, policy field 41.
        let after = &stat[stat.rfind(')').unwrap() + 1..];
        let field = |n: usize| {
            after
                .split_whitespace()
                .nth(n - 3)
                .unwrap()
                .parse()
                .unwrap()
        };
        (field(19), field(41))
    }

    #[test]
    fn a_low_priority_thread_compiles_plugins_that_run_everywhere() {
        let runtime = Arc::new(Runtime::new(None).unwrap());
        assert!(
            runtime.background.is_some(),
            "the single-threaded engine's artefacts must load into the shared one"
        );
        #[cfg(target_os = "linux")]
        let before = sched_of_this_thread();
        let loader = runtime.clone();
        let plugin = std::thread::spawn(move || {
            lower_this_thread_priority();
            assert!(low_priority_thread());
            #[cfg(target_os = "linux")]
            assert_eq!(sched_of_this_thread(), (19, 5), "nice 19, SCHED_IDLE");
            // Compiled on this thread, loaded into the shared engine, and
            // probed (`info`, `init`) here.
            let path = Path::new(halyard_test_components::RANGE_VALIDATOR);
            loader.load(path, None, PluginOptions::default()).unwrap()
        })
        .join()
        .unwrap();
        assert!(!plugin.from_cache);
        // Only that thread changed; the plugin runs on any thread.
        assert!(!low_priority_thread());
        #[cfg(target_os = "linux")]
        assert_eq!(sched_of_this_thread(), before);
        let info = plugin.instance().start().unwrap();
        assert_eq!(info, plugin.info);
    }
}
