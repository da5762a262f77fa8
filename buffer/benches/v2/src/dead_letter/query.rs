//! Reading and purging dead letters for an operator: which rows a filter
//! means, a summary by reason, the rows themselves, and deleting them.
//! Reading never removes anything; purging is counted in the totals.

use rusqlite::types::Value;

use super::{Change, DeadLetter, Kept, Origin};
use crate::buffer::Buffer;
use crate::error::{BufferError, Context};

/// Which dead letters an operator means. Every condition that is set must
/// hold; the default matches every row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    /// Only rows whose reason starts with this text (a whole reason, or a
    /// stage's name such as `range-validator:`).
    pub reason: Option<String>,
    /// Only rows with one of these event ids (empty: any id).
    pub ids: Vec<[u8; 16]>,
    /// Only rows numbered above this (for reading page by page).
    pub after_seq: i64,
    /// Only rows numbered at most this (a replay's snapshot, so rows it
    /// dead-letters again are not picked up a second time).
    pub up_to_seq: Option<i64>,
    /// At most this many rows, oldest first.
    pub limit: Option<u64>,
}

/// Dead letters sharing one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonSummary {
    /// The reason, as stored.
    pub reason: String,
    /// Rows with it.
    pub count: u64,
    /// Their accounted bytes.
    pub bytes: u64,
    /// When the oldest was dead-lettered, Unix ms.
    pub oldest_unix_ms: i64,
    /// When the newest was dead-lettered, Unix ms.
    pub newest_unix_ms: i64,
}

impl DeadLetterFilter {
    /// The `WHERE` clause and its parameters.
    fn clause(&self) -> (String, Vec<Value>) {
        let mut sql = String::from("seq > ?");
        let mut params = vec![Value::Integer(self.after_seq)];
        if let Some(up_to) = self.up_to_seq {
            sql.push_str(" AND seq <= ?");
            params.push(Value::Integer(up_to));
        }
        if let Some(reason) = &self.reason {
            // Compared as bytes, so the prefix is exact whatever the text.
            sql.push_str(
                " AND substr(CAST(reason AS BLOB), 1, length(CAST(? AS BLOB))) = CAST(? AS BLOB)",
            );
            params.push(Value::Text(reason.clone()));
            params.push(Value::Text(reason.clone()));
        }
        if !self.ids.is_empty() {
            sql.push_str(" AND id IN (");
            for (i, id) in self.ids.iter().enumerate() {
                sql.push_str(if i == 0 { "?" } else { ", ?" });
                params.push(Value::Blob(id.to_vec()));
            }
            sql.push(')');
        }
        (sql, params)
    }

    /// The rows this filter selects, as a sub-select of row numbers.
    fn selection(&self) -> (String, Vec<Value>) {
        let (clause, mut params) = self.clause();
        let mut sql = format!("SELECT seq FROM dead_letter WHERE {clause} ORDER BY seq");
        if let Some(limit) = self.limit {
            sql.push_str(" LIMIT ?");
            params.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        }
        (sql, params)
    }
}

impl Buffer {
    /// The oldest `limit` dead letters, oldest first. Reading does not
    /// remove them.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BufferError> {
        self.dead_letters_matching(&DeadLetterFilter {
            limit: Some(limit as u64),
            ..DeadLetterFilter::default()
        })
    }

    /// The dead letters `filter` selects, oldest first.
    pub fn dead_letters_matching(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<Vec<DeadLetter>, BufferError> {
        self.repairing(|| self.dead_letters_once(filter))
    }

    fn dead_letters_once(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>, BufferError> {
        let inner = self.lock();
        let (selection, params) = filter.selection();
        let sql = format!(
            "SELECT seq, id, payload, reason, at_ms, origin, input, kept, payload_len, sha256, size, \
             transport FROM dead_letter WHERE seq IN ({selection}) ORDER BY seq"
        );
        let mut stmt = inner.conn.prepare(&sql).ctx("dead letters: prepare")?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params), |row| {
                let payload: Vec<u8> = row.get(2)?;
                let kept: String = row.get(7)?;
                let len: Option<i64> = row.get(8)?;
                let sha256: Option<Vec<u8>> = row.get(9)?;
                let kept = match (
                    kept.as_str(),
                    sha256.and_then(|h| <[u8; 32]>::try_from(h).ok()),
                ) {
                    ("digest", Some(sha256)) => Kept::Digest {
                        len: len.unwrap_or(0).max(0) as u64,
                        sha256,
                    },
                    ("payload", _) => Kept::Payload(payload),
                    _ => Kept::Nothing,
                };
                let origin: String = row.get(5)?;
                Ok(DeadLetter {
                    seq: row.get(0)?,
                    id: row.get(1)?,
                    origin: Origin::from_columns(&origin, row.get(6)?),
                    kept,
                    reason: row.get(3)?,
                    at_unix_ms: row.get(4)?,
                    size: row.get::<_, i64>(10)?.max(0) as u64,
                    transport: row.get(11)?,
                })
            })
            .ctx("dead letters: read")?;
        rows.collect::<Result<Vec<_>, _>>()
            .ctx("dead letters: read")
    }

    /// The dead letters `filter` selects, grouped by reason, largest group
    /// first. `limit` bounds the rows looked at, not the groups.
    pub fn dead_letter_summary(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<Vec<ReasonSummary>, BufferError> {
        let inner = self.lock();
        let (selection, params) = filter.selection();
        let sql = format!(
            "SELECT reason, COUNT(*), COALESCE(SUM(size), 0), MIN(at_ms), MAX(at_ms) \
             FROM dead_letter WHERE seq IN ({selection}) \
             GROUP BY reason ORDER BY COUNT(*) DESC, MIN(seq)"
        );
        let mut stmt = inner
            .conn
            .prepare(&sql)
            .ctx("dead letters: prepare summary")?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params), |row| {
                Ok(ReasonSummary {
                    reason: row.get(0)?,
                    count: row.get::<_, i64>(1)?.max(0) as u64,
                    bytes: row.get::<_, i64>(2)?.max(0) as u64,
                    oldest_unix_ms: row.get(3)?,
                    newest_unix_ms: row.get(4)?,
                })
            })
            .ctx("dead letters: summarise")?;
        rows.collect::<Result<Vec<_>, _>>()
            .ctx("dead letters: summarise")
    }

    /// Deletes the dead letters `filter` selects, in one transaction;
    /// returns how many. Purged rows are not counted as evicted: an
    /// operator chose to delete them.
    pub fn purge_dead_letters(&self, filter: &DeadLetterFilter) -> Result<u64, BufferError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let (selection, params) = filter.selection();
        let sql = format!("DELETE FROM dead_letter WHERE seq IN ({selection}) RETURNING size");
        let tx = inner
            .conn
            .transaction()
            .ctx("purge dead letters: begin transaction")?;
        let mut change = Change::default();
        {
            let mut stmt = tx.prepare(&sql).ctx("purge dead letters: prepare")?;
            let mut rows = stmt
                .query(rusqlite::params_from_iter(params))
                .ctx("purge dead letters: delete")?;
            while let Some(row) = rows.next().ctx("purge dead letters: delete")? {
                let size: i64 = row.get(0).ctx("purge dead letters: read size")?;
                change.removed += 1;
                change.removed_bytes += size.max(0) as u64;
            }
        }
        tx.commit().ctx("purge dead letters: commit")?;
        inner.note_dead_letters(&change);
        inner.after_delete(change.removed_bytes);
        Ok(change.removed)
    }
}

impl Buffer {
    /// The newest dead letter's row number (0 when the table is empty): a
    /// replay's snapshot, so the rows it dead-letters again are not picked
    /// up a second time.
    pub fn last_dead_letter_seq(&self) -> Result<i64, BufferError> {
        let inner = self.lock();
        inner
            .conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM dead_letter", [], |row| {
                row.get(0)
            })
            .ctx("dead letters: read the newest")
    }
}
