//! File events for hot reload: the directories holding the plugin files and
//! the config file are watched (not recursively); each event is reduced to
//! "this watched file may have changed" and sent to the reloader, which
//! debounces.
//!
//! Deploy by writing a temp file in the same directory and renaming it over
//! the plugin (`cp new.wasm .validator.wasm.tmp && mv .validator.wasm.tmp
//! validator.wasm`): the rename is atomic, so the reloader never reads a
//! partial file. Editors' swap and backup files, `*.tmp`, `*.part` and
//! dotfiles are ignored outright; any other path that is not a configured
//! plugin, its `.sig`, or the config file is ignored too.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, RwLock};

use super::Trigger;

/// Why the watcher could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path}: {source}")]
pub struct WatchError {
    /// The directory.
    pub path: PathBuf,
    /// What notify said.
    pub source: notify::Error,
}

/// Whether `path` is a temp, swap, backup or hidden file (never a deploy).
pub fn is_temp(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return true;
    };
    name.starts_with('.')
        || name.ends_with('~')
        || name == "4913"
        || [".tmp", ".swp", ".swx", ".part", ".partial", ".crdownload"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// The running watcher and the files it reports; the set changes when a
/// config reload adds or moves a plugin.
pub struct Watching {
    backend: backend::Backend,
    wanted: Arc<RwLock<HashSet<PathBuf>>>,
    dirs: HashSet<PathBuf>,
}

impl Watching {
    /// Reports events about `files` (and their `.sig`) from now on,
    /// watching any directory not watched yet. Directories no longer
    /// needed stay watched; their events are filtered out.
    pub fn set_files(&mut self, files: &HashSet<PathBuf>) -> Result<(), WatchError> {
        *self.wanted.write().unwrap_or_else(|e| e.into_inner()) = files.clone();
        for dir in files.iter().filter_map(|f| f.parent()) {
            if self.dirs.contains(dir) {
                continue;
            }
            self.backend.watch(dir)?;
            self.dirs.insert(dir.to_path_buf());
        }
        Ok(())
    }

    /// How many raw file-system events the watcher has read so far,
    /// wanted or not: what watching costs the host.
    #[doc(hidden)]
    pub fn raw_events(&self) -> u64 {
        self.backend.raw_events()
    }
}

/// Starts watching the parent directories of `files`; events about those
/// files (or `FILE.sig` of them) are sent as [`Trigger::Paths`].
pub fn watch(files: &HashSet<PathBuf>, tx: Sender<Trigger>) -> Result<Watching, WatchError> {
    let wanted = Arc::new(RwLock::new(HashSet::new()));
    let filter = wanted.clone();
    let report = move |changed: &mut dyn Iterator<Item = PathBuf>| {
        let wanted = filter.read().unwrap_or_else(|e| e.into_inner());
        let paths: Vec<PathBuf> = changed
            .filter(|p| !is_temp(p))
            .map(|p| {
                let text = p.as_os_str().to_string_lossy();
                match text.strip_suffix(".sig") {
                    Some(component) => PathBuf::from(component),
                    None => p,
                }
            })
            .filter(|p| wanted.contains(p))
            .collect();
        if !paths.is_empty() {
            let _ = tx.send(Trigger::Paths(paths));
        }
    };
    let mut watching = Watching {
        backend: backend::Backend::start(Box::new(report))?,
        wanted,
        dirs: HashSet::new(),
    };
    watching.set_files(files)?;
    Ok(watching)
}

/// Where changed paths go: called on the watcher's thread.
type Report = Box<dyn FnMut(&mut dyn Iterator<Item = PathBuf>) + Send>;

/// Linux: inotify, asking the kernel only for the events a deploy makes.
///
/// Why not `notify` here: it subscribes to every open and every write in
/// the watched directories, so a log file, a SQLite file or an input file
/// that lives beside the plugins wakes the host on every append (~4 % of a
/// busy host's CPU in the pipeline benchmark). A deploy always ends in one
/// of the events asked for here: a rename over the file (`MOVED_TO`), the
/// close of an in-place write (`CLOSE_WRITE`), a removal (`DELETE`,
/// `MOVED_FROM`), a new link (`CREATE`) or a `touch`/`chmod` (`ATTRIB`).
#[cfg(target_os = "linux")]
mod backend {
    use std::collections::HashMap;
    use std::os::fd::OwnedFd;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, RwLock};
    use std::thread::JoinHandle;

    use inotify::{Inotify, WatchDescriptor, WatchMask, Watches};
    use rustix::event::{PollFd, PollFlags, poll};

    use super::{Report, WatchError};

    /// The events a deploy can make; see the module docs.
    fn mask() -> WatchMask {
        WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::ATTRIB
            | WatchMask::ONLYDIR
    }

    /// The inotify instance, the thread reading it, and the pipe that
    /// stops that thread when the watcher is dropped.
    pub(super) struct Backend {
        watches: Watches,
        dirs: Arc<RwLock<HashMap<WatchDescriptor, PathBuf>>>,
        raw: Arc<AtomicU64>,
        stop: Option<OwnedFd>,
        thread: Option<JoinHandle<()>>,
    }

    impl Backend {
        pub(super) fn start(mut report: Report) -> Result<Backend, WatchError> {
            let failed = |source: std::io::Error| WatchError {
                path: PathBuf::new(),
                source: notify::Error::io(source),
            };
            let mut inotify = Inotify::init().map_err(failed)?;
            let (stop_rx, stop_tx) = rustix::pipe::pipe().map_err(|e| failed(e.into()))?;
            let dirs: Arc<RwLock<HashMap<WatchDescriptor, PathBuf>>> = Arc::default();
            let raw = Arc::new(AtomicU64::new(0));
            let watches = inotify.watches();
            let (thread_dirs, thread_raw) = (dirs.clone(), raw.clone());
            let thread = std::thread::Builder::new()
                .name("halyard-watch".into())
                .spawn(move || {
                    let mut buffer = [0u8; 4096];
                    loop {
                        let mut fds = [
                            PollFd::new(&inotify, PollFlags::IN),
                            PollFd::new(&stop_rx, PollFlags::IN),
                        ];
                        match poll(&mut fds, None) {
                            Ok(_) => {}
                            Err(rustix::io::Errno::INTR) => continue,
                            Err(_) => return,
                        }
                        if !fds[1].revents().is_empty() {
                            return; // Dropped: the write end closed.
                        }
                        let events = match inotify.read_events(&mut buffer) {
                            Ok(events) => events,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                            Err(_) => return,
                        };
                        let dirs = thread_dirs.read().unwrap_or_else(|e| e.into_inner());
                        let mut changed = events.filter_map(|event| {
                            thread_raw.fetch_add(1, Ordering::Relaxed);
                            Some(dirs.get(&event.wd)?.join(event.name?))
                        });
                        report(&mut changed);
                    }
                })
                .map_err(failed)?;
            Ok(Backend {
                watches,
                dirs,
                raw,
                stop: Some(stop_tx),
                thread: Some(thread),
            })
        }

        pub(super) fn watch(&mut self, dir: &Path) -> Result<(), WatchError> {
            let wd = self.watches.add(dir, mask()).map_err(|source| WatchError {
                path: dir.to_path_buf(),
                source: notify::Error::io(source),
            })?;
            self.dirs
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(wd, dir.to_path_buf());
            Ok(())
        }

        pub(super) fn raw_events(&self) -> u64 {
            self.raw.load(Ordering::Relaxed)
        }
    }

    impl Drop for Backend {
        fn drop(&mut self) {
            // Closing the pipe's write end wakes the thread's poll.
            drop(self.stop.take());
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// Elsewhere: the `notify` crate's recommended watcher.
#[cfg(not(target_os = "linux"))]
mod backend {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::{Report, WatchError};

    pub(super) struct Backend {
        watcher: notify::RecommendedWatcher,
        raw: Arc<AtomicU64>,
    }

    impl Backend {
        pub(super) fn start(mut report: Report) -> Result<Backend, WatchError> {
            let raw = Arc::new(AtomicU64::new(0));
            let counted = raw.clone();
            let watcher = notify::recommended_watcher(move |res: notify::Result<Event>| {
                counted.fetch_add(1, Ordering::Relaxed);
                let Ok(event) = res else { return };
                if matches!(event.kind, EventKind::Access(_)) {
                    return;
                }
                report(&mut event.paths.into_iter());
            })
            .map_err(|source| WatchError {
                path: PathBuf::new(),
                source,
            })?;
            Ok(Backend { watcher, raw })
        }

        pub(super) fn watch(&mut self, dir: &Path) -> Result<(), WatchError> {
            self.watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|source| WatchError {
                    path: dir.to_path_buf(),
                    source,
                })
        }

        pub(super) fn raw_events(&self) -> u64 {
            self.raw.load(Ordering::Relaxed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_files_are_ignored() {
        for name in [
            ".validator.wasm.tmp",
            "validator.wasm.tmp",
            ".validator.wasm.swp",
            "validator.wasm~",
            "4913",
            "v.wasm.part",
        ] {
            assert!(is_temp(Path::new(name)), "{name}");
        }
        for name in ["validator.wasm", "validator.wasm.sig", "halyard.toml"] {
            assert!(!is_temp(Path::new(name)), "{name}");
        }
    }

    /// A busy file beside the plugins (a log, a SQLite file) must not
    /// wake the watcher per write, and a deploy beside it must still be
    /// seen: a rename over the plugin, then an in-place rewrite.
    #[test]
    fn writes_beside_the_plugins_cost_nothing_and_deploys_are_seen() {
        use std::io::Write;
        use std::time::{Duration, Instant};

        let dir = tempfile::tempdir().expect("a temp dir");
        let plugin = dir.path().join("validator.wasm");
        std::fs::write(&plugin, b"v1").expect("write the plugin");
        let (tx, rx) = std::sync::mpsc::channel();
        let watching = watch(&HashSet::from([plugin.clone()]), tx).expect("watch");

        let mut busy = std::fs::File::create(dir.path().join("busy.log")).expect("create");
        for i in 0..2000 {
            writeln!(busy, "line {i}").expect("append");
            busy.flush().expect("flush");
        }
        drop(busy);
        let tmp = dir.path().join(".validator.wasm.tmp");
        std::fs::write(&tmp, b"v2").expect("write the new version");
        std::fs::rename(&tmp, &plugin).expect("deploy by rename");
        let wait_for_plugin = |what: &str| {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(Trigger::Paths(paths)) if paths.contains(&plugin) => return,
                    Ok(_) => continue,
                    Err(_) => panic!("{what}: no event for the plugin within 10 s"),
                }
            }
        };
        wait_for_plugin("rename over the plugin");
        std::fs::write(&plugin, b"v3").expect("rewrite in place");
        wait_for_plugin("in-place rewrite");
        #[cfg(target_os = "linux")]
        assert!(
            watching.raw_events() < 20,
            "{} raw events for 2000 writes beside the plugin and two deploys",
            watching.raw_events()
        );
        drop(watching);
    }
}
