//! Stages backed by native Rust instead of a sandboxed component.
//!
//! The sandbox is what lets fleets ship their own stages, but it has a
//! price per event; the pipeline benchmark measures that price by running
//! the very same pipeline with native twins of the example guests. A
//! [`NativeStages`] registry maps a plugin path named in the config to a
//! factory; [`Pipeline::build_with`](super::Pipeline::build_with) uses the
//! factory instead of loading the file. Nothing in the product registers
//! native stages: `halyard run` always loads components.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::plugin::{Action, CallError, Event, Frame, PluginInstance, PluginKind, Verdict};

/// The calls a stage makes on its plugin, whatever runs it. Each method
/// has the contract of the WIT export of the same name: one result per
/// input, in order.
pub trait StagePlugin: Send {
    /// A source's poll (see `PluginInstance::poll`).
    fn poll(&mut self, max: u32) -> Result<Vec<Event>, CallError>;
    /// A decoder's decode.
    fn decode(&mut self, frames: &[Frame]) -> Result<Vec<Result<Vec<Event>, String>>, CallError>;
    /// A validator's validate.
    fn validate(&mut self, events: &[Event]) -> Result<Vec<Verdict>, CallError>;
    /// A privacy policy's redact.
    fn redact(&mut self, events: &[Event]) -> Result<Vec<Action>, CallError>;
    /// A sampler's sample.
    fn sample(&mut self, events: &[Event]) -> Result<Vec<bool>, CallError>;
}

impl StagePlugin for PluginInstance {
    fn poll(&mut self, max: u32) -> Result<Vec<Event>, CallError> {
        PluginInstance::poll(self, max)
    }
    fn decode(&mut self, frames: &[Frame]) -> Result<Vec<Result<Vec<Event>, String>>, CallError> {
        PluginInstance::decode(self, frames)
    }
    fn validate(&mut self, events: &[Event]) -> Result<Vec<Verdict>, CallError> {
        PluginInstance::validate(self, events)
    }
    fn redact(&mut self, events: &[Event]) -> Result<Vec<Action>, CallError> {
        PluginInstance::redact(self, events)
    }
    fn sample(&mut self, events: &[Event]) -> Result<Vec<bool>, CallError> {
        PluginInstance::sample(self, events)
    }
}

/// Builds a native stage from the plugin's config (the same key/values a
/// component would get).
pub type NativeFactory =
    Arc<dyn Fn(&BTreeMap<String, String>) -> Box<dyn StagePlugin> + Send + Sync>;

/// Native stages by the plugin path they stand in for.
#[derive(Clone, Default)]
pub struct NativeStages {
    by_path: HashMap<PathBuf, (PluginKind, NativeFactory)>,
}

impl NativeStages {
    /// Makes `path` (as written in the config) resolve to `factory` for a
    /// stage of `kind`.
    pub fn register(&mut self, path: impl Into<PathBuf>, kind: PluginKind, factory: NativeFactory) {
        self.by_path.insert(path.into(), (kind, factory));
    }

    /// The factory standing in for `path` as a `kind`, if any.
    pub(crate) fn get(&self, path: &Path, kind: PluginKind) -> Option<&NativeFactory> {
        self.by_path
            .get(path)
            .filter(|(k, _)| *k == kind)
            .map(|(_, f)| f)
    }
}
