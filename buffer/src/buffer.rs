//! The buffer itself: opening, appending under the size bound, and stats.
//! Leasing and acknowledging live in `delivery.rs`, dead letters in
//! `dead_letter.rs`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::batch::Record;
use crate::chunk::{Chunk, Stored};
use crate::commit::{Commit, write_cursor};
use crate::config::{BufferConfig, RECORD_OVERHEAD_BYTES, WhenFull};
use crate::consumer::Consumers;
use crate::damage::{Damage, Unreadable};
use crate::dead_letter;
use crate::error::{BufferError, Context};
use crate::schema;
use crate::staging::{self, Staged};
use crate::stats::{Counters, Stats};

/// Freed bytes (acked, evicted, dead-lettered) after which free pages are
/// returned to the filesystem even though the buffer is not empty.
const VACUUM_AFTER_FREED_BYTES: u64 = 16 * 1024 * 1024;

/// The durable buffer. See the crate docs for its guarantees.
///
/// All methods take `&self` and serialise on one internal lock, so a
/// `Buffer` can be shared (`Arc<Buffer>`) between the pipeline that appends
/// and the transport that drains.
pub struct Buffer {
    pub(crate) inner: Mutex<Inner>,
}

/// State behind the lock. In-memory totals change only after a commit.
pub(crate) struct Inner {
    pub(crate) conn: Connection,
    pub(crate) config: BufferConfig,
    /// Random per-open prefix of batch keys.
    pub(crate) epoch: u64,
    pub(crate) next_batch_id: u64,
    /// The transports draining this buffer, each with its leases and
    /// pending count (see `consumer.rs`).
    pub(crate) consumers: Consumers,
    /// Records no consumer wanted (kind filters), since open.
    pub(crate) unrouted: u64,
    pub(crate) records: u64,
    pub(crate) bytes: u64,
    pub(crate) dead_letters: u64,
    /// Accounted bytes of the dead-letter table.
    pub(crate) dead_letter_bytes: u64,
    /// Whether the last dead-letter commit evicted; logs once per episode.
    pub(crate) dead_letters_evicting: bool,
    pub(crate) counters: Counters,
    /// Bytes deleted since the last incremental vacuum.
    pub(crate) freed_since_vacuum: u64,
    /// Whether the last append had to drop or evict; logs once per episode.
    pub(crate) dropping: bool,
    /// Repairs of a damaged file since open (see `damage.rs`).
    pub(crate) repairs: u64,
    /// Damage reports the host has not taken yet.
    pub(crate) damage: Vec<Damage>,
    /// Records of leased batches that the last repair could not copy, by
    /// batch id.
    pub(crate) unreadable: HashMap<u64, Unreadable>,
    /// Why the last batch read failed, while it keeps failing.
    pub(crate) read_error: Option<String>,
    /// When the last salvage was attempted (successful or not).
    pub(crate) last_repair: Option<std::time::Instant>,
}

/// What `open` found, so the host can log it and emit lifecycle events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Where a corrupt buffer file was moved; when set the host should emit
    /// `buffer.recovered`. Its readable rows were copied into the fresh
    /// file ([`OpenReport::damage`] says how many, and how many were lost).
    pub recovered_from_corruption: Option<PathBuf>,
    /// What salvaging a damaged file recovered and lost; also queued for
    /// [`Buffer::take_damage`].
    pub damage: Option<Damage>,
    /// Records left over from the previous run that will be delivered again.
    pub pending_records: u64,
    /// Accounted bytes of those records.
    pub pending_bytes: u64,
    /// Records deleted at open because only consumers that are no longer
    /// configured still had to deliver them.
    pub removed_records: u64,
}

/// What happened to one `append` slice; every record not accepted is counted
/// here and in [`Stats`], so losses are never silent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    /// New records now durably in the buffer, plus any no consumer wanted
    /// (kind filters): those are taken, not stored, and counted in
    /// [`Stats::unrouted_total`].
    pub accepted: u64,
    /// New records dropped because they did not fit (the tail of the slice).
    pub dropped_newest: u64,
    /// Previously buffered records evicted to make room.
    pub evicted_oldest: u64,
}

impl Buffer {
    /// Opens the buffer at `config.path`, creating it if missing.
    ///
    /// A damaged file is moved aside rather than failing, and every row that
    /// can still be read is copied into a fresh file: an edge device that
    /// cannot start cannot report anything, and records a client was told
    /// were accepted should still be delivered. Records left unacknowledged by the previous
    /// run (including batches that were in flight) are delivered again.
    pub fn open(config: BufferConfig) -> Result<(Buffer, OpenReport), BufferError> {
        let opened = schema::open(&config)?;
        staging::drop_leftovers(&opened.conn)?;
        let report = OpenReport {
            recovered_from_corruption: opened.recovered_from_corruption,
            damage: opened.damage.clone(),
            pending_records: opened.records,
            pending_bytes: opened.bytes,
            removed_records: opened.removed_records,
        };
        let consumers = Consumers::load(&opened.conn)?;
        tracing::debug!(buffer = %config.path.display(), records = opened.records,
            bytes = opened.bytes, "buffer opened");
        let inner = Inner {
            conn: opened.conn,
            config,
            epoch: rand::random(),
            next_batch_id: 1,
            consumers,
            unrouted: 0,
            records: opened.records,
            bytes: opened.bytes,
            dead_letters: opened.dead_letters,
            dead_letter_bytes: opened.dead_letter_bytes,
            dead_letters_evicting: false,
            counters: Counters::default(),
            freed_since_vacuum: 0,
            dropping: false,
            repairs: 0,
            damage: Vec::new(),
            unreadable: HashMap::new(),
            read_error: None,
            last_repair: None,
        };
        let mut inner = inner;
        if let Some(damage) = opened.damage {
            inner.counters.damage_lost += damage.records_lost;
            inner.queue_damage(damage);
        }
        Ok((
            Buffer {
                inner: Mutex::new(inner),
            },
            report,
        ))
    }

    /// Durably stores `records`, in order, applying the `when_full` policy.
    ///
    /// The slice is one transaction: when this returns `Ok`, every accepted
    /// record survives a crash; on `Err` nothing changed. Batching many
    /// records per call is what makes appends fast (one commit each).
    pub fn append(&self, records: &[Record]) -> Result<AppendOutcome, BufferError> {
        self.commit(&Commit {
            records,
            ..Commit::default()
        })
    }

    /// Stores new records, dead letters and an input position in one
    /// transaction (see [`Commit`]): either all of it survives a crash or
    /// none of it does. Under [`WhenFull::Block`], a commit whose records do
    /// not fit fails with [`BufferError::Full`] and writes nothing at all,
    /// so the caller can retry the same input later without duplicating its
    /// dead letters or moving its position — unless it is
    /// [`Commit::admitted`], which is stored whole. A commit that meets a
    /// damaged page salvages the file and is retried once (see `damage.rs`).
    pub fn commit(&self, commit: &Commit<'_>) -> Result<AppendOutcome, BufferError> {
        self.repairing(|| self.commit_once(commit))
    }

    fn commit_once(&self, commit: &Commit<'_>) -> Result<AppendOutcome, BufferError> {
        if commit.is_empty() {
            return Ok(AppendOutcome::default());
        }
        let records = commit.records;
        let mut guard = self.lock();
        let inner = &mut *guard;
        // Each record's consumers; one no consumer wants is not stored.
        let staged_routed: Vec<(u64, i64)> = commit.staged.map_or_else(Vec::new, |s| {
            s.sizes
                .iter()
                .zip(&s.masks)
                .filter(|(_, m)| **m != 0)
                .map(|(size, m)| (*size, *m))
                .collect()
        });
        let only = commit
            .only_for
            .and_then(|name| inner.consumers.by_name(name))
            .map(|index| inner.consumers.list[index].mask());
        let staged_len = commit.staged.map_or(0, Staged::len);
        // The caller's kinds, when they cover every record (staged first).
        let mut kinds = Kinds::new(commit.kinds, staged_len + records.len());
        let staged_kinds: Vec<Option<&str>> = (0..staged_len).map(|_| kinds.next()).collect();
        let own_routed: Vec<(&Record, u64, i64, Option<std::borrow::Cow<'_, str>>)> = records
            .iter()
            .filter_map(|r| {
                let given = kinds.next();
                let (mask, kind) = match only {
                    Some(mask) => (mask, given.map(std::borrow::Cow::Borrowed)),
                    None => inner.consumers.route(r, given),
                };
                (mask != 0).then(|| (r, accounted_size(r), mask, kind))
            })
            .collect();
        let offered = commit.staged.map_or(0, Staged::len) + records.len();
        let sizes: Vec<u64> = staged_routed
            .iter()
            .map(|(size, _)| *size)
            .chain(own_routed.iter().map(|(_, size, _, _)| *size))
            .collect();
        let total = sizes.len();
        let unrouted = (offered - total) as u64;
        let free = inner.config.max_bytes.saturating_sub(inner.bytes);
        let when_full = if commit.replayed.is_empty() {
            inner.config.when_full
        } else {
            WhenFull::Block
        };
        let (accept, must_free) = match when_full {
            WhenFull::Block => {
                let needed: u64 = sizes.iter().sum();
                if needed > free && !commit.admitted {
                    return Err(BufferError::Full { needed, free });
                }
                (total, 0)
            }
            WhenFull::DropNewest => (fitting_prefix(&sizes, free).0, 0),
            WhenFull::DropOldest => {
                let evictable = inner.bytes.saturating_sub(inner.consumers.leased().1);
                let (n, fit) = fitting_prefix(&sizes, free.saturating_add(evictable));
                (n, fit.saturating_sub(free))
            }
        };

        let now = now_ms();
        let dead_letter_bound = inner.dead_letter_bound();
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("append: begin transaction")?;
        let (evicted, evicted_bytes, evicted_masks) = if must_free > 0 {
            evict_oldest(&tx, &inner.consumers.unleased_gaps(), must_free)?
        } else {
            (0, 0, Vec::new())
        };
        let from_staged = accept.min(staged_routed.len());
        if let Some(staged) = commit.staged {
            staging::promote(&tx, staged, from_staged, &staged_kinds, now)?;
        }
        {
            let mut chunk = Chunk::default();
            let own = &own_routed[..(accept - from_staged).min(own_routed.len())];
            let mut bytes_left: usize = own.iter().map(|(r, ..)| r.payload.len()).sum();
            for (i, (record, _, mask, kind)) in own.iter().enumerate() {
                if chunk.must_cut(*mask, record.payload.len()) {
                    chunk.insert(&tx, now)?;
                }
                chunk.reserve_for(own.len() - i, bytes_left);
                chunk.push(&record.id, &record.payload, kind.as_deref(), *mask);
                bytes_left -= record.payload.len();
            }
            chunk.insert(&tx, now)?;
        }
        let dead = dead_letter::apply(
            &tx,
            dead_letter_bound,
            commit.dead_letters,
            commit.replayed,
            now,
            None,
        )?;
        if let Some(cursor) = &commit.cursor {
            write_cursor(&tx, cursor)?;
        }
        crate::kv::apply(&tx, commit.kv)?;
        if let Some(usage) = commit.usage {
            let outcome = AppendOutcome {
                accepted: accept as u64 + unrouted,
                dropped_newest: (total - accept) as u64,
                evicted_oldest: evicted,
            };
            crate::usage::add(&tx, &(usage.0)(&outcome))?;
        }
        tx.commit().ctx("append: commit")?;

        if dead.added + dead.removed > 0 {
            inner.note_dead_letters(&dead);
        }
        let accepted_bytes: u64 = sizes.iter().take(accept).sum();
        for (_, mask) in staged_routed.iter().take(from_staged) {
            inner.consumers.add(*mask, 1);
        }
        for (_, _, mask, _) in own_routed.iter().take(accept - from_staged) {
            inner.consumers.add(*mask, 1);
        }
        for (mask, n) in evicted_masks {
            inner.consumers.remove(mask, n);
        }
        inner.unrouted += unrouted;
        let outcome = AppendOutcome {
            accepted: accept as u64 + unrouted,
            dropped_newest: (total - accept) as u64,
            evicted_oldest: evicted,
        };
        inner.records = inner.records.saturating_sub(evicted) + accept as u64;
        inner.bytes = inner.bytes.saturating_sub(evicted_bytes) + accepted_bytes;
        inner.counters.appended += accept as u64;
        inner.counters.dropped_newest += outcome.dropped_newest;
        inner.counters.evicted_oldest += evicted;
        if total == 0 {
            return Ok(outcome);
        }
        let dropping = outcome.dropped_newest > 0 || evicted > 0;
        if dropping && !inner.dropping {
            tracing::warn!(buffer = %inner.config.path.display(),
                max_bytes = inner.config.max_bytes, policy = ?inner.config.when_full,
                dropped_newest = outcome.dropped_newest, evicted_oldest = evicted,
                "buffer full: dropping records (counted in stats); the transport is not keeping up");
        } else if !dropping && inner.dropping {
            tracing::info!(buffer = %inner.config.path.display(), "buffer no longer dropping records");
        }
        inner.dropping = dropping;
        if evicted > 0 {
            inner.after_delete(evicted_bytes);
        }
        Ok(outcome)
    }

    /// Lets a producer start work (run plugins) whose records it will
    /// commit with [`Commit::admitted`], or pushes back first.
    ///
    /// Only [`WhenFull::Block`] ever refuses: with less than `estimate`
    /// accounted bytes free (the size of the input is a fair lower bound of
    /// what its events need) it fails with [`BufferError::Full`] and the
    /// producer should wait and ask again — *before* decoding, so no plugin
    /// sees the same input twice and usage is counted once. An empty buffer
    /// admits anything, so an input estimated larger than the whole buffer
    /// is not refused forever. The other policies make room at the commit.
    pub fn admit(&self, estimate: u64) -> Result<(), BufferError> {
        let inner = self.lock();
        if inner.config.when_full != WhenFull::Block || inner.bytes == 0 {
            return Ok(());
        }
        let free = inner.config.max_bytes.saturating_sub(inner.bytes);
        if estimate > free {
            return Err(BufferError::Full {
                needed: estimate,
                free,
            });
        }
        Ok(())
    }

    /// A snapshot for metrics. Never fails: if the oldest record's age cannot
    /// be read, it is reported as `None` and a warning is logged.
    pub fn stats(&self) -> Stats {
        let inner = self.lock();
        let oldest_ms: Option<i64> = inner
            .conn
            .prepare_cached("SELECT enqueued_ms FROM records ORDER BY seq LIMIT 1")
            .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)).optional())
            .unwrap_or_else(|err| {
                tracing::warn!(error = %err, "buffer stats: could not read the oldest record");
                None
            });
        Stats {
            records: inner.records,
            bytes: inner.bytes,
            oldest_age: oldest_ms
                .map(|ms| Duration::from_millis(now_ms().saturating_sub(ms).max(0) as u64)),
            leased_records: inner.consumers.leased().0,
            unrouted_total: inner.unrouted,
            dead_letters: inner.dead_letters,
            dead_letter_bytes: inner.dead_letter_bytes,
            dead_letters_pruned_total: inner.counters.dead_letters_pruned,
            dead_letters_pruned_bytes_total: inner.counters.dead_letters_pruned_bytes,
            dropped_newest_total: inner.counters.dropped_newest,
            evicted_oldest_total: inner.counters.evicted_oldest,
            appended_total: inner.counters.appended,
            acked_total: inner.counters.acked,
            damage_lost_total: inner.counters.damage_lost,
            damage_repairs_total: inner.repairs,
            read_error: inner.read_error.clone(),
        }
    }

    /// The configuration this buffer was opened with.
    pub fn config(&self) -> BufferConfig {
        self.lock().config.clone()
    }

    /// Takes the lock. A panic while holding it cannot leave the file
    /// inconsistent (transactions roll back on drop and totals are updated
    /// only after commit), so a poisoned lock is safe to reuse.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    /// Gives free pages back to the filesystem when the buffer has drained or
    /// a lot has been deleted. Failures are logged, not returned: the delete
    /// that got us here has already committed.
    pub(crate) fn after_delete(&mut self, freed_bytes: u64) {
        self.freed_since_vacuum += freed_bytes;
        if self.records != 0 && self.freed_since_vacuum < VACUUM_AFTER_FREED_BYTES {
            return;
        }
        match self.incremental_vacuum() {
            Ok(pages) if pages > 0 => {
                tracing::debug!(
                    pages,
                    records = self.records,
                    "buffer returned free pages to disk"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "buffer could not give free space back"),
        }
        self.freed_since_vacuum = 0;
    }

    fn incremental_vacuum(&self) -> Result<i64, BufferError> {
        let pages: i64 = self
            .conn
            .pragma_query_value(None, "freelist_count", |row| row.get(0))
            .ctx("vacuum: read freelist_count")?;
        if pages > 0 {
            // The pragma frees one page per step, so step it to completion.
            let mut stmt = self
                .conn
                .prepare_cached("PRAGMA incremental_vacuum")
                .ctx("vacuum: prepare")?;
            let mut rows = stmt.query([]).ctx("vacuum: run")?;
            while rows.next().ctx("vacuum: run")?.is_some() {}
        }
        Ok(pages)
    }
}

/// What an eviction took: records, accounted bytes, and the (mask,
/// records) of each evicted part for the consumers' pending counts.
type Evicted = (u64, u64, Vec<(i64, u64)>);

/// Evicts the oldest records that are not leased until at least `must_free`
/// accounted bytes are freed: whole chunks, and of the last one only the
/// events needed (it is split first; see `chunk.rs`), so exactly the same
/// records go as when every record was a row, and each is counted.
/// Returns the records and bytes evicted and the (mask, records) of each
/// evicted part.
fn evict_oldest(
    tx: &Transaction<'_>,
    gaps: &[(i64, i64)],
    must_free: u64,
) -> Result<Evicted, BufferError> {
    let (mut count, mut freed, mut masks) = (0u64, 0u64, Vec::new());
    for &(after, before) in gaps {
        if freed >= must_free {
            break;
        }
        let mut last = None;
        // A chunk of which only a head must go: (its key, events in it).
        let mut partial: Option<(i64, i64)> = None;
        {
            let mut scan = tx
                .prepare_cached(
                    "SELECT seq, size, pending, count FROM records WHERE seq > ?1 AND seq < ?2 ORDER BY seq",
                )
                .ctx("append: prepare eviction scan")?;
            let mut rows = scan
                .query((after, before))
                .ctx("append: scan for eviction")?;
            while let Some(row) = rows.next().ctx("append: scan for eviction")? {
                let seq: i64 = row.get(0).ctx("append: read seq")?;
                let size: i64 = row.get(1).ctx("append: read size")?;
                let n: i64 = row.get(3).ctx("append: read count")?;
                let size = size.max(0) as u64;
                if n > 1 && freed + size > must_free {
                    partial = Some((seq, n));
                    break;
                }
                let n = n.max(0) as u64;
                masks.push((row.get(2).ctx("append: read pending")?, n));
                freed += size;
                count += n;
                last = Some(seq);
                if freed >= must_free {
                    break;
                }
            }
        }
        if let Some((seq, _)) = partial {
            let stored = tx
                .prepare_cached(&format!(
                    "SELECT {} FROM records WHERE seq = ?1",
                    crate::chunk::COLUMNS
                ))
                .ctx("append: prepare eviction read")?
                .query_row([seq], |row| Ok(Stored::read(row)))
                .ctx("append: read chunk to evict")??;
            let (mut head, mut head_bytes) = (0usize, 0u64);
            while head < stored.count && freed + head_bytes < must_free {
                head_bytes += stored.event(head).len() as u64 + RECORD_OVERHEAD_BYTES;
                head += 1;
            }
            if head < stored.count {
                crate::chunk::split(tx, &stored, head)?;
            }
            masks.push((stored.pending, head as u64));
            freed += head_bytes;
            count += head as u64;
            last = Some(stored.first_seq() + head as i64 - 1);
        }
        if let Some(last) = last {
            tx.prepare_cached("DELETE FROM records WHERE seq > ?1 AND seq <= ?2")
                .and_then(|mut stmt| stmt.execute((after, last)))
                .ctx("append: evict oldest")?;
        }
    }
    Ok((count, freed, masks))
}

/// The longest prefix of `sizes` whose sum fits in `room`, and that sum.
/// Stops at the first record that does not fit so the accepted records are
/// exactly the oldest of the slice, never a slice with holes.
fn fitting_prefix(sizes: &[u64], room: u64) -> (usize, u64) {
    let mut sum = 0u64;
    for (i, size) in sizes.iter().enumerate() {
        if sum + size > room {
            return (i, sum);
        }
        sum += size;
    }
    (sizes.len(), sum)
}

/// Walks the run-length kinds a commit brought, one record at a time;
/// yields nothing when they do not cover exactly the records offered.
struct Kinds<'a> {
    runs: std::slice::Iter<'a, (String, u64)>,
    current: Option<(&'a str, u64)>,
}

impl<'a> Kinds<'a> {
    fn new(runs: &'a [(String, u64)], records: usize) -> Kinds<'a> {
        let covered: u64 = runs.iter().map(|(_, n)| n).sum();
        let runs = if covered == records as u64 { runs } else { &[] };
        Kinds {
            runs: runs.iter(),
            current: None,
        }
    }

    fn next(&mut self) -> Option<&'a str> {
        loop {
            match &mut self.current {
                Some((kind, n)) if *n > 0 => {
                    *n -= 1;
                    return Some(kind);
                }
                _ => {
                    let (kind, n) = self.runs.next()?;
                    self.current = Some((kind.as_str(), *n));
                }
            }
        }
    }
}

/// What a record counts against `max_bytes`.
pub(crate) fn accounted_size(record: &Record) -> u64 {
    record.payload.len() as u64 + RECORD_OVERHEAD_BYTES
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
/// Wall clock, not monotonic, because enqueue times must survive restarts.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
