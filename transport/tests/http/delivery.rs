//! Delivery end to end against a real server, in real (short) time.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use halyard_transport::{
    Attempt, Backoff, Breaker, BreakerConfig, BreakerState, CancellationToken, Delivery, HttpSink,
    Outcome, RetryConfig, Sink, Transition, TransportStats,
};
use tokio::sync::mpsc;

use crate::server::{Reply, TestServer};
use crate::{config, sink};

const BODY: &[u8] = br#"{"batch_id":"7-1","host":{"id":"h","version":"0"},"events":[]}"#;
const WAIT: Duration = Duration::from_secs(10);

fn small_backoff() -> Backoff {
    Backoff::seeded(
        RetryConfig {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(40),
            multiplier: 2.0,
        },
        11,
    )
}

fn delivery<S: Sink>(sink: S, breaker: BreakerConfig) -> Delivery<S> {
    Delivery::new(sink, small_backoff(), Breaker::new(breaker))
}

#[tokio::test]
async fn three_server_errors_then_ok_is_delivered_on_the_fourth_attempt() {
    let server = TestServer::start(|n| {
        if n < 3 {
            Reply::status(500)
        } else {
            Reply::status(200)
        }
    })
    .await;
    let delivery = delivery(sink(&config(&server.url)), BreakerConfig::default());
    let outcome = delivery
        .deliver("7-1", BODY, &CancellationToken::new())
        .await;
    assert_eq!(outcome, Outcome::Delivered { attempts: 4 });
    let requests = server.requests();
    assert_eq!(requests.len(), 4);
    for request in &requests {
        assert_eq!(request.headers["idempotency-key"], "7-1");
    }
    let stats = delivery.stats().snapshot();
    assert_eq!(
        (
            stats.batches_sent,
            stats.batches_failed,
            stats.retries,
            stats.dead_lettered
        ),
        (1, 3, 3, 0)
    );
    assert_eq!(stats.bytes_sent, BODY.len() as u64);
    assert_eq!(stats.breaker_state, BreakerState::Closed);
}

#[tokio::test]
async fn a_content_refusal_is_handed_back_after_exactly_one_request() {
    let server =
        TestServer::start(|_| Reply::Status(400, Vec::new(), "schema mismatch".into())).await;
    let delivery = delivery(sink(&config(&server.url)), BreakerConfig::default());
    let outcome = delivery
        .deliver("7-1", BODY, &CancellationToken::new())
        .await;
    assert_eq!(
        outcome,
        Outcome::Rejected {
            reason: "HTTP 400: schema mismatch".into(),
            events: Vec::new(),
            attempts: 1
        }
    );
    assert_eq!(server.count(), 1);
    let stats = delivery.stats().snapshot();
    assert_eq!((stats.dead_lettered, stats.batches_sent), (0, 0));
    assert_eq!(delivery.breaker().consecutive_failures(), 0);
}

async fn next(transitions: &mut tokio::sync::broadcast::Receiver<Transition>) -> Transition {
    tokio::time::timeout(WAIT, transitions.recv())
        .await
        .expect("transition in time")
        .expect("channel open")
}

#[tokio::test]
async fn no_request_reaches_the_server_while_the_breaker_is_open() {
    // The server notes the breaker's state as each request arrives.
    let stats: Arc<OnceLock<Arc<TransportStats>>> = Arc::default();
    let states_seen: Arc<Mutex<Vec<BreakerState>>> = Arc::default();
    let server = {
        let (stats, states_seen) = (Arc::clone(&stats), Arc::clone(&states_seen));
        TestServer::start(move |_| {
            let state = stats.get().expect("stats set").breaker_state();
            states_seen.lock().expect("lock").push(state);
            Reply::status(500)
        })
        .await
    };
    let breaker = BreakerConfig {
        failure_threshold: 3,
        recovery_timeout: Duration::from_secs(2),
        first_probe: Duration::from_secs(2),
    };
    let delivery = Arc::new(delivery(sink(&config(&server.url)), breaker));
    assert!(stats.set(Arc::clone(delivery.stats())).is_ok());
    let mut transitions = delivery.breaker().subscribe();
    let shutdown = CancellationToken::new();
    let task = {
        let (delivery, shutdown) = (Arc::clone(&delivery), shutdown.clone());
        tokio::spawn(async move { delivery.deliver("7-1", BODY, &shutdown).await })
    };

    use BreakerState::*;
    assert_eq!(
        next(&mut transitions).await,
        Transition {
            from: Closed,
            to: Open
        }
    );
    assert_eq!(server.count(), 3, "the third failure opened the circuit");
    assert_eq!(
        next(&mut transitions).await,
        Transition {
            from: Open,
            to: HalfOpen
        }
    );
    assert_eq!(
        next(&mut transitions).await,
        Transition {
            from: HalfOpen,
            to: Open
        }
    );
    assert_eq!(server.count(), 4, "exactly one probe");
    shutdown.cancel();
    let outcome = tokio::time::timeout(WAIT, task)
        .await
        .expect("prompt")
        .expect("no panic");
    assert_eq!(outcome, Outcome::NotSent { attempts: 4 });
    assert_eq!(server.count(), 4);
    assert_eq!(
        *states_seen.lock().expect("lock"),
        [Closed, Closed, Closed, HalfOpen]
    );
    assert_eq!(delivery.stats().snapshot().batches_failed, 4);
}

/// Reports every attempt's result to the test as soon as it is known.
struct Observed<S> {
    inner: S,
    tx: mpsc::UnboundedSender<Attempt>,
}

impl<S: Sink> Sink for Observed<S> {
    async fn send(&self, batch_key: &str, body: &[u8]) -> Attempt {
        let attempt = self.inner.send(batch_key, body).await;
        let _ = self.tx.send(attempt.clone());
        attempt
    }
}

#[tokio::test]
async fn shutdown_during_backoff_returns_not_sent_promptly() {
    // Retry-After: 600 makes the backoff ten minutes long.
    let server = TestServer::start(|_| {
        Reply::Status(503, vec![("retry-after", "600".into())], String::new())
    })
    .await;
    let (tx, mut attempts) = mpsc::unbounded_channel();
    let observed = Observed {
        inner: sink(&config(&server.url)),
        tx,
    };
    let delivery = Arc::new(delivery(observed, BreakerConfig::default()));
    let shutdown = CancellationToken::new();
    let task = {
        let (delivery, shutdown) = (Arc::clone(&delivery), shutdown.clone());
        tokio::spawn(async move { delivery.deliver("7-1", BODY, &shutdown).await })
    };
    let first = tokio::time::timeout(WAIT, attempts.recv())
        .await
        .expect("attempt in time");
    assert!(
        matches!(first, Some(Attempt::Retry { retry_after: Some(d), .. }) if d == Duration::from_secs(600))
    );
    // The loop is now in its ten-minute wait.
    let cancelled_at = Instant::now();
    shutdown.cancel();
    let outcome = tokio::time::timeout(WAIT, task)
        .await
        .expect("prompt")
        .expect("no panic");
    assert_eq!(outcome, Outcome::NotSent { attempts: 1 });
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(1),
        "{:?}",
        cancelled_at.elapsed()
    );
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn shutdown_interrupts_a_request_in_flight() {
    let server = TestServer::start(|_| Reply::Hang).await;
    let mut config = config(&server.url);
    config.timeout = Duration::from_secs(60);
    let delivery = Arc::new(delivery(
        HttpSink::new(&config).expect("valid"),
        BreakerConfig::default(),
    ));
    let shutdown = CancellationToken::new();
    let task = {
        let (delivery, shutdown) = (Arc::clone(&delivery), shutdown.clone());
        tokio::spawn(async move { delivery.deliver("7-1", BODY, &shutdown).await })
    };
    server.wait_for(1).await;
    shutdown.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("prompt")
        .expect("no panic");
    assert_eq!(outcome, Outcome::NotSent { attempts: 1 });
    assert_eq!(delivery.breaker().state(), BreakerState::Closed);
}
