//! Remote rollout: the host polls a signed manifest and installs the
//! plugins it lists into the plugin directory, where hot reload takes over.
//! The manifest's format, signature and serial rules are in
//! [`super::manifest`].
//!
//! Invariants:
//! - the manifest and every download use `https` (redirects included);
//!   plain `http` only with `[rollout] insecure_http = true`;
//! - rollout needs `[plugins] trusted_keys` (the config is refused without
//!   them): a manifest is acted on only when its envelope verifies, it has
//!   not expired and its serial is not older than the highest accepted; a
//!   refused manifest changes nothing and the running versions keep
//!   serving (`rollout.failed` says why);
//! - polls send `If-None-Match` with the last ETag; a 304 costs nothing;
//! - no download is held in memory past its cap: a component past
//!   `[plugins] max_file_mb` (its `Content-Length`, or its body as it
//!   streams) and a manifest past 1 MiB are refused; installed files are
//!   read back with the same checks as any plugin file;
//! - a component is installed only after its SHA-256 equals the manifest's
//!   and its signature verifies with a trusted key *for the entry's name
//!   and kind* (and the host's fleet): a signature made for another
//!   component cannot be moved onto this entry; content that was rolled
//!   back is never installed again;
//! - a verified download is compiled into the compile cache (on a
//!   low-priority thread) before it is installed, so the hot swap it
//!   triggers is warm;
//! - installation is atomic ([`super::install`]): the component and its
//!   `.sig` are staged as fsynced temp files and renamed into place, the
//!   `.sig` first, so a failed write changes nothing;
//! - the ETag is remembered only when every listed plugin is installed or
//!   already current, so a failure is retried at the next poll.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use halyard_trust::PublicKey;
use halyard_trust::plugin_sig::{Expected, Signature};

use super::download::{MAX_MANIFEST_BYTES, read_capped};
use super::install::install_pair;
use super::manifest::{ManifestPlugin, SerialStore};
use super::rollback::Ledger;
use crate::config::HostConfig;
use crate::lifecycle::{Lifecycle, new_correlation_id};
use crate::plugin::Runtime;

/// Why one plugin was not installed.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// The manifest or a component could not be fetched.
    #[error("download {url}: {reason}")]
    Download {
        /// What was fetched.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// The manifest is unsigned, badly signed, expired or older than one
    /// already accepted.
    #[error("manifest refused: {0}")]
    Refused(#[from] halyard_trust::manifest::ManifestError),
    /// The highest accepted serial cannot be read or written.
    #[error("rollout state: {reason}")]
    State {
        /// What failed.
        reason: String,
    },
    /// The manifest names content that was rolled back on this host.
    #[error("{name}: sha256 {sha256} was rolled back on this host; publish a fixed version")]
    RolledBack {
        /// The plugin.
        name: String,
        /// The content.
        sha256: String,
    },
    /// A name that is not a plain file name (`../x`, `a/b`).
    #[error("plugin name {0:?} is not a plain file name")]
    BadName(String),
    /// The downloaded bytes are not the ones the manifest names.
    #[error("{name}: sha256 mismatch: manifest says {expected}, download has {actual}")]
    HashMismatch {
        /// The plugin.
        name: String,
        /// From the manifest.
        expected: String,
        /// Of the download.
        actual: String,
    },
    /// The signature is missing or does not verify.
    #[error("{name}: signature refused: {reason}")]
    Signature {
        /// The plugin.
        name: String,
        /// Why.
        reason: String,
    },
    /// Writing into the plugin directory failed.
    #[error("install {path}: {source}")]
    Install {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// Polls the manifest every `[rollout] interval_s` (first poll at once),
/// when `manifest_url` is set. `ledger` names content rolled back on this
/// host, which is never installed again. Must be called inside a tokio
/// runtime.
pub fn spawn(
    config: &HostConfig,
    lifecycle: Lifecycle,
    runtime: Option<Arc<Runtime>>,
    ledger: Arc<Ledger>,
) -> Option<tokio::task::JoinHandle<()>> {
    let url = config.rollout.manifest_url.clone()?;
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let dir = config.rollout.dir.clone();
    let keys = config.plugins.trusted_keys.clone();
    let interval = Duration::from_secs(config.rollout.interval_s.max(1));
    let timeout = Duration::from_millis(config.rollout.timeout_ms);
    let max_file_bytes = config.plugins.max_file_bytes();
    let https_only = !config.rollout.insecure_http;
    let serials = SerialStore::open(&config.host.data_dir);
    let fleet = config.licence.fleet.clone();
    Some(handle.spawn(async move {
        let Ok(http) = http_client(timeout, https_only) else {
            tracing::error!("rollout disabled: cannot build an HTTP client");
            return;
        };
        let mut poller = Poller {
            http,
            url,
            dir,
            keys,
            etag: None,
            lifecycle,
            runtime,
            max_file_bytes,
            serials,
            fleet,
            ledger,
        };
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            poller.poll().await;
        }
    }))
}

/// The client for manifests and downloads: with `https_only`, a plain
/// `http://` URL, or a redirect to one, is refused before any request.
fn http_client(timeout: Duration, https_only: bool) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .https_only(https_only)
        .build()
}

/// A failed request as text; a refused scheme (plain `http` without
/// `insecure_http`) says so instead of reqwest's bare "builder error".
fn request_error(e: &reqwest::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) if e.is_builder() => {
            format!(
                "{cause} (https is required; plain http only with [rollout] insecure_http = true)"
            )
        }
        _ => e.to_string(),
    }
}

/// One manifest's poll state.
pub struct Poller {
    http: reqwest::Client,
    url: String,
    dir: PathBuf,
    keys: Vec<PublicKey>,
    /// The ETag of the last manifest fully installed.
    etag: Option<String>,
    lifecycle: Lifecycle,
    /// Compiles a verified download into the compile cache before it is
    /// installed, so the hot swap that follows is warm; `None` skips it.
    runtime: Option<Arc<Runtime>>,
    /// The largest download accepted (`[plugins] max_file_mb`), checked
    /// against `Content-Length` and again while the body streams in.
    max_file_bytes: u64,
    /// The highest manifest serial accepted, kept in `data_dir`.
    serials: SerialStore,
    /// The host's fleet, which fleet-scoped plugin signatures must name.
    fleet: Option<String>,
    /// Content rolled back on this host: never installed again.
    ledger: Arc<Ledger>,
}

impl Poller {
    /// Fetches the manifest and installs what changed; failures are logged
    /// and published, never fatal.
    pub async fn poll(&mut self) {
        let (manifest, etag) = match self.fetch_manifest().await {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(err) => {
                self.failed(None, &err);
                return;
            }
        };
        let mut all_ok = true;
        for plugin in &manifest.plugins {
            match self.install(plugin).await {
                Ok(true) => {
                    tracing::info!(plugin = %plugin.name, sha256 = %plugin.sha256, "rollout installed a plugin");
                    self.lifecycle.emit(
                        "rollout.installed",
                        &new_correlation_id(),
                        serde_json::json!({"name": plugin.name, "kind": plugin.kind,
                            "sha256": plugin.sha256}),
                    );
                }
                Ok(false) => {}
                Err(err) => {
                    all_ok = false;
                    self.failed(Some(&plugin.name), &err);
                }
            }
        }
        if all_ok {
            self.etag = etag;
        }
    }

    fn failed(&self, name: Option<&str>, err: &RolloutError) {
        tracing::error!(plugin = name.unwrap_or(""), error = %err, "rollout failed; nothing changed");
        self.lifecycle.emit(
            "rollout.failed",
            &new_correlation_id(),
            serde_json::json!({"name": name, "reason": err.to_string()}),
        );
    }

    async fn fetch_manifest(
        &mut self,
    ) -> Result<Option<(super::manifest::Manifest, Option<String>)>, RolloutError> {
        let mut req = self.http.get(&self.url);
        if let Some(etag) = &self.etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        let download = |reason: String| RolloutError::Download {
            url: self.url.clone(),
            reason,
        };
        let resp = req.send().await.map_err(|e| download(request_error(&e)))?;
        if resp.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(download(format!("HTTP {}", resp.status())));
        }
        let etag = resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_capped(resp, MAX_MANIFEST_BYTES, "manifests")
            .await
            .map_err(download)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let manifest = self.serials.accept(&body, &self.keys, now)?;
        Ok(Some((manifest, etag)))
    }

    /// Installs `plugin` unless the installed file already has its hash;
    /// true when something was installed.
    async fn install(&self, plugin: &ManifestPlugin) -> Result<bool, RolloutError> {
        let plain = Path::new(&plugin.name)
            .file_name()
            .is_some_and(|n| n == plugin.name.as_str());
        if !plain || plugin.name.starts_with('.') {
            return Err(RolloutError::BadName(plugin.name.clone()));
        }
        let dest = self.dir.join(format!("{}.wasm", plugin.name));
        let expected = plugin.sha256.to_ascii_lowercase();
        if self.ledger.is_bad(&expected) {
            return Err(RolloutError::RolledBack {
                name: plugin.name.clone(),
                sha256: expected,
            });
        }
        if let Ok(current) = crate::plugin::file::read_regular(&dest, self.max_file_bytes)
            && halyard_trust::sha256_hex(&current) == expected
        {
            return Ok(false);
        }
        let url = reqwest::Url::parse(&self.url)
            .and_then(|base| base.join(&plugin.url))
            .map_err(|e| RolloutError::Download {
                url: plugin.url.clone(),
                reason: e.to_string(),
            })?;
        let download = |reason: String| RolloutError::Download {
            url: url.to_string(),
            reason,
        };
        let resp = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| download(request_error(&e)))?;
        if !resp.status().is_success() {
            return Err(download(format!("HTTP {}", resp.status())));
        }
        let bytes = read_capped(resp, self.max_file_bytes, "`[plugins] max_file_mb`")
            .await
            .map_err(download)?;
        let actual = halyard_trust::sha256_hex(&bytes);
        if actual != expected {
            return Err(RolloutError::HashMismatch {
                name: plugin.name.clone(),
                expected,
                actual,
            });
        }
        let sig = self.check_signature(plugin, &bytes)?;
        self.precompile(&dest, bytes.to_vec()).await;
        install_pair(&dest, &bytes, Some(&sig))?;
        Ok(true)
    }

    /// Compiles `bytes` into the cache on a low-priority thread of its own
    /// (the compile takes only CPU the data path leaves idle). A failure is
    /// logged only: hot reload will load, and refuse, the file itself.
    async fn precompile(&self, dest: &Path, bytes: Vec<u8>) {
        let Some(runtime) = self.runtime.clone() else {
            return;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let path = dest.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("halyard-precompile".into())
            .spawn(move || {
                crate::plugin::lower_this_thread_priority();
                let _ = tx.send(runtime.precompile(&path, &bytes));
            });
        if spawned.is_err() {
            return;
        }
        match rx.await {
            Ok(Ok(cached)) => {
                tracing::info!(file = %dest.display(), already_cached = cached,
                    "rollout: download compiled into the cache before install")
            }
            Ok(Err(err)) => {
                tracing::warn!(file = %dest.display(), error = %err,
                    "rollout: download does not compile; installing it anyway for hot reload to refuse")
            }
            Err(_) => {}
        }
    }

    /// The entry's signature, verified against the download, the trusted
    /// keys, and the entry's name and kind (and the host's fleet).
    fn check_signature(
        &self,
        plugin: &ManifestPlugin,
        bytes: &[u8],
    ) -> Result<Signature, RolloutError> {
        let refused = |reason: String| RolloutError::Signature {
            name: plugin.name.clone(),
            reason,
        };
        let sig = match &plugin.signature {
            None => {
                return Err(refused(
                    "unsigned (every rollout entry must be signed)".into(),
                ));
            }
            Some(serde_json::Value::String(text)) => Signature::from_json(text.as_bytes()),
            Some(value) => Signature::from_value(value.clone()),
        }
        .map_err(|e| refused(e.to_string()))?;
        let expected = Expected {
            name: &plugin.name,
            kind: Some(&plugin.kind),
            fleet: self.fleet.as_deref(),
        };
        sig.verify(bytes, &expected, &self.keys)
            .map_err(|e| refused(e.to_string()))?;
        Ok(sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plain_http_is_refused_unless_insecure_http_is_set() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/manifest.json", listener.local_addr().unwrap());
        let strict = http_client(Duration::from_secs(1), true).unwrap();
        let err = strict.get(&url).send().await.unwrap_err();
        assert!(err.is_builder(), "refused before connecting: {err}");
        let cause = std::error::Error::source(&err).map(|s| s.to_string());
        assert_eq!(cause.as_deref(), Some("URL scheme is not allowed"));
        // With `insecure_http` the request goes out (and the listener,
        // which never answers, lets it time out).
        let insecure = http_client(Duration::from_millis(200), false).unwrap();
        let err = insecure.get(&url).send().await.unwrap_err();
        assert!(err.is_timeout(), "{err}");
    }
}
