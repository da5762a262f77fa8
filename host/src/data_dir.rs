//! The data directory's permissions.
//!
//! `data_dir` holds what others on the machine must not read or change:
//! accepted events not yet delivered (`buffer.db` and its `-wal`/`-shm`),
//! the host's signing key, the licence (`licence.token`, and
//! `licence.state`, its sealed history), the rollback ledger, the compile
//! cache and its secret. So the directory is 0700 and its files 0600, set
//! when they are created; a directory or file found looser (made by an
//! older version, or by hand) is tightened at start, with a log line
//! naming the old mode.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Creates `dir` (and missing parents) 0700, or tightens it to 0700.
pub fn prepare(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    tighten(dir, 0o700)
}

/// Clears every permission bit of `path` outside `allowed` (0700 or 0600),
/// with a warning naming the mode found; a missing path is left alone.
pub fn tighten(path: &Path, allowed: u32) -> std::io::Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & !allowed == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & allowed))?;
    tracing::warn!(path = %path.display(), was = format!("{mode:o}"),
        now = format!("{:o}", mode & allowed), "permissions were looser than owner-only: tightened");
    Ok(())
}

/// Creates the SQLite file `db` empty with mode 0600 if it does not exist
/// yet, so SQLite never creates it with the default mode (it gives its
/// `-wal` and `-shm` files the database file's mode).
pub fn precreate_private(db: &Path) -> std::io::Result<()> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(db)
    {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// `db` and its `-wal`, `-shm` and `-journal` files.
pub fn sqlite_files(db: &Path) -> [PathBuf; 4] {
    let with = |suffix: &str| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [
        db.to_path_buf(),
        with("-wal"),
        with("-shm"),
        with("-journal"),
    ]
}

/// Tightens `db` and its companion files to 0600 (see [`tighten`]).
pub fn tighten_sqlite(db: &Path) -> std::io::Result<()> {
    for file in sqlite_files(db) {
        tighten(&file, 0o600)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_directory_and_buffer_files_end_up_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700, "tightened");
        let db = dir.join("buffer.db");
        precreate_private(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        precreate_private(&db).unwrap();
        let wal = &sqlite_files(&db)[1];
        std::fs::write(wal, b"").unwrap();
        std::fs::set_permissions(wal, std::fs::Permissions::from_mode(0o644)).unwrap();
        tighten_sqlite(&db).unwrap();
        assert_eq!(mode(wal), 0o600);
    }
}
