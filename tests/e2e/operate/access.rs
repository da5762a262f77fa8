//! Status server access: a token guards every route (`Authorization:
//! Bearer`, or Basic with the token as password for browsers), `halyard
//! tail` sends it, and a client reconnecting with `Last-Event-ID` gets what
//! it missed from the resume window, or a `dropped` marker saying exactly
//! how many items are gone.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::pipeline_support::{Scenario, file_transport, wait_exit_or_kill};
use crate::support::{Client, free_ports, sensor_lines, start_with_env};

/// One Server-Sent Event: its `id:`, `event:` type and parsed `data:`.
#[derive(Debug, Clone)]
struct Item {
    id: Option<String>,
    kind: String,
    data: serde_json::Value,
}

/// An open `/events/stream` connection; closed when dropped.
struct Stream {
    items: mpsc::Receiver<Item>,
    _close: tokio::sync::oneshot::Sender<()>,
}

impl Stream {
    /// Connects with `headers`; returns once the server answered 200.
    fn open(status: SocketAddr, query: &str, headers: Vec<(&'static str, String)>) -> Stream {
        let (tx, items) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        let (close, closed) = tokio::sync::oneshot::channel::<()>();
        let url = format!("http://{status}/events/stream?{query}");
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let mut request = reqwest::Client::new().get(&url);
                for (k, v) in headers {
                    request = request.header(k, v);
                }
                let mut response = request.send().await.expect("connect");
                let _ = ready_tx.send(response.status().as_u16());
                let read = async {
                    let mut pending = String::new();
                    while let Ok(Some(chunk)) = response.chunk().await {
                        pending.push_str(&String::from_utf8_lossy(&chunk));
                        while let Some(end) = pending.find("\n\n") {
                            let frame: String = pending.drain(..end + 2).collect();
                            let mut item = Item {
                                id: None,
                                kind: String::new(),
                                data: serde_json::Value::Null,
                            };
                            let mut data = String::new();
                            for line in frame.lines() {
                                if let Some(v) = line.strip_prefix("event: ") {
                                    item.kind = v.to_string();
                                } else if let Some(v) = line.strip_prefix("data: ") {
                                    data.push_str(v);
                                } else if let Some(v) = line.strip_prefix("id: ") {
                                    item.id = Some(v.to_string());
                                }
                            }
                            if data.is_empty() {
                                continue;
                            }
                            item.data = serde_json::from_str(&data).expect("JSON data");
                            if tx.send(item).is_err() {
                                return;
                            }
                        }
                    }
                };
                tokio::select! {
                    _ = read => {}
                    _ = closed => {}
                }
            });
        });
        let code = ready
            .recv_timeout(Duration::from_secs(60))
            .expect("stream answered");
        assert_eq!(code, 200);
        Stream {
            items,
            _close: close,
        }
    }

    /// The next `n` items, within 60 s.
    fn take(&self, n: usize) -> Vec<Item> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.items.recv_timeout(left) {
                Ok(item) => got.push(item),
                Err(_) => panic!("{} of {n} items within 60 s: {got:?}", got.len()),
            }
        }
        got
    }
}

/// The sequence number in an id `<epoch>-<seq>`.
fn seq(item: &Item) -> u64 {
    let id = item.id.as_deref().expect("an id");
    id.rsplit_once('-').unwrap().1.parse().unwrap()
}

/// Waits up to `limit` for `child` to exit (no panic, no kill).
fn wait_exit_within(child: &mut std::process::Child, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

fn token() -> String {
    format!(
        "st-{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

#[test]
fn a_token_guards_every_route_and_tail_sends_it() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    let token = token();
    let [status] = free_ports();
    let run = start_with_env(
        &s,
        &file_transport(&out),
        &[],
        status,
        &[("HALYARD_STATUS_TOKEN", &token)],
    );
    let client = Client::new();
    let base = format!("http://{}", run.status);
    let basic = |cred: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(cred)
        )
    };
    let routes = [
        ("GET", "/"),
        ("GET", "/health"),
        ("GET", "/metrics"),
        ("GET", "/plugins"),
        ("GET", "/events/stream"),
        ("POST", "/health/ack"),
    ];
    let status_of = |method: &str, path: &str, auth: Option<String>| -> (u16, Vec<String>) {
        client.runtime.block_on(async {
            let url = format!("{base}{path}");
            let mut request = match method {
                "POST" => client.http.post(&url),
                _ => client.http.get(&url),
            };
            if let Some(auth) = auth {
                request = request.header("Authorization", auth);
            }
            let response = request.send().await.expect("send");
            let challenges = response
                .headers()
                .get_all("www-authenticate")
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect();
            (response.status().as_u16(), challenges)
        })
    };
    for (method, path) in routes {
        let (code, challenges) = status_of(method, path, None);
        assert_eq!(code, 401, "{method} {path} with no token");
        assert_eq!(
            challenges,
            [
                "Bearer realm=\"halyard\"",
                "Basic realm=\"halyard\", charset=\"UTF-8\""
            ]
        );
        for wrong in [
            format!("Bearer {token}x"),
            "Bearer ".to_string(),
            basic(&format!("{token}:")),
            token.clone(),
        ] {
            assert_eq!(
                status_of(method, path, Some(wrong)).0,
                401,
                "{method} {path}"
            );
        }
        assert_eq!(
            status_of(method, path, Some(format!("Bearer {token}"))).0,
            200,
            "{method} {path} with the token"
        );
        assert_eq!(
            status_of(method, path, Some(basic(&format!("operator:{token}")))).0,
            200,
            "{method} {path} with Basic"
        );
    }

    // `halyard tail` without the token stops at once and says why.
    let tail = |token: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_halyard"));
        cmd.args(["tail", "--url", &base, "--json", "--count", "3"])
            .env_remove("HALYARD_STATUS_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(t) = token {
            cmd.env("HALYARD_STATUS_TOKEN", t);
        }
        cmd.spawn().expect("start halyard tail")
    };
    let mut refused = tail(None);
    let code = wait_exit_or_kill(&mut refused, Duration::from_secs(30), || {
        "tail with no token kept going".into()
    });
    let mut err = String::new();
    std::io::Read::read_to_string(refused.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(code.code(), Some(1), "{err}");
    assert!(
        err.contains("answered 401") && err.contains("--token"),
        "{err}"
    );

    // With it (from the environment), it follows the stream: requests go
    // in until it has printed three items and exited (it may connect after
    // the first ones).
    let mut follower = tail(Some(&token));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut from = 0;
    let code = loop {
        if let Some(code) = follower.try_wait().unwrap() {
            break code;
        }
        assert!(Instant::now() < deadline, "tail did not get 3 items");
        let (body, _) = sensor_lines(&s, from, 10);
        from += 10;
        let answer = client.ingest(run.ingest, body);
        assert!(answer["accepted"].as_u64().unwrap() >= 3, "{answer}");
        wait_exit_within(&mut follower, Duration::from_millis(500));
    };
    assert!(code.success());
    let mut printed = String::new();
    std::io::Read::read_to_string(follower.stdout.as_mut().unwrap(), &mut printed).unwrap();
    let lines: Vec<serde_json::Value> = printed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{printed}");
    assert!(lines.iter().all(|l| l["type"] == "event"), "{printed}");

    let log = run.host.stop();
    assert!(!log.contains(&token), "the token is in the log");
}

#[test]
fn a_client_resumes_with_last_event_id_or_learns_how_many_are_gone() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    let [status] = free_ports();
    // A resume window of 16 items.
    let run = start_with_env(
        &s,
        &file_transport(&out),
        &[("[health]\n", "[health]\nstream_buffer = 16\n")],
        status,
        &[],
    );
    let client = Client::new();
    let ingest = |from: u64, n: u64| {
        let (body, _) = sensor_lines(&s, from, n);
        client.ingest(run.ingest, body)["accepted"]
            .as_u64()
            .unwrap() as usize
    };

    // Connected: every item, numbered one after the other.
    let first = Stream::open(run.status, "", vec![]);
    let a1 = ingest(0, 10);
    let seen = first.take(a1);
    assert!(seen.iter().all(|i| i.kind == "event"), "{seen:?}");
    for pair in seen.windows(2) {
        assert_eq!(seq(&pair[1]), seq(&pair[0]) + 1, "{seen:?}");
    }
    let last = seen.last().unwrap().clone();
    drop(first);

    // Away for a while: back with Last-Event-ID, it gets exactly what it
    // missed, in order, and nothing it had.
    let a2 = ingest(10, 10);
    let back = Stream::open(
        run.status,
        "",
        vec![("Last-Event-ID", last.id.clone().unwrap())],
    );
    let missed = back.take(a2);
    assert!(missed.iter().all(|i| i.kind == "event"), "{missed:?}");
    assert_eq!(seq(&missed[0]), seq(&last) + 1);
    for pair in missed.windows(2) {
        assert_eq!(seq(&pair[1]), seq(&pair[0]) + 1);
    }
    // All from the second request (later timestamps), none it had seen.
    let before = last.data["time_ns"].as_i64().expect("time_ns");
    assert!(
        missed
            .iter()
            .all(|i| i.data["time_ns"].as_i64() > Some(before)),
        "{missed:?}"
    );
    let last = missed.last().unwrap().clone();
    drop(back);

    // Away for longer than the window holds: a `dropped` marker with the
    // exact count first, then the 16 items the window still has.
    let a3 = ingest(20, 40);
    assert!(a3 > 16, "{a3}");
    let late = Stream::open(
        run.status,
        "",
        vec![("Last-Event-ID", last.id.clone().unwrap())],
    );
    let got = late.take(17);
    assert_eq!(got[0].kind, "dropped", "{got:?}");
    assert_eq!(got[0].data["missed"].as_u64(), Some(a3 as u64 - 16));
    assert_eq!(got[0].data["resumed"], true);
    assert_eq!(seq(&got[1]), seq(&last) + 1 + (a3 as u64 - 16));
    for pair in got[1..].windows(2) {
        assert_eq!(seq(&pair[1]), seq(&pair[0]) + 1);
    }
    drop(late);

    // An id from another run: a `dropped` marker with no count.
    let other = Stream::open(
        run.status,
        "",
        vec![("Last-Event-ID", "00000000-5".to_string())],
    );
    let got = other.take(1);
    assert_eq!(got[0].kind, "dropped");
    assert_eq!(got[0].data["missed"], serde_json::Value::Null);
    drop(other);
    run.host.stop();
}
