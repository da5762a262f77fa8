//! A guest's stdout and stderr: drained line by line into the host log,
//! rate-limited and tagged with the plugin, never a reason to trap.
//!
//! Invariants:
//! - a write always succeeds at once and never blocks (the guest cannot
//!   stall on a full pipe, and cannot make the host buffer unboundedly: a
//!   line longer than [`MAX_LINE_BYTES`] is cut);
//! - at most [`LINES_PER_SECOND`] lines a second (after a burst of
//!   [`LINE_BURST`]) reach the host log per stream; the rest are counted and
//!   reported in one warning;
//! - the last [`RECENT_LINES`] lines are kept (whatever the rate limit did)
//!   so a trap message can carry them: a Python traceback or a Rust panic
//!   message is readable next to the trap.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The longest line kept or logged; the rest of a longer line is dropped.
pub const MAX_LINE_BYTES: usize = 4096;
/// Lines kept for trap messages.
pub const RECENT_LINES: usize = 16;
/// Sustained lines per second that reach the host log, per stream.
pub const LINES_PER_SECOND: f64 = 50.0;
/// Lines that may reach the log at once after a quiet spell.
pub const LINE_BURST: f64 = 200.0;
/// What one write may hand over (the permit `check-write` grants).
const WRITE_PERMIT: usize = 64 << 10;

/// Which of the guest's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// `stdout`.
    Stdout,
    /// `stderr`.
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One guest stream (cheap to clone; clones share the state). Given to the
/// WASI context as the guest's stdout or stderr.
#[derive(Clone)]
pub struct GuestOutput {
    state: Arc<Mutex<OutputState>>,
}

/// Lines kept by both streams of an instance, oldest first, for trap
/// messages.
#[derive(Clone, Default)]
pub struct RecentLines {
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl RecentLines {
    /// The kept lines, oldest first, minus Rust's `RUST_BACKTRACE` hint.
    pub fn lines(&self) -> Vec<String> {
        lock(&self.lines)
            .iter()
            .filter(|l| !l.starts_with("note: run with `RUST_BACKTRACE"))
            .cloned()
            .collect()
    }

    fn push(&self, line: String) {
        let mut lines = lock(&self.lines);
        if lines.len() == RECENT_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }
}

struct OutputState {
    plugin: Arc<str>,
    stream: Stream,
    /// The line being written, cut at [`MAX_LINE_BYTES`].
    partial: Vec<u8>,
    /// Whether the current line was cut.
    cut: bool,
    recent: RecentLines,
    /// Token bucket for log lines.
    tokens: f64,
    refilled: Instant,
    /// Lines not logged since the last report.
    dropped: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl GuestOutput {
    /// A stream for `plugin` whose lines also go to `recent`.
    pub fn new(plugin: Arc<str>, stream: Stream, recent: RecentLines) -> Self {
        GuestOutput {
            state: Arc::new(Mutex::new(OutputState {
                plugin,
                stream,
                partial: Vec::new(),
                cut: false,
                recent,
                tokens: LINE_BURST,
                refilled: Instant::now(),
                dropped: 0,
            })),
        }
    }

    /// Takes `bytes` from the guest: whole lines go to the log now, the
    /// rest waits for its newline (or [`GuestOutput::flush_partial`]).
    pub fn write(&self, bytes: &[u8]) {
        let mut state = lock(&self.state);
        let mut rest = bytes;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            state.append(&rest[..nl]);
            state.end_line();
            rest = &rest[nl + 1..];
        }
        state.append(rest);
    }

    /// Logs a line still waiting for its newline, and reports lines the
    /// rate limit dropped. Called after every plugin call.
    pub fn flush_partial(&self) {
        let mut state = lock(&self.state);
        if !state.partial.is_empty() {
            state.end_line();
        }
        state.report_dropped();
    }
}

impl OutputState {
    fn append(&mut self, bytes: &[u8]) {
        let room = MAX_LINE_BYTES.saturating_sub(self.partial.len());
        if bytes.len() > room {
            self.cut = true;
        }
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn end_line(&mut self) {
        let mut line = String::from_utf8_lossy(&self.partial)
            .trim_end()
            .to_string();
        if self.cut {
            line.push_str(" …(cut)");
        }
        self.partial.clear();
        self.cut = false;
        if line.is_empty() {
            return;
        }
        if self.take_token() {
            tracing::info!(
                target: "plugin",
                plugin = %self.plugin,
                stream = self.stream.name(),
                "{line}"
            );
        } else {
            self.dropped += 1;
        }
        self.recent.push(line);
    }

    fn take_token(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * LINES_PER_SECOND).min(LINE_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn report_dropped(&mut self) {
        if self.dropped > 0 {
            tracing::warn!(
                plugin = %self.plugin,
                stream = self.stream.name(),
                dropped = self.dropped,
                "plugin output lines over the log rate limit were dropped"
            );
            self.dropped = 0;
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    /// Always ready: writes never wait.
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        GuestOutput::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        GuestOutput::write(&self, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_cut_and_the_last_ones_kept() {
        let recent = RecentLines::default();
        let out = GuestOutput::new("p".into(), Stream::Stderr, recent.clone());
        out.write(b"one\ntw");
        out.write(b"o\n");
        out.write(&vec![b'x'; MAX_LINE_BYTES * 3]);
        out.flush_partial();
        let lines = recent.lines();
        assert_eq!(lines[..2], ["one".to_string(), "two".to_string()]);
        assert_eq!(lines[2].len(), MAX_LINE_BYTES + " …(cut)".len());
        for i in 0..100 {
            out.write(format!("line {i}\n").as_bytes());
        }
        let lines = recent.lines();
        assert_eq!(lines.len(), RECENT_LINES);
        assert_eq!(lines.last().map(String::as_str), Some("line 99"));
    }

    #[test]
    fn the_rate_limit_drops_lines_but_not_from_the_recent_ones() {
        let recent = RecentLines::default();
        let out = GuestOutput::new("p".into(), Stream::Stdout, recent.clone());
        for i in 0..10_000 {
            out.write(format!("flood {i}\n").as_bytes());
        }
        let dropped = lock(&out.state).dropped;
        // The burst (and what refilled while writing) got through.
        assert!(
            (9_000..=10_000 - LINE_BURST as u64).contains(&dropped),
            "{dropped}"
        );
        assert_eq!(
            recent.lines().last().map(String::as_str),
            Some("flood 9999")
        );
        out.flush_partial();
        assert_eq!(lock(&out.state).dropped, 0);
    }
}
