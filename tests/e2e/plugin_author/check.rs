//! `halyard plugin check`: every import and export with its verdict, in
//! text and JSON, also for a refused plugin; the cold compile time; the
//! per-event cost with `--bench`.

use halyard_test_components as components;
use serde_json::Value;

use super::support::{Cli, both, json, stdout};

fn names_with(report: &Value, list: &str, verdict: &str) -> Vec<String> {
    report[list]
        .as_array()
        .unwrap_or_else(|| panic!("{list} in {report}"))
        .iter()
        .filter(|i| i["verdict"] == verdict)
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_refused_plugin_still_lists_every_import_with_its_verdict() {
    let cli = Cli::new();
    let out = cli.run(&["plugin", "check", components::FORBIDDEN_IMPORT, "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let report = json(&out);
    assert_eq!(report["valid"], false);
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("forbidden import `evil:net/socket"),
        "{report}"
    );
    assert_eq!(
        names_with(&report, "imports", "refused"),
        ["evil:net/socket"]
    );
    let allowed = names_with(&report, "imports", "allowed");
    assert!(
        allowed.iter().any(|i| i.starts_with("halyard:plugin/")),
        "the imports after the refused one are listed too: {report}"
    );
    let refused = &report["imports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["verdict"] == "refused")
        .unwrap()["why"];
    assert!(
        refused.as_str().unwrap().starts_with("not provided"),
        "{refused}"
    );
    assert_eq!(report["kind"], "validator", "kind from the exports");
    assert_eq!(
        names_with(&report, "exports", "required"),
        ["info", "init", "validate"]
    );
    assert!(
        report["cold_compile_ms"].as_f64().unwrap() > 0.0,
        "{report}"
    );

    // The same in text.
    let out = cli.run(&["plugin", "check", components::FORBIDDEN_IMPORT]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.contains("evil:net/socket") && l.trim_start().starts_with("REFUSED"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("not provided"), "{line}");
    assert!(text.contains("\n  required validate\n"), "{text}");
    assert!(text.contains("\ncompile:  "), "{text}");
    assert!(text.contains("\nverdict:  invalid: "), "{text}");
}

#[test]
fn grants_turn_allowed_imports_into_granted_ones() {
    let cli = Cli::new();
    let dir = cli.dir.path().to_str().unwrap().to_string();
    let out = cli.run(&["plugin", "check", components::HOSTILE_VALIDATOR, "--json"]);
    assert!(out.status.success(), "{}", both(&out));
    let report = json(&out);
    assert!(
        names_with(&report, "imports", "granted").is_empty(),
        "{report}"
    );
    assert!(
        names_with(&report, "imports", "refused").is_empty(),
        "{report}"
    );
    let out = cli.run(&[
        "plugin",
        "check",
        components::HOSTILE_VALIDATOR,
        "--json",
        "--grant",
        &format!("read_dir={dir}"),
        "--grant",
        "network",
    ]);
    assert!(out.status.success(), "{}", both(&out));
    let report = json(&out);
    let granted = names_with(&report, "imports", "granted");
    assert!(
        granted.iter().any(|i| i.starts_with("wasi:filesystem/")),
        "{report}"
    );
    assert!(
        granted.iter().any(|i| i.starts_with("wasi:sockets/")),
        "{report}"
    );
}

#[test]
fn bench_measures_the_stage_per_event() {
    let cli = Cli::new();
    let out = cli.run(&[
        "plugin",
        "check",
        components::RANGE_VALIDATOR,
        "--bench",
        "500",
        "--bench-batch",
        "100",
        "--json",
    ]);
    assert!(out.status.success(), "{}", both(&out));
    let report = json(&out);
    let bench = &report["bench"];
    assert_eq!(bench["events"], 500, "{report}");
    assert_eq!(bench["calls"], 5, "{report}");
    assert_eq!(bench["batch"], 100, "{report}");
    assert!(bench["error"].is_null(), "{report}");
    assert!(bench["us_per_event"].as_f64().unwrap() > 0.0, "{report}");

    // A decoder is fed JSON lines; a trapping stage stops the bench and
    // fails the check.
    let out = cli.run(&[
        "plugin",
        "check",
        components::JSONL_DECODER,
        "--bench",
        "200",
    ]);
    assert!(out.status.success(), "{}", both(&out));
    assert!(
        stdout(&out).contains("\nbench:    200 events in 2 calls of 100: "),
        "{}",
        stdout(&out)
    );
    let out = cli.run(&[
        "plugin",
        "check",
        components::HOSTILE_VALIDATOR,
        "--config",
        "mode=panic",
        "--bench",
        "100",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(stdout(&out).contains("; stopped: "), "{}", stdout(&out));
}
