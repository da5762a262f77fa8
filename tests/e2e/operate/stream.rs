//! `/events/stream` delivers events after the privacy and sampler stages
//! with its filters applied, lifecycle events on request, and a client
//! that never reads does not hold the pipeline back. `halyard tail` follows
//! it, reconnecting until the host is up.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::pipeline_support::{Scenario, delivered, file_transport, wait_for};
use crate::support::{Client, Running, free_ports, sensor_lines, start, start_with_status};

/// One Server-Sent Event: its `event:` type and parsed `data:`.
type Item = (String, serde_json::Value);

/// Subscribes to `/events/stream?{query}` on a thread; returns once the
/// server has answered (so the subscription is live) and the items from
/// then on.
fn subscribe(status: SocketAddr, query: &str) -> mpsc::Receiver<Item> {
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready) = mpsc::channel();
    let url = format!("http://{status}/events/stream?{query}");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let mut response = reqwest::get(&url).await.expect("connect");
            assert_eq!(response.status(), 200);
            let _ = ready_tx.send(());
            let mut pending = String::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                pending.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = pending.find("\n\n") {
                    let frame: String = pending.drain(..end + 2).collect();
                    let mut kind = String::new();
                    let mut data = String::new();
                    for line in frame.lines() {
                        if let Some(v) = line.strip_prefix("event: ") {
                            kind = v.to_string();
                        } else if let Some(v) = line.strip_prefix("data: ") {
                            data.push_str(v);
                        }
                    }
                    if data.is_empty() {
                        continue;
                    }
                    let value = serde_json::from_str(&data).expect("JSON data");
                    if tx.send((kind, value)).is_err() {
                        return;
                    }
                }
            }
        });
    });
    ready
        .recv_timeout(Duration::from_secs(60))
        .expect("stream answered");
    rx
}

/// Items until `done` returns true, or panics at the deadline.
fn collect_until(rx: &mpsc::Receiver<Item>, mut done: impl FnMut(&Item) -> bool) -> Vec<Item> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut items = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let item = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("stream ended or timed out after {items:?}"));
        let stop = done(&item);
        items.push(item);
        if stop {
            return items;
        }
    }
}

/// A bench line for source `d1` with a known timestamp: a marker.
fn marker_line(ts: u64) -> Vec<u8> {
    format!(
        "{{\"device\":\"d1\",\"metric\":\"temp\",\"value\":20.0,\"ts\":{ts},\"operator\":\"alice\"}}\n"
    )
    .into_bytes()
}

#[test]
fn the_stream_carries_redacted_events_with_filters_and_lifecycle_events() {
    let s = Scenario::new();
    let run = start(&s, &file_transport(&s.path("out.jsonl")), &[]);
    let client = Client::new();
    let d1 = subscribe(run.status, "source=d1&kind=temp");
    let other_kind = subscribe(run.status, "kind=tem");
    let life = subscribe(run.status, "kind=host&lifecycle=true");

    let (body, _) = sensor_lines(&s, 0, 500);
    client.ingest(run.ingest, body);
    client.ingest(run.ingest, marker_line(42));
    let items = collect_until(&d1, |(_, e)| e["time_ns"] == 42_000_000_i64);

    // Lines 1, 51, 101, … are device d1; the validator drops negative
    // values (line i is negative when (i * 37) % 1000 < 100).
    let expected = (0..500u64)
        .filter(|i| i % 50 == 1 && (i * 37) % 1000 >= 100)
        .count();
    assert_eq!(items.len(), expected + 1, "{items:?}");
    for (kind, event) in &items {
        assert_eq!(kind, "event");
        assert_eq!(event["source"], "d1", "{event}");
        assert_eq!(event["kind"], "temp", "{event}");
        let operator = event["attributes"]["operator"].as_str().expect("operator");
        assert!(
            !["alice", "bob", "carol", "dave"].contains(&operator),
            "the stream shows the redacted event: {event}"
        );
        assert!(event["value"].as_f64().is_some_and(|v| v >= 0.0), "{event}");
    }

    // Stopping the host publishes `host.stop`, then ends every stream.
    let log = run.host.stop();
    let seen = collect_until(&life, |(_, e)| e["kind"] == "host.stop");
    let stop = &seen.last().unwrap().1;
    assert_eq!(stop["schema_version"], 1, "{stop}");
    assert!(
        stop["correlation_id"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );
    assert!(
        stop["ts"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{stop}"
    );
    for (kind, e) in &seen {
        assert_eq!(kind, "lifecycle", "{seen:?} {log}");
        assert!(
            e["kind"].as_str().is_some_and(|k| k.starts_with("host.")),
            "{e}"
        );
    }
    // `kind=tem` is not a dotted prefix of `temp`: that client got nothing.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut leaked = Vec::new();
    loop {
        match other_kind.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(item) => leaked.push(item),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("the stream did not end at shutdown"),
        }
    }
    assert!(leaked.is_empty(), "{leaked:?}");
}

#[test]
fn a_client_that_never_reads_does_not_hold_back_the_pipeline() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    let run = start(
        &s,
        &format!("{}\n", file_transport(&out)),
        &[("[health]\n", "[health]\nstream_buffer = 16\n")],
    );
    let client = Client::new();
    // Subscribes, then never reads a byte.
    let mut stalled = TcpStream::connect(run.status).unwrap();
    write!(
        stalled,
        "GET /events/stream?lifecycle=true HTTP/1.1\r\nhost: x\r\n\r\n"
    )
    .unwrap();
    wait_for(
        "the stalled client connected",
        Duration::from_secs(30),
        || {
            client
                .metrics(run.status)
                .get("halyard_stream_clients", &[])
                == 1.0
        },
    );

    let mut valid = 0;
    for part in 0..20 {
        let (body, negative) = sensor_lines(&s, part * 1000, 1000);
        let answer = client.ingest(run.ingest, body);
        assert_eq!(answer["accepted"].as_u64(), Some(1000 - negative));
        valid += 1000 - negative;
    }
    wait_for("every event delivered", Duration::from_secs(120), || {
        delivered(&out).len() as u64 == valid
    });
    drop(stalled);
    run.host.stop();
}

#[test]
fn tail_reconnects_until_the_host_is_up_and_prints_filtered_events() {
    let s = Scenario::new();
    let [status] = free_ports();
    let out = s.path("tail.out");
    let mut tail = Command::new(env!("CARGO_BIN_EXE_halyard"))
        .args([
            "tail",
            "--url",
            &format!("http://{status}"),
            "--source",
            "d1",
            "--json",
            "--count",
            "3",
        ])
        .env("NO_COLOR", "1")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("start halyard tail");

    // The host comes up on the port tail is already trying.
    let run = start_with_status(&s, &file_transport(&s.path("batches.jsonl")), &[], status);
    let client = Client::new();
    let exit = tail_status(&mut tail, &client, &run, &s);
    assert!(exit.success());
    run.host.stop();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for l in &lines {
        assert_eq!(l["type"], "event", "{l}");
        assert_eq!(l["data"]["source"], "d1", "{l}");
    }
}

/// Waits for tail to connect, feeds d1 events until it has printed its
/// count, and returns its exit status.
fn tail_status(
    tail: &mut std::process::Child,
    client: &Client,
    run: &Running,
    s: &Scenario,
) -> std::process::ExitStatus {
    wait_for("tail connected", Duration::from_secs(60), || {
        client
            .metrics(run.status)
            .get("halyard_stream_clients", &[])
            == 1.0
    });
    let (body, _) = sensor_lines(s, 0, 200);
    client.ingest(run.ingest, body);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = tail.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = tail.kill();
            panic!("tail did not exit after printing 3 events");
        }
        std::thread::park_timeout(Duration::from_millis(25));
    }
}
