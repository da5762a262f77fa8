//! Several batches in flight: a hub slow to answer gets exactly
//! `max_in_flight` batches at once, never more, and once it answers every
//! event arrives exactly once.

use std::collections::HashSet;
use std::time::Duration;

use crate::flaky_hub::FlakyHub;
use crate::support::{Host, Scenario, http_transport, wait_for, write_sensor_lines};

#[test]
fn a_slow_hub_gets_max_in_flight_batches_at_once_and_every_event_once() {
    let s = Scenario::new();
    let hub = FlakyHub::gated(Vec::new());
    // 1800 valid readings: 8 batches of 250 (the base config's max_events).
    write_sensor_lines(&s.input, 0, 2000);
    s.write_config_with(
        &http_transport(&hub.url(), None),
        &[("max_age_ms = 100", "max_age_ms = 100\nmax_in_flight = 3")],
    );
    let host = Host::start(&s.config);
    wait_for("3 batches held by the hub", Duration::from_secs(60), || {
        hub.gate.held() == 3
    });
    // Every line is in the buffer, so more batches are ready to go: the
    // limit, not a lack of events, is what holds them back.
    wait_for("the file read to its end", Duration::from_secs(60), || {
        std::fs::read_to_string(&host.log)
            .unwrap_or_default()
            .contains("file input caught up")
    });
    assert_eq!(hub.gate.held(), 3);
    hub.gate.open();
    wait_for(
        "all 1800 events at the hub",
        Duration::from_secs(60),
        || hub.seen.lock().unwrap().event_ids.len() >= 1800,
    );
    let log = host.stop();
    assert_eq!(hub.gate.most_held(), 3, "{log}");
    let seen = hub.seen.lock().unwrap();
    let ids: HashSet<&String> = seen.event_ids.iter().collect();
    assert_eq!((seen.event_ids.len(), ids.len()), (1800, 1800));
    assert_eq!(seen.requests.len(), 8, "8 batches, none re-sent");
}
