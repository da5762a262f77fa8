//! Model-based test: seeded random operations against the real buffer and a
//! simple in-memory model of its documented behaviour. After every operation
//! the outcomes, batches and stats must match exactly; at the end every
//! record ever offered must be accounted for exactly once (acked, dead-
//! lettered, evicted, dropped or rejected).

use std::collections::VecDeque;

use halyard_buffer::{
    AppendOutcome, Batch, Buffer, BufferError, RECORD_OVERHEAD_BYTES, Record, WhenFull,
};

use crate::common::*;

/// xorshift64*: deterministic, so a failure replays from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Entry {
    n: u64,
    size: u64,
    payload_len: usize,
    lease: Option<u64>,
}

/// The buffer as documented, in memory, in sequence order.
struct Model {
    max_bytes: u64,
    policy: WhenFull,
    entries: VecDeque<Entry>,
}

/// What an append should do: the outcome (or Full) and which records it lost.
struct Expected {
    result: Result<AppendOutcome, (u64, u64)>,
    lost: Vec<u64>,
}

impl Model {
    fn bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }
    fn leased(&self) -> u64 {
        self.entries.iter().filter(|e| e.lease.is_some()).count() as u64
    }

    fn append(&mut self, slice: &[Record]) -> Expected {
        let sizes: Vec<u64> = slice
            .iter()
            .map(|r| r.payload.len() as u64 + RECORD_OVERHEAD_BYTES)
            .collect();
        let free = self.max_bytes.saturating_sub(self.bytes());
        let prefix = |room: u64| {
            let mut sum = 0;
            for (i, s) in sizes.iter().enumerate() {
                if sum + s > room {
                    return (i, sum);
                }
                sum += s;
            }
            (sizes.len(), sum)
        };
        let (accept, must_free) = match self.policy {
            WhenFull::Block => {
                let needed: u64 = sizes.iter().sum();
                if needed > free {
                    let lost = slice.iter().map(num).collect();
                    return Expected {
                        result: Err((needed, free)),
                        lost,
                    };
                }
                (slice.len(), 0)
            }
            WhenFull::DropNewest => (prefix(free).0, 0),
            WhenFull::DropOldest => {
                let evictable: u64 = self
                    .entries
                    .iter()
                    .filter(|e| e.lease.is_none())
                    .map(|e| e.size)
                    .sum();
                let (n, fit) = prefix(free.saturating_add(evictable));
                (n, fit.saturating_sub(free))
            }
        };
        let mut lost = Vec::new();
        let mut freed = 0;
        self.entries.retain(|e| {
            if freed >= must_free || e.lease.is_some() {
                return true;
            }
            freed += e.size;
            lost.push(e.n);
            false
        });
        let evicted = lost.len() as u64;
        for (r, size) in slice.iter().zip(&sizes).take(accept) {
            self.entries.push_back(Entry {
                n: num(r),
                size: *size,
                payload_len: r.payload.len(),
                lease: None,
            });
        }
        lost.extend(slice[accept..].iter().map(num));
        let outcome = AppendOutcome {
            accepted: accept as u64,
            dropped_newest: (slice.len() - accept) as u64,
            evicted_oldest: evicted,
        };
        Expected {
            result: Ok(outcome),
            lost,
        }
    }

    /// The records the next batch should hold (oldest unleased run), leased to `id`.
    fn next_batch(&mut self, max_records: usize, max_bytes: usize, id: Option<u64>) -> Vec<u64> {
        let Some(start) = self.entries.iter().position(|e| e.lease.is_none()) else {
            return Vec::new();
        };
        let (mut out, mut bytes) = (Vec::new(), 0);
        for e in self.entries.iter_mut().skip(start) {
            let full =
                !out.is_empty() && (out.len() == max_records || bytes + e.payload_len > max_bytes);
            if e.lease.is_some() || full {
                break;
            }
            bytes += e.payload_len;
            out.push(e.n);
            e.lease = id;
        }
        out
    }

    /// Ends batch `id`'s lease, removing its records if `remove`.
    fn settle(&mut self, id: u64, remove: bool) -> Vec<u64> {
        let nums = self
            .entries
            .iter()
            .filter(|e| e.lease == Some(id))
            .map(|e| e.n)
            .collect();
        if remove {
            self.entries.retain(|e| e.lease != Some(id));
        } else {
            self.entries
                .iter_mut()
                .filter(|e| e.lease == Some(id))
                .for_each(|e| e.lease = None);
        }
        nums
    }
}

fn run(seed: u64, policy: WhenFull, max_bytes: u64, ops: usize) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), max_bytes, policy);
    let mut buffer: Buffer = open(&cfg).0;
    let mut model = Model {
        max_bytes,
        policy,
        entries: VecDeque::new(),
    };
    let mut rng = Rng(seed);
    let (mut next_n, mut in_flight, mut settled) = (0u64, Vec::<Batch>::new(), Vec::<Batch>::new());
    let (mut acked, mut dead, mut lost) = (Vec::new(), Vec::new(), Vec::new());
    let (mut nacks, mut stale_acks, mut reopens) = (0, 0, 0);
    for op in 0..ops {
        let ctx = format!("seed {seed:#x} op {op}");
        match rng.below(100) {
            0..35 => {
                let k = rng.below(13);
                let slice: Vec<Record> = (next_n..next_n + k)
                    .map(|n| rec(n, rng.below(201) as usize))
                    .collect();
                next_n += k;
                let expected = model.append(&slice);
                match (buffer.append(&slice), expected.result) {
                    (Ok(got), Ok(want)) => assert_eq!(got, want, "{ctx}"),
                    (Err(BufferError::Full { needed, free }), Err(want)) => {
                        assert_eq!((needed, free), want, "{ctx}")
                    }
                    (got, want) => panic!("{ctx}: append gave {got:?}, model {want:?}"),
                }
                lost.extend(expected.lost);
            }
            35..60 => {
                let (max_r, max_b) = (1 + rng.below(10) as usize, 1 + rng.below(1500) as usize);
                match buffer.next_batch(max_r, max_b).unwrap() {
                    Some(batch) => {
                        assert_eq!(
                            nums(&batch),
                            model.next_batch(max_r, max_b, Some(batch.id)),
                            "{ctx}"
                        );
                        in_flight.push(batch);
                    }
                    None => assert_eq!(
                        model.next_batch(max_r, max_b, None),
                        Vec::<u64>::new(),
                        "{ctx}"
                    ),
                }
            }
            60..92 if !in_flight.is_empty() => {
                let batch = in_flight.swap_remove(rng.below(in_flight.len() as u64) as usize);
                match rng.below(32) {
                    0..20 => {
                        buffer.ack(&batch).unwrap();
                        acked.extend(model.settle(batch.id, true));
                    }
                    20..30 => {
                        buffer.nack(&batch);
                        model.settle(batch.id, false);
                        nacks += 1;
                    }
                    _ => {
                        buffer.dead_letter(&batch, "model").unwrap();
                        dead.extend(model.settle(batch.id, true));
                    }
                }
                settled.push(batch);
            }
            92..96 if !settled.is_empty() => {
                let stale = &settled[rng.below(settled.len() as u64) as usize];
                assert!(
                    matches!(buffer.ack(stale), Err(BufferError::UnknownBatch { .. })),
                    "{ctx}"
                );
                stale_acks += 1;
            }
            96..100 => {
                drop(buffer);
                reopens += 1;
                in_flight.clear();
                model.entries.iter_mut().for_each(|e| e.lease = None);
                let report;
                (buffer, report) = open(&cfg);
                assert_eq!(
                    (report.pending_records, report.pending_bytes),
                    (model.entries.len() as u64, model.bytes()),
                    "{ctx}"
                );
            }
            _ => {}
        }
        let s = buffer.stats();
        assert_eq!(
            (s.records, s.bytes, s.leased_records),
            (model.entries.len() as u64, model.bytes(), model.leased()),
            "{ctx}"
        );
        assert!(s.bytes <= max_bytes, "{ctx}");
    }
    for batch in in_flight.drain(..) {
        buffer.nack(&batch);
        model.settle(batch.id, false);
    }
    let rest = drain(&buffer, 50);
    assert_eq!(rest, model.entries.iter().map(|e| e.n).collect::<Vec<_>>());
    acked.extend(rest);
    assert_eq!(buffer.stats().dead_letters, dead.len() as u64);
    let mut all: Vec<u64> = acked.iter().chain(&dead).chain(&lost).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..next_n).collect::<Vec<_>>(),
        "every record accounted for exactly once"
    );
    // The run must have exercised every path it claims to test.
    let paths = (
        acked.len(),
        dead.len(),
        lost.len(),
        nacks,
        stale_acks,
        reopens,
    );
    assert!(
        acked.len() > 500 && !dead.is_empty() && nacks > 0 && stale_acks > 0 && reopens > 0,
        "{paths:?}"
    );
    assert_eq!(max_bytes == u64::MAX, lost.is_empty(), "{paths:?}");
}

#[test]
fn model_drop_oldest_small_bound() {
    run(0x9E37_79B9_7F4A_7C15, WhenFull::DropOldest, 3000, 2000);
}

#[test]
fn model_drop_newest_small_bound() {
    run(0xD1B5_4A32_D192_ED03, WhenFull::DropNewest, 3000, 2000);
}

#[test]
fn model_block_small_bound() {
    run(0x8CB9_2BA7_2F3D_8DD7, WhenFull::Block, 3000, 2000);
}

#[test]
fn model_unbounded() {
    run(0x2545_F491_4F6C_DD1D, WhenFull::DropOldest, u64::MAX, 2000);
}
