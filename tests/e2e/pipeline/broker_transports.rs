//! Delivery into NATS JetStream, Redis Streams and an MQTT broker through
//! the real binary (issue 13, item 7): three `[[transport]]`s from the
//! example configs' shape,
//! each broker a real process of its own on a free 127.0.0.1 port. The host
//! is killed with SIGKILL mid-run and restarted, then the NATS server is
//! killed and restarted, and the counts are exact:
//!
//! - JetStream holds every accepted event exactly once: the re-sends after
//!   the kill carry the same `Nats-Msg-Id`, which the stream's duplicate
//!   window drops;
//! - the Redis stream holds every accepted event at least once; copies come
//!   only from batches re-sent after the kill (XADD has no idempotency key),
//!   so they are at most the events the first run had accepted;
//! - a persistent QoS 1 subscriber on the MQTT broker sees every accepted
//!   event at least once, copies bounded the same way (QoS 1 re-sends).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::operate_support::{Client, sensor_lines, start, wait_listening};
use crate::pipeline_support::{Host, Scenario, wait_for};

/// The transport crate's broker processes (it allows its own dead code).
#[path = "../../../transport/tests/support/mod.rs"]
mod brokers;

use brokers::{Broker, Kind};

const WAIT: Duration = Duration::from_secs(120);

fn tail(nats: &Broker, redis: &Broker, mqtt: &Broker) -> String {
    format!(
        r#"[[transport]]
name = "jetstream"
type = "nats"
url = "nats://127.0.0.1:{nats}"
subject = "halyard.{{host_id}}.{{kind}}"
create_stream = {{ name = "HALYARD", subjects = ["halyard.>"], duplicate_window_ms = 600000 }}

[[transport]]
name = "bus"
type = "redis"
url = "redis://127.0.0.1:{redis}/0"
stream = "halyard:events"
max_len = 1000000

[[transport]]
name = "mqtt"
type = "mqtt"
host = "127.0.0.1"
port = {mqtt}
topic = "halyard/{{host_id}}/{{kind}}"
per = "event"
"#,
        nats = nats.port,
        redis = redis.port,
        mqtt = mqtt.port,
    )
}

/// Reads the brokers from a runtime of the test's own.
struct Readers {
    rt: tokio::runtime::Runtime,
    /// How many times each event id reached the MQTT subscriber.
    mqtt: Arc<Mutex<HashMap<String, u64>>>,
}

impl Readers {
    /// Also subscribes to `halyard/#` on `mqtt` (QoS 1, persistent
    /// session) before any event is published.
    fn new(mqtt: &Broker) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let mut options = MqttOptions::new("e2e-subscriber", "127.0.0.1", mqtt.port);
        options
            .set_clean_session(false)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let (subscribed_tx, subscribed) = std::sync::mpsc::channel();
        let counts = seen.clone();
        rt.spawn(async move {
            let _client = client.clone();
            client
                .subscribe("halyard/#", QoS::AtLeastOnce)
                .await
                .expect("subscribe request");
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let event: serde_json::Value =
                            serde_json::from_slice(&p.payload).expect("an event per message");
                        let id = event["id"].as_str().expect("id").to_owned();
                        *counts.lock().unwrap().entry(id).or_insert(0) += 1;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(_) => {}
                    // Reconnects on the next poll; bounded by the test's
                    // deadlines.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        subscribed
            .recv_timeout(WAIT)
            .expect("the MQTT subscriber got its SUBACK");
        Readers { rt, mqtt: seen }
    }

    /// How many times each event id reached the MQTT subscriber.
    fn mqtt_ids(&self) -> HashMap<String, u64> {
        self.mqtt.lock().unwrap().clone()
    }

    /// Messages in the JetStream stream, or 0 while it is unreachable.
    fn nats_messages(&self, nats: &Broker) -> u64 {
        self.rt.block_on(async {
            let Ok(client) = async_nats::connect(format!("127.0.0.1:{}", nats.port)).await else {
                return 0;
            };
            let js = async_nats::jetstream::new(client);
            let Ok(mut stream) = js.get_stream("HALYARD").await else {
                return 0;
            };
            stream.info().await.map(|i| i.state.messages).unwrap_or(0)
        })
    }

    /// How many times each event id is in the Redis stream.
    fn redis_ids(&self, redis: &Broker) -> HashMap<String, u64> {
        self.rt.block_on(async {
            let client =
                redis::Client::open(format!("redis://127.0.0.1:{}/0", redis.port)).expect("client");
            // A reply of thousands of entries on a loaded machine can take
            // longer than the client's default response timeout.
            let config = redis::AsyncConnectionConfig::new()
                .set_response_timeout(Some(std::time::Duration::from_secs(60)));
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .expect("connect");
            let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg("halyard:events")
                .arg("-")
                .arg("+")
                .query_async(&mut conn)
                .await
                .expect("XRANGE");
            let mut ids = HashMap::new();
            for entry in reply.ids {
                let payload: String = entry.get("payload").expect("payload field");
                let event: serde_json::Value =
                    serde_json::from_str(&payload).expect("payload is JSON");
                let id = event["id"].as_str().expect("id").to_owned();
                *ids.entry(id).or_insert(0) += 1;
            }
            ids
        })
    }
}

#[test]
fn kill_9_of_the_host_and_a_broker_restart_lose_nothing_and_jetstream_stores_no_duplicate() {
    let s = Scenario::new();
    let mut nats = Broker::start(Kind::Nats);
    let redis = Broker::start(Kind::RedisDurable);
    let mqtt = Broker::start(Kind::Mosquitto);
    let readers = Readers::new(&mqtt);
    let run = start(&s, &tail(&nats, &redis, &mqtt), &[]);
    let client = Client::new();

    // First run: accepted (committed to the buffer), then killed while
    // it is still delivering.
    let (body, negative) = sensor_lines(&s, 0, 3000);
    let answer = client.ingest(run.ingest, body);
    let first = answer["accepted"].as_u64().expect("accepted");
    assert_eq!(first, 3000 - negative, "{answer}");
    run.host.kill9();

    // Second run on the same buffer: the rest of the first part is sent
    // again, and a second part arrives.
    let host = Host::start(&s.config);
    wait_listening(run.ingest);
    // A new client: the old one's pooled connection died with the host.
    let client = Client::new();
    let (body, negative) = sensor_lines(&s, 3000, 2000);
    let answer = client.ingest(run.ingest, body);
    let second = answer["accepted"].as_u64().expect("accepted");
    assert_eq!(second, 2000 - negative, "{answer}");

    // The NATS server dies and comes back (file store in its own dir).
    nats.kill();
    nats.restart();

    let total = first + second;
    wait_for("every event in JetStream", WAIT, || {
        readers.nats_messages(&nats) >= total
    });
    wait_for("every event in the Redis stream", WAIT, || {
        readers.redis_ids(&redis).len() as u64 >= total
    });
    assert_eq!(
        readers.nats_messages(&nats),
        total,
        "JetStream must hold each event exactly once"
    );
    let ids = readers.redis_ids(&redis);
    assert_eq!(ids.len() as u64, total, "every event in Redis, none extra");
    let copies: u64 = ids.values().map(|n| n - 1).sum();
    assert!(
        copies <= first,
        "Redis copies come only from re-sends of the first run: {copies} > {first}"
    );
    wait_for("every event at the MQTT subscriber", WAIT, || {
        readers.mqtt_ids().len() as u64 >= total
    });
    let ids = readers.mqtt_ids();
    assert_eq!(ids.len() as u64, total, "every event over MQTT, none extra");
    let copies: u64 = ids.values().map(|n| n - 1).sum();
    assert!(
        copies <= first,
        "MQTT copies come only from re-sends of the first run: {copies} > {first}"
    );
    drop(host);
}
