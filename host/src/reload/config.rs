//! Config reload: what a changed config file changes while the host runs.
//!
//! The whole change is worked out first ([`ConfigPlan`]): every plugin it
//! adds or reconfigures is loaded and checked on the reloader's thread. A
//! single refusal refuses the change (`config.rejected`) and nothing of it
//! is applied. Then, between two batches, decoders and sources are swapped,
//! the chains are rebuilt, and `[batch]` and `[retry]` are sent to the
//! shipper and the transport. Other sections are reported as needing a
//! restart (`config.reloaded` lists both).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::mpsc::channel;

use super::{StageKey, State, Target, swap, watched};
use crate::config::HostConfig;
use crate::lifecycle::new_correlation_id;
use crate::pipeline::{ChainPlan, Slot};
use crate::plugin::{Plugin, PluginKind};
use crate::run::Work;

impl State {
    /// Re-reads the config and applies what can change live: plugin config,
    /// grants and limits (the stage is reloaded with them), stage chains
    /// (rebuilt between two batches), `[batch]` and `[retry]`. Everything
    /// else is reported as needing a restart. Every plugin the change needs
    /// is loaded before anything is applied; a refusal refuses the change.
    pub(super) fn reload_config(&mut self) {
        let Some(file) = self.config_file.clone() else {
            return;
        };
        let refuse = |this: &Self, reason: String| {
            tracing::error!(reason = %reason, "config change refused; the running config stays");
            this.lifecycle.emit(
                "config.rejected",
                &new_correlation_id(),
                serde_json::json!({"file": file.display().to_string(), "reason": reason}),
            );
        };
        let new = match HostConfig::load(&file) {
            Ok(c) => c,
            Err(err) => return refuse(self, err.to_string()),
        };
        let plan = match self.plan(&new) {
            Ok(plan) => plan,
            Err(reason) => return refuse(self, reason),
        };
        let mut applied = Vec::new();
        if !plan.swaps.is_empty() {
            applied.extend(plan.swaps.iter().map(|(role, _, _)| role.clone()));
            let plugins = plan.swaps.into_iter().map(|(_, k, p)| (k, p)).collect();
            self.swap(plugins);
        }
        if let Some((chains, hashes)) = plan.chains {
            let (reply, done) = channel();
            if self
                .work
                .send(Work::Rechain {
                    plan: chains,
                    reply,
                })
                .is_ok()
                && done.recv().is_ok()
            {
                self.loaded
                    .retain(|k, _| k.input.is_some() || k.kind == PluginKind::Detector);
                self.loaded.extend(hashes);
                applied.push("stages (chains)".to_string());
            }
        }
        applied.extend(self.live.apply(&self.running, &new));
        self.targets = plan.targets;
        self.running.stages.validate = new.stages.validate.clone();
        self.running.stages.privacy = new.stages.privacy.clone();
        self.running.stages.sample = new.stages.sample.clone();
        self.running.batch = new.batch.clone();
        self.running.retry = new.retry.clone();
        for t in &mut self.running.transports.list {
            if let Some(n) = new.transports.list.iter().find(|n| n.name == t.name) {
                t.batch = n.batch.clone();
                t.retry = n.retry.clone();
            }
        }
        if !plan.restart.iter().any(|r| r.starts_with("input")) {
            self.running.inputs = new.inputs.clone();
        }
        if let Some(w) = &mut self.watcher
            && let Err(err) = w.set_files(&watched(&self.targets, self.config_file.as_ref()))
        {
            tracing::error!(error = %err, "cannot watch a new plugin directory; reload it with SIGHUP");
        }
        for what in &plan.restart {
            tracing::warn!(section = %what, "config change needs a restart to take effect");
        }
        tracing::info!(?applied, "config reloaded");
        self.lifecycle.emit(
            "config.reloaded",
            &new_correlation_id(),
            serde_json::json!({"file": file.display().to_string(), "applied": applied,
                "needs_restart": plan.restart}),
        );
    }

    /// Works out (and loads) what `new` changes; `Err` names the first
    /// plugin that was refused.
    fn plan(&self, new: &HostConfig) -> Result<ConfigPlan, String> {
        if let Some(licence) = &self.licence {
            licence.check_plugins(new).map_err(|e| e.to_string())?;
        }
        let restart = needs_restart(&self.running, new);
        let new_targets = swap::targets(new);
        // Decoders and sources: an input that is still there is reloaded
        // when its plugin entry changed; added or removed inputs need a
        // restart (they are host I/O), so their old targets stay.
        let mut targets = Vec::new();
        let mut swaps = Vec::new();
        for old in self.targets.iter().filter(|t| t.key.input.is_some()) {
            match new_targets.iter().find(|t| t.key == old.key) {
                Some(t) => {
                    if t.plugin != old.plugin {
                        swaps.push((t.role.clone(), t.key.clone(), self.load(t)?));
                    }
                    targets.push(t.clone());
                }
                None => targets.push(old.clone()),
            }
        }
        // Chains: rebuilt when any entry changed; unchanged entries keep
        // their stage.
        // Detectors are not rebuilt by a reload (a change to them needs a
        // restart, see `needs_restart`); their files are still followed.
        let in_chain = |t: &&Target| t.key.input.is_none() && t.key.kind != PluginKind::Detector;
        targets.extend(
            self.targets
                .iter()
                .filter(|t| t.key.kind == PluginKind::Detector)
                .cloned(),
        );
        let old_chain: Vec<&Target> = self.targets.iter().filter(in_chain).collect();
        let new_chain: Vec<&Target> = new_targets.iter().filter(in_chain).collect();
        let same = old_chain.len() == new_chain.len()
            && old_chain
                .iter()
                .zip(&new_chain)
                .all(|(a, b)| a.key == b.key && a.plugin == b.plugin);
        let chains = if same {
            None
        } else {
            Some(self.plan_chains(&old_chain, &new_chain)?)
        };
        targets.extend(new_chain.into_iter().cloned());
        Ok(ConfigPlan {
            targets,
            swaps,
            chains,
            restart,
        })
    }

    /// The chain plan from `old` to `new` and each new stage's content
    /// hash; new entries are loaded here.
    #[allow(clippy::type_complexity)]
    fn plan_chains(
        &self,
        old: &[&Target],
        new: &[&Target],
    ) -> Result<(ChainPlan, Vec<(StageKey, String)>), String> {
        let mut plan = ChainPlan::default();
        let mut hashes = Vec::new();
        let mut used: HashSet<StageKey> = HashSet::new();
        for t in new {
            let kept = old.iter().find(|o| {
                o.key.kind == t.key.kind
                    && o.plugin == t.plugin
                    && !used.contains(&o.key)
                    && self.loaded.contains_key(&o.key)
            });
            // Else the same file in the same place with a new config (or
            // grants, limits, name): reconfigured in place.
            let same_file = || {
                old.iter().find(|o| {
                    o.key == t.key
                        && o.file == t.file
                        && o.plugin.name == t.plugin.name
                        && !used.contains(&o.key)
                        && self.loaded.contains_key(&o.key)
                })
            };
            let (slot, hash) = match kept {
                Some(o) => {
                    used.insert(o.key.clone());
                    let hash = self.loaded.get(&o.key).cloned().unwrap_or_default();
                    (Slot::Keep(o.key.index), hash)
                }
                None if let Some(o) = same_file() => {
                    let key = o.key.clone();
                    let plugin = self.load(t)?;
                    let hash = plugin.sha256.clone();
                    used.insert(key.clone());
                    (Slot::Reconfigure(key.index, plugin), hash)
                }
                None => {
                    let plugin = self.load(t)?;
                    let hash = plugin.sha256.clone();
                    let name = t
                        .plugin
                        .name
                        .clone()
                        .unwrap_or_else(|| plugin.info.name.clone());
                    (Slot::Load { name, plugin }, hash)
                }
            };
            hashes.push((t.key.clone(), hash));
            match t.key.kind {
                PluginKind::Validator => plan.validators.push(slot),
                PluginKind::Privacy => plan.privacy.push(slot),
                _ => plan.samplers.push(slot),
            }
        }
        Ok((plan, hashes))
    }
}

/// What a config change will do, worked out before any of it is applied.
struct ConfigPlan {
    /// The stages the reloader follows from now on.
    targets: Vec<Target>,
    /// Decoders and sources to swap (role, stage, new version).
    swaps: Vec<(String, StageKey, Arc<Plugin>)>,
    /// New chains and their stages' hashes, when a chain entry changed.
    chains: Option<(ChainPlan, Vec<(StageKey, String)>)>,
    /// Sections that changed but need a restart.
    restart: Vec<String>,
}

/// The sections that differ between `old` and `new` and are not applied
/// live.
fn needs_restart(old: &HostConfig, new: &HostConfig) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |name: &str, differ: bool| {
        if differ {
            out.push(name.to_string());
        }
    };
    check("host", old.host != new.host);
    check("input (other than plugin settings)", {
        let strip = |c: &HostConfig| {
            c.inputs
                .iter()
                .map(|i| {
                    let mut t = toml::Table::try_from(i).unwrap_or_default();
                    t.remove("decoder");
                    t.remove("source");
                    t
                })
                .collect::<Vec<_>>()
        };
        strip(old) != strip(new)
    });
    check(
        "stages.quarantine_*",
        old.stages.quarantine_after_traps != new.stages.quarantine_after_traps
            || old.stages.quarantine_window_s != new.stages.quarantine_window_s,
    );
    check(
        "stages.detect and stages.kv_max_bytes",
        old.stages.detect != new.stages.detect
            || old.stages.kv_max_bytes != new.stages.kv_max_bytes,
    );
    check("buffer", old.buffer != new.buffer);
    check("transport (other than batch and retry)", {
        let strip = |c: &HostConfig| {
            c.transports
                .list
                .iter()
                .map(|t| {
                    let mut t = t.clone();
                    t.batch = None;
                    t.retry = None;
                    // The effective breaker: the top-level one or its own.
                    t.breaker = Some(t.breaker_or(&c.breaker).clone());
                    t
                })
                .collect::<Vec<_>>()
        };
        strip(old) != strip(new)
    });
    check("breaker", old.breaker != new.breaker);
    check("health", old.health != new.health);
    check("log", old.log != new.log);
    check("lifecycle", old.lifecycle != new.lifecycle);
    check("shutdown", old.shutdown != new.shutdown);
    check("plugins", old.plugins != new.plugins);
    check("reload", old.reload != new.reload);
    check("rollout", old.rollout != new.rollout);
    check("licence", old.licence != new.licence);
    out
}
