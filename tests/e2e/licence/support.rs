//! Helpers of the licence and provenance tests: tokens issued by a vendor
//! key the test generates, the host started with or without dev mode, a
//! receiver that knows host keys, and a licence server whose answers the
//! test switches.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use halyard_receiver::ReceiverConfig;
use halyard_trust::KeyPair;
use halyard_trust::licence::{Claims, Features, Scope, Token, issue};

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token for any host, valid from a minute ago for `valid_for` seconds.
pub fn token(vendor: &KeyPair, valid_for: u64) -> Token {
    issue(
        &Claims {
            licensee: "Acme Test".into(),
            scope: Scope::default(),
            issued_at: now() - 60,
            expires_at: now() + valid_for,
            features: Features::default(),
            grace_hours: None,
        },
        vendor,
    )
}

/// A `[licence]` section.
pub fn licence_section(token: &str, vendor: &KeyPair, extra: &str) -> String {
    format!(
        "[licence]\ntoken = \"{token}\"\npublic_keys = [\"{}\"]\n{extra}\n",
        vendor.public_key()
    )
}

/// A free port on 127.0.0.1.
pub fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Starts `halyard run`; dev mode only if `dev`. Stderr goes to `log`.
pub fn spawn_host(config: &Path, dev: bool, log: &Path) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_halyard"));
    cmd.args(["run", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "info,halyard::run::file_input=debug")
        .env("NO_COLOR", "1")
        .env_remove("HALYARD_DEV_MODE")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    if dev {
        cmd.env("HALYARD_DEV_MODE", "1");
    }
    cmd.spawn().expect("start halyard")
}

/// A receiver on its own runtime that knows `trusted` host keys.
pub struct Receiver {
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub addr: SocketAddr,
    store: std::path::PathBuf,
}

impl Receiver {
    pub fn start(store: &Path, trusted: Vec<halyard_trust::PublicKey>, require: bool) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut cfg = ReceiverConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), store);
        cfg.trusted_keys = trusted;
        cfg.require_signatures = require;
        let receiver = runtime.block_on(halyard_receiver::bind(cfg)).unwrap();
        let addr = receiver.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(receiver.run(async move {
            let _ = stopped.await;
        }));
        Receiver {
            runtime: Some(runtime),
            stop: Some(stop),
            addr,
            store: store.to_path_buf(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/v1/batches", self.addr)
    }

    pub fn stored(&self) -> u64 {
        halyard_receiver::open_stats(&self.store)
            .map(|s| s.events_stored)
            .unwrap_or(0)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        }
    }
}

/// What the licence server does, switched by the test.
#[derive(Default)]
pub struct LicenceServerState {
    /// Answer 503 while true.
    pub down: bool,
    /// Sent in the answer's `token` while up.
    pub renewed: Option<String>,
    /// Every request body.
    pub bodies: Vec<serde_json::Value>,
    /// For each body, whether it was answered 200 (and so counted).
    pub answered: Vec<bool>,
}

/// A licence server on 127.0.0.1 (its own runtime), for heartbeats.
pub struct LicenceServer {
    pub state: Arc<Mutex<LicenceServerState>>,
    pub url: String,
    _runtime: tokio::runtime::Runtime,
}

impl LicenceServer {
    pub fn start(down: bool) -> LicenceServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(Mutex::new(LicenceServerState {
            down,
            ..Default::default()
        }));
        let shared = state.clone();
        let app = axum::Router::new().route(
            "/heartbeat",
            axum::routing::post(move |body: axum::body::Bytes| {
                let shared = shared.clone();
                async move {
                    let mut s = shared.lock().unwrap();
                    s.bodies
                        .push(serde_json::from_slice(&body).unwrap_or_default());
                    let down = s.down;
                    s.answered.push(!down);
                    if down {
                        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new());
                    }
                    let answer = serde_json::json!({ "token": s.renewed });
                    (axum::http::StatusCode::OK, answer.to_string())
                }
            }),
        );
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move { axum::serve(listener, app).await });
        LicenceServer {
            state,
            url: format!("http://{addr}/heartbeat"),
            _runtime: runtime,
        }
    }
}

/// GET `url` and parse JSON; `None` if not reachable yet.
pub fn get_json(url: &str) -> Option<serde_json::Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let r = reqwest::get(url).await.ok()?;
        serde_json::from_slice(&r.bytes().await.ok()?).ok()
    })
}
