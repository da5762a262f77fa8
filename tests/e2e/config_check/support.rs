//! Running the binary's tools with one compile cache per test process, so
//! the same guest is compiled once however many tests load it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The compile cache all tests of this binary share.
fn cache_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"))
        .path()
}

/// `halyard <args>` with the shared cache, dev mode on unless `licensed`.
pub fn halyard(args: &[&str], licensed: bool) -> Output {
    halyard_with_env(args, licensed, &[])
}

/// [`halyard`] with extra environment variables.
pub fn halyard_with_env(args: &[&str], licensed: bool, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_halyard"));
    cmd.args(args)
        .envs(env.iter().copied())
        .env("HALYARD_CACHE_DIR", cache_dir())
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .env_remove("HALYARD_DEV_MODE");
    if !licensed {
        cmd.env("HALYARD_DEV_MODE", "1");
    }
    bounded(cmd, TOOL_LIMIT)
}

/// How long one tool run may take: a cold compile of the four example
/// guests in a debug build on a busy 2-core machine takes seconds; a read
/// blocked on a FIFO would take forever.
const TOOL_LIMIT: Duration = Duration::from_secs(120);

/// Runs `cmd` to completion, killing it (and failing the test) if it is
/// still running after `limit`. Output goes through files, so a chatty
/// child never blocks on a full pipe.
fn bounded(mut cmd: Command, limit: Duration) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = cmd
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("run halyard");
    let status = crate::pipeline_support::wait_exit_or_kill(&mut child, limit, || {
        format!(
            "halyard {:?} still running after {limit:?}: {}",
            cmd.get_args().collect::<Vec<_>>(),
            std::fs::read_to_string(&err).unwrap_or_default()
        )
    });
    Output {
        status,
        stdout: std::fs::read(&out).unwrap_or_default(),
        stderr: std::fs::read(&err).unwrap_or_default(),
    }
}

/// Stdout and stderr as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A refusal must not wait on the file: no read of a device, no open of a
/// FIFO. The bound covers starting a debug binary on a busy 2-core machine;
/// a blocked read would never finish at all.
pub const QUICK: Duration = Duration::from_secs(10);

/// Runs `halyard run --config <config>` (dev mode), expecting it to exit
/// non-zero within [`QUICK`]; returns its stderr.
pub fn run_refused(config: &Path) -> String {
    let log = config.with_extension("log");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_halyard"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env("HALYARD_DEV_MODE", "1")
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start halyard");
    let status = crate::pipeline_support::wait_exit_or_kill(
        &mut child,
        QUICK.saturating_sub(started.elapsed()),
        || {
            format!(
                "`halyard run` was still running after {QUICK:?}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        },
    );
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    let code = status.code();
    assert_eq!(code, Some(1), "{log}");
    log
}

/// The special files every refusal test uses, made in `dir`: a FIFO, a
/// symlink to `/dev/zero`, a directory and a sparse 300 MB file (no disk
/// used), each with the words its refusal must contain.
pub fn special_files(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let fifo = dir.join("fifo.wasm");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
    let zero = dir.join("zero.wasm");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let sub = dir.join("dir.wasm");
    std::fs::create_dir(&sub).unwrap();
    let big = dir.join("big.wasm");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(300 << 20)
        .unwrap();
    vec![
        (fifo, "is a FIFO (named pipe), not a regular file"),
        (
            zero,
            "is a character device (a symlink to /dev/zero), not a regular file",
        ),
        (sub, "is a directory, not a regular file"),
        (big, "is 300 MiB (314572800 bytes), over the 64 MiB limit"),
    ]
}

/// A copy of a real guest whose import `from` is renamed to `to` (same
/// length, so the binary stays valid): a component built against an
/// interface this host does not provide.
pub fn with_renamed_import(src: &str, from: &str, to: &str, dest: &Path) {
    assert_eq!(from.len(), to.len());
    let bytes = std::fs::read(src).unwrap();
    let (from, to) = (from.as_bytes(), to.as_bytes());
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let mut renamed = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
            renamed += 1;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    assert!(
        renamed > 0,
        "no `{}` in {src}",
        String::from_utf8_lossy(from)
    );
    std::fs::write(dest, out).unwrap();
}
