//! Provenance end to end: signed batches verified by the receiver, every
//! event stamped (host, version, sequence surviving a restart, plugin
//! chain), dev mode visible everywhere, and a batch altered in transit
//! refused.

use std::collections::HashSet;
use std::io::Read;
use std::time::Duration;

use halyard_trust::KeyPair;

use super::pipeline_support::{Scenario, http_transport, wait_for, write_sensor_lines};
use super::support::{Receiver, free_port, get_json, spawn_host};

/// Creates the host's key before its first run so the receiver can know it.
fn host_key(s: &Scenario) -> KeyPair {
    std::fs::create_dir_all(&s.data).unwrap();
    let key = KeyPair::generate().unwrap();
    key.save(&s.data.join("host.key")).unwrap();
    key
}

fn events(receiver: &Receiver) -> Vec<serde_json::Value> {
    let page =
        get_json(&format!("http://{}/v1/events?limit=1000", receiver.addr)).unwrap_or_default();
    page["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|row| row["event"].clone())
        .collect()
}

fn stop(mut child: std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut done = false;
    wait_for("the host to stop", Duration::from_secs(30), || {
        done = child.try_wait().unwrap().is_some();
        done
    });
}

#[test]
fn dev_mode_ships_signed_stamped_batches_that_the_receiver_verifies() {
    let s = Scenario::new();
    let key = host_key(&s);
    let receiver = Receiver::start(&s.path("recv.db"), vec![key.public_key()], true);
    let status = free_port();
    let tail = format!(
        "{}\n[health]\nlisten = \"{status}\"\n",
        http_transport(&receiver.url(), None)
    );
    s.write_config(&tail);
    let negative = write_sensor_lines(&s.input, 0, 200);
    let log = s.path("host.log");
    let host = spawn_host(&s.config, true, &log);
    let expected = 200 - negative;
    wait_for(
        "every accepted event stored",
        Duration::from_secs(60),
        || receiver.stored() == expected,
    );
    let health = get_json(&format!("http://{status}/health")).unwrap();
    assert_eq!(health["licence"], "dev");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("DEV MODE"), "{text}");

    let first = events(&receiver);
    assert_eq!(first.len() as u64, expected);
    let mut seqs = HashSet::new();
    for e in &first {
        let p = &e["provenance"];
        assert_eq!(p["host_id"], "e2e");
        assert_eq!(p["host_version"], env!("CARGO_PKG_VERSION"));
        assert!(seqs.insert(p["seq"].as_u64().unwrap()), "seq repeated: {p}");
        let chain: Vec<&str> = p["chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert_eq!(
            chain.len(),
            4,
            "decoder + validator + privacy + sampler: {chain:?}"
        );
        for link in chain {
            let (_, hash) = link.rsplit_once('@').unwrap();
            assert_eq!(hash.len(), 12, "{link}");
            assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{link}");
        }
    }

    // After a restart the sequence continues above every number used.
    stop(host);
    let more_negative = write_sensor_lines(&s.input, 200, 100);
    let host = spawn_host(&s.config, true, &log);
    let total = expected + 100 - more_negative;
    wait_for(
        "the second run's events stored",
        Duration::from_secs(60),
        || receiver.stored() == total,
    );
    stop(host);
    let max_first = seqs.iter().max().copied().unwrap();
    let all = events(&receiver);
    assert_eq!(all.len() as u64, total);
    for e in &all[first.len()..] {
        let seq = e["provenance"]["seq"].as_u64().unwrap();
        assert!(seq > max_first, "seq {seq} reused after restart");
    }
}

#[test]
fn dev_mode_batches_say_so_in_their_metadata() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    s.write_config(&super::pipeline_support::file_transport(&out));
    let negative = write_sensor_lines(&s.input, 0, 20);
    let host = spawn_host(&s.config, true, &s.path("host.log"));
    wait_for("the batch written", Duration::from_secs(60), || {
        super::pipeline_support::delivered(&out).len() as u64 == 20 - negative
    });
    stop(host);
    let text = std::fs::read_to_string(&out).unwrap();
    for line in text.lines() {
        let batch: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(batch["licence"], "dev", "{line}");
    }
}

/// Forwards batches to `to`, flipping one digit of the first event's value
/// in the (decompressed) body but keeping every header: a tampering proxy.
fn tampering_proxy(to: String) -> (String, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let app = axum::Router::new().route(
        "/v1/batches",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let to = to.clone();
                async move {
                    let mut plain = Vec::new();
                    flate2::read::GzDecoder::new(&body[..])
                        .read_to_end(&mut plain)
                        .unwrap();
                    let text = String::from_utf8(plain).unwrap();
                    let altered = text.replacen("\"value\":", "\"value\":1", 1);
                    assert_ne!(altered, text);
                    let mut request = reqwest::Client::new().post(&to).body(altered);
                    for (name, value) in &headers {
                        let n = name.as_str();
                        if n != "content-encoding" && n != "content-length" && n != "host" {
                            request = request.header(n, value.to_str().unwrap());
                        }
                    }
                    let answer = request.send().await.unwrap();
                    let code = answer.status().as_u16();
                    (
                        axum::http::StatusCode::from_u16(code).unwrap(),
                        answer.text().await.unwrap_or_default(),
                    )
                }
            },
        ),
    );
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1/batches"), runtime)
}

#[test]
fn a_batch_altered_in_transit_or_unsigned_is_refused_by_the_receiver() {
    let s = Scenario::new();
    let key = host_key(&s);
    let receiver = Receiver::start(&s.path("recv.db"), vec![key.public_key()], true);
    let (proxy, _rt) = tampering_proxy(receiver.url());
    s.write_config(&http_transport(&proxy, None));
    let negative = write_sensor_lines(&s.input, 0, 10);
    let host = spawn_host(&s.config, true, &s.path("host.log"));
    // The receiver answers 403; the host holds the batch (a refusal of the
    // sender never destroys events: the next send may not be tampered
    // with) and the receiver stores nothing.
    stop_when(host, || {
        let log = std::fs::read_to_string(s.path("host.log")).unwrap_or_default();
        log.contains("receiver refused delivery") && log.contains("403 Forbidden")
    });
    let dead = super::pipeline_support::dead_letters(&s.data);
    assert_eq!(receiver.stored(), 0);
    assert!(
        !dead
            .iter()
            .any(|r| r.contains("403") || r.contains("tampered")),
        "{dead:?}"
    );
    let config = halyard_buffer::BufferConfig::new(s.data.join("buffer.db"), 1 << 30);
    let (buffer, _) = halyard_buffer::Buffer::open(config).expect("open buffer");
    assert_eq!(
        buffer.stats().records,
        10 - negative,
        "held for the next run"
    );
    assert!(10 - negative > 0);

    // An unsigned batch straight to the receiver is refused too.
    let body =
        br#"{"batch_id":"b1","events":[{"id":"0000000000000000000000000000000a","kind":"temp"}]}"#;
    let code = post(&receiver.url(), body, None);
    assert_eq!(code, 403);
    // The same body signed by the host key is stored; altered, refused.
    let header = halyard_trust::provenance::sign_batch(body, &key);
    let mut altered = body.to_vec();
    altered.extend_from_slice(b" ");
    assert_eq!(post(&receiver.url(), &altered, Some(&header)), 403);
    assert_eq!(post(&receiver.url(), body, Some(&header)), 200);
    assert_eq!(receiver.stored(), 1);
}

fn stop_when(host: std::process::Child, mut done: impl FnMut() -> bool) {
    wait_for("the condition", Duration::from_secs(60), &mut done);
    stop(host);
}

fn post(url: &str, body: &[u8], signature: Option<&str>) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut r = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(sig) = signature {
            r = r.header("x-halyard-signature", sig);
        }
        r.send().await.unwrap().status().as_u16()
    })
}
