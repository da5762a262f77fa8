//! The component runtime: everything between a `.wasm` file on disk and a
//! sandboxed call that cannot hurt the host.
//!
//! - [`bindings`]: the single `bindgen!` of the WIT package;
//! - [`kind`]: the six plugin kinds and the exports that identify them;
//! - [`contract`]: which contract version (0.1.0 or 0.2.0) a component
//!   implements, read off its stage export's signature;
//! - [`frames`]: a decode call's frames, owned one by one or packed in
//!   one buffer;
//! - [`flat`]: the 0.2.0 flat batch form (through the `halyard-flat` codec
//!   the guest SDK shares) and privacy patches;
//! - [`limits`]: memory, CPU and output caps, and capability grants;
//! - [`deadline`]: how every call is cut at its wall-clock deadline, even
//!   while the guest waits in a host call;
//! - [`call_mode`]: plain calls for plugins that cannot wait, the
//!   deadline mechanism for the rest;
//! - [`limiter`]: one memory budget for all of an instance's memories and
//!   tables;
//! - [`stdio`]: the guest's stdout/stderr, drained into the host log;
//! - [`engine`]: the shared engine, epoch ticker and linker ([`Runtime`]),
//!   and low-priority compiles for hot reload
//!   ([`lower_this_thread_priority`]);
//! - [`cache`]: precompiled artefacts on disk, keyed by content hash;
//! - [`host`]: the host imports (`log`, `clock`, `config`) and the deny-all
//!   WASI context;
//! - [`kv`]: the detectors' key-value import (contract 0.3.0), staged per
//!   call and committed with the batch;
//! - [`file`]: reading plugin files safely (regular files only, size cap,
//!   header first, never blocking);
//! - [`load`]: reading, checking and probing a component ([`Runtime::load`]);
//! - [`instance`]: calls under limits, with every trap contained;
//! - [`transient`]: host resource blips (a busy memfd seal) retried, told
//!   apart from guest faults, which are final;
//! - [`output`]: checks on guest output, and the refusals (per frame or
//!   event, never traps) they produce;
//! - [`error`]: why a load or a call failed.

pub mod bindings;
pub mod cache;
pub(crate) mod call_mode;
pub mod contract;
pub mod deadline;
pub mod engine;
pub mod error;
pub mod file;
pub mod flat;
pub mod frames;
pub mod host;
pub mod inspect;
pub mod instance;
pub mod kind;
pub mod kv;
pub mod limiter;
pub mod limits;
pub mod load;
pub(crate) mod output;
pub mod stdio;
pub mod transient;

use std::path::PathBuf;

use wasmtime::component::InstancePre;

pub use bindings::{
    Action, AttrValue, Attribute, Event, EventId, Frame, InitError, PluginInfo, Verdict,
};
pub use contract::Contract;
#[cfg(feature = "compiler")]
pub use engine::precompile_for;
pub use engine::{Runtime, lower_this_thread_priority};
pub use error::{CallError, LoadError, TrapCause};
pub use frames::{Frames, Packed};
pub use instance::{Detected, PluginInstance};
pub use kind::PluginKind;
pub use kv::{KvHandle, KvNamespace};
pub use limits::{Grants, Limits, NetworkGrant, SocketRule};
pub use load::PluginFormat;
pub use load::PluginOptions;
pub use output::{FrameError, Polled, Redacted};

/// A loaded, checked plugin: compiled, linked and known to start. Cheap to
/// share; each pipeline worker makes its own [`PluginInstance`] from it.
#[derive(Clone)]
pub struct Plugin {
    /// The world the component implements.
    pub kind: PluginKind,
    /// The contract version it was built against; both run side by side.
    pub contract: Contract,
    /// What the plugin says about itself (`info`).
    pub info: PluginInfo,
    /// Where it was loaded from.
    pub path: PathBuf,
    /// SHA-256 of the component bytes, hex: its identity in the cache, in
    /// provenance and in `/plugins`.
    pub sha256: String,
    /// Everything the component imports.
    pub imports: Vec<String>,
    /// Everything the component exports.
    pub exports: Vec<String>,
    /// The config, grants and limits it runs with.
    pub options: PluginOptions,
    /// Whether the compiled code came from the compile cache.
    pub from_cache: bool,
    /// Linked and ready to instantiate in ~15 µs.
    pub(crate) pre: InstancePre<host::HostState>,
    /// How its guest entries are made (see [`call_mode`]); `pre` is linked
    /// to match.
    pub(crate) call_mode: call_mode::CallMode,
}

impl Plugin {
    /// A new sandbox handle for this plugin; the sandbox starts on the
    /// first call.
    pub fn instance(self: &std::sync::Arc<Self>) -> PluginInstance {
        PluginInstance::new(self.clone())
    }

    /// A new sandbox handle with the sandbox started now (see
    /// [`PluginInstance::started`]): what pipeline stages use, so the first
    /// batch does not pay for instantiation and `init`.
    pub fn started_instance(self: &std::sync::Arc<Self>) -> PluginInstance {
        PluginInstance::started(self.clone())
    }

    /// Whether its calls are plain synchronous calls (it cannot wait in a
    /// host call, so the epoch alone bounds them) rather than the slower
    /// async mechanism that also cuts waits; `halyard plugin check` shows
    /// it so an author can see why a guest that imports `poll` costs more
    /// per call.
    pub fn calls_synchronously(&self) -> bool {
        self.call_mode == call_mode::CallMode::Sync
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("kind", &self.kind)
            .field("contract", &self.contract)
            .field("info", &self.info)
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}
