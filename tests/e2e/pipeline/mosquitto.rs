//! A real Mosquitto broker for the mqtt input's tests: its own process on a
//! free 127.0.0.1 port, its config and persistence in the test's temp dir
//! (so a restarted broker keeps its sessions and queued messages), killed
//! on drop. And a publisher: a real MQTT client that publishes with QoS 1
//! and returns only once the broker acknowledged every message.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};

/// Where the Debian package installs the broker.
pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A running broker.
pub struct Mosquitto {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Config, persistence and log.
    dir: PathBuf,
}

impl Mosquitto {
    /// Starts a broker on a free port, keeping its state in `dir`.
    pub fn start(dir: &Path) -> Mosquitto {
        Self::start_with(dir, "")
    }

    /// Like [`Mosquitto::start`], with `extra` lines in its config.
    pub fn start_with(dir: &Path, extra: &str) -> Mosquitto {
        // A port found free may be taken before the broker binds it: try a
        // few.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            if let Some(broker) = Self::try_start(dir, port, extra) {
                return broker;
            }
        }
        panic!("mosquitto did not start on any of 5 free ports (see {dir:?}/mosquitto.log)");
    }

    /// Starts a broker on `port` again (after [`Mosquitto::stop`]), with
    /// the state the last one saved.
    pub fn restart(dir: &Path, port: u16) -> Mosquitto {
        // The old socket may linger a moment in TIME_WAIT; mosquitto sets
        // SO_REUSEADDR, so a refusal here is a real failure, but allow a few
        // tries for the kernel to release the port.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(broker) = Self::try_start(dir, port, "") {
                return broker;
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start again on port {port} (see {dir:?}/mosquitto.log)"
            );
            std::thread::park_timeout(Duration::from_millis(100));
        }
    }

    fn try_start(dir: &Path, port: u16, extra: &str) -> Option<Mosquitto> {
        assert!(
            Path::new(MOSQUITTO).exists(),
            "{MOSQUITTO} is missing: install the Debian package `mosquitto` \
             (apt-get install mosquitto); the mqtt input's tests need a real broker"
        );
        std::fs::create_dir_all(dir).expect("broker dir");
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\n\
                 {auth}\n\
                 persistence true\n\
                 persistence_location {dir}/\n\
                 autosave_interval 1\n\
                 user root\n\
                 max_inflight_messages 20\n\
                 max_queued_messages 100000\n\
                 log_dest file {dir}/mosquitto.log\n\
                 log_type error\nlog_type warning\nlog_type notice\nlog_type information\n\
                 {extra}\n",
                dir = dir.display(),
                auth = if extra.contains("allow_anonymous") {
                    ""
                } else {
                    "allow_anonymous true"
                },
            ),
        )
        .expect("broker config");
        let mut child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {MOSQUITTO}: {e}"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Some(Mosquitto {
                    child: Some(child),
                    port,
                    dir: dir.to_path_buf(),
                });
            }
            if child.try_wait().expect("broker status").is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }

    /// SIGTERM: the broker saves its sessions and queues, then exits.
    pub fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("kill");
            assert!(status.success());
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().expect("broker status").is_none() {
                assert!(Instant::now() < deadline, "mosquitto did not stop");
                std::thread::park_timeout(Duration::from_millis(20));
            }
        }
        assert!(
            self.dir.join("mosquitto.db").exists(),
            "the broker saved its state"
        );
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One numbered reading: on `sensors/d<i % 5>/temp`, naming neither source
/// nor kind (the decoder takes them from the topic), `seq` = `i`.
pub fn reading(i: u64) -> (String, Vec<u8>) {
    (
        format!("sensors/d{}/temp", i % 5),
        format!(
            "{{\"value\":{}.5,\"ts\":{},\"seq\":{i}}}",
            i % 100,
            1_700_000_000_000u64 + i
        )
        .into_bytes(),
    )
}

/// A password file for the broker holding `user` / `password`, written
/// by the broker's own `mosquitto_passwd`; the config line naming it.
pub fn password_file(dir: &Path, user: &str, password: &str) -> String {
    std::fs::create_dir_all(dir).expect("broker dir");
    let file = dir.join("passwd");
    let status = Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&file)
        .args([user, password])
        .status()
        .expect("mosquitto_passwd (Debian package mosquitto)");
    assert!(status.success(), "mosquitto_passwd failed");
    format!("allow_anonymous false\npassword_file {}", file.display())
}

/// Publishes `messages` with QoS 1 and returns once the broker has
/// acknowledged every one (PUBACK), within 60 s.
pub fn publish(port: u16, messages: Vec<(String, Vec<u8>)>) {
    publish_as(port, None, messages);
}

/// [`publish`] with a user name and password.
pub fn publish_as(port: u16, login: Option<(&str, &str)>, messages: Vec<(String, Vec<u8>)>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let id = format!("e2e-publisher-{}", std::process::id());
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(64 << 20, 64 << 20)
            .set_inflight(100);
        if let Some((user, password)) = login {
            options.set_credentials(user, password);
        }
        let (client, mut events) = AsyncClient::new(options, 100);
        let n = messages.len();
        let sender = tokio::spawn(async move {
            for (topic, payload) in messages {
                client
                    .publish(topic, QoS::AtLeastOnce, false, payload)
                    .await
                    .expect("queue a publish");
            }
            client
        });
        let mut acked = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while acked < n {
            let Ok(polled) = tokio::time::timeout_at(deadline, events.poll()).await else {
                panic!("only {acked} of {n} publishes acknowledged in 60 s");
            };
            let event = polled.expect("the publisher's connection");
            if let Event::Incoming(Packet::PubAck(_)) = event {
                acked += 1;
            }
        }
        let client = sender.await.expect("publisher task");
        client.disconnect().await.expect("disconnect");
        // Let the DISCONNECT go out (bounded); polling past it would
        // reconnect.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Ok(event) = events.poll().await {
                if let Event::Outgoing(Outgoing::Disconnect) = event {
                    break;
                }
            }
        })
        .await;
    });
}
