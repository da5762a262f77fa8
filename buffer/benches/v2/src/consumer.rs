//! Consumers: the transports that drain one buffer, each at its own pace.
//!
//! Every consumer owns one bit (0..=62) of the `pending` column of
//! `records`; a record's mask holds the bits of the consumers that still
//! have to settle it. A consumer's [`crate::Buffer::next_batch_for`] only
//! serves records carrying its bit, its [`crate::Buffer::ack`] clears the
//! bit, and a record leaves the buffer when its mask reaches 0 — so one
//! consumer's outage grows its backlog while the others keep shipping, and
//! nothing leaves before every consumer it was for has settled it.
//!
//! Invariants:
//! - **Bits are durable, leases are not.** The `consumers` table maps names
//!   to bits; leases (in flight) stay per consumer and in memory.
//! - **A filtered-out record never gets the bit.** A consumer with kind
//!   prefixes gets the bit only for records whose kind (read by the host's
//!   kind reader, [`crate::Buffer::set_kind_reader`]) starts with one.
//! - **A removed consumer is forgotten at open.** When the configured list
//!   ([`crate::BufferConfig::consumers`]) no longer names a registered
//!   consumer, its bit is cleared from every record and records held only
//!   for it are deleted (counted in [`crate::OpenReport::removed_records`]).
//! - **A new consumer starts at "now".** It gets only records stored after
//!   it was added, like a new sink in Vector: replaying the whole backlog
//!   into a sink nobody asked to backfill would surprise more than help.

use std::time::Duration;

use rusqlite::{OptionalExtension, Transaction};
use serde::Deserialize;

use crate::batch::{Leases, Record};
use crate::error::{BufferError, Context};

/// Bits available: `pending` is a signed 64-bit integer; bit 63 is kept
/// clear so masks stay non-negative.
pub const MAX_CONSUMERS: usize = 63;

/// Name of the consumer a buffer registers when none is configured: the
/// single `[transport]` of a host config.
pub const DEFAULT_CONSUMER: &str = "default";

/// One consumer as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Consumer {
    /// Unique name (the transport's name); bits are kept by name across
    /// restarts.
    pub name: String,
    /// Kind prefixes this consumer wants; empty means every record. A
    /// record whose kind cannot be read goes only to consumers without
    /// prefixes.
    #[serde(default)]
    pub kinds: Vec<String>,
}

impl Consumer {
    /// A consumer of every record.
    pub fn all(name: impl Into<String>) -> Consumer {
        Consumer {
            name: name.into(),
            kinds: Vec::new(),
        }
    }

    fn wants(&self, kind: Option<&str>) -> bool {
        self.kinds.is_empty()
            || kind.is_some_and(|k| self.kinds.iter().any(|p| k.starts_with(p.as_str())))
    }
}

/// Reads a record's kind from its payload, so kind prefixes can route it.
/// The buffer never parses payloads itself; the host that encoded them does.
pub type KindReader = fn(&[u8]) -> Option<String>;

/// One consumer's delivery progress, for metrics and for its ship loop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerStats {
    /// The consumer's name.
    pub name: String,
    /// Records it still has to settle (in flight or not).
    pub pending: u64,
    /// Of those, records leased to it right now.
    pub leased: u64,
    /// How long its oldest pending record has waited; `None` when it has
    /// nothing pending.
    pub oldest_age: Option<Duration>,
    /// Records it acknowledged since open.
    pub acked_total: u64,
    /// Records it dead-lettered since open.
    pub dead_lettered_total: u64,
}

/// A registered consumer and its in-memory progress.
#[derive(Debug)]
pub(crate) struct ConsumerState {
    pub(crate) config: Consumer,
    /// Its bit in `pending` (0..=62).
    pub(crate) bit: u8,
    /// Its batches in flight.
    pub(crate) leases: Leases,
    /// Records carrying its bit (leased or not).
    pub(crate) pending: u64,
    /// Every record at or below this sequence number that carries its bit
    /// is leased: `next_batch_for` starts reading after it, so a consumer
    /// does not re-read another consumer's backlog on every batch.
    pub(crate) floor: i64,
    pub(crate) acked: u64,
    pub(crate) dead_lettered: u64,
}

impl ConsumerState {
    pub(crate) fn mask(&self) -> i64 {
        1i64 << self.bit
    }
}

/// The registered consumers of an open buffer, and how records are routed.
#[derive(Debug, Default)]
pub(crate) struct Consumers {
    pub(crate) list: Vec<ConsumerState>,
    pub(crate) kind_reader: Option<KindReader>,
}

impl Consumers {
    /// The consumers of a freshly opened file, with their pending counts.
    pub(crate) fn load(conn: &rusqlite::Connection) -> Result<Consumers, BufferError> {
        let registered = registered(conn)?;
        let mut by_mask: Vec<(i64, i64)> = Vec::new();
        {
            let mut stmt = conn
                .prepare_cached("SELECT pending, COUNT(*) FROM records GROUP BY pending")
                .ctx("open: count pending records")?;
            let mut rows = stmt.query([]).ctx("open: count pending records")?;
            while let Some(row) = rows.next().ctx("open: count pending records")? {
                by_mask.push((
                    row.get(0).ctx("open: read mask")?,
                    row.get(1).ctx("open: read count")?,
                ));
            }
        }
        let list = registered
            .into_iter()
            .map(|(config, bit)| {
                let pending = by_mask
                    .iter()
                    .filter(|(mask, _)| mask & (1i64 << bit) != 0)
                    .map(|(_, n)| (*n).max(0) as u64)
                    .sum();
                ConsumerState {
                    config,
                    bit,
                    leases: Leases::default(),
                    pending,
                    floor: 0,
                    acked: 0,
                    dead_lettered: 0,
                }
            })
            .collect();
        Ok(Consumers {
            list,
            kind_reader: None,
        })
    }

    /// Recounts every consumer's pending records from the file (after a
    /// repair), keeping leases and counters.
    pub(crate) fn recount(&mut self, conn: &rusqlite::Connection) -> Result<(), BufferError> {
        let fresh = Consumers::load(conn)?;
        for c in &mut self.list {
            c.pending = fresh
                .list
                .iter()
                .find(|f| f.bit == c.bit)
                .map_or(0, |f| f.pending);
            c.floor = 0;
        }
        Ok(())
    }

    pub(crate) fn by_name(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|c| c.config.name == name)
    }

    pub(crate) fn by_bit(&self, bit: u8) -> Option<usize> {
        self.list.iter().position(|c| c.bit == bit)
    }

    /// The first consumer: the one the single-consumer calls use.
    pub(crate) fn first(&self) -> Option<usize> {
        (!self.list.is_empty()).then_some(0)
    }

    /// The mask a new record gets: the bits of every consumer that wants it.
    pub(crate) fn mask_of(&self, record: &Record) -> i64 {
        let filtered = self.list.iter().any(|c| !c.config.kinds.is_empty());
        if !filtered {
            return self.list.iter().fold(0, |m, c| m | c.mask());
        }
        let kind = self.kind_reader.and_then(|read| read(&record.payload));
        self.list
            .iter()
            .filter(|c| c.config.wants(kind.as_deref()))
            .fold(0, |m, c| m | c.mask())
    }

    /// Adds `n` records of `mask` to the pending counts.
    pub(crate) fn add(&mut self, mask: i64, n: u64) {
        for c in &mut self.list {
            if mask & c.mask() != 0 {
                c.pending += n;
            }
        }
    }

    /// Takes `n` records of `mask` out of the pending counts.
    pub(crate) fn remove(&mut self, mask: i64, n: u64) {
        for c in &mut self.list {
            if mask & c.mask() != 0 {
                c.pending = c.pending.saturating_sub(n);
            }
        }
    }

    /// Every consumer's leases merged, in sequence order: the ranges no
    /// eviction may touch and a repair must count.
    pub(crate) fn all_leases(&self) -> Vec<crate::batch::Lease> {
        let mut all: Vec<_> = self.list.iter().flat_map(|c| c.leases.all()).collect();
        all.sort_by_key(|l| l.first);
        all
    }

    /// Unleased ranges across all consumers, as exclusive `(after, before)`.
    pub(crate) fn unleased_gaps(&self) -> Vec<(i64, i64)> {
        let mut gaps = Vec::new();
        let mut after = 0;
        for lease in self.all_leases() {
            if lease.first > after + 1 {
                gaps.push((after, lease.first));
            }
            after = after.max(lease.last);
        }
        gaps.push((after, i64::MAX));
        gaps
    }

    /// Records and bytes leased, summed over consumers (a record leased by
    /// two consumers counts twice: an upper bound of what eviction must
    /// spare).
    pub(crate) fn leased(&self) -> (u64, u64) {
        self.list.iter().fold((0, 0), |(r, b), c| {
            (r + c.leases.records, b + c.leases.bytes)
        })
    }
}

/// Registered consumers, by bit order.
fn registered(conn: &rusqlite::Connection) -> Result<Vec<(Consumer, u8)>, BufferError> {
    let mut stmt = conn
        .prepare_cached("SELECT name, bit, kinds FROM consumers ORDER BY bit")
        .ctx("open: read consumers")?;
    let mut rows = stmt.query([]).ctx("open: read consumers")?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().ctx("open: read consumers")? {
        let name: String = row.get(0).ctx("open: read consumer name")?;
        let bit: i64 = row.get(1).ctx("open: read consumer bit")?;
        let kinds: String = row.get(2).ctx("open: read consumer kinds")?;
        let kinds = kinds
            .split('\n')
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        out.push((Consumer { name, kinds }, bit.clamp(0, 62) as u8));
    }
    Ok(out)
}

/// Brings the `consumers` table in line with `configured` inside the
/// open-time transaction: new consumers get a free bit (and start at
/// "now"), removed ones are dropped, their bits cleared from every record,
/// and records left for nobody are deleted. `None` keeps what is
/// registered (tools that open the buffer without shipping), registering
/// [`DEFAULT_CONSUMER`] in a file that has none. Returns the records
/// deleted.
pub(crate) fn reconcile(
    tx: &Transaction<'_>,
    configured: Option<&[Consumer]>,
) -> Result<u64, BufferError> {
    let registered = registered(tx)?;
    let wanted: Vec<Consumer> = match configured {
        Some(list) => list.to_vec(),
        None if registered.is_empty() => vec![Consumer::all(DEFAULT_CONSUMER)],
        None => registered.iter().map(|(c, _)| c.clone()).collect(),
    };
    if wanted.len() > MAX_CONSUMERS {
        return Err(BufferError::TooManyConsumers {
            configured: wanted.len(),
            max: MAX_CONSUMERS,
        });
    }
    for (old, _) in &registered {
        if !wanted.iter().any(|w| w.name == old.name) {
            tx.execute("DELETE FROM consumers WHERE name = ?1", [&old.name])
                .ctx("open: remove consumer")?;
            tracing::warn!(consumer = %old.name,
                "buffer consumer no longer configured: its pending records are released to the others");
        }
    }
    let mut used: Vec<u8> = registered
        .iter()
        .filter(|(c, _)| wanted.iter().any(|w| w.name == c.name))
        .map(|(_, b)| *b)
        .collect();
    // A file's first consumers (a new file, or one upgraded from version
    // 1 whose records carry every bit) get their bits before the unowned
    // bits are cleared; later ones after, so a removed consumer's bit is
    // cleared before it can be handed to a new one.
    let first = registered.is_empty();
    if first {
        add_new(tx, &wanted, &registered, &mut used)?;
    }
    let live = used.iter().fold(0i64, |m, b| m | (1i64 << b));
    let deleted = clear_unowned(tx, live)?;
    if !first {
        add_new(tx, &wanted, &registered, &mut used)?;
    }
    Ok(deleted)
}

/// Clears from every record the bits not in `live` (removed consumers;
/// -1 from an upgrade), then deletes what is left for nobody. Both find
/// their rows through the `(seq, pending, …)` index, not the payloads.
fn clear_unowned(tx: &Transaction<'_>, live: i64) -> Result<u64, BufferError> {
    tx.execute(
        "UPDATE records SET pending = pending & ?1 WHERE seq IN \
         (SELECT seq FROM records INDEXED BY records_seq_pending WHERE pending & ~?1 != 0)",
        [live],
    )
    .ctx("open: clear the bits of removed consumers")?;
    let deleted = tx
        .execute(
            "DELETE FROM records WHERE seq IN \
             (SELECT seq FROM records INDEXED BY records_seq_pending WHERE pending = 0)",
            [],
        )
        .ctx("open: delete records left for no consumer")?;
    if deleted > 0 {
        tracing::warn!(
            records = deleted,
            "buffer records held only for removed consumers were deleted"
        );
    }
    Ok(deleted as u64)
}

/// Registers the consumers of `wanted` that are not registered yet, each
/// on the lowest free bit, starting after the current last sequence
/// number; updates the kind prefixes of those that are.
fn add_new(
    tx: &Transaction<'_>,
    wanted: &[Consumer],
    registered: &[(Consumer, u8)],
    used: &mut Vec<u8>,
) -> Result<(), BufferError> {
    let high: i64 = tx
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'records'",
            [],
            |r| r.get(0),
        )
        .optional()
        .ctx("open: read the sequence")?
        .unwrap_or(0);
    for w in wanted {
        let kinds = w.kinds.join("\n");
        if registered.iter().any(|(c, _)| c.name == w.name) {
            tx.execute(
                "UPDATE consumers SET kinds = ?2 WHERE name = ?1",
                (&w.name, &kinds),
            )
            .ctx("open: update consumer")?;
            continue;
        }
        let bit = (0u8..MAX_CONSUMERS as u8)
            .find(|b| !used.contains(b))
            .ok_or(BufferError::TooManyConsumers {
                configured: wanted.len(),
                max: MAX_CONSUMERS,
            })?;
        used.push(bit);
        tx.execute(
            "INSERT INTO consumers (name, bit, kinds, since_seq) VALUES (?1, ?2, ?3, ?4)",
            (&w.name, i64::from(bit), &kinds, high),
        )
        .ctx("open: add consumer")?;
        if !registered.is_empty() {
            tracing::info!(consumer = %w.name, since_seq = high,
                "buffer consumer added: it receives records stored from now on");
        }
    }
    Ok(())
}

impl crate::Buffer {
    /// Installs the function that reads a record's kind, so consumers with
    /// kind prefixes get only the records they want. Call it right after
    /// open, before anything is appended; without it a consumer with
    /// prefixes gets nothing (a kind that cannot be read matches no prefix).
    pub fn set_kind_reader(&self, reader: KindReader) {
        self.lock().consumers.kind_reader = Some(reader);
    }
}
