//! The buffer alone, in a real SQLite file in WAL mode with
//! `synchronous = NORMAL`, as the host does: `commit_read_ack` commits 1000
//! events of ~200 bytes in one transaction, leases them as one batch and
//! acks it; `flow` keeps batches in flight the way the shipper does.
//!
//! The same-run comparison with the row-per-event buffer (schema 2) in
//! BENCHMARKS.md was taken at commit 56a0b8d, where that crate sat beside
//! this one as `benches/v2` (`halyard-buffer-v2`); check that commit out to
//! repeat it. It is not kept here: a second copy of the crate to maintain.
//!
//! `cargo bench -p halyard-buffer --bench chunks` (add `-- flow` for one case)
//! Set `HALYARD_BENCH_DIR` to measure a specific disk (default: the
//! system temp directory).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Events per commit and per batch: the host's default `[batch] max_events`.
const EVENTS: usize = 1000;

/// An encoded event the size of the pipeline bench's sensor lines.
fn payload(n: usize) -> Vec<u8> {
    let mut p = format!(
        r#"{{"id":"{n:032x}","kind":"sensor.reading","ts":"2026-11-30T19:00:00.{:03}Z","attrs":{{"device":"dev-{}","value":"#,
        n % 1000,
        n % 97
    )
    .into_bytes();
    p.resize(200, b'7');
    p.extend_from_slice(b"}}");
    p
}

fn dir() -> tempfile::TempDir {
    match std::env::var_os("HALYARD_BENCH_DIR") {
        Some(base) => tempfile::tempdir_in(base),
        None => tempfile::tempdir(),
    }
    .expect("temporary directory")
}

/// Benchmarks one buffer crate: both expose the same API for this.
macro_rules! round_trip {
    ($c:expr, $name:literal, $krate:ident) => {{
        let dir = dir();
        let config = $krate::BufferConfig::new(dir.path().join("bench.db"), u64::MAX);
        let (buffer, _) = $krate::Buffer::open(config).expect("open");
        let records: Vec<$krate::Record> = (0..EVENTS)
            .map(|n| $krate::Record {
                id: (n as u128).to_be_bytes(),
                payload: payload(n),
            })
            .collect();
        let mut group = $c.benchmark_group("buffer_commit_read_ack_1000");
        group.throughput(Throughput::Elements(EVENTS as u64));
        group.bench_function($name, |b| {
            b.iter(|| {
                let outcome = buffer.append(&records).expect("append");
                assert_eq!(outcome.accepted, EVENTS as u64);
                let batch = buffer
                    .next_batch(EVENTS, 1 << 20)
                    .expect("read")
                    .expect("a batch");
                assert_eq!(batch.records.len(), EVENTS);
                buffer.ack(&batch).expect("ack");
            })
        });
        group.finish();
    }};
}

fn commit_read_ack(c: &mut Criterion) {
    round_trip!(c, "v3_chunks", halyard_buffer);
}

/// Events per commit in [`flow`]: what one hand-off of the file input's
/// 1000 lines leaves after the range check drops a tenth.
const FLOW_COMMIT: usize = 900;
/// Commits per iteration of [`flow`].
const FLOW_COMMITS: usize = 3;
/// Batches in flight in [`flow`]: the http transport's `max_in_flight`.
const FLOW_IN_FLIGHT: usize = 4;

/// The buffer as the pipeline uses it: commits of a file input hand-off's
/// worth of 330-byte events (the size a sensor line leaves the host at), whole
/// batches of 1000 leased as they appear, up to 4 in flight, the oldest
/// acked first. Unlike [`commit_read_ack`] the buffer rarely drains and
/// acked pages sit between live ones, which is what page size, WAL size
/// and vacuum policy act on. Prints the bytes the process read and wrote
/// per event (`/proc/self/io`), which the machine's neighbours cannot move.
fn flow(c: &mut Criterion) {
    let dir = dir();
    let config = halyard_buffer::BufferConfig::new(dir.path().join("flow.db"), u64::MAX);
    let (buffer, _) = halyard_buffer::Buffer::open(config).expect("open");
    let records: Vec<halyard_buffer::Record> = (0..FLOW_COMMIT)
        .map(|n| {
            let mut payload = payload(n);
            payload.resize(330, b'5');
            halyard_buffer::Record {
                id: (n as u128).to_be_bytes(),
                payload,
            }
        })
        .collect();
    let mut in_flight = std::collections::VecDeque::new();
    let mut events = 0u64;
    let io_before = io_bytes();
    let mut group = c.benchmark_group("buffer_flow_2700");
    group.throughput(Throughput::Elements((FLOW_COMMIT * FLOW_COMMITS) as u64));
    group.bench_function("commit_lease_ack", |b| {
        b.iter(|| {
            for _ in 0..FLOW_COMMITS {
                buffer.append(&records).expect("append");
            }
            events += (FLOW_COMMIT * FLOW_COMMITS) as u64;
            while let Some(batch) = buffer
                .next_whole_batch_for(halyard_buffer::DEFAULT_CONSUMER, EVENTS, 1 << 20)
                .expect("read")
            {
                in_flight.push_back(batch);
                while in_flight.len() > FLOW_IN_FLIGHT {
                    let oldest = in_flight.pop_front().expect("a batch in flight");
                    buffer.ack(&oldest).expect("ack");
                }
            }
        })
    });
    group.finish();
    let (read, written) = io_bytes();
    println!(
        "flow: {events} events, {:.0} bytes read and {:.0} written per event",
        (read - io_before.0) as f64 / events as f64,
        (written - io_before.1) as f64 / events as f64
    );
}

/// `rchar` and `wchar` of this process: bytes passed to read and write
/// calls, page cache or not.
fn io_bytes() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("rchar:"), field("wchar:"))
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = commit_read_ack, flow
}
criterion_main!(benches);
