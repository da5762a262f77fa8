//! Damage to the buffer file: contained to the damaged part, at open and
//! while running, and reported with exact counts.
//!
//! When any buffer operation meets a damaged page (SQLite says
//! `SQLITE_CORRUPT`, `NOTADB`, or a read past the end of a truncated file),
//! the buffer does not retry the same read for ever: it checkpoints the WAL,
//! copies every row it can still read into a fresh file (see `salvage/`
//! and, for rows below an unreadable inner page, `salvage/pages.rs`), moves the damaged
//! file aside as `<name>.corrupt-<unix-time>` for the operator, swaps the
//! fresh file in, and retries the operation once. Records keep their
//! sequence numbers and ids, so delivery resumes in order right after the
//! damaged range.
//!
//! Counting: while running, the in-memory record total is exact, so the
//! records lost are exactly those that were buffered and not copied. Records
//! of a batch in flight that could not be copied are not lost yet: the
//! transport holds them; they are counted lost only if that batch is then
//! released instead of acknowledged. At open, the count comes from the
//! damaged file's `(seq, size)` index ([`Damage::lost_exact`] says whether
//! it could be read in full).
//!
//! Each episode is kept as a [`Damage`] report until the host takes it
//! ([`Buffer::take_damage`]) to publish `buffer.damaged` and degrade
//! `/health`.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde::Serialize;

use crate::batch::Lease;
use crate::buffer::{Buffer, Inner};
use crate::error::{BufferError, Context};
use crate::salvage::{self, Salvaged};
use crate::schema::{self, SALVAGE_SUFFIX, with_suffix};

/// Damage reports kept for the host at most; older ones are dropped (their
/// counts stay in [`crate::Stats`]).
const MAX_PENDING_REPORTS: usize = 32;

/// Damaged sequence ranges listed in one report at most.
const MAX_RANGES: usize = 32;

/// Least time between two salvages. A salvage copies the whole backlog;
/// if one fails (disk full) or the damage comes straight back (a failing
/// device), retrying it on every read would only grind the disk. Within
/// this time the operation's error is returned instead (and `/health`
/// shows it).
const REPAIR_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// When the damage was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FoundAt {
    /// While opening the file.
    Open,
    /// By an operation on the open buffer (a batch read, an ack, an append).
    Running,
}

/// One episode of damage: what was salvaged, what was lost, where the
/// damaged file went. Serializes as the `buffer.damaged` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Damage {
    /// When it was found.
    pub found: FoundAt,
    /// The SQLite error that revealed it.
    pub error: String,
    /// Where the damaged file (and its `-wal`) was moved, for forensics.
    pub moved_to: PathBuf,
    /// Records copied into the fresh file; they will be delivered.
    pub records_recovered: u64,
    /// Records that could not be read and are gone.
    pub records_lost: u64,
    /// Whether `records_lost` is exact; false only at open when both the
    /// rows and the index of the damaged file were unreadable in places
    /// (then it is a lower bound).
    pub lost_exact: bool,
    /// At most this many records were lost: the sequence numbers inside
    /// the damaged ranges. Equal to `records_lost` while running.
    pub records_lost_at_most: u64,
    /// Records of batches in flight that could not be copied: lost only if
    /// that batch is not acknowledged (then counted in
    /// [`crate::Stats::damage_lost_total`]).
    pub in_flight_unreadable: u64,
    /// Dead letters copied into the fresh file.
    pub dead_letters_recovered: u64,
    /// Dead letters lost, when known (while running: exact; at open: only
    /// if nothing of that table was skipped).
    pub dead_letters_lost: Option<u64>,
    /// Inclusive sequence ranges of `records` that could not be read (at
    /// most 32 listed).
    pub damaged_ranges: Vec<(u64, u64)>,
    /// Tables of which some part could not be read (`records`,
    /// `dead_letter`, `cursors`, `meta`). A lost cursor makes its file
    /// input start over per its `start_at`.
    pub incomplete_tables: Vec<String>,
}

impl Damage {
    /// The report of a salvage at open.
    pub(crate) fn at_open(err: &BufferError, moved: &Path, s: &Salvaged) -> Damage {
        let dead_letters_complete = !s.incomplete.iter().any(|t| t == "dead_letter");
        Damage {
            found: FoundAt::Open,
            error: err.to_string(),
            moved_to: moved.to_path_buf(),
            records_recovered: s.records,
            records_lost: s.index_missing,
            lost_exact: s.records_lost_exact(),
            records_lost_at_most: if s.records_lost_exact() {
                s.index_missing
            } else {
                s.records_lost_at_most().max(s.index_missing)
            },
            in_flight_unreadable: 0,
            dead_letters_recovered: s.dead_letters,
            dead_letters_lost: dead_letters_complete.then_some(0),
            damaged_ranges: ranges(&s.damaged_ranges),
            incomplete_tables: s.incomplete.clone(),
        }
    }

    /// The report when nothing at all could be read from the file at open.
    pub(crate) fn unreadable_at_open(err: &BufferError, moved: &Path) -> Damage {
        Damage {
            found: FoundAt::Open,
            error: err.to_string(),
            moved_to: moved.to_path_buf(),
            records_recovered: 0,
            records_lost: 0,
            lost_exact: false,
            records_lost_at_most: u64::MAX,
            in_flight_unreadable: 0,
            dead_letters_recovered: 0,
            dead_letters_lost: None,
            damaged_ranges: Vec::new(),
            incomplete_tables: vec!["*".to_string()],
        }
    }

    /// Logs the report at `error`: data was lost or nearly so.
    pub(crate) fn log(&self) {
        tracing::error!(found = ?self.found, moved_to = %self.moved_to.display(),
            records_recovered = self.records_recovered, records_lost = self.records_lost,
            lost_exact = self.lost_exact, records_lost_at_most = self.records_lost_at_most,
            in_flight_unreadable = self.in_flight_unreadable,
            dead_letters_recovered = self.dead_letters_recovered,
            damaged_ranges = ?self.damaged_ranges, incomplete_tables = ?self.incomplete_tables,
            error = %self.error,
            "buffer damage contained: readable rows salvaged into a fresh file, the damaged file kept aside");
    }
}

/// Sequence ranges for a report: at most [`MAX_RANGES`], open ends shown
/// as `u64::MAX`.
fn ranges(raw: &[(i64, i64)]) -> Vec<(u64, u64)> {
    raw.iter()
        .take(MAX_RANGES)
        .map(|(a, b)| ((*a).max(0) as u64, (*b).max(0) as u64))
        .collect()
}

/// Records of one lease that the last salvage could not copy.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Unreadable {
    pub(crate) records: u64,
    pub(crate) bytes: u64,
}

impl Buffer {
    /// Damage reports not yet taken, oldest first (the one from open, if
    /// any, then one per repair while running). Taking them empties the list.
    pub fn take_damage(&self) -> Vec<Damage> {
        std::mem::take(&mut self.lock().damage)
    }

    /// Runs `op`; if it meets damage, salvages the file (unless another
    /// caller already did since `op` started) and runs `op` once more.
    pub(crate) fn repairing<T>(
        &self,
        mut op: impl FnMut() -> Result<T, BufferError>,
    ) -> Result<T, BufferError> {
        let generation = self.lock().repairs;
        match op() {
            Err(err) if err.is_corruption() => {
                {
                    let mut inner = self.lock();
                    let recent = inner
                        .last_repair
                        .is_some_and(|t| t.elapsed() < REPAIR_INTERVAL);
                    if inner.repairs == generation {
                        if recent {
                            return Err(err);
                        }
                        inner.last_repair = Some(std::time::Instant::now());
                        inner.repair(&err)?;
                    }
                }
                op()
            }
            other => other,
        }
    }
}

impl Inner {
    /// Salvages the open file into a fresh one and swaps it in (see the
    /// module docs); updates the totals and queues a [`Damage`] report.
    fn repair(&mut self, cause: &BufferError) -> Result<(), BufferError> {
        let path = self.config.path.clone();
        tracing::error!(buffer = %path.display(), error = %cause,
            "buffer file is damaged; salvaging the readable rows into a fresh file");
        let scratch = with_suffix(&path, SALVAGE_SUFFIX);
        let leases = self.consumers.all_leases();
        let ranges: Vec<(i64, i64)> = leases.iter().map(|l| (l.first, l.last)).collect();
        // Move the WAL into the file first, so that reading pages directly
        // (for rows below an unreadable inner page) sees the newest ones; if
        // that fails the WAL stays and the page-by-page pass is skipped.
        let checkpoint = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            });
        if !matches!(checkpoint, Ok(0)) {
            tracing::warn!(result = ?checkpoint, "buffer repair: could not checkpoint the WAL first");
        }
        let salvaged = salvage::salvage(&self.conn, &scratch, &ranges, Some(&path))?;
        let moved = self.swap_in(&path, &scratch)?;

        let mut in_leases = 0u64;
        let mut unreadable = Unreadable::default();
        self.unreadable.clear();
        for (lease, (present, present_bytes)) in leases.iter().zip(&salvaged.in_ranges) {
            in_leases += present;
            let missing = Unreadable {
                records: lease.count.saturating_sub(*present),
                bytes: lease.bytes.saturating_sub(*present_bytes),
            };
            if missing.records > 0 {
                unreadable.records += missing.records;
                unreadable.bytes += missing.bytes;
                self.unreadable.insert(lease.batch_id, missing);
            }
        }
        let waiting_before = self.records.saturating_sub(self.consumers.leased().0);
        let waiting_now = salvaged.records.saturating_sub(in_leases);
        let lost = waiting_before.saturating_sub(waiting_now);
        if lost != salvaged.index_missing.saturating_sub(unreadable.records) {
            tracing::warn!(
                counted = lost,
                index_says = salvaged.index_missing,
                "buffer damage: the in-memory count and the damaged file's index disagree; reporting the in-memory count"
            );
        }
        let dead_letters_lost = self.dead_letters.saturating_sub(salvaged.dead_letters);
        self.records = salvaged.records + unreadable.records;
        self.bytes = salvaged.record_bytes + unreadable.bytes;
        self.dead_letters = salvaged.dead_letters;
        if let Ok((_, bytes)) = crate::dead_letter::totals(&self.conn) {
            self.dead_letter_bytes = bytes;
        }
        self.counters.damage_lost += lost;
        // Pending counts come from the fresh file, plus the leased records
        // it lacks (their batch settles them).
        self.consumers.recount(&self.conn)?;
        for c in &mut self.consumers.list {
            for lease in c.leases.all() {
                if let Some(missing) = self.unreadable.get(&lease.batch_id) {
                    c.pending += missing.records;
                }
            }
        }
        self.repairs += 1;
        self.freed_since_vacuum = 0;
        let damage = Damage {
            found: FoundAt::Running,
            error: cause.to_string(),
            moved_to: moved,
            records_recovered: salvaged.records,
            records_lost: lost,
            lost_exact: true,
            records_lost_at_most: lost,
            in_flight_unreadable: unreadable.records,
            dead_letters_recovered: salvaged.dead_letters,
            dead_letters_lost: Some(dead_letters_lost),
            damaged_ranges: ranges_of(&salvaged),
            incomplete_tables: salvaged.incomplete.clone(),
        };
        damage.log();
        self.queue_damage(damage);
        Ok(())
    }

    /// Closes the damaged file, moves it aside, renames the salvaged
    /// `scratch` into its place and opens it. If a rename fails, the
    /// damaged file is reopened where it was, so the buffer keeps working
    /// as well as it did.
    fn swap_in(&mut self, path: &Path, scratch: &Path) -> Result<PathBuf, BufferError> {
        salvage::keep_unchanged(&self.conn);
        let placeholder = Connection::open_in_memory().ctx("repair: close the damaged file")?;
        drop(std::mem::replace(&mut self.conn, placeholder));
        let reopen = |inner: &mut Inner| match schema::try_open(&inner.config) {
            Ok(opened) => inner.conn = opened.conn,
            Err(err) => tracing::error!(error = %err,
                "buffer cannot be reopened after a failed repair; restart halyard"),
        };
        let moved = match schema::move_aside(path) {
            Ok(moved) => moved,
            Err(err) => {
                reopen(self);
                return Err(err);
            }
        };
        if let Err(err) = schema::rename(scratch, path, "move the salvaged file into place") {
            let _ = schema::rename(&moved, path, "move the damaged file back");
            reopen(self);
            return Err(err);
        }
        self.conn = schema::try_open(&self.config)?.conn;
        Ok(moved)
    }

    /// Keeps `damage` for the host, dropping the oldest past the cap.
    pub(crate) fn queue_damage(&mut self, damage: Damage) {
        if self.damage.len() >= MAX_PENDING_REPORTS {
            self.damage.remove(0);
        }
        self.damage.push(damage);
    }

    /// Settles the records of `lease` that the last repair could not copy:
    /// delivered with their batch (acked: nothing lost), or gone (released
    /// or dead-lettered: counted lost, and out of the totals unless the
    /// caller already subtracts the whole lease).
    pub(crate) fn settle_unreadable(&mut self, lease: &Lease, gone: bool, subtract: bool) {
        let Some(missing) = self.unreadable.remove(&lease.batch_id) else {
            return;
        };
        if gone {
            self.counters.damage_lost += missing.records;
            tracing::error!(
                records = missing.records,
                "records of a batch whose rows were damaged were released undelivered: lost"
            );
        }
        if subtract {
            self.records = self.records.saturating_sub(missing.records);
            self.bytes = self.bytes.saturating_sub(missing.bytes);
        }
    }
}

fn ranges_of(s: &Salvaged) -> Vec<(u64, u64)> {
    ranges(&s.damaged_ranges)
}
