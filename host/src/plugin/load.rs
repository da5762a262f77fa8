//! Loading a component file into a [`Plugin`]: read, recognise, hash,
//! compile (or fetch from the compile cache), check it against the world of
//! its kind, and start one probe instance (`info` then `init`) so a plugin
//! that cannot run is refused at load, with the reason, rather than on its
//! first batch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::call_mode::CallMode;
use super::contract::Contract;
use super::engine::Runtime;
#[cfg(feature = "compiler")]
use super::engine::low_priority_thread;
use super::error::LoadError;
use super::instance::PluginInstance;
use super::kind::PluginKind;
use super::limits::{Grants, Limits};
use super::transient;
use super::{Plugin, PluginInfo};

/// How a plugin is to run: its config, grants and limits.
#[derive(Debug, Clone, Default)]
pub struct PluginOptions {
    /// The key/value config the plugin reads through the `config` import.
    pub config: BTreeMap<String, String>,
    /// Capabilities beyond the default deny-all sandbox.
    pub grants: Grants,
    /// Memory, time and output caps.
    pub limits: Limits,
}

/// Import name prefixes every plugin may use. WASI interfaces are linked
/// against a context with nothing granted (no preopens, env or network:
/// every socket call fails with `access-denied`), so importing them grants
/// nothing; the plugin's [`Grants`] open what it may use.
const ALWAYS_ALLOWED: &[&str] = &[
    "halyard:plugin/",
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

impl Runtime {
    /// Loads the component at `path`. With `kind` the component must
    /// implement that world; without, the kind is inferred from its exports.
    /// When trusted keys are set, `FILE.sig` must verify first, bound to
    /// this file name, `kind` and the host's fleet; once the probe has run,
    /// the signed kind and version must be the ones the component reports.
    ///
    /// The file is read by [`super::file::read_component`]: only a regular
    /// file within the size cap, header first, never blocking. The bytes
    /// verified are the bytes compiled.
    pub fn load(
        &self,
        path: &Path,
        kind: Option<PluginKind>,
        options: PluginOptions,
    ) -> Result<Arc<Plugin>, LoadError> {
        let bytes = super::file::read_component(path, self.max_file_bytes)?;
        let format = check_header(path, &bytes)?;
        if self.trusted_keys.is_empty() {
            return self.load_bytes(path.to_path_buf(), &bytes, kind, options);
        }
        let kind_name = kind.map(|k| k.to_string());
        let signature = super::file::check_signature(
            path,
            &bytes,
            kind_name.as_deref(),
            self.fleet.as_deref(),
            &self.trusted_keys,
        )?;
        let plugin = self.load_checked(path.to_path_buf(), &bytes, format, kind, options)?;
        signature
            .check_loaded(&plugin.kind.to_string(), &plugin.info.version)
            .map_err(|e| super::file::signature_refused(path, e))?;
        Ok(plugin)
    }

    /// Loads a component from bytes already in memory; `path` names it in
    /// messages and in `/plugins`. Precompiled plugins are refused here:
    /// only [`Runtime::load`] checks the signature they need.
    pub fn load_bytes(
        &self,
        path: PathBuf,
        bytes: &[u8],
        kind: Option<PluginKind>,
        options: PluginOptions,
    ) -> Result<Arc<Plugin>, LoadError> {
        match check_header(&path, bytes)? {
            PluginFormat::Precompiled => Err(LoadError::PrecompiledUnsigned { path }),
            format => self.load_checked(path, bytes, format, kind, options),
        }
    }

    /// Loads `bytes` of `format`; a precompiled plugin's signature has
    /// been verified by the caller.
    fn load_checked(
        &self,
        path: PathBuf,
        bytes: &[u8],
        format: PluginFormat,
        kind: Option<PluginKind>,
        options: PluginOptions,
    ) -> Result<Arc<Plugin>, LoadError> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let (component, from_cache) =
            match format {
                PluginFormat::Component => self.compile(&path, bytes, &sha256)?,
                // SAFETY: a precompiled plugin is native code. It reaches this
                // point only from `Runtime::load` after its signature verified
                // over these very bytes under a trusted key (`load_bytes`
                // refuses it otherwise), so it is what `halyard plugin compile`
                // wrote on the signer's machine. wasmtime checks its header,
                // version, target, CPU features and engine settings, and refuses
                // a mismatch with an error.
                PluginFormat::Precompiled => {
                    let component = unsafe { Component::deserialize(&self.engine, bytes) }
                        .map_err(|e| LoadError::Precompiled {
                            path: path.clone(),
                            message: e.root_cause().to_string(),
                        })?;
                    (component, false)
                }
            };
        transient::prepare_memory_images(&component, &file_stem(&path));
        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        check_imports(&imports)?;
        let kind = resolve_kind(kind, &exports)?;
        let contract = Contract::detect(&self.engine, &component, kind);
        let call_mode = self.policy.mode_for(&self.engine, &ty, &options.grants);
        let linker = match call_mode {
            CallMode::Sync => &self.sync_linker,
            CallMode::Async => &self.linker,
        };
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Instantiate {
                message: link_error(&e),
            })?;
        let mut plugin = Plugin {
            kind,
            contract,
            info: PluginInfo {
                name: file_stem(&path),
                version: String::new(),
            },
            path,
            sha256,
            imports,
            exports,
            options,
            from_cache,
            pre,
            call_mode,
        };
        // Probe: `info` names the plugin, `init` checks its config.
        let probe = Arc::new(plugin.clone());
        let mut instance = PluginInstance::new(probe);
        plugin.info = instance.start()?;
        Ok(Arc::new(plugin))
    }

    /// Compiles `bytes` into the compile cache without loading them, so a
    /// later load of the same content is warm (rollout calls it before it
    /// installs a download). Returns true if it was cached already; without
    /// a cache this only checks that the bytes compile.
    pub fn precompile(&self, path: &Path, bytes: &[u8]) -> Result<bool, LoadError> {
        if check_header(path, bytes)? == PluginFormat::Precompiled {
            // Nothing to compile; its load checks signature and target.
            return Ok(true);
        }
        let sha256 = hex::encode(Sha256::digest(bytes));
        self.compile(path, bytes, &sha256)
            .map(|(_, from_cache)| from_cache)
    }

    /// The compiled component, from the cache when possible.
    fn compile(
        &self,
        path: &Path,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<(Component, bool), LoadError> {
        if let Some(component) = self
            .cache
            .as_ref()
            .and_then(|c| c.load(&self.engine, sha256))
        {
            return Ok((component, true));
        }
        let component = self.compile_fresh(path, bytes)?;
        if let Some(cache) = &self.cache {
            cache.store(sha256, &component);
        }
        Ok((component, false))
    }

    /// Compiles `bytes` with Cranelift.
    #[cfg(feature = "compiler")]
    fn compile_fresh(&self, path: &Path, bytes: &[u8]) -> Result<Component, LoadError> {
        let failed = |e: wasmtime::Error| LoadError::Compile {
            path: path.to_path_buf(),
            message: e.root_cause().to_string(),
        };
        Ok(match &self.background {
            // On a low-priority thread (hot reload): compile on this thread
            // alone, then load the artefact into the shared engine.
            Some(background) if low_priority_thread() => {
                let artefact = background.precompile_component(bytes).map_err(failed)?;
                // SAFETY: `artefact` was just produced in this process by
                // wasmtime itself, from an engine whose compatibility hash
                // equals `self.engine`'s (checked in `Runtime::new`);
                // wasmtime checks the header and settings again here.
                unsafe { Component::deserialize(&self.engine, &artefact) }.map_err(failed)?
            }
            _ => Component::from_binary(&self.engine, bytes).map_err(failed)?,
        })
    }

    /// Without the compiler, a component cannot run here.
    #[cfg(not(feature = "compiler"))]
    fn compile_fresh(&self, path: &Path, _bytes: &[u8]) -> Result<Component, LoadError> {
        Err(LoadError::NoCompiler {
            path: path.to_path_buf(),
        })
    }
}

/// What a plugin file holds, told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginFormat {
    /// A WebAssembly component: compiled here (or taken from the cache).
    Component,
    /// Native code from `halyard plugin compile` (wasmtime's precompiled
    /// ELF): loaded only with a signature by a trusted key.
    Precompiled,
}

/// Tells a component from a precompiled plugin from a core module from
/// anything else, so the error says which.
pub fn check_header(path: &Path, bytes: &[u8]) -> Result<PluginFormat, LoadError> {
    if bytes.len() >= 4 && &bytes[..4] == b"\x7fELF" {
        return Ok(PluginFormat::Precompiled);
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm {
            path: path.to_path_buf(),
        });
    }
    // Core modules have layer 0 (bytes 6..8); components have layer 1.
    if bytes[6..8] == [0, 0] {
        return Err(LoadError::CoreModule {
            path: path.to_path_buf(),
        });
    }
    Ok(PluginFormat::Component)
}

/// Refuses imports outside the allowed set.
fn check_imports(imports: &[String]) -> Result<(), LoadError> {
    for import in imports {
        if ALWAYS_ALLOWED.iter().any(|p| import.starts_with(p)) {
            continue;
        }
        return Err(LoadError::ForbiddenImport {
            import: import.clone(),
            hint: String::new(),
        });
    }
    Ok(())
}

/// The kind to load as: the declared one if the exports fit it, else the
/// one the exports identify.
fn resolve_kind(declared: Option<PluginKind>, exports: &[String]) -> Result<PluginKind, LoadError> {
    let has = |name: &str| exports.iter().any(|e| e == name);
    let matching: Vec<PluginKind> = PluginKind::ALL
        .into_iter()
        .filter(|k| has(k.stage_export()))
        .collect();
    let kind = match declared {
        Some(kind) => kind,
        None => match matching.as_slice() {
            [one] => *one,
            _ => {
                return Err(LoadError::UnknownKind {
                    exports: exports.join(", "),
                });
            }
        },
    };
    let required = kind.required_exports();
    if let Some(missing) = required.iter().find(|e| !has(e)) {
        let found = match matching.as_slice() {
            [other] if *other != kind => format!("; this component looks like a {other}"),
            _ => format!("; it exports [{}]", exports.join(", ")),
        };
        return Err(LoadError::MissingExport {
            kind,
            export: missing,
            required: required.join(", "),
            found,
        });
    }
    Ok(kind)
}

/// Wasmtime's whole account of a failed link, each part once. It names the
/// import only in the outermost context ("component imports instance `x`,
/// but a matching implementation was not found in the linker") and the
/// reason in the root cause ("function implementation is missing"); the
/// root cause alone left the author guessing which import was missing.
fn link_error(e: &wasmtime::Error) -> String {
    let mut out = String::new();
    for part in e.chain().map(|c| c.to_string()) {
        if !out.contains(&part) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&part);
        }
    }
    out
}

/// The file name without extension, the plugin's name until `info` says.
fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
