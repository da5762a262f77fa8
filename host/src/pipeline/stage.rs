//! One plugin in a stage chain: its sandbox, its counters and its trap
//! window. After `threshold` traps within `window` the plugin is
//! quarantined: the chain applies the stage's failure policy to every batch
//! without calling it, so a broken plugin cannot burn CPU on every batch.
//!
//! Hot reload swaps a stage's plugin with [`Stage::swap`], on the pipeline
//! thread between two batches, so a batch runs wholly on one version. The
//! previous version is kept in memory while the new one is on probation;
//! too many traps during probation roll the stage back to it
//! ([`crate::reload::rollback`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::native::StagePlugin;
use crate::plugin::{CallError, Plugin};
use crate::reload::rollback::{Probation, Rollback};
use crate::status::plugins::PluginStatus;

/// When a plugin is quarantined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuarantinePolicy {
    /// Traps within `window` that quarantine the plugin.
    pub threshold: u32,
    /// The sliding window.
    pub window: Duration,
}

/// Counters one stage keeps; read by `/metrics` and `/plugins` later.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageCounters {
    /// Events handed to the plugin (or that bypassed it while quarantined).
    pub events_in: u64,
    /// Events that came out (accepted, kept, rewritten, sampled in).
    pub events_out: u64,
    /// Events rejected by a validator or failed closed.
    pub rejected: u64,
    /// Events dropped by a privacy policy or a sampler, or failed closed.
    pub dropped: u64,
    /// Of the frames and events counted in `rejected` or `dropped`, those
    /// whose guest output broke a host cap (an event over a limit, a frame
    /// with too many events, an oversized rewrite). Refused per frame or
    /// event; never a trap, never a step toward quarantine.
    pub refused: u64,
    /// Calls that trapped or broke the call's contract (a wrong number of
    /// results, an output too large to lift).
    pub traps: u64,
    /// Calls made into the plugin.
    pub calls: u64,
}

/// A plugin placed in a chain.
pub struct Stage {
    /// The plugin's name in logs, metrics and dead-letter reasons.
    pub name: String,
    /// The component, or `None` for a native stage.
    plugin: Option<Arc<Plugin>>,
    backend: Box<dyn StagePlugin>,
    policy: QuarantinePolicy,
    recent_traps: VecDeque<Instant>,
    quarantined: bool,
    /// What this stage has done so far.
    pub counters: StageCounters,
    /// Where latency, traps, quarantine and counters are published for
    /// `/metrics`, `/plugins` and lifecycle events; `None` when unobserved.
    observer: Option<Arc<PluginStatus>>,
    /// The last good version while a freshly swapped one is on probation.
    probation: Option<Probation>,
    /// Unloaded because its file was removed (`[reload] on_remove =
    /// "unload"`): not called, like a quarantined stage, until a swap.
    unloaded: bool,
}

impl Stage {
    /// A stage running `plugin`, named `name`.
    pub fn new(name: String, plugin: &Arc<Plugin>, policy: QuarantinePolicy) -> Self {
        let mut stage = Self::native(name, Box::new(plugin.started_instance()), policy);
        stage.plugin = Some(plugin.clone());
        stage
    }

    /// A stage running native code (see [`NativeStages`](super::NativeStages)).
    pub fn native(name: String, backend: Box<dyn StagePlugin>, policy: QuarantinePolicy) -> Self {
        Stage {
            name,
            plugin: None,
            backend,
            policy,
            recent_traps: VecDeque::new(),
            quarantined: false,
            counters: StageCounters::default(),
            observer: None,
            probation: None,
            unloaded: false,
        }
    }

    /// Publishes this stage's latency, traps and quarantine to `status`
    /// from now on.
    pub fn observe(&mut self, status: Arc<PluginStatus>) {
        self.observer = Some(status);
    }

    /// Copies the counters to the observer, if any.
    pub(crate) fn publish(&self) {
        if let Some(o) = &self.observer {
            o.publish(&self.counters);
        }
    }

    /// Whether the plugin has been quarantined.
    pub fn is_quarantined(&self) -> bool {
        self.quarantined
    }

    /// Whether the plugin was unloaded (its file removed).
    pub fn is_unloaded(&self) -> bool {
        self.unloaded
    }

    /// Why the stage is not being called, for dead-letter reasons:
    /// `quarantined` or `unloaded`.
    pub fn unavailable(&self) -> &'static str {
        if self.unloaded {
            "unloaded (its file was removed)"
        } else {
            "quarantined"
        }
    }

    /// The status this stage publishes to, if observed.
    pub fn status(&self) -> Option<&Arc<PluginStatus>> {
        self.observer.as_ref()
    }

    /// Drops the plugin's instance (freeing its memory) and stops calling
    /// it; the chain applies the kind's failure policy until the next
    /// [`Stage::swap`]. No rollback is possible from here, so probation ends.
    pub fn unload(&mut self) {
        if self.unloaded {
            return;
        }
        self.unloaded = true;
        self.probation = None;
        self.backend = Box::new(Unloaded);
        let sha = self.plugin.take().map(|p| p.sha256.clone());
        if let Some(o) = &self.observer {
            o.unloaded();
        }
        tracing::warn!(plugin = %self.name, sha256 = sha.as_deref().unwrap_or(""),
            "plugin unloaded: its file was removed; the stage applies its failure policy until a new file is deployed");
    }

    /// The component this stage runs; `None` for a native stage.
    pub fn plugin(&self) -> Option<&Arc<Plugin>> {
        self.plugin.as_ref()
    }

    /// Runs `call` against the instance, counting calls and traps, and
    /// quarantining after too many traps. `None` means "do not call": the
    /// plugin is quarantined.
    pub(crate) fn call<T>(
        &mut self,
        call: impl FnOnce(&mut dyn StagePlugin) -> Result<T, CallError>,
    ) -> Option<Result<T, CallError>> {
        if self.quarantined || self.unloaded {
            return None;
        }
        self.counters.calls += 1;
        let started = Instant::now();
        let result = call(self.backend.as_mut());
        if let Some(o) = &self.observer {
            o.observe_call(started.elapsed());
        }
        if let Err(err) = &result {
            self.counters.traps += 1;
            self.record_trap(err);
        }
        Some(result)
    }

    /// Runs `plugin` from the next batch on (call it between batches, on
    /// the pipeline thread). Trap counts and quarantine start afresh. With
    /// `rollback`, the version it replaces is kept and restored if the new
    /// one traps too often soon after the swap.
    pub fn swap(&mut self, plugin: Arc<Plugin>, rollback: Option<Rollback>) {
        let previous = self.plugin.replace(plugin.clone());
        self.backend = Box::new(plugin.started_instance());
        self.recent_traps.clear();
        self.quarantined = false;
        self.unloaded = false;
        if let Some(o) = &self.observer {
            o.swapped(&plugin, previous.as_ref().map(|p| p.sha256.as_str()));
        }
        tracing::info!(plugin = %self.name, sha256 = %plugin.sha256,
            from = previous.as_ref().map(|p| p.sha256.as_str()).unwrap_or(""),
            "plugin reloaded");
        self.probation = match (previous, rollback) {
            (Some(previous), Some(rollback)) => Some(Probation::new(previous, rollback)),
            _ => None,
        };
    }

    /// Restores the version kept for probation: the bad one is quarantined
    /// by hash so the reloader will not load it again.
    fn roll_back(&mut self, err: &CallError) {
        let Some(probation) = self.probation.take() else {
            return;
        };
        let good = probation.previous.clone();
        let bad = self.plugin.replace(good.clone());
        self.backend = Box::new(good.started_instance());
        self.recent_traps.clear();
        self.quarantined = false;
        if let Some(bad) = &bad {
            probation
                .rollback
                .ledger
                .rolled_back(&bad.path, &bad.sha256, &good.sha256);
            tracing::error!(plugin = %self.name, bad = %bad.sha256, restored = %good.sha256,
                traps = probation.traps, error = %err, "new plugin version rolled back");
            if let Some(o) = &self.observer {
                o.rolled_back(bad, &good, probation.traps, &err.to_string());
            }
        }
    }

    fn record_trap(&mut self, err: &CallError) {
        let now = Instant::now();
        if let Some(p) = &mut self.probation {
            if p.trapped(now) {
                self.roll_back(err);
                return;
            }
            if p.expired(now) {
                self.probation = None;
            }
        }
        self.recent_traps.push_back(now);
        while self
            .recent_traps
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.policy.window)
        {
            self.recent_traps.pop_front();
        }
        tracing::warn!(plugin = %self.name, error = %err, "plugin call failed");
        if let Some(o) = &self.observer {
            // Lifecycle events may be shipped as data: no guest output.
            o.trapped(&err.without_guest_output(), self.recent_traps.len());
        }
        if self.recent_traps.len() >= self.policy.threshold as usize {
            if self.probation.is_some() {
                // A new version that would be quarantined is rolled back.
                self.roll_back(err);
                return;
            }
            self.quarantined = true;
            if let Some(o) = &self.observer {
                o.quarantined(self.recent_traps.len(), self.policy.window);
            }
            tracing::error!(
                plugin = %self.name,
                traps = self.recent_traps.len(),
                window_s = self.policy.window.as_secs(),
                "plugin quarantined after repeated traps"
            );
        }
    }
}

/// The backend of an unloaded stage: never called ([`Stage::call`] checks
/// first); it only stands in so the instance's memory is freed.
struct Unloaded;

impl Unloaded {
    fn refuse<T>() -> Result<T, CallError> {
        Err(CallError::Restart {
            plugin: "unloaded".into(),
            message: "the plugin was unloaded".into(),
        })
    }
}

impl StagePlugin for Unloaded {
    fn poll(&mut self, _max: u32) -> Result<Vec<crate::plugin::Event>, CallError> {
        Self::refuse()
    }
    fn decode(
        &mut self,
        _frames: &[crate::plugin::Frame],
    ) -> Result<Vec<Result<Vec<crate::plugin::Event>, String>>, CallError> {
        Self::refuse()
    }
    fn validate(
        &mut self,
        _events: &[crate::plugin::Event],
    ) -> Result<Vec<crate::plugin::Verdict>, CallError> {
        Self::refuse()
    }
    fn redact(
        &mut self,
        _events: &[crate::plugin::Event],
    ) -> Result<Vec<crate::plugin::Action>, CallError> {
        Self::refuse()
    }
    fn sample(&mut self, _events: &[crate::plugin::Event]) -> Result<Vec<bool>, CallError> {
        Self::refuse()
    }
}
