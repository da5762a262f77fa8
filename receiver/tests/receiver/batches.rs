//! De-duplication by event id and the read endpoints.

use hyper::StatusCode;
use serde_json::json;

use crate::common::{Http, Server, assert_counts, batch, config, event_id, stats, temp_store};

/// The core contract: a re-sent batch stores nothing new and every count says so.
#[tokio::test]
async fn a_replayed_batch_is_all_duplicates() {
    let (_dir, store) = temp_store();
    let server = Server::start(config(&store)).await;
    let http = Http::new(server.addr);

    let body = batch("b-1", 0..100);
    assert_counts(
        http.post_batch(body.clone(), &[("idempotency-key", "b-1")])
            .await,
        100,
        0,
    );
    assert_counts(
        http.post_batch(body, &[("idempotency-key", "b-1")]).await,
        0,
        100,
    );
    assert_eq!(http.stats().await, stats(2, 200, 100));

    server.stop().await;
    // The same numbers offline, from the file alone.
    assert_eq!(
        halyard_receiver::open_stats(&store).expect("open_stats"),
        stats(2, 200, 100)
    );
}

/// Overlap across batches and repeats inside one batch are both duplicates;
/// `accepted + duplicates` is always the batch size; an empty batch is logged.
#[tokio::test]
async fn partial_overlap_and_repeats_within_a_batch() {
    let (_dir, store) = temp_store();
    let server = Server::start(config(&store)).await;
    let http = Http::new(server.addr);

    assert_counts(http.post_batch(batch("a", 0..10), &[]).await, 10, 0);
    assert_counts(http.post_batch(batch("b", 5..15), &[]).await, 5, 5);
    assert_counts(
        http.post_batch(batch("c", [20, 20, 21, 20]), &[]).await,
        2,
        2,
    );
    assert_counts(http.post_batch(batch("d", []), &[]).await, 0, 0);
    assert_eq!(http.stats().await, stats(4, 24, 17));
    server.stop().await;
}

/// `GET /v1/events` pages through events in arrival order, keeping each
/// event's JSON and where it came from; `/health` answers 200.
#[tokio::test]
async fn events_page_in_arrival_order() {
    let (_dir, store) = temp_store();
    let server = Server::start(config(&store)).await;
    let http = Http::new(server.addr);

    assert_counts(http.post_batch(batch("first", [7, 3, 9]), &[]).await, 3, 0);
    // No batch_id in the body: the Idempotency-Key header names the batch.
    let body = serde_json::to_vec(&json!({
        "host": {"id": "h2", "version": "9"},
        "events": [{"id": event_id(1), "time_ns": 5, "source": "s", "kind": "k", "x": [1, {"y": null}]}]
    }))
    .expect("json");
    assert_counts(
        http.post_batch(body, &[("idempotency-key", "from-header")])
            .await,
        1,
        0,
    );

    let (status, page) = http.get("/v1/events?after=0&limit=2").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<_> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["event"]["id"].clone())
        .collect();
    assert_eq!(ids, [json!(event_id(7)), json!(event_id(3))]);
    let after = page["next_after"].as_i64().expect("next_after");

    let (_, page) = http
        .get(&format!("/v1/events?after={after}&limit=10"))
        .await;
    let rows = page["events"].as_array().expect("events");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["event"]["id"], json!(event_id(9)));
    assert_eq!(rows[0]["batch_id"], json!("first"));
    assert_eq!(rows[0]["host_id"], json!("host-1"));
    assert_eq!(rows[1]["batch_id"], json!("from-header"));
    assert_eq!(rows[1]["host_id"], json!("h2"));
    assert_eq!(rows[1]["event"]["x"], json!([1, {"y": null}]));
    assert!(rows[1]["received_at_ms"].as_i64().expect("received_at_ms") > 1_600_000_000_000);

    let (_, page) = http
        .get(&format!("/v1/events?after={}", page["next_after"]))
        .await;
    assert_eq!(page["events"], json!([]));

    let (status, _) = http.get("/v1/events?after=nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = http.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}
