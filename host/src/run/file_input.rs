//! The `file` input: follows a file like `tail -F`, hands complete lines to
//! the pipeline as frames, and remembers how far it got.
//!
//! Invariants:
//! - the read position (file identity and offset) is stored in the buffer,
//!   in the same transaction as the events of the lines before it, so after
//!   any crash the position and the buffer agree: a restart neither skips
//!   nor re-reads a line;
//! - each line's frame key is the file's identity (a hash of the input's
//!   name, device and inode) and the line's byte offset, so even a line read
//!   twice (the file was replaced by a copy of itself) yields the same event
//!   ids and the receiver drops the duplicate; the ids grow with the offset;
//! - a partial last line (no `\n` yet) is not read until it is complete.
//!
//! Rotation: when the path names a new file (another inode) or the file
//! shrank (truncated), the rest of the old handle is drained and reading
//! restarts at the beginning of the new file.

use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{oneshot, watch};

use halyard_buffer::Buffer;

use super::worker::Work;
use crate::config::StartAt;
use crate::pipeline::{KeyedFrame, PipelineError};
use crate::plugin::Frame;

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
    /// The buffer, where the position is committed (read once at start).
    pub buffer: Arc<Buffer>,
}

/// The stored read position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Position {
    dev: u64,
    ino: u64,
    offset: u64,
}

impl FileInput {
    /// Follows the file until `stop` turns true, then returns after the
    /// batch in hand is committed.
    pub async fn run(self, work: Sender<Work>, mut stop: watch::Receiver<bool>) {
        let mut pos = self.load_position();
        let mut pending: Vec<u8> = Vec::new();
        'reopen: loop {
            if *stop.borrow() {
                return;
            }
            let Ok(mut file) = tokio::fs::File::open(&self.path).await else {
                // Not there yet (or between rotation steps): wait for it.
                if wait(&mut stop).await {
                    return;
                }
                continue;
            };
            let Ok(meta) = file.metadata().await else {
                if wait(&mut stop).await {
                    return;
                }
                continue;
            };
            let here = (meta.dev(), meta.ino());
            let mut offset = match pos {
                Some(p) if (p.dev, p.ino) == here && p.offset <= meta.len() => p.offset,
                Some(_) => 0,
                None if self.start_at == StartAt::End => meta.len(),
                None => 0,
            };
            if file.seek(SeekFrom::Start(offset)).await.is_err() {
                continue;
            }
            pending.clear();
            let mut caught_up = None;
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = match file.read(&mut buf).await {
                    Ok(n) => n,
                    Err(err) => {
                        tracing::warn!(input = %self.name, error = %err, "read failed; reopening");
                        continue 'reopen;
                    }
                };
                if n > 0 {
                    pending.extend_from_slice(&buf[..n]);
                    // `offset` is both the committed position and the file
                    // offset of `pending[0]`: pending is drained only after
                    // its lines are committed.
                    let (lines, consumed) = take_lines(&pending, offset);
                    if consumed == 0 {
                        continue;
                    }
                    let end = offset + consumed as u64;
                    let mut chunks = lines.chunks(MAX_LINES).peekable();
                    if chunks.peek().is_none() {
                        // Only blank lines: move the position past them.
                        if !self
                            .send(&work, Vec::new(), Some(self.position(here, end)), &mut stop)
                            .await
                        {
                            return;
                        }
                    }
                    while let Some(chunk) = chunks.next() {
                        let file_key = self.file_key(here);
                        let frames = chunk.iter().map(|l| self.frame(file_key, l)).collect();
                        let upto = match (chunks.peek(), chunk.last()) {
                            (Some(_), Some(last)) => last.end,
                            _ => end,
                        };
                        if !self
                            .send(&work, frames, Some(self.position(here, upto)), &mut stop)
                            .await
                        {
                            return;
                        }
                    }
                    pending.drain(..consumed);
                    offset = end;
                    pos = Some(Position {
                        dev: here.0,
                        ino: here.1,
                        offset,
                    });
                    continue;
                }
                // At the end: rotated or truncated?
                let rotated = match tokio::fs::metadata(&self.path).await {
                    Ok(m) => (m.dev(), m.ino()) != here || m.len() < offset,
                    Err(_) => false,
                };
                if caught_up != Some(offset) {
                    caught_up = Some(offset);
                    tracing::debug!(input = %self.name, offset, "file input caught up: everything up to offset is committed");
                }
                if rotated {
                    // The next commit stores the new file's position; until
                    // then the stored one names the old file, which a
                    // restart treats as "start the new file at 0".
                    pos = None;
                    continue 'reopen;
                }
                if wait(&mut stop).await {
                    return;
                }
            }
        }
    }

    /// The first half of every frame key of the file `(dev, inode)`: 8
    /// bytes of SHA-256 over the input's name and the file's identity.
    fn file_key(&self, file: (u64, u64)) -> [u8; 8] {
        let digest = Sha256::new()
            .chain_update(self.name.as_bytes())
            .chain_update(file.0.to_be_bytes())
            .chain_update(file.1.to_be_bytes())
            .finalize();
        let mut key = [0u8; 8];
        key.copy_from_slice(&digest[..8]);
        key
    }

    /// A line as a frame whose key is the file's key then the line's byte
    /// offset (big-endian): the ids derived from it grow with the offset,
    /// so the receiver's id index appends instead of touching a random page
    /// per event.
    fn frame(&self, file_key: [u8; 8], line: &Line) -> KeyedFrame {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&file_key);
        key[8..].copy_from_slice(&line.start.to_be_bytes());
        KeyedFrame {
            frame: Frame {
                data: line.bytes.clone(),
                content_type: "application/x-ndjson".into(),
                origin: format!("file:{}", self.path.display()),
            },
            key: Some(key),
        }
    }

    /// Sends frames and waits for the commit; retries while the buffer is
    /// full (back-pressure). Returns false if stopped before a commit.
    async fn send(
        &self,
        work: &Sender<Work>,
        frames: Vec<KeyedFrame>,
        position: Option<Vec<u8>>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut frames = Some(frames);
        loop {
            let (reply, answer) = oneshot::channel();
            let Some(batch) = frames.take() else {
                return false;
            };
            let keep = batch_copy(&batch);
            if work
                .send(Work::Frames {
                    input: self.name.clone(),
                    frames: batch,
                    position: position.clone(),
                    reply,
                })
                .is_err()
            {
                return false;
            }
            match answer.await {
                Ok(Ok(_)) => return true,
                // Past the stop deadline: nothing committed, the position
                // stays where it was for the next start.
                Ok(Err(PipelineError::ShuttingDown)) => return false,
                Ok(Err(PipelineError::Buffer(halyard_buffer::BufferError::Full { .. }))) => {}
                Ok(Err(err)) => {
                    tracing::error!(input = %self.name, error = %err, "batch not accepted; retrying");
                }
                Err(_) => return false,
            }
            frames = Some(keep);
            if wait(stop).await {
                return false;
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

    /// The encoded position `offset` in file `here`.
    fn position(&self, here: (u64, u64), offset: u64) -> Vec<u8> {
        serde_json::to_vec(&Position {
            dev: here.0,
            ino: here.1,
            offset,
        })
        .unwrap_or_default()
    }
}

fn batch_copy(frames: &[KeyedFrame]) -> Vec<KeyedFrame> {
    frames
        .iter()
        .map(|f| KeyedFrame {
            frame: f.frame.clone(),
            key: f.key,
        })
        .collect()
}

/// Sleeps one poll interval; true if asked to stop.
async fn wait(stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(POLL) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// A complete line and where it sits in the file.
struct Line {
    bytes: Vec<u8>,
    start: u64,
    /// Offset just past its `\n`.
    end: u64,
}

/// The complete lines at the front of `pending` (which starts at file
/// offset `base`) and how many bytes they span; blank lines are skipped.
fn take_lines(pending: &[u8], base: u64) -> (Vec<Line>, usize) {
    let mut lines = Vec::new();
    let mut consumed = 0usize;
    while let Some(nl) = pending[consumed..].iter().position(|b| *b == b'\n') {
        let raw = &pending[consumed..consumed + nl];
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let start = base + consumed as u64;
        consumed += nl + 1;
        if !raw.iter().all(u8::is_ascii_whitespace) {
            lines.push(Line {
                bytes: raw.to_vec(),
                start,
                end: base + consumed as u64,
            });
        }
    }
    (lines, consumed)
}
