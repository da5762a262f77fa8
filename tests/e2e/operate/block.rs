//! Under `when_full = "block"` a full buffer pushes back *before* the
//! stages: a refused request never reaches a plugin, so each stage sees
//! every accepted line exactly once and nothing refused is counted.

use std::time::Duration;

use crate::pipeline_support::{Scenario, http_transport, wait_for};
use crate::support::{Client, Receiver, free_ports, sensor_lines, start};

#[test]
fn a_full_buffer_pushes_back_before_any_plugin_runs() {
    let s = Scenario::new();
    // Reserved and left closed: the receiver is down until started below.
    let [receiver_addr] = free_ports();
    let tail = format!(
        "[buffer]\nmax_mb = 1\nwhen_full = \"block\"\n\n{}",
        http_transport(&format!("http://{receiver_addr}/v1/batches"), None)
    );
    let run = start(&s, &tail, &[]);
    let client = Client::new();

    let (mut lines_in, mut valid, mut refused) = (0u64, 0u64, 0u64);
    for request in 0..60u64 {
        let (body, negative) = sensor_lines(&s, request * 500, 500);
        let (status, answer) = client.try_ingest(run.ingest, body);
        if status == 503 {
            assert_eq!(answer["error"], "buffer_full", "{answer}");
            refused += 1;
            if refused == 3 {
                break;
            }
            continue;
        }
        assert_eq!(status, 200, "request {request}: {answer}");
        assert_eq!(refused, 0, "nothing fits again while the receiver is down");
        assert_eq!(answer["accepted"], 500 - negative, "{answer}");
        lines_in += 500;
        valid += 500 - negative;
    }
    assert_eq!(refused, 3, "the 1 MiB buffer filled within 60 requests");
    assert!(valid > 0);

    let m = client.metrics(run.status);
    let decode = [("stage", "decode"), ("input", "web")];
    // Refused requests were never decoded, validated or counted.
    assert_eq!(
        m.get("halyard_stage_events_in_total", &decode),
        lines_in as f64
    );
    assert_eq!(
        m.get("halyard_stage_events_in_total", &[("stage", "validate")]),
        lines_in as f64
    );
    assert_eq!(
        m.get("halyard_buffer_appended_events_total", &[]),
        valid as f64
    );
    assert_eq!(m.get("halyard_buffer_dropped_events_total", &[]), 0.0);
    // Admitted before it ran, the last request may pass max_bytes by at most
    // its own events (500 lines of well under 1 KiB each once stored).
    let bytes = m.get("halyard_buffer_size_bytes", &[]);
    assert!(bytes <= (1 << 20) as f64 + 500.0 * 1024.0, "{bytes}");

    let receiver = Receiver::start(receiver_addr, &s.path("received.db"));
    wait_for(
        "every accepted event stored",
        Duration::from_secs(60),
        || receiver.stats().events_stored >= valid,
    );
    let log = run.host.stop();
    let stats = receiver.stats();
    assert_eq!((stats.events_stored, stats.duplicates), (valid, 0), "{log}");
}
