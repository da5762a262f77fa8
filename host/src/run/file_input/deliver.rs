//! Handing a file's lines to the pipeline thread and waiting for each
//! commit: lines in batches, too-long lines as dead letters, each with the
//! position just past it, so the stored position never runs ahead of what
//! is committed. The stop signal is checked before every batch.

use std::sync::mpsc::Sender;

use tokio::sync::{oneshot, watch};

use super::identity::{self, Position};
use super::lines::{Line, LongLine, Piece};
use super::{FileInput, MAX_LINES, Open, wait};
use crate::pipeline::{IngestReport, KeyedFrame, PipelineError};
use crate::plugin::Frame;
use crate::run::worker::Work;

impl FileInput {
    /// Commits `pieces` (complete lines in order) in batches of at most
    /// [`MAX_LINES`], dead-lettering too-long lines in between, and moves
    /// the position past them. False if the input stopped first; the
    /// position then stays at the last commit.
    pub(super) async fn deliver(
        &self,
        open: &mut Open,
        pieces: Vec<Piece>,
        work: &Sender<Work>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let settled = open.splitter.settled();
        if pieces.is_empty() {
            // Only blank lines (or none complete): move past the blank ones.
            return settled == open.committed
                || self.commit(open, Vec::new(), settled, work, stop).await;
        }
        let key = *open
            .key
            .get_or_insert_with(|| identity::file_key(&self.name, &open.fingerprint, open.here));
        let mut batch = Vec::new();
        let mut pieces = pieces.into_iter().peekable();
        while let Some(piece) = pieces.next() {
            let end = piece.end();
            match piece {
                Piece::Line(line) => batch.push(self.frame(key, line)),
                Piece::TooLong(long) => {
                    let before = std::mem::take(&mut batch);
                    if !before.is_empty()
                        && !self.commit(open, before, long.start, work, stop).await
                    {
                        return false;
                    }
                    if !self.refuse(open, key, long, work, stop).await {
                        return false;
                    }
                }
            }
            let last = pieces.peek().is_none();
            if batch.len() >= MAX_LINES || (last && !batch.is_empty()) {
                let upto = if last { settled } else { end };
                if !self
                    .commit(open, std::mem::take(&mut batch), upto, work, stop)
                    .await
                {
                    return false;
                }
            }
        }
        // Blank lines after a too-long line at the end.
        settled == open.committed || self.commit(open, Vec::new(), settled, work, stop).await
    }

    /// Commits `frames` with the position `upto`; false if the input
    /// stopped first (nothing sent then) or while waiting.
    async fn commit(
        &self,
        open: &mut Open,
        frames: Vec<KeyedFrame>,
        upto: u64,
        work: &Sender<Work>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        if *stop.borrow() {
            return false;
        }
        let position = encode(&open.position(upto));
        let input = &self.name;
        let sent = self
            .send(work, stop, |reply| Work::Frames {
                input: input.clone(),
                frames: batch_copy(&frames),
                position: Some(position.clone()),
                reply,
            })
            .await;
        if sent {
            open.committed = upto;
        }
        sent
    }

    /// Dead-letters a too-long line (what is kept of it) with the position
    /// just past it; false if the input stopped first.
    async fn refuse(
        &self,
        open: &mut Open,
        key: [u8; 8],
        long: LongLine,
        work: &Sender<Work>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        if *stop.borrow() {
            return false;
        }
        let reason = format!(
            "line at offset {} is {} bytes, over max_line_bytes ({}); first {} bytes kept",
            long.start,
            long.len,
            self.max_line_bytes,
            long.prefix.len()
        );
        tracing::warn!(input = %self.name, offset = long.start, len = long.len,
            max_line_bytes = self.max_line_bytes, "line over max_line_bytes dead-lettered");
        let frame = self.frame(
            key,
            Line {
                bytes: long.prefix,
                start: long.start,
                end: long.end,
            },
        );
        let position = encode(&open.position(long.end));
        let input = &self.name;
        let sent = self
            .send(work, stop, |reply| Work::Refuse {
                input: input.clone(),
                frame: KeyedFrame {
                    frame: frame.frame.clone(),
                    key: frame.key,
                },
                reason: reason.clone(),
                position: Some(position.clone()),
                reply,
            })
            .await;
        if sent {
            open.committed = long.end;
        }
        sent
    }

    /// A line as a frame whose key is the file's key then the line's byte
    /// offset (big-endian): the ids derived from it grow with the offset,
    /// so the receiver's id index appends instead of touching a random page
    /// per event.
    fn frame(&self, file_key: [u8; 8], line: Line) -> KeyedFrame {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&file_key);
        key[8..].copy_from_slice(&line.start.to_be_bytes());
        KeyedFrame {
            frame: Frame {
                data: line.bytes,
                content_type: "application/x-ndjson".into(),
                origin: format!("file:{}", self.path.display()),
            },
            key: Some(key),
        }
    }

    /// Sends the request `make` builds and waits for the commit; retries
    /// while the buffer is full (back-pressure). Returns false if stopped
    /// before a commit.
    async fn send(
        &self,
        work: &Sender<Work>,
        stop: &mut watch::Receiver<bool>,
        make: impl Fn(oneshot::Sender<Result<IngestReport, PipelineError>>) -> Work,
    ) -> bool {
        loop {
            let (reply, answer) = oneshot::channel();
            if work.send(make(reply)).is_err() {
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
            if wait(stop).await {
                return false;
            }
        }
    }
}

/// A position as stored (JSON).
fn encode(position: &Position) -> Vec<u8> {
    serde_json::to_vec(position).unwrap_or_default()
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
