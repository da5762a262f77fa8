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

use notify::{Event, EventKind, RecursiveMode, Watcher};

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
    watcher: notify::RecommendedWatcher,
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
            self.watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|source| WatchError {
                    path: dir.to_path_buf(),
                    source,
                })?;
            self.dirs.insert(dir.to_path_buf());
        }
        Ok(())
    }
}

/// Starts watching the parent directories of `files`; events about those
/// files (or `FILE.sig` of them) are sent as [`Trigger::Paths`].
pub fn watch(files: &HashSet<PathBuf>, tx: Sender<Trigger>) -> Result<Watching, WatchError> {
    let wanted = Arc::new(RwLock::new(HashSet::new()));
    let filter = wanted.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<Event>| {
        let Ok(event) = res else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        let wanted = filter.read().unwrap_or_else(|e| e.into_inner());
        let paths: Vec<PathBuf> = event
            .paths
            .iter()
            .filter(|p| !is_temp(p))
            .map(|p| {
                let text = p.as_os_str().to_string_lossy();
                match text.strip_suffix(".sig") {
                    Some(component) => PathBuf::from(component),
                    None => p.clone(),
                }
            })
            .filter(|p| wanted.contains(p))
            .collect();
        if !paths.is_empty() {
            let _ = tx.send(Trigger::Paths(paths));
        }
    })
    .map_err(|source| WatchError {
        path: PathBuf::new(),
        source,
    })?;
    let mut watching = Watching {
        watcher,
        wanted,
        dirs: HashSet::new(),
    };
    watching.set_files(files)?;
    Ok(watching)
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
}
