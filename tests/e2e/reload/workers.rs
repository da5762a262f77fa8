//! Hot swap with two pipeline workers under concurrent load: every batch
//! runs wholly on one version, a client that saw v2 never sees v1 again,
//! the swap is announced once, and nothing is lost or duplicated.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use halyard_test_components as components;

use crate::operate_support::Client;
use crate::support::{PER_REQUEST, Served, deploy, sha256, start};

/// What one load thread saw: requests sent, events accepted and rejected.
#[derive(Default)]
struct Load {
    sent: u64,
    accepted: u64,
    rejected: u64,
}

#[test]
fn a_swap_with_two_workers_under_load_never_splits_a_batch_between_versions() {
    let mut h = start("", "[pipeline]\nworkers = 2\n", |_| Vec::new());
    assert_eq!(h.send(), Served::V1);
    let stop = Arc::new(AtomicBool::new(false));
    // Two clients posting concurrently keep both workers busy.
    let load: Vec<_> = (0..2u64)
        .map(|t| {
            let stop = stop.clone();
            let ingest = h.run.ingest;
            std::thread::spawn(move || {
                let client = Client::new();
                let mut seen_v2 = false;
                let mut load = Load::default();
                let mut i = 1_000_000 * (t + 1);
                while !stop.load(Ordering::Relaxed) {
                    let mut body = String::new();
                    for _ in 0..PER_REQUEST {
                        body.push_str(&format!(
                            "{{\"device\":\"l{t}\",\"metric\":\"temp\",\"value\":-1.5,\"ts\":{i},\"operator\":\"bob\"}}\n"
                        ));
                        i += 1;
                    }
                    let answer = client.ingest(ingest, body.into_bytes());
                    let accepted = answer["accepted"].as_u64().unwrap();
                    let rejected = answer["rejected"].as_u64().unwrap();
                    match (accepted, rejected) {
                        (0, PER_REQUEST) => {
                            assert!(!seen_v2, "v1 served after v2 on this client")
                        }
                        (PER_REQUEST, 0) => seen_v2 = true,
                        _ => panic!("a batch was split between versions or lost events: {answer}"),
                    }
                    load.sent += PER_REQUEST;
                    load.accepted += accepted;
                    load.rejected += rejected;
                }
                load
            })
        })
        .collect();
    let v2 = std::fs::read(components::HOSTILE_VALIDATOR).unwrap();
    deploy(&h.plugins.join("validator.wasm"), &v2, None);
    h.send_until(Served::V2, 5000);
    // Once v2 served, every later request on every worker is v2.
    for _ in 0..20 {
        assert_eq!(h.send(), Served::V2);
    }
    stop.store(true, Ordering::Relaxed);
    for thread in load {
        let load = thread.join().expect("a load thread");
        assert!(load.sent > 0, "the load ran");
        h.sent += load.sent;
        h.accepted += load.accepted;
        h.rejected += load.rejected;
    }
    assert_eq!(h.validator_status()["sha256"], sha256(&v2));
    assert_eq!(
        h.log_count("\"kind\":\"plugin.reloaded\""),
        1,
        "one swap, announced once for both workers: {}",
        h.log()
    );
    h.finish();
}
