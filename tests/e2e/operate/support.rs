//! Helpers for the operator-facing tests: a host with an http input and a
//! status server on free loopback ports, a blocking HTTP client, a
//! receiver that can be stopped and started again on the same port, and
//! `/metrics` parsed by a real Prometheus text parser.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use halyard_receiver::{ReceiverConfig, Stats, open_stats};
use tokio::sync::oneshot;

use crate::pipeline_support::{Host, Scenario, config_with_input, decoder_line, wait_for};

/// Free loopback ports for a config to name, all different.
///
/// They are taken below the kernel's ephemeral range
/// (`ip_local_port_range`): a receiver or broker another test binds on
/// port 0 gets an ephemeral port, so it can never take one of these
/// between this check and the host binding it (a port released here used
/// to be handed to the next port-0 listener, and a test then talked to
/// another test's server). Within one test process a counter walks the
/// range from a random start, so parallel tests pick different ports.
pub fn free_ports<const N: usize>() -> [SocketAddr; N] {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let high = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768)
        .clamp(12_000, 65_535);
    let low = 10_000;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id();
    let _ = NEXT.compare_exchange(0, seed % (high - low), Ordering::SeqCst, Ordering::SeqCst);
    let mut held: Vec<TcpListener> = Vec::with_capacity(N);
    for _ in 0..(high - low) {
        if held.len() == N {
            break;
        }
        let port = low + NEXT.fetch_add(1, Ordering::SeqCst) % (high - low);
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port as u16)) {
            held.push(l);
        }
    }
    assert_eq!(held.len(), N, "no free ports below the ephemeral range");
    std::array::from_fn(|i| held[i].local_addr().unwrap())
}

/// Waits until something accepts connections on `addr`.
pub fn wait_listening(addr: SocketAddr) {
    wait_for(
        &format!("a listener on {addr}"),
        Duration::from_secs(60),
        || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok(),
    );
}

/// A running host with an http input and a status server.
pub struct Running {
    pub host: Host,
    /// The http input.
    pub ingest: SocketAddr,
    /// The status server.
    pub status: SocketAddr,
}

/// Writes a config with an http input `web`, the three example stages,
/// a status server, and `tail` (the `[transport]` and any other tables),
/// applying `replace` to the base config; starts the host and waits for
/// both listeners.
pub fn start(s: &Scenario, tail: &str, replace: &[(&str, &str)]) -> Running {
    let [status] = free_ports();
    start_with_status(s, tail, replace, status)
}

/// Like [`start`], with the status server on `status`.
pub fn start_with_status(
    s: &Scenario,
    tail: &str,
    replace: &[(&str, &str)],
    status: SocketAddr,
) -> Running {
    start_with_env(s, tail, replace, status, &[])
}

/// Like [`start_with_status`], with extra environment variables for the
/// host.
pub fn start_with_env(
    s: &Scenario,
    tail: &str,
    replace: &[(&str, &str)],
    status: SocketAddr,
    env: &[(&str, &str)],
) -> Running {
    let [ingest] = free_ports();
    let input = format!(
        "[[input]]\ntype = \"http\"\nname = \"web\"\nlisten = \"{ingest}\"\nauth = \"none\"\n{}",
        decoder_line()
    );
    let mut text = config_with_input(
        &s.data,
        &input,
        &format!("[health]\nlisten = \"{status}\"\n\n{tail}"),
    );
    for (from, to) in replace {
        assert!(text.contains(from), "base config has no `{from}`");
        text = text.replace(from, to);
    }
    std::fs::write(&s.config, text).unwrap();
    let host = Host::start_with_env(&s.config, env);
    wait_listening(ingest);
    wait_listening(status);
    Running {
        host,
        ingest,
        status,
    }
}

/// A blocking HTTP client (reqwest on its own runtime).
pub struct Client {
    pub runtime: tokio::runtime::Runtime,
    pub http: reqwest::Client,
}

impl Client {
    pub fn new() -> Client {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let http = runtime.block_on(async {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap()
        });
        Client { runtime, http }
    }

    /// POSTs lines to the http input; returns the JSON answer (asserting 200).
    pub fn ingest(&self, addr: SocketAddr, body: Vec<u8>) -> serde_json::Value {
        let (status, answer) = self.try_ingest(addr, body);
        assert!(
            (200..300).contains(&status),
            "ingest answered {status}: {answer}"
        );
        answer
    }

    /// POSTs lines to the http input; returns the status and JSON answer.
    pub fn try_ingest(&self, addr: SocketAddr, body: Vec<u8>) -> (u16, serde_json::Value) {
        self.runtime.block_on(async {
            let response = self
                .http
                .post(format!("http://{addr}/v1/ingest"))
                .body(body)
                .send()
                .await
                .expect("send");
            let status = response.status().as_u16();
            let bytes = response.bytes().await.expect("read");
            let answer = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("ingest answered {status}, not JSON ({e}): {bytes:?}"));
            (status, answer)
        })
    }

    /// GET: status code and body.
    pub fn get(&self, url: &str) -> (u16, String) {
        self.runtime.block_on(async {
            let response = self.http.get(url).send().await.expect("send");
            let status = response.status().as_u16();
            (status, response.text().await.expect("read"))
        })
    }

    /// GET a JSON document: status code and value.
    pub fn get_json(&self, url: &str) -> (u16, serde_json::Value) {
        let (status, text) = self.get(url);
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("GET {url} is not JSON ({e}): {text}"));
        (status, value)
    }

    /// `/metrics`, parsed by `prometheus-parse`: `name{k="v",…}` → value.
    pub fn metrics(&self, status: SocketAddr) -> Metrics {
        let (code, text) = self.get(&format!("http://{status}/metrics"));
        assert_eq!(code, 200, "{text}");
        Metrics::parse(&text)
    }
}

/// A parsed scrape.
pub struct Metrics {
    pub scrape: prometheus_parse::Scrape,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let lines = text.lines().map(|l| Ok(l.to_string()));
        Metrics {
            scrape: prometheus_parse::Scrape::parse(lines).expect("a valid Prometheus text"),
        }
    }

    /// The value of counter or gauge `name` whose labels include `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .and_then(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => Some(v),
                _ => None,
            })
    }

    /// Like [`Metrics::value`] but 0 when absent.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }

    /// Every metric name in the scrape.
    pub fn names(&self) -> HashMap<String, usize> {
        let mut names = HashMap::new();
        for s in &self.scrape.samples {
            *names.entry(s.metric.clone()).or_default() += 1;
        }
        names
    }
}

/// A receiver on its own runtime; stopped on drop.
pub struct Receiver {
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<oneshot::Sender<()>>,
    store: std::path::PathBuf,
}

impl Receiver {
    pub fn start(listen: SocketAddr, store: &Path) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let cfg = ReceiverConfig::new(listen, store.to_path_buf());
        let receiver = runtime
            .block_on(halyard_receiver::bind(cfg))
            .expect("bind receiver");
        let (stop, stopped) = oneshot::channel::<()>();
        runtime.spawn(receiver.run(async move {
            let _ = stopped.await;
        }));
        Receiver {
            runtime: Some(runtime),
            stop: Some(stop),
            store: store.to_path_buf(),
        }
    }

    pub fn stats(&self) -> Stats {
        open_stats(&self.store).expect("stats")
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// Bench-format lines `start..start + n` and how many have a negative value
/// (which the range validator rejects).
pub fn sensor_lines(s: &Scenario, start: u64, n: u64) -> (Vec<u8>, u64) {
    let scratch = s.path("lines.jsonl");
    let _ = std::fs::remove_file(&scratch);
    let negative = crate::pipeline_support::write_sensor_lines(&scratch, start, n);
    (std::fs::read(&scratch).unwrap(), negative)
}
