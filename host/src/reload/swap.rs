//! Handing new plugin versions to the pipeline thread.
//!
//! The reloader compiles and checks a new version on its own thread; only
//! the finished `Arc<Plugin>` crosses to the pipeline thread, as one
//! [`Swap`] request in the same queue as the ingest requests. The pipeline
//! thread applies it between two requests, and every request is one batch
//! and one buffer commit, so each batch runs wholly on the old version or
//! wholly on the new one, and nothing in flight is dropped or re-run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::Sender;

use crate::config::{HostConfig, InputPlugin, PluginRef};
use crate::pipeline::Pipeline;
use crate::plugin::{Plugin, PluginKind};

use super::rollback::Rollback;

/// Which stage of the pipeline: a decoder or source by input name, a chain
/// stage by kind and position.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StageKey {
    /// The stage's kind.
    pub kind: PluginKind,
    /// The input, for decoders and sources.
    pub input: Option<String>,
    /// Position in its chain (0 for decoders and sources).
    pub index: usize,
}

/// A configured stage as the reloader sees it.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where it sits.
    pub key: StageKey,
    /// How the config names it (`stages.validate[0]`, `input web decoder`).
    pub role: String,
    /// Its config entry (file, plugin config, grants, limits).
    pub plugin: PluginRef,
    /// The file, made absolute, as file events name it.
    pub file: PathBuf,
}

/// Every plugin stage `config` describes, in pipeline order.
pub fn targets(config: &HostConfig) -> Vec<Target> {
    let mut out = Vec::new();
    let mut push = |kind, input: Option<String>, index, role: String, plugin: &PluginRef| {
        out.push(Target {
            key: StageKey { kind, input, index },
            role,
            file: absolute(&plugin.plugin),
            plugin: plugin.clone(),
        });
    };
    for input in &config.inputs {
        let name = input.name();
        let Some(plugin) = input.plugin() else {
            continue;
        };
        let kind = match plugin {
            InputPlugin::Source(_) => PluginKind::Source,
            InputPlugin::Decoder(_) => PluginKind::Decoder,
        };
        push(
            kind,
            Some(name.to_string()),
            0,
            format!("input {name} {}", plugin.role()),
            plugin.plugin(),
        );
    }
    for (kind, what, refs) in [
        (PluginKind::Validator, "validate", &config.stages.validate),
        (PluginKind::Detector, "detect", &config.stages.detect),
        (PluginKind::Privacy, "privacy", &config.stages.privacy),
        (PluginKind::Sampler, "sample", &config.stages.sample),
    ] {
        for (i, r) in refs.iter().enumerate() {
            push(kind, None, i, format!("stages.{what}[{i}]"), r);
        }
    }
    out
}

/// `path` made absolute against the working directory (as the host
/// resolves it when loading), without resolving symlinks.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// New versions for some stages, applied together between two batches.
pub struct Swap {
    /// The stages and what they run from now on.
    pub plugins: Vec<(StageKey, Arc<Plugin>)>,
    /// How a swapped stage rolls back.
    pub rollback: Rollback,
    /// Gets the keys that were swapped (a key no stage has is skipped).
    pub reply: Sender<Vec<StageKey>>,
}

/// Stages to unload because their file was removed.
pub struct Unload {
    /// The stages.
    pub keys: Vec<StageKey>,
    /// Gets the keys that were unloaded.
    pub reply: Sender<Vec<StageKey>>,
}

/// Every stage of `pipeline` with its key, in pipeline order.
fn keyed(pipeline: &mut Pipeline) -> Vec<(StageKey, &mut crate::pipeline::Stage)> {
    let mut index = std::collections::HashMap::<PluginKind, usize>::new();
    pipeline
        .stages_with_roles()
        .into_iter()
        .map(|(kind, input, stage)| {
            let key = StageKey {
                kind,
                index: if input.is_some() {
                    0
                } else {
                    let i = index.entry(kind).or_insert(0);
                    *i += 1;
                    *i - 1
                },
                input,
            };
            (key, stage)
        })
        .collect()
}

/// The content hash each plugin stage of `pipeline` runs (native stages
/// have none), taken before the pipeline thread starts: the reloader's
/// starting point, so a file changed since the build is seen as changed.
pub fn running(pipeline: &mut Pipeline) -> std::collections::HashMap<StageKey, String> {
    keyed(pipeline)
        .into_iter()
        .filter_map(|(key, stage)| stage.plugin().map(|p| (key, p.sha256.clone())))
        .collect()
}

/// Applies `swap` on the pipeline thread.
pub fn apply(pipeline: &mut Pipeline, swap: Swap) {
    let mut done = Vec::new();
    for (key, stage) in keyed(pipeline) {
        if let Some((_, plugin)) = swap.plugins.iter().find(|(k, _)| *k == key) {
            stage.swap(plugin.clone(), Some(swap.rollback.clone()));
            done.push(key);
        }
    }
    let _ = swap.reply.send(done);
}

/// Applies `unload` on the pipeline thread.
pub fn unload(pipeline: &mut Pipeline, unload: Unload) {
    let mut done = Vec::new();
    for (key, stage) in keyed(pipeline) {
        if unload.keys.contains(&key) {
            stage.unload();
            done.push(key);
        }
    }
    let _ = unload.reply.send(done);
}
