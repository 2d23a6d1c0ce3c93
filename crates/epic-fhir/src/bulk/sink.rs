//! Writing a download to its file without copying it: the chunks received are kept as they
//! came (reference-counted [`Bytes`]) until about [`WRITE_BUFFER`] bytes are gathered, which
//! then go to the file in vectored writes on the blocking pool while the next ones arrive.
//!
//! A buffered writer over `tokio::fs::File` copies every byte twice on the way (into its
//! buffer, then into the file's own buffer for the blocking pool); at bulk rates those copies
//! cost as much CPU as checking the lines.

use std::io::{self, IoSlice, Write as _};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::state::io_error;
use crate::error::Error;

/// Bytes gathered before each write to disk: few system calls, little memory. With one write
/// in flight, a download holds at most about twice this.
pub(super) const WRITE_BUFFER: usize = 1024 * 1024;

/// What a write on the blocking pool gives back: the file, and how the write went.
type Written = (std::fs::File, io::Result<()>);

/// Appends chunks to a file opened (and positioned) by the caller.
pub(super) struct ChunkWriter {
    path: PathBuf,
    /// The file, when no write holds it.
    file: Option<std::fs::File>,
    pending: Vec<Bytes>,
    pending_bytes: usize,
    in_flight: Option<JoinHandle<Written>>,
}

impl ChunkWriter {
    pub(super) fn new(file: std::fs::File, path: &Path) -> Self {
        ChunkWriter {
            path: path.to_owned(),
            file: Some(file),
            pending: Vec::new(),
            pending_bytes: 0,
            in_flight: None,
        }
    }

    /// Bytes received but not yet handed to a write.
    pub(super) fn buffered(&self) -> usize {
        self.pending_bytes
    }

    /// Takes `chunk`; writes what was gathered once it reaches [`WRITE_BUFFER`] bytes.
    ///
    /// # Errors
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when an earlier write failed.
    pub(super) async fn push(&mut self, chunk: Bytes) -> Result<(), Error> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.pending_bytes += chunk.len();
        self.pending.push(chunk);
        if self.pending_bytes >= WRITE_BUFFER {
            self.start_write().await?;
        }
        Ok(())
    }

    /// Writes everything received and waits until the file has it.
    ///
    /// # Errors
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when a write fails.
    pub(super) async fn flush(&mut self) -> Result<(), Error> {
        if !self.pending.is_empty() {
            self.start_write().await?;
        }
        self.wait().await
    }

    /// Hands the gathered chunks to a write, after the one in flight has ended.
    async fn start_write(&mut self) -> Result<(), Error> {
        self.wait().await?;
        let Some(mut file) = self.file.take() else {
            return Err(self.lost());
        };
        let chunks = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            let result = write_all(&mut file, &chunks);
            (file, result)
        }));
        Ok(())
    }

    /// Waits for the write in flight, if any, and takes the file back.
    async fn wait(&mut self) -> Result<(), Error> {
        let Some(task) = self.in_flight.take() else {
            return Ok(());
        };
        match task.await {
            Ok((file, result)) => {
                self.file = Some(file);
                result.map_err(|e| io_error("write", &self.path, e))
            }
            Err(join) => {
                if join.is_panic() {
                    std::panic::resume_unwind(join.into_panic());
                }
                Err(self.lost())
            }
        }
    }

    fn lost(&self) -> Error {
        io_error(
            "write",
            &self.path,
            io::Error::other("the write was cancelled"),
        )
    }
}

/// Writes every byte of `chunks`, in as few system calls as the kernel allows.
fn write_all(file: &mut std::fs::File, chunks: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut slices, written),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_arrive_whole_and_in_order() {
        let dir = std::env::temp_dir().join(format!("epic-fhir-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("out");
        let file = std::fs::File::create(&path).expect("file");
        let mut writer = ChunkWriter::new(file, &path);
        let mut expected = Vec::new();
        // More than the buffer, in chunks of odd sizes, with an empty one among them.
        for i in 0..3000usize {
            let chunk: Vec<u8> = (0..(i % 1500)).map(|j| (i + j) as u8).collect();
            expected.extend_from_slice(&chunk);
            writer.push(Bytes::from(chunk)).await.expect("push");
        }
        assert!(writer.buffered() < WRITE_BUFFER);
        writer.flush().await.expect("flush");
        assert_eq!(writer.buffered(), 0);
        assert_eq!(std::fs::read(&path).expect("read"), expected);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_failed_write_is_an_error_naming_the_file() {
        let path = Path::new("/dev/full");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .expect("Linux has /dev/full, which refuses every write");
        let mut writer = ChunkWriter::new(file, path);
        writer
            .push(Bytes::from(vec![b'x'; WRITE_BUFFER]))
            .await
            .expect("the write starts");
        let error = writer.flush().await.expect_err("/dev/full refuses writes");
        assert!(error.to_string().contains("/dev/full"), "{error}");
    }
}
