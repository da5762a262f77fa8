//! What the host knows about each loaded plugin, shared between the
//! pipeline thread (which writes) and the status server (which reads):
//! identity, state, counters and a call-latency histogram.
//!
//! The pipeline keeps its own plain counters on the hot path and publishes
//! a copy here after every ingest ([`PluginStatus::publish`]), so reading
//! `/plugins` or `/metrics` never touches the pipeline thread. Latency,
//! traps and quarantine are recorded as they happen.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use serde::Serialize;

use crate::lifecycle::{Lifecycle, new_correlation_id};
use crate::pipeline::StageCounters;

/// Where in the pipeline a plugin runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageRole {
    /// A source input's guest.
    Source,
    /// An input's decoder.
    Decode,
    /// A validator chain entry.
    Validate,
    /// A detector chain entry.
    Detect,
    /// A privacy chain entry.
    Privacy,
    /// A sampler chain entry.
    Sample,
}

impl StageRole {
    /// The label value used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            StageRole::Source => "source",
            StageRole::Decode => "decode",
            StageRole::Validate => "validate",
            StageRole::Detect => "detect",
            StageRole::Privacy => "privacy",
            StageRole::Sample => "sample",
        }
    }
}

/// Who a plugin is: fixed at load.
#[derive(Debug, Clone, Serialize)]
pub struct PluginIdentity {
    /// The name in logs and metrics (config `name`, else the plugin's own).
    pub name: String,
    /// Where it runs.
    pub stage: StageRole,
    /// The input it serves (decoders and sources).
    pub input: Option<String>,
    /// The plugin's kind (`validator`, …), or `native`.
    pub kind: String,
    /// What the plugin calls itself and its version (`info`).
    pub plugin_name: String,
    /// The plugin's version.
    pub version: String,
    /// The component file.
    pub file: String,
    /// SHA-256 of the component, hex; empty for native stages.
    pub sha256: String,
}

/// The state of one loaded plugin, shared across threads.
#[derive(Debug)]
pub struct PluginStatus {
    /// Who it is.
    pub identity: PluginIdentity,
    /// Links this plugin's lifecycle events.
    pub correlation_id: String,
    counters: Mutex<StageCounters>,
    quarantined: AtomicBool,
    quarantines: AtomicU64,
    latency: Histogram,
    /// The last [`RECENT_CALLS`] call times in µs, for `/plugins`' p50/p99.
    recent: Mutex<std::collections::VecDeque<u32>>,
    lifecycle: Lifecycle,
    /// What runs now when hot reload or a rollback replaced the version in
    /// `identity` (name, version, sha256); `/plugins` shows this.
    current: RwLock<Option<(String, String, String)>>,
    /// Times hot reload swapped this stage's plugin.
    reloads: AtomicU64,
    /// Times a new version was rolled back.
    rollbacks: AtomicU64,
    /// Unloaded because its file was removed, until the next swap.
    unloaded: AtomicBool,
}

/// A plugin's state as `/plugins` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PluginView {
    /// Who it is.
    #[serde(flatten)]
    pub identity: PluginIdentity,
    /// `active`, `quarantined` or `unloaded`.
    pub state: &'static str,
    /// Calls into the plugin.
    pub calls: u64,
    /// Calls that trapped or returned bad output.
    pub traps: u64,
    /// Times it was quarantined.
    pub quarantines: u64,
    /// Events handed to it.
    pub events_in: u64,
    /// Events that came out.
    pub events_out: u64,
    /// Events rejected (validators, decode errors, fail-closed).
    pub rejected: u64,
    /// Events dropped (privacy, sampler, fail-closed).
    pub dropped: u64,
    /// Of `rejected` and `dropped`, the frames and events whose guest
    /// output broke a host cap: refused one by one, never traps.
    pub refused: u64,
    /// Median wall time of its last calls (up to [`RECENT_CALLS`]), ms;
    /// `null` before the first call.
    pub call_p50_ms: Option<f64>,
    /// 99th percentile of the same, ms.
    pub call_p99_ms: Option<f64>,
}

/// How many recent calls the p50/p99 of `/plugins` are taken over.
pub const RECENT_CALLS: usize = 512;

impl PluginStatus {
    /// A new status for `identity`; publishes `plugin.loaded`.
    pub fn loaded(identity: PluginIdentity, lifecycle: &Lifecycle) -> Arc<Self> {
        let status = Arc::new(PluginStatus {
            correlation_id: new_correlation_id(),
            identity,
            counters: Mutex::new(StageCounters::default()),
            quarantined: AtomicBool::new(false),
            quarantines: AtomicU64::new(0),
            // 50 µs … ~1.6 s: batch calls range from microseconds (native)
            // to the CPU deadline.
            latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            recent: Mutex::new(std::collections::VecDeque::with_capacity(RECENT_CALLS)),
            lifecycle: lifecycle.clone(),
            current: RwLock::new(None),
            reloads: AtomicU64::new(0),
            rollbacks: AtomicU64::new(0),
            unloaded: AtomicBool::new(false),
        });
        let id = &status.identity;
        lifecycle.emit(
            "plugin.loaded",
            &status.correlation_id,
            serde_json::json!({
                "name": id.name, "stage": id.stage, "input": id.input, "kind": id.kind,
                "version": id.version, "file": id.file, "sha256": id.sha256,
            }),
        );
        status
    }

    /// Records one call's wall time.
    pub fn observe_call(&self, elapsed: Duration) {
        self.latency.observe(elapsed.as_secs_f64());
        let micros = u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX);
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == RECENT_CALLS {
            recent.pop_front();
        }
        recent.push_back(micros);
    }

    /// The median and 99th percentile of the recent calls, in ms.
    fn call_percentiles(&self) -> (Option<f64>, Option<f64>) {
        let mut sorted: Vec<u32> = self
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        sorted.sort_unstable();
        let at = |q: f64| {
            // Nearest rank: the smallest value with at least q of them at
            // or below it.
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
            sorted.get(rank - 1).map(|&us| f64::from(us) / 1000.0)
        };
        (at(0.50), at(0.99))
    }

    /// Records a trap (`plugin.trap`); `traps_in_window` is the count that
    /// the quarantine policy compares with its threshold.
    pub fn trapped(&self, error: &str, traps_in_window: usize) {
        self.lifecycle.emit(
            "plugin.trap",
            &self.correlation_id,
            serde_json::json!({"name": self.identity.name, "stage": self.identity.stage,
                "error": error, "traps_in_window": traps_in_window}),
        );
    }

    /// Records that the plugin was quarantined (`plugin.quarantined`).
    pub fn quarantined(&self, traps: usize, window: Duration) {
        self.quarantined.store(true, Ordering::Relaxed);
        self.quarantines.fetch_add(1, Ordering::Relaxed);
        self.lifecycle.emit(
            "plugin.quarantined",
            &self.correlation_id,
            serde_json::json!({"name": self.identity.name, "stage": self.identity.stage,
                "traps": traps, "window_s": window.as_secs()}),
        );
    }

    /// Records a hot swap (`plugin.reloaded`): `plugin` runs from now on.
    pub fn swapped(&self, plugin: &crate::plugin::Plugin, from_sha256: Option<&str>) {
        self.set_current(plugin);
        self.reloads.fetch_add(1, Ordering::Relaxed);
        self.lifecycle.emit(
            "plugin.reloaded",
            &self.correlation_id,
            serde_json::json!({"name": self.identity.name, "stage": self.identity.stage,
                "input": self.identity.input, "file": plugin.path.display().to_string(),
                "version": plugin.info.version, "sha256": plugin.sha256,
                "from_sha256": from_sha256, "from_cache": plugin.from_cache}),
        );
    }

    /// Records that a config reload took the stage out of its chain
    /// (`plugin.removed`).
    pub fn removed(&self) {
        self.lifecycle.emit(
            "plugin.removed",
            &self.correlation_id,
            serde_json::json!({"name": self.identity.name, "stage": self.identity.stage,
                "reason": "config"}),
        );
    }

    /// Records that the plugin was unloaded because its file was removed
    /// (`plugin.unloaded`).
    pub fn unloaded(&self) {
        self.unloaded.store(true, Ordering::Relaxed);
        self.lifecycle.emit(
            "plugin.unloaded",
            &self.correlation_id,
            serde_json::json!({"name": self.identity.name, "stage": self.identity.stage,
                "input": self.identity.input, "reason": "file removed"}),
        );
    }

    /// Records a rollback (`plugin.rolled_back`) from `bad` to `good`.
    pub fn rolled_back(
        &self,
        bad: &crate::plugin::Plugin,
        good: &crate::plugin::Plugin,
        traps: u32,
        error: &str,
    ) {
        self.set_current(good);
        self.rollbacks.fetch_add(1, Ordering::Relaxed);
        self.lifecycle.emit(
            "plugin.rolled_back",
            &self.correlation_id,
            serde_json::json!({"name": self.identity.name, "stage": self.identity.stage,
                "file": bad.path.display().to_string(), "bad_sha256": bad.sha256,
                "restored_sha256": good.sha256, "traps": traps, "error": error}),
        );
    }

    fn set_current(&self, plugin: &crate::plugin::Plugin) {
        self.quarantined.store(false, Ordering::Relaxed);
        self.unloaded.store(false, Ordering::Relaxed);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some((
            plugin.info.name.clone(),
            plugin.info.version.clone(),
            plugin.sha256.clone(),
        ));
    }

    /// Times this stage's plugin was hot-swapped and rolled back.
    pub fn reloads(&self) -> (u64, u64) {
        (
            self.reloads.load(Ordering::Relaxed),
            self.rollbacks.load(Ordering::Relaxed),
        )
    }

    /// Publishes the pipeline's counters for this plugin.
    pub fn publish(&self, counters: &StageCounters) {
        let mut shared = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        shared.clone_from(counters);
    }

    /// Adds what one pipeline worker's copy of this plugin did since its
    /// last report: with several workers, the totals are their sum.
    pub fn add(&self, delta: &StageCounters) {
        let mut shared = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        shared.events_in += delta.events_in;
        shared.events_out += delta.events_out;
        shared.rejected += delta.rejected;
        shared.dropped += delta.dropped;
        shared.refused += delta.refused;
        shared.traps += delta.traps;
        shared.calls += delta.calls;
    }

    /// Whether it is quarantined.
    pub fn is_quarantined(&self) -> bool {
        self.quarantined.load(Ordering::Relaxed)
    }

    /// The latency histogram, for the metrics collector.
    pub fn latency(&self) -> &Histogram {
        &self.latency
    }

    /// The last published counters.
    pub fn counters(&self) -> StageCounters {
        self.counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A consistent-enough view for `/plugins`.
    pub fn view(&self) -> PluginView {
        let c = self.counters();
        let (call_p50_ms, call_p99_ms) = self.call_percentiles();
        let mut identity = self.identity.clone();
        if let Some((name, version, sha256)) = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            identity.plugin_name = name;
            identity.version = version;
            identity.sha256 = sha256;
        }
        PluginView {
            identity,
            state: if self.unloaded.load(Ordering::Relaxed) {
                "unloaded"
            } else if self.is_quarantined() {
                "quarantined"
            } else {
                "active"
            },
            calls: c.calls,
            traps: c.traps,
            quarantines: self.quarantines.load(Ordering::Relaxed),
            events_in: c.events_in,
            events_out: c.events_out,
            rejected: c.rejected,
            dropped: c.dropped,
            refused: c.refused,
            call_p50_ms,
            call_p99_ms,
        }
    }
}

/// Every loaded plugin, in pipeline order.
#[derive(Debug, Default)]
pub struct PluginRegistry {
    entries: RwLock<Vec<Arc<PluginStatus>>>,
}

impl PluginRegistry {
    /// Adds a plugin.
    pub fn add(&self, status: Arc<PluginStatus>) {
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(status);
    }

    /// Replaces every entry (pipeline order), when a config reload rebuilt
    /// a chain.
    pub fn replace(&self, statuses: Vec<Arc<PluginStatus>>) {
        *self.entries.write().unwrap_or_else(|e| e.into_inner()) = statuses;
    }

    /// Every plugin.
    pub fn all(&self) -> Vec<Arc<PluginStatus>> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Hooks stages up to `/plugins`, `/metrics` and lifecycle events: every
/// stage at start, and the new stages when a config reload rebuilds a chain
/// (on the pipeline thread, which owns the stages).
#[derive(Debug, Clone)]
pub struct Registrar {
    registry: Arc<PluginRegistry>,
    lifecycle: Lifecycle,
}

impl Registrar {
    /// Registers into `registry`, publishing through `lifecycle`.
    pub fn new(registry: Arc<PluginRegistry>, lifecycle: Lifecycle) -> Self {
        Registrar {
            registry,
            lifecycle,
        }
    }

    /// Makes `stage` (of `kind`, serving `input` if a decoder or source)
    /// report to a new status, publishing `plugin.loaded`; list the result
    /// with [`Registrar::list`].
    pub fn observe(
        &self,
        kind: crate::plugin::PluginKind,
        input: Option<String>,
        stage: &mut crate::pipeline::Stage,
    ) -> Arc<PluginStatus> {
        use crate::plugin::PluginKind;
        let (plugin_kind, plugin_name, version, file, sha256) = match stage.plugin() {
            Some(p) => (
                p.kind.to_string(),
                p.info.name.clone(),
                p.info.version.clone(),
                p.path.display().to_string(),
                p.sha256.clone(),
            ),
            None => (
                "native".to_string(),
                stage.name.clone(),
                env!("CARGO_PKG_VERSION").to_string(),
                String::new(),
                String::new(),
            ),
        };
        let role = match kind {
            PluginKind::Source => StageRole::Source,
            PluginKind::Decoder => StageRole::Decode,
            PluginKind::Validator => StageRole::Validate,
            PluginKind::Detector => StageRole::Detect,
            PluginKind::Privacy => StageRole::Privacy,
            PluginKind::Sampler => StageRole::Sample,
        };
        let status = PluginStatus::loaded(
            PluginIdentity {
                name: stage.name.clone(),
                stage: role,
                input,
                kind: plugin_kind,
                plugin_name,
                version,
                file,
                sha256,
            },
            &self.lifecycle,
        );
        stage.observe(status.clone());
        status
    }

    /// Shows exactly `statuses` (pipeline order) in `/plugins` and
    /// `/metrics`.
    pub fn list(&self, statuses: Vec<Arc<PluginStatus>>) {
        self.registry.replace(statuses);
    }
}
