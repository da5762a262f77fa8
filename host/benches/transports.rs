//! Events per second through each transport, in one run: the whole host
//! (file input → the four example guests → SQLite buffer → batches) into
//! `http` (the real receiver), `nats` (JetStream), `redis` (a stream),
//! `mqtt` (QoS 1, one message per event) and `otlp` (a collector that
//! decodes the protobuf), each on 127.0.0.1, alternately, so that every
//! transport sees the same machine load.
//!
//! Run with `cargo bench -p halyard --bench transports` (300 000 lines, 3
//! runs of each) or add `-- --lines N --runs R`. The input is the pipeline
//! benchmark's (`host/benches/pipeline.rs`): the peer benchmark's sensor
//! lines, 10 % of which fail the range check.
//!
//! The brokers are real processes (the transport tests' support module: a
//! free port each, a temporary directory, killed on drop); the receiver, the
//! MQTT subscriber and the OTLP collector run in this process. Each run
//! starts the host as a child process (this executable in child mode,
//! calling `halyard::run::run_with` as `halyard run` calls `run`) with a
//! fresh buffer and a fresh destination (stream, subject, collector), and is
//! timed from the child's start until the destination holds every valid
//! event. It then checks exact counts: every valid event arrived once and
//! nothing was left in the buffer.

#[path = "stages/input.rs"]
#[allow(dead_code)]
mod input;

#[path = "transports/collector.rs"]
mod collector;
#[path = "common/host_run.rs"]
mod host_run;

/// The transport crate's broker processes (it allows its own dead code).
#[path = "../../transport/tests/support/mod.rs"]
mod brokers;

use host_run::{arg, config_text, write_input};
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use brokers::{Broker, Kind};
use halyard::pipeline::NativeStages;
use halyard_receiver::{ReceiverConfig, open_stats};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

/// Set in the child's environment to its config file.
const CHILD_CONFIG: &str = "HALYARD_TRANSPORTS_BENCH_CONFIG";
/// The longest a single run may take before the bench gives up.
const RUN_LIMIT: Duration = Duration::from_secs(300);
/// The transports, in the order each round runs them.
const TRANSPORTS: [&str; 5] = ["http", "nats", "redis", "mqtt", "otlp"];

fn main() {
    if let Ok(config) = std::env::var(CHILD_CONFIG) {
        host_run::run_child(Path::new(&config), NativeStages::default());
        return;
    }
    let lines = arg("--lines").unwrap_or(300_000);
    let runs = arg("--runs").unwrap_or(3);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let input = dir.path().join("sensors.jsonl");
    let valid = write_input(&input, lines);
    let warm = dir.path().join("warm.jsonl");
    let warm_valid = write_input(&warm, 10_000);
    let brokers = Brokers {
        nats: Broker::start(Kind::Nats),
        redis: Broker::start(Kind::Redis),
        mosquitto: Broker::start(Kind::Mosquitto),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the receiving side");
    println!("input: {lines} lines, {valid} valid; {runs} runs per transport\n");

    // Fill the compile cache (and page in the binary) before timing.
    measure(&rt, dir.path(), &brokers, "http", "warm", &warm, warm_valid);
    let mut results: Vec<(&str, Vec<Run>)> = TRANSPORTS.iter().map(|t| (*t, Vec::new())).collect();
    for i in 0..runs {
        for (transport, done) in &mut results {
            let name = format!("{transport}{i}");
            let run = measure(&rt, dir.path(), &brokers, transport, &name, &input, valid);
            println!(
                "{transport:>5} run {i}: {:>9.0} events/s  {:>6.2} s  host CPU {:>5.1} µs/event",
                valid as f64 / run.elapsed.as_secs_f64(),
                run.elapsed.as_secs_f64(),
                run.host_cpu.as_secs_f64() * 1e6 / valid as f64,
            );
            done.push(run);
        }
    }
    println!("\n| transport | events/s (median) | ratio to http | host CPU µs/event (median) |");
    println!("|---|---:|---:|---:|");
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let rate = |done: &[Run]| {
        median(
            done.iter()
                .map(|r| valid as f64 / r.elapsed.as_secs_f64())
                .collect(),
        )
    };
    let http = rate(&results[0].1);
    for (transport, done) in &results {
        let events = rate(done);
        let cpu = median(
            done.iter()
                .map(|r| r.host_cpu.as_secs_f64() * 1e6 / valid as f64)
                .collect(),
        );
        println!(
            "| {transport} | {events:.0} | {:.2} | {cpu:.1} |",
            events / http
        );
    }
}

/// The broker processes, started once and shared by every run.
struct Brokers {
    nats: Broker,
    redis: Broker,
    mosquitto: Broker,
}

/// Where one run delivers: the `[transport]` table, and how to count what
/// arrived there.
struct Destination {
    transport: String,
    count: Box<dyn FnMut() -> u64>,
    /// Stops the in-process receiving side, if any.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Sets up a fresh destination of `transport` for run `name`.
fn destination(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    brokers: &Brokers,
    transport: &str,
    name: &str,
) -> Destination {
    match transport {
        "http" => {
            let store = dir.join(format!("received-{name}.db"));
            let receiver = rt
                .block_on(halyard_receiver::bind(ReceiverConfig::new(
                    "127.0.0.1:0".parse().expect("an address"),
                    store.clone(),
                )))
                .expect("the receiver binds");
            let url = format!("http://{}/v1/batches", receiver.local_addr());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            rt.spawn(receiver.run(async move {
                let _ = stopped.await;
            }));
            Destination {
                transport: format!("type = \"http\"\nurl = \"{url}\"\n"),
                count: Box::new(move || {
                    open_stats(&store)
                        .map(|s| s.events_stored + s.duplicates)
                        .unwrap_or(0)
                }),
                stop: Some(stop),
            }
        }
        "nats" => {
            // A stream of its own per run: the event ids repeat across
            // runs, and the duplicate window would drop them.
            let stream = format!("BENCH_{name}");
            let port = brokers.nats.port;
            let js = rt.block_on(async {
                let client = async_nats::connect(format!("127.0.0.1:{port}"))
                    .await
                    .expect("connect to NATS");
                async_nats::jetstream::new(client)
            });
            let handle = rt.handle().clone();
            let counted = stream.clone();
            Destination {
                transport: format!(
                    "type = \"nats\"\nurl = \"nats://127.0.0.1:{port}\"\n\
                     subject = \"{name}.{{host_id}}.{{kind}}\"\n\
                     create_stream = {{ name = \"{stream}\", subjects = [\"{name}.>\"], \
                     duplicate_window_ms = 600000 }}\n"
                ),
                count: Box::new(move || {
                    handle.block_on(async {
                        let Ok(mut stream) = js.get_stream(&counted).await else {
                            return 0;
                        };
                        stream.info().await.map(|i| i.state.messages).unwrap_or(0)
                    })
                }),
                stop: None,
            }
        }
        "redis" => {
            let stream = format!("bench:{name}");
            let url = format!("redis://127.0.0.1:{}/0", brokers.redis.port);
            let client = redis::Client::open(url.as_str()).expect("a redis client");
            let mut conn = rt
                .block_on(client.get_multiplexed_async_connection())
                .expect("connect to redis");
            let handle = rt.handle().clone();
            let counted = stream.clone();
            Destination {
                transport: format!(
                    "type = \"redis\"\nurl = \"{url}\"\nstream = \"{stream}\"\nmax_len = 100000000\n"
                ),
                count: Box::new(move || {
                    handle
                        .block_on(
                            redis::cmd("XLEN")
                                .arg(&counted)
                                .query_async::<u64>(&mut conn),
                        )
                        .unwrap_or(0)
                }),
                stop: None,
            }
        }
        "mqtt" => {
            let port = brokers.mosquitto.port;
            let (count, stop) = subscribe(rt, port, name);
            Destination {
                transport: format!(
                    "type = \"mqtt\"\nhost = \"127.0.0.1\"\nport = {port}\n\
                     topic = \"halyard/{name}/{{host_id}}/{{kind}}\"\nper = \"event\"\n\
                     client_id = \"halyard-bench-{name}\"\n"
                ),
                count: Box::new(move || count.load(Ordering::Relaxed)),
                stop: Some(stop),
            }
        }
        "otlp" => {
            let (url, count, stop) = collector::collector(rt);
            Destination {
                transport: format!("type = \"otlp\"\nendpoint = \"{url}\"\n"),
                count: Box::new(move || count.load(Ordering::Relaxed)),
                stop: Some(stop),
            }
        }
        other => panic!("no such transport: {other}"),
    }
}

/// A QoS 1 subscriber on `halyard/#`, subscribed (SUBACK in) before this
/// returns; counts the messages of run `name`.
fn subscribe(
    rt: &tokio::runtime::Runtime,
    port: u16,
    name: &str,
) -> (Arc<AtomicU64>, tokio::sync::oneshot::Sender<()>) {
    let mut options = MqttOptions::new(format!("bench-sub-{name}"), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_inflight(1000);
    let (client, mut events) = AsyncClient::new(options, 1000);
    rt.block_on(client.subscribe("halyard/#", QoS::AtLeastOnce))
        .expect("queue the subscription");
    let count = Arc::new(AtomicU64::new(0));
    let (subscribed_tx, subscribed) = std::sync::mpsc::channel();
    let prefix = format!("halyard/{name}/");
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let c = Arc::clone(&count);
    rt.spawn(async move {
        let _client = client; // the event loop ends when the client is dropped
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                event = events.poll() => match event {
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic.starts_with(&prefix) => {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(_) => {}
                    // rumqttc reconnects on the next poll; don't spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                },
            }
        }
    });
    subscribed
        .recv_timeout(Duration::from_secs(15))
        .expect("no SUBACK from mosquitto");
    (count, stop)
}

/// Runs the host on `input` into a fresh destination of `transport` until
/// all `valid` events are there; checks the counts; returns the time taken.
fn measure(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    brokers: &Brokers,
    transport: &str,
    name: &str,
    input: &Path,
    valid: u64,
) -> Run {
    let mut dest = destination(rt, dir, brokers, transport, name);
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        config_text(
            dir,
            name,
            input,
            &format!("[transport]\n{}", dest.transport),
        ),
    )
    .expect("write the config");
    let start = Instant::now();
    let mut host = Command::new(std::env::current_exe().expect("this executable"))
        // Benchmarks run unlicensed; the host says so in its log.
        .env("HALYARD_DEV_MODE", "1")
        .env(CHILD_CONFIG, &config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the host");
    let elapsed = loop {
        let arrived = (dest.count)();
        if arrived >= valid {
            break start.elapsed();
        }
        if start.elapsed() > RUN_LIMIT {
            let _ = host.kill();
            panic!("{name}: only {arrived} of {valid} arrived");
        }
        if let Ok(Some(status)) = host.try_wait() {
            panic!("{name}: the host exited early with {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(host.stdin.take()); // EOF: shut down.
    let mut left = u64::MAX;
    let mut host_cpu = Duration::ZERO;
    if let Some(out) = host.stdout.take() {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(v) = line.strip_prefix("left_in_buffer ") {
                left = v.parse().unwrap_or(u64::MAX);
            } else if let Some(v) = line.strip_prefix("cpu_us ") {
                host_cpu = Duration::from_micros(v.parse().unwrap_or(0));
            }
        }
    }
    let status = host.wait().expect("the host exits");
    assert!(status.success(), "{name}: host exited with {status}");
    let arrived = (dest.count)();
    if let Some(stop) = dest.stop.take() {
        let _ = stop.send(());
    }
    assert_eq!(
        (arrived, left),
        (valid, 0),
        "{name}: every valid event delivered once, nothing left behind"
    );
    Run { elapsed, host_cpu }
}

/// One timed run.
struct Run {
    /// From the host's start until every valid event had arrived.
    elapsed: Duration,
    /// CPU time (user + system) the host process used in total.
    host_cpu: Duration,
}
