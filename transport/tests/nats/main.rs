//! NatsSink against a real `nats-server -js` on a free port.

#[path = "../support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use halyard_transport::{
    Attempt, CancellationToken, NatsConfig, NatsSink, NatsStream, Outcome, Sink,
};
use support::{Broker, Kind, batch, delivery, events, wait_until};

const WAIT: Duration = Duration::from_secs(30);

fn config(broker: &Broker) -> NatsConfig {
    let mut config = NatsConfig::new(format!("nats://127.0.0.1:{}", broker.port));
    config.ack_timeout_ms = 2_000;
    config.create_stream = Some(NatsStream {
        name: "HALYARD".into(),
        subjects: vec!["halyard.>".into()],
        duplicate_window_ms: 600_000,
    });
    config
}

async fn stream(broker: &Broker) -> jetstream::stream::Stream {
    let client = async_nats::connect(format!("127.0.0.1:{}", broker.port))
        .await
        .expect("connect");
    jetstream::new(client)
        .get_stream("HALYARD")
        .await
        .expect("stream exists")
}

async fn messages(broker: &Broker) -> u64 {
    stream(broker)
        .await
        .info()
        .await
        .expect("stream info")
        .state
        .messages
}

#[tokio::test]
async fn a_resent_batch_adds_zero_duplicates() {
    let broker = Broker::start(Kind::Nats);
    let sink = NatsSink::new(&config(&broker)).expect("sink");
    let body = batch("1-1", &events(0, 300));
    assert_eq!(sink.send("1-1", &body).await, Attempt::Delivered);
    assert_eq!(messages(&broker).await, 300);
    assert_eq!(sink.duplicates(), 0);

    assert_eq!(sink.send("1-1", &body).await, Attempt::Delivered);
    assert_eq!(
        messages(&broker).await,
        300,
        "JetStream dropped every resent event"
    );
    assert_eq!(sink.duplicates(), 300);

    let first = stream(&broker)
        .await
        .get_raw_message(1)
        .await
        .expect("seq 1");
    assert_eq!(first.subject.as_str(), "halyard.edge-1.temp");
    let event: serde_json::Value = serde_json::from_slice(&first.payload).expect("JSON");
    assert_eq!(event["id"], format!("{:032x}", 1));
    let headers = first.headers;
    assert_eq!(
        headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        Some(format!("{:032x}", 1).as_str())
    );
}

#[tokio::test]
async fn a_stream_with_another_duplicate_window_is_refused() {
    let broker = Broker::start(Kind::Nats);
    let mut first = config(&broker);
    first.create_stream = Some(NatsStream {
        name: "HALYARD".into(),
        subjects: vec!["halyard.>".into()],
        duplicate_window_ms: 1_000,
    });
    let body = batch("1", &events(0, 1));
    assert_eq!(
        NatsSink::new(&first).expect("sink").send("1", &body).await,
        Attempt::Delivered
    );
    let attempt = NatsSink::new(&config(&broker))
        .expect("sink")
        .send("1", &body)
        .await;
    assert!(matches!(attempt, Attempt::Refused { .. }), "{attempt:?}");
    // No stream for the subject at all: configuration to fix, held.
    let mut none = config(&broker);
    none.create_stream = None;
    none.subject = "elsewhere.{kind}".into();
    let attempt = NatsSink::new(&none).expect("sink").send("1", &body).await;
    assert!(matches!(attempt, Attempt::Refused { .. }), "{attempt:?}");
}

#[tokio::test]
async fn a_server_down_at_start_and_killed_mid_run_loses_and_duplicates_nothing() {
    let mut broker = Broker::start(Kind::Nats);
    broker.kill();
    let sink = NatsSink::new(&config(&broker)).expect("sink while NATS is down");
    let delivery = Arc::new(delivery(sink));
    let shutdown = CancellationToken::new();
    const BATCHES: usize = 40;
    const PER: usize = 50;
    let task = {
        let delivery = Arc::clone(&delivery);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for b in 0..BATCHES {
                let body = batch(&format!("4-{b}"), &events(b * PER, PER));
                outcomes.push(delivery.deliver(&format!("4-{b}"), &body, &shutdown).await);
            }
            outcomes
        })
    };
    wait_until(WAIT, "failed attempts while NATS is down", || async {
        delivery.stats().snapshot().batches_failed >= 1
    })
    .await;
    broker.restart();
    wait_until(WAIT, "10 batches delivered", || async {
        delivery.stats().snapshot().batches_sent >= 10
    })
    .await;
    broker.kill();
    let failed = delivery.stats().snapshot().batches_failed;
    wait_until(WAIT, "failures after the kill", || async {
        delivery.stats().snapshot().batches_failed > failed
    })
    .await;
    broker.restart();
    let outcomes = tokio::time::timeout(Duration::from_secs(90), task)
        .await
        .expect("all batches within 90 s")
        .expect("task");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Delivered { .. })),
        "{outcomes:?}"
    );
    assert_eq!(
        messages(&broker).await,
        (BATCHES * PER) as u64,
        "every event exactly once"
    );
    shutdown.cancel();
}
