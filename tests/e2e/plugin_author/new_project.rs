//! `halyard plugin new`: a Rust project made outside the repository builds
//! on its own (the SDK as a plain path dependency) and passes its own case
//! file; JavaScript and Python projects hold their source, helpers, WIT,
//! build script and cases (CI builds those with their toolchains).

use std::process::Command;

use super::support::{Cli, both, stdout};

#[test]
fn a_new_rust_validator_builds_outside_the_repo_and_passes_its_cases() {
    let cli = Cli::new();
    let project = cli.path("my-check");
    let out = cli.run(&[
        "plugin",
        "new",
        "my-check",
        "--kind",
        "validator",
        "--dir",
        project.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", both(&out));
    assert!(
        stdout(&out).contains("created my-check (Rust validator)"),
        "{}",
        stdout(&out)
    );
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "src/lib.rs",
        "cases.jsonl",
        "build.sh",
        "wit/0.2.0/plugin.wit",
    ] {
        assert!(project.join(file).is_file(), "{file}");
    }
    let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("[workspace]"), "{manifest}");
    assert!(!manifest.contains(".workspace"), "{manifest}");

    let wasm = build_project(&project, "my_check");
    let cases = project.join("cases.jsonl");
    let out = cli.run(&[
        "plugin",
        "test",
        wasm.to_str().unwrap(),
        "--cases",
        cases.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", both(&out));
    assert!(
        stdout(&out).ends_with(": 5 passed, 0 failed\n"),
        "{}",
        stdout(&out)
    );
    let out = cli.run(&["plugin", "check", wasm.to_str().unwrap()]);
    assert!(out.status.success(), "{}", both(&out));
    assert!(
        stdout(&out).contains("name:     my-check\n"),
        "{}",
        stdout(&out)
    );

    // Not over an existing project.
    let out = cli.run(&[
        "plugin",
        "new",
        "my-check",
        "--kind",
        "validator",
        "--dir",
        project.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        both(&out).contains("exists and is not empty"),
        "{}",
        both(&out)
    );
}

#[test]
fn js_and_python_projects_hold_everything_their_build_needs() {
    let cli = Cli::new();
    let cases = [
        (
            "js",
            "validator",
            &["validator.js", "halyard.js", "build.mjs", "package.json"][..],
        ),
        (
            "python",
            "privacy",
            &["app.py", "halyard_plugin/__init__.py", "requirements.txt"][..],
        ),
        (
            "python",
            "sampler",
            &["app.py", "halyard_plugin/__init__.py", "requirements.txt"][..],
        ),
    ];
    for (lang, kind, files) in cases {
        let name = format!("{lang}-{kind}");
        let dir = cli.path(&name);
        let out = cli.run(&[
            "plugin",
            "new",
            &name,
            "--kind",
            kind,
            "--lang",
            lang,
            "--dir",
            dir.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", both(&out));
        for file in files
            .iter()
            .chain(&["build.sh", "cases.jsonl", "wit/plugin.wit"])
        {
            assert!(dir.join(file).is_file(), "{name}: {file}");
        }
        let build = std::fs::read_to_string(dir.join("build.sh")).unwrap();
        assert!(
            build.contains(&format!(" {kind} ")) || build.contains(&format!("-w {kind} ")),
            "{build}"
        );
        assert!(build.contains("plugin test"), "{build}");
        let wit = std::fs::read_to_string(dir.join("wit/plugin.wit")).unwrap();
        assert!(wit.contains("package halyard:plugin@0.1.0;"));
    }
    // Kinds without a template in that language say so.
    let out = cli.run(&[
        "plugin",
        "new",
        "src",
        "--kind",
        "source",
        "--lang",
        "python",
        "--dir",
        cli.path("src").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        both(&out).contains("no Python template for a source"),
        "{}",
        both(&out)
    );
    // Names that would not make a crate or package are refused.
    let out = cli.run(&["plugin", "new", "My_Plugin", "--kind", "validator"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        both(&out).contains("plugin name `My_Plugin`"),
        "{}",
        both(&out)
    );
}

/// Builds the Rust project at `project` for wasm32-wasip2 and returns its
/// component (`crate_name`.wasm).
fn build_project(project: &std::path::Path, crate_name: &str) -> std::path::PathBuf {
    // The same target directory as the example guests, so the SDK's
    // dependencies are built already; the lock file written pins the
    // versions the repository's guests build with, so nothing is fetched.
    // `<target>/guests/wasm32-wasip2/release/range_validator.wasm` -> `<target>/guests`.
    let target = std::path::Path::new(halyard_test_components::RANGE_VALIDATOR)
        .ancestors()
        .nth(3)
        .expect("the guests' target directory")
        .to_path_buf();
    let build = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--offline",
            "--target",
            "wasm32-wasip2",
        ])
        .current_dir(project)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo");
    assert!(build.status.success(), "{}", both(&build));
    target.join(format!("wasm32-wasip2/release/{crate_name}.wasm"))
}

#[test]
fn a_new_rust_detector_builds_outside_the_repo_and_passes_its_cases() {
    let cli = Cli::new();
    let project = cli.path("my-alarm");
    let out = cli.run(&[
        "plugin",
        "new",
        "my-alarm",
        "--kind",
        "detector",
        "--dir",
        project.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", both(&out));
    assert!(project.join("wit/0.3.0/plugin.wit").is_file());
    let wasm = build_project(&project, "my_alarm");
    let cases = project.join("cases.jsonl");
    let out = cli.run(&[
        "plugin",
        "test",
        wasm.to_str().unwrap(),
        "--cases",
        cases.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", both(&out));
    assert!(
        stdout(&out).ends_with(": 3 passed, 0 failed\n"),
        "{}",
        stdout(&out)
    );
    let out = cli.run(&["plugin", "check", wasm.to_str().unwrap()]);
    assert!(
        stdout(&out).contains("kind:     detector\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_new_rust_privacy_policy_carries_the_0_4_wit_it_is_exported_as() {
    let cli = Cli::new();
    let project = cli.path("my-policy");
    let out = cli.run(&[
        "plugin",
        "new",
        "my-policy",
        "--kind",
        "privacy",
        "--dir",
        project.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", both(&out));
    let wit = std::fs::read_to_string(project.join("wit/0.4.0/plugin.wit")).unwrap();
    assert!(wit.contains("package halyard:plugin@0.4.0;"), "{wit}");
    assert!(
        project
            .join("wit/0.4.0/deps/halyard-plugin-0.1.0.wit")
            .is_file()
    );
    let source = std::fs::read_to_string(project.join("src/lib.rs")).unwrap();
    assert!(source.contains("export_privacy!"), "{source}");
}
