//! RedisStreamSink against a real redis-server on a free port.

#[path = "../support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use halyard_transport::{
    Attempt, CancellationToken, Outcome, RedisStreamConfig, RedisStreamSink, Sink,
};
use redis::AsyncCommands as _;
use redis::streams::StreamReadReply;
use support::{Broker, Kind, batch, delivery, events, wait_until};

const WAIT: Duration = Duration::from_secs(30);

fn config(broker: &Broker) -> RedisStreamConfig {
    let mut config = RedisStreamConfig::new(format!("redis://127.0.0.1:{}/0", broker.port));
    config.timeout_ms = 2_000;
    config
}

/// A consumer that reads a stream with XREAD from its last id.
struct Consumer {
    conn: redis::aio::MultiplexedConnection,
    stream: String,
    last: String,
}

impl Consumer {
    async fn new(broker: &Broker, stream: &str) -> Self {
        let client =
            redis::Client::open(format!("redis://127.0.0.1:{}/0", broker.port)).expect("client");
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        Self {
            conn,
            stream: stream.to_owned(),
            last: "0".to_owned(),
        }
    }

    /// Every entry after the last one read, as field maps.
    async fn read_new(&mut self) -> Vec<HashMap<String, String>> {
        let mut out = Vec::new();
        loop {
            let reply: StreamReadReply = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(500)
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(&self.last)
                .query_async(&mut self.conn)
                .await
                .expect("XREAD");
            let Some(key) = reply.keys.into_iter().next() else {
                return out;
            };
            if key.ids.is_empty() {
                return out;
            }
            for entry in key.ids {
                self.last = entry.id.clone();
                let fields = entry
                    .map
                    .iter()
                    .map(|(k, v)| {
                        let v: String = redis::from_redis_value_ref(v).expect("string field");
                        (k.clone(), v)
                    })
                    .collect();
                out.push(fields);
            }
        }
    }
}

fn ids(entries: &[HashMap<String, String>]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            let payload: serde_json::Value =
                serde_json::from_str(&e["payload"]).expect("payload is JSON");
            payload["id"].as_str().expect("id").to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_consumer_sees_every_event_once_per_send_in_the_wire_shape() {
    let broker = Broker::start(Kind::Redis);
    let mut config = config(&broker);
    config.lifecycle_stream = Some("halyard:lifecycle".into());
    let sink = RedisStreamSink::new(&config).expect("sink");
    let mut evs = events(0, 300);
    for (i, e) in evs.iter_mut().take(10).enumerate() {
        e["kind"] = "halyard.host.start".into();
        e["body"] = serde_json::json!({"schema_version": 1, "correlation_id": format!("c{i}")});
    }
    let body = batch("1-1", &evs);
    let mut events_consumer = Consumer::new(&broker, "halyard:events").await;
    let mut lifecycle_consumer = Consumer::new(&broker, "halyard:lifecycle").await;

    assert_eq!(sink.send("1-1", &body).await, Attempt::Delivered);
    let main = events_consumer.read_new().await;
    let life = lifecycle_consumer.read_new().await;
    assert_eq!((main.len(), life.len()), (290, 10));
    let mut all = ids(&main);
    all.extend(ids(&life));
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 300, "every event exactly once");

    let first = &main[0];
    assert_eq!(first["schema_version"], "1");
    assert_eq!(first["kind"], "temp");
    assert_eq!(first["ts"], "2026-11-23T10:00:00.000Z");
    assert_eq!(first["correlation_id"], format!("{:032x}", 11));
    assert_eq!(life[3]["correlation_id"], "c3");
    assert_eq!(life[3]["kind"], "halyard.host.start");

    // A resend (after an ambiguous failure) appends again: Redis has no
    // idempotent XADD, so the consumer sees each event a second time.
    assert_eq!(sink.send("1-1", &body).await, Attempt::Delivered);
    assert_eq!(events_consumer.read_new().await.len(), 290);
    assert_eq!(lifecycle_consumer.read_new().await.len(), 10);
    assert!(events_consumer.read_new().await.is_empty());
}

#[tokio::test]
async fn maxlen_trims_and_bad_content_is_rejected() {
    let broker = Broker::start(Kind::Redis);
    let mut config = config(&broker);
    config.max_len = 100;
    let sink = RedisStreamSink::new(&config).expect("sink");
    for n in 0..5 {
        let body = batch(&format!("2-{n}"), &events(n * 200, 200));
        assert_eq!(sink.send("k", &body).await, Attempt::Delivered);
    }
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{}/0", broker.port))
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let len: u64 = conn.xlen("halyard:events").await.expect("XLEN");
    assert!(
        (100..1000).contains(&len),
        "MAXLEN ~ 100 left {len} of 1000"
    );
    assert!(matches!(
        sink.send("k", b"not json").await,
        Attempt::Rejected { events, .. } if events.is_empty()
    ));
    // A key of the wrong type is configuration to fix: held, not retried blindly.
    let _: () = conn.set("halyard:events", "x").await.expect("SET");
    let body = batch("3", &events(0, 1));
    let attempt = sink.send("k", &body).await;
    assert!(matches!(attempt, Attempt::Refused { .. }), "{attempt:?}");
}

#[tokio::test]
async fn a_redis_down_at_start_and_killed_mid_run_loses_nothing() {
    let mut broker = Broker::start(Kind::RedisDurable);
    broker.kill();
    let sink = RedisStreamSink::new(&config(&broker)).expect("sink while Redis is down");
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
    // Down at start: attempts fail and are retried.
    wait_until(WAIT, "failed attempts while Redis is down", || async {
        delivery.stats().snapshot().batches_failed >= 2
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
    let outcomes = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("all batches within 60 s")
        .expect("task");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Delivered { .. })),
        "{outcomes:?}"
    );
    let entries = Consumer::new(&broker, "halyard:events")
        .await
        .read_new()
        .await;
    let mut seen = ids(&entries);
    let total = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), BATCHES * PER, "no event lost");
    // Only the batch in flight at the kill can be appended twice.
    assert!(
        total - seen.len() <= PER,
        "{} duplicates",
        total - seen.len()
    );
    shutdown.cancel();
}
