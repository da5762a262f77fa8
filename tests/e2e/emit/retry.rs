//! The client retries through 503 — the input busy (`max_in_flight`), and
//! the buffer full under `when_full = "block"` — honouring `Retry-After`,
//! then succeeds: every event accepted once, stored once, no duplicates.

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::time::Duration;

use halyard_emit::{Client as Emit, EventResult, RetryPolicy};

use crate::helpers::{config, input, reading, second_of};
use crate::http_support::{
    AUTH, Client, Raw, TOKEN, free_ports, http_config, ingest_url, sensor_lines, stored_events,
    wait_listening,
};
use crate::receiver::{Receiver, loopback_any, wait_stored};
use crate::support::{Host, Scenario, http_transport, wait_for};

/// Emits `events` on a thread of its own; returns the retry reasons as
/// they happen and the outcome at the end.
fn emit_in_background(
    client: Emit,
    events: Vec<serde_json::Value>,
) -> (
    mpsc::Receiver<String>,
    std::thread::JoinHandle<Result<halyard_emit::BatchReport, halyard_emit::EmitError>>,
) {
    let (tx, retries) = mpsc::channel();
    let client = client.on_retry(move |r| {
        let _ = tx.send(r.reason.clone());
    });
    let handle = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(client.emit_batch_report(&events))
    });
    (retries, handle)
}

/// The ids of accepted results (all must be accepted).
fn accepted_ids(results: &[EventResult]) -> BTreeSet<String> {
    results
        .iter()
        .map(|r| {
            r.accepted_id()
                .unwrap_or_else(|| panic!("not accepted: {r:?}"))
                .to_string()
        })
        .collect()
}

fn stored_ids(receiver: &Receiver) -> BTreeSet<String> {
    stored_events(receiver, &Client::new())
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn the_client_retries_while_the_input_is_busy_then_succeeds_once() {
    let s = Scenario::new();
    let receiver = Receiver::start(loopback_any(), &s.path("received.db"), None);
    let [listen] = free_ports();
    let text = config(
        &s.data,
        &input(Some(listen), None, &format!("{AUTH}\nmax_in_flight = 1")),
        &http_transport(&receiver.url(), None),
    );
    std::fs::write(&s.config, text).unwrap();
    let host = Host::start(&s.config);
    wait_listening(listen);

    // A slow client holds the one request slot: its head is in, its body
    // is not. (Opened again if a probe happened to take the slot first
    // and the slow one was the one refused.)
    let slow_body = format!("{}\n", reading("slow", 1.0, second_of(6)));
    let probe = Client::new();
    let mut slow = None;
    wait_for(
        "a slow client holds the slot",
        Duration::from_secs(60),
        || {
            let mut raw = Raw::connect(listen);
            assert!(raw.send(Raw::head(slow_body.len()).as_bytes()));
            assert!(raw.send(&slow_body.as_bytes()[..5]));
            for _ in 0..50 {
                let answer = probe.post(&ingest_url(listen), b"\n".to_vec(), &[]);
                if answer.status == 503 && answer.json["error"] == "busy" {
                    slow = Some(raw);
                    return true;
                }
                if raw.answer(Duration::from_millis(1)).is_some() {
                    return false;
                }
            }
            false
        },
    );
    let mut slow = slow.expect("held");

    let events: Vec<_> = (0..50)
        .map(|i| reading(&format!("r{i}"), 1.0, second_of(6)))
        .collect();
    let client = Emit::new(&format!("http://{listen}"))
        .unwrap()
        .with_token(TOKEN);
    let (retries, emitting) = emit_in_background(client, events);
    let first = retries
        .recv_timeout(Duration::from_secs(30))
        .expect("the client was refused and retries");
    assert_eq!(first, "503 busy");
    // The slow client finishes: the slot frees, the retry gets in.
    assert!(slow.send(&slow_body.as_bytes()[5..]));
    let answer = slow.answer(Duration::from_secs(30)).expect("answered");
    assert_eq!(answer.status, 200, "{answer:?}");
    let report = emitting.join().unwrap().expect("emitted after retrying");
    assert!(report.attempts >= 2, "{report:?}");
    assert_eq!(report.attempts as usize, 1 + 1 + retries.try_iter().count());
    let ids = accepted_ids(&report.results);
    assert_eq!(ids.len(), 50);

    wait_stored(&receiver, 51);
    let log = host.stop();
    let stats = receiver.stats();
    assert_eq!((stats.events_stored, stats.duplicates), (51, 0), "{log}");
    let stored = stored_ids(&receiver);
    assert_eq!(stored.len(), 51);
    assert!(ids.is_subset(&stored), "every accepted id stored once");
}

#[test]
fn the_client_retries_through_a_full_buffer_then_succeeds_once() {
    let s = Scenario::new();
    let [listen, receiver_addr] = free_ports();
    // The receiver is down until started below: the 1 MiB buffer fills.
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
    let filler = Client::new();
    let mut accepted = 0;
    let mut full = false;
    for request in 0..40u64 {
        let (body, _) = sensor_lines(&s.input, request * 500, 500);
        let answer = filler.post(&ingest_url(listen), body, &[]);
        if answer.status == 503 {
            assert_eq!(answer.json["error"], "buffer_full", "{answer:?}");
            full = true;
            break;
        }
        assert_eq!(answer.status, 200, "{answer:?}");
        accepted += answer.count("accepted");
    }
    assert!(full, "the 1 MiB buffer refused a request within 40");
    // Requests the size of the client's until one is refused too: then the
    // client's is (nothing drains while the receiver is down).
    let events: Vec<_> = (0..40)
        .map(|i| reading(&format!("f{i}"), 2.0, second_of(7)))
        .collect();
    let same_size = |n: u64| {
        (0..40)
            .map(|i| format!("{}\n", reading(&format!("g{n}-{i}"), 2.0, second_of(7))))
            .collect::<String>()
            .into_bytes()
    };
    let mut refused = false;
    for n in 0..1000 {
        let answer = filler.post(&ingest_url(listen), same_size(n), &[]);
        if answer.status == 503 {
            refused = true;
            break;
        }
        assert_eq!(answer.status, 200, "{answer:?}");
        accepted += answer.count("accepted");
    }
    assert!(refused, "a small request was refused too");
    let client = Emit::new(&format!("http://{listen}"))
        .unwrap()
        .with_token(TOKEN)
        .with_retry(RetryPolicy {
            max_attempts: 200,
            max_elapsed: Duration::from_secs(180),
            ..RetryPolicy::default()
        });
    let (retries, emitting) = emit_in_background(client, events);
    let first = retries
        .recv_timeout(Duration::from_secs(30))
        .expect("the client was refused and retries");
    assert_eq!(first, "503 buffer_full");
    // The receiver comes up, the buffer drains, the retry is admitted.
    let receiver = Receiver::start(receiver_addr, &s.path("received.db"), None);
    let report = emitting.join().unwrap().expect("emitted after retrying");
    assert!(report.attempts >= 2, "{report:?}");
    let ids = accepted_ids(&report.results);
    assert_eq!(ids.len(), 40);

    let total = accepted + 40;
    wait_stored(&receiver, total);
    let log = host.stop();
    let stats = receiver.stats();
    assert_eq!((stats.events_stored, stats.duplicates), (total, 0), "{log}");
    assert!(ids.is_subset(&stored_ids(&receiver)));
}
