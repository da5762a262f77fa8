//! File input → stages → buffer → HTTP → the real receiver on 127.0.0.1:
//! exact delivery when healthy, buffering while the receiver is down, and
//! no loss across kill -9. (What a refusing receiver does is in
//! `receiver_refusals.rs`.)

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use halyard_receiver::{ReceiverConfig, Stats, open_stats};
use tokio::sync::oneshot;

use crate::support::{Host, Scenario, http_transport, wait_for, write_sensor_lines};

/// A receiver running on its own runtime; stopped on drop.
pub struct Receiver {
    runtime: tokio::runtime::Runtime,
    stop: Option<oneshot::Sender<()>>,
    addr: SocketAddr,
    store: PathBuf,
}

impl Receiver {
    pub fn start(listen: SocketAddr, store: &Path, api_key: Option<&str>) -> Receiver {
        Self::start_with(listen, store, |cfg| {
            cfg.api_key = api_key.map(str::to_string)
        })
    }

    /// Like [`Receiver::start`], with the config adjusted by `configure`
    /// (an event cap, refused sources, …).
    pub fn start_with(
        listen: SocketAddr,
        store: &Path,
        configure: impl FnOnce(&mut ReceiverConfig),
    ) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut cfg = ReceiverConfig::new(listen, store.to_path_buf());
        configure(&mut cfg);
        let receiver = runtime
            .block_on(halyard_receiver::bind(cfg))
            .expect("bind receiver");
        let addr = receiver.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        runtime.spawn(receiver.run(async move {
            let _ = stopped.await;
        }));
        Receiver {
            runtime,
            stop: Some(stop),
            addr,
            store: store.to_path_buf(),
        }
    }

    pub fn stats(&self) -> Stats {
        open_stats(&self.store).expect("stats")
    }

    pub fn url(&self) -> String {
        format!("http://{}/v1/batches", self.addr)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let runtime = std::mem::replace(&mut self.runtime, tokio::runtime::Runtime::new().unwrap());
        runtime.shutdown_timeout(Duration::from_secs(5));
    }
}

pub fn loopback_any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A scenario whose host ships to a fresh receiver on 127.0.0.1.
pub fn with_receiver() -> (Scenario, Receiver) {
    let s = Scenario::new();
    let receiver = Receiver::start(loopback_any(), &s.path("received.db"), None);
    s.write_config(&http_transport(&receiver.url(), None));
    (s, receiver)
}

/// Waits (at most 90 s) until the receiver stored `n` distinct events.
pub fn wait_stored(receiver: &Receiver, n: u64) {
    wait_for(
        &format!("{n} events stored"),
        Duration::from_secs(90),
        || receiver.stats().events_stored >= n,
    );
}

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
