//! The guests' own unit tests (the SDK, the example guests), natively.
//!
//! Why here: the guests live in a workspace of their own (they build for
//! `wasm32-wasip2`), so `cargo test --workspace` at the root would not run
//! their tests. They hold the checks that each example guest's in-place
//! (views) path and owned path give the same results, and the decoder's
//! byte-for-byte comparison with a `serde_json::Value` reference; the
//! README's one test command must run them.

use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn every_guest_unit_test_passes_natively() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("tests/components lives two levels below the repo root");
    // A target dir of its own beside the wasm builds: a native build must
    // not invalidate them, nor wait on their lock.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| if d.is_absolute() { d } else { root.join(d) })
        .unwrap_or_else(|| root.join("target"))
        .join("guests-native");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("test")
        .arg("--manifest-path")
        .arg(root.join("guests/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target);
    // The host build's flags and wrappers are not the guests'.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the guests' unit tests failed:\n{stdout}\n{stderr}"
    );
    // Every guest crate with tests ran them: a count of zero would mean
    // the command tested nothing.
    let passed: usize = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(passed >= 50, "only {passed} guest tests ran:\n{stdout}");
}
