//! A rollout hub on 127.0.0.1: a manifest server (with ETags), a file
//! server, and a bare file server that can cut a download mid-body; and a
//! publisher that signs manifests with a growing serial, as an operator
//! does with `halyard plugin sign-manifest`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use halyard_trust::KeyPair;
use halyard_trust::plugin_sig::Signature;

use crate::support::sha256;

/// The manifest server's state, and what it saw.
#[derive(Default)]
pub struct Hub {
    pub manifest: Mutex<String>,
    /// Downloadable components by name (`/files/{name}`); others are 404.
    pub files: Mutex<HashMap<String, Vec<u8>>>,
    /// Names the bare file server cuts off half way: the connection drops.
    pub cut: Mutex<HashSet<String>>,
    /// Manifest requests that carried `If-None-Match`.
    pub conditional: AtomicU64,
    /// Manifest requests answered 304.
    pub not_modified: AtomicU64,
    /// Complete downloads served, by name.
    pub downloads: Mutex<HashMap<String, u64>>,
}

impl Hub {
    pub fn set_manifest(&self, body: String) {
        *self.manifest.lock().unwrap() = body;
    }

    pub fn put(&self, name: &str, bytes: &[u8]) {
        self.files
            .lock()
            .unwrap()
            .insert(name.to_string(), bytes.to_vec());
    }

    pub fn downloads(&self, name: &str) -> u64 {
        self.downloads
            .lock()
            .unwrap()
            .get(name)
            .copied()
            .unwrap_or(0)
    }
}

async fn manifest(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    let body = hub.manifest.lock().unwrap().clone();
    let etag = format!("\"{}\"", &sha256(body.as_bytes())[..16]);
    if let Some(sent) = headers.get(header::IF_NONE_MATCH) {
        hub.conditional.fetch_add(1, Ordering::Relaxed);
        if sent.to_str().ok() == Some(etag.as_str()) {
            hub.not_modified.fetch_add(1, Ordering::Relaxed);
            return StatusCode::NOT_MODIFIED.into_response();
        }
    }
    ([(header::ETAG, etag)], body).into_response()
}

async fn file(State(hub): State<Arc<Hub>>, UrlPath(name): UrlPath<String>) -> Response {
    let Some(bytes) = hub.files.lock().unwrap().get(&name).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    *hub.downloads.lock().unwrap().entry(name).or_default() += 1;
    bytes.into_response()
}

/// One connection to the bare file server: reads the request head and
/// answers `GET /files/{name}` from the hub, closing the connection after.
/// A name in `cut` gets the head with the full `Content-Length` and half
/// the body, flushed, then the connection closes: a download that drops
/// mid-body, at an exact byte.
async fn bare_file(hub: Arc<Hub>, mut conn: tokio::net::TcpStream) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let name = line
        .split_whitespace()
        .nth(1)
        .and_then(|path| path.strip_prefix("/files/"))
        .unwrap_or("")
        .to_string();
    let bytes = hub.files.lock().unwrap().get(&name).cloned();
    let cut = hub.cut.lock().unwrap().contains(&name);
    match bytes {
        None => {
            conn.write_all(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await?;
        }
        Some(bytes) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                bytes.len()
            );
            conn.write_all(head.as_bytes()).await?;
            if cut {
                conn.write_all(&bytes[..bytes.len() / 2]).await?;
            } else {
                conn.write_all(&bytes).await?;
                *hub.downloads.lock().unwrap().entry(name).or_default() += 1;
            }
        }
    }
    conn.flush().await?;
    conn.shutdown().await
}

/// The manifest server and a bare file server for `hub`, both on
/// 127.0.0.1, on a runtime of their own (kept alive by the caller);
/// returns their addresses.
pub fn serve(hub: &Arc<Hub>) -> (tokio::runtime::Runtime, SocketAddr, SocketAddr) {
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let bind = || {
        server
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap()
    };
    let (listener, bare) = (bind(), bind());
    let (addr, bare_addr) = (listener.local_addr().unwrap(), bare.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/manifest.json", axum::routing::get(manifest))
        .route("/files/{name}", axum::routing::get(file))
        .with_state(hub.clone());
    server.spawn(async move { axum::serve(listener, app).await });
    let files = hub.clone();
    server.spawn(async move {
        while let Ok((conn, _)) = bare.accept().await {
            tokio::spawn(bare_file(files.clone(), conn));
        }
    });
    (server, addr, bare_addr)
}

/// Signs manifests as an operator would: each [`Publisher::publish`] gets
/// the next serial and expires in an hour.
pub struct Publisher<'k> {
    /// The signing key (the hosts' trusted key).
    pub key: &'k KeyPair,
    /// The last serial published.
    pub serial: u64,
}

impl<'k> Publisher<'k> {
    /// A publisher signing with `key`, starting at serial 1.
    pub fn new(key: &'k KeyPair) -> Self {
        Publisher { key, serial: 0 }
    }

    /// The next manifest listing `plugins`, sealed.
    pub fn publish(&mut self, plugins: Vec<serde_json::Value>) -> String {
        self.serial += 1;
        self.seal(self.serial, now() + 3600, plugins)
    }

    /// A manifest with this exact serial and expiry, sealed.
    pub fn seal(&self, serial: u64, expires_at: u64, plugins: Vec<serde_json::Value>) -> String {
        let payload = serde_json::json!({"serial": serial, "expires_at": expires_at,
            "plugins": plugins});
        halyard_trust::manifest::seal(payload.to_string().as_bytes(), self.key)
            .unwrap()
            .to_json()
    }
}

/// One manifest entry for the validator; `signature` is embedded as given
/// (the `.sig` document as an object, or its text as a string).
pub fn validator_entry(
    url: &str,
    sha: &str,
    signature: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut plugin = serde_json::json!({"name": "validator", "kind": "validator",
        "url": url, "sha256": sha});
    if let Some(signature) = signature {
        plugin["signature"] = signature;
    }
    plugin
}

/// A signature as a manifest embeds it.
pub fn as_object(sig: &Signature) -> serde_json::Value {
    serde_json::to_value(sig).unwrap()
}

/// The wall clock in Unix seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A hub counter's value.
pub fn count(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}
