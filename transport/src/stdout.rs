//! A sink that prints batches, for debugging a pipeline by eye.

use std::fmt;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

use crate::sink::as_line;
use crate::{Attempt, Sink};

/// Writes each batch body as one line to standard output (or any writer,
/// for tests), flushing after every batch so nothing sits in a buffer when
/// the host is stopped.
pub struct StdoutSink {
    out: Mutex<Box<dyn AsyncWrite + Send + Unpin>>,
}

impl fmt::Debug for StdoutSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StdoutSink").finish_non_exhaustive()
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}

impl StdoutSink {
    /// Prints to the process's standard output.
    pub fn new() -> Self {
        Self::with_writer(tokio::io::stdout())
    }

    /// Prints to `writer` instead.
    pub fn with_writer(writer: impl AsyncWrite + Send + Unpin + 'static) -> Self {
        Self {
            out: Mutex::new(Box::new(writer)),
        }
    }
}

impl Sink for StdoutSink {
    async fn send(&self, _batch_key: &str, body: &[u8]) -> Attempt {
        let line = as_line(body);
        // Held across the write so concurrent batches never interleave.
        let mut out = self.out.lock().await;
        let written = async {
            out.write_all(&line).await?;
            out.flush().await
        }
        .await;
        match written {
            Ok(()) => Attempt::Delivered,
            Err(e) => Attempt::retry(format!("writing to stdout: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_line_per_batch() {
        let (writer, mut reader) = tokio::io::duplex(1024);
        let sink = StdoutSink::with_writer(writer);
        assert_eq!(sink.send("k1", b"{\"a\":1}").await, Attempt::Delivered);
        assert_eq!(sink.send("k2", b"{\n\"b\":2}").await, Attempt::Delivered);
        drop(sink);
        let mut printed = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut reader, &mut printed)
            .await
            .expect("read back");
        assert_eq!(printed, "{\"a\":1}\n{ \"b\":2}\n");
    }
}
