//! With an API key configured only the exact key in the configured header gets in.

use hyper::StatusCode;

use crate::common::{
    Http, Server, assert_counts, assert_refused, batch, config, stats, temp_store,
};

#[tokio::test]
async fn only_the_right_key_is_accepted() {
    let (_dir, store) = temp_store();
    let mut cfg = config(&store);
    cfg.api_key = Some("s3cret-key".to_owned());
    let server = Server::start(cfg).await;
    let http = Http::new(server.addr);

    assert_refused(
        http.post_batch(batch("a", 0..5), &[]).await,
        StatusCode::UNAUTHORIZED,
    );
    assert_refused(
        http.post_batch(batch("a", 0..5), &[("x-api-key", "wrong")])
            .await,
        StatusCode::UNAUTHORIZED,
    );
    assert_refused(
        http.post_batch(batch("a", 0..5), &[("x-api-key", "s3cret-ke")])
            .await,
        StatusCode::UNAUTHORIZED,
    );
    assert_refused(
        http.post_batch(batch("a", 0..5), &[("x-api-key", "s3cret-key-")])
            .await,
        StatusCode::UNAUTHORIZED,
    );
    assert_eq!(http.stats().await, stats(0, 0, 0));
    assert_counts(
        http.post_batch(batch("a", 0..5), &[("x-api-key", "s3cret-key")])
            .await,
        5,
        0,
    );
    assert_eq!(http.stats().await, stats(1, 5, 5));
    server.stop().await;
}

/// The header name is configurable; the default one then no longer counts.
#[tokio::test]
async fn a_custom_header_carries_the_key() {
    let (_dir, store) = temp_store();
    let mut cfg = config(&store);
    cfg.api_key = Some("k".to_owned());
    cfg.api_key_header = "authorization-token".to_owned();
    let server = Server::start(cfg).await;
    let http = Http::new(server.addr);

    assert_refused(
        http.post_batch(batch("a", 0..1), &[("x-api-key", "k")])
            .await,
        StatusCode::UNAUTHORIZED,
    );
    assert_counts(
        http.post_batch(batch("a", 0..1), &[("authorization-token", "k")])
            .await,
        1,
        0,
    );
    server.stop().await;
}

/// A config that cannot work fails at bind, not as 401 on every batch.
#[tokio::test]
async fn bad_key_config_fails_at_bind() {
    let (_dir, store) = temp_store();
    let mut cfg = config(&store);
    cfg.api_key = Some("k".to_owned());
    cfg.api_key_header = "not a header".to_owned();
    assert!(matches!(
        halyard_receiver::bind(cfg).await,
        Err(halyard_receiver::ReceiverError::Config { .. })
    ));
    let mut cfg = config(&store);
    cfg.api_key = Some(String::new());
    assert!(matches!(
        halyard_receiver::bind(cfg).await,
        Err(halyard_receiver::ReceiverError::Config { .. })
    ));
}
