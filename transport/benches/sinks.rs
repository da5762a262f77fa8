//! Events per second through each sink to a local broker or collector,
//! next to HttpSink to a local HTTP server, in the same run: batches of 100
//! and 1000 events, each batch sent and acknowledged before the next.
//!
//! Run: `nice cargo bench -p halyard-transport --bench sinks`. Needs the
//! broker binaries the tests use (mosquitto, nats-server, redis-server).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use halyard_transport::{
    AnySink, Attempt, HttpConfig, HttpSink, MqttConfig, MqttSink, NatsConfig, NatsSink, NatsStream,
    OtlpConfig, OtlpSink, RedisStreamConfig, RedisStreamSink, Sink,
};
use support::{Broker, Kind, batch, events};

/// An HTTP server on 127.0.0.1:0 that takes every POST with 200.
async fn http_server() -> String {
    let app = axum::Router::new()
        .route(
            "/ingest",
            axum::routing::post(|_: axum::body::Bytes| async { "" }),
        )
        .route(
            "/v1/metrics",
            axum::routing::post(|_: axum::body::Bytes| async { "" }),
        )
        .route(
            "/v1/logs",
            axum::routing::post(|_: axum::body::Bytes| async { "" }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    format!("http://{addr}")
}

fn sinks(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mosquitto = Broker::start(Kind::Mosquitto);
    let nats = Broker::start(Kind::Nats);
    let redis = Broker::start(Kind::Redis);
    let base = rt.block_on(http_server());

    let mut nats_config = NatsConfig::new(format!("nats://127.0.0.1:{}", nats.port));
    nats_config.create_stream = Some(NatsStream {
        name: "BENCH".into(),
        subjects: vec!["halyard.>".into()],
        duplicate_window_ms: 120_000,
    });
    let targets: Vec<(&str, AnySink)> = rt.block_on(async {
        vec![
            (
                "http",
                HttpSink::new(&HttpConfig::new(format!("{base}/ingest")))
                    .expect("http")
                    .into(),
            ),
            (
                "otlp",
                OtlpSink::new(&OtlpConfig::new(&base)).expect("otlp").into(),
            ),
            (
                "mqtt",
                MqttSink::new(&MqttConfig::new("127.0.0.1", mosquitto.port))
                    .expect("mqtt")
                    .into(),
            ),
            ("nats", NatsSink::new(&nats_config).expect("nats").into()),
            (
                "redis",
                RedisStreamSink::new(&RedisStreamConfig::new(format!(
                    "redis://127.0.0.1:{}/0",
                    redis.port
                )))
                .expect("redis")
                .into(),
            ),
        ]
    });

    let mut group = c.benchmark_group("sinks");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let mut next_seq = 0usize;
    for size in [100usize, 1000] {
        group.throughput(Throughput::Elements(size as u64));
        for (name, sink) in &targets {
            group.bench_with_input(BenchmarkId::new(*name, size), &size, |b, &size| {
                b.to_async(&rt).iter_custom(|iters| {
                    // Fresh event ids every batch, so JetStream's dedupe
                    // never turns the benchmark into acknowledging repeats.
                    let bodies: Vec<Vec<u8>> = (0..iters)
                        .map(|i| {
                            next_seq += size;
                            batch(&format!("b{i}"), &events(next_seq, size))
                        })
                        .collect();
                    async move {
                        let start = Instant::now();
                        for (i, body) in bodies.iter().enumerate() {
                            let attempt = sink.send(&format!("b{i}"), body).await;
                            assert_eq!(attempt, Attempt::Delivered, "{name}");
                        }
                        start.elapsed()
                    }
                });
            });
        }
    }
    group.finish();
    drop((mosquitto, nats, redis));
}

criterion_group!(benches, sinks);
criterion_main!(benches);
