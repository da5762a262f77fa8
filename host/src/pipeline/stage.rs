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
//!
//! With several pipeline workers each runs its own copy of every stage (its
//! own instance and counters); the trap window, quarantine, probation and
//! the version to run are shared, and a copy follows a change another
//! worker made at its next batch ([`Stage::sync`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
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

/// A plugin placed in a chain, as one pipeline worker runs it: its own
/// instance and counters, and the trap window, quarantine, probation and
/// current version it shares with the same stage on every other worker
/// ([`Stage::share_health`]), so a plugin is quarantined or rolled back
/// once, whichever worker saw the traps.
pub struct Stage {
    /// The plugin's name in logs, metrics and dead-letter reasons.
    pub name: String,
    /// The component this copy's instance runs, or `None` for a native
    /// stage (or an unloaded one).
    plugin: Option<Arc<Plugin>>,
    backend: Box<dyn StagePlugin>,
    /// The [`Health::generation`] `backend` was made for.
    generation: u64,
    /// Unloaded (its file removed): not called until a swap.
    unloaded: bool,
    /// What this copy has done so far.
    pub counters: StageCounters,
    /// What of `counters` was already added to the observer's totals
    /// (a cell: publishing happens through the shared `&Stage` walk).
    published: std::cell::RefCell<StageCounters>,
    /// Shared with the same stage on the other workers.
    health: Arc<Mutex<Health>>,
}

/// What every worker's copy of one stage shares.
struct Health {
    /// The version the stage runs now (changed by a swap or a rollback on
    /// any worker; each copy follows at its next batch, [`Stage::sync`]).
    plugin: Option<Arc<Plugin>>,
    /// Bumped whenever `plugin` or `unloaded` changes.
    generation: u64,
    policy: QuarantinePolicy,
    recent_traps: VecDeque<Instant>,
    quarantined: bool,
    /// Unloaded because its file was removed (`[reload] on_remove =
    /// "unload"`): not called, like a quarantined stage, until a swap.
    unloaded: bool,
    /// Where latency, traps, quarantine and counters are published for
    /// `/metrics`, `/plugins` and lifecycle events; `None` when unobserved.
    observer: Option<Arc<PluginStatus>>,
    /// The last good version while a freshly swapped one is on probation.
    probation: Option<Probation>,
}

impl Stage {
    /// A stage running `plugin`, named `name`.
    pub fn new(name: String, plugin: &Arc<Plugin>, policy: QuarantinePolicy) -> Self {
        let mut stage = Self::native(name, Box::new(plugin.started_instance()), policy);
        stage.plugin = Some(plugin.clone());
        stage.health_mut().plugin = Some(plugin.clone());
        stage
    }

    /// A stage running native code (see [`NativeStages`](super::NativeStages)).
    pub fn native(name: String, backend: Box<dyn StagePlugin>, policy: QuarantinePolicy) -> Self {
        Stage {
            name,
            plugin: None,
            backend,
            generation: 0,
            unloaded: false,
            counters: StageCounters::default(),
            published: Default::default(),
            health: Arc::new(Mutex::new(Health {
                plugin: None,
                generation: 0,
                policy,
                recent_traps: VecDeque::new(),
                quarantined: false,
                unloaded: false,
                observer: None,
                probation: None,
            })),
        }
    }

    fn health_mut(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes this copy share `leader`'s trap window, quarantine, probation,
    /// version and observer (the same stage built for another worker).
    /// It also runs the leader's loaded plugin rather than its own load of
    /// the same file, so every worker's instance runs one copy of the
    /// compiled code (each load maps its own: ~0.2–0.6 MB per example
    /// guest per worker).
    pub fn share_health(&mut self, leader: &Stage) {
        self.health = leader.health.clone();
        if let (Some(mine), Some(theirs)) = (&self.plugin, &leader.plugin)
            && !Arc::ptr_eq(mine, theirs)
        {
            self.backend = Box::new(theirs.started_instance());
            self.plugin = Some(theirs.clone());
        }
        self.sync();
    }

    /// A handle on this stage that another worker can build its own copy
    /// from ([`StageSeed::replica`]) or recognise its copy by.
    pub fn seed(&self) -> StageSeed {
        StageSeed {
            name: self.name.clone(),
            health: self.health.clone(),
        }
    }

    /// Whether this is a copy of the stage `seed` was taken from.
    pub fn is(&self, seed: &StageSeed) -> bool {
        Arc::ptr_eq(&self.health, &seed.health)
    }

    /// Follows a swap, rollback or unload another worker's copy made:
    /// call between batches, so a batch runs wholly on one version.
    pub fn sync(&mut self) {
        let health = self.health_mut();
        if health.generation == self.generation {
            return;
        }
        let generation = health.generation;
        let (plugin, unloaded) = (health.plugin.clone(), health.unloaded);
        drop(health);
        self.generation = generation;
        if unloaded {
            self.unloaded = true;
            self.plugin = None;
            self.backend = Box::new(Unloaded);
        } else if let Some(plugin) = plugin {
            self.unloaded = false;
            self.backend = Box::new(plugin.started_instance());
            self.plugin = Some(plugin);
        }
    }

    /// Publishes this stage's latency, traps and quarantine to `status`
    /// from now on.
    pub fn observe(&mut self, status: Arc<PluginStatus>) {
        self.health_mut().observer = Some(status);
    }

    /// Adds what the counters grew by since the last call to the
    /// observer's totals, if any (every worker's copy adds its own).
    pub(crate) fn publish(&self) {
        let mut published = self.published.borrow_mut();
        if self.counters == *published {
            return;
        }
        let observer = self.health_mut().observer.clone();
        if let Some(o) = observer {
            let (now, then) = (&self.counters, &*published);
            o.add(&StageCounters {
                events_in: now.events_in.saturating_sub(then.events_in),
                events_out: now.events_out.saturating_sub(then.events_out),
                rejected: now.rejected.saturating_sub(then.rejected),
                dropped: now.dropped.saturating_sub(then.dropped),
                refused: now.refused.saturating_sub(then.refused),
                traps: now.traps.saturating_sub(then.traps),
                calls: now.calls.saturating_sub(then.calls),
            });
        }
        published.clone_from(&self.counters);
    }

    /// Whether the plugin has been quarantined.
    pub fn is_quarantined(&self) -> bool {
        self.health_mut().quarantined
    }

    /// Whether the plugin was unloaded (its file removed).
    pub fn is_unloaded(&self) -> bool {
        self.unloaded
    }

    /// Why the stage is not being called, for dead-letter reasons:
    /// `quarantined` or `unloaded`.
    pub fn unavailable(&self) -> &'static str {
        if self.unloaded || self.health_mut().unloaded {
            "unloaded (its file was removed)"
        } else {
            "quarantined"
        }
    }

    /// The status this stage publishes to, if observed.
    pub fn status(&self) -> Option<Arc<PluginStatus>> {
        self.health_mut().observer.clone()
    }

    /// Drops the plugin's instance (freeing its memory) and stops calling
    /// it; the chain applies the kind's failure policy until the next
    /// [`Stage::swap`]. No rollback is possible from here, so probation ends.
    /// Other workers' copies follow at their next batch.
    pub fn unload(&mut self) {
        let mut health = self.health_mut();
        if health.unloaded {
            drop(health);
            self.sync();
            return;
        }
        health.unloaded = true;
        health.probation = None;
        health.generation += 1;
        let sha = health.plugin.take().map(|p| p.sha256.clone());
        if let Some(o) = &health.observer {
            o.unloaded();
        }
        drop(health);
        self.sync();
        tracing::warn!(plugin = %self.name, sha256 = sha.as_deref().unwrap_or(""),
            "plugin unloaded: its file was removed; the stage applies its failure policy until a new file is deployed");
    }

    /// The component this stage runs; `None` for a native stage. Copies
    /// on several workers run the same one (see [`Stage::share_health`]).
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
        let observer = {
            let health = self.health_mut();
            if health.quarantined || health.unloaded || self.unloaded {
                return None;
            }
            health.observer.clone()
        };
        self.counters.calls += 1;
        let started = Instant::now();
        let result = call(self.backend.as_mut());
        if let Some(o) = &observer {
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
    /// one traps too often soon after the swap. Other workers' copies
    /// follow at their next batch ([`Stage::sync`]).
    pub fn swap(&mut self, plugin: Arc<Plugin>, rollback: Option<Rollback>) {
        let mut health = self.health_mut();
        let previous = health
            .plugin
            .replace(plugin.clone())
            .or(self.plugin.clone());
        health.generation += 1;
        health.recent_traps.clear();
        health.quarantined = false;
        health.unloaded = false;
        if let Some(o) = &health.observer {
            o.swapped(&plugin, previous.as_ref().map(|p| p.sha256.as_str()));
        }
        tracing::info!(plugin = %self.name, sha256 = %plugin.sha256,
            from = previous.as_ref().map(|p| p.sha256.as_str()).unwrap_or(""),
            "plugin reloaded");
        health.probation = match (previous, rollback) {
            (Some(previous), Some(rollback)) => Some(Probation::new(previous, rollback)),
            _ => None,
        };
        drop(health);
        self.sync();
    }

    /// Restores the version kept for probation: the bad one is quarantined
    /// by hash so the reloader will not load it again.
    fn roll_back(&mut self, health: &mut Health, err: &CallError) {
        let Some(probation) = health.probation.take() else {
            return;
        };
        let good = probation.previous.clone();
        let bad = health.plugin.replace(good.clone());
        health.generation += 1;
        health.recent_traps.clear();
        health.quarantined = false;
        if let Some(bad) = &bad {
            probation
                .rollback
                .ledger
                .rolled_back(&bad.path, &bad.sha256, &good.sha256);
            tracing::error!(plugin = %self.name, bad = %bad.sha256, restored = %good.sha256,
                traps = probation.traps, error = %err, "new plugin version rolled back");
            if let Some(o) = &health.observer {
                o.rolled_back(bad, &good, probation.traps, &err.to_string());
            }
        }
    }

    fn record_trap(&mut self, err: &CallError) {
        let health_arc = self.health.clone();
        let mut health = health_arc.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(p) = &mut health.probation {
            if p.trapped(now) {
                self.roll_back(&mut health, err);
                drop(health);
                self.sync();
                return;
            }
            if p.expired(now) {
                health.probation = None;
            }
        }
        health.recent_traps.push_back(now);
        let window = health.policy.window;
        while health
            .recent_traps
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            health.recent_traps.pop_front();
        }
        tracing::warn!(plugin = %self.name, error = %err, "plugin call failed");
        if let Some(o) = &health.observer {
            // Lifecycle events may be shipped as data: no guest output.
            o.trapped(&err.without_guest_output(), health.recent_traps.len());
        }
        if health.recent_traps.len() >= health.policy.threshold as usize && !health.quarantined {
            if health.probation.is_some() {
                // A new version that would be quarantined is rolled back.
                self.roll_back(&mut health, err);
                drop(health);
                self.sync();
                return;
            }
            health.quarantined = true;
            if let Some(o) = &health.observer {
                o.quarantined(health.recent_traps.len(), health.policy.window);
            }
            tracing::error!(
                plugin = %self.name,
                traps = health.recent_traps.len(),
                window_s = health.policy.window.as_secs(),
                "plugin quarantined after repeated traps"
            );
        }
    }
}

/// A stage as another worker sees it: enough to build a copy that shares
/// its health (a stage a config reload added on the first worker).
pub struct StageSeed {
    name: String,
    health: Arc<Mutex<Health>>,
}

impl StageSeed {
    /// A fresh instance of the version the stage runs now, sharing its
    /// health. `None` for a native or unloaded stage (natives are built
    /// per worker at start, never by a reload).
    pub fn replica(&self) -> Option<Stage> {
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let plugin = health.plugin.clone()?;
        let (policy, generation) = (health.policy, health.generation);
        drop(health);
        let mut stage = Stage::native(
            self.name.clone(),
            Box::new(plugin.started_instance()),
            policy,
        );
        stage.plugin = Some(plugin);
        stage.health = self.health.clone();
        stage.generation = generation;
        Some(stage)
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
    fn decode_frames_checked(
        &mut self,
        _frames: crate::plugin::Frames<'_>,
    ) -> Result<Vec<Result<Vec<crate::plugin::Event>, crate::plugin::FrameError>>, CallError> {
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
