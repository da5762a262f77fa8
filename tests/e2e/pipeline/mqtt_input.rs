//! The mqtt input against a real Mosquitto (started per test on a free
//! 127.0.0.1 port) and the real receiver, with exact counts:
//!
//! - every published reading arrives exactly once, source and kind taken
//!   from the topic; an oversized message and an undecodable one are
//!   dead-lettered and counted, and the input goes on;
//! - kill -9 of the host mid-stream, more published while it is down, a
//!   restart: exactly N distinct readings stored downstream;
//! - the broker restarted mid-run: the host reconnects (one reconnect,
//!   `input.disconnected` / `input.connected`) and nothing is lost.
//!
//! What duplicates are possible, and what is asserted. At a kill -9: a
//! message committed whose PUBACK the broker had not processed (queued in
//! the client, in the host's socket, or unread in the broker's socket,
//! which the reset of the killed connection discards) is redelivered and
//! committed again; and events the shipper had in flight to the receiver
//! are re-sent from the buffer. Both carry the same event ids (derived from
//! input, topic and payload), so the receiver stores each reading once:
//! `events_stored` is exactly N and the stored readings are exactly
//! 0..N. Only readings the killed run received can be duplicated, each at
//! most twice (≤ 2 × the first phase); the run after the restart receives
//! each message at most once and acknowledges all it received. When the
//! broker restarts, only acks not yet processed by the broker when it went
//! away can turn into redeliveries (≤ the client's ack queue,
//! `batch_max_messages` + 16, plus one commit).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use halyard_test_components as components;

use crate::http_support::{Client, stored_events};
use crate::mosquitto::{Mosquitto, password_file, publish, publish_as, reading};
use crate::operate_support::{self, free_ports};
use crate::receiver::{Receiver, loopback_any};
use crate::support::{Host, Scenario, config_with_input, dead_letters, http_transport, wait_for};

/// The tests' `batch_max_messages`.
const BATCH: u64 = 200;
/// Committed messages whose PUBACK may not have reached the broker when it
/// stops cleanly: the client's ack queue (`BATCH` + 16) and one commit
/// waiting for room.
const UNACKED: u64 = 2 * BATCH + 16;

/// An mqtt input on `sensors/#` with the topic mapped to source and kind.
fn mqtt_input(port: u16, extra: &str) -> String {
    format!(
        r#"[[input]]
type = "mqtt"
name = "broker"
broker = "127.0.0.1:{port}"
topics = ["sensors/#"]
client_id = "e2e-host"
batch_max_messages = {BATCH}
reconnect_initial_ms = 50
reconnect_max_ms = 500
{extra}
decoder = {{ plugin = "{decoder}", limits = {{ deadline_ms = 5000 }}, config = {{ topic_pattern = "sensors/{{source}}/{{kind}}" }} }}
"#,
        decoder = components::JSONL_DECODER,
    )
}

/// Writes the config: the mqtt input, the example stages, the receiver as
/// transport, the status server on `status`.
fn write_config(s: &Scenario, port: u16, extra: &str, receiver: &Receiver, status: SocketAddr) {
    let tail = format!(
        "[health]\nlisten = \"{status}\"\n\n{}",
        http_transport(&receiver.url(), None)
    );
    std::fs::write(
        &s.config,
        config_with_input(&s.data, &mqtt_input(port, extra), &tail),
    )
    .unwrap();
}

/// How many times the host's log says `what`.
fn logged(host: &Host, what: &str) -> usize {
    std::fs::read_to_string(&host.log)
        .map(|log| log.matches(what).count())
        .unwrap_or(0)
}

/// Starts the host and waits until its subscription is in place (messages
/// published before the first subscription are not the session's).
fn start_subscribed(s: &Scenario) -> Host {
    let host = Host::start(&s.config);
    wait_for("the mqtt input subscribed", Duration::from_secs(60), || {
        logged(&host, "mqtt input subscribed") >= 1
    });
    host
}

fn readings(from: u64, to: u64) -> Vec<(String, Vec<u8>)> {
    (from..to).map(reading).collect()
}

/// Waits (at most 120 s) until the receiver holds `n` distinct events;
/// past that, fails with what the receiver, the host and the broker say.
fn wait_stored(receiver: &Receiver, n: u64, host: &Host, broker_dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while receiver.stats().events_stored < n {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(&host.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            let broker =
                std::fs::read_to_string(broker_dir.join("mosquitto.log")).unwrap_or_default();
            let broker: Vec<&str> = broker.lines().rev().take(20).collect();
            panic!(
                "timed out waiting for {n} events stored: {:?}\nhost log (last lines first):\n{}\n\
                 broker log (last lines first):\n{}",
                receiver.stats(),
                tail.join("\n"),
                broker.join("\n")
            );
        }
        std::thread::park_timeout(Duration::from_millis(25));
    }
}

/// The `seq` of every stored event, which must each be stored once.
fn stored_seqs(receiver: &Receiver) -> BTreeSet<u64> {
    let events = stored_events(receiver, &Client::new());
    let seqs: BTreeSet<u64> = events
        .iter()
        .map(|e| e["attributes"]["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs.len(), events.len(), "each reading stored once");
    seqs
}

fn metric(status: SocketAddr, name: &str) -> f64 {
    operate_support::Client::new()
        .metrics(status)
        .get(name, &[("input", "broker")])
}

fn broker_dir(s: &Scenario) -> std::path::PathBuf {
    s.path("broker")
}

#[test]
fn every_reading_arrives_once_and_bad_messages_are_dead_lettered() {
    const N: u64 = 2000;
    let s = Scenario::new();
    let broker = Mosquitto::start(&broker_dir(&s));
    let receiver = Receiver::start(loopback_any(), &s.path("received.db"), None);
    let [status] = free_ports();
    write_config(
        &s,
        broker.port,
        "max_message_bytes = 1024",
        &receiver,
        status,
    );
    let host = start_subscribed(&s);

    let mut messages = readings(0, N);
    messages.insert(700, ("sensors/d1/temp".into(), vec![b'x'; 5000]));
    messages.insert(1400, ("sensors/d2/temp".into(), b"not json".to_vec()));
    publish(broker.port, messages);
    wait_stored(&receiver, N, &host, &broker_dir(&s));
    wait_for(
        "every message acknowledged",
        Duration::from_secs(30),
        || metric(status, "halyard_mqtt_messages_acked_total") >= (N + 2) as f64,
    );
    let m = operate_support::Client::new().metrics(status);
    let input = [("input", "broker")];
    assert_eq!(
        m.get("halyard_mqtt_messages_received_total", &input),
        (N + 2) as f64
    );
    assert_eq!(
        m.get("halyard_mqtt_messages_acked_total", &input),
        (N + 2) as f64
    );
    assert_eq!(m.get("halyard_mqtt_messages_oversized_total", &input), 1.0);
    assert_eq!(m.get("halyard_mqtt_decode_failures_total", &input), 1.0);
    assert_eq!(m.get("halyard_mqtt_connected", &input), 1.0);
    assert_eq!(m.get("halyard_mqtt_reconnects_total", &input), 0.0);
    let log = host.stop();

    let stats = receiver.stats();
    assert_eq!((stats.events_stored, stats.duplicates), (N, 0), "{log}");
    assert_eq!(stored_seqs(&receiver), (0..N).collect());
    let events = stored_events(&receiver, &Client::new());
    for e in &events {
        let seq = e["attributes"]["seq"].as_u64().unwrap();
        assert_eq!(
            e["source"],
            format!("d{}", seq % 5),
            "source from the topic"
        );
        assert_eq!(e["kind"], "temp", "kind from the topic");
    }
    let dead = dead_letters(&s.data);
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(
        dead.iter()
            .any(|r| r.contains("over max_message_bytes (1024)") && r.contains("sensors/d1/temp")),
        "{dead:?}"
    );
    assert!(dead.iter().any(|r| r.contains("decode failed")), "{dead:?}");
}

#[test]
fn kill_9_mid_stream_and_messages_published_while_down_lose_nothing() {
    const FIRST: u64 = 4000;
    const WHILE_DOWN: u64 = 1000;
    const N: u64 = FIRST + WHILE_DOWN;
    let s = Scenario::new();
    let broker = Mosquitto::start(&broker_dir(&s));
    let receiver = Receiver::start(loopback_any(), &s.path("received.db"), None);
    let [status] = free_ports();
    write_config(&s, broker.port, "", &receiver, status);
    let host = start_subscribed(&s);

    let port = broker.port;
    let publisher = std::thread::spawn(move || publish(port, readings(0, FIRST)));
    wait_for("a first part stored", Duration::from_secs(120), || {
        receiver.stats().events_stored >= 500
    });
    host.kill9();
    let at_kill = receiver.stats().events_stored;
    publisher.join().expect("publisher");
    assert!(at_kill < FIRST, "killed mid-stream ({at_kill} stored)");
    // Published while the host is down: queued in its persistent session.
    publish(broker.port, readings(FIRST, N));

    let host = Host::start(&s.config);
    wait_stored(&receiver, N, &host, &broker_dir(&s));
    // The second run never crashed: it got each message at most once and
    // acknowledged every one it got.
    let m = operate_support::Client::new().metrics(status);
    let input = [("input", "broker")];
    let received = m.get("halyard_mqtt_messages_received_total", &input);
    assert!(received <= N as f64, "{received} received");
    wait_for(
        "every message acknowledged",
        Duration::from_secs(30),
        || metric(status, "halyard_mqtt_messages_acked_total") == received,
    );
    let log = host.stop();
    let stats = receiver.stats();
    eprintln!(
        "kill -9 mid-stream: {at_kill} stored at the kill; run 2 received {received}; {stats:?}"
    );
    assert_eq!(stats.events_stored, N, "no reading lost: {log}");
    assert_eq!(stored_seqs(&receiver), (0..N).collect());
    // Only readings the first run took can be duplicated (what was
    // published while it was down reached the second run only), each at
    // most twice: re-sent from the buffer, and redelivered by the broker
    // and committed again.
    assert!(
        stats.duplicates <= 2 * FIRST,
        "{} duplicates",
        stats.duplicates
    );
}

#[test]
fn a_broker_restart_mid_run_is_reconnected_and_loses_nothing() {
    const N: u64 = 2000;
    let s = Scenario::new();
    let dir = broker_dir(&s);
    let broker = Mosquitto::start(&dir);
    let port = broker.port;
    let receiver = Receiver::start(loopback_any(), &s.path("received.db"), None);
    let [status] = free_ports();
    write_config(&s, port, "", &receiver, status);
    let host = start_subscribed(&s);

    publish(port, readings(0, N / 2));
    wait_stored(&receiver, N / 2, &host, &broker_dir(&s));
    broker.stop();
    wait_for(
        "the host saw the broker go",
        Duration::from_secs(60),
        || logged(&host, "mqtt input disconnected") >= 1,
    );
    let broker = Mosquitto::restart(&dir, port);
    wait_for("the host reconnected", Duration::from_secs(60), || {
        logged(&host, "mqtt input connected") >= 2
    });
    publish(broker.port, readings(N / 2, N));
    wait_stored(&receiver, N, &host, &broker_dir(&s));
    assert_eq!(metric(status, "halyard_mqtt_reconnects_total"), 1.0);
    assert_eq!(metric(status, "halyard_mqtt_connected"), 1.0);
    let log = host.stop();
    assert_eq!(
        logged_in(&log, "\"kind\":\"input.disconnected\""),
        2,
        "{log}"
    );

    let stats = receiver.stats();
    assert_eq!(stats.events_stored, N, "{log}");
    assert_eq!(stored_seqs(&receiver), (0..N).collect());
    assert!(
        stats.duplicates <= UNACKED,
        "{} duplicates",
        stats.duplicates
    );
}

fn logged_in(log: &str, what: &str) -> usize {
    log.matches(what).count()
}

#[test]
fn credentials_reach_the_broker_and_never_the_log() {
    const N: u64 = 300;
    const PASSWORD: &str = "mqtt-pw-never-logged";
    let s = Scenario::new();
    let dir = broker_dir(&s);
    let broker = Mosquitto::start_with(&dir, &password_file(&dir, "halyard", PASSWORD));
    let receiver = Receiver::start(loopback_any(), &s.path("received.db"), None);
    let [status] = free_ports();

    // A wrong password: refused by the broker, retried with backoff,
    // counted; the host keeps running.
    write_config(
        &s,
        broker.port,
        "username = \"halyard\"\npassword = \"wrong-pw-never-logged\"",
        &receiver,
        status,
    );
    let host = Host::start(&s.config);
    wait_for(
        "refused connection attempts",
        Duration::from_secs(60),
        || {
            logged(&host, "cannot connect") >= 1
                && metric(status, "halyard_mqtt_connect_failures_total") >= 2.0
        },
    );
    assert_eq!(metric(status, "halyard_mqtt_connected"), 0.0);
    let log = host.stop();
    assert!(!log.contains("wrong-pw"), "{log}");

    write_config(
        &s,
        broker.port,
        &format!("username = \"halyard\"\npassword = \"{PASSWORD}\""),
        &receiver,
        status,
    );
    let host = start_subscribed(&s);
    publish_as(broker.port, Some(("halyard", PASSWORD)), readings(0, N));
    wait_stored(&receiver, N, &host, &dir);
    let log = host.stop();
    assert!(!log.contains(PASSWORD), "{log}");
    assert_eq!(receiver.stats().events_stored, N);
    assert_eq!(stored_seqs(&receiver), (0..N).collect());
}
