//! Many senders at once with overlapping ids: every distinct id stored exactly once.

use std::collections::HashSet;

use tokio::task::JoinSet;

use crate::common::{Http, Server, batch, config, stats, temp_store};

const CLIENTS: u64 = 8;
const BATCHES: u64 = 20;
const EVENTS: u64 = 50;

/// Event numbers of client `c`'s batch `b`: windows that overlap the client's
/// previous batch and the neighbouring client's, so the same id races in
/// from several connections at once.
fn ids(c: u64, b: u64) -> impl Iterator<Item = u64> {
    let start = c * 300 + b * 30;
    start..start + EVENTS
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_overlapping_senders_store_each_id_once() {
    let (_dir, store) = temp_store();
    let server = Server::start(config(&store)).await;
    let http = Http::new(server.addr);

    let mut tasks = JoinSet::new();
    for c in 0..CLIENTS {
        let http = http.clone();
        tasks.spawn(async move {
            let (mut accepted, mut duplicates) = (0, 0);
            for b in 0..BATCHES {
                let (status, answer) = http
                    .post_batch(batch(&format!("c{c}-b{b}"), ids(c, b)), &[])
                    .await;
                assert_eq!(status, hyper::StatusCode::OK, "{answer}");
                accepted += answer["accepted"].as_u64().expect("accepted");
                duplicates += answer["duplicates"].as_u64().expect("duplicates");
            }
            (accepted, duplicates)
        });
    }
    let (mut accepted, mut duplicates) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        let (a, d) = result.expect("client task");
        accepted += a;
        duplicates += d;
    }

    let distinct: HashSet<u64> = (0..CLIENTS)
        .flat_map(|c| (0..BATCHES).flat_map(move |b| ids(c, b)))
        .collect();
    let distinct = distinct.len() as u64;
    let sent = CLIENTS * BATCHES * EVENTS;
    assert!(
        distinct < sent,
        "the ids must overlap for this test to mean anything"
    );
    assert_eq!(
        accepted, distinct,
        "the answers' accepted counts add up to the distinct ids"
    );
    assert_eq!(duplicates, sent - distinct);
    assert_eq!(http.stats().await, stats(CLIENTS * BATCHES, sent, distinct));
    server.stop().await;
}
