//! The whole export: kick-off or resume, polling, downloads, cleanup and the summary.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use url::Url;

use super::download::{DownloadOptions, Downloader};
use super::job::{ExportJob, PollOptions};
use super::manifest::Manifest;
use super::request::{ExportRequest, is_resource_type};
use super::state::{
    self, ExportState, FileKind, FileState, JOURNAL_FILE, STATE_FILE, StateStore, io_error,
};
use super::{EventHandler, ExportEvent};
use crate::FhirClient;
use crate::error::{Error, ErrorKind, Result};
use crate::net;

/// Runs a Bulk Data export into a folder, from kick-off (or the state of an earlier run) to
/// checked files and a summary. See the [module documentation](super) for what it guarantees.
///
/// A folder holds one export, worked on by one run at a time: two runs in the same folder at
/// once are not detected and would overwrite each other's partial files.
#[must_use]
pub struct BulkExport {
    client: FhirClient,
    request: Option<ExportRequest>,
    dir: PathBuf,
    resume: bool,
    cleanup: bool,
    poll: PollOptions,
    download: DownloadOptions,
    events: EventHandler,
}

impl fmt::Debug for BulkExport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkExport")
            .field("request", &self.request)
            .field("dir", &self.dir)
            .field("resume", &self.resume)
            .field("cleanup", &self.cleanup)
            .field("poll", &self.poll)
            .field("download", &self.download)
            .finish_non_exhaustive()
    }
}

impl BulkExport {
    /// An export of `request` into the folder `dir` (created if missing).
    pub fn new(client: &FhirClient, request: ExportRequest, dir: impl Into<PathBuf>) -> Self {
        BulkExport {
            client: client.clone(),
            request: Some(request),
            dir: dir.into(),
            resume: false,
            cleanup: false,
            poll: PollOptions::default(),
            download: DownloadOptions::default(),
            events: Arc::new(|_: &ExportEvent| {}),
        }
    }

    /// Continues the export saved in `dir`, whatever its request was.
    pub fn resume_saved(client: &FhirClient, dir: impl Into<PathBuf>) -> Self {
        BulkExport {
            request: None,
            resume: true,
            ..BulkExport::new(client, ExportRequest::system(), dir)
        }
    }

    /// Continues the export saved in the folder when there is one (it must be of the same
    /// request), or starts a new one. Default false: a folder holding an earlier export's
    /// state is refused, so that nothing is overwritten by accident.
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// Deletes the job on the server (`DELETE` on the status URL) once every file is
    /// downloaded, so the server can free its storage. Default false.
    pub fn cleanup(mut self, cleanup: bool) -> Self {
        self.cleanup = cleanup;
        self
    }

    /// How to poll. Default [`PollOptions::default`].
    pub fn poll_options(mut self, options: PollOptions) -> Self {
        self.poll = options;
        self
    }

    /// How to download. Default [`DownloadOptions::default`].
    pub fn download_options(mut self, options: DownloadOptions) -> Self {
        self.download = options;
        self
    }

    /// Reports progress to `handler`, called from the export's tasks. Default: nothing.
    pub fn on_event(mut self, handler: impl Fn(&ExportEvent) + Send + Sync + 'static) -> Self {
        self.events = Arc::new(handler);
        self
    }

    /// Runs the export to the end.
    ///
    /// Dropping the future (or aborting its task) stops it; the state file and any partial
    /// download stay, and a later run with [`BulkExport::resume`] continues from them.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when the folder holds another export's state (or none, to resume
    /// with [`BulkExport::resume_saved`]); [`ErrorKind::Io`] for local file errors; as
    /// [`ExportRequest::kick_off`], [`ExportJob::wait`] and the downloads otherwise (a file
    /// whose content is wrong is [`ErrorKind::Decode`], naming the file and line).
    pub async fn run(self) -> Result<ExportSummary> {
        let started = tokio::time::Instant::now();
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| io_error("create the output folder", &self.dir, e))?;
        let (state, job) = self.start_or_resume().await?;
        let store = Arc::new(StateStore::new(self.dir.clone(), state));

        let mut state = store.snapshot().await;
        let manifest = match state.manifest.clone() {
            Some(manifest) => manifest,
            None => {
                let manifest = job.wait(&self.poll, &*self.events).await?;
                let files = plan(&manifest, job.status_url())?;
                store
                    .update(|state| {
                        state.manifest = Some(manifest.clone());
                        state.files = files;
                    })
                    .await?;
                state = store.snapshot().await;
                manifest
            }
        };
        (self.events)(&ExportEvent::ManifestReady {
            files: state.files.len(),
            resources: manifest.total_resources(),
        });

        let mut pending = Vec::new();
        let mut damaged = Vec::new();
        let mut reused = 0usize;
        for (index, file) in state.files.iter().enumerate() {
            match file.done {
                Some(done) if intact(&self.dir.join(&file.name), done.bytes).await => {
                    reused += 1;
                    (self.events)(&ExportEvent::FileSkipped {
                        name: file.name.clone(),
                        resources: done.resources,
                        bytes: done.bytes,
                    });
                }
                Some(_) => {
                    tracing::warn!(target: "epic_fhir::bulk", file = %file.name, "a downloaded file is missing or changed: downloading it again");
                    damaged.push(index);
                    pending.push((
                        index,
                        FileState {
                            done: None,
                            ..file.clone()
                        },
                    ));
                }
                None => pending.push((index, file.clone())),
            }
        }
        if !damaged.is_empty() {
            store
                .update(|state| {
                    for index in &damaged {
                        if let Some(file) = state.files.get_mut(*index) {
                            file.done = None;
                        }
                    }
                })
                .await?;
        }

        let downloader = Arc::new(Downloader::new(
            self.client.clone(),
            self.dir.clone(),
            self.download.clone(),
            manifest.requires_access_token,
            Arc::clone(&store),
            Arc::clone(&self.events),
        ));
        let downloaded = downloader.download_all(pending).await;
        // The journal's lines go into the state file (also after a failure, so a later run
        // reads one file).
        store.update(|_| {}).await?;
        let downloaded = downloaded?;

        if self.cleanup && !store.snapshot().await.cleaned_up {
            job.cancel().await?;
            store.update(|state| state.cleaned_up = true).await?;
            (self.events)(&ExportEvent::CleanedUp);
        }

        let state = store.snapshot().await;
        let mut summary = ExportSummary {
            transaction_time: manifest.transaction_time.clone(),
            out_dir: self.dir.clone(),
            types: BTreeMap::new(),
            errors: TypeSummary::default(),
            deleted: TypeSummary::default(),
            files: 0,
            resources: 0,
            bytes: 0,
            files_downloaded: downloaded.len(),
            files_reused: reused,
            bytes_transferred: downloaded.iter().map(|d| d.transferred).sum(),
            cleaned_up: state.cleaned_up,
            elapsed: started.elapsed(),
        };
        for file in &state.files {
            let Some(done) = file.done else {
                continue;
            };
            let counts = match file.kind {
                FileKind::Output => {
                    summary.files += 1;
                    summary.resources += done.resources;
                    summary.bytes += done.bytes;
                    summary.types.entry(file.resource_type.clone()).or_default()
                }
                FileKind::Error => &mut summary.errors,
                FileKind::Deleted => &mut summary.deleted,
            };
            counts.files += 1;
            counts.resources += done.resources;
            counts.bytes += done.bytes;
        }
        Ok(summary)
    }

    /// Reads the folder's state and either continues it or kicks off a new export.
    async fn start_or_resume(&self) -> Result<(ExportState, ExportJob)> {
        let saved = state::load(&self.dir).await?;
        match saved {
            Some(state) if self.resume => {
                if let Some(request) = &self.request {
                    let url = request.kick_off_url(self.client.base_url())?;
                    if url.as_str() != state.kick_off_url {
                        return Err(Error::config(format!(
                            "{} holds an export of another request ({}), not of {url}: resume it without a request, or use another folder",
                            self.dir.display(),
                            state.kick_off_url
                        )));
                    }
                }
                let job = ExportJob::from_status_url(&self.client, &state.status_url)?;
                (self.events)(&ExportEvent::Resumed {
                    status_url: job.status_url().clone(),
                    files_complete: state.files.iter().filter(|f| f.done.is_some()).count(),
                });
                tracing::debug!(target: "epic_fhir::bulk", status_url = %job.status_url(), "resuming export");
                Ok((state, job))
            }
            Some(_) => Err(Error::config(format!(
                "{} already holds an export ({STATE_FILE}): resume it, or choose an empty folder",
                self.dir.display()
            ))),
            None => {
                let Some(request) = &self.request else {
                    return Err(Error::config(format!(
                        "{} holds no export to resume (there is no {STATE_FILE})",
                        self.dir.display()
                    )));
                };
                let url = request.kick_off_url(self.client.base_url())?;
                let job = ExportJob::kick_off(&self.client, url.clone()).await?;
                let mut state = ExportState::new(
                    request.clone(),
                    url.to_string(),
                    job.status_url().to_string(),
                    OffsetDateTime::now_utc()
                        .format(&Rfc3339)
                        .unwrap_or_default(),
                );
                state::save(&self.dir, &mut state).await?;
                (self.events)(&ExportEvent::KickedOff {
                    status_url: job.status_url().clone(),
                });
                Ok((state, job))
            }
        }
    }

    /// Cancels the export saved in `dir` (`DELETE` on its status URL, unless it was already
    /// cleaned up), then removes the state file and partial downloads; finished files stay.
    /// Returns the status URL of the cancelled job.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when `dir` holds no export; [`ErrorKind::Status`] 404 when the
    /// server no longer knows the job; [`ErrorKind::Io`] for local file errors.
    pub async fn cancel_saved(client: &FhirClient, dir: impl AsRef<Path>) -> Result<Url> {
        let dir = dir.as_ref();
        let state = state::load(dir).await?.ok_or_else(|| {
            Error::config(format!(
                "{} holds no export to cancel (there is no {STATE_FILE})",
                dir.display()
            ))
        })?;
        let job = ExportJob::from_status_url(client, &state.status_url)?;
        if !state.cleaned_up {
            job.cancel().await?;
        }
        for file in state.files.iter().filter(|f| f.done.is_none()) {
            let temp = dir.join(file.temp_name());
            match tokio::fs::remove_file(&temp).await {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_error("remove", &temp, error));
                }
                _ => {}
            }
        }
        let journal = dir.join(JOURNAL_FILE);
        match tokio::fs::remove_file(&journal).await {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_error("remove", &journal, error));
            }
            _ => {}
        }
        let path = dir.join(STATE_FILE);
        tokio::fs::remove_file(&path)
            .await
            .map_err(|e| io_error("remove", &path, e))?;
        Ok(job.status_url().clone())
    }
}

/// Whether a file said to be complete is still there with its size.
async fn intact(path: &Path, bytes: u64) -> bool {
    tokio::fs::metadata(path)
        .await
        .is_ok_and(|meta| meta.is_file() && meta.len() == bytes)
}

/// Names the manifest's files and checks what goes into a path or a request: the type must be
/// a resource type name (it becomes part of a file name), the URL a secure URL.
fn plan(manifest: &Manifest, status_url: &Url) -> Result<Vec<FileState>> {
    let mut numbers: HashMap<(FileKind, &str), usize> = HashMap::new();
    let mut files = Vec::new();
    let lists = [
        (FileKind::Output, "output", &manifest.output),
        (FileKind::Error, "error", &manifest.error),
        (FileKind::Deleted, "deleted", &manifest.deleted),
    ];
    for (kind, member, entries) in lists {
        for (position, entry) in entries.iter().enumerate() {
            let resource_type = entry.resource_type.as_str();
            if !is_resource_type(resource_type) {
                return Err(Error::new(
                    ErrorKind::Decode,
                    format!("the manifest's {member}[{position}].type `{resource_type}` is not a FHIR resource type name"),
                )
                .with_json_path(format!("{member}[{position}].type")));
            }
            // The IG says absolute; a relative one is read against the status URL.
            let url = status_url.join(&entry.url).map_err(|e| {
                Error::new(
                    ErrorKind::Decode,
                    format!(
                        "the manifest's {member}[{position}].url `{}` is not a URL",
                        entry.url
                    ),
                )
                .with_json_path(format!("{member}[{position}].url"))
                .with_source(e)
            })?;
            net::check_secure_url(&url, &format!("the manifest's {member}[{position}].url"))?;
            let number = numbers.entry((kind, resource_type)).or_insert(0);
            *number += 1;
            let name = match kind {
                FileKind::Output => format!("{resource_type}-{number:04}.ndjson"),
                FileKind::Error => format!("error-{resource_type}-{number:04}.ndjson"),
                FileKind::Deleted => format!("deleted-{resource_type}-{number:04}.ndjson"),
            };
            files.push(FileState {
                kind,
                resource_type: resource_type.to_owned(),
                url: url.to_string(),
                name,
                count: entry.count,
                etag: None,
                done: None,
            });
        }
    }
    Ok(files)
}

/// What one file type contributed to an export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TypeSummary {
    /// Files.
    pub files: usize,
    /// Resources (lines).
    pub resources: u64,
    /// Bytes on disk.
    pub bytes: u64,
}

/// The result of a finished export. Serializes to the JSON that `epic-fhir export` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ExportSummary {
    /// The manifest's `transactionTime`: the `_since` of the next incremental export.
    pub transaction_time: String,
    /// The folder holding the files.
    pub out_dir: PathBuf,
    /// Output files by resource type.
    pub types: BTreeMap<String, TypeSummary>,
    /// The `error` files (OperationOutcomes about problems with the export).
    pub errors: TypeSummary,
    /// The `deleted` files (Bundles of deleted resources).
    pub deleted: TypeSummary,
    /// Output files in all.
    pub files: usize,
    /// Output resources in all.
    pub resources: u64,
    /// Output bytes in all.
    pub bytes: u64,
    /// Files downloaded by this run.
    pub files_downloaded: usize,
    /// Files found complete from an earlier run and kept.
    pub files_reused: usize,
    /// Bytes this run's downloads wrote (decompressed), retries and restarts included.
    pub bytes_transferred: u64,
    /// Whether the job has been deleted on the server.
    pub cleaned_up: bool,
    /// The time this run took.
    #[serde(rename = "elapsed_seconds", serialize_with = "seconds")]
    pub elapsed: Duration,
}

fn seconds<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(value: serde_json::Value) -> Manifest {
        Manifest::from_json(value.to_string().as_bytes()).expect("manifest")
    }

    #[test]
    fn files_are_named_by_kind_type_and_number() {
        let status = Url::parse("https://fhir.example.org/R4/status/1").expect("url");
        let files = plan(
            &manifest(json!({
                "transactionTime": "2024-01-01T00:00:00Z",
                "output": [
                    {"type": "Patient", "url": "https://fhir.example.org/f/1", "count": 5},
                    {"type": "Observation", "url": "https://fhir.example.org/f/2"},
                    {"type": "Observation", "url": "../f/3"}
                ],
                "error": [{"type": "OperationOutcome", "url": "https://fhir.example.org/f/4"}],
                "deleted": [{"type": "Bundle", "url": "https://fhir.example.org/f/5"}]
            })),
            &status,
        )
        .expect("plan");
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Patient-0001.ndjson",
                "Observation-0001.ndjson",
                "Observation-0002.ndjson",
                "error-OperationOutcome-0001.ndjson",
                "deleted-Bundle-0001.ndjson"
            ]
        );
        assert_eq!(files[2].url, "https://fhir.example.org/R4/f/3");
        assert_eq!(files[0].count, Some(5));
        assert_eq!(files[3].kind, FileKind::Error);
        assert_eq!(files[0].temp_name(), ".Patient-0001.ndjson.part");
    }

    #[test]
    fn unsafe_entries_are_refused() {
        let status = Url::parse("https://fhir.example.org/R4/status/1").expect("url");
        let err = plan(
            &manifest(json!({
                "transactionTime": "t",
                "output": [{"type": "../../etc/passwd", "url": "https://fhir.example.org/f/1"}]
            })),
            &status,
        )
        .expect_err("path in type");
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert_eq!(err.json_path(), Some("output[0].type"));
        let err = plan(
            &manifest(json!({
                "transactionTime": "t",
                "output": [],
                "error": [{"type": "OperationOutcome", "url": "http://files.example.org/e"}]
            })),
            &status,
        )
        .expect_err("plain http");
        assert_eq!(err.kind(), ErrorKind::InsecureUrl);
        assert!(err.to_string().contains("error[0].url"), "{err}");
    }

    #[test]
    fn summaries_serialize_with_seconds() {
        let summary = ExportSummary {
            transaction_time: "2024-01-01T00:00:00Z".to_owned(),
            out_dir: PathBuf::from("out"),
            types: BTreeMap::from([(
                "Patient".to_owned(),
                TypeSummary {
                    files: 1,
                    resources: 2,
                    bytes: 3,
                },
            )]),
            errors: TypeSummary::default(),
            deleted: TypeSummary::default(),
            files: 1,
            resources: 2,
            bytes: 3,
            files_downloaded: 1,
            files_reused: 0,
            bytes_transferred: 3,
            cleaned_up: false,
            elapsed: Duration::from_millis(1500),
        };
        let value = serde_json::to_value(&summary).expect("json");
        assert_eq!(value["elapsed_seconds"], 1.5);
        assert_eq!(value["types"]["Patient"]["resources"], 2);
    }
}
