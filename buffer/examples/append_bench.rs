//! Throughput of the buffer on this machine's disk, to size the pipeline:
//! append in slices of 1000 records of ~150 bytes, single-record appends
//! (one commit per event: the worst case), and next_batch(1000) + ack.
//!
//! `cargo run --release -p halyard-buffer --example append_bench`
//! Set `HALYARD_BENCH_DIR` to measure a specific disk (default: the system
//! temp directory).

use std::time::{Duration, Instant};

use halyard_buffer::{Buffer, BufferConfig, Record};

const SLICE: u64 = 1000;
const SLICES: u64 = 100;
const SINGLES: u64 = 2000;
const PAYLOAD: usize = 150;

fn record(n: u64) -> Record {
    let mut payload = format!(
        r#"{{"ts":{n},"host":"edge-{}","metric":"cpu.load","value":"#,
        n % 7
    )
    .into_bytes();
    payload.resize(PAYLOAD, b'7');
    Record {
        id: u128::from(n).to_be_bytes(),
        payload,
    }
}

fn rate(records: u64, took: Duration) -> String {
    format!("{:>10.0} records/s", records as f64 / took.as_secs_f64())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::var_os("HALYARD_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    for synchronous_full in [false, true] {
        let dir = tempfile::tempdir_in(&base)?;
        let config = BufferConfig {
            synchronous_full,
            ..BufferConfig::new(dir.path().join("bench.db"), u64::MAX)
        };
        let (buffer, _) = Buffer::open(config)?;
        let label = if synchronous_full { "FULL  " } else { "NORMAL" };

        let slices: Vec<Vec<Record>> = (0..SLICES)
            .map(|s| (s * SLICE..(s + 1) * SLICE).map(record).collect())
            .collect();
        let start = Instant::now();
        for slice in &slices {
            buffer.append(slice)?;
        }
        let append = start.elapsed();

        let singles: Vec<Record> = (0..SINGLES).map(|n| record(1_000_000 + n)).collect();
        let start = Instant::now();
        for r in &singles {
            buffer.append(std::slice::from_ref(r))?;
        }
        let single = start.elapsed();

        let start = Instant::now();
        let mut drained = 0u64;
        while let Some(batch) = buffer.next_batch(SLICE as usize, usize::MAX)? {
            drained += batch.records.len() as u64;
            buffer.ack(&batch)?;
        }
        let drain = start.elapsed();
        assert_eq!(drained, SLICE * SLICES + SINGLES);

        println!(
            "synchronous={label}  append x1000: {}  append x1: {}  next_batch(1000)+ack: {}",
            rate(SLICE * SLICES, append),
            rate(SINGLES, single),
            rate(drained, drain)
        );
    }
    Ok(())
}
