//! Plugin files that are not what they seem are refused at once, with the
//! reason, by `plugin check` and at `run` start (never read, never waited
//! on); an import the host does not provide is named.

use std::time::Instant;

use halyard_test_components as components;

use crate::pipeline_support::{Scenario, file_transport};
use crate::support::{QUICK, halyard, run_refused, special_files, text, with_renamed_import};

#[test]
fn plugin_check_refuses_fifos_devices_directories_and_huge_files_at_once() {
    let dir = tempfile::tempdir().unwrap();
    for (path, reason) in special_files(dir.path()) {
        let started = Instant::now();
        let out = halyard(&["plugin", "check", path.to_str().unwrap()], false);
        let took = started.elapsed();
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        assert!(
            stdout.contains(&format!("verdict:  invalid: {} {reason}", path.display())),
            "{stdout}"
        );
        assert!(took < QUICK, "{} took {took:?}", path.display());
    }
}

#[test]
fn plugin_check_takes_a_larger_cap_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.wasm");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(65 << 20)
        .unwrap();
    let out = halyard(&["plugin", "check", big.to_str().unwrap()], false);
    assert!(text(&out).0.contains("over the 64 MiB limit"));
    // With a larger cap the size passes and the header is read first: a
    // file of zeros is refused for what it is, without reading 65 MiB.
    let out = halyard(
        &[
            "plugin",
            "check",
            big.to_str().unwrap(),
            "--max-file-mb",
            "100",
        ],
        false,
    );
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("is not a WebAssembly file"), "{stdout}");
}

#[test]
fn run_refuses_fifos_devices_directories_and_huge_plugin_files_at_start() {
    let s = Scenario::new();
    for (path, reason) in special_files(s.dir.path()) {
        // The decoder is the first plugin `run` loads.
        s.write_config_with(
            &file_transport(&s.path("out.jsonl")),
            &[(
                &format!("plugin = \"{}\"", components::JSONL_DECODER),
                &format!("plugin = \"{}\"", path.display()),
            )],
        );
        let log = run_refused(&s.config);
        let error = log
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("no error line: {log}"));
        let expected = format!(
            "error: input sensors decoder plugin {0}: {0} {reason}",
            path.display()
        );
        assert!(error.starts_with(&expected), "{log}");
        // Each cause once: the reason used to repeat through `source()`.
        assert_eq!(error.matches(reason).count(), 1, "{log}");
    }
}

#[test]
fn an_import_the_host_does_not_provide_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let patched = dir.path().join("clack.wasm");
    with_renamed_import(
        components::RANGE_VALIDATOR,
        "halyard:plugin/clock@0.1.0",
        "halyard:plugin/clack@0.1.0",
        &patched,
    );
    let out = halyard(&["plugin", "check", patched.to_str().unwrap()], false);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let verdict = stdout.lines().last().unwrap_or_default();
    assert!(
        verdict.contains("`halyard:plugin/clack@0.1.0`"),
        "the missing import is named: {stdout}"
    );
}
