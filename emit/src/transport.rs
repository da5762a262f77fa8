//! One request on a fresh connection: TCP or a Unix socket, HTTP/1.1 by
//! hyper either way, so both speak exactly the same protocol.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, RETRY_AFTER};
use hyper::rt::{Read, Write};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixStream};

/// Where the host listens.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// `http://authority/path`.
    Tcp {
        /// `host:port`.
        authority: String,
        /// The ingest path (`/v1/ingest` unless the URL named one).
        path: String,
    },
    /// A Unix socket file.
    Unix(PathBuf),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp { authority, path } => write!(f, "http://{authority}{path}"),
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// An answer: status, `Retry-After` (raw), body.
pub(crate) struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Bytes,
}

/// Why one exchange failed.
pub(crate) enum Failure {
    /// No connection: nothing was sent.
    Connect(std::io::Error),
    /// After sending: the outcome is unknown.
    Exchange(String),
}

/// Sends `body` to `target` as `POST <path>?results=lines` and reads the
/// answer, at most `max_answer` bytes of it.
pub(crate) async fn exchange(
    target: &Target,
    token: Option<&str>,
    body: Bytes,
    max_answer: usize,
) -> Result<Reply, Failure> {
    let (host, path) = match target {
        Target::Tcp { authority, path } => (authority.as_str(), path.as_str()),
        Target::Unix(_) => ("localhost", "/v1/ingest"),
    };
    let mut request = Request::post(format!("{path}?results=lines"))
        .header(HOST, host)
        .header(CONTENT_TYPE, "application/x-ndjson");
    if let Some(token) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(body))
        .map_err(|e| Failure::Exchange(e.to_string()))?;
    match target {
        Target::Tcp { authority, .. } => {
            let stream = TcpStream::connect(authority.as_str())
                .await
                .map_err(Failure::Connect)?;
            let _ = stream.set_nodelay(true);
            send(TokioIo::new(stream), request, max_answer).await
        }
        Target::Unix(path) => {
            let stream = UnixStream::connect(path).await.map_err(Failure::Connect)?;
            send(TokioIo::new(stream), request, max_answer).await
        }
    }
}

async fn send<I>(io: I, request: Request<Full<Bytes>>, max_answer: usize) -> Result<Reply, Failure>
where
    I: Read + Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| Failure::Exchange(e.to_string()))?;
    let driver = tokio::spawn(conn);
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| Failure::Exchange(e.to_string()))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = Limited::new(response.into_body(), max_answer)
            .collect()
            .await
            .map_err(|e| Failure::Exchange(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok(Reply {
            status,
            retry_after,
            body,
        })
    }
    .await;
    driver.abort();
    result
}

/// How long `Retry-After` asks to wait: delta-seconds or an HTTP date.
pub(crate) fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        assert_eq!(retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a past date: at once"
        );
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        let wait = retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(wait > Duration::from_secs(100), "{wait:?}");
        assert_eq!(retry_after("soon"), None);
    }
}
