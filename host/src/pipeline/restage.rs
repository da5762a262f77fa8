//! Rebuilding the stage chains while the host runs (a config reload that
//! adds, removes or reorders validators, privacy policies or samplers).
//!
//! The reloader loads and checks every new plugin on its own thread; the
//! pipeline thread only moves stages between two batches, so each batch
//! runs wholly on the old chains or wholly on the new ones. A stage whose
//! config entry is unchanged is moved as it is, keeping its instance,
//! counters and trap window; one whose file stayed but whose config changed
//! keeps its counters and runs the reconfigured plugin; a stage left out is
//! dropped (`plugin.removed`).

use std::sync::Arc;

use super::{Pipeline, Stage};
use crate::plugin::{Plugin, PluginKind};
use crate::status::plugins::Registrar;

/// One position of a rebuilt chain.
pub enum Slot {
    /// The stage now at this index of the same kind's chain, moved as is.
    Keep(usize),
    /// The stage now at this index of the same kind's chain, moved and
    /// switched to `plugin` (the same file with a new config): it keeps its
    /// counters and publishes `plugin.reloaded`.
    Reconfigure(usize, Arc<Plugin>),
    /// A new stage running `plugin`, named `name`.
    Load {
        /// The name in logs, metrics and dead-letter reasons.
        name: String,
        /// The loaded and checked component.
        plugin: Arc<Plugin>,
    },
}

/// The three chains as they will be, in order.
#[derive(Default)]
pub struct ChainPlan {
    /// `stages.validate`.
    pub validators: Vec<Slot>,
    /// `stages.privacy`.
    pub privacy: Vec<Slot>,
    /// `stages.sample`.
    pub samplers: Vec<Slot>,
}

impl Pipeline {
    /// Keeps `registrar` to register stages a config reload adds.
    pub fn set_registrar(&mut self, registrar: Registrar) {
        self.registrar = Some(registrar);
    }

    /// Replaces the chains by `plan` (call between batches, on the pipeline
    /// thread). A `Keep` of an index that does not exist, or is kept twice,
    /// is skipped with an error log; the reloader never plans one.
    pub fn rechain(&mut self, plan: ChainPlan) {
        let mut old = std::mem::take(&mut self.chains);
        // A config reload does not change the detectors (a restart does):
        // they keep their instances and namespaces.
        self.chains.detectors = std::mem::take(&mut old.detectors);
        let mut removed = Vec::new();
        self.chains.validators = self.rebuild(
            PluginKind::Validator,
            old.validators,
            plan.validators,
            &mut removed,
        );
        self.chains.privacy =
            self.rebuild(PluginKind::Privacy, old.privacy, plan.privacy, &mut removed);
        self.chains.samplers = self.rebuild(
            PluginKind::Sampler,
            old.samplers,
            plan.samplers,
            &mut removed,
        );
        for stage in &removed {
            tracing::info!(plugin = %stage.name, "plugin removed from its chain by a config reload");
            if let Some(status) = stage.status() {
                status.removed();
            }
        }
        if let Some(registrar) = &self.registrar {
            let statuses = self.stages().filter_map(Stage::status).collect();
            registrar.list(statuses);
        }
    }

    fn rebuild(
        &self,
        kind: PluginKind,
        old: Vec<Stage>,
        plan: Vec<Slot>,
        removed: &mut Vec<Stage>,
    ) -> Vec<Stage> {
        let mut old: Vec<Option<Stage>> = old.into_iter().map(Some).collect();
        let mut out = Vec::with_capacity(plan.len());
        for slot in plan {
            match slot {
                Slot::Keep(i) => match old.get_mut(i).and_then(Option::take) {
                    Some(stage) => out.push(stage),
                    None => {
                        tracing::error!(%kind, index = i, "chain plan keeps a stage that is not there; skipped")
                    }
                },
                Slot::Reconfigure(i, plugin) => match old.get_mut(i).and_then(Option::take) {
                    Some(mut stage) => {
                        stage.swap(plugin, None);
                        out.push(stage);
                    }
                    None => {
                        tracing::error!(%kind, index = i, "chain plan reconfigures a stage that is not there; skipped")
                    }
                },
                Slot::Load { name, plugin } => {
                    let mut stage = Stage::new(name, &plugin, self.quarantine);
                    if let Some(registrar) = &self.registrar {
                        registrar.observe(kind, None, &mut stage);
                    }
                    out.push(stage);
                }
            }
        }
        removed.extend(old.into_iter().flatten());
        out
    }
}
