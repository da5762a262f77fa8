//! The licence across restarts: an expired host stays expired (and holds
//! its events) however it is restarted, also with its saved state deleted
//! or edited; a host in grace keeps its original deadline; a renewed token
//! stored in `data_dir` is used when none is configured, and `config check`
//! says the verdict `run` reaches.

use std::path::Path;
use std::time::Duration;

use halyard_trust::KeyPair;

use super::pipeline_support::{Scenario, http_transport, wait_for, write_sensor_lines};
use super::support::{
    LicenceServer, Receiver, free_port, get_json, licence_section, spawn_host, token,
};

/// SIGTERM, then wait for a clean exit.
fn stop(mut child: std::process::Child, log: &Path) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    wait_for("the host to stop", Duration::from_secs(30), || {
        child.try_wait().unwrap().is_some()
    });
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "exit {status}: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// The licence state `/health` reports, waiting for the first answer.
fn first_licence_state(status: std::net::SocketAddr) -> String {
    let mut state = String::new();
    wait_for("/health to answer", Duration::from_secs(60), || {
        state = get_json(&format!("http://{status}/health"))
            .and_then(|h| h["licence"].as_str().map(str::to_owned))
            .unwrap_or_default();
        !state.is_empty()
    });
    state
}

/// The payloads of lifecycle events of `kind` in a (JSON) host log.
fn lifecycle_payloads(log: &Path, kind: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|l| {
            let fields = if l.get("fields").is_some() {
                l["fields"].clone()
            } else {
                l
            };
            (fields["kind"] == kind).then(|| {
                fields["payload"]
                    .as_str()
                    .and_then(|p| serde_json::from_str(p).ok())
                    .unwrap_or_else(|| fields["payload"].clone())
            })
        })
        .collect()
}

/// What a restart does to the data directory first, by name.
type Tamper<'a> = (&'a str, &'a dyn Fn(&Path));

/// Heartbeats the server has seen since it had seen `before`.
fn new_boot_bodies(server: &LicenceServer, before: usize) -> usize {
    server.state.lock().unwrap().bodies.len() - before
}

#[test]
fn an_expired_host_stays_expired_and_holds_events_across_restarts_and_tampering() {
    let s = Scenario::new();
    let vendor = KeyPair::generate().unwrap();
    let receiver = Receiver::start(&s.path("recv.db"), Vec::new(), false);
    let server = LicenceServer::start(true);
    let status = free_port();
    let extra = format!(
        "endpoint = \"{}\"\nheartbeat_interval_s = 30\ngrace_hours = 0.0006\nretry_max_s = 0.2",
        server.url
    );
    let tok = token(&vendor, 3600);
    s.write_config(&format!(
        "{}\n[health]\nlisten = \"{status}\"\n{}",
        http_transport(&receiver.url(), None),
        licence_section(tok.expose(), &vendor, &extra)
    ));
    let log = s.path("host-0.log");
    let host = spawn_host(&s.config, false, &log);
    wait_for("licence expired", Duration::from_secs(60), || {
        get_json(&format!("http://{status}/health")).is_some_and(|h| h["licence"] == "expired")
    });
    stop(host, &log);
    assert!(s.data.join("licence.state").exists());

    let negative = write_sensor_lines(&s.input, 0, 300);
    let accepted = 300 - negative;
    let len = std::fs::metadata(&s.input).unwrap().len();
    let tampers: [Tamper<'_>; 3] = [
        ("plain restart", &|_| {}),
        ("state file deleted", &|p| std::fs::remove_file(p).unwrap()),
        ("state file edited", &|p| {
            // Any edit breaks the host key's seal: here, one character of
            // the sealed JSON.
            let mut text = std::fs::read_to_string(p).unwrap().into_bytes();
            let at = text.len() / 2;
            text[at] = if text[at] == b'A' { b'B' } else { b'A' };
            std::fs::write(p, text).unwrap();
        }),
    ];
    for (i, (what, tamper)) in tampers.iter().enumerate() {
        tamper(&s.data.join("licence.state"));
        let log = s.path(&format!("host-{}.log", i + 1));
        let before = server.state.lock().unwrap().bodies.len();
        let host = spawn_host(&s.config, false, &log);
        assert_eq!(first_licence_state(status), "expired", "{what}");
        if i == 0 {
            wait_for("the input committed", Duration::from_secs(60), || {
                std::fs::read_to_string(&log).is_ok_and(|l| {
                    l.lines().any(|l| {
                        l.contains("caught up") && l.contains(&format!("\"offset\":{len}"))
                    })
                })
            });
        }
        // Two failed heartbeats of this run: it had every chance to ship.
        wait_for(
            "two heartbeats of this run",
            Duration::from_secs(60),
            || new_boot_bodies(&server, before) >= 2,
        );
        assert_eq!(
            get_json(&format!("http://{status}/health")).unwrap()["licence"],
            "expired",
            "{what}"
        );
        assert_eq!(receiver.stored(), 0, "{what}: events shipped while expired");
        stop(host, &log);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(!text.contains("licence valid"), "{what}: {text}");
        if i > 0 {
            assert!(text.contains("licence history lost"), "{what}: {text}");
        }
    }

    // Only a successful heartbeat makes it valid: the held events ship,
    // exactly once.
    server.state.lock().unwrap().down = false;
    let log = s.path("host-last.log");
    let host = spawn_host(&s.config, false, &log);
    wait_for("held events released", Duration::from_secs(60), || {
        receiver.stored() == accepted
    });
    assert_eq!(first_licence_state(status), "valid");
    stop(host, &log);
    assert_eq!(receiver.stored(), accepted);
}

#[test]
fn a_restart_during_grace_keeps_the_original_deadline() {
    let s = Scenario::new();
    let vendor = KeyPair::generate().unwrap();
    let server = LicenceServer::start(true);
    let status = free_port();
    // A grace of an hour: the test never waits for it to run out.
    let extra = format!(
        "endpoint = \"{}\"\nheartbeat_interval_s = 30\ngrace_hours = 1\nretry_max_s = 0.2",
        server.url
    );
    let tok = token(&vendor, 7200);
    s.write_config(&format!(
        "[transport]\ntype = \"file\"\npath = \"{}\"\n[health]\nlisten = \"{status}\"\n{}",
        s.path("out.jsonl").display(),
        licence_section(tok.expose(), &vendor, &extra)
    ));
    let first = s.path("first.log");
    let host = spawn_host(&s.config, false, &first);
    wait_for("licence in grace", Duration::from_secs(60), || {
        get_json(&format!("http://{status}/health")).is_some_and(|h| h["licence"] == "grace")
    });
    wait_for("the grace event", Duration::from_secs(30), || {
        !lifecycle_payloads(&first, "licence.grace").is_empty()
    });
    stop(host, &first);
    let grace = lifecycle_payloads(&first, "licence.grace").remove(0);
    assert!(grace["until"].as_u64().unwrap() > grace["since"].as_u64().unwrap());

    for n in 0..2 {
        let log = s.path(&format!("again-{n}.log"));
        let host = spawn_host(&s.config, false, &log);
        assert_eq!(first_licence_state(status), "grace");
        wait_for("the grace event", Duration::from_secs(30), || {
            !lifecycle_payloads(&log, "licence.grace").is_empty()
        });
        stop(host, &log);
        let again = lifecycle_payloads(&log, "licence.grace").remove(0);
        assert_eq!(again["since"], grace["since"], "grace restarted: {again}");
        assert_eq!(again["until"], grace["until"], "deadline moved: {again}");
    }
}

#[test]
fn a_stored_renewed_token_is_used_when_none_is_configured() {
    let s = Scenario::new();
    let vendor = KeyPair::generate().unwrap();
    let status = free_port();
    s.write_config(&format!(
        "[transport]\ntype = \"file\"\npath = \"{}\"\n[health]\nlisten = \"{status}\"\n[licence]\npublic_keys = [\"{}\"]\n",
        s.path("out.jsonl").display(),
        vendor.public_key()
    ));
    let check = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_halyard"))
            .args(["config", "check", s.config.to_str().unwrap()])
            .env_remove("HALYARD_DEV_MODE")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let refused = check();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no licence"));

    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&s.data)
            .unwrap();
    }
    let renewed = token(&vendor, 3600);
    std::fs::write(s.data.join("licence.token"), renewed.expose()).unwrap();
    let ok = check();
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(ok.status.success(), "{stderr}");
    assert!(stderr.contains("licence: valid"), "{stderr}");
    assert!(!stderr.contains(renewed.expose()));

    let log = s.path("host.log");
    let host = spawn_host(&s.config, false, &log);
    assert_eq!(first_licence_state(status), "valid");
    stop(host, &log);
}

#[test]
fn config_check_reports_an_expired_licence_as_run_would_find_it() {
    let s = Scenario::new();
    let vendor = KeyPair::generate().unwrap();
    let server = LicenceServer::start(true);
    let status = free_port();
    let extra = format!(
        "endpoint = \"{}\"\nheartbeat_interval_s = 30\ngrace_hours = 0.0006\nretry_max_s = 0.2",
        server.url
    );
    let tok = token(&vendor, 3600);
    s.write_config(&format!(
        "[transport]\ntype = \"file\"\npath = \"{}\"\n[health]\nlisten = \"{status}\"\n{}",
        s.path("out.jsonl").display(),
        licence_section(tok.expose(), &vendor, &extra)
    ));
    let log = s.path("host.log");
    let host = spawn_host(&s.config, false, &log);
    wait_for("licence expired", Duration::from_secs(60), || {
        get_json(&format!("http://{status}/health")).is_some_and(|h| h["licence"] == "expired")
    });
    stop(host, &log);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_halyard"))
        .args(["config", "check", s.config.to_str().unwrap()])
        .env_remove("HALYARD_DEV_MODE")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // `run` starts (and holds events): not a problem, but said.
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("licence: expired since"), "{stderr}");
}
