//! Why a plugin could not be loaded, and why a call into one failed.
//!
//! The two are kept apart on purpose: a load error means "this file is not a
//! usable plugin" (refuse it, keep the old version), a call error means "this
//! batch did not get a result" (apply the stage's failure policy).

use std::path::PathBuf;

use super::kind::PluginKind;

/// A component file that was refused, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not a regular file, is over the size cap, or cannot be
    /// read (see [`super::file`]).
    #[error(transparent)]
    File(#[from] super::file::FileError),
    /// The file does not start with the WebAssembly magic bytes.
    #[error(
        "{path} is not a WebAssembly file (no `\\0asm` header) nor a precompiled plugin (no ELF header)"
    )]
    NotWasm {
        /// The file.
        path: PathBuf,
    },
    /// The file is a core module: plugins must be components.
    #[error(
        "{path} is a core WebAssembly module, not a component: build the plugin for the \
         wasm32-wasip2 target (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule {
        /// The file.
        path: PathBuf,
    },
    /// Cranelift or the validator rejected the component (truncated or
    /// corrupt file, unsupported feature).
    #[error("{path} is not a valid component: {message}")]
    Compile {
        /// The file.
        path: PathBuf,
        /// The compiler's reason.
        message: String,
    },
    /// A precompiled plugin (`.cwasm`) without a valid signature by a
    /// trusted key: it is native code, so nothing else vouches for it.
    #[error(
        "{path} is a precompiled plugin (native code): it loads only with a signature by a \
         trusted key (`halyard plugin compile --key`, and the key in [plugins] trusted_keys)"
    )]
    PrecompiledUnsigned {
        /// The file.
        path: PathBuf,
    },
    /// wasmtime refused a signed precompiled plugin: made for another
    /// target or CPU, another wasmtime version, or other engine settings.
    #[error(
        "{path} is a precompiled plugin this host cannot run: {message} (compile it again with \
         `halyard plugin compile --target` for this device, with the same halyard version)"
    )]
    Precompiled {
        /// The file.
        path: PathBuf,
        /// wasmtime's reason.
        message: String,
    },
    /// This build has no compiler, and the file is a component.
    #[error(
        "{path} is a WebAssembly component, and this halyard was built without the compiler: \
         it runs only precompiled plugins (`halyard plugin compile --target … --key …` on a full \
         build, then point the config at the `.cwasm`)"
    )]
    NoCompiler {
        /// The file.
        path: PathBuf,
    },
    /// The component imports something plugins may not use.
    #[error(
        "forbidden import `{import}`: plugins may import only halyard:plugin/{{types,log,clock,config,kv}} \
         and the WASI interfaces granted to them{hint}"
    )]
    ForbiddenImport {
        /// The import's name.
        import: String,
        /// Extra advice (e.g. which grant would allow it).
        hint: String,
    },
    /// A required export is missing, so the component does not implement the
    /// world of the declared kind.
    #[error("missing export `{export}`: a {kind} must export {required}{found}")]
    MissingExport {
        /// The declared (or guessed) kind.
        kind: PluginKind,
        /// The first missing export.
        export: &'static str,
        /// Every export the kind needs, for the message.
        required: String,
        /// What the component looks like instead, if it matches another kind.
        found: String,
    },
    /// Signing is required (trusted keys are configured) and the component
    /// is unsigned, its `.sig` is garbled, names an untrusted key, does not
    /// verify, or was made for other bytes.
    #[error("{path}: signature refused: {source}")]
    Signature {
        /// The component file.
        path: PathBuf,
        /// Which check failed (boxed: it is large and rare).
        source: Box<halyard_trust::plugin_sig::SignatureError>,
    },
    /// No kind was declared and the exports match no kind (or several).
    #[error(
        "cannot tell the plugin kind: exports are [{exports}], none of poll, decode, validate, detect, redact or sample (or more than one)"
    )]
    UnknownKind {
        /// The component's exports.
        exports: String,
    },
    /// An export exists but its signature is not the one in the WIT.
    #[error("export `{export}` has the wrong type for a {kind}: {message}")]
    ExportType {
        /// The kind checked against.
        kind: PluginKind,
        /// The export.
        export: &'static str,
        /// Wasmtime's type-check message.
        message: String,
    },
    /// The component could not be linked or instantiated.
    #[error("cannot instantiate: {message}")]
    Instantiate {
        /// Wasmtime's message.
        message: String,
    },
    /// `init` refused the plugin's config.
    #[error("plugin refused its config{}: {message}", key.as_ref().map(|k| format!(" (key `{k}`)")).unwrap_or_default())]
    Init {
        /// The config key at fault, if the plugin named one.
        key: Option<String>,
        /// The plugin's reason.
        message: String,
    },
    /// `info` or `init` trapped or broke an output cap.
    #[error("plugin failed while starting: {0}")]
    Start(#[source] CallError),
    /// The engine itself could not be built (bad engine settings).
    #[error("cannot create the WebAssembly engine: {message}")]
    Engine {
        /// Wasmtime's message.
        message: String,
    },
}

/// Why a guest trapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrapCause {
    /// The call ran past its CPU deadline (epoch interruption).
    Deadline,
    /// The guest tried to grow its memory past the cap.
    Memory,
    /// The guest panicked or hit `unreachable`.
    Panic,
    /// Any other trap (out-of-bounds access, stack overflow, bad lift…).
    Other,
}

/// A call into a plugin that produced no usable result. The instance has
/// already been discarded; the next call gets a fresh one.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The guest trapped.
    #[error(
        "{plugin} trapped ({cause:?}): {message}{}",
        guest_output.as_deref().map(|l| format!(" (guest output: {l})")).unwrap_or_default()
    )]
    Trap {
        /// The plugin's name.
        plugin: String,
        /// The class of trap, for metrics and policy.
        cause: TrapCause,
        /// A readable account of the trap, written by the host.
        message: String,
        /// The guest's last lines of output (a panic message, a traceback):
        /// in logs and CLI output, never in stored data, since a guest may
        /// print the events it was given.
        guest_output: Option<String>,
    },
    /// The guest returned output that breaks a cap or the contract.
    #[error("{plugin} returned bad output: {message}")]
    BadOutput {
        /// The plugin's name.
        plugin: String,
        /// Which cap or rule was broken.
        message: String,
    },
    /// A fresh instance could not be started (its `init` failed).
    #[error("{plugin} could not be restarted: {message}")]
    Restart {
        /// The plugin's name.
        plugin: String,
        /// Why.
        message: String,
    },
    /// The host could not encode the batch for the plugin (a 0.2.0 batch
    /// past 4 GiB of 32-bit offsets); nothing was called.
    #[error("{plugin} could not be given its input: {message}")]
    Input {
        /// The plugin's name.
        plugin: String,
        /// Why.
        message: String,
    },
}

impl CallError {
    /// This error without the guest's own output: what may be stored with
    /// data (a dead letter's reason), where the privacy stages never ran
    /// over what the guest printed.
    pub fn without_guest_output(&self) -> String {
        match self {
            CallError::Trap {
                plugin,
                cause,
                message,
                ..
            } => format!("{plugin} trapped ({cause:?}): {message}"),
            other => other.to_string(),
        }
    }

    /// The trap cause, if this error is a trap.
    pub fn trap_cause(&self) -> Option<TrapCause> {
        match self {
            CallError::Trap { cause, .. } => Some(*cause),
            _ => None,
        }
    }
}
