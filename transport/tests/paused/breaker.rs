//! The breaker's state machine, step by step.

use std::time::Duration;

use halyard_transport::{Breaker, BreakerConfig, BreakerState, Transition};
use tokio::time::advance;

use BreakerState::*;

fn breaker() -> Breaker {
    Breaker::new(BreakerConfig {
        failure_threshold: 5,
        recovery_timeout: Duration::from_secs(30),
    })
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
