//! Helpers for the http input's tests: a config with an http input, free
//! ports, a reqwest client that sends the test token, and a raw TCP client
//! that can be as slow or as silent as an attacker.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::receiver::Receiver;
use crate::support::{
    Host, Scenario, config_with_input, decoder_line, file_transport, write_sensor_lines,
};

/// The input's name in every config here.
pub const INPUT: &str = "web";
/// The token the tests' input accepts (and the client sends by default).
pub const TOKEN: &str = "e2e-ingest-token-7f3a9c";
/// The `auth` line giving the input [`TOKEN`].
pub const AUTH: &str = "auth = { tokens = [\"e2e-ingest-token-7f3a9c\"] }";

/// A host config: one http input through the three example stages;
/// `input_extra` adds lines to the `[[input]]` (its `auth`, its limits).
pub fn http_config(
    data_dir: &Path,
    listen: SocketAddr,
    input_extra: &str,
    buffer: &str,
    transport: &str,
) -> String {
    let input = format!(
        "[[input]]\ntype = \"http\"\nname = \"{INPUT}\"\nlisten = \"{listen}\"\n{input_extra}\n{}",
        decoder_line()
    );
    config_with_input(data_dir, &input, &format!("{buffer}\n{transport}"))
}

pub use crate::operate_support::{free_ports, wait_listening};

/// Starts a host with an http input (with `input_extra`, e.g. [`AUTH`]) on
/// a free port and a file transport to `out`; returns once it listens.
pub fn start_http_host(s: &Scenario, out: &Path, input_extra: &str) -> (Host, SocketAddr) {
    start_http_host_with(s, out, input_extra, "")
}

/// [`start_http_host`] with `more` (whole TOML tables) appended to the config.
pub fn start_http_host_with(
    s: &Scenario,
    out: &Path,
    input_extra: &str,
    more: &str,
) -> (Host, SocketAddr) {
    let [listen] = free_ports();
    let config = http_config(&s.data, listen, input_extra, "", &file_transport(out));
    std::fs::write(&s.config, config + more).unwrap();
    let host = Host::start(&s.config);
    wait_listening(listen);
    (host, listen)
}

/// Bench-format lines `start..start + n` (as `write_sensor_lines` writes
/// them) and how many have a negative value.
pub fn sensor_lines(scratch: &Path, start: u64, n: u64) -> (Vec<u8>, u64) {
    let _ = std::fs::remove_file(scratch);
    let negative = write_sensor_lines(scratch, start, n);
    (std::fs::read(scratch).unwrap(), negative)
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// The `ts` (ms) of the bench line numbered `i`.
pub fn line_ts(i: u64) -> i64 {
    1_700_000_000_000 + i as i64
}

/// Whether bench line `i` has a value the validator keeps (`>= 0`).
pub fn line_is_valid(i: u64) -> bool {
    (i * 37) % 1000 >= 100
}

pub fn ingest_url(addr: SocketAddr) -> String {
    format!("http://{addr}/v1/ingest")
}

/// A blocking HTTP client for the tests (reqwest on its own runtime).
pub struct Client {
    pub runtime: tokio::runtime::Runtime,
    pub http: reqwest::Client,
}

/// An answer: status, `Retry-After`, `WWW-Authenticate`, JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub challenge: Option<String>,
    pub json: serde_json::Value,
}

impl Answer {
    pub fn count(&self, key: &str) -> u64 {
        self.json[key]
            .as_u64()
            .unwrap_or_else(|| panic!("no {key} in {self:?}"))
    }
}

impl Client {
    /// The operate tests' client (its runtime and reqwest client), with
    /// the ingest token added by [`Client::post`].
    pub fn new() -> Client {
        let crate::operate_support::Client { runtime, http } =
            crate::operate_support::Client::new();
        Client { runtime, http }
    }

    /// POSTs `body` with [`TOKEN`] as a bearer token and `headers`.
    pub fn post(&self, url: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Answer {
        let bearer = format!("Bearer {TOKEN}");
        let mut all = vec![("authorization", bearer.as_str())];
        all.extend_from_slice(headers);
        self.post_as(url, body, &all)
    }

    /// POSTs `body` with exactly `headers` (no token unless among them).
    pub fn post_as(&self, url: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Answer {
        self.runtime
            .block_on(send(&self.http, url.to_string(), body, headers))
    }

    pub fn get_json(&self, url: &str) -> serde_json::Value {
        self.runtime.block_on(async {
            let response = self.http.get(url).send().await.expect("send");
            assert!(response.status().is_success(), "GET {url}: {response:?}");
            serde_json::from_slice(&response.bytes().await.expect("read")).expect("JSON")
        })
    }
}

/// One POST on `http` (for running several at once).
pub async fn send(
    http: &reqwest::Client,
    url: String,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = http.post(url).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (retry_after, challenge) = (header("retry-after"), header("www-authenticate"));
    let bytes = response.bytes().await.expect("read answer");
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("answer {status} is not JSON ({e}): {bytes:?}"));
    Answer {
        status,
        retry_after,
        challenge,
        json,
    }
}

/// Every event the receiver stored, in arrival order (`GET /v1/events`).
pub fn stored_events(receiver: &Receiver, client: &Client) -> Vec<serde_json::Value> {
    let events = receiver.url().replace("/v1/batches", "/v1/events");
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = client.get_json(&format!("{events}?after={after}&limit=1000"));
        let rows = page["events"].as_array().cloned().unwrap_or_default();
        if rows.is_empty() {
            return out;
        }
        out.extend(rows.into_iter().map(|r| r["event"].clone()));
        after = page["next_after"].as_i64().expect("next_after");
    }
}

/// A hand-driven HTTP/1.1 connection: it sends exactly the bytes it is
/// given, when it is told to, so it can be slow, silent or keep-alive.
pub struct Raw {
    stream: TcpStream,
    /// Bytes read past the last answer.
    pending: Vec<u8>,
}

/// An answer read off a [`Raw`] connection.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {self:?}", self.status))
    }
}

/// How a [`Raw`] connection ended when the test waited on it.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The server closed it (EOF or reset) with nothing (more) to say.
    Closed,
    /// The server answered before closing.
    Answered(u16),
    /// Still open at the deadline.
    Open,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            pending: Vec::new(),
        }
    }

    /// Writes `bytes`; `false` if the server already closed the connection.
    pub fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// The head of a `POST /v1/ingest` with a `body_len` body and the
    /// test token.
    pub fn head(body_len: usize) -> String {
        format!(
            "POST /v1/ingest HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {TOKEN}\r\n\
             content-type: application/x-ndjson\r\ncontent-length: {body_len}\r\n\r\n"
        )
    }

    /// Sends a whole authenticated `POST /v1/ingest` and reads its answer.
    pub fn post(&mut self, body: &[u8]) -> RawAnswer {
        let mut request = Raw::head(body.len()).into_bytes();
        request.extend_from_slice(body);
        assert!(self.send(&request), "the connection was closed");
        self.answer(Duration::from_secs(60))
            .expect("an answer within 60 s")
    }

    /// Reads one answer, waiting at most `limit`; `None` if the connection
    /// closed or nothing whole came in time.
    pub fn answer(&mut self, limit: Duration) -> Option<RawAnswer> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(answer) = self.parse() {
                return Some(answer);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            if !self.fill(left.max(Duration::from_millis(1))) {
                return self.parse();
            }
        }
    }

    /// Waits up to `limit` for the server to end the connection (reading
    /// and parsing whatever it says first).
    pub fn wait_end(&mut self, limit: Duration) -> Ended {
        let deadline = Instant::now() + limit;
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Ended::Open;
            };
            if !self.fill(left.max(Duration::from_millis(1))) {
                return match self.parse() {
                    Some(answer) => Ended::Answered(answer.status),
                    None => Ended::Closed,
                };
            }
        }
    }

    /// Reads what is there within `wait`; `false` on EOF or error (closed).
    fn fill(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 8192];
        match self.stream.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                true
            }
            Err(_) => false,
        }
    }

    /// One whole answer off the front of `pending`, if there is one.
    fn parse(&mut self) -> Option<RawAnswer> {
        let end = self.pending.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&self.pending[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        if self.pending.len() < end + 4 + length {
            return None;
        }
        let body = self.pending[end + 4..end + 4 + length].to_vec();
        self.pending.drain(..end + 4 + length);
        Some(RawAnswer {
            status,
            headers,
            body,
        })
    }
}
