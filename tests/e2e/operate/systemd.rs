//! systemd's notify protocol against the real binary, on a real
//! `NOTIFY_SOCKET` (a unix datagram socket this test binds, as systemd
//! does): `READY=1` once the host takes events, `WATCHDOG=1` pings at half
//! `WATCHDOG_USEC`, none while the pipeline is stuck in a blocked plugin
//! call, pings again once it moves, and `STOPPING=1` at SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use halyard_test_components as components;

use crate::pipeline_support::{Scenario, file_transport, wait_for};
use crate::support::{Client, free_ports, sensor_lines, start_with_env};

/// The systemd side of the protocol: a bound datagram socket.
struct NotifySocket {
    socket: UnixDatagram,
}

impl NotifySocket {
    fn bind(path: &std::path::Path) -> NotifySocket {
        let socket = UnixDatagram::bind(path).expect("bind the notify socket");
        NotifySocket { socket }
    }

    /// The next message, or `None` when none arrives within `limit`.
    fn next(&self, limit: Duration) -> Option<String> {
        self.socket
            .set_read_timeout(Some(limit.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = [0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("notify socket: {e}"),
        }
    }

    /// Messages until one has `line` as a line, within `limit`; returns
    /// the ones before it.
    fn until(&self, line: &str, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no `{line}` within {limit:?}: {before:?}");
            if let Some(msg) = self.next(left) {
                if msg.lines().any(|l| l == line) {
                    return before;
                }
                before.push(msg);
            }
        }
    }
}

#[test]
fn notify_socket_gets_ready_then_watchdog_pings_only_while_the_pipeline_moves() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    let socket_path = s.path("notify.sock");
    let notify = NotifySocket::bind(&socket_path);
    let [status] = free_ports();
    // WATCHDOG_USEC 400 ms: a ping every 200 ms. The validator sleeps in
    // every call until its 5 s deadline; 300 ms of work in hand is a stall.
    let run = start_with_env(
        &s,
        &file_transport(&out),
        &[
            (
                &format!("plugin = \"{}\"", components::RANGE_VALIDATOR),
                &format!(
                    "plugin = \"{}\"\nname = \"sleeper\"",
                    components::HOSTILE_VALIDATOR
                ),
            ),
            (
                r#"config = { "min.temp" = 0 }"#,
                r#"config = { mode = "sleep" }"#,
            ),
            ("[health]\n", "[health]\nstall_ms = 300\n"),
            ("timeout_ms = 2000", "timeout_ms = 1000"),
        ],
        status,
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );

    // READY=1 comes first: no ping before the host said it is up.
    let before_ready = notify.until("READY=1", Duration::from_secs(60));
    assert!(before_ready.is_empty(), "{before_ready:?}");
    // Ready means the inputs are bound: the http input answers now.
    let client = Client::new();
    let health_url = format!("http://{}/health", run.status);
    assert_eq!(client.get_json(&health_url).0, 200);
    // Three pings, each within two intervals.
    for _ in 0..3 {
        let other = notify.until("WATCHDOG=1", Duration::from_millis(2000));
        assert!(other.is_empty(), "{other:?}");
    }

    // Events reach the sleeping validator: the pipeline holds them.
    let (body, _) = sensor_lines(&s, 0, 50);
    let ingest = run.ingest;
    let request = std::thread::spawn(move || Client::new().ingest(ingest, body));
    wait_for("/health: no progress", Duration::from_secs(10), || {
        client.get_json(&health_url).1["reasons"]
            .to_string()
            .contains("no progress")
    });
    let stalled_at = Instant::now();
    // Pings already sent before the stall was seen are discarded: at most
    // one interval's worth.
    let mut late = Vec::new();
    let window = Duration::from_millis(1500);
    while let Some(msg) = notify.next(window.saturating_sub(stalled_at.elapsed())) {
        if stalled_at.elapsed() > Duration::from_millis(250) {
            late.push(msg);
        }
        if stalled_at.elapsed() >= window {
            break;
        }
    }
    // The window lay inside the stall: /health still says so after it.
    assert!(
        client.get_json(&health_url).1["reasons"]
            .to_string()
            .contains("no progress"),
        "the stall ended before the window did"
    );
    assert!(
        !late.iter().any(|m| m.lines().any(|l| l == "WATCHDOG=1")),
        "pinged while stuck: {late:?}"
    );

    // The deadline cuts the call (every event dead-lettered): progress
    // again, and the pings resume.
    let answer = request.join().expect("the request is answered");
    assert_eq!(answer["rejected"].as_u64(), Some(50), "{answer}");
    notify.until("WATCHDOG=1", Duration::from_secs(10));

    let log = run.host.stop();
    notify.until("STOPPING=1", Duration::from_secs(5));
    assert!(log.contains("systemd watchdog: withholding pings"), "{log}");
    assert!(log.contains("pings resume"), "{log}");
}
