//! Delivery into NATS JetStream and Redis Streams through the real binary
//! (issue 13, item 7): two `[[transport]]`s from the example configs' shape,
//! each broker a real process of its own on a free 127.0.0.1 port. The host
//! is killed with SIGKILL mid-run and restarted, then the NATS server is
//! killed and restarted, and the counts are exact:
//!
//! - JetStream holds every accepted event exactly once: the re-sends after
//!   the kill carry the same `Nats-Msg-Id`, which the stream's duplicate
//!   window drops;
//! - the Redis stream holds every accepted event at least once; copies come
//!   only from batches re-sent after the kill (XADD has no idempotency key),
//!   so they are at most the events the first run had accepted.

use std::collections::HashMap;
use std::time::Duration;

use crate::operate_support::{Client, sensor_lines, start, wait_listening};
use crate::pipeline_support::{Host, Scenario, wait_for};

/// The transport crate's broker processes (it allows its own dead code).
#[path = "../../../transport/tests/support/mod.rs"]
mod brokers;

use brokers::{Broker, Kind};

const WAIT: Duration = Duration::from_secs(120);

fn tail(nats: &Broker, redis: &Broker) -> String {
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
"#,
        nats = nats.port,
        redis = redis.port,
    )
}

/// Reads the brokers from a runtime of the test's own.
struct Readers {
    rt: tokio::runtime::Runtime,
}

impl Readers {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Readers { rt }
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
            let mut conn = client
                .get_multiplexed_async_connection()
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
    let run = start(&s, &tail(&nats, &redis), &[]);
    let client = Client::new();
    let readers = Readers::new();

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
    drop(host);
}
