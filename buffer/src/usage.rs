//! Usage counters stored with the commits that produced them.
//!
//! The host reports usage (events in, accepted, rejected, …) to its
//! licence server. Counts kept only in memory are lost by a restart or a
//! crash, and counts stored in a transaction of their own can disagree
//! with what was committed (a crash in between counts an ingest that a
//! restart re-reads, or loses one that was stored). So a [`Commit`] may
//! carry its usage ([`Commit::usage`]): named counters added in the same
//! transaction as the records, the dead letters and the input position.
//! After any crash the counters and the buffer agree.
//!
//! The heartbeat reads them ([`Buffer::usage`]), sends them, and after the
//! server answered subtracts exactly what it sent
//! ([`Buffer::usage_reported`]), which also advances the report `seq` and
//! records when the report went through. Between two successful reports
//! counters only grow, so a report repeated after a lost answer (same
//! `seq`) contains everything the earlier one did: a server that keeps
//! the last report per `(host, seq)` counts every event once, in whatever
//! run of the host the report is sent.
//!
//! The table is its own schema step (`usage`, created if missing), so a
//! file from before it opens unchanged and an older build ignores it.
//! Counter names are the caller's; the buffer only adds and subtracts.
//!
//! [`Commit`]: crate::Commit
//! [`Commit::usage`]: crate::Commit::usage

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior};

use crate::buffer::{AppendOutcome, Buffer};
use crate::error::{BufferError, Context};

/// Creates the usage table in a file that lacks it.
pub(crate) const CREATE_USAGE: &str = "
CREATE TABLE IF NOT EXISTS usage (
    name TEXT PRIMARY KEY NOT NULL,
    n    INTEGER NOT NULL
);
";

/// The counters a commit adds, computed from its outcome (how many
/// records were stored or dropped is known only inside the transaction).
#[derive(Clone, Copy)]
pub struct UsageCounts<'a>(pub &'a dyn Fn(&AppendOutcome) -> Vec<(String, u64)>);

impl std::fmt::Debug for UsageCounts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UsageCounts(..)")
    }
}

/// The stored usage not yet reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredUsage {
    /// A random number drawn when the table was created: a file started
    /// afresh (deleted, or salvaged after damage) counts `seq` from 0
    /// again under a new epoch, which tells its reports from the old ones.
    pub epoch: u64,
    /// Successful reports so far: the `seq` of the next one.
    pub seq: u64,
    /// When the last report went through (Unix seconds), if ever.
    pub reported_at: Option<u64>,
    /// Counters with a non-zero value, by name.
    pub counts: Vec<(String, u64)>,
}

/// Creates the table (the schema step).
pub(crate) fn create(tx: &Transaction<'_>) -> Result<(), BufferError> {
    tx.execute_batch(CREATE_USAGE)
        .ctx("open: create usage table")?;
    // Below 2^53, so it survives JSON readers that use doubles.
    tx.execute(
        "INSERT OR IGNORE INTO meta (key, value) \
         VALUES ('usage_epoch', abs(random() % 9007199254740991))",
        [],
    )
    .ctx("open: draw usage epoch")?;
    Ok(())
}

/// Adds `counts` inside `tx`.
pub(crate) fn add(tx: &Transaction<'_>, counts: &[(String, u64)]) -> Result<(), BufferError> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO usage (name, n) VALUES (?1, ?2) \
             ON CONFLICT (name) DO UPDATE SET n = n + excluded.n",
        )
        .ctx("usage: prepare add")?;
    for (name, n) in counts.iter().filter(|(_, n)| *n > 0) {
        let n = i64::try_from(*n).unwrap_or(i64::MAX);
        stmt.execute((name, n)).ctx("usage: add")?;
    }
    Ok(())
}

fn meta(tx: &Transaction<'_>, key: &str) -> Result<Option<i64>, BufferError> {
    tx.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
        .ctx("usage: read meta")
}

fn set_meta(tx: &Transaction<'_>, key: &str, value: i64) -> Result<(), BufferError> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )
    .ctx("usage: write meta")?;
    Ok(())
}

/// When usage in the buffer file at `path` was last reported (Unix
/// seconds), read without writing or locking the file for long: `None` if
/// there is no file, it was never reported, or a running host holds it.
pub fn last_usage_report(path: &std::path::Path) -> Option<u64> {
    if !path.exists() {
        return None;
    }
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    conn.query_row(
        "SELECT value FROM meta WHERE key = 'usage_reported_at'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .ok()
    .and_then(|v| u64::try_from(v).ok())
}

impl Buffer {
    /// Adds usage counted outside any commit (e.g. deliveries), in a
    /// transaction of its own.
    pub fn add_usage(&self, counts: &[(String, u64)]) -> Result<(), BufferError> {
        if counts.iter().all(|(_, n)| *n == 0) {
            return Ok(());
        }
        self.repairing(|| {
            let mut inner = self.lock();
            let tx = inner
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .ctx("usage: begin")?;
            add(&tx, counts)?;
            tx.commit().ctx("usage: commit")
        })
    }

    /// The usage stored and not yet reported.
    pub fn usage(&self) -> Result<StoredUsage, BufferError> {
        self.repairing(|| {
            let mut inner = self.lock();
            let tx = inner.conn.transaction().ctx("usage: begin read")?;
            let counts = tx
                .prepare_cached("SELECT name, n FROM usage WHERE n > 0 ORDER BY name")
                .and_then(|mut stmt| {
                    stmt.query_map([], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
                    })?
                    .collect::<Result<Vec<_>, _>>()
                })
                .ctx("usage: read")?;
            let seq = meta(&tx, "usage_seq")?.unwrap_or(0).max(0) as u64;
            let epoch = meta(&tx, "usage_epoch")?.unwrap_or(0).max(0) as u64;
            let reported_at = meta(&tx, "usage_reported_at")?.map(|v| v.max(0) as u64);
            Ok(StoredUsage {
                epoch,
                seq,
                reported_at,
                counts,
            })
        })
    }

    /// After the licence server took report `seq` holding `sent`:
    /// subtracts exactly `sent`, advances `seq` and records `at` (Unix
    /// seconds), in one transaction. Returns false, changing nothing, if
    /// `seq` was already reported (a second subtraction would lose counts).
    pub fn usage_reported(
        &self,
        seq: u64,
        sent: &[(String, u64)],
        at: u64,
    ) -> Result<bool, BufferError> {
        self.repairing(|| {
            let mut inner = self.lock();
            let tx = inner
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .ctx("usage: begin report")?;
            if meta(&tx, "usage_seq")?.unwrap_or(0).max(0) as u64 != seq {
                return Ok(false);
            }
            {
                let mut stmt = tx
                    .prepare_cached("UPDATE usage SET n = MAX(n - ?2, 0) WHERE name = ?1")
                    .ctx("usage: prepare subtract")?;
                for (name, n) in sent {
                    let n = i64::try_from(*n).unwrap_or(i64::MAX);
                    stmt.execute((name, n)).ctx("usage: subtract")?;
                }
            }
            tx.execute("DELETE FROM usage WHERE n <= 0", [])
                .ctx("usage: drop zeros")?;
            set_meta(&tx, "usage_seq", (seq as i64).saturating_add(1))?;
            set_meta(&tx, "usage_reported_at", i64::try_from(at).unwrap_or(0))?;
            tx.commit().ctx("usage: commit report")?;
            Ok(true)
        })
    }
}
