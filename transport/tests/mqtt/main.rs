//! MqttSink against a real mosquitto on a free port.

#[path = "../support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use halyard_transport::{
    Attempt, CancellationToken, MqttConfig, MqttPer, MqttSink, MqttTls, Outcome, Secret, Sink,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use support::{Broker, Kind, batch, delivery, events, wait_until};
use tokio::sync::{mpsc, watch};

const WAIT: Duration = Duration::from_secs(30);

fn config(broker: &Broker) -> MqttConfig {
    let mut config = MqttConfig::new("127.0.0.1", broker.port);
    config.ack_timeout_ms = 2_000;
    config.keep_alive_secs = 5;
    config
}

/// A QoS 1 subscriber to `halyard/#`; `persistent` keeps its session (and
/// queued messages) across its own and the broker's restarts.
struct Subscriber {
    rx: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    task: tokio::task::JoinHandle<()>,
    _client: AsyncClient,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscriber {
    async fn start(broker: &Broker, id: &str, persistent: bool) -> Self {
        let mut options = MqttOptions::new(id, "127.0.0.1", broker.port);
        options
            .set_clean_session(!persistent)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        client
            .subscribe("halyard/#", QoS::AtLeastOnce)
            .await
            .expect("subscribe request");
        let (tx, rx) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send((p.topic, p.payload.to_vec()));
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(true);
                    }
                    Ok(_) => {}
                    // The broker is down: poll again after a pause, which
                    // reconnects (bounded by the test's own deadlines).
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(WAIT, subscribed.wait_for(|s| *s))
            .await
            .expect("SUBACK in time")
            .expect("subscriber task alive");
        Self {
            rx,
            task,
            _client: client,
        }
    }

    /// Receives until `n` messages arrived (failing after `WAIT`).
    async fn take(&mut self, n: usize) -> Vec<(String, Vec<u8>)> {
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            match tokio::time::timeout(WAIT, self.rx.recv()).await {
                Ok(Some(message)) => got.push(message),
                _ => panic!("only {} of {n} messages arrived", got.len()),
            }
        }
        got
    }

    /// Proves nothing more is queued: publishes a marker through `sink`
    /// and expects it to be the very next message.
    async fn assert_nothing_more(&mut self, sink: &MqttSink) {
        let marker = serde_json::json!({"id": "ff", "time_ns": 0, "source": "t", "kind": "marker"});
        let body = batch("marker", &[marker]);
        assert_eq!(sink.send("marker", &body).await, Attempt::Delivered);
        let next = self.take(1).await;
        assert_eq!(
            next[0].0, "halyard/edge-1/marker",
            "an extra message arrived first"
        );
    }
}

/// The batch (of 50) an event id from `events` was sent in.
fn batch_of(id: &str) -> usize {
    let seq = usize::from_str_radix(id, 16).expect("hex id") - 1;
    seq / 50
}

fn ids(messages: &[(String, Vec<u8>)]) -> Vec<String> {
    messages
        .iter()
        .map(|(_, payload)| {
            let event: serde_json::Value = serde_json::from_slice(payload).expect("JSON event");
            event["id"].as_str().expect("id").to_owned()
        })
        .collect()
}

#[tokio::test]
async fn every_event_is_published_once_to_its_topic() {
    let broker = Broker::start(Kind::Mosquitto);
    let mut sub = Subscriber::start(&broker, "sub-1", false).await;
    let sink = MqttSink::new(&config(&broker)).expect("sink");
    let mut evs = events(0, 250);
    evs[5]["kind"] = "a+b#c".into();
    let body = batch("1-1", &evs);
    assert_eq!(sink.send("1-1", &body).await, Attempt::Delivered);
    let got = sub.take(250).await;
    let unique: HashSet<String> = ids(&got).into_iter().collect();
    assert_eq!(unique.len(), 250);
    assert_eq!(got[0].0, "halyard/edge-1/temp");
    assert_eq!(got[1].0, "halyard/edge-1/door.open");
    assert_eq!(
        got[5].0, "halyard/edge-1/a_b_c",
        "wildcards never reach a topic"
    );
    sub.assert_nothing_more(&sink).await;
}

#[tokio::test]
async fn per_batch_publishes_the_envelope_and_too_large_splits() {
    let broker = Broker::start(Kind::Mosquitto);
    let mut sub = Subscriber::start(&broker, "sub-2", false).await;
    let mut per_batch = config(&broker);
    per_batch.per = MqttPer::Batch;
    per_batch.topic = "halyard/{host_id}/batches".into();
    let sink = MqttSink::new(&per_batch).expect("sink");
    let body = batch("2-1", &events(0, 100));
    assert_eq!(sink.send("2-1", &body).await, Attempt::Delivered);
    let got = sub.take(1).await;
    assert_eq!(got[0], ("halyard/edge-1/batches".to_owned(), body.clone()));

    let mut small = config(&broker);
    small.max_packet_size = 100;
    let sink = MqttSink::new(&small).expect("sink");
    assert!(matches!(
        sink.send("2-2", &body).await,
        Attempt::TooLarge { .. }
    ));
    assert!(matches!(
        sink.send("2-3", b"{}").await,
        Attempt::Rejected { events, .. } if events.is_empty()
    ));
}

#[tokio::test]
async fn a_broker_down_at_start_and_restarted_mid_run_loses_nothing() {
    let mut broker = Broker::start(Kind::Mosquitto);
    let mut sub = Subscriber::start(&broker, "sub-durable", true).await;
    broker.stop();
    let sink = MqttSink::new(&config(&broker)).expect("sink while the broker is down");
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
    wait_until(WAIT, "failed attempts while the broker is down", || async {
        delivery.stats().snapshot().batches_failed >= 1
    })
    .await;
    broker.restart();
    wait_until(WAIT, "10 batches delivered", || async {
        delivery.stats().snapshot().batches_sent >= 10
    })
    .await;
    // Stopped cleanly so Mosquitto saves the subscriber's queued session;
    // the sink's side sees the same lost connection as with a crash.
    broker.stop();
    let failed = delivery.stats().snapshot().batches_failed;
    wait_until(WAIT, "failures after the stop", || async {
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
    // Every event arrives. Repeats come only from the QoS 1 hops the stop
    // cut: the sink resends the batch in flight (each attempt while
    // Mosquitto shut down may have reached it), and Mosquitto redelivers
    // what the subscriber had not acknowledged (max_inflight_messages 20).
    // So duplicates are confined to the batches around the stop: at most
    // three consecutive batches, never anywhere else.
    let mut seen = HashSet::new();
    let mut duplicated_batches = std::collections::BTreeSet::new();
    while seen.len() < BATCHES * PER {
        for id in ids(&sub.take(1).await) {
            if !seen.insert(id.clone()) {
                duplicated_batches.insert(batch_of(&id));
            }
        }
    }
    let sink = delivery.sink();
    while let Ok(extra) = sub.rx.try_recv() {
        let id = ids(&[extra]).remove(0);
        assert!(!seen.insert(id.clone()), "an unknown event arrived");
        duplicated_batches.insert(batch_of(&id));
    }
    let first = duplicated_batches.first().copied().unwrap_or(0);
    let last = duplicated_batches.last().copied().unwrap_or(0);
    assert!(
        last - first < 3,
        "duplicates spread over batches {duplicated_batches:?}"
    );
    sub.assert_nothing_more(sink).await;
    shutdown.cancel();
}

#[tokio::test]
async fn wrong_credentials_are_a_refusal_and_right_ones_deliver() {
    let broker = Broker::mosquitto_with_user("edge", "s3cret-pw");
    let body = batch("6-1", &events(0, 10));
    let mut anonymous = config(&broker);
    let attempt = MqttSink::new(&anonymous)
        .expect("sink")
        .send("6-1", &body)
        .await;
    assert!(
        matches!(attempt, Attempt::Refused { status: None, .. }),
        "{attempt:?}"
    );
    anonymous.username = Some("edge".into());
    anonymous.password = Some(Secret::new("wrong"));
    let attempt = MqttSink::new(&anonymous)
        .expect("sink")
        .send("6-1", &body)
        .await;
    match &attempt {
        Attempt::Refused { reason, .. } => assert!(!reason.contains("wrong"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let mut good = config(&broker);
    good.username = Some("edge".into());
    good.password = Some(Secret::new("s3cret-pw"));
    let sink = MqttSink::new(&good).expect("sink");
    assert!(!format!("{sink:?}{good:?}").contains("s3cret-pw"));
    assert_eq!(sink.send("6-1", &body).await, Attempt::Delivered);
}

#[tokio::test]
async fn tls_with_a_custom_ca_delivers_and_an_untrusted_broker_is_refused() {
    let broker = Broker::mosquitto_tls();
    let body = batch("7-1", &events(0, 10));
    let mut trusted = config(&broker);
    trusted.tls = Some(MqttTls {
        ca_file: Some(broker.ca_file()),
    });
    let sink = MqttSink::new(&trusted).expect("sink");
    assert_eq!(sink.send("7-1", &body).await, Attempt::Delivered);
    // Platform roots do not include the test CA: a handshake refusal.
    let mut untrusted = config(&broker);
    untrusted.tls = Some(MqttTls { ca_file: None });
    let attempt = MqttSink::new(&untrusted)
        .expect("sink")
        .send("7-1", &body)
        .await;
    assert!(matches!(attempt, Attempt::Refused { .. }), "{attempt:?}");
    let mut missing = config(&broker);
    missing.tls = Some(MqttTls {
        ca_file: Some(broker.dir().join("nope.pem")),
    });
    assert!(
        MqttSink::new(&missing).is_err(),
        "unreadable CA fails at startup"
    );
}

/// Holds every send until the test opens it: lets a fresh subscriber
/// subscribe to a restarted (state-less) broker before the sink resumes.
struct Gated<S> {
    inner: S,
    open: watch::Receiver<bool>,
}

impl<S: Sink> Sink for Gated<S> {
    async fn send(&self, batch_key: &str, body: &[u8]) -> Attempt {
        let mut open = self.open.clone();
        let _ = open.wait_for(|o| *o).await;
        self.inner.send(batch_key, body).await
    }
}

#[tokio::test]
async fn a_broker_killed_mid_run_gets_the_cut_batch_again_and_every_later_one_once() {
    let mut broker = Broker::start(Kind::Mosquitto);
    let mut before = Subscriber::start(&broker, "sub-before", false).await;
    let (gate, open) = watch::channel(true);
    let sink = MqttSink::new(&config(&broker)).expect("sink");
    let delivery = Arc::new(delivery(Gated { inner: sink, open }));
    let shutdown = CancellationToken::new();
    const BATCHES: usize = 40;
    const PER: usize = 50;
    let task = {
        let delivery = Arc::clone(&delivery);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for b in 0..BATCHES {
                let body = batch(&format!("5-{b}"), &events(b * PER, PER));
                outcomes.push(delivery.deliver(&format!("5-{b}"), &body, &shutdown).await);
            }
            outcomes
        })
    };
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
    let _ = gate.send(false);
    let delivered_before = delivery.stats().snapshot().batches_sent as usize;
    // What reached the first subscriber before the kill. Mosquitto PUBACKs a
    // message before it has passed it on, and a kill -9 without a saved
    // session loses what it still held for subscribers: that loss is the
    // broker's durability, not the sink's, so nothing is asserted here but
    // that the messages are known ones.
    let mut before_ids = Vec::new();
    while let Ok(message) = before.rx.try_recv() {
        before_ids.extend(ids(&[message]));
    }
    drop(before);
    assert!(before_ids.iter().all(|id| batch_of(id) <= delivered_before));
    broker.restart();
    // The killed broker kept no sessions: subscribe afresh, then resume.
    let mut after = Subscriber::start(&broker, "sub-after", false).await;
    let _ = gate.send(true);
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
    // The batch cut by the kill was sent again in full, and every later one
    // once: the new subscriber sees exactly those events, each once.
    let rest = (BATCHES - delivered_before) * PER;
    let got = ids(&after.take(rest).await);
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), rest, "each event once after the restart");
    assert!(got.iter().all(|id| batch_of(id) >= delivered_before));
    after.assert_nothing_more(&delivery.sink().inner).await;
    shutdown.cancel();
}
