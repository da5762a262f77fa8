//! What `halyard plugin check` reports before (and whether or not) a
//! plugin loads: every import with the host's verdict on it, every export
//! with its role for the kind, and the cold compile time.
//!
//! The loader ([`super::load`]) stops at the first refused import; an
//! author needs the whole list, with why each import is allowed, granted
//! or refused, to fix a component in one go.

use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::engine::Runtime;
use super::error::LoadError;
use super::kind::PluginKind;
use super::limits::Grants;

/// The host's verdict on one import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportVerdict {
    /// Linked for every plugin; it reaches nothing outside the sandbox.
    Allowed,
    /// Linked, and this plugin's grants open what it reaches.
    Granted,
    /// Not provided by the host: the component cannot load.
    Refused,
}

/// One import and the reason for its verdict.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportReport {
    /// The import's name, e.g. `halyard:plugin/config@0.1.0`.
    pub name: String,
    /// The host's verdict.
    pub verdict: ImportVerdict,
    /// Why, in a sentence an author can act on.
    pub why: String,
}

/// One export and what it is for in the plugin's kind.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportReport {
    /// The export's name (or a required one that is missing).
    pub name: String,
    /// `required`, `missing` or `ignored`.
    pub verdict: &'static str,
}

/// A component compiled and looked at, not started.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The SHA-256 of the file, hex.
    pub sha256: String,
    /// The file's size in bytes.
    pub bytes: usize,
    /// How long wasmtime took to compile it from scratch (no cache).
    pub cold_compile: Duration,
    /// Every import with its verdict, in the component's order.
    pub imports: Vec<ImportReport>,
    /// Every export's name, in the component's order.
    pub exports: Vec<String>,
}

impl Inspection {
    /// Whether any import is refused.
    pub fn refused(&self) -> bool {
        self.imports
            .iter()
            .any(|i| i.verdict == ImportVerdict::Refused)
    }

    /// The exports against `kind`'s world: each present one `required` or
    /// `ignored`, then each required one that is `missing`.
    pub fn exports_for(&self, kind: Option<PluginKind>) -> Vec<ExportReport> {
        let required: Vec<&str> = kind
            .map(|k| k.required_exports().to_vec())
            .unwrap_or_default();
        let mut out: Vec<ExportReport> = self
            .exports
            .iter()
            .map(|e| ExportReport {
                name: e.clone(),
                verdict: if required.contains(&e.as_str()) {
                    "required"
                } else {
                    "ignored"
                },
            })
            .collect();
        for r in required {
            if !self.exports.iter().any(|e| e == r) {
                out.push(ExportReport {
                    name: r.to_string(),
                    verdict: "missing",
                });
            }
        }
        out
    }

    /// The kind the exports identify, if exactly one.
    pub fn kind_from_exports(&self) -> Option<PluginKind> {
        let found: Vec<PluginKind> = PluginKind::ALL
            .into_iter()
            .filter(|k| self.exports.iter().any(|e| e == k.stage_export()))
            .collect();
        match found.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }
}

/// Compiles `bytes` from scratch (no cache), for the timing.
#[cfg(feature = "compiler")]
fn compile_timed(runtime: &Runtime, path: &Path, bytes: &[u8]) -> Result<Component, LoadError> {
    Component::from_binary(&runtime.engine, bytes).map_err(|e| LoadError::Compile {
        path: path.to_path_buf(),
        message: e.root_cause().to_string(),
    })
}

/// Without the compiler there is nothing to inspect a component with.
#[cfg(not(feature = "compiler"))]
fn compile_timed(_runtime: &Runtime, path: &Path, _bytes: &[u8]) -> Result<Component, LoadError> {
    Err(LoadError::NoCompiler {
        path: path.to_path_buf(),
    })
}

impl Runtime {
    /// Reads and compiles `path` from scratch (timing it), stores the
    /// artefact in the compile cache so a following load is warm, and
    /// reports its imports under `grants` and its exports.
    pub fn inspect(&self, path: &Path, grants: &Grants) -> Result<Inspection, LoadError> {
        let bytes = super::file::read_component(path, self.max_file_bytes)?;
        if super::load::check_header(path, &bytes)? == super::load::PluginFormat::Precompiled {
            return Err(LoadError::Precompiled {
                path: path.to_path_buf(),
                message: "`plugin check` reads the component it was compiled from; a precompiled \
                          plugin is checked by loading it with its signature (`halyard config check`)"
                    .into(),
            });
        }
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let started = Instant::now();
        let component = compile_timed(self, path, &bytes)?;
        let cold_compile = started.elapsed();
        if let Some(cache) = &self.cache {
            cache.store(&sha256, &component);
        }
        let ty = component.component_type();
        let imports = ty
            .imports(&self.engine)
            .map(|(n, _)| judge_import(n, grants))
            .collect();
        let exports = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        Ok(Inspection {
            sha256,
            bytes: bytes.len(),
            cold_compile,
            imports,
            exports,
        })
    }
}

/// The verdict on one import for a plugin with `grants`.
pub fn judge_import(name: &str, grants: &Grants) -> ImportReport {
    let (verdict, why) = if name.starts_with("halyard:plugin/") {
        (ImportVerdict::Allowed, "a Halyard host import".to_string())
    } else if name.starts_with("wasi:cli/environment") {
        if grants.env.is_empty() {
            (
                ImportVerdict::Allowed,
                "sees no variables without an `env` grant".into(),
            )
        } else {
            (
                ImportVerdict::Granted,
                format!("sees {}", grants.env.join(", ")),
            )
        }
    } else if name.starts_with("wasi:filesystem/") {
        if grants.read_dirs.is_empty() {
            (
                ImportVerdict::Allowed,
                "no directories without a `read_dirs` grant".into(),
            )
        } else {
            let dirs: Vec<String> = grants
                .read_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            (
                ImportVerdict::Granted,
                format!("reads {} (read-only)", dirs.join(", ")),
            )
        }
    } else if name.starts_with("wasi:sockets/") {
        if grants.network.granted() {
            (
                ImportVerdict::Granted,
                "the `network` grant opens sockets".into(),
            )
        } else {
            (
                ImportVerdict::Allowed,
                "every socket call fails with access-denied without a `network` grant".into(),
            )
        }
    } else if let Some(why) = harmless_wasi(name) {
        (ImportVerdict::Allowed, why.into())
    } else {
        let hint = if name.starts_with("wasi:http/") {
            "; the host gives plugins no HTTP client: build without fetch (componentize-js: disable the `http` feature)"
        } else {
            ""
        };
        (
            ImportVerdict::Refused,
            format!(
                "not provided: plugins may import halyard:plugin and wasi:cli, io, clocks, random, filesystem and sockets only{hint}"
            ),
        )
    };
    ImportReport {
        name: name.to_string(),
        verdict,
        why,
    }
}

/// Why a WASI import that reaches nothing outside the sandbox is allowed.
fn harmless_wasi(name: &str) -> Option<&'static str> {
    let why = if name.starts_with("wasi:cli/stdout") || name.starts_with("wasi:cli/stderr") {
        "output goes to the host log, rate-limited"
    } else if name.starts_with("wasi:cli/stdin") {
        "reads nothing (empty)"
    } else if name.starts_with("wasi:cli/") {
        "exit, terminal and argument queries: nothing outside the sandbox"
    } else if name.starts_with("wasi:clocks/") {
        "the host's clocks, read-only"
    } else if name.starts_with("wasi:random/") {
        "random bytes"
    } else if name.starts_with("wasi:io/") {
        "streams and waits on the other imports' resources; waits count against the deadline"
    } else {
        return None;
    };
    Some(why)
}
