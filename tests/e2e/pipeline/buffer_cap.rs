//! A bounded buffer with the receiver down: exactly what the policy says is
//! dropped, every drop is counted, and the rest is delivered once the
//! receiver is back.

use std::time::Duration;

use crate::receiver::Receiver;
use crate::support::{
    Host, Scenario, http_transport, totals, wait_for, wait_until_ingested, write_sensor_lines,
};

fn fill_while_down(
    policy: &str,
) -> (
    Scenario,
    std::net::SocketAddr,
    u64,
    std::collections::HashMap<String, u64>,
) {
    let s = Scenario::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let negative = write_sensor_lines(&s.input, 0, 20_000);
    let transport = http_transport(&format!("http://{port}/v1/batches"), None);
    s.write_config_with(
        &transport,
        &[(
            "[shutdown]",
            &format!("[buffer]\nmax_mb = 1\nwhen_full = \"{policy}\"\n\n[shutdown]"),
        )],
    );
    let host = Host::start(&s.config);
    wait_until_ingested(&s, &host);
    let log = host.stop();
    (s, port, 20_000 - negative, totals(&log))
}

#[test]
fn drop_newest_keeps_the_backlog_and_counts_every_refusal() {
    let (s, port, valid, t) = fill_while_down("drop_newest");
    assert!(t["buffer_dropped"] > 0, "the buffer filled up: {t:?}");
    assert_eq!(
        t["accepted"] + t["buffer_dropped"],
        valid,
        "every valid event accepted or counted as dropped"
    );
    assert_eq!(t["buffer_evicted"], 0);

    let receiver = Receiver::start(port, &s.path("received.db"), None);
    let host = Host::start(&s.config);
    let accepted = t["accepted"];
    wait_for(
        "the accepted events delivered",
        Duration::from_secs(60),
        || receiver.stats().events_stored >= accepted,
    );
    host.stop();
    let stats = receiver.stats();
    assert_eq!((stats.events_stored, stats.duplicates), (accepted, 0));
}

#[test]
fn drop_oldest_keeps_the_newest_and_counts_every_eviction() {
    let (s, port, valid, t) = fill_while_down("drop_oldest");
    assert_eq!(t["accepted"], valid, "drop_oldest accepts every new event");
    assert!(t["buffer_evicted"] > 0, "older events were evicted: {t:?}");
    assert_eq!(t["buffer_dropped"], 0);

    let receiver = Receiver::start(port, &s.path("received.db"), None);
    let host = Host::start(&s.config);
    let kept = valid - t["buffer_evicted"];
    wait_for("the kept events delivered", Duration::from_secs(60), || {
        receiver.stats().events_stored >= kept
    });
    host.stop();
    let stats = receiver.stats();
    assert_eq!((stats.events_stored, stats.duplicates), (kept, 0));
}
