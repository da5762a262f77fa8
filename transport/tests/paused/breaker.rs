//! The breaker's state machine, step by step.

use std::time::Duration;

use halyard_transport::{Breaker, BreakerConfig, BreakerState, Transition};
use tokio::time::advance;

use BreakerState::*;

fn breaker() -> Breaker {
    // A flat 30 s open interval: the state machine alone.
    Breaker::new(BreakerConfig {
        failure_threshold: 5,
        recovery_timeout: Duration::from_secs(30),
        first_probe: Duration::from_secs(30),
    })
}

/// How long the breaker stays open before the next probe, by failing the
/// probe each time: `first_probe`, doubled per failed probe, capped.
async fn open_intervals(breaker: &Breaker, n: usize) -> Vec<Duration> {
    let mut intervals = Vec::new();
    for _ in 0..n {
        assert_eq!(breaker.state(), Open);
        let opened = tokio::time::Instant::now();
        while breaker.state() == Open {
            advance(Duration::from_millis(100)).await;
        }
        intervals.push(opened.elapsed());
        assert!(breaker.allow(), "the probe");
        breaker.on_failure();
    }
    intervals
}

#[tokio::test(start_paused = true)]
async fn the_probe_interval_grows_from_one_second_to_the_recovery_timeout() {
    let breaker = Breaker::new(BreakerConfig::default());
    assert_eq!(breaker.config().recovery_timeout, Duration::from_secs(5));
    for _ in 0..5 {
        breaker.on_failure();
    }
    let secs = |s: &[u64]| {
        s.iter()
            .map(|&s| Duration::from_secs(s))
            .collect::<Vec<_>>()
    };
    assert_eq!(open_intervals(&breaker, 6).await, secs(&[1, 2, 4, 5, 5, 5]));
    // A success ends the outage: the next one starts from 1 s again.
    advance(Duration::from_secs(5)).await;
    assert!(breaker.allow());
    breaker.on_success();
    breaker.trip();
    assert_eq!(open_intervals(&breaker, 2).await, secs(&[1, 2]));
}

#[tokio::test(start_paused = true)]
async fn a_trip_opens_at_once_and_does_not_restart_an_open_timer() {
    let breaker = Breaker::new(BreakerConfig::default());
    breaker.trip();
    assert_eq!(breaker.state(), Open);
    advance(Duration::from_millis(600)).await;
    breaker.trip();
    advance(Duration::from_millis(400)).await;
    assert_eq!(breaker.state(), HalfOpen, "still 1 s from the first trip");
}

#[tokio::test(start_paused = true)]
async fn full_cycle_with_exact_notifications() {
    let breaker = breaker();
    let mut transitions = breaker.subscribe();

    for n in 1..=4 {
        assert!(breaker.allow());
        breaker.on_failure();
        assert_eq!(
            (breaker.state(), breaker.consecutive_failures()),
            (Closed, n)
        );
    }
    assert!(breaker.allow());
    breaker.on_failure();
    assert_eq!(breaker.state(), Open);
    assert!(!breaker.allow());

    advance(Duration::from_secs(29)).await;
    assert_eq!(breaker.state(), Open);
    assert!(!breaker.allow());
    advance(Duration::from_secs(1)).await;
    assert_eq!(breaker.state(), HalfOpen);
    assert!(breaker.allow(), "the probe");
    assert!(!breaker.allow(), "only one probe");
    assert!(!breaker.allow(), "only one probe");

    breaker.on_failure();
    assert_eq!(breaker.state(), Open);
    assert!(!breaker.allow());
    advance(Duration::from_secs(29)).await;
    assert_eq!(
        breaker.state(),
        Open,
        "the timer restarted at the failed probe"
    );
    advance(Duration::from_secs(1)).await;
    assert_eq!(breaker.state(), HalfOpen);
    assert!(breaker.allow());
    breaker.on_success();
    assert_eq!(
        (breaker.state(), breaker.consecutive_failures()),
        (Closed, 0)
    );
    assert!(
        breaker.allow() && breaker.allow(),
        "closed lets everything through"
    );

    let mut seen = vec![Closed];
    while let Ok(Transition { from, to }) = transitions.try_recv() {
        assert_eq!(Some(&from), seen.last());
        seen.push(to);
    }
    assert_eq!(seen, [Closed, Open, HalfOpen, Open, HalfOpen, Closed]);
    let names: Vec<_> = seen.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        names,
        ["closed", "open", "half_open", "open", "half_open", "closed"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_failure_count() {
    let breaker = breaker();
    for _ in 0..4 {
        breaker.on_failure();
    }
    breaker.on_success();
    for _ in 0..4 {
        breaker.on_failure();
    }
    assert_eq!(
        (breaker.state(), breaker.consecutive_failures()),
        (Closed, 4)
    );
    breaker.on_failure();
    assert_eq!(breaker.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn a_straggling_failure_does_not_extend_an_open_circuit() {
    let breaker = breaker();
    for _ in 0..5 {
        breaker.on_failure();
    }
    advance(Duration::from_secs(20)).await;
    breaker.on_failure();
    advance(Duration::from_secs(10)).await;
    assert_eq!(breaker.state(), HalfOpen);
}

#[test]
fn states_serialize_by_their_metric_names() {
    for state in [Closed, Open, HalfOpen] {
        let json = serde_json::to_string(&state).expect("serialize");
        assert_eq!(json, format!("\"{}\"", state.as_str()));
        assert_eq!(
            serde_json::from_str::<BreakerState>(&json).expect("parse"),
            state
        );
    }
}
