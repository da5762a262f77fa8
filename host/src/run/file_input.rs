//! The `file` input: follows a file like `tail -F`, hands complete lines to
//! the pipeline as frames, and remembers how far it got.
//!
//! Invariants:
//! - the stored offset only moves after the pipeline has committed the
//!   lines before it, so a restart never skips a line;
//! - each line's frame key is derived from the file's identity (device and
//!   inode) and the line's byte offset, so a line read twice (after a crash
//!   between commit and offset save) yields the same event ids and the
//!   receiver drops the duplicate;
//! - a partial last line (no `\n` yet) is not read until it is complete.
//!
//! Rotation: when the path names a new file (another inode) or the file
//! shrank (truncated), the rest of the old handle is drained and reading
//! restarts at the beginning of the new file.

use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{oneshot, watch};

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
    /// Where the offset is stored.
    pub offset_file: PathBuf,
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
                    for chunk in lines.chunks(MAX_LINES) {
                        let frames = chunk.iter().map(|l| self.frame(here, l)).collect();
                        if !self.send(&work, frames, &mut stop).await {
                            return;
                        }
                        if let Some(last) = chunk.last() {
                            self.save_position(Some(Position {
                                dev: here.0,
                                ino: here.1,
                                offset: last.end,
                            }));
                        }
                    }
                    pending.drain(..consumed);
                    offset += consumed as u64;
                    pos = Some(Position {
                        dev: here.0,
                        ino: here.1,
                        offset,
                    });
                    self.save_position(pos);
                    continue;
                }
                // At the end: rotated or truncated?
                let rotated = match tokio::fs::metadata(&self.path).await {
                    Ok(m) => (m.dev(), m.ino()) != here || m.len() < offset,
                    Err(_) => false,
                };
                if rotated {
                    pos = None;
                    self.save_position(None);
                    continue 'reopen;
                }
                if wait(&mut stop).await {
                    return;
                }
            }
        }
    }

    fn frame(&self, file: (u64, u64), line: &Line) -> KeyedFrame {
        let digest = Sha256::new()
            .chain_update(self.name.as_bytes())
            .chain_update(file.0.to_be_bytes())
            .chain_update(file.1.to_be_bytes())
            .chain_update(line.start.to_be_bytes())
            .finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
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
                    reply,
                })
                .is_err()
            {
                return false;
            }
            match answer.await {
                Ok(Ok(_)) => return true,
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

    fn load_position(&self) -> Option<Position> {
        let text = std::fs::read_to_string(&self.offset_file).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn save_position(&self, pos: Option<Position>) {
        let result = match pos {
            Some(p) => write_atomic(
                &self.offset_file,
                &serde_json::to_vec(&p).unwrap_or_default(),
            ),
            None => match std::fs::remove_file(&self.offset_file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        };
        if let Err(err) = result {
            tracing::warn!(input = %self.name, error = %err, "cannot save file offset");
        }
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

/// Writes `bytes` to `path` via a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}
