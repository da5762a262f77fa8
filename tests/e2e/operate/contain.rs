//! A guest that blocks in its calls or misbehaves in `init`, against the
//! real binary: `/health` says the pipeline is stuck while it is, SIGTERM
//! still stops the host within `[shutdown] timeout_ms` (plus a margin)
//! while a call is blocked, and printing or panicking in `init` at start
//! never crashes the host.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use halyard_test_components as components;

use crate::pipeline_support::{Scenario, file_transport, wait_for};
use crate::support::{Client, sensor_lines, start};

/// The base config's range validator line, and a hostile validator named
/// `name` to replace it with.
fn hostile_validator(name: &str) -> (String, String) {
    (
        format!("plugin = \"{}\"", components::RANGE_VALIDATOR),
        format!(
            "plugin = \"{}\"\nname = \"{name}\"",
            components::HOSTILE_VALIDATOR
        ),
    )
}

#[test]
fn a_blocked_call_makes_health_unhealthy_and_sigterm_still_stops_on_time() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    let (from, to) = hostile_validator("sleeper");
    // The validator sleeps for an hour in every call; its deadline (5 s in
    // the base config) cuts each call. `/health` calls 300 ms of work in
    // hand a stall; shutdown may take 1 s.
    let run = start(
        &s,
        &file_transport(&out),
        &[
            (&from, &to),
            (
                r#"config = { "min.temp" = 0 }"#,
                r#"config = { mode = "sleep" }"#,
            ),
            ("[health]\n", "[health]\nstall_ms = 300\n"),
            ("timeout_ms = 2000", "timeout_ms = 1000"),
        ],
    );
    let client = Client::new();
    let health_url = format!("http://{}/health", run.status);
    let (code, health) = client.get_json(&health_url);
    assert_eq!(
        (code, health["status"].as_str()),
        (200, Some("healthy")),
        "{health}"
    );

    // A request whose events reach the sleeping validator: answered once the
    // 5 s deadline cuts the call (fail closed: every event dead-lettered).
    let (body, _) = sensor_lines(&s, 0, 50);
    let ingest = run.ingest;
    let first = std::thread::spawn(move || Client::new().ingest(ingest, body));
    let mut last = serde_json::Value::Null;
    wait_for(
        "/health unhealthy: no progress",
        Duration::from_secs(10),
        || {
            let (code, health) = client.get_json(&health_url);
            last = health;
            code == 503 && last["status"] == "unhealthy"
        },
    );
    let reasons = last["reasons"].to_string();
    assert!(
        reasons.contains("pipeline made no progress for") && reasons.contains("with work in hand"),
        "{last}"
    );
    let answer = first.join().expect("the request is answered");
    assert_eq!(answer["accepted"].as_u64(), Some(0), "{answer}");
    assert_eq!(answer["rejected"].as_u64(), Some(50), "{answer}");
    wait_for("/health healthy again", Duration::from_secs(10), || {
        let (_, health) = client.get_json(&health_url);
        last = health;
        !last["reasons"].to_string().contains("no progress")
    });

    // A second request is in the sleeping call when SIGTERM arrives.
    let (body, _) = sensor_lines(&s, 50, 50);
    let second = std::thread::spawn(move || {
        let client = Client::new();
        client.runtime.block_on(async {
            client
                .http
                .post(format!("http://{ingest}/v1/ingest"))
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    });
    wait_for(
        "the second request in the stages",
        Duration::from_secs(10),
        || {
            client.get_json(&health_url).1["reasons"]
                .to_string()
                .contains("no progress")
        },
    );
    let stopping = Instant::now();
    let log = run.host.stop();
    let took = stopping.elapsed();
    // 1 s timeout + 0.5 s margin, with slack for a loaded machine; the
    // blocked call alone would have held it for 5 s.
    assert!(
        took < Duration::from_millis(3500),
        "stopped after {took:?}: {log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    // The second request was not accepted: it was not answered 2xx.
    let status = second.join().expect("client thread");
    assert!(!matches!(status, Ok(200..=299)), "{status:?}");
}

#[test]
fn printing_in_init_starts_and_panicking_in_init_is_refused_with_its_message() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    let (from, to) = hostile_validator("printer");
    let run = start(
        &s,
        &file_transport(&out),
        &[
            (&from, &to),
            (
                r#"config = { "min.temp" = 0 }"#,
                r#"config = { mode = "init-print" }"#,
            ),
        ],
    );
    let client = Client::new();
    let (body, _) = sensor_lines(&s, 0, 20);
    let answer = client.ingest(run.ingest, body);
    // The hostile validator accepts everything; the sampler keeps all.
    assert_eq!(answer["accepted"].as_u64(), Some(20), "{answer}");
    let log = run.host.stop();
    assert!(log.contains("init-print: hello on stdout"), "{log}");
    assert!(log.contains("init-print: hello on stderr"), "{log}");

    // The same config with a validator that prints, then panics, in init.
    let config = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace(r#"mode = "init-print""#, r#"mode = "init-panic""#);
    std::fs::write(&s.config, config).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_halyard"))
        .args(["run", "--config", s.config.to_str().unwrap()])
        .env("HALYARD_DEV_MODE", "1")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run halyard");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("hostile guest panicked in init on purpose"),
        "{stderr}"
    );
    assert!(stderr.contains("init-panic: about to panic"), "{stderr}");
    assert!(!stderr.contains("Cannot start a runtime"), "{stderr}");
}
