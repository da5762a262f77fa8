//! The real receiver, run in-process on 127.0.0.1 on its own runtime,
//! and waits on what it stored: shared by the pipeline and emit suites.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use halyard_receiver::{ReceiverConfig, Stats, open_stats};
use tokio::sync::oneshot;

use crate::support::{Scenario, http_transport, wait_for};

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
