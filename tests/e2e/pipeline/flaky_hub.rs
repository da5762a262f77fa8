//! A hub that answers from a script: the first requests get the scripted
//! statuses, later ones 200. It records when each request arrived and the
//! events of every batch it accepted, so tests can check backoff gaps, the
//! breaker's silence and exact delivery from the outside. Plain std HTTP/1.1
//! on 127.0.0.1, keep-alive supported.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// Holds requests until opened, counting how many are held at once.
#[derive(Default)]
pub struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    open: bool,
    held: usize,
    most_held: usize,
}

impl Gate {
    fn pass(&self) {
        let mut st = self.state.lock().unwrap();
        st.held += 1;
        st.most_held = st.most_held.max(st.held);
        self.changed.notify_all();
        while !st.open {
            st = self.changed.wait(st).unwrap();
        }
        st.held -= 1;
    }

    /// Requests held right now.
    pub fn held(&self) -> usize {
        self.state.lock().unwrap().held
    }

    /// The most requests ever held at once.
    pub fn most_held(&self) -> usize {
        self.state.lock().unwrap().most_held
    }

    /// Lets every request through, now and later.
    pub fn open(&self) {
        self.state.lock().unwrap().open = true;
        self.changed.notify_all();
    }
}

/// What the hub saw.
#[derive(Default)]
pub struct Seen {
    /// Arrival time and the status answered, per request.
    pub requests: Vec<(Instant, u16)>,
    /// Event ids of every batch answered 200.
    pub event_ids: Vec<String>,
}

/// The running hub.
pub struct FlakyHub {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Seen>>,
    /// Holds every request until opened (a hub slow to commit).
    pub gate: Arc<Gate>,
}

impl FlakyHub {
    /// Starts a hub answering `script` in order, then 200 for ever.
    pub fn start(script: Vec<u16>) -> FlakyHub {
        let hub = Self::gated(script);
        hub.gate.open();
        hub
    }

    /// Like [`FlakyHub::start`], but every request waits at [`FlakyHub::gate`]
    /// until it is opened.
    pub fn gated(script: Vec<u16>) -> FlakyHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let shared = seen.clone();
        let gate = Arc::new(Gate::default());
        let held = gate.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (seen, script, gate) = (shared.clone(), script.clone(), held.clone());
                std::thread::spawn(move || serve(stream, &seen, &script, &gate));
            }
        });
        FlakyHub { addr, seen, gate }
    }

    pub fn url(&self) -> String {
        format!("http://{}/v1/batches", self.addr)
    }
}

fn serve(
    stream: TcpStream,
    seen: &Mutex<Seen>,
    script: &Mutex<std::vec::IntoIter<u16>>,
    gate: &Gate,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut length = 0usize;
        let mut gzip = false;
        let mut line = String::new();
        // Request line, then headers up to the blank line.
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("content-encoding:") && lower.contains("gzip") {
                gzip = true;
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        gate.pass();
        let status = script.lock().unwrap().next().unwrap_or(200);
        {
            let mut seen = seen.lock().unwrap();
            seen.requests.push((Instant::now(), status));
            if status == 200 {
                let json = if gzip {
                    let mut out = Vec::new();
                    flate2::read::GzDecoder::new(&body[..])
                        .read_to_end(&mut out)
                        .unwrap();
                    out
                } else {
                    body
                };
                let batch: serde_json::Value = serde_json::from_slice(&json).unwrap();
                for e in batch["events"].as_array().unwrap() {
                    seen.event_ids.push(e["id"].as_str().unwrap().to_string());
                }
            }
        }
        let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
