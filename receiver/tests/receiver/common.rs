//! A real receiver on 127.0.0.1:0 with its store in a tempdir, and a small
//! HTTP client to talk to it.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::body::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use halyard_receiver::{ReceiverConfig, ReceiverError, Stats};
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::io::Write;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running receiver; `stop` shuts it down through its shutdown future.
pub struct Server {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ReceiverError>>,
}

impl Server {
    pub async fn start(config: ReceiverConfig) -> Self {
        let receiver = halyard_receiver::bind(config).await.expect("bind receiver");
        let addr = receiver.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(receiver.run(async move {
            let _ = stopped.await;
        }));
        Self { addr, stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("server task joined")
            .expect("server stopped cleanly");
    }
}

/// A fresh store in its own tempdir (kept alive by the returned guard).
pub fn temp_store() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("receiver.sqlite");
    (dir, path)
}

pub fn config(store: &std::path::Path) -> ReceiverConfig {
    ReceiverConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), store)
}

/// The id of the n-th test event, in the host's 32-hex form.
pub fn event_id(n: u64) -> String {
    format!("{n:032x}")
}

/// A batch body in the host's wire format with events for the given numbers.
pub fn batch(batch_id: &str, ids: impl IntoIterator<Item = u64>) -> Vec<u8> {
    let events: Vec<Value> = ids
        .into_iter()
        .map(|n| {
            json!({
                "id": event_id(n),
                "time_ns": 1_700_000_000_000_000_000_i64 + n as i64,
                "source": "sim",
                "kind": "temp",
                "value": 21.5,
                "attributes": {"seq": n},
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "batch_id": batch_id,
        "host": {"id": "host-1", "version": "0.1.0"},
        "events": events,
    }))
    .expect("serialize batch")
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).expect("gzip in memory");
    enc.finish().expect("finish gzip")
}

/// A plain HTTP/1 client; one per test is enough (it pools connections).
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            addr,
        }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let (status, _, value) = self.request_full(method, path, headers, body).await;
        (status, value)
    }

    /// Like `request`, also returning the answer's headers.
    pub async fn request_full(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.addr, path));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Full::new(Bytes::from(body))).expect("request");
        let resp = self.client.request(req).await.expect("send request");
        let status = resp.status();
        let answer_headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .expect("read response")
            .to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "{status}: answer is not JSON: {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        (status, answer_headers, value)
    }

    /// Posts a JSON batch body with the headers the host's transport sends.
    pub async fn post_batch(&self, body: Vec<u8>, extra: &[(&str, &str)]) -> (StatusCode, Value) {
        let mut headers = vec![("content-type", "application/json")];
        headers.extend_from_slice(extra);
        self.request(Method::POST, "/v1/batches", &headers, body)
            .await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request(Method::GET, path, &[], Vec::new()).await
    }

    pub async fn stats(&self) -> Stats {
        let (status, value) = self.get("/v1/stats").await;
        assert_eq!(status, StatusCode::OK, "{value}");
        serde_json::from_value(value).expect("stats shape")
    }
}

/// Asserts a 200 answer with exactly these counts.
pub fn assert_counts((status, value): (StatusCode, Value), accepted: u64, duplicates: u64) {
    assert_eq!(status, StatusCode::OK, "{value}");
    assert_eq!(
        value,
        json!({"accepted": accepted, "duplicates": duplicates}),
        "answer"
    );
}

/// Asserts a refusal with this status and a JSON error body.
pub fn assert_refused((status, value): (StatusCode, Value), expected: StatusCode) {
    assert_eq!(status, expected, "{value}");
    assert!(value["error"].is_string(), "error body: {value}");
}

pub fn stats(batches: u64, received: u64, stored: u64) -> Stats {
    Stats {
        batches,
        events_received: received,
        events_stored: stored,
        duplicates: received - stored,
    }
}
