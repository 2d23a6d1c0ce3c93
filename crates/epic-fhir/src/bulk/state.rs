//! The export's state, saved in the output folder so that a later run can resume it.
//!
//! Two files hold it. The state file ([`STATE_FILE`]) has the request, the status URL, the
//! manifest and the list of files; it is replaced atomically (written, synced, renamed) a
//! constant number of times per run: at the kick-off, when the manifest arrives, when damaged
//! files are reset, when the downloads end and at cleanup. What happens to one file in
//! between (finished, with its size and line count; its `ETag`) is appended as one line to
//! the journal ([`JOURNAL_FILE`]), so an export of N files writes O(N) bytes of state in all,
//! not O(N²).
//!
//! Journal lines are not synced one by one. They only save work: a file becomes visible under
//! its final name only after it was checked and synced, so a journal line lost in a power cut
//! means the file is downloaded again, never that a bad file is kept. Each line names the
//! state file's `journal` id; lines of another id (written before the state file was last
//! replaced, and so already in it) are skipped, and reading stops at a line cut short.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::manifest::Manifest;
use super::request::ExportRequest;
use crate::error::{Error, ErrorKind, Result};

/// The name of the state file in the output folder.
pub const STATE_FILE: &str = ".epic-fhir-export.json";
/// The temporary name the state is written to before it replaces [`STATE_FILE`].
const STATE_TEMP: &str = ".epic-fhir-export.json.tmp";
/// The journal of file events since the state file was last replaced.
pub const JOURNAL_FILE: &str = ".epic-fhir-export.journal";
/// The state format this client writes and reads.
const FORMAT: u32 = 1;

/// Which list of the manifest a file comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum FileKind {
    Output,
    Error,
    Deleted,
}

/// A file that was downloaded, checked and renamed into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Done {
    pub(super) bytes: u64,
    pub(super) resources: u64,
}

/// One file of the manifest and how far its download got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct FileState {
    pub(super) kind: FileKind,
    #[serde(rename = "type")]
    pub(super) resource_type: String,
    pub(super) url: String,
    /// The file's name in the output folder.
    pub(super) name: String,
    /// The manifest's `count`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) count: Option<u64>,
    /// The strong `ETag` of the first answer, sent as `If-Range` when resuming so that a file
    /// that changed on the server is downloaded whole again. Saved with the next change of
    /// the state rather than on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) done: Option<Done>,
}

impl FileState {
    /// The hidden temporary name the file is downloaded to.
    pub(super) fn temp_name(&self) -> String {
        format!(".{}.part", self.name)
    }
}

/// Everything a later run needs to finish the export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct ExportState {
    pub(super) format: u32,
    pub(super) request: ExportRequest,
    pub(super) kick_off_url: String,
    pub(super) status_url: String,
    /// When the kick-off was accepted (RFC 3339).
    pub(super) kicked_off_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) manifest: Option<Manifest>,
    #[serde(default)]
    pub(super) files: Vec<FileState>,
    /// Whether the job was deleted on the server after the download.
    #[serde(default)]
    pub(super) cleaned_up: bool,
    /// The id the journal's lines must carry to apply to this state; new at every save.
    #[serde(default)]
    pub(super) journal: u64,
}

impl ExportState {
    pub(super) fn new(
        request: ExportRequest,
        kick_off_url: String,
        status_url: String,
        kicked_off_at: String,
    ) -> Self {
        ExportState {
            format: FORMAT,
            request,
            kick_off_url,
            status_url,
            kicked_off_at,
            manifest: None,
            files: Vec::new(),
            cleaned_up: false,
            journal: 0,
        }
    }
}

/// One line of the journal: something that happened to one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct JournalLine {
    /// The state's `journal` id when the line was written.
    journal: u64,
    /// The file's index in the state's list...
    file: usize,
    /// ...and its name, checked on replay.
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    done: Option<Done>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
}

/// Applies the journal's lines that belong to `state`.
fn replay(state: &mut ExportState, journal: &[u8], path: &Path) {
    for (number, line) in journal.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let Ok(line) = serde_json::from_slice::<JournalLine>(line) else {
            // A line cut short by a crash: what follows cannot be trusted either. The files it
            // would have marked are downloaded again.
            tracing::warn!(target: "epic_fhir::bulk", journal = %path.display(), line = number + 1, "the export journal ends with a damaged line; files after it will be checked again");
            return;
        };
        if line.journal != state.journal {
            continue;
        }
        let Some(file) = state.files.get_mut(line.file) else {
            continue;
        };
        if file.name != line.name {
            continue;
        }
        if let Some(done) = line.done {
            file.done = Some(done);
        }
        if let Some(etag) = line.etag {
            file.etag = Some(etag);
        }
    }
}

/// A new journal id: random, so that a journal left beside another state never applies.
fn new_journal_id() -> u64 {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // Not a security property: the clock makes a collision just as unlikely in practice.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        bytes = nanos.to_le_bytes();
    }
    u64::from_le_bytes(bytes).max(1)
}

/// An I/O error naming the path and what was being done; the system's reason is its source
/// (not repeated in the message, so a printed chain says it once).
pub(super) fn io_error(action: &str, path: &Path, error: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("cannot {action} {}", path.display())).with_source(error)
}

/// Reads the state saved in `dir`, if any.
///
/// # Errors
/// [`ErrorKind::Io`] when it exists but cannot be read; [`ErrorKind::Config`] when it is not a
/// state file this client understands.
pub(super) async fn load(dir: &Path) -> Result<Option<ExportState>> {
    let path = dir.join(STATE_FILE);
    let bytes = match tokio::fs::read(&path).await {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error("read the export state", &path, error)),
    };
    let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
    let state: ExportState = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        Error::config(format!(
            "the export state {} is damaged at `{}` ({}): remove it to start over",
            path.display(),
            e.path(),
            e.inner()
        ))
    })?;
    if state.format != FORMAT {
        return Err(Error::config(format!(
            "the export state {} has format {}, this client reads format {FORMAT}",
            path.display(),
            state.format
        )));
    }
    let mut state = state;
    let journal = dir.join(JOURNAL_FILE);
    match tokio::fs::read(&journal).await {
        Ok(bytes) => replay(&mut state, &bytes, &journal),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(io_error("read the export journal", &journal, error)),
    }
    Ok(Some(state))
}

/// Writes the state atomically: to a temporary file, synced, then renamed over the old one,
/// so a crash leaves either the old state or the new one, never a mix. The state gets a new
/// journal id, so the journal's lines so far (already part of it) no longer apply; the journal
/// is then emptied. Returns the bytes written.
pub(super) async fn save(dir: &Path, state: &mut ExportState) -> Result<u64> {
    state.journal = new_journal_id();
    let bytes = serde_json::to_vec(&*state)
        .map_err(|e| Error::config("cannot serialize the export state").with_source(e))?;
    let temp = dir.join(STATE_TEMP);
    let path = dir.join(STATE_FILE);
    let mut file = tokio::fs::File::create(&temp)
        .await
        .map_err(|e| io_error("create", &temp, e))?;
    file.write_all(&bytes)
        .await
        .map_err(|e| io_error("write", &temp, e))?;
    file.sync_all()
        .await
        .map_err(|e| io_error("sync", &temp, e))?;
    drop(file);
    tokio::fs::rename(&temp, &path)
        .await
        .map_err(|e| io_error("replace the export state", &path, e))?;
    let journal = dir.join(JOURNAL_FILE);
    match tokio::fs::remove_file(&journal).await {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(io_error("remove", &journal, error)),
    }
    Ok(bytes.len() as u64)
}

/// The state of a running export, shared by its download tasks.
#[derive(Debug)]
pub(super) struct StateStore {
    dir: PathBuf,
    inner: tokio::sync::Mutex<Store>,
}

#[derive(Debug)]
struct Store {
    state: ExportState,
    /// The journal, opened for appending at the first line.
    journal: Option<tokio::fs::File>,
    /// Bytes written to the state file and the journal by this store.
    written: u64,
}

impl StateStore {
    pub(super) fn new(dir: PathBuf, state: ExportState) -> Self {
        StateStore {
            dir,
            inner: tokio::sync::Mutex::new(Store {
                state,
                journal: None,
                written: 0,
            }),
        }
    }

    /// Applies `change` and replaces the state file with the result (emptying the journal).
    pub(super) async fn update(&self, change: impl FnOnce(&mut ExportState)) -> Result<()> {
        let mut store = self.inner.lock().await;
        change(&mut store.state);
        // The journal is removed by `save`: close it, and reopen it at the next line.
        store.journal = None;
        let written = save(&self.dir, &mut store.state).await?;
        store.written += written;
        Ok(())
    }

    /// Records that file `index` is downloaded, checked and in place.
    pub(super) async fn finished(&self, index: usize, done: Done) -> Result<()> {
        self.journal(index, |file| file.done = Some(done), Some(done), None)
            .await
    }

    /// Records file `index`'s `ETag`, sent as `If-Range` when a later run resumes it. Only
    /// makes a resume better, not correct: an error writing it is logged, not returned.
    pub(super) async fn remember_etag(&self, index: usize, etag: String) {
        let line_etag = Some(etag.clone());
        if let Err(error) = self
            .journal(index, |file| file.etag = Some(etag), None, line_etag)
            .await
        {
            tracing::warn!(target: "epic_fhir::bulk", %error, "cannot record a file's ETag in the export journal");
        }
    }

    async fn journal(
        &self,
        index: usize,
        change: impl FnOnce(&mut FileState),
        done: Option<Done>,
        etag: Option<String>,
    ) -> Result<()> {
        let mut store = self.inner.lock().await;
        let journal_id = store.state.journal;
        let Some(file) = store.state.files.get_mut(index) else {
            return Ok(());
        };
        change(file);
        let line = JournalLine {
            journal: journal_id,
            file: index,
            name: file.name.clone(),
            done,
            etag,
        };
        let mut bytes = serde_json::to_vec(&line)
            .map_err(|e| Error::config("cannot serialize the export journal").with_source(e))?;
        bytes.push(b'\n');
        let path = self.dir.join(JOURNAL_FILE);
        if store.journal.is_none() {
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .await
                .map_err(|e| io_error("open", &path, e))?;
            store.journal = Some(file);
        }
        if let Some(journal) = store.journal.as_mut() {
            journal
                .write_all(&bytes)
                .await
                .map_err(|e| io_error("append to", &path, e))?;
            // tokio's file writes go through a background thread: wait until this line has
            // reached the kernel, so a later kill of the process cannot lose it.
            journal
                .flush()
                .await
                .map_err(|e| io_error("append to", &path, e))?;
        }
        store.written += bytes.len() as u64;
        Ok(())
    }

    /// A copy of the current state.
    pub(super) async fn snapshot(&self) -> ExportState {
        self.inner.lock().await.state.clone()
    }

    /// Bytes written to the state file and the journal so far.
    #[cfg(test)]
    pub(super) async fn written(&self) -> u64 {
        self.inner.lock().await.written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("epic-fhir-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[tokio::test]
    async fn saves_and_loads() {
        let dir = scratch("roundtrip");
        assert_eq!(load(&dir).await.expect("load"), None);
        let mut state = ExportState::new(
            ExportRequest::group("g").types(["Patient"]),
            "https://x.example/Group/g/$export".to_owned(),
            "https://x.example/status/1".to_owned(),
            "2024-01-01T00:00:00Z".to_owned(),
        );
        state.files.push(FileState {
            kind: FileKind::Output,
            resource_type: "Patient".to_owned(),
            url: "https://x.example/f/1".to_owned(),
            name: "Patient-0001.ndjson".to_owned(),
            count: Some(3),
            etag: Some("\"e\"".to_owned()),
            done: Some(Done {
                bytes: 10,
                resources: 3,
            }),
        });
        save(&dir, &mut state).await.expect("save");
        assert_eq!(load(&dir).await.expect("load"), Some(state.clone()));
        assert!(!dir.join(STATE_TEMP).exists());
        state.cleaned_up = true;
        save(&dir, &mut state).await.expect("save again");
        assert_eq!(load(&dir).await.expect("load"), Some(state));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn many_files(dir: &Path, n: usize) -> ExportState {
        let mut state = ExportState::new(
            ExportRequest::group("g"),
            "https://x.example/Group/g/$export".to_owned(),
            "https://x.example/status/1".to_owned(),
            "2024-01-01T00:00:00Z".to_owned(),
        );
        state.files = (0..n)
            .map(|i| FileState {
                kind: FileKind::Output,
                resource_type: "Patient".to_owned(),
                url: format!("https://x.example/f/{i}"),
                name: format!("Patient-{:04}.ndjson", i + 1),
                count: Some(1),
                etag: None,
                done: None,
            })
            .collect();
        let _ = dir;
        state
    }

    #[tokio::test]
    async fn finishing_n_files_writes_o_of_n_bytes_and_replays() {
        let dir = scratch("journal");
        let n = 2000;
        let mut state = many_files(&dir, n);
        let base = save(&dir, &mut state).await.expect("save");
        let store = StateStore::new(dir.clone(), state);
        for i in 0..n {
            store
                .finished(
                    i,
                    Done {
                        bytes: 10,
                        resources: 1,
                    },
                )
                .await
                .expect("journal");
        }
        store.remember_etag(7, "\"v1\"".to_owned()).await;
        // Each file adds one short line; rewriting the state per file would have written
        // about n * base bytes (some 2000 * 200 KB here).
        let written = store.written().await;
        assert!(
            written < 200 * n as u64,
            "{written} bytes for {n} files (the state file alone is {base} bytes)"
        );
        let loaded = load(&dir).await.expect("load").expect("state");
        assert!(loaded.files.iter().all(|f| f.done.is_some()));
        assert_eq!(loaded.files[7].etag.as_deref(), Some("\"v1\""));
        // Replacing the state folds the journal in.
        store.update(|_| {}).await.expect("update");
        assert!(!dir.join(JOURNAL_FILE).exists());
        assert_eq!(
            load(&dir).await.expect("load"),
            Some(store.snapshot().await)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn stale_and_damaged_journal_lines_are_skipped() {
        let dir = scratch("stale");
        let mut state = many_files(&dir, 3);
        save(&dir, &mut state).await.expect("save");
        let id = state.journal;
        let line = |journal: u64, file: usize, name: &str| {
            format!(
                "{{\"journal\":{journal},\"file\":{file},\"name\":\"{name}\",\"done\":{{\"bytes\":5,\"resources\":1}}}}\n"
            )
        };
        let journal = [
            line(id + 1, 0, "Patient-0001.ndjson"),
            line(id, 1, "Other.ndjson"),
            line(id, 1, "Patient-0002.ndjson"),
            line(id, 9, "Patient-0010.ndjson"),
            "{\"journal\":".to_owned(),
            line(id, 2, "Patient-0003.ndjson"),
        ]
        .concat();
        std::fs::write(dir.join(JOURNAL_FILE), journal).expect("journal");
        let loaded = load(&dir).await.expect("load").expect("state");
        let done: Vec<bool> = loaded.files.iter().map(|f| f.done.is_some()).collect();
        // Another state's line, a line naming another file and one out of range are
        // skipped; reading stops at the damaged line.
        assert_eq!(done, [false, true, false]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn io_errors_name_the_path_and_keep_the_reason_as_source() {
        let dir = scratch("io");
        // A folder where the state file should be cannot be read as one.
        std::fs::create_dir_all(dir.join(STATE_FILE)).expect("folder");
        let err = load(&dir).await.expect_err("a folder");
        assert_eq!(err.kind(), ErrorKind::Io);
        let reason = std::error::Error::source(&err).expect("source").to_string();
        let message = err.to_string();
        assert!(message.contains(STATE_FILE), "{message}");
        assert!(!message.contains(&reason), "{message} repeats {reason}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn damaged_and_foreign_states_are_refused() {
        let dir = scratch("damaged");
        std::fs::write(dir.join(STATE_FILE), br#"{"format":1,"request":7}"#).expect("write");
        let err = load(&dir).await.expect_err("damaged");
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("`request`"), "{err}");
        std::fs::write(
            dir.join(STATE_FILE),
            br#"{"format":9,"request":{"level":{"kind":"system"}},"kick_off_url":"","status_url":"","kicked_off_at":""}"#,
        )
        .expect("write");
        let err = load(&dir).await.expect_err("format");
        assert!(err.to_string().contains("format 9"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
