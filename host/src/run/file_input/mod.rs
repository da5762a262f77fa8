//! The `file` input: follows a file like `tail -F`, hands complete lines to
//! the pipeline as frames, and remembers how far it got.
//!
//! Invariants:
//! - the read position (the file's content fingerprint, device, inode, id
//!   key and offset; see [`identity`]) is stored in the buffer, in the same
//!   transaction as the events of the lines before it, so after any crash
//!   the position and the buffer agree: a restart neither skips nor
//!   re-reads a line;
//! - a file is known by its content, not its inode: a stored position is
//!   resumed only in a file that starts with the same bytes, so a new file
//!   that reuses a deleted file's inode is read from its start;
//! - each line's frame key is the file's id key (derived from its
//!   fingerprint) and the line's byte offset, so a line read twice yields
//!   the same event ids, a new file never yields an old file's ids, and the
//!   ids of one file grow with the offset;
//! - a partial last line (no `\n` yet) is not read until it is complete; a
//!   line over `max_line_bytes` is never held whole: its first 4 KiB are
//!   dead-lettered with a reason naming the limit and its offset, and the
//!   rest is skipped ([`lines`]);
//! - the stop signal is checked between read chunks and between batches:
//!   a file far behind stops within one batch's commit, at a committed
//!   position, and the next start goes on from there.
//!
//! Rotation: when the path names another file (rename or delete and
//! create), the old handle is read to its end once more and then the file
//! at the path is opened; when the file shrank or its first bytes changed
//! (truncated in place, copytruncate), it is read again from its start.
//! Either way a file whose fingerprint matches the one being read (the
//! path was replaced by a copy of itself) goes on at the same offset.
//! Only the file at the path is followed: a renamed file's unread rest is
//! drained while the host runs, not after a restart.

mod deliver;
mod identity;
mod lines;

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use tokio::sync::watch;

use halyard_buffer::Buffer;

use super::sequence::Sequence;
use super::worker::Work;
use crate::config::StartAt;
use identity::{FINGERPRINT_BYTES, Fingerprint, Position, Seen};
use lines::Splitter;

/// How often to look for new data at the end of the file.
const POLL: Duration = Duration::from_millis(100);
/// Most lines handed to the pipeline at once.
const MAX_LINES: usize = 1000;
/// Bytes read per read call.
const CHUNK: usize = 256 << 10;

/// A file input's settings.
pub struct FileInput {
    /// The input's name (offsets are stored under it).
    pub name: String,
    /// The file to follow.
    pub path: PathBuf,
    /// Where to start without a stored offset.
    pub start_at: StartAt,
    /// Lines longer than this are dead-lettered, never held whole.
    pub max_line_bytes: usize,
    /// The buffer, where the position is committed (read once at start).
    pub buffer: Arc<Buffer>,
}

/// The file being read.
struct Open {
    /// Its handle; read with `pread`, so renames and deletes do not matter.
    file: Arc<std::fs::File>,
    /// Its device and inode.
    here: (u64, u64),
    /// Its content fingerprint, grown as the file grows.
    fingerprint: Fingerprint,
    /// Its id key, once fixed (when its first line is read, or resumed).
    key: Option<[u8; 8]>,
    /// Its bytes, cut into lines.
    splitter: Splitter,
    /// The offset last committed (or resumed from).
    committed: u64,
    /// The offset the last request sent reaches (committed once every
    /// request out is).
    sent: u64,
    /// The requests out, oldest first.
    flights: deliver::Flights,
    /// Their commit order.
    sequence: Arc<Sequence>,
}

impl Open {
    /// This file's position at `offset`.
    fn position(&self, offset: u64) -> Position {
        Position {
            dev: self.here.0,
            ino: self.here.1,
            offset,
            fingerprint: Some(self.fingerprint.clone()),
            key: self.key.map(hex::encode),
        }
    }
}

/// Why following one file ended.
enum Next {
    /// The input is stopping.
    Stop,
    /// Open the file at the path again (rotated, truncated, or a read
    /// failed).
    Reopen,
}

impl FileInput {
    /// Follows the file until `stop` turns true, then returns once the
    /// batch in hand is committed (or refused as past the stop deadline).
    pub async fn run(self, work: Sender<Work>, mut stop: watch::Receiver<bool>) {
        let mut last = self.load_position();
        loop {
            if *stop.borrow() {
                return;
            }
            let Some(mut open) = self.open(last.as_ref()).await else {
                // Not there yet (or between rotation steps): wait for it.
                if wait(&mut stop).await {
                    return;
                }
                continue;
            };
            let next = self.follow(&mut open, &work, &mut stop).await;
            // What is out is committed (or, stopping, refused) before the
            // input returns or reads another file.
            let settled = self.settle(&mut open, &work, &mut stop).await;
            match next {
                Next::Reopen if settled => last = Some(open.position(open.committed)),
                _ => return,
            }
        }
    }

    /// Opens the file at the path and decides where to read it from, given
    /// `last`, the position of the file read before (stored, or in hand).
    async fn open(&self, last: Option<&Position>) -> Option<Open> {
        let path = self.path.clone();
        let opened = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path)?;
            let meta = file.metadata()?;
            let head = read_head(&file)?;
            Ok::<_, std::io::Error>((file, meta, head))
        })
        .await;
        let (file, meta, head) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(err)) if err.kind() == std::io::ErrorKind::NotFound => return None,
            Ok(Err(err)) => {
                tracing::warn!(input = %self.name, error = %err, "cannot open the file; retrying");
                return None;
            }
            Err(_) => return None,
        };
        let here = (meta.dev(), meta.ino());
        let seen = Seen {
            file: here,
            len: meta.len(),
            head: &head,
        };
        let resume = identity::resume(last, seen, self.start_at == StartAt::End);
        match last {
            Some(last) if !resume.same_file => tracing::info!(
                input = %self.name, previous_offset = last.offset,
                same_inode = (last.dev, last.ino) == here,
                "a new file at the path (its first bytes differ): reading it from the start"
            ),
            Some(last) if last.fingerprint.is_none() => tracing::info!(
                input = %self.name, offset = last.offset,
                "resuming a position stored without a fingerprint by device and inode; \
                 the next commit stores the fingerprint"
            ),
            _ => {}
        }
        Some(Open {
            file: Arc::new(file),
            here,
            fingerprint: Fingerprint::of(&head),
            key: resume.key,
            splitter: Splitter::new(self.max_line_bytes, resume.offset),
            committed: resume.offset,
            sent: resume.offset,
            flights: Default::default(),
            sequence: Sequence::new(),
        })
    }

    /// Reads `open` until the input stops or the path names another file.
    async fn follow(
        &self,
        open: &mut Open,
        work: &Sender<Work>,
        stop: &mut watch::Receiver<bool>,
    ) -> Next {
        // The path names another file: read this one to its end once more.
        let mut draining = false;
        let mut caught_up = None;
        loop {
            if *stop.borrow() {
                return Next::Stop;
            }
            let file = open.file.clone();
            let at = open.splitter.next_offset();
            let read = tokio::task::spawn_blocking(move || read_chunk(&file, at)).await;
            let (chunk, head) = match read {
                Ok(Ok(read)) => read,
                Ok(Err(err)) => {
                    tracing::warn!(input = %self.name, error = %err, "read failed; reopening");
                    return if wait(stop).await {
                        Next::Stop
                    } else {
                        Next::Reopen
                    };
                }
                Err(_) => return Next::Stop,
            };
            if !chunk.is_empty() {
                // The head is read after the chunk: if it still matches,
                // the chunk came from this file, not one rewritten in place.
                if !open.fingerprint.matches(&head) {
                    tracing::warn!(input = %self.name, offset = open.committed,
                        "the file's first bytes changed (truncated and rewritten in place): \
                         reading it from the start");
                    return Next::Reopen;
                }
                open.fingerprint = open.fingerprint.grown(&head);
                let mut pieces = Vec::new();
                open.splitter.feed(&chunk, &mut pieces);
                if !self.deliver(open, pieces, work, stop).await {
                    return Next::Stop;
                }
                continue;
            }
            if !self.settle(open, work, stop).await {
                return Next::Stop;
            }
            if caught_up != Some(open.committed) {
                caught_up = Some(open.committed);
                tracing::debug!(input = %self.name, offset = open.committed,
                    "file input caught up: everything up to offset is committed");
            }
            if draining {
                return Next::Reopen;
            }
            match tokio::fs::metadata(&self.path).await {
                Ok(m) if (m.dev(), m.ino()) != open.here => {
                    draining = true;
                    continue;
                }
                Ok(m) if m.len() < open.splitter.next_offset() => {
                    tracing::info!(input = %self.name, offset = open.committed, len = m.len(),
                        "the file shrank (truncated): reading it from the start");
                    return Next::Reopen;
                }
                _ => {}
            }
            if wait(stop).await {
                return Next::Stop;
            }
        }
    }

    /// The committed position, if any. A position that cannot be read is
    /// logged and treated as none (the file is read per `start_at`).
    fn load_position(&self) -> Option<Position> {
        match self.buffer.cursor(&self.name) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes)
                .inspect_err(|err| tracing::warn!(input = %self.name, error = %err, "stored file position unreadable; ignoring it"))
                .ok(),
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(input = %self.name, error = %err, "cannot read the stored file position");
                None
            }
        }
    }
}

/// Up to [`CHUNK`] bytes at `offset`, and (when there were any) the file's
/// first bytes read after them, to check they came from the same file.
fn read_chunk(file: &std::fs::File, offset: u64) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut chunk = vec![0u8; CHUNK];
    let n = file.read_at(&mut chunk, offset)?;
    chunk.truncate(n);
    let head = if n > 0 { read_head(file)? } else { Vec::new() };
    Ok((chunk, head))
}

/// The file's first [`FINGERPRINT_BYTES`] bytes (fewer if it is shorter).
fn read_head(file: &std::fs::File) -> std::io::Result<Vec<u8>> {
    let mut head = vec![0u8; FINGERPRINT_BYTES];
    let mut filled = 0;
    while filled < head.len() {
        match file.read_at(&mut head[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    head.truncate(filled);
    Ok(head)
}

/// Sleeps one poll interval; true if asked to stop.
async fn wait(stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(POLL) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}
