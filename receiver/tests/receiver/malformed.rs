//! A malformed batch is refused whole: 400, and not one of its events stored.

use hyper::StatusCode;

use crate::common::{
    Http, Server, assert_counts, assert_refused, batch, config, event_id, stats, temp_store,
};

#[tokio::test]
async fn malformed_batches_store_nothing() {
    let (_dir, store) = temp_store();
    let server = Server::start(config(&store)).await;
    let http = Http::new(server.addr);
    let good = |n: u64| {
        format!(
            r#"{{"id":"{}","time_ns":1,"source":"s","kind":"k"}}"#,
            event_id(n)
        )
    };

    let bodies = [
        "this is not json".to_owned(),
        format!(r#"{{"batch_id":"x","events":[{}"#, good(1)), // truncated
        r#"{"batch_id":"x","host":{"id":"h","version":"1"}}"#.to_owned(), // no events
        r#"{"batch_id":"x","events":{"id":"a"}}"#.to_owned(), // events not a list
        // Valid events first, then one without an id: the valid ones must not be stored.
        format!(
            r#"{{"batch_id":"x","events":[{},{},{{"time_ns":1,"source":"s","kind":"k"}}]}}"#,
            good(1),
            good(2)
        ),
        format!(r#"{{"batch_id":"x","events":[{},{{"id":42}}]}}"#, good(1)),
        format!(
            r#"{{"batch_id":"x","events":[{},"{}"]}}"#,
            good(1),
            event_id(3)
        ),
    ];
    for body in bodies {
        assert_refused(
            http.post_batch(body.into_bytes(), &[]).await,
            StatusCode::BAD_REQUEST,
        );
    }
    assert_eq!(http.stats().await, stats(0, 0, 0));
    let (_, page) = http.get("/v1/events").await;
    assert_eq!(page["events"], serde_json::json!([]));

    // The receiver is unharmed and the refused events can still be sent.
    assert_counts(http.post_batch(batch("ok", 1..3), &[]).await, 2, 0);
    assert_eq!(http.stats().await, stats(1, 2, 2));
    server.stop().await;
}
