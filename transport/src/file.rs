//! A sink that appends batches to a local file, one per line.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::sink::as_line;
use crate::{Attempt, Sink, TransportError};

/// Appends each batch body as one line (JSON Lines) and syncs it to disk
/// before reporting it delivered.
///
/// For air-gapped devices and for capturing what would have been sent: the
/// host acknowledges a batch (deleting it from its buffer) on `Delivered`,
/// so the line must be durable by then; hence one `fdatasync` per batch.
/// A write that fails part-way may leave a partial line; the batch is then
/// retried in full, so readers should skip lines that do not parse.
#[derive(Debug, Clone)]
pub struct FileSink {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl FileSink {
    /// Opens (creating if needed) `path` for appending. The parent
    /// directory must exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, TransportError> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| TransportError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            path,
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// The file being appended to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Sink for FileSink {
    async fn send(&self, _batch_key: &str, body: &[u8]) -> Attempt {
        let line = as_line(body);
        let file = Arc::clone(&self.file);
        // Writing and fsync block; keep them off the async workers. The lock
        // keeps concurrent batches from interleaving within a line.
        let written = tokio::task::spawn_blocking(move || {
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            file.write_all(&line)?;
            file.sync_data()
        })
        .await;
        match written {
            Ok(Ok(())) => Attempt::Delivered,
            Ok(Err(e)) => Attempt::retry(format!("writing {}: {e}", self.path.display())),
            Err(e) => Attempt::retry(format!("writing {}: task failed: {e}", self.path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_one_line_per_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "{\"earlier\":true}\n").expect("seed");
        let sink = FileSink::open(&path).expect("open");
        assert_eq!(sink.send("a", b"{\"n\":1}").await, Attempt::Delivered);
        assert_eq!(sink.send("b", b"{\n\"n\":2\n}").await, Attempt::Delivered);
        let written = std::fs::read_to_string(&path).expect("read");
        assert_eq!(written, "{\"earlier\":true}\n{\"n\":1}\n{ \"n\":2 }\n");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_batches_never_interleave() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = Arc::new(FileSink::open(dir.path().join("out.jsonl")).expect("open"));
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let sink = Arc::clone(&sink);
                tokio::spawn(async move {
                    let body = format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(10_000));
                    sink.send("k", body.as_bytes()).await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.expect("no panic"), Attempt::Delivered);
        }
        let written = std::fs::read_to_string(sink.path()).expect("read");
        let mut seen: Vec<u64> = written
            .lines()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).expect("whole line");
                value["i"].as_u64().expect("i")
            })
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..16).collect::<Vec<_>>());
    }

    #[test]
    fn a_missing_directory_fails_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = FileSink::open(dir.path().join("no/such/dir/out.jsonl")).expect_err("no dir");
        assert!(matches!(err, TransportError::Io { .. }), "{err}");
    }
}
