//! The delivery loop's timing and bookkeeping, with a scripted sink.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use halyard_transport::{
    Attempt, Backoff, Breaker, BreakerConfig, BreakerState, CancellationToken, Delivery,
    EventRejection, Outcome, RetryConfig, Sink, Transition,
};
use tokio::sync::Notify;
use tokio::time::Instant;

use BreakerState::*;

/// What the scripted sink does on one call.
enum Step {
    Answer(Attempt),
    /// Wait for the gate, then answer.
    Gated(Arc<Notify>, Attempt),
    /// Never answer.
    Hang,
}

/// Plays a script, then repeats `otherwise`; records when each call came.
struct Scripted {
    script: Mutex<VecDeque<Step>>,
    otherwise: Attempt,
    calls: Mutex<Vec<Instant>>,
    called: Notify,
}

impl Scripted {
    fn new(script: Vec<Step>, otherwise: Attempt) -> Self {
        Self {
            script: Mutex::new(script.into()),
            otherwise,
            calls: Mutex::default(),
            called: Notify::new(),
        }
    }

    fn calls(&self) -> Vec<Instant> {
        self.calls.lock().expect("lock").clone()
    }

    async fn wait_for_calls(&self, n: usize) {
        loop {
            let called = self.called.notified();
            if self.calls().len() >= n {
                return;
            }
            called.await;
        }
    }
}

impl Sink for Scripted {
    async fn send(&self, _batch_key: &str, _body: &[u8]) -> Attempt {
        self.calls.lock().expect("lock").push(Instant::now());
        self.called.notify_waiters();
        let step = self.script.lock().expect("lock").pop_front();
        match step {
            None => self.otherwise.clone(),
            Some(Step::Answer(attempt)) => attempt,
            Some(Step::Gated(gate, attempt)) => {
                gate.notified().await;
                attempt
            }
            Some(Step::Hang) => std::future::pending().await,
        }
    }
}

fn fail() -> Attempt {
    Attempt::retry("HTTP 503: down")
}

fn tiny_backoff() -> Backoff {
    let tiny = Duration::from_millis(1);
    Backoff::seeded(
        RetryConfig {
            initial: tiny,
            max: tiny,
            multiplier: 2.0,
        },
        5,
    )
}

fn delivery(script: Vec<Step>, otherwise: Attempt, threshold: u32) -> Arc<Delivery<Scripted>> {
    // A flat 30 s open interval, so the timings below are the breaker's
    // recovery timeout; the growing interval is tested in breaker.rs.
    let breaker = Breaker::new(BreakerConfig {
        failure_threshold: threshold,
        recovery_timeout: Duration::from_secs(30),
        first_probe: Duration::from_secs(30),
    });
    Arc::new(Delivery::new(
        Scripted::new(script, otherwise),
        tiny_backoff(),
        breaker,
    ))
}

fn spawn(
    delivery: &Arc<Delivery<Scripted>>,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<Outcome> {
    let (delivery, shutdown) = (Arc::clone(delivery), shutdown.clone());
    tokio::spawn(async move { delivery.deliver("k", b"{}", &shutdown).await })
}

const SLACK: Duration = Duration::from_millis(2);

#[tokio::test(start_paused = true)]
async fn waits_out_the_open_breaker_and_probes_once_per_recovery_timeout() {
    let script = vec![
        Step::Answer(fail()),
        Step::Answer(fail()),
        Step::Answer(fail()),
    ];
    let delivery = delivery(script, Attempt::Delivered, 2);
    let mut transitions = delivery.breaker().subscribe();
    let outcome = delivery
        .deliver("k", b"{}", &CancellationToken::new())
        .await;
    assert_eq!(outcome, Outcome::Delivered { attempts: 4 });

    let t = delivery.sink().calls();
    assert_eq!(t.len(), 4);
    assert!(
        t[1] - t[0] <= SLACK,
        "closed: only the backoff between attempts"
    );
    let thirty = Duration::from_secs(30);
    for (probe, opened) in [(t[2], t[1]), (t[3], t[2])] {
        let gap = probe - opened;
        assert!(gap >= thirty && gap <= thirty + SLACK, "{gap:?}");
    }
    let mut seen = Vec::new();
    while let Ok(Transition { to, .. }) = transitions.try_recv() {
        seen.push(to);
    }
    assert_eq!(seen, [Open, HalfOpen, Open, HalfOpen, Closed]);
    let stats = delivery.stats().snapshot();
    assert_eq!(
        (stats.batches_sent, stats.batches_failed, stats.retries),
        (1, 3, 3)
    );
    assert_eq!(stats.bytes_sent, 2);
    assert_eq!(stats.breaker_state, Closed);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_a_floor_and_is_capped_at_ten_minutes() {
    let hinted = |secs| Attempt::Retry {
        reason: "HTTP 429: slow down".into(),
        retry_after: Some(Duration::from_secs(secs)),
    };
    let delivery = delivery(
        vec![Step::Answer(hinted(7)), Step::Answer(hinted(86_400))],
        Attempt::Delivered,
        5,
    );
    let outcome = delivery
        .deliver("k", b"{}", &CancellationToken::new())
        .await;
    assert_eq!(outcome, Outcome::Delivered { attempts: 3 });
    let t = delivery.sink().calls();
    assert_eq!(t[1] - t[0], Duration::from_secs(7));
    assert_eq!(t[2] - t[1], Duration::from_secs(600));
}

#[tokio::test(start_paused = true)]
async fn a_413_in_half_open_closes_the_breaker_and_hands_the_batch_back_to_split() {
    let too_large = Attempt::TooLarge {
        reason: "HTTP 413: too big".into(),
    };
    let delivery = delivery(vec![Step::Answer(fail())], too_large, 1);
    let outcome = delivery
        .deliver("k", b"{}", &CancellationToken::new())
        .await;
    assert_eq!(
        outcome,
        Outcome::TooLarge {
            reason: "HTTP 413: too big".into(),
            attempts: 2
        }
    );
    assert_eq!(delivery.breaker().state(), Closed);
    let stats = delivery.stats().snapshot();
    assert_eq!(
        (
            stats.dead_lettered,
            stats.batches_failed,
            stats.batches_sent
        ),
        (0, 2, 0),
        "the transport itself never dead-letters"
    );
}

#[tokio::test(start_paused = true)]
async fn a_sender_refusal_holds_the_batch_opens_the_breaker_at_once_and_ends_on_success() {
    let refused = || {
        Step::Answer(Attempt::Refused {
            status: Some(401),
            reason: "401 Unauthorized: wrong key".into(),
        })
    };
    // Threshold 5, yet the first refusal opens the breaker.
    let delivery = delivery(vec![refused(), refused(), refused()], Attempt::Delivered, 5);
    let mut refusals = delivery.stats().subscribe_refusals();
    let shutdown = CancellationToken::new();
    let task = spawn(&delivery, &shutdown);
    delivery.sink().wait_for_calls(1).await;
    refusals.changed().await.expect("refusal published");
    let refusal = refusals.borrow_and_update().clone().expect("a refusal");
    assert_eq!(refusal.status, Some(401));
    assert_eq!(delivery.stats().refusal(), Some(refusal));
    assert_eq!(delivery.breaker().state(), Open);

    let outcome = task.await.expect("task");
    assert_eq!(outcome, Outcome::Delivered { attempts: 4 });
    // Each probe after one open interval (30 s here), never sooner.
    let t = delivery.sink().calls();
    for pair in t.windows(2) {
        assert_eq!(pair[1] - pair[0], Duration::from_secs(30));
    }
    assert_eq!(delivery.stats().refusal(), None, "over once delivered");
    assert!(
        refusals.has_changed().expect("open"),
        "the end is published"
    );
    let stats = delivery.stats().snapshot();
    assert_eq!(
        (stats.refused, stats.dead_lettered, stats.batches_sent),
        (3, 0, 1)
    );
    assert_eq!(delivery.breaker().state(), Closed);
}

#[tokio::test(start_paused = true)]
async fn a_content_rejection_is_returned_with_the_named_events() {
    let rejected = Attempt::Rejected {
        reason: "HTTP 400: bad".into(),
        events: vec![EventRejection {
            index: 2,
            reason: "no id".into(),
        }],
    };
    let delivery = delivery(Vec::new(), rejected, 1);
    let outcome = delivery
        .deliver("k", b"{}", &CancellationToken::new())
        .await;
    assert_eq!(
        outcome,
        Outcome::Rejected {
            reason: "HTTP 400: bad".into(),
            events: vec![EventRejection {
                index: 2,
                reason: "no id".into()
            }],
            attempts: 1
        }
    );
    assert_eq!(delivery.breaker().state(), Closed, "the hub is up");
}

#[tokio::test(start_paused = true)]
async fn shutdown_while_the_breaker_is_open_is_immediate() {
    let delivery = delivery(Vec::new(), fail(), 1);
    let shutdown = CancellationToken::new();
    let task = spawn(&delivery, &shutdown);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(delivery.breaker().state(), Open);
    let cancelled_at = Instant::now();
    shutdown.cancel();
    assert_eq!(
        task.await.expect("no panic"),
        Outcome::NotSent { attempts: 1 }
    );
    assert_eq!(cancelled_at.elapsed(), Duration::ZERO);
    assert_eq!(delivery.sink().calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_already_cancelled_shutdown_sends_nothing() {
    let delivery = delivery(Vec::new(), Attempt::Delivered, 5);
    let shutdown = CancellationToken::new();
    shutdown.cancel();
    assert_eq!(
        delivery.deliver("k", b"{}", &shutdown).await,
        Outcome::NotSent { attempts: 0 }
    );
    assert!(delivery.sink().calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn concurrent_batches_share_one_probe() {
    let gate = Arc::new(Notify::new());
    let script = vec![
        Step::Answer(fail()),
        Step::Gated(Arc::clone(&gate), Attempt::Delivered),
    ];
    let delivery = delivery(script, Attempt::Delivered, 1);
    let shutdown = CancellationToken::new();
    let first = spawn(&delivery, &shutdown);
    delivery.sink().wait_for_calls(1).await;
    // The circuit is open; three more batches queue behind it.
    let others: Vec<_> = (0..3).map(|_| spawn(&delivery, &shutdown)).collect();
    delivery.sink().wait_for_calls(2).await;
    assert_eq!(delivery.breaker().state(), HalfOpen);
    // While the probe hangs, nobody else may send, however long it takes.
    tokio::time::advance(Duration::from_secs(300)).await;
    assert_eq!(delivery.sink().calls().len(), 2);
    gate.notify_one();
    let mut attempts = vec![first.await.expect("no panic")];
    for task in others {
        attempts.push(task.await.expect("no panic"));
    }
    let delivered = |n| Outcome::Delivered { attempts: n };
    assert!(attempts.contains(&delivered(2)), "{attempts:?}");
    assert_eq!(
        attempts.iter().filter(|o| **o == delivered(1)).count(),
        3,
        "{attempts:?}"
    );
    assert_eq!(delivery.sink().calls().len(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_probe_abandoned_on_shutdown_lets_another_batch_probe() {
    let script = vec![Step::Answer(fail()), Step::Hang];
    let delivery = delivery(script, Attempt::Delivered, 1);
    let (stop_first, keep_going) = (CancellationToken::new(), CancellationToken::new());
    let first = spawn(&delivery, &stop_first);
    // Call 1 fails and opens the circuit; call 2 is the first batch's probe,
    // which hangs.
    delivery.sink().wait_for_calls(2).await;
    let second = spawn(&delivery, &keep_going);
    tokio::time::advance(Duration::from_secs(120)).await;
    assert_eq!(
        delivery.sink().calls().len(),
        2,
        "the second batch waits for the probe"
    );
    stop_first.cancel();
    assert_eq!(
        first.await.expect("no panic"),
        Outcome::NotSent { attempts: 2 }
    );
    assert_eq!(
        second.await.expect("no panic"),
        Outcome::Delivered { attempts: 1 }
    );
    assert_eq!(delivery.breaker().state(), Closed);
    assert_eq!(delivery.sink().calls().len(), 3);
}

/// A retry-settings reload reaches a batch already waiting out a long
/// backoff: the wait is re-drawn from the new curve instead of being sat
/// out (config reload applies `[retry]` live).
#[tokio::test(start_paused = true)]
async fn new_retry_settings_cut_short_a_wait_drawn_from_the_old_curve() {
    let hour = Duration::from_secs(3600);
    let breaker = Breaker::new(BreakerConfig {
        failure_threshold: 100,
        ..BreakerConfig::default()
    });
    let slow = RetryConfig {
        initial: hour,
        max: hour,
        multiplier: 1.0,
    };
    // Seed 5 draws a first delay of many minutes from the one-hour curve.
    let delivery = Arc::new(Delivery::new(
        Scripted::new(vec![Step::Answer(fail())], Attempt::Delivered),
        Backoff::seeded(slow.clone(), 5),
        breaker,
    ));
    assert!(delivery.backoff().ceiling(0) == hour);
    let shutdown = CancellationToken::new();
    let task = spawn(&delivery, &shutdown);
    delivery.sink().wait_for_calls(1).await;
    // The failure is counted just before the delay is drawn and the wait
    // begins, with no await in between: once the count shows, the
    // delivery is waiting (this runtime has one thread).
    for _ in 0..1000 {
        if delivery.stats().snapshot().batches_failed == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(delivery.stats().snapshot().batches_failed, 1);
    assert_eq!(
        delivery.sink().calls().len(),
        1,
        "still waiting on the old curve"
    );

    let tiny = Duration::from_millis(10);
    delivery.backoff().set_config(RetryConfig {
        initial: tiny,
        max: tiny,
        multiplier: 2.0,
    });
    let outcome = task.await.expect("task");
    assert_eq!(outcome, Outcome::Delivered { attempts: 2 });
    let t = delivery.sink().calls();
    assert!(
        t[1] - t[0] <= tiny + SLACK,
        "retried {:?} after the failure",
        t[1] - t[0]
    );
    assert_eq!(delivery.backoff().config().max, tiny);
}
