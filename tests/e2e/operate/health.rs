//! `/health` follows the receiver: degraded (HTTP 200, reason "breaker")
//! while it is down and events wait in the buffer, healthy again once it
//! is back and the buffer has drained.

use std::time::Duration;

use crate::pipeline_support::{Scenario, http_transport, wait_for};
use crate::support::{Client, Receiver, free_ports, sensor_lines, start};

#[test]
fn health_is_degraded_while_the_receiver_is_down_and_healthy_when_it_returns() {
    let s = Scenario::new();
    let [hub] = free_ports();
    let url = format!("http://{hub}/v1/batches");
    let run = start(&s, &http_transport(&url, None), &[]);
    let client = Client::new();
    let health_url = format!("http://{}/health", run.status);

    let (code, first) = client.get_json(&health_url);
    assert_eq!(
        (code, first["status"].as_str()),
        (200, Some("healthy")),
        "{first}"
    );

    let (body, negative) = sensor_lines(&s, 0, 200);
    let answer = client.ingest(run.ingest, body);
    assert_eq!(
        answer["accepted"].as_u64(),
        Some(200 - negative),
        "{answer}"
    );

    let mut last = serde_json::Value::Null;
    wait_for("/health degraded", Duration::from_secs(60), || {
        let (code, health) = client.get_json(&health_url);
        assert_eq!(code, 200, "degraded still answers 200: {health}");
        last = health;
        last["status"] == "degraded"
    });
    let reasons = last["reasons"].to_string();
    assert!(reasons.contains("breaker"), "{last}");
    assert_ne!(last["breaker"]["state"], "closed", "{last}");
    assert_eq!(
        last["buffer"]["events"].as_u64(),
        Some(200 - negative),
        "{last}"
    );

    let receiver = Receiver::start(hub, &s.path("received.db"));
    wait_for("/health healthy again", Duration::from_secs(60), || {
        let (_, health) = client.get_json(&health_url);
        last = health;
        last["status"] == "healthy" && last["buffer"]["events"] == 0
    });
    assert_eq!(last["breaker"]["state"], "closed", "{last}");
    assert_eq!(last["reasons"].as_array().map(Vec::len), Some(0), "{last}");
    let log = run.host.stop();
    assert_eq!(receiver.stats().events_stored, 200 - negative, "{log}");
}
