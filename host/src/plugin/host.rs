//! The state behind every plugin instance and the host imports it can call:
//! `log`, `clock` and `config`, plus WASI with nothing granted by default.
//!
//! Invariant: a plugin sees only its own config, never the host environment,
//! filesystem or network unless its [`Grants`] say so.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::halyard::plugin::{clock, config, log, types};
use super::limits::{Grants, Limits};

/// The most log records one call may write; the rest are counted and dropped
/// so a chatty guest cannot flood the host's log.
const LOG_RECORDS_PER_CALL: u32 = 100;
/// Longest log message kept; longer ones are cut.
const LOG_MESSAGE_BYTES: usize = 4096;
/// How much of the guest's stderr is kept to explain a trap (a panic message).
const STDERR_BYTES: usize = 16 << 10;

/// Per-instance state: the plugin's identity, its config, its sandbox.
pub struct HostState {
    /// The plugin's name, attached to every log record.
    plugin: Arc<str>,
    /// The plugin's own key/value config.
    config: Arc<BTreeMap<String, String>>,
    /// WASI context: empty unless granted (no preopens, env or network).
    wasi: WasiCtx,
    /// Resource table WASI needs.
    table: ResourceTable,
    /// Memory cap enforcement.
    pub(crate) limits: StoreLimits,
    /// The guest's stderr, kept to explain panics.
    stderr: MemoryOutputPipe,
    /// Log records left for the current call.
    log_budget: u32,
    /// Log records dropped over budget in the current call.
    log_dropped: u32,
}

/// The process-wide start of the monotonic clock plugins see.
fn monotonic_origin() -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

impl HostState {
    /// Fresh state for one instance of `plugin`.
    pub(crate) fn new(
        plugin: Arc<str>,
        config: Arc<BTreeMap<String, String>>,
        grants: &Grants,
        limits: &Limits,
    ) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_BYTES);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stderr(stderr.clone());
        for name in &grants.env {
            if let Ok(value) = std::env::var(name) {
                wasi.env(name, value);
            }
        }
        for dir in &grants.read_dirs {
            let guest = dir.to_string_lossy().into_owned();
            if let Err(err) = wasi.preopened_dir(dir, &guest, FsPerms::ReadOnly) {
                tracing::warn!(plugin = %plugin, dir = %guest, error = %err, "cannot grant directory");
            }
        }
        if grants.network {
            wasi.inherit_network();
            wasi.allow_ip_name_lookup(true);
        }
        HostState {
            plugin,
            config,
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .trap_on_grow_failure(true)
                .instances(32)
                .tables(32)
                .memories(8)
                .build(),
            stderr,
            log_budget: LOG_RECORDS_PER_CALL,
            log_dropped: 0,
        }
    }

    /// Resets the per-call log budget; reports what the last call dropped.
    pub(crate) fn start_call(&mut self) {
        if self.log_dropped > 0 {
            tracing::warn!(plugin = %self.plugin, dropped = self.log_dropped, "plugin log records over the per-call budget were dropped");
        }
        self.log_budget = LOG_RECORDS_PER_CALL;
        self.log_dropped = 0;
    }

    /// What the guest last wrote to stderr, for a trap message: the last two
    /// lines, less Rust's `RUST_BACKTRACE` hint, so a panic reads as
    /// "panicked at src/lib.rs:10:5: the message".
    pub(crate) fn stderr_tail(&self) -> Option<String> {
        let bytes = self.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        let tail = lines[lines.len().saturating_sub(2)..].join(" ");
        (!tail.is_empty()).then(|| truncate(&tail, 512).to_string())
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn write(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        if self.log_budget == 0 {
            self.log_dropped += 1;
            return;
        }
        self.log_budget -= 1;
        let message = truncate(&message, LOG_MESSAGE_BYTES);
        let fields = fields
            .iter()
            .take(16)
            .map(|(k, v)| format!("{}={}", truncate(k, 64), truncate(v, 256)))
            .collect::<Vec<_>>()
            .join(" ");
        let plugin = &*self.plugin;
        match level {
            log::Level::Trace => tracing::trace!(target: "plugin", plugin, fields, "{message}"),
            log::Level::Debug => tracing::debug!(target: "plugin", plugin, fields, "{message}"),
            log::Level::Info => tracing::info!(target: "plugin", plugin, fields, "{message}"),
            log::Level::Warn => tracing::warn!(target: "plugin", plugin, fields, "{message}"),
            log::Level::Error => tracing::error!(target: "plugin", plugin, fields, "{message}"),
        }
    }
}

impl clock::Host for HostState {
    fn now_ns(&mut self) -> i64 {
        wall_clock_ns()
    }

    fn monotonic_ns(&mut self) -> u64 {
        u64::try_from(monotonic_origin().elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    fn entries(&mut self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Nanoseconds since the Unix epoch, saturating (a clock before 1970 reads 0).
pub fn wall_clock_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `s` cut to at most `max` bytes on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
