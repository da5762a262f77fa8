//! `halyard plugin check` and `halyard plugin run` as a plugin author runs
//! them: the real binary, real components, exit codes and output.

use std::process::{Command, Output};

use halyard_test_components as components;
use serde_json::Value;

struct Cli {
    cache: tempfile::TempDir,
}

impl Cli {
    fn new() -> Self {
        Cli {
            cache: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_halyard"))
            .args(args)
            .env("HALYARD_CACHE_DIR", self.cache.path())
            .env("RUST_LOG", "warn")
            .output()
            .expect("run halyard")
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_lines(out: &Output) -> Vec<Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn check_reports_every_example_guest_as_valid() {
    let cli = Cli::new();
    for (path, kind) in components::EXAMPLES {
        let out = cli.run(&["plugin", "check", path, "--kind", kind]);
        let text = stdout(&out);
        assert!(
            out.status.success(),
            "{path}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(&format!("kind:     {kind}\n")), "{text}");
        assert!(
            text.contains(&format!("verdict:  valid {kind}\n")),
            "{text}"
        );
        assert!(
            text.contains("halyard:plugin/config@0.1.0"),
            "imports listed: {text}"
        );
        let name = std::path::Path::new(path)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .replace('_', "-");
        assert!(text.contains(&format!("name:     {name}\n")), "{text}");
        assert!(text.contains("version:  0.1.0\n"), "{text}");
    }
}

#[test]
fn check_infers_the_kind_and_speaks_json() {
    let cli = Cli::new();
    let out = cli.run(&["plugin", "check", components::FRACTION_SAMPLER, "--json"]);
    assert!(out.status.success());
    let report = &json_lines(&out)[0];
    assert_eq!(report["valid"], true);
    assert_eq!(report["kind"], "sampler");
    assert_eq!(report["name"], "fraction-sampler");
    let exports: Vec<(&str, &str)> = report["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["verdict"].as_str().unwrap()))
        .collect();
    assert_eq!(
        exports,
        [
            ("info", "required"),
            ("init", "required"),
            ("sample", "required")
        ]
    );
}

#[test]
fn check_fails_with_the_reason() {
    let cli = Cli::new();
    let out = cli.run(&[
        "plugin",
        "check",
        components::RANGE_VALIDATOR,
        "--kind",
        "sampler",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("missing export `sample`"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("looks like a validator"),
        "{}",
        stdout(&out)
    );

    let junk = cli.cache.path().join("junk.wasm");
    std::fs::write(&junk, b"definitely not wasm").unwrap();
    let out = cli.run(&["plugin", "check", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("is not a WebAssembly file"),
        "{}",
        stdout(&out)
    );

    let out = cli.run(&["plugin", "check", components::FORBIDDEN_IMPORT]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("forbidden import `evil:net/socket"),
        "{}",
        stdout(&out)
    );

    let out = cli.run(&[
        "plugin",
        "check",
        components::REDACT_PRIVACY,
        "--config",
        "hash_keys=operator",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("(key `salt`)"), "{}", stdout(&out));
}

#[test]
fn run_validator_prints_one_verdict_per_event() {
    let cli = Cli::new();
    let input = cli.cache.path().join("events.jsonl");
    std::fs::write(
        &input,
        concat!(
            "{\"source\":\"d1\",\"kind\":\"temp\",\"value\":21.5}\n",
            "\n",
            "{\"id\":\"000000000000000a000000000000000b\",\"source\":\"d1\",\"kind\":\"temp\",\"value\":-2}\n",
            "{\"source\":\"d1\",\"kind\":\"temp\"}\n",
        ),
    )
    .unwrap();
    let out = cli.run(&[
        "plugin",
        "run",
        components::RANGE_VALIDATOR,
        "--input",
        input.to_str().unwrap(),
        "--config",
        "min.temp=0",
        "--batch",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "blank lines are skipped");
    assert_eq!(lines[0]["verdict"], "accept");
    assert_eq!(
        lines[1]["id"], "000000000000000a000000000000000b",
        "given ids are kept"
    );
    assert_eq!(
        lines[1]["reason"],
        "value -2 is below the minimum 0 for temp"
    );
    assert_eq!(lines[2]["reason"], "missing value");
}

#[test]
fn run_decoder_prints_one_outcome_per_line() {
    let cli = Cli::new();
    let input = cli.cache.path().join("lines.jsonl");
    std::fs::write(
        &input,
        "{\"device\":\"d1\",\"metric\":\"temp\",\"value\":3}\nnot json\n",
    )
    .unwrap();
    let out = cli.run(&[
        "plugin",
        "run",
        components::JSONL_DECODER,
        "-i",
        input.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["line"], 1);
    assert_eq!(lines[0]["events"][0]["source"], "d1");
    assert_eq!(lines[0]["events"][0]["value"], 3.0);
    assert_eq!(lines[1]["line"], 2);
    assert!(lines[1]["error"].as_str().unwrap().starts_with("line 1: "));
}

#[test]
fn run_source_polls_and_a_trap_exits_non_zero() {
    let cli = Cli::new();
    let out = cli.run(&[
        "plugin",
        "run",
        components::SIM_SOURCE,
        "--polls",
        "2",
        "--config",
        "per_poll=3",
    ]);
    assert!(out.status.success());
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 6);
    assert_eq!(lines.iter().filter(|l| l["poll"] == 1).count(), 3);

    let input = cli.cache.path().join("one.jsonl");
    std::fs::write(
        &input,
        "{\"source\":\"d1\",\"kind\":\"temp\",\"value\":1}\n",
    )
    .unwrap();
    let out = cli.run(&[
        "plugin",
        "run",
        components::HOSTILE_VALIDATOR,
        "-i",
        input.to_str().unwrap(),
        "--config",
        "mode=loop",
        "--deadline-ms",
        "50",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let lines = json_lines(&out);
    assert!(
        lines[0]["error"]
            .as_str()
            .unwrap()
            .contains("50 ms deadline"),
        "{lines:?}"
    );
}

#[test]
fn config_check_prints_the_resolved_config_with_secrets_masked() {
    let cli = Cli::new();
    let file = cli.cache.path().join("halyard.toml");
    std::fs::write(
        &file,
        "[[input]]\ntype = \"file\"\nname = \"f\"\npath = \"/tmp/x\"\ndecoder = { plugin = \"d.wasm\" }\n\
         [transport]\ntype = \"http\"\nurl = \"http://127.0.0.1:1/v1/batches\"\napi_key = \"${TEST_HALYARD_KEY}\"\n",
    )
    .unwrap();
    // `--syntax-only`: `d.wasm` does not exist, and this test is about
    // printing (tests/e2e/config_check covers loading the plugins).
    let out = Command::new(env!("CARGO_BIN_EXE_halyard"))
        .args(["config", "check", "--syntax-only", file.to_str().unwrap()])
        .env("TEST_HALYARD_KEY", "top-secret-value")
        .output()
        .unwrap();
    let (text, err) = (
        stdout(&out),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{err}");
    assert!(text.contains("api_key = \"***\""), "{text}");
    assert!(!text.contains("top-secret-value") && !err.contains("top-secret-value"));
    assert!(
        text.contains("max_events = 1000"),
        "defaults are filled in: {text}"
    );

    std::fs::write(&file, "[transport]\ntype = \"carrier-pigeon\"\n").unwrap();
    let out = cli.run(&["config", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("carrier-pigeon"),
        "{err}"
    );
}

/// `--grant network=IP:PORT` lets `plugin run` reach exactly that listener;
/// without it the same guest loads and every connect is denied.
#[test]
fn run_with_a_network_grant_reaches_the_listener_and_without_it_is_denied() {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).unwrap();
        stream.write_all(b"pong\n").unwrap();
        line
    });
    let cli = Cli::new();
    let input = cli.cache.path().join("events.jsonl");
    std::fs::write(
        &input,
        "{\"source\":\"d1\",\"kind\":\"temp\",\"value\":1}\n",
    )
    .unwrap();
    let addr_config = format!("addr={addr}");
    let grant = format!("network={addr}");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "plugin",
            "run",
            components::HOSTILE_VALIDATOR,
            "--input",
            input.to_str().unwrap(),
            "--config",
            "mode=connect",
            "--config",
            &addr_config,
        ];
        args.extend_from_slice(extra);
        cli.run(&args)
    };
    let denied = run(&[]);
    assert!(
        denied.status.success(),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    let lines = json_lines(&denied);
    assert!(
        lines[0]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("connect failed: PermissionDenied")),
        "{lines:?}"
    );
    let granted = run(&["--grant", &grant]);
    assert!(
        granted.status.success(),
        "{}",
        String::from_utf8_lossy(&granted.stderr)
    );
    assert_eq!(json_lines(&granted)[0]["reason"], "connected: pong");
    assert_eq!(server.join().unwrap(), "ping\n");
    let bad = run(&["--grant", "disk=/"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("`disk=/` is not a grant"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
