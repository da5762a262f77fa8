//! Hot reload: new plugin versions and config changes while the host runs.
//!
//! - [`watch`]: file events for the plugin files and the config file;
//! - [`swap`]: handing a checked version to the pipeline thread, which
//!   swaps it in between two batches;
//! - [`rollback`]: probation after a swap, rollback, quarantine by hash,
//!   reload backoff.
//!
//! Invariants:
//! - compiling and checking happen on the reloader's thread, never on the
//!   pipeline thread; the pipeline only swaps an `Arc`;
//! - a file that fails to load (unreadable, truncated, garbage, wrong kind,
//!   unsigned or badly signed when keys are configured, `init` refuses its
//!   config) changes nothing: the old version keeps serving, and the refusal
//!   is logged and published as `plugin.rejected` with the reason;
//! - a removed file keeps the loaded version running (and says so), or
//!   with `[reload] on_remove = "unload"` unloads it (the stage applies its
//!   failure policy); the next file at that path is loaded as usual;
//! - a config change is checked whole before anything is applied: every
//!   plugin it adds is loaded first, and one refusal refuses the change
//!   (`config.rejected`) with the running config intact. Plugin config,
//!   stage chains, `[batch]` and `[retry]` apply live ([`live`]); other
//!   sections are reported as needing a restart;
//! - content that was rolled back is never loaded again, even after a
//!   restart (the ledger is kept in `data_dir`, and a rollback puts the
//!   last good file back on disk), and a file that was rolled back waits
//!   out its backoff before the next attempt.

mod config;
mod download;
mod install;
pub mod last_good;
pub mod live;
pub mod manifest;
pub mod rollback;
pub mod rollout;
pub mod swap;
pub mod watch;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::config::{HostConfig, OnRemove};
use crate::licence::Licence;
use crate::lifecycle::{Lifecycle, new_correlation_id};
use crate::pipeline::plugin_options;
use crate::plugin::{Plugin, Runtime};
use crate::run::Work;

pub use last_good::prepare;
pub use live::Live;
pub use rollback::{Ledger, Rollback, RollbackPolicy};
pub use swap::{StageKey, Swap, Target, Unload, apply};

/// What wakes the reloader.
#[derive(Debug)]
pub enum Trigger {
    /// These watched files (plugins, or the config file) changed.
    Paths(Vec<PathBuf>),
    /// SIGHUP: re-read the config and re-check every plugin file.
    All,
    /// Shut down.
    Stop,
}

/// The reloader's thread and the watcher feeding it.
pub struct Reloader {
    tx: Sender<Trigger>,
    thread: Option<JoinHandle<()>>,
    signal: Option<tokio::task::JoinHandle<()>>,
    /// The manifest poller, when `[rollout] manifest_url` is set.
    rollout: Option<tokio::task::JoinHandle<()>>,
}

impl Reloader {
    /// Starts watching (when `[reload] enabled`) and reloading. `work` is
    /// the pipeline thread's queue. Must be called inside a tokio runtime
    /// (for SIGHUP).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        config: &HostConfig,
        runtime: Arc<Runtime>,
        work: Sender<Work>,
        lifecycle: Lifecycle,
        live: Live,
        running: HashMap<StageKey, String>,
        licence: Option<Arc<Licence>>,
        ledger: Arc<Ledger>,
    ) -> Reloader {
        let (tx, rx) = channel();
        // Native stand-ins (benchmarks) have no plugin file to reload.
        let targets: Vec<Target> = swap::targets(config)
            .into_iter()
            .filter(|t| running.contains_key(&t.key))
            .collect();
        let config_file = config.source.as_deref().map(swap::absolute);
        let files = watched(&targets, config_file.as_ref());
        let watcher = if config.reload.enabled {
            match watch::watch(&files, tx.clone()) {
                Ok(w) => Some(w),
                Err(err) => {
                    tracing::error!(error = %err, "hot reload disabled: cannot watch the plugin files");
                    None
                }
            }
        } else {
            None
        };
        let signal = tokio::runtime::Handle::try_current().ok().map(|h| {
            let tx = tx.clone();
            h.spawn(async move {
                let Ok(mut hup) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                else {
                    return;
                };
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading config and plugins");
                    if tx.send(Trigger::All).is_err() {
                        break;
                    }
                }
            })
        });
        let mut state = State {
            running: config.clone(),
            config_file,
            loaded: running,
            targets,
            runtime,
            work,
            lifecycle,
            ledger,
            debounce: Duration::from_millis(config.reload.debounce_ms),
            watcher,
            live,
            licence,
        };
        if state.watcher.is_some() {
            // A file deployed between the pipeline's build and the watcher's
            // start raised no event: check every file once now.
            let files = state.targets.iter().map(|t| t.file.clone()).collect();
            let _ = tx.send(Trigger::Paths(files));
        }
        let thread = std::thread::Builder::new()
            .name("halyard-reload".into())
            .spawn(move || {
                // Compiles (and everything else here) take only CPU the data
                // path leaves idle, so a cold swap does not starve ingest.
                crate::plugin::lower_this_thread_priority();
                state.serve(&rx)
            })
            .ok();
        Reloader {
            tx,
            thread,
            signal,
            rollout: None,
        }
    }

    /// Stops watching and waits for a reload in progress to finish. Call
    /// before stopping the pipeline thread (this holds one of its senders).
    pub fn stop(mut self) {
        for task in [self.signal.take(), self.rollout.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
        let _ = self.tx.send(Trigger::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The reloader thread's state.
struct State {
    /// The config the host runs with (what was applied of it).
    running: HostConfig,
    config_file: Option<PathBuf>,
    /// Content hash each stage runs (as far as the reloader knows).
    loaded: HashMap<StageKey, String>,
    targets: Vec<Target>,
    runtime: Arc<Runtime>,
    work: Sender<Work>,
    lifecycle: Lifecycle,
    ledger: Arc<Ledger>,
    debounce: Duration,
    /// The file watcher; its file set follows the config.
    watcher: Option<watch::Watching>,
    /// `[batch]` and `[retry]`, applied live.
    live: Live,
    /// Its features bound what a config change may load; `None` in tools.
    licence: Option<Arc<Licence>>,
}

impl State {
    fn serve(&mut self, rx: &Receiver<Trigger>) {
        // Files waiting for quiet (debounce) or for their backoff.
        let mut pending: HashMap<PathBuf, Instant> = HashMap::new();
        let mut config_due: Option<Instant> = None;
        loop {
            let next = pending.values().chain(config_due.iter()).min().copied();
            let wait = next
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(3600));
            match rx.recv_timeout(wait) {
                Ok(Trigger::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Trigger::Paths(paths)) => {
                    let due = Instant::now() + self.debounce;
                    for p in paths {
                        if Some(&p) == self.config_file.as_ref() {
                            config_due = Some(due);
                        } else {
                            pending.insert(p, due);
                        }
                    }
                }
                Ok(Trigger::All) => {
                    config_due = Some(Instant::now());
                    for t in &self.targets {
                        pending.insert(t.file.clone(), Instant::now());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if config_due.is_some_and(|t| t <= now) {
                config_due = None;
                self.reload_config();
            }
            let due: Vec<PathBuf> = pending
                .iter()
                .filter(|(_, t)| **t <= now)
                .map(|(p, _)| p.clone())
                .collect();
            for path in due {
                pending.remove(&path);
                if let Some(later) = self.ledger.not_before(&path).filter(|t| *t > now) {
                    tracing::warn!(file = %path.display(),
                        wait_ms = later.duration_since(now).as_millis() as u64,
                        "plugin was rolled back recently: reload postponed (backoff)");
                    pending.insert(path, later);
                    continue;
                }
                self.reload_file(&path);
            }
        }
    }

    /// Loads the file at `path` for every stage that uses it and swaps the
    /// new version in, unless every stage already runs that content.
    fn reload_file(&mut self, path: &PathBuf) {
        let targets: Vec<Target> = self
            .targets
            .iter()
            .filter(|t| &t.file == path)
            .cloned()
            .collect();
        self.reload_targets(path, &targets);
    }

    fn reload_targets(&mut self, path: &std::path::Path, targets: &[Target]) {
        if targets.is_empty() {
            return;
        }
        // The same safe read as every load: a FIFO, a device or a huge file
        // renamed over a plugin is refused at once, the old version serving.
        let bytes = match crate::plugin::file::read_component(path, self.runtime.max_file_bytes()) {
            Ok(bytes) => bytes,
            Err(crate::plugin::LoadError::File(e)) if e.is_not_found() => {
                self.removed(path, targets);
                return;
            }
            Err(e) => {
                self.rejected(path, &targets[0].role, &e.to_string());
                return;
            }
        };
        let hash = sha256(&bytes);
        // Checked first: after a rollback `loaded` still names the bad hash.
        if self.ledger.is_bad(&hash) {
            self.rejected(
                path,
                &targets[0].role,
                &format!("content sha256 {hash} was rolled back before; deploy a fixed version"),
            );
            return;
        }
        if self.ledger.take_restored(path, &hash) {
            // A rollback put the version it restored back on disk: it runs.
            for t in targets {
                self.loaded.insert(t.key.clone(), hash.clone());
            }
            return;
        }
        if targets
            .iter()
            .all(|t| self.loaded.get(&t.key) == Some(&hash))
        {
            return;
        }
        let mut plugins = Vec::new();
        for t in targets {
            match self
                .runtime
                .load(path, Some(t.key.kind), plugin_options(&t.plugin))
            {
                Ok(plugin) => plugins.push((t.key.clone(), plugin)),
                Err(err) => {
                    self.rejected(path, &t.role, &err.to_string());
                    return;
                }
            }
        }
        // Recorded (with a copy of the bytes) before the swap, so a
        // rollback that follows at once finds the history complete.
        self.ledger.running(path, &hash, &bytes);
        self.swap(plugins);
    }

    fn rejected(&self, path: &std::path::Path, role: &str, reason: &str) {
        tracing::error!(file = %path.display(), role, reason,
            "new plugin version refused; the loaded version keeps running");
        self.lifecycle.emit(
            "plugin.rejected",
            &new_correlation_id(),
            serde_json::json!({"role": role, "file": path.display().to_string(), "reason": reason}),
        );
    }

    /// A watched plugin file is gone: keep the stages running it, or
    /// unload them (`[reload] on_remove`).
    fn removed(&mut self, path: &std::path::Path, targets: &[Target]) {
        let file = path.display().to_string();
        if self.running.reload.on_remove == OnRemove::Keep {
            tracing::warn!(file = %file,
                "plugin file removed: the loaded version keeps running until a new file is deployed (on_remove = \"keep\")");
            self.lifecycle.emit(
                "plugin.removed",
                &new_correlation_id(),
                serde_json::json!({"file": file, "action": "kept"}),
            );
            return;
        }
        let keys: Vec<StageKey> = targets
            .iter()
            .map(|t| t.key.clone())
            .filter(|k| self.loaded.contains_key(k))
            .collect();
        if keys.is_empty() {
            return; // Already unloaded.
        }
        let (reply, done) = channel();
        if self
            .work
            .send(Work::Unload(Unload { keys, reply }))
            .is_err()
        {
            return;
        }
        let unloaded = done.recv().unwrap_or_default();
        for k in &unloaded {
            // Forgotten, so the same content deployed again loads again.
            self.loaded.remove(k);
        }
        self.lifecycle.emit(
            "plugin.removed",
            &new_correlation_id(),
            serde_json::json!({"file": file, "action": "unloaded", "stages": unloaded.len()}),
        );
    }

    /// Loads and checks `t`'s plugin for a config change.
    fn load(&self, t: &Target) -> Result<Arc<Plugin>, String> {
        let plugin = self
            .runtime
            .load(&t.file, Some(t.key.kind), plugin_options(&t.plugin))
            .map_err(|e| format!("{} plugin {}: {e}", t.role, t.file.display()))?;
        if self.ledger.is_bad(&plugin.sha256) {
            return Err(format!(
                "{} plugin {}: content sha256 {} was rolled back before",
                t.role,
                t.file.display(),
                plugin.sha256
            ));
        }
        Ok(plugin)
    }

    /// Swaps `plugins` in between two batches and records their hashes;
    /// true when some stage swapped.
    fn swap(&mut self, plugins: Vec<(StageKey, Arc<Plugin>)>) -> bool {
        let hashes: Vec<(StageKey, String)> = plugins
            .iter()
            .map(|(k, p)| (k.clone(), p.sha256.clone()))
            .collect();
        let (reply, done) = channel();
        let swap = Swap {
            plugins,
            rollback: Rollback {
                policy: self.ledger.policy(),
                ledger: self.ledger.clone(),
            },
            reply,
        };
        if self.work.send(Work::Swap(swap)).is_err() {
            return false;
        }
        let Ok(keys) = done.recv() else {
            return false;
        };
        for (k, h) in hashes {
            if keys.contains(&k) {
                self.loaded.insert(k, h);
            }
        }
        !keys.is_empty()
    }
}

/// The files to watch: every plugin and the config file.
fn watched(targets: &[Target], config_file: Option<&PathBuf>) -> HashSet<PathBuf> {
    targets
        .iter()
        .map(|t| t.file.clone())
        .chain(config_file.cloned())
        .collect()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The rollback policy `[reload]` sets.
pub fn rollback_policy(config: &HostConfig) -> RollbackPolicy {
    RollbackPolicy {
        after_traps: config.reload.rollback_after_traps,
        window: Duration::from_secs(config.reload.rollback_window_s),
        backoff_initial: Duration::from_millis(config.reload.backoff_initial_ms),
        backoff_max: Duration::from_millis(config.reload.backoff_max_ms),
    }
}

/// Starts hot reload (and remote rollout, when configured) for `halyard
/// run`; `None` when there is no pipeline thread to swap into. `running`
/// is the content hash each stage was built with ([`swap::running`]);
/// `ledger` comes from [`prepare`].
#[allow(clippy::too_many_arguments)]
pub fn supply(
    config: &HostConfig,
    runtime: &Arc<Runtime>,
    work: Option<Sender<Work>>,
    lifecycle: &Lifecycle,
    live: Live,
    running: HashMap<StageKey, String>,
    licence: Option<Arc<Licence>>,
    ledger: Arc<Ledger>,
) -> Option<Reloader> {
    let work = work?;
    let mut reloader = Reloader::start(
        config,
        runtime.clone(),
        work,
        lifecycle.clone(),
        live,
        running,
        licence,
        ledger.clone(),
    );
    reloader.rollout = rollout::spawn(config, lifecycle.clone(), Some(runtime.clone()), ledger);
    Some(reloader)
}
