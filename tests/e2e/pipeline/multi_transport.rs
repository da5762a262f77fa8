//! Several transports at once (issue 13, item 2), through the real binary,
//! two real receivers on 127.0.0.1 and the real buffer, with exact counts:
//!
//! - one receiver stopped mid-run never blocks the other, which gets every
//!   event; the stopped one's backlog waits in the buffer (per-transport
//!   gauges say so), it gets every event once it returns, and only then
//!   does the buffer empty — no duplicates, no restart;
//! - `kinds` filters: each transport gets exactly the kinds it asked for.

use std::time::Duration;

use crate::operate_support::{Client, Receiver, Running, free_ports, sensor_lines, start};
use crate::support::{Scenario, wait_for};

/// `[[transport]]` tables for `(name, url, extra lines)`.
fn transports(list: &[(&str, String, &str)]) -> String {
    list.iter()
        .map(|(name, url, extra)| {
            format!("[[transport]]\nname = \"{name}\"\ntype = \"http\"\nurl = \"{url}\"\n{extra}\n")
        })
        .collect()
}

fn url(addr: std::net::SocketAddr) -> String {
    format!("http://{addr}/v1/batches")
}

/// Ingests bench lines `start..start + n`; returns the events accepted.
fn ingest(s: &Scenario, client: &Client, run: &Running, start: u64, n: u64) -> u64 {
    let (body, negative) = sensor_lines(s, start, n);
    let answer = client.ingest(run.ingest, body);
    let accepted = answer["accepted"].as_u64().expect("accepted");
    assert_eq!(accepted, n - negative, "{answer}");
    accepted
}

#[test]
fn a_stopped_receiver_never_blocks_the_other_and_gets_everything_when_back() {
    let s = Scenario::new();
    let [a_addr, b_addr] = free_ports();
    let a = Receiver::start(a_addr, &s.path("a.db"));
    let b = Receiver::start(b_addr, &s.path("b.db"));
    let tail = transports(&[("a", url(a_addr), ""), ("b", url(b_addr), "")]);
    let run = start(&s, &tail, &[]);
    let client = Client::new();

    // Both up: both get the first part.
    let first = ingest(&s, &client, &run, 0, 500);
    wait_for("both got the first part", Duration::from_secs(60), || {
        a.stats().events_stored == first && b.stats().events_stored == first
    });

    // Both acknowledged (nothing in flight to b when it stops, so no
    // re-send can duplicate): then "b" goes down, "a" keeps receiving.
    wait_for("the first part settled", Duration::from_secs(30), || {
        client.metrics(run.status).get("halyard_buffer_events", &[]) == 0.0
    });
    drop(b);
    let second = ingest(&s, &client, &run, 500, 1500);
    let total = first + second;
    wait_for("a got every event", Duration::from_secs(90), || {
        a.stats().events_stored == total
    });
    let pending = |m: &crate::operate_support::Metrics, t: &str| {
        m.get("halyard_transport_pending_events", &[("transport", t)])
    };
    // The receiver stores a batch before it answers, and the host counts
    // it delivered only once the answer is in: wait for the acknowledgement.
    wait_for(
        "a's last batch acknowledged",
        Duration::from_secs(30),
        || pending(&client.metrics(run.status), "a") == 0.0,
    );
    let metrics = client.metrics(run.status);
    assert_eq!(pending(&metrics, "a"), 0.0);
    assert_eq!(pending(&metrics, "b"), second as f64, "b's backlog waits");
    assert_eq!(metrics.get("halyard_buffer_events", &[]), second as f64);
    let (_, health) = client.get_json(&format!("http://{}/health", run.status));
    let listed: Vec<&str> = health["transports"]
        .as_array()
        .expect("transports listed")
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["a", "b"], "{health}");
    assert_eq!(
        health["transports"][1]["pending_events"], second,
        "{health}"
    );

    // "b" comes back on the same port (same store): it gets the rest.
    let b = Receiver::start(b_addr, &s.path("b.db"));
    wait_for("b got every event", Duration::from_secs(90), || {
        b.stats().events_stored == total
    });
    wait_for("the buffer emptied", Duration::from_secs(30), || {
        client.metrics(run.status).get("halyard_buffer_events", &[]) == 0.0
    });
    let log = run.host.stop();
    for (name, r) in [("a", &a), ("b", &b)] {
        let stats = r.stats();
        assert_eq!(
            (stats.events_stored, stats.events_received, stats.duplicates),
            (total, total, 0),
            "{name}: every event once\n{log}"
        );
    }
}

#[test]
fn kind_filters_send_each_transport_exactly_its_kinds() {
    let s = Scenario::new();
    let [t_addr, h_addr] = free_ports();
    let temps = Receiver::start(t_addr, &s.path("temps.db"));
    let hums = Receiver::start(h_addr, &s.path("hums.db"));
    let tail = transports(&[
        ("temps", url(t_addr), "kinds = [\"temp\"]"),
        ("hums", url(h_addr), "kinds = [\"hum\"]"),
    ]);
    let run = start(&s, &tail, &[]);
    let client = Client::new();

    // 300 temperature readings (some negative: the validator refuses
    // those) and 200 humidity readings, interleaved.
    let (temp_body, negative) = sensor_lines(&s, 0, 300);
    let mut body = Vec::new();
    for (i, line) in temp_body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        body.extend_from_slice(line);
        body.push(b'\n');
        if i < 200 {
            body.extend_from_slice(
                format!(
                    "{{\"device\":\"h{}\",\"metric\":\"humidity\",\"value\":{}.5,\"ts\":{}}}\n",
                    i % 7,
                    40 + i % 20,
                    1_700_000_000_000u64 + i as u64
                )
                .as_bytes(),
            );
        }
    }
    let answer = client.ingest(run.ingest, body);
    let (want_temps, want_hums) = (300 - negative, 200);
    assert_eq!(answer["accepted"], want_temps + want_hums, "{answer}");

    wait_for("both got their kinds", Duration::from_secs(60), || {
        temps.stats().events_stored == want_temps && hums.stats().events_stored == want_hums
    });
    wait_for("the buffer emptied", Duration::from_secs(30), || {
        client.metrics(run.status).get("halyard_buffer_events", &[]) == 0.0
    });
    let log = run.host.stop();
    let (t, h) = (temps.stats(), hums.stats());
    assert_eq!((t.events_stored, t.duplicates), (want_temps, 0), "{log}");
    assert_eq!((h.events_stored, h.duplicates), (want_hums, 0), "{log}");
}
