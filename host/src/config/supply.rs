//! The plugin supply chain's config: `[plugins]` (who may sign plugins),
//! `[reload]` (hot reload, rollback and backoff) and `[rollout]` (a remote
//! manifest the host polls). All optional: without them the host behaves as
//! before, except that hot reload is on by default.

use std::path::PathBuf;

use halyard_trust::keys::PublicKey;
use serde::{Deserialize, Serialize};

/// `[plugins]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsSection {
    /// Keys (`ed25519:<base64>`) whose signatures make a component loadable.
    /// When the list is non-empty every component needs a valid `FILE.sig`
    /// from one of them, at start and on every reload; empty means signing
    /// is not required.
    pub trusted_keys: Vec<PublicKey>,
    /// The largest component file loaded, in MiB, checked before a byte is
    /// read (at start, on reload, in `config check`) and while a rollout
    /// downloads: a huge or endless file must not fill the host's memory.
    pub max_file_mb: u64,
}

impl Default for PluginsSection {
    fn default() -> Self {
        PluginsSection {
            trusted_keys: Vec::new(),
            max_file_mb: crate::plugin::file::DEFAULT_MAX_FILE_BYTES >> 20,
        }
    }
}

impl PluginsSection {
    /// `max_file_mb` in bytes (range-checked at load, so it cannot wrap).
    pub fn max_file_bytes(&self) -> u64 {
        self.max_file_mb.saturating_mul(1 << 20)
    }

    /// Makes `runtime` load plugins as this section says: the trusted
    /// signers and the file size cap, with the host's `fleet` (`[licence]
    /// fleet`) that fleet-scoped signatures must name. `halyard run` and
    /// `halyard config check` both call it, so they accept and refuse the
    /// same files.
    pub fn apply_to(&self, runtime: &mut crate::plugin::Runtime, fleet: Option<&str>) {
        runtime.require_signatures(self.trusted_keys.clone());
        runtime.set_max_file_bytes(self.max_file_bytes());
        runtime.set_fleet(fleet.map(str::to_owned));
    }
}

/// `[reload]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadSection {
    /// Watch the plugin files and the config file (and reload on SIGHUP).
    pub enabled: bool,
    /// Quiet time after the last file event before a reload starts, so a
    /// copy in several writes is read once, complete.
    pub debounce_ms: u64,
    /// A newly swapped version that traps more than this many times ...
    pub rollback_after_traps: u32,
    /// ... within this many seconds after the swap is rolled back.
    pub rollback_window_s: u64,
    /// After a rollback, the next reload of that file waits at least this
    /// long; the wait doubles with every further rollback (reload storms).
    pub backoff_initial_ms: u64,
    /// The longest wait between reloads of a file that keeps crashing.
    pub backoff_max_ms: u64,
    /// What a removed plugin file does to the stage that runs it.
    pub on_remove: OnRemove,
}

/// `[reload] on_remove`: what happens to a running plugin whose file is
/// deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRemove {
    /// The loaded version keeps running until a new file is deployed: a
    /// half-finished deploy (`rm` then `cp`) never interrupts the data path.
    #[default]
    Keep,
    /// The plugin is unloaded (its instance and memory freed) and its
    /// stage applies its kind's failure policy until a file is deployed
    /// again: a decoder's frames and a validator's events are
    /// dead-lettered, a privacy stage drops events (unredacted data never
    /// ships), a sampler keeps every event, a source is not polled.
    Unload,
}

impl Default for ReloadSection {
    fn default() -> Self {
        ReloadSection {
            enabled: true,
            debounce_ms: 50,
            rollback_after_traps: 3,
            rollback_window_s: 300,
            backoff_initial_ms: 1000,
            backoff_max_ms: 300_000,
            on_remove: OnRemove::Keep,
        }
    }
}

/// `[rollout]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutSection {
    /// The signed manifest to poll (https); unset disables remote rollout.
    /// Requires `[plugins] trusted_keys`: manifests and components are
    /// installed only when signed by one of them.
    pub manifest_url: Option<String>,
    /// Seconds between polls.
    pub interval_s: u64,
    /// Where downloaded components are installed; hot reload picks them up
    /// from there when a stage's `plugin` points into it.
    pub dir: PathBuf,
    /// Timeout of each request.
    pub timeout_ms: u64,
    /// Allow plain `http://` for the manifest and downloads (tests on
    /// 127.0.0.1). Off: both must be `https://`, redirects included.
    pub insecure_http: bool,
}

impl Default for RolloutSection {
    fn default() -> Self {
        RolloutSection {
            manifest_url: None,
            interval_s: 60,
            dir: PathBuf::from("plugins"),
            timeout_ms: 10_000,
            insecure_http: false,
        }
    }
}

impl RolloutSection {
    /// What is wrong with this section given `[plugins]`, as (key, message):
    /// a rollout that anyone on the path, or anyone who can edit the
    /// manifest, could steer is refused at load.
    pub fn problem(&self, plugins: &PluginsSection) -> Option<(&'static str, String)> {
        let url = self.manifest_url.as_deref()?;
        if plugins.trusted_keys.is_empty() {
            return Some((
                "rollout.manifest_url",
                "needs [plugins] trusted_keys: a host installs only manifests and components signed by one of them".to_owned(),
            ));
        }
        let scheme_ok = match url.split_once("://") {
            Some(("https", _)) => true,
            Some(("http", _)) => self.insecure_http,
            _ => false,
        };
        if !scheme_ok {
            return Some((
                "rollout.manifest_url",
                "must start with https:// (plain http:// only with [rollout] insecure_http = true, for tests)".to_owned(),
            ));
        }
        None
    }
}
