//! The Unix socket listener with the `halyard-emit` client: the same
//! per-event results as TCP, the socket file's mode as configured, a stale
//! file replaced at start and the file removed at stop; hostile clients
//! bounded as on TCP; bad settings named by `config check` with their line.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use halyard_emit::{Client as Emit, EventResult};

use crate::helpers::{UnixRaw, config, input, reading, second_of};
use crate::http_support::{Client, Ended, stored_events};
use crate::receiver::{Receiver, loopback_any, wait_stored};
use crate::support::{Host, Scenario, file_transport, http_transport, wait_for};

/// Waits until the host serves `socket` (it is renamed into place once
/// bound and with its mode set).
fn wait_socket(socket: &Path) {
    wait_for("the socket is served", Duration::from_secs(60), || {
        std::os::unix::net::UnixStream::connect(socket).is_ok()
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn the_client_gets_each_events_result_over_the_socket_with_the_configured_mode() {
    let s = Scenario::new();
    let receiver = Receiver::start(loopback_any(), &s.path("received.db"), None);
    let socket = s.path("ingest.sock");
    // A stale socket file, as a host killed with -9 leaves it.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let text = config(
        &s.data,
        &input(None, Some((&socket, "0640")), "auth = \"none\""),
        &http_transport(&receiver.url(), None),
    );
    std::fs::write(&s.config, text).unwrap();
    let host = Host::start(&s.config);
    wait_socket(&socket);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "the mode the config gave");

    let second = second_of(4);
    let events = vec![
        reading("s4-a", 5.0, second),
        reading("s4-c", -1.0, second),
        reading("blocked-s4", 3.0, second),
        reading("s4-a", 6.0, second + 1),
        serde_json::json!(["not", "an", "object"]),
        reading("s4-b", 7.0, second + 2),
    ];
    let client = Emit::new(&format!("unix:{}", socket.display())).unwrap();
    let rt = runtime();
    let report = rt
        .block_on(client.emit_batch_report(&events))
        .expect("emitted");
    assert_eq!(report.attempts, 1);
    let r = &report.results;
    assert_eq!(r.len(), 6);
    assert!(matches!(&r[0], EventResult::Accepted { .. }), "{r:?}");
    assert!(
        matches!(&r[1], EventResult::Rejected { reason } if reason.contains("temp")),
        "{r:?}"
    );
    assert_eq!(
        r[2],
        EventResult::Dropped {
            by: "privacy".into()
        }
    );
    assert_eq!(r[3], EventResult::SampledOut);
    assert!(matches!(&r[4], EventResult::DecodeError { .. }), "{r:?}");
    assert!(matches!(&r[5], EventResult::Accepted { .. }), "{r:?}");
    let single = rt
        .block_on(client.emit(&reading("s4-d", 9.0, second)))
        .expect("emitted");
    let mut ids: BTreeSet<String> = [&r[0], &r[5], &single]
        .iter()
        .map(|r| r.accepted_id().expect("accepted").to_string())
        .collect();
    assert_eq!(ids.len(), 3);

    wait_stored(&receiver, 3);
    let log = host.stop();
    assert!(!socket.exists(), "the socket file is removed at stop");
    assert!(log.contains("replacing a stale socket file"), "{log}");
    let stats = receiver.stats();
    assert_eq!((stats.events_stored, stats.duplicates), (3, 0), "{log}");
    let stored: BTreeSet<String> = stored_events(&receiver, &Client::new())
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(stored, std::mem::take(&mut ids), "exactly the accepted ids");
}

#[test]
fn hostile_clients_on_the_socket_are_bounded_as_on_tcp() {
    let s = Scenario::new();
    let socket = s.path("ingest.sock");
    let limits = "auth = \"none\"\nheader_timeout_ms = 3000\nbody_timeout_ms = 1000\n\
                  max_connections = 3\nmax_in_flight = 2";
    let text = config(
        &s.data,
        &input(None, Some((&socket, "0600")), limits),
        &file_transport(&s.path("out.jsonl")),
    );
    std::fs::write(&s.config, text).unwrap();
    let host = Host::start(&s.config);
    wait_socket(&socket);

    // Connections beyond max_connections: 503 and closed; the held ones
    // still work.
    let mut held: Vec<UnixRaw> = Vec::new();
    wait_for("a 4th connection refused", Duration::from_secs(30), || {
        held = (0..3).map(|_| UnixRaw::connect(&socket)).collect();
        let mut extra = UnixRaw::connect(&socket);
        extra
            .answer(Duration::from_secs(2))
            .map(|(s, j)| (s, j["error"].clone()))
            == Some((503, serde_json::json!("too_many_connections")))
    });
    let body = reading("s5", 1.0, second_of(5)).to_string();
    assert!(held[0].send(format!("{}{body}", UnixRaw::head(body.len())).as_bytes()));
    let (status, json) = held[0].answer(Duration::from_secs(30)).expect("answered");
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["lines"][0]["result"], "accepted", "{json}");
    drop(held);
    // Their slots come back once the host sees them closed.
    wait_for("a connection served again", Duration::from_secs(30), || {
        let mut probe = UnixRaw::connect(&socket);
        probe.send(b"GET / HTTP/1.1\r\nhost: l\r\n\r\n")
            && probe.answer(Duration::from_secs(2)).map(|(s, _)| s) == Some(405)
    });

    // A declared body over the 16 MiB cap: 413 before a byte of it is read.
    let mut huge = UnixRaw::connect(&socket);
    assert!(huge.send(UnixRaw::head(17 << 20).as_bytes()));
    let (status, json) = huge.answer(Duration::from_secs(10)).expect("an answer");
    assert_eq!(
        (status, json["error"].as_str()),
        (413, Some("payload_too_large"))
    );
    // An undeclared (chunked) one is cut at the cap too.
    let mut chunked = UnixRaw::connect(&socket);
    let head = "POST /v1/ingest HTTP/1.1\r\nhost: l\r\ntransfer-encoding: chunked\r\n\r\n";
    assert!(chunked.send(head.as_bytes()));
    let chunk = vec![b'x'; 1 << 20];
    let mut sent = 0;
    while sent <= 17 && chunked.send(format!("{:x}\r\n", chunk.len()).as_bytes()) {
        if !chunked.send(&chunk) || !chunked.send(b"\r\n") {
            break;
        }
        sent += 1;
    }
    let answer = chunked.answer(Duration::from_secs(10));
    assert_eq!(answer.map(|(s, _)| s), Some(413), "after {sent} MiB");

    // A head that never completes: cut at header_timeout_ms, no answer.
    let mut slow_head = UnixRaw::connect(&socket);
    assert!(slow_head.send(b"POST /v1/ingest HTTP/1.1\r\nhost: l\r\n"));
    assert_eq!(slow_head.wait_end(Duration::from_secs(10)), Ended::Closed);
    // A body that never completes: 408 at body_timeout_ms.
    let mut slow_body = UnixRaw::connect(&socket);
    assert!(slow_body.send(UnixRaw::head(100).as_bytes()));
    assert!(slow_body.send(b"{\"device\":"));
    let (status, json) = slow_body.answer(Duration::from_secs(10)).expect("408");
    assert_eq!(
        (status, json["error"].as_str()),
        (408, Some("body_timeout"))
    );

    let log = host.stop();
    let totals = crate::support::totals(&log);
    assert_eq!(
        totals.get("accepted"),
        Some(&1),
        "only the one whole request: {log}"
    );
    assert!(!socket.exists());
}

/// `halyard config check` on `text`: exit code and stderr.
fn check(s: &Scenario, text: &str) -> (Option<i32>, String) {
    std::fs::write(&s.config, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_halyard"))
        .args(["config", "check", s.config.to_str().unwrap()])
        .env("HALYARD_DEV_MODE", "1")
        .env("HALYARD_CACHE_DIR", s.path("cache"))
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .output()
        .expect("run halyard");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_check_names_the_key_and_line_of_a_bad_socket_setting() {
    let s = Scenario::new();
    let out = file_transport(&s.path("out.jsonl"));
    let good = Path::new("/tmp/halyard-e2e-check.sock");
    // A valid socket-only input checks clean.
    let (code, stderr) = check(
        &s,
        &config(
            &s.data,
            &input(None, Some((good, "0660")), "auth = \"none\""),
            &out,
        ),
    );
    assert_eq!(code, Some(0), "{stderr}");

    let text = config(
        &s.data,
        &input(None, Some((good, "0660")), "auth = \"none\""),
        &out,
    );
    let socket_line = text
        .lines()
        .position(|l| l.starts_with("socket = "))
        .unwrap()
        + 1;
    let cases = [
        (
            "mode = \"0660\"",
            "mode = \"0660\", group = \"no-such-group-e2e\"",
            "`input[0].socket.group` no group `no-such-group-e2e` in /etc/group",
        ),
        (
            "path = \"/tmp/halyard-e2e-check.sock\"",
            "path = \"relative.sock\"",
            "`input[0].socket.path` `relative.sock` is not an absolute path",
        ),
        (
            "mode = \"0660\"",
            "mode = \"0060\"",
            "`input[0].socket.mode` 0060 does not let the owner read and write",
        ),
    ];
    for (from, to, says) in cases {
        let (code, stderr) = check(&s, &text.replace(from, to));
        assert_eq!(code, Some(1), "{to}: {stderr}");
        let expected = format!(
            "error: config {} line {socket_line}: {says}",
            s.config.display()
        );
        assert!(
            stderr.starts_with(&expected),
            "{to}:\n{stderr}\nexpected: {expected}"
        );
    }
    // A mode that is not octal bits: named with its key and line too.
    let (code, stderr) = check(&s, &text.replace("mode = \"0660\"", "mode = \"rw-rw\""));
    assert_eq!(code, Some(1), "{stderr}");
    let expected = format!(
        "error: config {} line {socket_line}: `input[0].socket.mode` `rw-rw` is not permission \
         bits in octal",
        s.config.display()
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
    // Neither listen nor socket.
    let (code, stderr) = check(
        &s,
        &config(&s.data, &input(None, None, "auth = \"none\""), &out),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("`input[0].listen` is not set"), "{stderr}");
}

#[test]
fn tokens_configured_on_the_input_are_required_on_the_socket_too() {
    let s = Scenario::new();
    let socket = s.path("ingest.sock");
    let text = config(
        &s.data,
        &input(None, Some((&socket, "0660")), crate::http_support::AUTH),
        &file_transport(&s.path("out.jsonl")),
    );
    std::fs::write(&s.config, text).unwrap();
    let host = Host::start(&s.config);
    wait_socket(&socket);
    let event = reading("s8", 1.0, second_of(8));
    let rt = runtime();
    let endpoint = format!("unix:{}", socket.display());
    let err = rt
        .block_on(Emit::new(&endpoint).unwrap().emit(&event))
        .expect_err("no token");
    assert!(
        matches!(&err, halyard_emit::EmitError::Refused { status: 401, code, .. } if code == "unauthorized"),
        "{err}"
    );
    let ok = rt
        .block_on(
            Emit::new(&endpoint)
                .unwrap()
                .with_token(crate::http_support::TOKEN)
                .emit(&event),
        )
        .expect("with the token");
    assert!(matches!(ok, EventResult::Accepted { .. }), "{ok:?}");
    let log = host.stop();
    let totals = crate::support::totals(&log);
    assert_eq!(totals.get("accepted"), Some(&1), "{log}");
}
