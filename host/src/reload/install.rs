//! Installing a verified rollout download into the plugin directory, so
//! that hot reload only ever sees a complete component beside its
//! signature.
//!
//! Invariant: the component and its `.sig` are both written to temp files
//! in the same directory (dotfiles the watcher ignores) and fsynced before
//! either is renamed into place, so a failed write changes nothing; the
//! `.sig` is renamed first so the component is never seen without it, and
//! is put back if the component's rename then fails.

use std::io::Write;
use std::path::{Path, PathBuf};

use halyard_trust::plugin_sig::{Signature, sig_path};

use super::rollout::RolloutError;

/// Installs `bytes` as `dest` with `sig` (if any) as its `.sig`. Both are
/// first staged as fsynced dotfile temps in the same directory, so failing
/// to write either changes nothing; then the `.sig` is renamed into place
/// before the component (the component is never seen without it), and if
/// the component's rename fails the previous `.sig` is put back, so the
/// installed pair still verifies. An unsigned install removes the previous
/// version's `.sig`.
pub(super) fn install_pair(
    dest: &Path,
    bytes: &[u8],
    sig: Option<&Signature>,
) -> Result<(), RolloutError> {
    let install = |source| RolloutError::Install {
        path: dest.to_path_buf(),
        source,
    };
    let component = stage(dest, bytes).map_err(install)?;
    let Some(sig) = sig else {
        commit(&component, dest).map_err(install)?;
        // A `.sig` of the previous version no longer matches: removed, so
        // turning trusted keys on later refuses an unsigned plugin for what
        // it is, not for a stale signature.
        return match std::fs::remove_file(sig_path(dest)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(install(e)),
            _ => Ok(()),
        };
    };
    let sig_dest = sig_path(dest);
    let staged_sig = match stage(&sig_dest, sig.to_json().as_bytes()) {
        Ok(tmp) => tmp,
        Err(e) => {
            let _ = std::fs::remove_file(&component);
            return Err(install(e));
        }
    };
    let previous = crate::plugin::file::read_regular(
        &sig_dest,
        halyard_trust::plugin_sig::MAX_SIG_FILE as u64,
    )
    .ok();
    if let Err(e) = commit(&staged_sig, &sig_dest) {
        let _ = std::fs::remove_file(&component);
        return Err(install(e));
    }
    if let Err(e) = commit(&component, dest) {
        // Best effort: put back the signature of the component still there.
        let _ = match previous.and_then(|old| stage(&sig_dest, &old).ok()) {
            Some(tmp) => commit(&tmp, &sig_dest),
            None => std::fs::remove_file(&sig_dest),
        };
        return Err(install(e));
    }
    Ok(())
}

/// Writes `bytes` to a dotfile temp beside `path` (ignored by the
/// watcher), fsynced; returns the temp's path. A temp that was created but
/// not fully written is removed.
fn stage(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    match file.write_all(bytes).and_then(|()| file.sync_all()) {
        Ok(()) => Ok(tmp),
        Err(e) => {
            drop(file);
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Renames a staged temp over `path`; removes the temp if that fails.
fn commit(tmp: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::rename(tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use halyard_trust::KeyPair;

    #[test]
    fn an_unsigned_install_removes_the_previous_versions_signature() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("validator.wasm");
        let key = KeyPair::generate().unwrap();
        let v1 = b"v1 bytes".to_vec();
        let subject = halyard_trust::plugin_sig::Subject {
            name: "validator".into(),
            kind: "validator".into(),
            version: "1".into(),
            fleet: None,
        };
        install_pair(
            &dest,
            &v1,
            Some(&halyard_trust::plugin_sig::sign(&v1, &subject, &key).unwrap()),
        )
        .unwrap();
        assert!(sig_path(&dest).exists());
        install_pair(&dest, b"v2 bytes", None).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"v2 bytes");
        assert!(!sig_path(&dest).exists(), "stale signature left beside v2");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temp files left");
    }
}
