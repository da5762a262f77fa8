//! The state behind every plugin instance and the host imports it can call:
//! `log`, `clock` and `config`, plus WASI with nothing granted by default.
//!
//! Invariant: a plugin sees only its own config, never the host environment,
//! filesystem or network unless its [`Grants`] say so. Every WASI interface
//! is linked, sockets included, so a component built by any toolchain
//! (componentize-py imports `wasi:sockets` whether it uses them or not)
//! loads; what is not granted fails when used, with a permission error.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::halyard::plugin::{clock, config, log, types};
use super::limiter::GuestLimiter;
use super::limits::{Grants, Limits, NetworkGrant};
use super::stdio::{GuestOutput, RecentLines, Stream};

/// The most log records one call may write; the rest are counted and dropped
/// so a chatty guest cannot flood the host's log.
const LOG_RECORDS_PER_CALL: u32 = 100;
/// Longest log message kept; longer ones are cut.
const LOG_MESSAGE_BYTES: usize = 4096;
/// How much of the guest's last output a trap message carries.
const TRAP_OUTPUT_BYTES: usize = 2048;

/// Per-instance state: the plugin's identity, its config, its sandbox.
pub struct HostState {
    /// The plugin's name, attached to every log record.
    plugin: Arc<str>,
    /// The plugin's own key/value config.
    config: Arc<BTreeMap<String, String>>,
    /// WASI context: empty unless granted (no preopens, env or network).
    wasi: WasiCtx,
    /// Resource table WASI needs; holds at most `Limits::max_resources`.
    table: ResourceTable,
    /// The memory budget and instance/table/memory counts.
    pub(crate) limits: GuestLimiter,
    /// The guest's stdout, drained into the host log.
    stdout: GuestOutput,
    /// The guest's stderr, drained into the host log.
    stderr: GuestOutput,
    /// The last lines of both, to explain a trap.
    recent: RecentLines,
    /// Log records left for the current call.
    log_budget: u32,
    /// Log records dropped over budget in the current call.
    log_dropped: u32,
    /// The `kv` transaction of the detector call in progress; `None`
    /// outside `detect` and `tick` (see [`super::kv`]).
    pub(crate) kv: Option<super::kv::KvCall>,
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
        let recent = RecentLines::default();
        let stdout = GuestOutput::new(plugin.clone(), Stream::Stdout, recent.clone());
        let stderr = GuestOutput::new(plugin.clone(), Stream::Stderr, recent.clone());
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone());
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
        grant_network(&mut wasi, &grants.network);
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.max_resources);
        HostState {
            plugin,
            config,
            wasi: wasi.build(),
            table,
            limits: GuestLimiter::new(limits),
            stdout,
            stderr,
            recent,
            log_budget: LOG_RECORDS_PER_CALL,
            log_dropped: 0,
            kv: None,
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

    /// Ends a call: a line the guest left without its newline goes to the
    /// log, and lines the rate limit dropped are reported.
    pub(crate) fn end_call(&mut self) {
        self.stdout.flush_partial();
        self.stderr.flush_partial();
    }

    /// What the guest last wrote to stdout and stderr, for a trap message:
    /// the last lines (at most [`TRAP_OUTPUT_BYTES`], newest kept), so a
    /// Rust panic reads "panicked at src/lib.rs:10:5: the message" and a
    /// Python traceback keeps its last frames and the exception.
    pub(crate) fn output_tail(&mut self) -> Option<String> {
        self.end_call();
        let lines = self.recent.lines();
        let mut kept = Vec::new();
        let mut bytes = 0;
        for line in lines.iter().rev() {
            let line = line.trim();
            if bytes + line.len() + 1 > TRAP_OUTPUT_BYTES {
                if kept.is_empty() {
                    kept.push(truncate(line, TRAP_OUTPUT_BYTES).to_string());
                }
                break;
            }
            bytes += line.len() + 1;
            kept.push(line.to_string());
        }
        kept.reverse();
        (!kept.is_empty()).then(|| kept.join("\n"))
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

/// Grants the WASI context the network `grant` allows. Without a grant the
/// context keeps wasmtime's defaults: TCP, UDP and name lookups disallowed
/// and every address refused, so each socket call fails with
/// `access-denied`.
fn grant_network(wasi: &mut WasiCtxBuilder, grant: &NetworkGrant) {
    match grant {
        NetworkGrant::None => {}
        NetworkGrant::Any => {
            wasi.inherit_network();
            wasi.allow_tcp(true)
                .allow_udp(true)
                .allow_ip_name_lookup(true);
        }
        NetworkGrant::Allow(rules) => {
            let rules = Arc::new(rules.clone());
            wasi.socket_addr_check(move |addr, usage| {
                let allowed = match usage {
                    SocketAddrUse::TcpConnect
                    | SocketAddrUse::UdpSend
                    | SocketAddrUse::UdpReceive => rules.iter().any(|r| r.matches(addr)),
                    // A connect binds an ephemeral port first; nothing may
                    // listen on a port of its choosing.
                    SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => {
                        addr.ip().is_unspecified() && addr.port() == 0
                    }
                    // Listening and accepting are not part of an allow-list.
                    _ => false,
                };
                Box::pin(std::future::ready(allowed))
            });
            wasi.allow_tcp(true)
                .allow_udp(true)
                .allow_ip_name_lookup(true);
        }
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
