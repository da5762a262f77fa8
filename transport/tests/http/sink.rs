//! One attempt at a time: how HttpSink classifies what the server does.

use std::time::{Duration, Instant, SystemTime};

use halyard_transport::{Attempt, EventRejection, HttpConfig, MAX_RETRY_AFTER, Sink, USER_AGENT};

use crate::server::{Reply, TestServer};
use crate::{KEY, config, gunzip, sink};

const BODY: &[u8] =
    br#"{"batch_id":"b-42","host":{"id":"h","version":"0.1.0"},"events":[{"n":1}]}"#;

async fn one(reply: impl Fn() -> Reply + Send + Sync + 'static) -> (Attempt, TestServer) {
    let server = TestServer::start(move |_| reply()).await;
    let attempt = sink(&config(&server.url)).send("b-42", BODY).await;
    (attempt, server)
}

#[tokio::test]
async fn ok_is_delivered_with_exact_headers_and_gzip_body() {
    let (attempt, server) = one(|| Reply::status(200)).await;
    assert_eq!(attempt, Attempt::Delivered);
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let h = &requests[0].headers;
    assert_eq!(h["x-api-key"], KEY);
    assert_eq!(h["idempotency-key"], "b-42");
    assert_eq!(h["content-encoding"], "gzip");
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["user-agent"], USER_AGENT);
    assert!(USER_AGENT.starts_with("halyard/"));
    assert_eq!(gunzip(&requests[0].body), BODY);
}

#[tokio::test]
async fn without_gzip_or_key_the_body_is_plain_and_no_key_is_sent() {
    let server = TestServer::start(|_| Reply::status(204)).await;
    let mut plain = HttpConfig::new(&server.url);
    plain.gzip = false;
    assert_eq!(sink(&plain).send("k", BODY).await, Attempt::Delivered);
    let mut custom = config(&server.url);
    custom.api_key_header = "authorization".to_owned();
    assert_eq!(sink(&custom).send("k", BODY).await, Attempt::Delivered);

    let requests = server.requests();
    assert_eq!(requests[0].body, BODY);
    assert!(requests[0].headers.get("content-encoding").is_none());
    assert!(requests[0].headers.get("x-api-key").is_none());
    assert_eq!(requests[1].headers["authorization"], KEY);
    assert!(requests[1].headers.get("x-api-key").is_none());
}

#[tokio::test]
async fn server_errors_timeouts_and_throttling_are_retried() {
    for code in [500, 502, 503, 408, 429] {
        let (attempt, _server) =
            one(move || Reply::Status(code, Vec::new(), format!("busy {code}"))).await;
        assert_eq!(
            attempt,
            Attempt::Retry {
                reason: format!("HTTP {code}: busy {code}"),
                retry_after: None
            },
            "status {code}"
        );
    }
}

fn retry_after_of(attempt: &Attempt) -> Option<Duration> {
    match attempt {
        Attempt::Retry { retry_after, .. } => *retry_after,
        other => panic!("expected Retry, got {other:?}"),
    }
}

#[tokio::test]
async fn retry_after_seconds_is_honoured() {
    let (attempt, _server) =
        one(|| Reply::Status(429, vec![("retry-after", "7".into())], String::new())).await;
    assert_eq!(retry_after_of(&attempt), Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn retry_after_http_date_is_honoured() {
    let (attempt, _server) = one(|| {
        let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        Reply::Status(503, vec![("retry-after", at)], String::new())
    })
    .await;
    let after = retry_after_of(&attempt).expect("a Retry-After");
    // HTTP dates have one-second resolution.
    assert!(
        after >= Duration::from_secs(28) && after <= Duration::from_secs(30),
        "{after:?}"
    );
}

#[tokio::test]
async fn retry_after_is_capped_and_read_on_any_retryable_status() {
    let (attempt, _server) =
        one(|| Reply::Status(500, vec![("retry-after", "86400".into())], String::new())).await;
    assert_eq!(retry_after_of(&attempt), Some(MAX_RETRY_AFTER));
    assert_eq!(MAX_RETRY_AFTER, Duration::from_secs(600));
}

#[tokio::test]
async fn client_errors_about_the_sender_are_refusals_with_status_and_body() {
    for (code, name, body) in [
        (401, "Unauthorized", "unknown key"),
        (403, "Forbidden", "host key not trusted"),
        (404, "Not Found", ""),
        (405, "Method Not Allowed", ""),
        (407, "Proxy Authentication Required", ""),
        (409, "Conflict", "x"),
        (415, "Unsupported Media Type", "gzip?"),
    ] {
        let (attempt, _server) =
            one(move || Reply::Status(code, Vec::new(), body.to_owned())).await;
        assert_eq!(
            attempt,
            Attempt::Refused {
                status: Some(code),
                reason: format!("{code} {name}: {body}")
            }
        );
    }
}

#[tokio::test]
async fn a_413_is_too_large_and_a_400_or_422_names_the_refused_events() {
    let (attempt, _server) = one(|| Reply::Status(413, Vec::new(), "max 60".into())).await;
    assert_eq!(
        attempt,
        Attempt::TooLarge {
            reason: "HTTP 413: max 60".into()
        }
    );
    let named = r#"{"error":"bad_request","rejected":[{"index":0,"reason":"no id"}]}"#;
    for code in [400, 422] {
        let (attempt, _server) = one(move || Reply::Status(code, Vec::new(), named.into())).await;
        assert_eq!(
            attempt,
            Attempt::Rejected {
                reason: format!("HTTP {code}: {named}"),
                events: vec![EventRejection {
                    index: 0,
                    reason: "no id".into()
                }]
            }
        );
    }
    let (attempt, _server) = one(|| Reply::Status(400, Vec::new(), "bad batch".into())).await;
    assert_eq!(
        attempt,
        Attempt::Rejected {
            reason: "HTTP 400: bad batch".into(),
            events: Vec::new()
        },
        "named nothing: the host bisects"
    );
}

#[tokio::test]
async fn tls_spoken_to_a_plain_http_port_is_a_refusal_not_an_outage() {
    let (attempt, server) = one(|| Reply::status(200)).await;
    assert_eq!(attempt, Attempt::Delivered);
    let https = server.url.replacen("http://", "https://", 1);
    match sink(&config(&https)).send("k", BODY).await {
        Attempt::Refused {
            status: None,
            reason,
        } => assert!(reason.starts_with("TLS handshake failed"), "{reason}"),
        other => panic!("expected a TLS refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn the_reason_keeps_only_the_first_200_bytes_of_the_body() {
    let long = "x".repeat(150) + &"y".repeat(5000);
    let (attempt, _server) = one(move || Reply::Status(422, Vec::new(), long.clone())).await;
    let expected = format!("HTTP 422: {}{}", "x".repeat(150), "y".repeat(50));
    assert_eq!(
        attempt,
        Attempt::Rejected {
            reason: expected,
            events: Vec::new()
        }
    );
}

#[tokio::test]
async fn redirects_are_not_followed_and_not_dead_lettered() {
    let (attempt, server) = one(|| {
        Reply::Status(
            302,
            vec![("location", "http://127.0.0.1:1/elsewhere".into())],
            String::new(),
        )
    })
    .await;
    match attempt {
        Attempt::Retry { reason, .. } => assert!(reason.starts_with("HTTP 302"), "{reason}"),
        other => panic!("expected Retry, got {other:?}"),
    }
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn connection_refused_is_retried() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let url = format!("http://127.0.0.1:{port}/ingest");
    match sink(&config(&url)).send("k", BODY).await {
        Attempt::Retry {
            reason,
            retry_after,
        } => {
            assert!(reason.starts_with("connect error"), "{reason}");
            assert!(!reason.contains("/ingest"), "URL leaked into {reason}");
            assert_eq!(retry_after, None);
        }
        other => panic!("expected Retry, got {other:?}"),
    }
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_into_a_retry() {
    let server = TestServer::start(|_| Reply::Hang).await;
    let mut config = config(&server.url);
    config.timeout = Duration::from_millis(200);
    let started = Instant::now();
    let attempt = sink(&config).send("k", BODY).await;
    let elapsed = started.elapsed();
    match attempt {
        Attempt::Retry { reason, .. } => assert!(reason.contains("timeout"), "{reason}"),
        other => panic!("expected Retry, got {other:?}"),
    }
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn an_unusable_batch_key_is_refused_without_a_request() {
    let (attempt, server) = one(|| Reply::status(200)).await;
    assert_eq!(attempt, Attempt::Delivered);
    let bad = sink(&config(&server.url)).send("line\nbreak", BODY).await;
    assert!(
        matches!(bad, Attempt::Refused { status: None, .. }),
        "held, never dropped: {bad:?}"
    );
    assert_eq!(server.count(), 1);
}
