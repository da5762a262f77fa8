//! The http input's Unix domain socket: the same HTTP/1.1 ingest as the
//! TCP listener (same handler, limits, deadlines and auth), on a socket
//! file whose permissions say which local processes may post.
//!
//! Making the file, so that no process can connect with permissions other
//! than the configured ones and a crashed host's file does not block the
//! next start:
//! 1. if `path` exists it must be a socket (anything else is left alone and
//!    the start fails); a connect to it that succeeds means another process
//!    serves it (the start fails: "in use"); refused means it is stale;
//! 2. the socket is bound under a temporary name beside `path`, given its
//!    `mode` (and `group`), and only then renamed onto `path` — which
//!    replaces a stale file atomically;
//! 3. at stop the file is removed, if it is still the one this host made
//!    (same device and inode), so a newer host's socket is never deleted.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

use crate::config::{IngestSocket, resolve_group};

/// A bound Unix socket listener; its file is removed when dropped.
pub struct UnixBound {
    listener: UnixListener,
    path: PathBuf,
    /// (device, inode) of the file made, to remove only that one.
    made: (u64, u64),
}

impl UnixBound {
    /// Makes, binds and opens `socket.path` as described in the module
    /// header. Needs a tokio runtime (the listener registers with it).
    pub fn bind(socket: &IngestSocket) -> io::Result<UnixBound> {
        let path = socket.path.clone();
        clear_stale(&path)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "socket".into());
        let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&temp);
        let listener = UnixListener::bind(&temp)?;
        let made = (|| {
            let bits = socket.mode.bits().ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("bad mode {}", socket.mode),
                )
            })?;
            std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(bits))?;
            if let Some(group) = &socket.group {
                let gid = resolve_group(group).map_err(io::Error::other)?;
                rustix::fs::chown(&temp, None, Some(rustix::fs::Gid::from_raw(gid)))?;
            }
            std::fs::rename(&temp, &path)?;
            let meta = std::fs::symlink_metadata(&path)?;
            Ok::<_, io::Error>((meta.dev(), meta.ino()))
        })();
        match made {
            Ok(made) => Ok(UnixBound {
                listener,
                path,
                made,
            }),
            Err(err) => {
                let _ = std::fs::remove_file(&temp);
                Err(err)
            }
        }
    }

    /// The socket file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next connection.
    pub async fn accept(&self) -> io::Result<UnixStream> {
        self.listener.accept().await.map(|(stream, _)| stream)
    }
}

impl Drop for UnixBound {
    fn drop(&mut self) {
        let ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.made);
        if ours && let Err(err) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %err,
                "http input: could not remove the socket file");
        }
    }
}

/// Removes `path` if it is a socket nobody serves; fails if it is anything
/// else or still served.
fn clear_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket; not replaced",
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process serves this socket",
        )),
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "http input: replacing a stale socket file");
            Ok(())
        }
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SocketMode;

    fn config(path: &Path, mode: u32) -> IngestSocket {
        IngestSocket {
            path: path.to_path_buf(),
            mode: SocketMode::new(mode),
            group: None,
        }
    }

    #[tokio::test]
    async fn mode_is_set_stale_files_replaced_live_ones_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.sock");
        // A stale socket: bound, then its listener gone.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let bound = UnixBound::bind(&config(&path, 0o640)).expect("stale replaced");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        // Served: a second host must not take it over.
        let err = UnixBound::bind(&config(&path, 0o600))
            .err()
            .expect("in use");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        drop(bound);
        assert!(!path.exists(), "removed at stop");
        std::fs::write(&path, b"data").unwrap();
        let err = UnixBound::bind(&config(&path, 0o600))
            .err()
            .expect("not a socket");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"data", "left alone");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left");
    }
}
