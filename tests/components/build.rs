//! Builds every guest component for `wasm32-wasip2` so that a plain
//! `cargo test` needs nothing built by hand, and writes a constant with the
//! path of each `.wasm` file for the tests and benches to use.
//!
//! Two wasm workspaces are built: `guests/` (the SDK and the example
//! guests) and `tests/hostile/` (guests that misbehave on purpose). They
//! share one target directory, `<target>/guests`, which the quickstart
//! script uses too.

use std::path::{Path, PathBuf};
use std::process::Command;

mod wat_guests;

/// The wasm workspaces and the components each must produce.
const WORKSPACES: &[(&str, &[&str])] = &[
    (
        "guests",
        &[
            "sim_source",
            "jsonl_decoder",
            "range_validator",
            "redact_privacy",
            "fraction_sampler",
            "threshold_detector",
        ],
    ),
    (
        "tests/hostile",
        &[
            "hostile_validator",
            "waitless_validator",
            "forbidden_import",
            "lying_decoder",
            "lying_source",
            "lying_privacy",
            "lying_answer",
            "legacy_redact",
            "redact_v0_2",
            "trapping_detector",
        ],
    ),
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest
        .parent()
        .and_then(Path::parent)
        .expect("tests/components lives two levels below the repo root")
        .to_path_buf();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| if d.is_absolute() { d } else { root.join(d) })
        .unwrap_or_else(|| root.join("target"))
        .join("guests");

    ensure_wasm_target();
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    // The flat-batch codec is compiled into every 0.2.0 guest (through the SDK).
    println!("cargo:rerun-if-changed={}", root.join("codec").display());
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let mut consts = String::new();
    for (workspace, components) in WORKSPACES {
        let dir = root.join(workspace);
        for entry in ["Cargo.toml", "Cargo.lock"] {
            println!("cargo:rerun-if-changed={}", dir.join(entry).display());
        }
        for member in std::fs::read_dir(&dir).expect("workspace dir").flatten() {
            let src = member.path().join("src");
            if src.is_dir() {
                println!("cargo:rerun-if-changed={}", src.display());
                println!(
                    "cargo:rerun-if-changed={}",
                    member.path().join("Cargo.toml").display()
                );
                let wit = member.path().join("wit");
                if wit.is_dir() {
                    println!("cargo:rerun-if-changed={}", wit.display());
                }
            }
        }
        build_workspace(&dir.join("Cargo.toml"), &target_dir);
        for name in *components {
            let path = target_dir
                .join("wasm32-wasip2/release")
                .join(format!("{name}.wasm"));
            assert!(
                path.is_file(),
                "building {workspace} did not produce {}",
                path.display()
            );
            consts.push_str(&format!(
                "/// The compiled `{name}` component.\npub const {}: &str = {:?};\n",
                name.to_uppercase(),
                path.display().to_string()
            ));
        }
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    for (name, path) in wat_guests::build(&root, &out_dir) {
        consts.push_str(&format!(
            "/// The `{name}` hostile component, built from WAT.\npub const {name}: &str = {path:?};\n"
        ));
    }
    let out = out_dir.join("components.rs");
    std::fs::write(out, consts).expect("write components.rs");
}

/// Installs the wasm32-wasip2 standard library if it is missing: automatic
/// toolchain installs are off on our machines, and a fresh clone must build.
fn ensure_wasm_target() {
    let installed = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", "wasm32-wasip2"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .is_some_and(|dir| dir.is_dir());
    if !installed {
        let status = Command::new("rustup")
            .args(["target", "add", "wasm32-wasip2"])
            .status()
            .expect("the wasm32-wasip2 target is missing and rustup could not be run");
        assert!(status.success(), "`rustup target add wasm32-wasip2` failed");
    }
}

fn build_workspace(manifest: &Path, target_dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir);
    // Flags and wrappers meant for the host build (clippy, coverage, the
    // host's RUSTFLAGS) must not leak into the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo for {}: {e}", manifest.display()));
    assert!(status.success(), "building {} failed", manifest.display());
}
