//! Remote rollout against a manifest server on 127.0.0.1: ETag polling, a
//! tampered download that changes nothing, then a good one that hot reload
//! swaps in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use halyard_test_components as components;

use crate::pipeline_support::wait_for;
use crate::support::{Served, sha256, start};

#[derive(Default)]
struct Hub {
    manifest: Mutex<String>,
    files: Mutex<HashMap<String, Vec<u8>>>,
    not_modified: AtomicU64,
}

async fn manifest(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    let body = hub.manifest.lock().unwrap().clone();
    let etag = format!("\"{}\"", &sha256(body.as_bytes())[..16]);
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.to_str().ok() == Some(etag.as_str()))
    {
        hub.not_modified.fetch_add(1, Ordering::Relaxed);
        return StatusCode::NOT_MODIFIED.into_response();
    }
    ([(header::ETAG, etag)], body).into_response()
}

async fn file(State(hub): State<Arc<Hub>>, UrlPath(name): UrlPath<String>) -> Response {
    match hub.files.lock().unwrap().get(&name) {
        Some(bytes) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn entry(url: &str, sha: &str) -> String {
    serde_json::json!({"plugins": [{"name": "validator", "kind": "validator",
        "url": url, "sha256": sha}]})
    .to_string()
}

#[test]
fn manifest_rollout_refuses_a_tampered_download_then_installs_the_good_one() {
    let v2 = std::fs::read(components::HOSTILE_VALIDATOR).unwrap();
    let mut tampered = v2.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0xff;
    let hub = Arc::new(Hub::default());
    hub.files
        .lock()
        .unwrap()
        .insert("tampered.wasm".into(), tampered);
    hub.files
        .lock()
        .unwrap()
        .insert("v2.wasm".into(), v2.clone());
    *hub.manifest.lock().unwrap() = entry("files/tampered.wasm", &sha256(&v2));

    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = server
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/manifest.json", axum::routing::get(manifest))
        .route("/files/{name}", axum::routing::get(file))
        .with_state(hub.clone());
    server.spawn(async move { axum::serve(listener, app).await });

    let mut h = start(
        "",
        &format!(
            "[rollout]\nmanifest_url = \"http://{addr}/manifest.json\"\ninterval_s = 1\ndir = \"{{PLUGINS}}\"\n"
        ),
        |_| Vec::new(),
    );
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

    *hub.manifest.lock().unwrap() = entry("files/v2.wasm", &sha256(&v2));
    h.send_until(Served::V2, 20_000);
    assert_eq!(h.validator_status()["sha256"], sha256(&v2));
    wait_for(
        "a 304 on an unchanged manifest",
        Duration::from_secs(30),
        || hub.not_modified.load(Ordering::Relaxed) > 0,
    );
    h.finish();
}
