//! Logs are JSON by default and human on request; levels come from the
//! config unless `RUST_LOG` is set; the API key never appears in the logs
//! or in `halyard config check`.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::pipeline_support::{Scenario, http_transport, wait_for};
use crate::support::{Client, free_ports, sensor_lines, start};

const KEY: &str = "sk-live-7Hq2v9ZpX4";

#[test]
fn the_api_key_never_appears_in_logs_or_config_check() {
    let s = Scenario::new();
    let [hub] = free_ports();
    // Nothing listens at the hub: every attempt fails and is logged.
    let url = format!("http://{hub}/v1/batches");
    let run = start(&s, &http_transport(&url, Some(KEY)), &[]);
    let client = Client::new();
    let (body, _) = sensor_lines(&s, 0, 100);
    client.ingest(run.ingest, body);
    wait_for("the breaker opened", Duration::from_secs(60), || {
        std::fs::read_to_string(&run.host.log).is_ok_and(|l| l.contains("breaker open"))
    });
    let log = run.host.stop();
    assert!(!log.contains(KEY), "the API key is in the log:\n{log}");
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
    }

    let out = Command::new(env!("CARGO_BIN_EXE_halyard"))
        .args(["config", "check", s.config.to_str().unwrap()])
        // `config check` verifies the licence as `run` does.
        .env("HALYARD_DEV_MODE", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!printed.contains(KEY), "{printed}");
    assert!(printed.contains("api_key = \"***\""), "{printed}");
}

/// Runs the host with `[log]` set to `log` and `RUST_LOG` as given, until
/// the status server is up (and, if `logs_start`, until `host start` is
/// logged), then stops it; returns everything it logged.
fn run_with_log(log: &str, rust_log: Option<&str>, logs_start: bool) -> String {
    let s = Scenario::new();
    let [status] = free_ports();
    s.write_config(&format!(
        "{log}\n[health]\nlisten = \"{status}\"\n\n[transport]\ntype = \"stdout\"\n"
    ));
    let stderr = s.path("stderr.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_halyard"));
    cmd.args(["run", "--config", s.config.to_str().unwrap()])
        .env("HALYARD_DEV_MODE", "1")
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap());
    if let Some(v) = rust_log {
        cmd.env("RUST_LOG", v);
    }
    let mut child = cmd.spawn().unwrap();
    crate::support::wait_listening(status);
    if logs_start {
        wait_for("the start logged", Duration::from_secs(30), || {
            std::fs::read_to_string(&stderr).is_ok_and(|l| l.contains("host start"))
        });
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    std::fs::read_to_string(&stderr).unwrap()
}

#[test]
fn human_format_and_levels_come_from_config_unless_rust_log_is_set() {
    let human = run_with_log("[log]\nformat = \"human\"\nlevel = \"info\"", None, true);
    assert!(human.contains(" INFO "), "{human}");
    assert!(
        human
            .lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_err()),
        "{human}"
    );
    // `warn` from the config hides the info lines (`host start`, `host
    // stop`) …
    let quiet = run_with_log("[log]\nlevel = \"warn\"", None, false);
    assert!(!quiet.contains("host st"), "{quiet}");
    // … unless RUST_LOG asks for them.
    let loud = run_with_log("[log]\nlevel = \"warn\"", Some("info"), true);
    assert!(loud.contains("\"message\":\"host stop\""), "{loud}");
}
