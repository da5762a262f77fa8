//! Stopping and starting again on the same store loses nothing and forgets nothing.

use crate::common::{Http, Server, assert_counts, batch, config, stats, temp_store};

#[tokio::test]
async fn counts_and_deduplication_survive_a_restart() {
    let (_dir, store) = temp_store();

    let server = Server::start(config(&store)).await;
    let http = Http::new(server.addr);
    assert_counts(http.post_batch(batch("a", 0..50), &[]).await, 50, 0);
    assert_counts(http.post_batch(batch("b", 25..75), &[]).await, 25, 25);
    let before = http.stats().await;
    assert_eq!(before, stats(2, 100, 75));
    server.stop().await;
    drop(http);

    // Readable offline while stopped, and the file is still a valid store.
    assert_eq!(
        halyard_receiver::open_stats(&store).expect("open_stats"),
        before
    );

    let server = Server::start(config(&store)).await;
    let http = Http::new(server.addr);
    assert_eq!(http.stats().await, before);
    assert_counts(http.post_batch(batch("a", 0..50), &[]).await, 0, 50);
    assert_counts(http.post_batch(batch("c", 70..80), &[]).await, 5, 5);
    assert_eq!(http.stats().await, stats(4, 160, 80));
    // open_stats also works while a receiver has the store open.
    assert_eq!(
        halyard_receiver::open_stats(&store).expect("open_stats"),
        stats(4, 160, 80)
    );
    server.stop().await;
}

/// open_stats never creates a store where there is none.
#[tokio::test]
async fn open_stats_refuses_a_missing_store() {
    let (dir, store) = temp_store();
    assert!(matches!(
        halyard_receiver::open_stats(&store),
        Err(halyard_receiver::ReceiverError::Missing { .. })
    ));
    assert!(!store.exists());
    drop(dir);
}
