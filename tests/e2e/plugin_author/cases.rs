//! `halyard plugin test`: the example guests pass their own case files;
//! a wrong expectation prints a diff and fails; a bad case file names the
//! line.

use halyard_test_components as components;

use super::support::{Cli, both, repo, stdout};

/// Each Rust example guest with its case file and the number of cases.
const EXAMPLES: [(&str, &str, usize); 6] = [
    (components::SIM_SOURCE, "guests/sim-source/cases.jsonl", 3),
    (
        components::JSONL_DECODER,
        "guests/jsonl-decoder/cases.jsonl",
        5,
    ),
    (
        components::RANGE_VALIDATOR,
        "guests/range-validator/cases.jsonl",
        8,
    ),
    (
        components::REDACT_PRIVACY,
        "guests/redact-privacy/cases.jsonl",
        4,
    ),
    (
        components::FRACTION_SAMPLER,
        "guests/fraction-sampler/cases.jsonl",
        5,
    ),
    (
        components::THRESHOLD_DETECTOR,
        "guests/threshold-detector/cases.jsonl",
        6,
    ),
];

#[test]
fn every_example_guest_passes_its_case_file() {
    let cli = Cli::new();
    for (wasm, cases, count) in EXAMPLES {
        let cases = repo().join(cases);
        let out = cli.run(&["plugin", "test", wasm, "--cases", cases.to_str().unwrap()]);
        let text = stdout(&out);
        assert!(out.status.success(), "{cases:?}: {}", both(&out));
        assert_eq!(
            text.matches("\nok    ").count() + usize::from(text.starts_with("ok    ")),
            count,
            "{text}"
        );
        assert!(
            text.ends_with(&format!(": {count} passed, 0 failed\n")),
            "{text}"
        );
    }
}

#[test]
fn a_wrong_expectation_prints_a_diff_and_fails() {
    let cli = Cli::new();
    let cases = cli.path("wrong.jsonl");
    std::fs::write(
        &cases,
        concat!(
            r#"{"name": "right", "config": {"max": "10"}, "events": [{"source": "s", "kind": "t", "value": 5}], "expect": [{"verdict": "accept"}]}"#,
            "\n",
            r#"{"name": "wrong reason", "config": {"max": "10"}, "events": [{"source": "s", "kind": "t", "value": 1}, {"source": "s", "kind": "t", "value": 12}], "expect": [{"verdict": "accept"}, {"verdict": "reject", "reason": "too hot*"}]}"#,
            "\n",
            r#"{"name": "init expected to fail", "config": {"max": "10"}, "init_error": "*"}"#,
            "\n",
            r#"{"name": "init fails unexpectedly", "config": {"max": "x"}, "events": [], "expect": []}"#,
            "\n",
        ),
    )
    .unwrap();
    let out = cli.run(&[
        "plugin",
        "test",
        components::RANGE_VALIDATOR,
        "--cases",
        cases.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let text = stdout(&out);
    assert!(text.contains("ok    right\n"), "{text}");
    assert!(text.contains("FAIL  wrong reason (line 2)\n"), "{text}");
    assert!(
        text.contains(
            "      [1].reason: expected a match for \"too hot*\", got \"value 12 is above the maximum 10 for t\"\n"
        ),
        "{text}"
    );
    assert!(text.contains("FAIL  init expected to fail (line 3)\n      init: expected a refusal matching \"*\", but init succeeded\n"), "{text}");
    assert!(text.contains("FAIL  init fails unexpectedly (line 4)\n      init refused the config: invalid value \"x\" for max"), "{text}");
    assert!(text.ends_with(": 1 passed, 3 failed\n"), "{text}");

    // Only the filtered case runs.
    let out = cli.run(&[
        "plugin",
        "test",
        components::RANGE_VALIDATOR,
        "--cases",
        cases.to_str().unwrap(),
        "--filter",
        "right",
    ]);
    assert!(out.status.success(), "{}", both(&out));
    assert!(stdout(&out).ends_with(": 1 passed, 0 failed\n"));
}

#[test]
fn a_bad_case_file_names_the_line_and_runs_nothing() {
    let cli = Cli::new();
    let cases = cli.path("bad.jsonl");
    std::fs::write(
        &cases,
        "# a comment\n{\"events\": [{\"source\": \"s\"}], \"expect\": [{\"verdict\": \"accept\"}]}\n{\"events\": [{}], \"expct\": []}\n",
    )
    .unwrap();
    let out = cli.run(&[
        "plugin",
        "test",
        components::RANGE_VALIDATOR,
        "--cases",
        cases.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(stdout(&out).is_empty(), "nothing ran: {}", stdout(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:3: unknown key `expct`", cases.display())),
        "{err}"
    );
}

#[test]
fn cases_for_the_wrong_kind_fail_with_what_the_kind_takes() {
    let cli = Cli::new();
    let cases = cli.path("frames.jsonl");
    std::fs::write(&cases, "{\"frames\": [\"x\"], \"expect\": [{}]}\n").unwrap();
    let out = cli.run(&[
        "plugin",
        "test",
        components::FRACTION_SAMPLER,
        "--cases",
        cases.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("      a sampler takes `events`\n"),
        "{}",
        stdout(&out)
    );
}
