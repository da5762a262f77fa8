//! Handing a file's lines to the pipeline workers and settling each
//! commit: lines in batches, too-long lines as dead letters, each with the
//! position just past it, so the stored position never runs ahead of what
//! is committed. Up to [`IN_FLIGHT`] requests are out at once so several
//! workers stage one file in parallel; each carries a ticket of the file's
//! [`Sequence`](crate::run::sequence::Sequence), so they commit in read
//! order, and when one fails it and every later one are sent again, in
//! order. The stop signal is checked before every batch.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc::Sender;

use tokio::sync::{oneshot, watch};

use super::identity::{self, Position};
use super::lines::{LongLine, Piece};
use super::{FileInput, MAX_LINES, Open, wait};
use crate::pipeline::{FrameRun, IngestReport, KeyedFrame, PipelineError};
use crate::plugin::Frame;
use crate::run::worker::Work;

/// Most requests of one file in flight at once: enough to keep two
/// workers busy while the next chunk is read, few enough that a failure
/// sends little again.
pub(super) const IN_FLIGHT: usize = 4;

type Answer = oneshot::Receiver<Result<IngestReport, PipelineError>>;

/// A request sent and not yet answered.
pub(super) struct Flight {
    request: Request,
    /// The offset that is committed once it is.
    upto: u64,
    answer: Answer,
}

/// What a flight asks; kept to send again if an earlier one failed.
enum Request {
    /// Lines, with the position just past them; the worker reads the
    /// same frames (no copy per send).
    Frames {
        frames: Arc<FrameRun>,
        position: Vec<u8>,
    },
    /// A too-long line's kept prefix, dead-lettered.
    Refuse {
        frame: KeyedFrame,
        reason: String,
        position: Vec<u8>,
    },
}

/// All flights of one file.
pub(super) type Flights = VecDeque<Flight>;

impl FileInput {
    /// Sends `pieces` (complete lines in order) in batches of at most
    /// [`MAX_LINES`], dead-lettering too-long lines in between, each with
    /// the position past it. False if the input stopped first; the
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
            return settled == open.sent
                || self
                    .commit(open, FrameRun::default(), settled, work, stop)
                    .await;
        }
        let key = *open
            .key
            .get_or_insert_with(|| identity::file_key(&self.name, &open.fingerprint, open.here));
        let origin = self.origin();
        let mut batch = FrameRun::default();
        let mut left = pieces.into_iter().peekable();
        while let Some(piece) = left.next() {
            let end = piece.end();
            match piece {
                Piece::Line(line) => {
                    if batch.is_empty() {
                        // Lines of a file tend to be alike: room for the
                        // rest of this batch at this line's size, capped.
                        let lines = MAX_LINES.min(left.len() + 1);
                        let bytes = (lines * line.bytes.len()).min(RESERVE_CAP);
                        batch.reserve(lines, bytes);
                    }
                    let key = Some(line_key(key, line.start));
                    batch.push_parts(key, &line.bytes, CONTENT_TYPE, &origin);
                }
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
            let last = left.peek().is_none();
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
        settled == open.sent
            || self
                .commit(open, FrameRun::default(), settled, work, stop)
                .await
    }

    /// Sends `frames` with the position `upto`; false if the input stopped
    /// first (nothing sent then) or while settling an earlier request.
    async fn commit(
        &self,
        open: &mut Open,
        frames: FrameRun,
        upto: u64,
        work: &Sender<Work>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let position = encode(&open.position(upto));
        let frames = Arc::new(frames);
        self.submit(open, Request::Frames { frames, position }, upto, work, stop)
            .await
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
        let upto = long.end;
        let frame = frame(key, &self.origin(), long.prefix, long.start);
        let position = encode(&open.position(upto));
        let request = Request::Refuse {
            frame,
            reason,
            position,
        };
        self.submit(open, request, upto, work, stop).await
    }

    /// Sends `request` once fewer than [`IN_FLIGHT`] are out (settling the
    /// oldest first); false if the input stopped or the workers are gone.
    async fn submit(
        &self,
        open: &mut Open,
        request: Request,
        upto: u64,
        work: &Sender<Work>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        if *stop.borrow() {
            return false;
        }
        while open.flights.len() >= IN_FLIGHT {
            if !self.settle_one(open, work, stop).await {
                return false;
            }
        }
        let Some(answer) = self.send(open, &request, work) else {
            return false;
        };
        open.flights.push_back(Flight {
            request,
            upto,
            answer,
        });
        open.sent = upto;
        true
    }

    /// Sends one request with the next ticket of this file's sequence.
    fn send(&self, open: &Open, request: &Request, work: &Sender<Work>) -> Option<Answer> {
        let (reply, answer) = oneshot::channel();
        let input = self.name.clone();
        let ticket = Some(open.sequence.ticket());
        let work_item = match request {
            Request::Frames { frames, position } => Work::Frames {
                input,
                frames: Arc::clone(frames),
                position: Some(position.clone()),
                ticket,
                reply,
            },
            Request::Refuse {
                frame,
                reason,
                position,
            } => Work::Refuse {
                input,
                frame: KeyedFrame {
                    frame: frame.frame.clone(),
                    key: frame.key,
                },
                reason: reason.clone(),
                position: Some(position.clone()),
                ticket,
                reply,
            },
        };
        work.send(work_item).ok().map(|()| answer)
    }

    /// Waits for every request out to be committed (sending failed ones
    /// again); false if the input stopped first or the workers are gone.
    pub(super) async fn settle(
        &self,
        open: &mut Open,
        work: &Sender<Work>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        while !open.flights.is_empty() {
            if !self.settle_one(open, work, stop).await {
                return false;
            }
        }
        true
    }

    /// Waits for the oldest request out to be committed. If it failed, it
    /// and every later one (refused, as their positions are past it) are
    /// sent again in order once the retry wait is over; while the buffer is
    /// full that is back-pressure. False if stopped before a commit.
    async fn settle_one(
        &self,
        open: &mut Open,
        work: &Sender<Work>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        loop {
            let Some(front) = open.flights.pop_front() else {
                return true;
            };
            match front.answer.await {
                Ok(Ok(_)) => {
                    open.committed = front.upto;
                    return true;
                }
                // Past the stop deadline: nothing committed, the position
                // stays where it was for the next start.
                Ok(Err(PipelineError::ShuttingDown)) | Err(_) => return false,
                Ok(Err(PipelineError::Buffer(halyard_buffer::BufferError::Full { .. })))
                | Ok(Err(PipelineError::EarlierBatchRefused)) => {}
                Ok(Err(err)) => {
                    tracing::error!(input = %self.name, error = %err, "batch not accepted; retrying");
                }
            }
            let mut again = vec![(front.request, front.upto)];
            for later in std::mem::take(&mut open.flights) {
                // Refused: each carries a position past the failed batch.
                let _ = later.answer.await;
                again.push((later.request, later.upto));
            }
            if wait(stop).await {
                return false;
            }
            for (request, upto) in again {
                let Some(answer) = self.send(open, &request, work) else {
                    return false;
                };
                open.flights.push_back(Flight {
                    request,
                    upto,
                    answer,
                });
            }
        }
    }

    /// What a frame of this file names as its origin. Made once per read,
    /// not per line: formatting the path cost ~3 % of the host's CPU.
    fn origin(&self) -> String {
        format!("file:{}", self.path.display())
    }
}

/// A too-long line's kept prefix as a frame, keyed like every line (see
/// [`line_key`]).
fn frame(file_key: [u8; 8], origin: &str, data: Vec<u8>, start: u64) -> KeyedFrame {
    KeyedFrame {
        frame: Frame {
            data,
            content_type: CONTENT_TYPE.to_owned(),
            origin: origin.to_owned(),
        },
        key: Some(line_key(file_key, start)),
    }
}

/// A line's frame key: the file's key, then the line's byte offset
/// (big-endian). The ids derived from it grow with the offset, so the
/// receiver's id index appends instead of touching a random page per
/// event.
fn line_key(file_key: [u8; 8], start: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&file_key);
    key[8..].copy_from_slice(&start.to_be_bytes());
    key
}

/// Most bytes reserved ahead for a batch's lines; past it the buffer grows
/// as lines come, so one long first line cannot reserve a thousand times
/// its size.
const RESERVE_CAP: usize = 1 << 20;

/// The media type of a file input's frames.
const CONTENT_TYPE: &str = "application/x-ndjson";

/// A position as stored (JSON).
fn encode(position: &Position) -> Vec<u8> {
    serde_json::to_vec(position).unwrap_or_default()
}
