//! The `http` input: frames POSTed to the real binary, answered only after
//! the commit, with exact counts; 503 + `Retry-After` when the buffer refuses
//! under `when_full = "block"`, and nothing of a refused request stored (even
//! one that spans several plugin calls); gzip bodies, a request larger than
//! one plugin call, decode errors to the dead letters, the body cap; a port
//! in use fails the start; a kept-alive connection is closed after the idle
//! timeout, which is not the header timeout.

use std::collections::{BTreeSet, HashSet};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::http_support::{
    AUTH, Client, Ended, INPUT, Raw, free_ports, gzip, http_config, ingest_url, line_is_valid,
    line_ts, sensor_lines, start_http_host, stored_events, wait_listening,
};
use crate::receiver::Receiver;
use crate::support::{
    Host, Scenario, dead_letters, delivered, file_transport, http_transport, wait_for,
};

#[test]
fn posted_lines_are_answered_after_commit_with_exact_counts() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    let (host, listen) = start_http_host(&s, &out, AUTH);

    let client = Client::new();
    let (mut accepted, mut rejected, mut negative) = (0, 0, 0);
    for part in 0..4 {
        let (body, neg) = sensor_lines(&s.input, part * 250, 250);
        negative += neg;
        let answer = client.post(
            &ingest_url(listen),
            body,
            &[("content-type", "application/x-ndjson")],
        );
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(
            answer.count("accepted") + answer.count("rejected"),
            250,
            "{answer:?}"
        );
        assert_eq!(
            (answer.count("decode_errors"), answer.count("dropped")),
            (0, 0)
        );
        accepted += answer.count("accepted");
        rejected += answer.count("rejected");
    }
    assert_eq!(negative, 100);
    assert_eq!((accepted, rejected), (900, 100));

    wait_for("900 events delivered", Duration::from_secs(60), || {
        delivered(&out).len() >= 900
    });
    let log = host.stop();
    let events = delivered(&out);
    assert_eq!(events.len(), 900, "{log}");
    let ids: HashSet<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), 900, "no duplicates");
    let times: BTreeSet<i64> = events
        .iter()
        .filter_map(|e| e["time_ns"].as_i64())
        .collect();
    let expected: BTreeSet<i64> = (0..1000)
        .filter(|i| line_is_valid(*i))
        .map(|i| line_ts(i) * 1_000_000)
        .collect();
    assert_eq!(times, expected, "each valid line's own event");
    assert_eq!(dead_letters(&s.data).len(), 100, "the negatives, rejected");
}

#[test]
fn a_full_buffer_under_block_answers_503_and_accepted_events_all_arrive() {
    let s = Scenario::new();
    let [listen, receiver_addr] = free_ports();
    // Reserved and left closed: the receiver is "down" until started below.
    std::fs::write(
        &s.config,
        http_config(
            &s.data,
            listen,
            AUTH,
            "[buffer]\nmax_mb = 1\nwhen_full = \"block\"",
            &http_transport(&format!("http://{receiver_addr}/v1/batches"), None),
        ),
    )
    .unwrap();
    let host = Host::start(&s.config);
    wait_listening(listen);

    let client = Client::new();
    let mut accepted_lines: BTreeSet<i64> = BTreeSet::new();
    let mut refused_lines: BTreeSet<i64> = BTreeSet::new();
    let mut accepted = 0;

    let mut refusal = None;
    for request in 0..40u64 {
        let start = request * 500;
        let (body, negative) = sensor_lines(&s.input, start, 500);
        let answer = client.post(&ingest_url(listen), body, &[]);
        let lines = (start..start + 500)
            .filter(|i| line_is_valid(*i))
            .map(line_ts);
        if answer.status == 503 {
            refused_lines.extend(lines);
            refusal = Some(answer);
            break;
        }
        assert_eq!(answer.status, 200, "request {request}: {answer:?}");
        assert_eq!(answer.count("accepted"), 500 - negative, "{answer:?}");
        assert_eq!(answer.count("rejected"), negative);
        accepted += answer.count("accepted");
        accepted_lines.extend(lines);
    }
    let refusal = refusal.expect("the 1 MiB buffer refused a request within 40");
    assert_eq!(
        refusal.retry_after.as_deref(),
        Some("1"),
        "503 carries Retry-After: {refusal:?}"
    );
    assert_eq!(refusal.json["error"], "buffer_full", "{refusal:?}");
    assert!(accepted > 0, "requests fitted before the buffer filled");

    // A request needing more than the whole buffer, while it is full: pushed
    // back before decoding, whole.
    let (body, _) = sensor_lines(&s.input, 100_000, 12_000);
    let answer = client.post(&ingest_url(listen), body, &[]);
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.retry_after.as_deref(), Some("1"), "{answer:?}");
    refused_lines.extend(
        (100_000..112_000)
            .filter(|i| line_is_valid(*i))
            .map(line_ts),
    );

    let receiver = Receiver::start(receiver_addr, &s.path("received.db"), None);
    wait_for(
        &format!("{accepted} events stored"),
        Duration::from_secs(60),
        || receiver.stats().events_stored >= accepted,
    );
    let log = host.stop();
    let stats = receiver.stats();
    assert_eq!(
        (stats.events_stored, stats.duplicates),
        (accepted, 0),
        "{log}"
    );
    let stored: BTreeSet<i64> = stored_events(&receiver, &client)
        .iter()
        .filter_map(|e| e["time_ns"].as_i64())
        .map(|ns| ns / 1_000_000)
        .collect();
    assert_eq!(stored, accepted_lines, "every accepted line, nothing else");
    assert!(stored.is_disjoint(&refused_lines), "nothing refused stored");
}

#[test]
fn gzip_bodies_decode_errors_and_refusals() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    let (host, listen) = start_http_host(&s, &out, AUTH);
    let client = Client::new();

    // 20 lines, one of them not JSON, CRLF endings and a blank line, gzip, to `/`.
    let (lines, negative) = sensor_lines(&s.input, 0, 20);
    let mut body = b"\r\n".to_vec();
    for (n, line) in lines
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        body.extend_from_slice(line);
        body.extend_from_slice(b"\r\n");
        if n == 9 {
            body.extend_from_slice(b"{not json\r\n");
        }
    }
    let answer = client.post(
        &format!("http://{listen}/"),
        gzip(&body),
        &[("content-encoding", "gzip")],
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.count("decode_errors"), 1, "{answer:?}");
    assert_eq!(answer.count("accepted"), 20 - negative, "{answer:?}");
    assert_eq!(answer.count("rejected"), negative, "{answer:?}");

    // More lines than one plugin call takes: decoded in several calls,
    // committed whole.
    let (big, big_negative) = sensor_lines(&s.input, 1000, 5000);
    let answer = client.post(&ingest_url(listen), big, &[]);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        (answer.count("accepted"), answer.count("rejected")),
        (5000 - big_negative, big_negative),
        "{answer:?}"
    );
    assert_eq!(answer.count("decode_errors"), 0, "{answer:?}");
    let valid = 20 - negative + 5000 - big_negative;

    // Over the 16 MiB cap once decompressed: 413, nothing ingested.
    let bomb = gzip(&vec![b'\n'; (16 << 20) + 1]);
    let answer = client.post(&ingest_url(listen), bomb, &[("content-encoding", "gzip")]);
    assert_eq!(answer.status, 413, "{answer:?}");
    // An encoding the input does not read: 415.
    let answer = client.post(
        &ingest_url(listen),
        lines.clone(),
        &[("content-encoding", "br")],
    );
    assert_eq!(answer.status, 415, "{answer:?}");
    // Not gzip although it says so: 400.
    let answer = client.post(&ingest_url(listen), lines, &[("content-encoding", "gzip")]);
    assert_eq!(answer.status, 400, "{answer:?}");

    wait_for(
        "the valid events delivered",
        Duration::from_secs(60),
        || delivered(&out).len() as u64 >= valid,
    );
    let log = host.stop();
    assert_eq!(delivered(&out).len() as u64, valid, "{log}");
    let dead = dead_letters(&s.data);
    let decode: Vec<&String> = dead
        .iter()
        .filter(|r| r.contains("decode failed"))
        .collect();
    assert_eq!(decode.len(), 1, "{dead:?}");
    assert!(decode[0].starts_with(&format!("{INPUT}: ")), "{dead:?}");
    assert_eq!(dead.len() as u64, 1 + negative + big_negative, "{dead:?}");
}

#[test]
fn a_port_in_use_fails_the_start_naming_the_input_and_address() {
    let s = Scenario::new();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    std::fs::write(
        &s.config,
        http_config(
            &s.data,
            addr,
            AUTH,
            "",
            &file_transport(&s.path("out.jsonl")),
        ),
    )
    .unwrap();
    let stderr = s.path("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_halyard"))
        .args(["run", "--config", s.config.to_str().unwrap()])
        .env("HALYARD_DEV_MODE", "1")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("start halyard");
    let status = crate::support::wait_exit_or_kill(&mut child, Duration::from_secs(60), || {
        format!("halyard kept running although {addr} is taken")
    });
    let err = std::fs::read_to_string(&stderr).unwrap();
    assert!(!status.success(), "{err}");
    assert!(
        err.contains(&format!("input `{INPUT}`: cannot listen on {addr}")),
        "{err}"
    );
    drop(taken);
}

#[test]
fn a_kept_alive_connection_waits_for_the_idle_timeout_not_the_header_timeout() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    let extra = format!("{AUTH}\nheader_timeout_ms = 1000\nidle_timeout_ms = 3000");
    let (host, listen) = start_http_host(&s, &out, &extra);

    let (body, negative) = sensor_lines(&s.input, 0, 20);
    let mut conn = Raw::connect(listen);
    for _ in 0..2 {
        let answer = conn.post(&body);
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.json()["accepted"], 20 - negative, "{answer:?}");
    }
    let answered = Instant::now();
    assert_eq!(conn.wait_end(Duration::from_secs(30)), Ended::Closed);
    let idle = answered.elapsed();
    assert!(
        idle >= Duration::from_millis(2900) && idle < Duration::from_secs(20),
        "closed after {idle:?} idle"
    );

    wait_for("both requests delivered", Duration::from_secs(60), || {
        delivered(&out).len() as u64 >= 2 * (20 - negative)
    });
    let log = host.stop();
    assert_eq!(delivered(&out).len() as u64, 2 * (20 - negative), "{log}");
    assert!(
        !log.contains("http input refusals"),
        "an idle close is no refusal: {log}"
    );
}
