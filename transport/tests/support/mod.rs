//! Real broker processes for the sink tests: each on a free 127.0.0.1 port
//! in its own temporary directory, killed on drop; never the shared
//! services on 1883/4222/6379.

#![allow(dead_code)] // each test binary uses its own part

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use halyard_transport::{Backoff, Breaker, BreakerConfig, Delivery, RetryConfig, Sink};

/// How long a broker gets to accept connections.
const READY: Duration = Duration::from_secs(15);

/// Which broker to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/usr/sbin/mosquitto` with persistence in the temp dir.
    Mosquitto,
    /// `/usr/sbin/nats-server -js` storing in the temp dir.
    Nats,
    /// `/usr/bin/redis-server`, in memory only.
    Redis,
    /// `/usr/bin/redis-server` with an fsync-always append-only file, so
    /// a restart keeps the streams.
    RedisDurable,
}

impl Kind {
    fn binary(self) -> (&'static str, &'static str) {
        match self {
            Kind::Mosquitto => ("/usr/sbin/mosquitto", "mosquitto"),
            Kind::Nats => ("/usr/sbin/nats-server", "nats-server"),
            Kind::Redis | Kind::RedisDurable => ("/usr/bin/redis-server", "redis-server"),
        }
    }
}

/// A running broker; killed (SIGKILL) on drop.
pub struct Broker {
    kind: Kind,
    /// The port it listens on, fixed for restarts.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Mosquitto only: refuse anonymous clients, accept this user.
    credentials: Option<(String, String)>,
    /// Mosquitto only: TLS with a certificate from a CA made for the test
    /// (`ca.pem` in `dir`).
    tls: bool,
}

/// A port nothing listens on right now (the OS picks it).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

impl Broker {
    /// Starts `kind` on a free port, retrying with another port if the
    /// chosen one was taken between probing and binding.
    pub fn start(kind: Kind) -> Self {
        Self::start_with(kind, None, false)
    }

    /// Mosquitto speaking only TLS, its certificate (for IP 127.0.0.1)
    /// signed by a fresh CA whose PEM is at [`Broker::ca_file`].
    pub fn mosquitto_tls() -> Self {
        Self::start_with(Kind::Mosquitto, None, true)
    }

    /// The test CA of [`Broker::mosquitto_tls`].
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Mosquitto that accepts only `user` with `password` (made with
    /// `mosquitto_passwd`).
    pub fn mosquitto_with_user(user: &str, password: &str) -> Self {
        Self::start_with(
            Kind::Mosquitto,
            Some((user.to_owned(), password.to_owned())),
            false,
        )
    }

    fn start_with(kind: Kind, credentials: Option<(String, String)>, tls: bool) -> Self {
        let (path, package) = kind.binary();
        assert!(
            Path::new(path).exists(),
            "{path} is missing: install the Debian package `{package}` \
             (`.ci/run` installs it on CI); these tests need a real broker"
        );
        let mut last = String::new();
        for _ in 0..5 {
            let mut broker = Self {
                kind,
                port: free_port(),
                dir: tempfile::tempdir().expect("temp dir"),
                child: None,
                credentials: credentials.clone(),
                tls,
            };
            match broker.spawn() {
                Ok(()) => return broker,
                Err(log) => last = log,
            }
        }
        panic!("{package} did not start on any of 5 ports; last log:\n{last}");
    }

    /// The broker's data and config directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    fn command(&self) -> Command {
        let (path, _) = self.kind.binary();
        let dir = self.dir.path();
        let port = self.port.to_string();
        let mut command = Command::new(path);
        match self.kind {
            Kind::Mosquitto => {
                let config = dir.join("mosquitto.conf");
                let auth = match &self.credentials {
                    None => "allow_anonymous true\n".to_owned(),
                    Some((user, password)) => {
                        let file = dir.join("passwd");
                        let made = Command::new("/usr/bin/mosquitto_passwd")
                            .arg("-b")
                            .arg("-c")
                            .arg(&file)
                            .args([user, password])
                            .status()
                            .expect("mosquitto_passwd (Debian package mosquitto) runs");
                        assert!(made.success(), "mosquitto_passwd failed");
                        format!("allow_anonymous false\npassword_file {}\n", file.display())
                    }
                };
                let tls = if self.tls {
                    make_certificates(dir);
                    format!(
                        "cafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\n",
                        dir.display()
                    )
                } else {
                    String::new()
                };
                std::fs::write(
                    &config,
                    format!(
                        "listener {port} 127.0.0.1\n{tls}{auth}user root\npersistence true\n\
                         persistence_location {}/\nmax_queued_messages 0\nmax_inflight_messages 20\nset_tcp_nodelay true\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n",
                        dir.display()
                    ),
                )
                .expect("write mosquitto.conf");
                command.arg("-c").arg(config);
            }
            Kind::Nats => {
                command
                    .args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
                    .arg(dir);
            }
            Kind::Redis | Kind::RedisDurable => {
                command
                    .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
                    .arg("--dir")
                    .arg(dir);
                if self.kind == Kind::RedisDurable {
                    command.args(["--appendonly", "yes", "--appendfsync", "always"]);
                } else {
                    command.args(["--appendonly", "no"]);
                }
            }
        }
        command
    }

    /// Spawns the process and waits until the port accepts; on failure
    /// returns the broker's log.
    fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("broker log");
        let err = log.try_clone().expect("log handle");
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("spawn failed: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY;
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some();
            if exited || Instant::now() > deadline {
                self.kill();
                return Err(self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The broker's output so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Ends the process at once (SIGKILL), as a crash or power loss would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process cleanly (SIGTERM), letting it save its state.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + READY;
            while child.try_wait().ok().flatten().is_none() {
                assert!(Instant::now() < deadline, "broker ignored SIGTERM");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts the broker again on the same port with the same directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the broker first");
        let deadline = Instant::now() + READY;
        // The old socket may linger briefly; retry until the port is ours.
        while let Err(log) = self.spawn() {
            assert!(
                Instant::now() < deadline,
                "broker did not restart on {}:\n{log}",
                self.port
            );
        }
    }

    /// Whether the process is up.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }
}

/// A CA and a server certificate for IP 127.0.0.1 in `dir`, made with the
/// `openssl` command (once; restarts reuse them).
fn make_certificates(dir: &Path) {
    if dir.join("server.pem").exists() {
        return;
    }
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl command runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=halyard test CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    run(&ca);
    let mut csr = vec!["req", "-new", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    run(&csr);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("san.ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `n` numbered events (`seq` from `first`) in the host's stored shape:
/// readings when `value` is set, otherwise plain events with a body.
pub fn events(first: usize, n: usize) -> Vec<serde_json::Value> {
    (first..first + n)
        .map(|seq| {
            serde_json::json!({
                "id": format!("{:032x}", seq + 1),
                "time_ns": 1_795_428_000_000_000_000i64 + seq as i64,
                "source": format!("dev-{}", seq % 3),
                "kind": if seq % 2 == 0 { "temp" } else { "door.open" },
                "value": if seq % 2 == 0 { Some(seq as f64) } else { None },
                "attributes": {"seq": seq},
                "body": {"seq": seq},
            })
        })
        .collect()
}

/// The batch envelope the host would send for `events`.
pub fn batch(key: &str, events: &[serde_json::Value]) -> Vec<u8> {
    halyard_transport::encode_batch(key, "edge-1", "0.1.0", events)
}

/// A Delivery with short backoff and probes, so outages resolve within a
/// test's time.
pub fn delivery<S: Sink>(sink: S) -> Delivery<S> {
    Delivery::new(
        sink,
        Backoff::new(RetryConfig {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
            multiplier: 2.0,
        }),
        Breaker::new(BreakerConfig {
            failure_threshold: 5,
            recovery_timeout: Duration::from_millis(500),
            first_probe: Duration::from_millis(100),
        }),
    )
}

/// Waits until `check` is true, polling every 20 ms, failing after
/// `within` with `what`.
pub async fn wait_until<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
