//! File input → stages → buffer → HTTP → the real receiver on 127.0.0.1:
//! exact delivery when healthy, buffering while the receiver is down, and
//! no loss across kill -9. (What a refusing receiver does is in
//! `receiver_refusals.rs`.)

use std::time::Duration;

pub use crate::receiver_support::{Receiver, loopback_any, wait_stored, with_receiver};
use crate::support::{Host, Scenario, http_transport, wait_for, write_sensor_lines};

#[test]
fn healthy_receiver_gets_every_valid_event_exactly_once() {
    let s = Scenario::new();
    let receiver = Receiver::start(loopback_any(), &s.path("received.db"), Some("k3y"));
    write_sensor_lines(&s.input, 0, 3000);
    s.write_config(&http_transport(&receiver.url(), Some("k3y")));

    let host = Host::start(&s.config);
    wait_for("2700 events stored", Duration::from_secs(60), || {
        receiver.stats().events_stored >= 2700
    });
    let log = host.stop();
    let stats = receiver.stats();
    assert_eq!(stats.events_stored, 2700, "{log}");
    assert_eq!(stats.duplicates, 0);
    assert_eq!(stats.events_received, 2700);
    assert!(!log.contains("k3y"), "the API key never appears in logs");
}

#[test]
fn events_wait_in_the_buffer_while_the_receiver_is_down() {
    let s = Scenario::new();
    // Reserve a port, then leave it closed: the receiver is "down".
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    write_sensor_lines(&s.input, 0, 1000);
    let input_len = std::fs::metadata(&s.input).unwrap().len();
    s.write_config(&http_transport(&format!("http://{port}/v1/batches"), None));

    let host = Host::start(&s.config);
    wait_for(
        "all lines committed to the buffer",
        Duration::from_secs(60),
        || host.caught_up_to(input_len),
    );
    let receiver = Receiver::start(port, &s.path("received.db"), None);
    wait_for("900 events stored", Duration::from_secs(60), || {
        receiver.stats().events_stored >= 900
    });
    host.stop();
    let stats = receiver.stats();
    assert_eq!((stats.events_stored, stats.duplicates), (900, 0));
}

#[test]
fn kill_9_mid_stream_loses_nothing_and_duplicates_are_removed() {
    let s = Scenario::new();
    let receiver = Receiver::start(loopback_any(), &s.path("received.db"), None);
    write_sensor_lines(&s.input, 0, 20_000);
    s.write_config(&http_transport(&receiver.url(), None));

    let host = Host::start(&s.config);
    wait_for("a first part delivered", Duration::from_secs(60), || {
        receiver.stats().events_stored >= 3000
    });
    host.kill9();
    let stored_at_kill = receiver.stats().events_stored;
    assert!(
        stored_at_kill < 18_000,
        "killed mid-stream ({stored_at_kill} stored)"
    );

    let host = Host::start(&s.config);
    wait_for(
        "all 18000 valid events stored",
        Duration::from_secs(120),
        || receiver.stats().events_stored >= 18_000,
    );
    host.stop();
    let stats = receiver.stats();
    assert_eq!(
        stats.events_stored, 18_000,
        "every accepted event delivered"
    );
    // At-least-once: what was in flight at the kill is sent again and the
    // receiver drops it by event id: at most the batches in flight
    // (`max_in_flight` = 4 of 250 events). The file position is committed
    // with the events, so no line is read twice.
    assert!(
        stats.duplicates <= 4 * 250,
        "{} duplicates",
        stats.duplicates
    );
}
