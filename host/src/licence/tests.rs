//! The licence at start, over (paused) time, and the heartbeat against a
//! real HTTP server on 127.0.0.1.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use halyard_trust::KeyPair;
use halyard_trust::licence::{Claims, Features, LicenceState, Scope, issue};
use halyard_trust::usage::{Counter, UsageWindow};
use tokio::sync::Mutex as AsyncMutex;

use super::heartbeat::{Heartbeat, HeartbeatConfig};
use super::*;
use crate::lifecycle::Lifecycle;
use crate::tap::{StreamItem, Tap};

const T0: u64 = 1_795_000_000;
const H: u64 = 3600;

fn claims(expires_at: u64) -> Claims {
    Claims {
        licensee: "Acme".into(),
        scope: Scope::default(),
        issued_at: T0,
        expires_at,
        features: Features::default(),
        grace_hours: None,
    }
}

fn section(token: &str, vendor: &KeyPair) -> LicenceSection {
    LicenceSection {
        token: Some(token.to_owned()),
        public_keys: vec![vendor.public_key().to_string()],
        ..LicenceSection::default()
    }
}

fn fixed(now: u64) -> Clock {
    Arc::new(move || now)
}

#[test]
fn start_refuses_missing_forged_expired_wrong_key_and_out_of_scope_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = KeyPair::generate().unwrap();
    let other = KeyPair::generate().unwrap();
    let good = issue(&claims(T0 + 30 * 24 * H), &vendor);
    let start = |s: &LicenceSection, now| Licence::start(s, "edge-1", dir.path(), fixed(now), None);

    let ok = start(&section(good.expose(), &vendor), T0 + 1).unwrap();
    assert_eq!(ok.state(), LicenceState::Valid);

    let missing = start(&LicenceSection::default(), T0).unwrap_err();
    assert!(matches!(missing, LicenceStartError::Missing), "{missing}");
    assert!(missing.to_string().contains(DEV_MODE_ENV));

    let wrong_key = start(&section(good.expose(), &other), T0 + 1).unwrap_err();
    assert!(
        wrong_key.to_string().contains("forged or wrong key"),
        "{wrong_key}"
    );

    let mut forged = good.expose().to_owned();
    forged.replace_range(5..6, if &forged[5..6] == "A" { "B" } else { "A" });
    let forged_err = start(&section(&forged, &vendor), T0 + 1).unwrap_err();
    assert!(
        matches!(forged_err, LicenceStartError::Refused(_)),
        "{forged_err}"
    );

    let expired = start(&section(good.expose(), &vendor), T0 + 31 * 24 * H).unwrap_err();
    assert!(expired.to_string().contains("expired"), "{expired}");

    let mut scoped = claims(T0 + H);
    scoped.scope.devices = vec!["edge-2".into()];
    let scoped = issue(&scoped, &vendor);
    let out = start(&section(scoped.expose(), &vendor), T0 + 1).unwrap_err();
    assert!(out.to_string().contains("does not cover host"), "{out}");

    for e in [missing, wrong_key, forged_err, expired, out] {
        assert!(!e.to_string().contains(good.expose()), "token leaked: {e}");
    }
}

/// A clock that follows tokio's (paused) time from `T0`.
fn tokio_clock() -> Clock {
    let origin = tokio::time::Instant::now();
    Arc::new(move || T0 + origin.elapsed().as_secs())
}

#[tokio::test(start_paused = true)]
async fn grace_starts_at_the_first_failure_and_expires_on_time_then_renewal_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = KeyPair::generate().unwrap();
    let token = issue(&claims(T0 + 30 * 24 * H), &vendor);
    let tap = Tap::new(64);
    let mut events = tap.subscribe();
    let mut s = section(token.expose(), &vendor);
    s.grace_hours = 2.0;
    let licence = Licence::start(
        &s,
        "edge-1",
        dir.path(),
        tokio_clock(),
        Some(Lifecycle::new(tap.clone())),
    )
    .unwrap();
    let stop = CancellationToken::new();
    let timer = tokio::spawn(licence.clone().watch_time(stop.clone()));
    let mut rx = licence.subscribe();

    tokio::time::advance(Duration::from_secs(600)).await;
    licence.heartbeat_failed(); // at T0 + 600
    assert_eq!(
        licence.state(),
        LicenceState::Grace {
            since: T0 + 600,
            until: T0 + 600 + 2 * H
        }
    );
    // Nothing changes until the grace period is over, then it expires on
    // time, published by the timer task without any heartbeat.
    tokio::time::advance(Duration::from_secs(2 * H - 1)).await;
    assert!(matches!(licence.state(), LicenceState::Grace { .. }));
    rx.mark_unchanged();
    tokio::time::advance(Duration::from_secs(1)).await;
    rx.changed().await.unwrap();
    assert_eq!(
        *rx.borrow(),
        LicenceState::Expired {
            since: T0 + 600 + 2 * H
        }
    );
    assert!(!licence.state().ships());

    // A renewed token (and the success it came with) releases the hold.
    let renewed = issue(&claims(T0 + 60 * 24 * H), &vendor);
    licence.heartbeat_succeeded(Some(renewed.clone()));
    assert_eq!(licence.state(), LicenceState::Valid);
    assert_eq!(licence.claims().unwrap().expires_at, T0 + 60 * 24 * H);
    let persisted = std::fs::read_to_string(dir.path().join(RENEWED_TOKEN_FILE)).unwrap();
    assert_eq!(persisted, renewed.expose());

    let mut kinds = Vec::new();
    while let Ok(item) = events.try_recv() {
        if let StreamItem::Lifecycle(e) = item.item {
            kinds.push(e.kind.clone());
        }
    }
    assert_eq!(kinds, ["licence.grace", "licence.expired", "licence.valid"]);
    stop.cancel();
    timer.await.unwrap();
}

#[test]
fn a_forged_renewal_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = KeyPair::generate().unwrap();
    let token = issue(&claims(T0 + H), &vendor);
    let l = Licence::start(
        &section(token.expose(), &vendor),
        "e",
        dir.path(),
        fixed(T0),
        None,
    )
    .unwrap();
    let forged = issue(&claims(T0 + 99 * H), &KeyPair::generate().unwrap());
    l.heartbeat_succeeded(Some(forged));
    assert_eq!(l.claims().unwrap().expires_at, T0 + H);
    assert!(!dir.path().join(RENEWED_TOKEN_FILE).exists());
}

/// What the test licence server saw, and how it answers.
#[derive(Default)]
struct Server {
    bodies: Vec<serde_json::Value>,
    api_keys: Vec<String>,
    /// Answer 503 to this many requests first.
    fail_first: usize,
    token: Option<String>,
}

async fn serve(server: Arc<AsyncMutex<Server>>) -> String {
    let app = Router::new().route(
        "/heartbeat",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                let mut s = server.lock().await;
                s.bodies.push(serde_json::from_slice(&body).unwrap());
                let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
                s.api_keys.push(key.unwrap_or_default().to_owned());
                if s.bodies.len() <= s.fail_first {
                    return (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new());
                }
                let answer = serde_json::json!({"token": s.token});
                (axum::http::StatusCode::OK, answer.to_string())
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/heartbeat")
}

fn events(body: &serde_json::Value, kind: &str, counter: &str) -> u64 {
    body["usage"]["events"][kind][counter].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn two_failed_heartbeats_and_one_success_report_the_whole_period_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = KeyPair::generate().unwrap();
    let token = issue(&claims(u64::from(u32::MAX) * 4), &vendor);
    let renewed = issue(&claims(u64::from(u32::MAX) * 5), &vendor);
    let server = Arc::new(AsyncMutex::new(Server {
        fail_first: 2,
        token: Some(renewed.expose().to_owned()),
        ..Server::default()
    }));
    let url = serve(server.clone()).await;
    let mut s = section(token.expose(), &vendor);
    s.endpoint = Some(url);
    s.api_key = Some("hb-secret".into());
    s.retry_max_s = 0.05;
    let licence = Licence::start(&s, "edge-1", dir.path(), system_clock(), None).unwrap();
    let usage = Arc::new(UsageWindow::new());
    usage.add("temp", Counter::Received, 10);
    usage.add("temp", Counter::Accepted, 9);
    usage.add("temp", Counter::Rejected, 1);
    usage.add_traps("range-validator", 2);
    // Counts that arrive between the failed attempts belong to the same
    // open window.
    let config = HeartbeatConfig::from_section(&s).unwrap();
    let hb = Heartbeat::new(config, usage.clone(), licence.clone(), None, "edge-1").unwrap();
    assert!(hb.beat_once().await.is_err());
    usage.add("temp", Counter::Delivered, 4);
    assert!(hb.beat_once().await.is_err());
    usage.add("humidity", Counter::Received, 3);
    usage.add("humidity", Counter::Dropped, 3);
    hb.beat_once().await.unwrap();
    usage.add("temp", Counter::Delivered, 5); // after the success: next window

    let s = server.lock().await;
    assert_eq!(s.bodies.len(), 3);
    let last = &s.bodies[2];
    assert_eq!(events(last, "temp", "in"), 10);
    assert_eq!(events(last, "temp", "accepted"), 9);
    assert_eq!(events(last, "temp", "rejected"), 1);
    assert_eq!(events(last, "temp", "delivered"), 4);
    assert_eq!(events(last, "humidity", "dropped"), 3);
    assert_eq!(last["usage"]["traps"]["range-validator"], 2);
    assert_eq!(last["usage"]["seq"], 0);
    assert_eq!(
        s.bodies[0]["usage"]["seq"], 0,
        "failed sends keep the window open"
    );
    assert_eq!(s.api_keys, ["hb-secret"; 3]);
    // Only what came after the successful send is left for the next one.
    let next = usage.snapshot();
    assert_eq!(next.seq, 1);
    assert_eq!(next.events["temp"].delivered, 5);
    assert_eq!(next.events.len(), 1);
    assert!(next.traps.is_empty());
    // The answer's renewed token is in force.
    assert_eq!(
        licence.claims().unwrap().expires_at,
        u64::from(u32::MAX) * 5
    );
}

#[tokio::test]
async fn the_heartbeat_task_retries_with_backoff_until_the_server_answers() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = KeyPair::generate().unwrap();
    let token = issue(&claims(u64::from(u32::MAX) * 4), &vendor);
    let server = Arc::new(AsyncMutex::new(Server {
        fail_first: 2,
        ..Server::default()
    }));
    let mut s = section(token.expose(), &vendor);
    s.endpoint = Some(serve(server.clone()).await);
    s.retry_max_s = 0.05;
    let licence = Licence::start(&s, "edge-1", dir.path(), system_clock(), None).unwrap();
    let usage = Arc::new(UsageWindow::new());
    usage.add("temp", Counter::Accepted, 7);
    let hb = Heartbeat::new(
        HeartbeatConfig::from_section(&s).unwrap(),
        usage.clone(),
        licence.clone(),
        None,
        "edge-1",
    )
    .unwrap();
    let stop = CancellationToken::new();
    // Two failures put the licence in grace; the success that ends it is
    // published after its answer committed the window, so the state
    // changes are what the test waits on.
    let mut state = licence.subscribe();
    let task = tokio::spawn(hb.run(stop.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let seen = server.lock().await.bodies.len();
        if seen >= 3 && usage.is_empty() {
            break seen;
        }
        let changed = tokio::time::timeout_at(deadline, state.changed()).await;
        assert!(
            matches!(changed, Ok(Ok(()))),
            "no successful heartbeat within 20 s ({seen} sent)"
        );
    };
    stop.cancel();
    task.await.unwrap();
    assert_eq!(seen, 3);
    let s = server.lock().await;
    assert!(s.bodies.iter().all(|b| events(b, "temp", "accepted") == 7));
    assert!(usage.is_empty());
    // Two failures started grace; the success ended it.
    assert_eq!(licence.state(), LicenceState::Valid);
}

/// A store in `dir` for host `edge-1`, as `run` makes it.
fn store(dir: &Path, key: &Arc<KeyPair>, last_heartbeat: Option<u64>) -> StateStore {
    let earlier = StateStore::earlier_run(dir);
    StateStore::new(dir, "edge-1", key.clone(), earlier, last_heartbeat)
}

#[test]
fn a_restart_continues_grace_and_expiry_and_tampering_never_helps() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = KeyPair::generate().unwrap();
    let key = Arc::new(KeyPair::generate().unwrap());
    key.save(&dir.path().join(crate::provenance::HOST_KEY_FILE))
        .unwrap();
    let s = section(issue(&claims(T0 + 30 * 24 * H), &vendor).expose(), &vendor);
    let start = |now: u64, last_heartbeat: Option<u64>| {
        Licence::start_with(
            &s,
            "edge-1",
            dir.path(),
            fixed(now),
            None,
            Some(store(dir.path(), &key, last_heartbeat)),
        )
        .unwrap()
    };
    // First run: a success at T0 + H, a failure at T0 + 2H: grace.
    let first = start(T0 + H, None);
    first.heartbeat_succeeded(None);
    let first = start(T0 + 2 * H, None);
    first.heartbeat_failed();
    let grace = LicenceState::Grace {
        since: T0 + 2 * H,
        until: T0 + 74 * H,
    };
    assert_eq!(first.state(), grace);
    // Restarts keep the deadline, then expire on time.
    assert_eq!(start(T0 + 3 * H, None).state(), grace);
    let expired = LicenceState::Expired { since: T0 + 74 * H };
    assert_eq!(start(T0 + 80 * H, None).state(), expired);
    assert_eq!(start(T0 + 81 * H, None).state(), expired);

    // A clock set back reads the last save's time instead.
    assert_eq!(start(T0 + 10 * H, None).state(), expired);

    // Edited or deleted: the worst case since the last recorded heartbeat.
    let path = dir.path().join(persist::STATE_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replacen("hls1.e", "hls1.f", 1);
    assert_ne!(edited, text);
    std::fs::write(&path, edited).unwrap();
    assert!(matches!(
        start(T0 + 82 * H, Some(T0 + H)).state(),
        LicenceState::Expired { .. }
    ));
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        start(T0 + 83 * H, Some(T0 + H)).state(),
        LicenceState::Expired { .. }
    ));
    // Another host key's seal is no better.
    std::fs::write(&path, &text).unwrap();
    let other = Arc::new(KeyPair::generate().unwrap());
    let foreign = Licence::start_with(
        &s,
        "edge-1",
        dir.path(),
        fixed(T0 + 84 * H),
        None,
        Some(store(dir.path(), &other, None)),
    )
    .unwrap();
    assert!(matches!(foreign.state(), LicenceState::Expired { .. }));

    // A successful heartbeat makes it valid, and that survives a restart.
    let back = start(T0 + 85 * H, None);
    back.heartbeat_succeeded(None);
    assert_eq!(back.state(), LicenceState::Valid);
    assert_eq!(start(T0 + 85 * H + 60, None).state(), LicenceState::Valid);
}

#[test]
fn a_first_run_is_valid_and_a_newer_configured_token_counts_as_contact() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = KeyPair::generate().unwrap();
    let key = Arc::new(KeyPair::generate().unwrap());
    let old = section(issue(&claims(T0 + 30 * 24 * H), &vendor).expose(), &vendor);
    let start = |s: &LicenceSection, now: u64| {
        let store = store(dir.path(), &key, None);
        Licence::start_with(s, "edge-1", dir.path(), fixed(now), None, Some(store)).unwrap()
    };
    let first = start(&old, T0 + 1);
    assert_eq!(first.state(), LicenceState::Valid);
    first.heartbeat_failed();
    assert!(matches!(
        start(&old, T0 + 100 * H).state(),
        LicenceState::Expired { .. }
    ));
    // The vendor issues a new token after the outage: contact at its issue.
    let mut newer = claims(T0 + 60 * 24 * H);
    newer.issued_at = T0 + 100 * H;
    let renewed = section(issue(&newer, &vendor).expose(), &vendor);
    assert_eq!(
        start(&renewed, T0 + 100 * H + 10).state(),
        LicenceState::Valid
    );
}
