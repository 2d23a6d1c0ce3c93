//! The export's state, saved in the output folder so that a later run can resume it.

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
        }
    }
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
    Ok(Some(state))
}

/// Writes the state atomically: to a temporary file, synced, then renamed over the old one,
/// so a crash leaves either the old state or the new one, never a mix.
pub(super) async fn save(dir: &Path, state: &ExportState) -> Result<()> {
    let bytes = serde_json::to_vec(state)
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
        .map_err(|e| io_error("replace the export state", &path, e))
}

/// The state of a running export, shared by its download tasks; every change is saved
/// before the lock is released.
#[derive(Debug)]
pub(super) struct StateStore {
    dir: PathBuf,
    state: tokio::sync::Mutex<ExportState>,
}

impl StateStore {
    pub(super) fn new(dir: PathBuf, state: ExportState) -> Self {
        StateStore {
            dir,
            state: tokio::sync::Mutex::new(state),
        }
    }

    /// Applies `change` and saves the result.
    pub(super) async fn update(&self, change: impl FnOnce(&mut ExportState)) -> Result<()> {
        let mut state = self.state.lock().await;
        change(&mut state);
        save(&self.dir, &state).await
    }

    /// Applies `change` without saving: it is written with the next saved change. For what
    /// only makes a resume better, not correct (a file's `ETag`), so a save per file start
    /// is not paid for.
    pub(super) async fn remember(&self, change: impl FnOnce(&mut ExportState)) {
        change(&mut *self.state.lock().await);
    }

    /// A copy of the current state.
    pub(super) async fn snapshot(&self) -> ExportState {
        self.state.lock().await.clone()
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
        save(&dir, &state).await.expect("save");
        assert_eq!(load(&dir).await.expect("load"), Some(state.clone()));
        assert!(!dir.join(STATE_TEMP).exists());
        state.cleaned_up = true;
        save(&dir, &state).await.expect("save again");
        assert_eq!(load(&dir).await.expect("load"), Some(state));
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
