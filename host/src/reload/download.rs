//! Reading rollout downloads under a cap: a manifest server that sends a
//! huge or endless body must not fill the host's memory.

/// The largest manifest read; a real one lists a few plugins in a few KiB.
pub(super) const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Reads `resp`'s body, refusing it as soon as it is known to be larger
/// than `max` bytes: by its `Content-Length` before any of it is read, else
/// while it streams in (chunked, or a length that lies), so at most `max`
/// bytes are ever held. `setting` names what sets the cap, for the message.
pub(super) async fn read_capped(
    mut resp: reqwest::Response,
    max: u64,
    setting: &str,
) -> Result<Vec<u8>, String> {
    let over = |size: String| format!("{size} is over the {max}-byte limit ({setting})");
    if let Some(len) = resp.content_length().filter(|len| *len > max) {
        return Err(over(format!("Content-Length {len}")));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if (body.len() + chunk.len()) as u64 > max {
            return Err(over("the body".to_string()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Serves one connection on 127.0.0.1: a 200 with `head` and then
    /// `chunks` chunks of 64 KiB in chunked encoding (bounded); returns
    /// the URL.
    async fn serve_once(head: &'static str, chunks: usize) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let _ = conn
                .write_all(format!("HTTP/1.1 200 OK\r\n{head}\r\n").as_bytes())
                .await;
            let chunk = vec![b'x'; 64 << 10];
            for _ in 0..chunks {
                let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
                frame.extend_from_slice(&chunk);
                frame.extend_from_slice(b"\r\n");
                if conn.write_all(&frame).await.is_err() {
                    return; // The client gave up: that is the point.
                }
            }
            let _ = conn.write_all(b"0\r\n\r\n").await;
        });
        format!("http://{addr}/big.wasm")
    }

    #[tokio::test]
    async fn a_body_past_the_cap_is_refused_by_length_or_while_it_streams() {
        let http = reqwest::Client::new();
        // Chunked, no length: refused after the cap, not at the end of
        // 64 MiB.
        let url = serve_once("transfer-encoding: chunked\r\n", 1024).await;
        let resp = http.get(&url).send().await.unwrap();
        let err = read_capped(resp, 1 << 20, "test").await.unwrap_err();
        assert_eq!(err, "the body is over the 1048576-byte limit (test)");
        // A declared length past the cap: refused before the body.
        let url = serve_once("content-length: 2097152\r\n", 0).await;
        let resp = http.get(&url).send().await.unwrap();
        let err = read_capped(resp, 1 << 20, "test").await.unwrap_err();
        assert!(err.starts_with("Content-Length 2097152 is over"), "{err}");
        // Within the cap: read whole.
        let url = serve_once("transfer-encoding: chunked\r\n", 4).await;
        let resp = http.get(&url).send().await.unwrap();
        assert_eq!(
            read_capped(resp, 1 << 20, "test").await.unwrap().len(),
            256 << 10
        );
    }
}
