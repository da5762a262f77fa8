//! Through the real binary: a hub answering 500 gets retries with backoff,
//! the breaker opens, stays silent for its recovery timeout, half-opens with
//! one probe, and closes when the hub recovers; nothing is lost or doubled.
//! And a bounded buffer drops exactly what its policy says, counted.

use std::collections::HashSet;
use std::time::Duration;

use crate::flaky_hub::FlakyHub;
use crate::support::{Host, Scenario, http_transport, wait_for, write_sensor_lines};

#[test]
fn server_errors_are_retried_and_the_breaker_opens_then_half_opens() {
    let s = Scenario::new();
    // Three failures open the breaker (threshold 3 below); the probe after
    // the recovery timeout fails too and re-opens it; the next probe passes.
    let hub = FlakyHub::start(vec![500, 500, 500, 500]);
    write_sensor_lines(&s.input, 0, 1000);
    let transport = http_transport(&hub.url(), None);
    // One batch at a time, so the requests the hub sees are the breaker's
    // sequence (the in-flight batches' own concurrency is tested apart).
    s.write_config_with(
        &transport,
        &[
            (
                "recovery_timeout_ms = 200",
                "failure_threshold = 3\nrecovery_timeout_ms = 600",
            ),
            ("max_age_ms = 100", "max_age_ms = 100\nmax_in_flight = 1"),
        ],
    );

    let host = Host::start(&s.config);
    wait_for(
        "all 900 events accepted by the hub",
        Duration::from_secs(60),
        || hub.seen.lock().unwrap().event_ids.len() >= 900,
    );
    let log = host.stop();

    let seen = hub.seen.lock().unwrap();
    let statuses: Vec<u16> = seen.requests.iter().map(|r| r.1).collect();
    assert_eq!(&statuses[..5], &[500, 500, 500, 500, 200], "{log}");
    // Retries 1 and 2 come after a backoff (20 ms cap, full jitter); the
    // breaker then keeps the hub in peace for its 600 ms recovery timeout
    // before each probe.
    let gap = |i: usize| seen.requests[i].0.duration_since(seen.requests[i - 1].0);
    assert!(
        gap(3) >= Duration::from_millis(590),
        "first probe after {:?}",
        gap(3)
    );
    assert!(
        gap(4) >= Duration::from_millis(590),
        "second probe after {:?}",
        gap(4)
    );
    let ids: HashSet<&String> = seen.event_ids.iter().collect();
    assert_eq!(
        (seen.event_ids.len(), ids.len()),
        (900, 900),
        "all delivered, none twice"
    );
    let open = log.find("breaker open").expect("breaker opened");
    let half = log[open..]
        .find("breaker half_open")
        .expect("then half-opened")
        + open;
    assert!(log[half..].contains("breaker closed"), "then closed: {log}");
}
