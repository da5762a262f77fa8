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

use crate::plugin::{
    Action, CallError, Detected, Event, Frame, FrameError, Frames, KvHandle, PluginInstance,
    PluginKind, Polled, Redacted, Verdict,
};

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

    /// A detector's detect, inside a `kv` transaction on `kv` (see
    /// `PluginInstance::detect`). Only components are detectors: native
    /// stand-ins refuse (the chain fails open).
    fn detect(&mut self, events: &[Event], kv: &KvHandle) -> Result<Detected, CallError> {
        let _ = (events, kv);
        Err(CallError::Restart {
            plugin: "native".into(),
            message: "native stages are not detectors".into(),
        })
    }
    /// A detector's tick; see [`StagePlugin::detect`].
    fn tick(&mut self, now_ns: i64, kv: &KvHandle) -> Result<Detected, CallError> {
        let _ = (now_ns, kv);
        Err(CallError::Restart {
            plugin: "native".into(),
            message: "native stages are not detectors".into(),
        })
    }

    /// A poll with the events the host refused kept apart (see
    /// `PluginInstance::poll_checked`). Native code is trusted: by default
    /// nothing is refused.
    fn poll_checked(&mut self, max: u32) -> Result<Polled, CallError> {
        self.poll(max).map(|events| Polled {
            events,
            refused: Vec::new(),
        })
    }
    /// A decode telling the decoder's failures from the host's refusals
    /// (see `PluginInstance::decode_checked`).
    fn decode_checked(
        &mut self,
        frames: &[Frame],
    ) -> Result<Vec<Result<Vec<Event>, FrameError>>, CallError> {
        self.decode(frames).map(|results| {
            results
                .into_iter()
                .map(|r| r.map_err(FrameError::Decoder))
                .collect()
        })
    }
    /// [`StagePlugin::decode_checked`] for frames in either shape (see
    /// `PluginInstance::decode_frames_checked`); this is what the pipeline
    /// calls. By default packed frames are made into records first.
    fn decode_frames_checked(
        &mut self,
        frames: Frames<'_>,
    ) -> Result<Vec<Result<Vec<Event>, FrameError>>, CallError> {
        self.decode_checked(&frames.owned())
    }
    /// A redact with the rewrites the host refused (see
    /// `PluginInstance::redact_checked`).
    fn redact_checked(&mut self, events: &[Event]) -> Result<Redacted, CallError> {
        self.redact(events).map(|actions| Redacted {
            actions,
            refused: Vec::new(),
        })
    }
    /// A redact that may edit `events` where they lie; [`Action::Keep`]
    /// then keeps the event as it now is (see
    /// `PluginInstance::redact_in_place`). This is what the pipeline
    /// calls. By default nothing is edited in place: edits come back as
    /// rewrites.
    fn redact_in_place(&mut self, events: &mut [Event]) -> Result<Redacted, CallError> {
        self.redact_checked(events)
    }
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
    fn poll_checked(&mut self, max: u32) -> Result<Polled, CallError> {
        PluginInstance::poll_checked(self, max)
    }
    fn decode_checked(
        &mut self,
        frames: &[Frame],
    ) -> Result<Vec<Result<Vec<Event>, FrameError>>, CallError> {
        PluginInstance::decode_checked(self, frames)
    }
    fn decode_frames_checked(
        &mut self,
        frames: Frames<'_>,
    ) -> Result<Vec<Result<Vec<Event>, FrameError>>, CallError> {
        PluginInstance::decode_frames_checked(self, frames)
    }
    fn redact_checked(&mut self, events: &[Event]) -> Result<Redacted, CallError> {
        PluginInstance::redact_checked(self, events)
    }
    fn redact_in_place(&mut self, events: &mut [Event]) -> Result<Redacted, CallError> {
        PluginInstance::redact_in_place(self, events)
    }
    fn detect(&mut self, events: &[Event], kv: &KvHandle) -> Result<Detected, CallError> {
        PluginInstance::detect(self, events, kv)
    }
    fn tick(&mut self, now_ns: i64, kv: &KvHandle) -> Result<Detected, CallError> {
        PluginInstance::tick(self, now_ns, kv)
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
