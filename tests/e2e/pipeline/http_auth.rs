//! Who may post to the http input: without a token, or with a wrong one,
//! 401 + `WWW-Authenticate: Bearer` and nothing stored; with one of the
//! configured tokens, as a bearer token or in the API-key header, 200 with
//! exact counts. No token shows in the host's log. A config that leaves a
//! non-loopback endpoint open is refused, naming the key.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::http_support::{
    Client, Raw, free_ports, http_config, ingest_url, sensor_lines, start_http_host,
};
use crate::support::{Scenario, dead_letters, delivered, file_transport, wait_for};

const FIRST: &str = "first-token-2c81d5e0";
const SECOND: &str = "second-token-9b44aa17";

#[test]
fn only_a_configured_token_in_either_header_gets_in() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    let auth =
        format!("auth = {{ tokens = [\"{FIRST}\", \"{SECOND}\"], header = \"X-Ingest-Key\" }}");
    let (host, listen) = start_http_host(&s, &out, &auth);
    let client = Client::new();
    let url = ingest_url(listen);
    let (body, negative) = sensor_lines(&s.input, 0, 200);

    // Refused before the body is read: no token, a wrong one, a token in a
    // header this input does not read, a non-bearer scheme.
    let refused = [
        (vec![], r#"Bearer realm="halyard""#),
        (
            vec![("authorization", format!("Bearer {FIRST}x"))],
            r#"Bearer realm="halyard", error="invalid_token""#,
        ),
        (
            vec![("x-ingest-key", "wrong".to_string())],
            r#"Bearer realm="halyard", error="invalid_token""#,
        ),
        (
            vec![("x-api-key", FIRST.to_string())],
            r#"Bearer realm="halyard""#,
        ),
        (
            vec![("authorization", format!("Basic {FIRST}"))],
            r#"Bearer realm="halyard""#,
        ),
    ];
    for (headers, challenge) in &refused {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = client.post_as(&url, body.clone(), &headers);
        assert_eq!(answer.status, 401, "{headers:?}: {answer:?}");
        assert_eq!(answer.challenge.as_deref(), Some(*challenge), "{answer:?}");
        assert_eq!(answer.json["error"], "unauthorized", "{answer:?}");
    }
    // A client that waits for `100 Continue` before its body is refused
    // without ever sending it.
    let mut raw = Raw::connect(listen);
    assert!(raw.send(
        b"POST /v1/ingest HTTP/1.1\r\nhost: t\r\nexpect: 100-continue\r\ncontent-length: 1000000\r\n\r\n"
    ));
    let answer = raw.answer(Duration::from_secs(30)).expect("an answer");
    assert_eq!(answer.status, 401, "{answer:?}");

    // Both tokens, both forms: each line's own event, exact counts.
    let bearer = format!("Bearer {FIRST}");
    let accepted_with = [
        vec![("authorization", bearer.as_str())],
        vec![("X-Ingest-Key", SECOND)],
    ];
    for headers in &accepted_with {
        let answer = client.post_as(&url, body.clone(), headers);
        assert_eq!(answer.status, 200, "{headers:?}: {answer:?}");
        assert_eq!(
            (
                answer.count("accepted"),
                answer.count("rejected"),
                answer.count("decode_errors")
            ),
            (200 - negative, negative, 0),
            "{answer:?}"
        );
    }

    let expected = 2 * (200 - negative);
    wait_for(
        "both accepted requests delivered",
        Duration::from_secs(60),
        || delivered(&out).len() as u64 >= expected,
    );
    let log = host.stop();
    assert_eq!(
        delivered(&out).len() as u64,
        expected,
        "nothing refused stored"
    );
    assert_eq!(
        dead_letters(&s.data).len() as u64,
        2 * negative,
        "only the accepted requests' negatives"
    );
    assert!(
        !log.contains(FIRST) && !log.contains(SECOND),
        "a token in the log: {log}"
    );
    assert!(
        log.contains("missing or wrong token"),
        "refusals are logged: {log}"
    );
}

/// `halyard config check` and `halyard run` on `config`: both must refuse
/// it; returns what `config check` printed.
fn refused(s: &Scenario, config: &str) -> String {
    std::fs::write(&s.config, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_halyard"))
        .args(["config", "check", s.config.to_str().unwrap()])
        .env("HALYARD_DEV_MODE", "1")
        .env("NO_COLOR", "1")
        .output()
        .expect("run halyard config check");
    let check = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "config check accepted it: {check}");

    let stderr = s.path("run.stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_halyard"))
        .args(["run", "--config", s.config.to_str().unwrap()])
        .env("HALYARD_DEV_MODE", "1")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("start halyard");
    let status = crate::support::wait_exit_or_kill(&mut child, Duration::from_secs(60), || {
        "halyard run kept running with an open endpoint".to_string()
    });
    let run_err = std::fs::read_to_string(&stderr).unwrap();
    assert!(!status.success(), "run accepted it: {run_err}");
    assert!(run_err.contains("input[0].auth"), "{run_err}");
    check
}

#[test]
fn an_open_endpoint_off_loopback_is_refused_naming_the_key() {
    let s = Scenario::new();
    let [port] = free_ports();
    let anywhere = std::net::SocketAddr::from(([0, 0, 0, 0], port.port()));
    let transport = file_transport(&s.path("out.jsonl"));

    let err = refused(&s, &http_config(&s.data, anywhere, "", "", &transport));
    assert!(err.contains("`input[0].auth` is not set"), "{err}");
    assert!(
        err.contains("Authorization: Bearer"),
        "says what to do: {err}"
    );

    let err = refused(
        &s,
        &http_config(&s.data, anywhere, "auth = \"none\"", "", &transport),
    );
    assert!(
        err.contains("`input[0].auth` = \"none\" is only allowed on a loopback listen address"),
        "{err}"
    );

    // Even on loopback, an unset `auth` is a mistake, not "open".
    let err = refused(&s, &http_config(&s.data, port, "", "", &transport));
    assert!(err.contains("`input[0].auth` is not set"), "{err}");
    assert!(
        err.contains("auth = \"none\""),
        "offers none on loopback: {err}"
    );

    // A token variable set to nothing: the key, never a value.
    let text = http_config(
        &s.data,
        anywhere,
        "auth = { tokens = [\"${EMPTY_TOKEN:-}\"] }",
        "",
        &transport,
    );
    let err = refused(&s, &text);
    assert!(err.contains("`input[0].auth.tokens[0]` is empty"), "{err}");

    // With a token, the same endpoint is accepted.
    std::fs::write(
        &s.config,
        http_config(
            &s.data,
            anywhere,
            "auth = { tokens = [\"${CHECK_TOKEN}\"] }",
            "",
            &transport,
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_halyard"))
        .args(["config", "check", s.config.to_str().unwrap()])
        .env("HALYARD_DEV_MODE", "1")
        .env("CHECK_TOKEN", "tok-never-printed-1234")
        .output()
        .expect("run halyard config check");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(printed.contains("tokens = [\"***\"]"), "{printed}");
    assert!(!printed.contains("tok-never-printed-1234"), "{printed}");
}
