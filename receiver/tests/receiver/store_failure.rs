//! A store that cannot commit answers 503 with Retry-After and stores nothing;
//! the sender's re-send succeeds once the store recovers.

use hyper::{Method, StatusCode};
use rusqlite::Connection;

use crate::common::{
    Http, Server, assert_counts, assert_refused, batch, config, stats, temp_store,
};

#[tokio::test]
async fn a_locked_store_answers_503_and_stores_nothing() {
    let (_dir, store) = temp_store();
    let server = Server::start(config(&store)).await;
    let http = Http::new(server.addr);

    // Another writer holds the database lock past the receiver's busy timeout (5 s).
    let blocker = Connection::open(&store).expect("open blocker");
    blocker
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take write lock");
    let (status, headers, body) = http
        .request_full(Method::POST, "/v1/batches", &[], batch("b", 0..10))
        .await;
    assert_refused((status, body), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        headers.get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    blocker
        .execute_batch("ROLLBACK")
        .expect("release write lock");
    drop(blocker);

    assert_eq!(http.stats().await, stats(0, 0, 0));
    assert_counts(http.post_batch(batch("b", 0..10), &[]).await, 10, 0);
    server.stop().await;
}
