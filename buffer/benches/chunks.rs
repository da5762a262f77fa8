//! The buffer alone: commit 1000 events of ~200 bytes in one transaction,
//! lease them as one batch, ack it, in a real SQLite file in WAL mode with
//! `synchronous = NORMAL`, as the host does.
//!
//! The same-run comparison with the row-per-event buffer (schema 2) in
//! BENCHMARKS.md was taken at commit 56a0b8d, where that crate sat beside
//! this one as `benches/v2` (`halyard-buffer-v2`); check that commit out to
//! repeat it. It is not kept here: a second copy of the crate to maintain.
//!
//! `cargo bench -p halyard-buffer --bench chunks`
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

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = commit_read_ack
}
criterion_main!(benches);
