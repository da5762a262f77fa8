//! Reading plugin files (components and their `.sig`) without trusting
//! what sits at the path.
//!
//! A plugin path is operator input, and in hot reload or rollout it is
//! whatever was last renamed there. Read naively, a symlink to `/dev/zero`
//! is read until memory runs out, a FIFO blocks the reader forever, and a
//! 300 MB file is in memory before anything refuses it. So every read here:
//!
//! 1. `stat`s the path (following symlinks) and refuses anything but a
//!    regular file (directory, FIFO, device, socket) at once, with what it
//!    is, without opening it;
//! 2. refuses a file over the size cap (`[plugins] max_file_mb`, default
//!    [`DEFAULT_MAX_FILE_BYTES`]) before reading a byte;
//! 3. opens with `O_NONBLOCK` (so even a FIFO swapped in after the `stat`
//!    cannot block the open) and `fstat`s the opened descriptor, closing
//!    that race: what is read is the regular file that was checked;
//! 4. for components, reads the 8-byte header first and refuses a file that
//!    is not a WebAssembly component before reading the rest;
//! 5. reads at most the cap plus one byte, so a file that grows while it is
//!    read is refused rather than followed.
//!
//! Invariant: no plugin file read allocates more than the cap, blocks, or
//! reads anything but a regular file.

use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use super::error::LoadError;

/// The default cap on a component file. Real plugins are 0.1–10 MB; a
/// Python guest with its interpreter is ~40 MB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 << 20;

/// The setting that raises the cap, named in refusals.
const CAP_SETTING: &str = "`[plugins] max_file_mb`, or `--max-file-mb` for the plugin tools";

/// The first bytes of a component: the `\0asm` magic, a version, and the
/// layer (1 for components, 0 for core modules).
const HEADER_BYTES: usize = 8;

/// Why a plugin file was not read.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.describe())]
pub struct FileError {
    /// The path as given.
    pub path: PathBuf,
    /// What was wrong.
    pub problem: FileProblem,
}

/// What was wrong with a plugin file, without its path.
#[derive(Debug, thiserror::Error)]
pub enum FileProblem {
    /// The OS refused (missing file, permissions).
    #[error("{0}")]
    Io(std::io::Error),
    /// Not a regular file once symlinks are followed.
    #[error("is {what}{link}, not a regular file; refused without reading it")]
    NotRegular {
        /// What it is: "a directory", "a FIFO (named pipe)", ….
        what: &'static str,
        /// ` (a symlink to …)` when the path is a symlink, else empty.
        link: String,
    },
    /// Larger than the cap before reading started.
    #[error("is {} ({size} bytes), over the {} limit ({setting}); refused before reading it", mib(*size), mib(*max))]
    TooLarge {
        /// Its size.
        size: u64,
        /// The cap.
        max: u64,
        /// The setting that sets the cap.
        setting: &'static str,
    },
    /// Grew past the cap while it was read.
    #[error("grew past the {} limit ({setting}) while it was read", mib(*max))]
    Grew {
        /// The cap.
        max: u64,
        /// The setting that sets the cap.
        setting: &'static str,
    },
}

impl FileError {
    fn describe(&self) -> String {
        match &self.problem {
            FileProblem::Io(e) => format!("cannot read {}: {e}", self.path.display()),
            other => format!("{} {other}", self.path.display()),
        }
    }

    /// Whether the file is simply not there (hot reload treats that as a
    /// removal, not a refusal).
    pub fn is_not_found(&self) -> bool {
        matches!(&self.problem, FileProblem::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }

    /// The error as an `io::Error` without the path (for
    /// `halyard_trust::plugin_sig`, which adds the path itself); a missing
    /// file stays `NotFound`.
    pub fn into_io(self) -> std::io::Error {
        match self.problem {
            FileProblem::Io(e) => e,
            other => std::io::Error::new(std::io::ErrorKind::InvalidInput, other.to_string()),
        }
    }
}

/// Reads the component at `path`: a regular file of at most `max` bytes
/// that starts with a component header. Fails fast on anything else, with
/// the reason.
pub fn read_component(path: &Path, max: u64) -> Result<Vec<u8>, LoadError> {
    let (mut file, size) = open_regular(path, max, CAP_SETTING)?;
    let mut bytes = Vec::with_capacity(usize::try_from(size.min(max)).unwrap_or(0));
    read_up_to(&mut file, &mut bytes, HEADER_BYTES as u64, path)?;
    super::load::check_header(path, &bytes)?;
    read_up_to(&mut file, &mut bytes, max + 1 - HEADER_BYTES as u64, path)?;
    if bytes.len() as u64 > max {
        return Err(too_big_while_read(path, max, CAP_SETTING).into());
    }
    Ok(bytes)
}

/// Reads any plugin-related file (a `.sig`, a component being signed) under
/// the same rules, capped at `max` bytes, without the header check.
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    read_capped(path, max, CAP_SETTING)
}

/// [`read_regular`] in the shape `halyard_trust::plugin_sig` takes for its
/// reads: no path in the error, `NotFound` kept.
pub fn read_for_trust(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    read_capped(path, max, "signature and component files have a size cap")
        .map_err(FileError::into_io)
}

/// Reads the `.sig` of the component at `path` (capped at
/// [`halyard_trust::plugin_sig::MAX_SIG_FILE`]) and checks it against the
/// component's `bytes`, the `trusted` keys and what the component is
/// installed as: its file name, `kind` (when declared) and the host's
/// `fleet`. Returns the verified signature, whose kind and version the
/// loader checks once the component has reported them.
pub fn check_signature(
    path: &Path,
    bytes: &[u8],
    kind: Option<&str>,
    fleet: Option<&str>,
    trusted: &[halyard_trust::PublicKey],
) -> Result<halyard_trust::plugin_sig::Signature, LoadError> {
    use halyard_trust::plugin_sig;
    let sig =
        plugin_sig::read_sig_file(path, read_for_trust).map_err(|e| signature_refused(path, e))?;
    let expected = plugin_sig::Expected::for_file(path, kind, fleet);
    plugin_sig::verify(bytes, &sig, &expected, trusted).map_err(|e| signature_refused(path, e))
}

/// A [`LoadError::Signature`] for the component at `path`.
pub fn signature_refused(
    path: &Path,
    source: halyard_trust::plugin_sig::SignatureError,
) -> LoadError {
    LoadError::Signature {
        path: path.to_path_buf(),
        source: Box::new(source),
    }
}

/// Reads any file under the same rules (regular file, never blocking, at
/// most `max` bytes); `setting` names what sets the cap in a refusal.
pub(crate) fn read_capped(
    path: &Path,
    max: u64,
    setting: &'static str,
) -> Result<Vec<u8>, FileError> {
    let (mut file, size) = open_regular(path, max, setting)?;
    let mut bytes = Vec::with_capacity(usize::try_from(size.min(max)).unwrap_or(0));
    read_up_to(&mut file, &mut bytes, max.saturating_add(1), path)?;
    if bytes.len() as u64 > max {
        return Err(too_big_while_read(path, max, setting));
    }
    Ok(bytes)
}

/// Steps 1–3 of the module docs: the checked, opened file and its size.
fn open_regular(
    path: &Path,
    max: u64,
    setting: &'static str,
) -> Result<(std::fs::File, u64), FileError> {
    let fail = |problem| FileError {
        path: path.to_path_buf(),
        problem,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(FileProblem::Io(e)))?;
    check_meta(path, &meta, max, setting)?;
    // O_NONBLOCK: a FIFO put here since the stat opens at once instead of
    // waiting for a writer; on a regular file it changes nothing.
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = rustix::fs::open(path, flags, Mode::empty())
        .map_err(|e| fail(FileProblem::Io(std::io::Error::from(e))))?;
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(|e| fail(FileProblem::Io(e)))?;
    check_meta(path, &meta, max, setting)?;
    Ok((file, meta.len()))
}

fn check_meta(
    path: &Path,
    meta: &std::fs::Metadata,
    max: u64,
    setting: &'static str,
) -> Result<(), FileError> {
    let fail = |problem| FileError {
        path: path.to_path_buf(),
        problem,
    };
    let ty = meta.file_type();
    if !ty.is_file() {
        let what = if ty.is_dir() {
            "a directory"
        } else if ty.is_fifo() {
            "a FIFO (named pipe)"
        } else if ty.is_char_device() {
            "a character device"
        } else if ty.is_block_device() {
            "a block device"
        } else if ty.is_socket() {
            "a socket"
        } else {
            "a special file"
        };
        let link = std::fs::read_link(path)
            .map(|target| format!(" (a symlink to {})", target.display()))
            .unwrap_or_default();
        return Err(fail(FileProblem::NotRegular { what, link }));
    }
    if meta.len() > max {
        return Err(fail(FileProblem::TooLarge {
            size: meta.len(),
            max,
            setting,
        }));
    }
    Ok(())
}

/// Appends at most `limit` more bytes from `file` to `bytes`.
fn read_up_to(
    file: &mut std::fs::File,
    bytes: &mut Vec<u8>,
    limit: u64,
    path: &Path,
) -> Result<(), FileError> {
    file.take(limit)
        .read_to_end(bytes)
        .map(|_| ())
        .map_err(|e| FileError {
            path: path.to_path_buf(),
            problem: FileProblem::Io(e),
        })
}

fn too_big_while_read(path: &Path, max: u64, setting: &'static str) -> FileError {
    FileError {
        path: path.to_path_buf(),
        problem: FileProblem::Grew { max, setting },
    }
}

/// A size for messages: `64 MiB`, `300.5 MiB`, `16 KiB`, `100 bytes`.
fn mib(bytes: u64) -> String {
    let (shift, unit) = match bytes {
        b if b >= 1 << 20 => (20, "MiB"),
        b if b >= 1 << 10 => (10, "KiB"),
        b => return format!("{b} bytes"),
    };
    let whole = bytes >> shift;
    let tenths = ((bytes & ((1 << shift) - 1)) * 10) >> shift;
    if tenths == 0 {
        format!("{whole} {unit}")
    } else {
        format!("{whole}.{tenths} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// Every refusal below must come at once, not after a read.
    const QUICK: Duration = Duration::from_secs(2);

    fn refused(path: &Path) -> String {
        let started = Instant::now();
        let err = read_component(path, DEFAULT_MAX_FILE_BYTES).unwrap_err();
        assert!(started.elapsed() < QUICK, "took {:?}", started.elapsed());
        err.to_string()
    }

    #[test]
    fn special_files_are_refused_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.wasm");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let err = refused(&fifo);
        assert!(
            err.contains("is a FIFO (named pipe), not a regular file"),
            "{err}"
        );

        let zero = dir.path().join("zero.wasm");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let err = refused(&zero);
        assert!(
            err.contains("is a character device (a symlink to /dev/zero)"),
            "{err}"
        );

        let sub = dir.path().join("dir.wasm");
        std::fs::create_dir(&sub).unwrap();
        assert!(refused(&sub).contains("is a directory"));

        let missing = refused(&dir.path().join("missing.wasm"));
        assert!(missing.starts_with("cannot read "), "{missing}");
    }

    #[test]
    fn size_cap_is_checked_before_reading_and_while_reading() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.wasm");
        // Sparse: costs no disk.
        std::fs::File::create(&big)
            .unwrap()
            .set_len(300 << 20)
            .unwrap();
        let err = refused(&big);
        assert!(
            err.contains("is 300 MiB (314572800 bytes), over the 64 MiB limit"),
            "{err}"
        );
        assert!(err.contains("[plugins] max_file_mb"), "{err}");

        let small = dir.path().join("small.sig");
        std::fs::write(&small, [b'x'; 100]).unwrap();
        assert_eq!(read_regular(&small, 100).unwrap().len(), 100);
        assert!(read_regular(&small, 99).is_err());
    }

    #[test]
    fn the_header_is_checked_first() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("text.wasm");
        std::fs::write(&text, "hello, this is not wasm at all").unwrap();
        assert!(refused(&text).contains("is not a WebAssembly file"));
        let core = dir.path().join("core.wasm");
        std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
        assert!(refused(&core).contains("core WebAssembly module"));
        let component = std::fs::read(halyard_test_components::RANGE_VALIDATOR).unwrap();
        let path = Path::new(halyard_test_components::RANGE_VALIDATOR);
        assert_eq!(read_component(path, 64 << 20).unwrap(), component);
        // A cap below the file's size refuses it.
        let err = read_component(path, 1024).unwrap_err().to_string();
        assert!(err.contains("over the 1 KiB limit"), "{err}");
    }

    #[test]
    fn sizes_read_as_mib() {
        assert_eq!(mib(64 << 20), "64 MiB");
        assert_eq!(mib((300 << 20) + (1 << 19)), "300.5 MiB");
        assert_eq!(mib(16 << 10), "16 KiB");
        assert_eq!(mib(100), "100 bytes");
    }
}
