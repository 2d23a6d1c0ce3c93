//! Export jobs: the background work over a snapshot, progress, the manifest, and the status
//! endpoint (poll and cancel).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{bearer_grant, ceil_seconds, human};
use crate::outcome::{FHIR_JSON, FhirError, Issue, operation_outcome};
use crate::search::ParsedSearch;
use crate::server::AppState;
use crate::store::{Store, StoredResource};

/// Random bytes in a job id: 128 bits, so ids cannot be guessed.
const JOB_ID_BYTES: usize = 16;
/// Resources examined between two yields to the runtime when no pace is set.
const UNPACED_CHUNK: usize = 256;
/// How often a paced job wakes up, at most.
const PACE_TICKS_PER_SECOND: u32 = 20;

/// The content of one output or error file.
#[derive(Debug)]
pub(super) enum FileContent {
    /// NDJSON of these stored resources, each line a resource's stored JSON.
    Resources(Vec<Arc<StoredResource>>),
    /// NDJSON built by the server (the OperationOutcomes of the error file).
    Outcomes(Bytes),
}

/// One file of a finished job.
#[derive(Debug)]
pub(super) struct ExportFile {
    /// The `type` of the manifest entry.
    pub(super) resource_type: String,
    pub(super) content: FileContent,
    /// Resources (lines) in the file.
    pub(super) count: usize,
    /// Length in bytes of the identity encoding.
    pub(super) len: u64,
}

impl ExportFile {
    fn resources(resource_type: &str, resources: Vec<Arc<StoredResource>>) -> Self {
        let len = resources.iter().map(|r| r.json().len() as u64 + 1).sum();
        ExportFile {
            resource_type: resource_type.to_owned(),
            count: resources.len(),
            len,
            content: FileContent::Resources(resources),
        }
    }

    fn outcomes(issues: &[Issue]) -> Self {
        let mut text = String::new();
        for issue in issues {
            text.push_str(&operation_outcome(std::slice::from_ref(issue)).to_string());
            text.push('\n');
        }
        ExportFile {
            resource_type: "OperationOutcome".to_owned(),
            count: issues.len(),
            len: text.len() as u64,
            content: FileContent::Outcomes(Bytes::from(text)),
        }
    }
}

/// What a finished job keeps.
#[derive(Debug)]
pub(super) struct Finished {
    /// Output files first, then the error file (if any), as the manifest numbers them.
    pub(super) files: Vec<Arc<ExportFile>>,
    manifest: Bytes,
    /// When the job finished, for retention.
    at: Instant,
    /// The same on the wall clock, for the manifest's `Expires` header.
    wall_clock: SystemTime,
}

/// One export job.
#[derive(Debug)]
pub(crate) struct Job {
    id: String,
    client_id: String,
    /// The Group exported, for a Group export.
    group: Option<String>,
    /// The estimated memory the job's snapshot keeps alive, in bytes.
    memory: usize,
    request: String,
    transaction_time: OffsetDateTime,
    total: usize,
    processed: AtomicUsize,
    cancelled: AtomicBool,
    finished: OnceLock<Finished>,
    last_poll: Mutex<Option<Instant>>,
}

/// Everything the background task needs besides the job.
#[derive(Debug)]
pub(super) struct Work {
    /// Candidate resources by type, types by name.
    pub(super) snapshot: Vec<(String, Vec<Arc<StoredResource>>)>,
    /// `_typeFilter` queries by type: a resource of such a type must match one of them.
    pub(super) filters: HashMap<String, Vec<ParsedSearch>>,
    pub(super) since: Option<OffsetDateTime>,
    /// Problems found at kick-off, for the error file.
    pub(super) notes: Vec<Issue>,
    pub(super) base_url: String,
    pub(super) max_resources_per_file: usize,
    pub(super) pace: u32,
}

/// A fresh unguessable job id (base64url, 22 characters).
pub(super) fn new_id() -> Result<String, String> {
    let mut bytes = [0u8; JOB_ID_BYTES];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "the random generator failed".to_owned())?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

impl Job {
    pub(super) fn new(
        id: String,
        client_id: String,
        group: Option<String>,
        request: String,
        transaction_time: OffsetDateTime,
        snapshot: &[(String, Vec<Arc<StoredResource>>)],
    ) -> Self {
        // The snapshot shares the stored bytes, but keeps them alive after an update or a
        // reload replaces them: the JSON counts in full, plus a pointer per resource.
        let memory = snapshot
            .iter()
            .flat_map(|(_, list)| list)
            .map(|r| r.json().len() + std::mem::size_of::<Arc<StoredResource>>())
            .sum();
        Job {
            id,
            client_id,
            group,
            memory,
            request,
            transaction_time,
            total: snapshot.iter().map(|(_, list)| list.len()).sum(),
            processed: AtomicUsize::new(0),
            cancelled: AtomicBool::new(false),
            finished: OnceLock::new(),
            last_poll: Mutex::new(None),
        }
    }

    pub(super) fn id(&self) -> &str {
        &self.id
    }

    pub(super) fn client_id(&self) -> &str {
        &self.client_id
    }

    pub(super) fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    pub(super) fn memory(&self) -> usize {
        self.memory
    }

    /// Resources in the snapshot.
    pub(super) fn total(&self) -> usize {
        self.total
    }

    pub(super) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    pub(super) fn finished(&self) -> Option<&Finished> {
        self.finished.get()
    }

    /// A finished job older than `retention` is gone; a running job never expires.
    pub(super) fn expired(&self, retention: Duration) -> bool {
        self.finished().is_some_and(|f| f.at.elapsed() > retention)
    }

    /// `X-Progress`: e.g. `42% (1200/2843 resources)`.
    fn progress(&self) -> String {
        let done = self.processed.load(Ordering::Relaxed).min(self.total);
        let percent = (done * 100).checked_div(self.total).unwrap_or(100);
        format!("{percent}% ({done}/{} resources)", self.total)
    }

    /// Records a status poll, or returns how long the client should still have waited.
    fn poll(&self, interval: Duration) -> Result<(), Duration> {
        let now = Instant::now();
        let mut last = self
            .last_poll
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(previous) = *last {
            let elapsed = now.duration_since(previous);
            if elapsed < interval {
                return Err(interval - elapsed);
            }
        }
        *last = Some(now);
        Ok(())
    }
}

/// The background task: filters the snapshot, splits it into files and publishes the
/// manifest. Stops early, publishing nothing, when the job is cancelled.
pub(super) async fn run(job: Arc<Job>, store: Arc<Store>, work: Work) {
    let chunk = if work.pace == 0 {
        UNPACED_CHUNK
    } else {
        (work.pace / PACE_TICKS_PER_SECOND).max(1) as usize
    };
    let since = work
        .since
        .map(|s| i64::try_from(s.unix_timestamp_nanos() / 1000).unwrap_or(i64::MIN));
    let started = tokio::time::Instant::now();
    let mut processed = 0usize;
    let mut files: Vec<Arc<ExportFile>> = Vec::new();
    for (resource_type, resources) in &work.snapshot {
        let filters = work.filters.get(resource_type).map(Vec::as_slice);
        let mut current: Vec<Arc<StoredResource>> = Vec::new();
        for part in resources.chunks(chunk) {
            if job.cancelled.load(Ordering::Relaxed) {
                tracing::debug!(target: "epic_fhir_sandbox::bulk", job = job.id(), "export cancelled");
                return;
            }
            for resource in select(&store, part, since, filters) {
                current.push(resource);
                if current.len() == work.max_resources_per_file {
                    files.push(Arc::new(ExportFile::resources(
                        resource_type,
                        std::mem::take(&mut current),
                    )));
                }
            }
            processed += part.len();
            job.processed.store(processed, Ordering::Relaxed);
            if work.pace == 0 {
                tokio::task::yield_now().await;
            } else {
                let due = Duration::from_secs_f64(processed as f64 / f64::from(work.pace));
                tokio::time::sleep_until(started + due).await;
            }
        }
        if !current.is_empty() {
            files.push(Arc::new(ExportFile::resources(resource_type, current)));
        }
    }
    if job.cancelled.load(Ordering::Relaxed) {
        return;
    }
    let outputs = files.len();
    if !work.notes.is_empty() {
        files.push(Arc::new(ExportFile::outcomes(&work.notes)));
    }
    let manifest = manifest(&job, &work.base_url, &files, outputs);
    let finished = Finished {
        files,
        manifest,
        at: Instant::now(),
        wall_clock: SystemTime::now(),
    };
    tracing::debug!(target: "epic_fhir_sandbox::bulk", job = job.id(), files = finished.files.len(), "export finished");
    let _ = job.finished.set(finished);
}

/// The resources of `part` that pass `_since` (stored at or after it: a resource written in
/// the same millisecond as a previous export's `transactionTime` is exported twice rather
/// than lost) and, when the type has `_typeFilter`s, match at least one of them.
fn select(
    store: &Store,
    part: &[Arc<StoredResource>],
    since: Option<i64>,
    filters: Option<&[ParsedSearch]>,
) -> Vec<Arc<StoredResource>> {
    let recent: Vec<Arc<StoredResource>> = part
        .iter()
        .filter(|r| since.is_none_or(|since| r.last_updated_micros() >= since))
        .cloned()
        .collect();
    let Some(filters) = filters else {
        return recent;
    };
    let mut keep: HashSet<usize> = HashSet::new();
    for filter in filters {
        keep.extend(
            store
                .matching(filter, &recent)
                .iter()
                .map(|r| Arc::as_ptr(r).addr()),
        );
    }
    recent
        .into_iter()
        .filter(|r| keep.contains(&Arc::as_ptr(r).addr()))
        .collect()
}

/// The completion manifest: outputs are `files[..outputs]`, the error file follows.
fn manifest(job: &Job, base_url: &str, files: &[Arc<ExportFile>], outputs: usize) -> Bytes {
    let entry = |(index, file): (usize, &Arc<ExportFile>)| {
        json!({
            "type": file.resource_type,
            "url": format!("{base_url}/$export-file/{}/{index}", job.id),
            "count": file.count,
        })
    };
    let (output, error) = files.split_at(outputs.min(files.len()));
    let body = json!({
        "transactionTime": job.transaction_time.format(&Rfc3339).unwrap_or_default(),
        "request": job.request,
        "requiresAccessToken": true,
        "output": output.iter().enumerate().map(entry).collect::<Vec<_>>(),
        "error": error.iter().enumerate().map(|(i, f)| entry((i + outputs, f))).collect::<Vec<_>>(),
    });
    Bytes::from(body.to_string())
}

/// `GET [base]/$export-status/{job}`.
pub(super) async fn status(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    state.stats.fhir_requests.fetch_add(1, Ordering::Relaxed);
    let grant = bearer_grant(&state, &headers)?;
    let job = state.bulk.find(&id, &grant.client_id)?;
    if let Some(finished) = job.finished() {
        let mut response = (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            finished.manifest.clone(),
        )
            .into_response();
        let expires = finished.wall_clock + state.bulk.config().retention;
        if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(expires)) {
            response.headers_mut().insert(header::EXPIRES, value);
        }
        return Ok(response);
    }
    let interval = state.bulk.config().poll_interval;
    if let Err(wait) = job.poll(interval) {
        let mut error = FhirError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            format!(
                "export job {id} was polled again {} too early: wait for the Retry-After of the previous answer ({} between polls)",
                human(wait),
                human(interval)
            ),
        );
        error.retry_after = Some(ceil_seconds(wait).max(1));
        return Err(error);
    }
    let mut response = StatusCode::ACCEPTED.into_response();
    let headers = response.headers_mut();
    if let Ok(progress) = HeaderValue::from_str(&job.progress()) {
        headers.insert("x-progress", progress);
    }
    headers.insert(
        header::RETRY_AFTER,
        HeaderValue::from(ceil_seconds(interval)),
    );
    Ok(response)
}

/// `DELETE [base]/$export-status/{job}`: cancels a running job or removes a finished one.
pub(super) async fn delete(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    state.stats.fhir_requests.fetch_add(1, Ordering::Relaxed);
    let grant = bearer_grant(&state, &headers)?;
    let job = state.bulk.remove(&id, &grant.client_id)?;
    job.cancel();
    let body = operation_outcome(&[Issue {
        severity: "information",
        code: "informational",
        diagnostics: format!("export job {id} was deleted: its status URL and files are gone"),
        epic_code: None,
        expression: None,
    }])
    .to_string();
    Ok((
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, FHIR_JSON)],
        body,
    )
        .into_response())
}
