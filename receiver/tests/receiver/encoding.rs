//! gzip bodies, and the size limits on both the body and what it expands to.

use std::net::SocketAddr;

use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{
    Http, Server, assert_counts, assert_refused, batch, config, gzip, stats, temp_store,
};

const GZIP: (&str, &str) = ("content-encoding", "gzip");

#[tokio::test]
async fn gzip_bodies_are_accepted() {
    let (_dir, store) = temp_store();
    let server = Server::start(config(&store)).await;
    let http = Http::new(server.addr);

    assert_counts(
        http.post_batch(gzip(&batch("g", 0..100)), &[GZIP]).await,
        100,
        0,
    );
    // The same events uncompressed are recognised as duplicates.
    assert_counts(http.post_batch(batch("g", 0..100), &[]).await, 0, 100);
    assert_eq!(http.stats().await, stats(2, 200, 100));
    server.stop().await;
}

#[tokio::test]
async fn a_body_claiming_gzip_that_is_not_is_refused() {
    let (_dir, store) = temp_store();
    let server = Server::start(config(&store)).await;
    let http = Http::new(server.addr);

    assert_refused(
        http.post_batch(batch("x", 0..10), &[GZIP]).await,
        StatusCode::BAD_REQUEST,
    );
    // Truncated gzip: a valid header, no end.
    let mut cut = gzip(&batch("x", 0..10));
    cut.truncate(cut.len() / 2);
    assert_refused(http.post_batch(cut, &[GZIP]).await, StatusCode::BAD_REQUEST);
    // An encoding the receiver does not speak.
    assert_refused(
        http.post_batch(batch("x", 0..10), &[("content-encoding", "br")])
            .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    );
    assert_eq!(http.stats().await, stats(0, 0, 0));
    server.stop().await;
}

/// 100 MiB of zeros compresses to ~100 KiB; expanding it must stop at the
/// limit (default 32 MiB) and answer 413, storing nothing.
#[tokio::test]
async fn a_gzip_bomb_is_refused() {
    let (_dir, store) = temp_store();
    let server = Server::start(config(&store)).await;
    let http = Http::new(server.addr);

    let bomb = gzip(&vec![0u8; 100 * 1024 * 1024]);
    assert!(bomb.len() < 1024 * 1024, "bomb is {} bytes", bomb.len());
    assert_refused(
        http.post_batch(bomb, &[GZIP]).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    );
    assert_eq!(http.stats().await, stats(0, 0, 0));
    server.stop().await;
}

/// With a small limit: a body over it is 413 whether its length is declared
/// or streamed in chunks; a body at the limit passes; a compressed body
/// within the limit that expands past it is 413.
#[tokio::test]
async fn the_body_limit_applies_before_and_after_decompression() {
    let (_dir, store) = temp_store();
    let mut cfg = config(&store);
    let fits = batch("s", 0..10);
    cfg.max_body_bytes = fits.len();
    let server = Server::start(cfg).await;
    let http = Http::new(server.addr);

    let big = batch("s", 0..11);
    assert_refused(
        http.post_batch(big.clone(), &[]).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    );
    let compressed = gzip(&big);
    assert!(compressed.len() < fits.len());
    assert_refused(
        http.post_batch(compressed, &[GZIP]).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    );
    let status = post_chunked(server.addr, &big).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert_eq!(http.stats().await, stats(0, 0, 0));
    assert_counts(http.post_batch(fits, &[]).await, 10, 0);
    server.stop().await;
}

/// Sends `body` with `Transfer-Encoding: chunked` (no length announced) over a
/// raw connection and returns the status line.
async fn post_chunked(addr: SocketAddr, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = "POST /v1/batches HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
                transfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    stream.write_all(head.as_bytes()).await.expect("write head");
    for chunk in body.chunks(64) {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        if stream.write_all(&framed).await.is_err() {
            break; // the server may answer and close before reading everything
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or_default().to_owned()
}
