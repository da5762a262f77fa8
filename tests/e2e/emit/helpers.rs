//! What the emit tests share: a host config whose stages give every kind
//! of result on purpose, the mixed request that shows them, and a raw
//! client for the Unix socket that can be as slow or large as an attacker.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use halyard_test_components as components;

use crate::http_support::Ended;
use crate::support::{config_with_stages, decoder_line};

/// The input's name.
pub const INPUT: &str = "apps";

/// The stages: the range validator rejects `temp < 0`; the privacy policy
/// drops every source starting with `blocked`; the sampler keeps one event
/// per source per second (so a source's second reading in a second is
/// sampled out).
pub fn stages() -> String {
    format!(
        r#"[[stages.validate]]
plugin = "{validator}"
limits = {{ deadline_ms = 5000 }}
config = {{ "min.temp" = 0 }}

[[stages.privacy]]
plugin = "{privacy}"
limits = {{ deadline_ms = 5000 }}
config = {{ block_sources = "blocked*", hash_keys = "operator", salt = "e2e" }}

[[stages.sample]]
plugin = "{sampler}"
limits = {{ deadline_ms = 5000 }}
config = {{ fraction = 1, max_per_source_per_s = 1 }}"#,
        validator = components::RANGE_VALIDATOR,
        privacy = components::REDACT_PRIVACY,
        sampler = components::FRACTION_SAMPLER,
    )
}

/// An http input `apps`: TCP on `listen` and/or a socket at `socket` with
/// `mode`; `extra` adds lines (auth, limits).
pub fn input(listen: Option<SocketAddr>, socket: Option<(&Path, &str)>, extra: &str) -> String {
    let listen = listen
        .map(|l| format!("listen = \"{l}\"\n"))
        .unwrap_or_default();
    let socket = socket
        .map(|(path, mode)| {
            format!(
                "socket = {{ path = \"{}\", mode = \"{mode}\" }}\n",
                path.display()
            )
        })
        .unwrap_or_default();
    format!(
        "[[input]]\ntype = \"http\"\nname = \"{INPUT}\"\n{listen}{socket}{extra}\n{}",
        decoder_line()
    )
}

/// A whole host config: `input`, the stages above, `tail` (the transport).
pub fn config(data: &Path, input: &str, tail: &str) -> String {
    config_with_stages(data, input, &stages(), tail)
}

/// One reading as the jsonl decoder reads it.
pub fn reading(device: &str, value: f64, ts_ms: u64) -> serde_json::Value {
    serde_json::json!({"device": device, "metric": "temp", "value": value, "ts": ts_ms})
}

/// The mixed request, for sources prefixed `tag` in the second starting at
/// `second_ms`, and each line's expected result (blank lines have none):
///
/// | line | content | result |
/// |---|---|---|
/// | 1 | a valid reading of `tag-a` | accepted |
/// | 2 | `temp = -1` | rejected |
/// | 3 | (blank) | — |
/// | 4 | a reading of `blocked-tag` | dropped (privacy) |
/// | 5 | `tag-a` again, same second | sampled_out |
/// | 6 | `not json` | decode_error |
/// | 7 | a valid reading of `tag-b` | accepted |
pub fn mixed_body(tag: &str, second_ms: u64) -> (Vec<u8>, Vec<(u64, &'static str)>) {
    let lines = [
        reading(&format!("{tag}-a"), 5.0, second_ms).to_string(),
        reading(&format!("{tag}-c"), -1.0, second_ms).to_string(),
        "   ".to_string(),
        reading(&format!("blocked-{tag}"), 3.0, second_ms).to_string(),
        reading(&format!("{tag}-a"), 6.0, second_ms + 1).to_string(),
        "not json".to_string(),
        reading(&format!("{tag}-b"), 7.0, second_ms + 2).to_string(),
    ];
    let expected = vec![
        (1, "accepted"),
        (2, "rejected"),
        (4, "dropped"),
        (5, "sampled_out"),
        (6, "decode_error"),
        (7, "accepted"),
    ];
    (lines.join("\n").into_bytes(), expected)
}

/// `(line, result)` of each entry of an answer's `lines`.
pub fn line_kinds(answer: &serde_json::Value) -> Vec<(u64, String)> {
    answer["lines"]
        .as_array()
        .unwrap_or_else(|| panic!("no lines in {answer}"))
        .iter()
        .map(|l| {
            (
                l["line"].as_u64().expect("line"),
                l["result"].as_str().expect("result").to_string(),
            )
        })
        .collect()
}

/// A hand-driven HTTP/1.1 connection on the Unix socket.
pub struct UnixRaw {
    stream: UnixStream,
    pending: Vec<u8>,
}

impl UnixRaw {
    pub fn connect(path: &Path) -> UnixRaw {
        let stream = UnixStream::connect(path).expect("connect to the socket");
        // A server that stopped reading must not block the test forever.
        stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        UnixRaw {
            stream,
            pending: Vec::new(),
        }
    }

    /// Writes `bytes`; `false` if the server already closed the connection.
    pub fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// The head of a `POST /v1/ingest?results=lines` with a `len` body.
    pub fn head(len: usize) -> String {
        format!(
            "POST /v1/ingest?results=lines HTTP/1.1\r\nhost: local\r\n\
             content-type: application/x-ndjson\r\ncontent-length: {len}\r\n\r\n"
        )
    }

    /// Reads one answer's status and JSON body within `limit`; `None` if the
    /// connection closed first or nothing whole came.
    pub fn answer(&mut self, limit: Duration) -> Option<(u16, serde_json::Value)> {
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

    /// Waits up to `limit` for the server to end the connection.
    pub fn wait_end(&mut self, limit: Duration) -> Ended {
        let deadline = Instant::now() + limit;
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Ended::Open;
            };
            if !self.fill(left.max(Duration::from_millis(1))) {
                return match self.parse() {
                    Some((status, _)) => Ended::Answered(status),
                    None => Ended::Closed,
                };
            }
        }
    }

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

    fn parse(&mut self) -> Option<(u16, serde_json::Value)> {
        let end = self.pending.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&self.pending[..end]).into_owned();
        let status = head.split(' ').nth(1)?.parse().ok()?;
        let length: usize = head
            .split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        if self.pending.len() < end + 4 + length {
            return None;
        }
        let body = self.pending[end + 4..end + 4 + length].to_vec();
        self.pending.drain(..end + 4 + length);
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        Some((status, json))
    }
}

/// The start of a second of event time (ms) for test number `test`: the
/// sampler's per-source buckets go by the events' own `ts`, so each test
/// uses seconds of its own.
pub fn second_of(test: u64) -> u64 {
    1_700_000_000_000 + test * 10_000
}
