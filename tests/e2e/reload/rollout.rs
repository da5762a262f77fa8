//! Remote rollout against a manifest server on 127.0.0.1: ETag polling, a
//! tampered download that changes nothing, then a good one that hot reload
//! swaps in; signed manifests against `[plugins] trusted_keys`; failed
//! downloads that are retried at the next poll.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use halyard_test_components as components;
use halyard_trust::KeyPair;
use halyard_trust::plugin_sig::{Signature, sign};

use crate::pipeline_support::wait_for;
use crate::support::{Served, Setup, sha256, signed_plugins, start};

/// Bound on each wait for a poll's outcome: polls are 1 s apart, and a
/// debug host on a busy 2-core machine may need a few to compile v2.
const POLL_BOUND: Duration = Duration::from_secs(20);

/// The manifest server's state, and what it saw.
#[derive(Default)]
struct Hub {
    manifest: Mutex<String>,
    /// Downloadable components by name (`/files/{name}`); others are 404.
    files: Mutex<HashMap<String, Vec<u8>>>,
    /// Names the bare file server cuts off half way: the connection drops.
    cut: Mutex<HashSet<String>>,
    /// Manifest requests that carried `If-None-Match`.
    conditional: AtomicU64,
    /// Manifest requests answered 304.
    not_modified: AtomicU64,
    /// Complete downloads served, by name.
    downloads: Mutex<HashMap<String, u64>>,
}

impl Hub {
    fn set_manifest(&self, body: String) {
        *self.manifest.lock().unwrap() = body;
    }

    fn put(&self, name: &str, bytes: &[u8]) {
        self.files
            .lock()
            .unwrap()
            .insert(name.to_string(), bytes.to_vec());
    }

    fn downloads(&self, name: &str) -> u64 {
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
fn serve(hub: &Arc<Hub>) -> (tokio::runtime::Runtime, SocketAddr, SocketAddr) {
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

/// A host whose plugins are all signed by `key`, the only trusted key,
/// polling the manifest at `addr`.
fn start_signed(key: &KeyPair, addr: SocketAddr) -> Setup {
    start(
        "",
        &format!(
            "[plugins]\ntrusted_keys = [\"{}\"]\n\n{}",
            key.public_key(),
            rollout_table(addr)
        ),
        |dir| signed_plugins(dir, key),
    )
}

/// The `[rollout]` table polling `addr` every second into the plugin dir.
fn rollout_table(addr: SocketAddr) -> String {
    format!(
        "[rollout]\nmanifest_url = \"http://{addr}/manifest.json\"\ninterval_s = 1\ndir = \"{{PLUGINS}}\"\n"
    )
}

/// A manifest with one validator entry; `signature` is embedded as given
/// (the `.sig` document as an object, or its text as a string).
fn entry_signed(url: &str, sha: &str, signature: Option<serde_json::Value>) -> String {
    let mut plugin = serde_json::json!({"name": "validator", "kind": "validator",
        "url": url, "sha256": sha});
    if let Some(signature) = signature {
        plugin["signature"] = signature;
    }
    serde_json::json!({ "plugins": [plugin] }).to_string()
}

fn entry(url: &str, sha: &str) -> String {
    entry_signed(url, sha, None)
}

/// Sends requests (each must be served by v1) until a `rollout.failed`
/// event whose reason passes `wanted` has been logged, with the deadline
/// [`POLL_BOUND`]; checks the event names the validator.
fn wait_for_failure(h: &mut Setup, what: &str, wanted: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + POLL_BOUND;
    loop {
        assert_eq!(
            h.send(),
            Served::V1,
            "{what}: the old version keeps serving"
        );
        let failures = h.lifecycle("rollout.failed");
        if let Some(found) = failures
            .iter()
            .find(|p| p["reason"].as_str().is_some_and(&wanted))
        {
            assert_eq!(found["name"], "validator", "{what}: {found}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no such rollout.failed within {POLL_BOUND:?}; failures: {failures:#?}\n{}",
            h.log()
        );
        std::thread::park_timeout(Duration::from_millis(25));
    }
}

/// An unsigned manifest whose download does not hash to the manifest's
/// sha256 is refused while v1 serves and the installed file is unchanged;
/// the right file is then installed and swapped in, and the unchanged
/// manifest is answered 304.
#[test]
fn manifest_rollout_refuses_a_tampered_download_then_installs_the_good_one() {
    let v2 = std::fs::read(components::HOSTILE_VALIDATOR).unwrap();
    let mut tampered = v2.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0xff;
    let hub = Arc::new(Hub::default());
    hub.put("tampered.wasm", &tampered);
    hub.put("v2.wasm", &v2);
    hub.set_manifest(entry("files/tampered.wasm", &sha256(&v2)));
    let (_server, addr, _) = serve(&hub);

    let mut h = start("", &rollout_table(addr), |_| Vec::new());
    wait_for("tampered download refused", Duration::from_secs(30), || {
        assert_eq!(h.send(), Served::V1);
        h.log().contains("sha256 mismatch")
    });
    let installed = std::fs::read(h.plugins.join("validator.wasm")).unwrap();
    assert_eq!(
        installed,
        std::fs::read(components::RANGE_VALIDATOR).unwrap(),
        "a failed rollout changes nothing"
    );

    hub.set_manifest(entry("files/v2.wasm", &sha256(&v2)));
    h.send_until(Served::V2, 20_000);
    assert_eq!(h.validator_status()["sha256"], sha256(&v2));
    wait_for(
        "a 304 on an unchanged manifest",
        Duration::from_secs(30),
        || hub.not_modified.load(Ordering::Relaxed) > 0,
    );
    h.finish();
}

/// With `[plugins] trusted_keys` set, manifest entries signed by an
/// untrusted key, with a forged signature under the trusted key's id, with
/// a signature over other bytes, or with no signature are each refused
/// after download: the installed component and its `.sig` stay
/// byte-for-byte as they were, v1 serves every request meanwhile, nothing
/// reaches hot reload, and a `rollout.failed` event names the plugin and
/// the reason. A correctly signed entry is then installed with its `.sig`
/// beside it (the exact document from the manifest), v2 serves, the ETag is
/// remembered (a 304 follows) and the file was downloaded exactly once.
#[test]
fn signed_rollout_refuses_untrusted_forged_and_mismatched_signatures_then_installs_a_good_one() {
    let started = Instant::now();
    let key = KeyPair::generate().unwrap();
    let other = KeyPair::generate().unwrap();
    let v1 = std::fs::read(components::RANGE_VALIDATOR).unwrap();
    let v2 = std::fs::read(components::HOSTILE_VALIDATOR).unwrap();
    let other_bytes = std::fs::read(components::REDACT_PRIVACY).unwrap();
    let as_object = |sig: &Signature| serde_json::to_value(sig).unwrap();
    let forged = Signature {
        key_id: key.key_id(),
        ..sign(&v2, &other)
    };
    let cases: Vec<(&str, Option<serde_json::Value>, String)> = vec![
        (
            "signed by an untrusted key (the .sig text as a string)",
            Some(serde_json::Value::String(sign(&v2, &other).to_json())),
            format!(
                "validator: signature refused: signed by unknown key {} (not in the trusted keys)",
                other.key_id()
            ),
        ),
        (
            "forged under the trusted key's id",
            Some(as_object(&forged)),
            format!(
                "validator: signature refused: bad signature: does not verify with trusted key {}",
                key.key_id()
            ),
        ),
        (
            "signature over other bytes",
            Some(as_object(&sign(&other_bytes, &key))),
            format!(
                "validator: signature refused: content changed after signing: signed sha256 {}, file has {}",
                sha256(&other_bytes),
                sha256(&v2)
            ),
        ),
        (
            "unsigned",
            None,
            "validator: signature refused: unsigned (trusted keys are configured)".into(),
        ),
    ];
    let cases: Vec<(&str, String, String)> = cases
        .into_iter()
        .map(|(what, sig, reason)| {
            (
                what,
                entry_signed("files/v2.wasm", &sha256(&v2), sig),
                reason,
            )
        })
        .collect();
    let hub = Arc::new(Hub::default());
    hub.put("v2.wasm", &v2);
    // The same bytes under another name, so its downloads count apart.
    hub.put("v2-signed.wasm", &v2);
    hub.set_manifest(cases[0].1.clone());
    let (_server, addr, _) = serve(&hub);

    let mut h = start_signed(&key, addr);
    let dest = h.plugins.join("validator.wasm");
    let dest_sig = h.plugins.join("validator.wasm.sig");
    let v1_sig = std::fs::read(&dest_sig).unwrap();
    assert_eq!(v1_sig, sign(&v1, &key).to_json().into_bytes());

    for (what, manifest, reason) in &cases {
        hub.set_manifest(manifest.clone());
        wait_for_failure(&mut h, what, |r| r == reason);
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            v1,
            "{what}: component unchanged"
        );
        assert_eq!(
            std::fs::read(&dest_sig).unwrap(),
            v1_sig,
            "{what}: .sig unchanged"
        );
    }
    // Every refusal named the validator and one of the reasons above.
    let failures = h.lifecycle("rollout.failed");
    for p in &failures {
        assert_eq!(p["name"], "validator", "{p}");
        assert!(cases.iter().any(|c| p["reason"] == c.2.as_str()), "{p}");
    }
    assert!(
        h.log_count("rollout failed; nothing changed") >= failures.len(),
        "an error line beside every event"
    );
    // Refused downloads never touched the directory, so hot reload saw
    // nothing, and no manifest was remembered.
    assert!(h.lifecycle("plugin.rejected").is_empty(), "{}", h.log());
    assert!(h.lifecycle("plugin.reloaded").is_empty(), "{}", h.log());
    assert!(h.lifecycle("rollout.installed").is_empty(), "{}", h.log());
    assert_eq!(hub.conditional.load(Ordering::Relaxed), 0);
    // Each refusal came after a complete download.
    assert!(hub.downloads("v2.wasm") >= cases.len() as u64);

    let good = sign(&v2, &key);
    hub.set_manifest(entry_signed(
        "files/v2-signed.wasm",
        &sha256(&v2),
        Some(as_object(&good)),
    ));
    h.send_until(Served::V2, 20_000);
    assert_eq!(std::fs::read(&dest).unwrap(), v2);
    assert_eq!(
        std::fs::read(&dest_sig).unwrap(),
        good.to_json().into_bytes()
    );
    assert_eq!(h.validator_status()["sha256"], sha256(&v2));
    wait_for("a 304 after the install", POLL_BOUND, || {
        hub.not_modified.load(Ordering::Relaxed) > 0
    });
    assert_eq!(hub.downloads("v2-signed.wasm"), 1);
    let installed = h.lifecycle("rollout.installed");
    assert_eq!(installed.len(), 1, "{}", h.log());
    assert_eq!(installed[0]["name"], "validator");
    assert_eq!(installed[0]["sha256"], sha256(&v2));
    let reloaded = h.lifecycle("plugin.reloaded");
    assert_eq!(reloaded.len(), 1, "{}", h.log());
    // The download was compiled into the cache before it was installed,
    // so the swap itself loaded from the cache (a warm swap).
    assert_eq!(reloaded[0]["from_cache"], true, "{}", h.log());
    assert!(h.lifecycle("plugin.rejected").is_empty(), "{}", h.log());
    h.finish();
    eprintln!("signed rollout test took {:?}", started.elapsed());
}

/// One manifest, never changed, whose component URL (absolute, on another
/// server) first answers 404, then drops the connection half way through
/// the body: each failure changes nothing in the plugin directory (no temp
/// file left either), v1 serves throughout, and a `rollout.failed` event
/// names the plugin, the URL and why. The ETag is not remembered on
/// failure (no poll carries `If-None-Match`), so every poll retries; once
/// the file downloads whole it is installed, v2 serves, only then does the
/// manifest answer 304, and the file was downloaded whole exactly once.
#[test]
fn failed_downloads_change_nothing_and_are_retried_until_the_file_is_served() {
    let started = Instant::now();
    let v1 = std::fs::read(components::RANGE_VALIDATOR).unwrap();
    let v2 = std::fs::read(components::HOSTILE_VALIDATOR).unwrap();
    let hub = Arc::new(Hub::default());
    let (_server, addr, bare) = serve(&hub);
    let url = format!("http://{bare}/files/v2.wasm");
    hub.set_manifest(entry(&url, &sha256(&v2)));

    let mut h = start("", &rollout_table(addr), |_| Vec::new());
    let dest = h.plugins.join("validator.wasm");
    // Two 404s in a row: the second is a retry of the same manifest.
    let not_found = format!("download {url}: HTTP 404 Not Found");
    wait_for("two polls refused with 404", POLL_BOUND, || {
        assert_eq!(h.send(), Served::V1, "v1 keeps serving");
        h.lifecycle("rollout.failed")
            .iter()
            .filter(|p| p["reason"] == not_found.as_str())
            .count()
            >= 2
    });
    assert_eq!(std::fs::read(&dest).unwrap(), v1, "a 404 changes nothing");
    assert_eq!(
        hub.conditional.load(Ordering::Relaxed),
        0,
        "ETag remembered"
    );

    // The file exists now but its connection drops mid-body.
    hub.cut.lock().unwrap().insert("v2.wasm".into());
    hub.put("v2.wasm", &v2);
    let dropped = format!("download {url}: error decoding response body");
    wait_for_failure(&mut h, "connection dropped", |r| r == dropped);
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        v1,
        "a cut download changes nothing"
    );
    assert_eq!(
        hub.conditional.load(Ordering::Relaxed),
        0,
        "ETag remembered"
    );
    assert_eq!(hub.downloads("v2.wasm"), 0);
    for p in h.lifecycle("rollout.failed") {
        assert_eq!(p["name"], "validator", "{p}");
        assert!(
            p["reason"] == not_found.as_str() || p["reason"] == dropped.as_str(),
            "{p}"
        );
    }
    assert_eq!(
        dir_listing(&h.plugins),
        ["validator.wasm"],
        "no temp file left"
    );

    // Served whole, the same manifest now installs.
    hub.cut.lock().unwrap().clear();
    h.send_until(Served::V2, 20_000);
    assert_eq!(std::fs::read(&dest).unwrap(), v2);
    assert_eq!(h.validator_status()["sha256"], sha256(&v2));
    wait_for("a 304 after the install", POLL_BOUND, || {
        hub.not_modified.load(Ordering::Relaxed) > 0
    });
    assert_eq!(hub.downloads("v2.wasm"), 1);
    assert_eq!(h.lifecycle("rollout.installed").len(), 1, "{}", h.log());
    assert_eq!(h.lifecycle("plugin.reloaded").len(), 1, "{}", h.log());
    h.finish();
    eprintln!("failed-download test took {:?}", started.elapsed());
}

/// With trusted keys, a verified download whose install fails (the
/// component's temp file cannot be created: a directory squats its name)
/// leaves the component *and its `.sig`* exactly as they were, so the
/// installed pair still verifies and a restart would load v1; no temp file
/// is left behind. The failure is reported, and once the obstacle is gone
/// the next poll installs v2 with its signature.
#[test]
fn a_failed_install_leaves_component_and_signature_as_they_were() {
    let started = Instant::now();
    let key = KeyPair::generate().unwrap();
    let v1 = std::fs::read(components::RANGE_VALIDATOR).unwrap();
    let v2 = std::fs::read(components::HOSTILE_VALIDATOR).unwrap();
    let good = sign(&v2, &key);
    let hub = Arc::new(Hub::default());
    // Not downloadable yet: the host must be up (its pid known) first.
    hub.set_manifest(entry_signed(
        "files/v2.wasm",
        &sha256(&v2),
        Some(serde_json::to_value(&good).unwrap()),
    ));
    let (_server, addr, _) = serve(&hub);
    let mut h = start_signed(&key, addr);
    let dest = h.plugins.join("validator.wasm");
    let dest_sig = h.plugins.join("validator.wasm.sig");
    let v1_sig = std::fs::read(&dest_sig).unwrap();
    let before = dir_listing(&h.plugins);
    let pid = h.lifecycle("host.start")[0]["pid"].as_u64().unwrap();
    // The rollout's temp name for the component, taken by a directory.
    let squatter = h.plugins.join(format!(".validator.wasm.{pid}.tmp"));
    std::fs::create_dir(&squatter).unwrap();
    hub.put("v2.wasm", &v2);
    let reason = format!("install {}: Is a directory (os error 21)", dest.display());
    wait_for_failure(&mut h, "install blocked", |r| r == reason);
    assert_eq!(std::fs::read(&dest).unwrap(), v1, "component unchanged");
    assert_eq!(
        String::from_utf8(std::fs::read(&dest_sig).unwrap()).unwrap(),
        String::from_utf8(v1_sig).unwrap(),
        ".sig unchanged: it must still verify the installed component"
    );
    halyard_trust::plugin_sig::verify(
        &std::fs::read(&dest).unwrap(),
        &std::fs::read(&dest_sig).unwrap(),
        &[key.public_key()],
    )
    .expect("the installed pair still verifies, so a restart loads v1");
    let mut expected = before.clone();
    expected.push(squatter.file_name().unwrap().to_string_lossy().into_owned());
    expected.sort();
    assert_eq!(dir_listing(&h.plugins), expected, "no temp file left");

    std::fs::remove_dir(&squatter).unwrap();
    h.send_until(Served::V2, 20_000);
    assert_eq!(std::fs::read(&dest).unwrap(), v2);
    assert_eq!(
        std::fs::read(&dest_sig).unwrap(),
        good.to_json().into_bytes()
    );
    assert_eq!(dir_listing(&h.plugins), before);
    assert_eq!(h.lifecycle("rollout.installed").len(), 1, "{}", h.log());
    assert!(h.lifecycle("plugin.rejected").is_empty(), "{}", h.log());
    h.finish();
    eprintln!("failed-install test took {:?}", started.elapsed());
}

/// The names in `dir`, sorted.
fn dir_listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
