//! Bulk Data export (`$export`, Bulk Data Access IG STU2) as Epic serves it.
//!
//! Endpoints, under the FHIR base:
//!
//! | Request | Answer |
//! |---|---|
//! | `GET Group/{id}/$export` | 202 + `Content-Location` of the status URL |
//! | `GET Patient/$export` | the same over every patient (404 when [`BulkConfig::disable_patient_export`]) |
//! | `GET $export` | the same over every resource (404 when [`BulkConfig::disable_system_export`], as Epic) |
//! | `GET $export-status/{job}` | 202 + `X-Progress` + `Retry-After` while running, 200 + manifest when done |
//! | `DELETE $export-status/{job}` | 202; the job and its files are gone (404) afterwards |
//! | `GET $export-file/{job}/{n}` | one NDJSON file, gzip or byte ranges on request |
//!
//! How a job works:
//!
//! - **Kick-off** checks everything a client can get wrong, each failure an OperationOutcome
//!   naming the header or parameter: the bearer token, `Accept: application/fhir+json`,
//!   `Prefer: respond-async`, `_outputFormat`, `_type`, `_since`, `_typeFilter`; any other
//!   parameter (`_elements`, `includeAssociatedData`, `patient`...) is refused as
//!   `not-supported` rather than silently ignored. `Prefer: handling=lenient` is accepted but
//!   changes nothing: the sandbox is always strict, so a client learns what a stricter server
//!   would refuse.
//! - **Scopes** decide the types: a type the token may not read is left out and reported in
//!   the manifest's `error` file; a request leaving no readable type is a 403.
//! - **Snapshot**: the kick-off collects the `Arc`s of every candidate resource at
//!   `transactionTime`, under one store lock, so the export is one state of the store and no
//!   later write is stamped before `transactionTime`. Stored versions are immutable, so later
//!   writes never change the export, and the files are served from the stored JSON bytes
//!   without copying them into a file.
//! - **Background work** (a tokio task) applies `_since` and `_typeFilter`, groups the
//!   resources by type (types by name, then in snapshot order) and splits them into files of
//!   at most [`BulkConfig::max_resources_per_file`], at [`BulkConfig::pace_resources_per_second`]
//!   so that progress can be observed.
//! - **Polling** faster than the `Retry-After` a client was given is answered 429.
//! - **Ownership**: jobs and files belong to the client that started them; any other client
//!   gets 404, exactly as for an unknown job.
//! - **Downloads** honour `Accept-Encoding: gzip` and `Range`. A range of a gzip stream would
//!   be ambiguous (offsets of the compressed or the identity bytes?), so a request carrying
//!   `Range` is always served in the identity encoding, where offsets are unambiguous.

mod download;
mod job;
mod kickoff;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde_json::Value;

use crate::auth::tokens::Grant;
use crate::generate::GroupSummary;
use crate::outcome::FhirError;
use crate::server::AppState;
use crate::store::StoredResource;
use job::Job;

/// Epic's largest output file, in resources.
const EPIC_MAX_RESOURCES_PER_FILE: usize = 3000;
/// Epic keeps export files for 14 days.
const EPIC_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);

/// How the sandbox runs `$export`. Every field states its default.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkConfig {
    /// Answer `GET [base]/$export` with 404, as Epic does. Default false (served).
    pub disable_system_export: bool,
    /// Answer `GET [base]/Patient/$export` with 404, as Epic does. Default false (served).
    pub disable_patient_export: bool,
    /// One Group export per client and Group within this window; another kick-off inside it
    /// is answered 429 with `Retry-After`. Epic uses 24 hours. Default `None` (no limit).
    pub group_export_window: Option<Duration>,
    /// Resources a job processes per second, so clients and tests can observe a job in
    /// progress. Default 0: as fast as possible.
    pub pace_resources_per_second: u32,
    /// The `Retry-After` the status URL sends while a job runs (rounded up to whole
    /// seconds); polling again sooner is answered 429. Default 1 s.
    pub poll_interval: Duration,
    /// The most resources in one output file. Default 3000, Epic's figure; at least 1.
    pub max_resources_per_file: usize,
    /// How long a finished job and its files stay available. Default 14 days, Epic's figure.
    pub retention: Duration,
    /// The most jobs one client may hold at once, running or finished and not yet deleted
    /// or expired; another kick-off is answered 429 until one is deleted. Default 5.
    pub max_jobs_per_client: usize,
    /// The memory all jobs together may hold, estimated from the JSON their snapshots keep
    /// alive; a kick-off that would exceed it is answered 429. Default 512 MiB.
    pub memory_budget: usize,
}

impl Default for BulkConfig {
    fn default() -> Self {
        BulkConfig {
            disable_system_export: false,
            disable_patient_export: false,
            group_export_window: None,
            pace_resources_per_second: 0,
            poll_interval: Duration::from_secs(1),
            max_resources_per_file: EPIC_MAX_RESOURCES_PER_FILE,
            retention: EPIC_RETENTION,
            max_jobs_per_client: 5,
            memory_budget: 512 << 20,
        }
    }
}

impl BulkConfig {
    /// Checks the settings that have a lower bound.
    ///
    /// # Errors
    /// A message naming the field when `max_resources_per_file` is 0.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_resources_per_file == 0 {
            return Err(
                "bulk max_resources_per_file is 0: an output file must hold at least one resource"
                    .to_owned(),
            );
        }
        if self.max_jobs_per_client == 0 {
            return Err(
                "bulk max_jobs_per_client is 0: a client must be able to start at least one export"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

/// The export jobs of a running sandbox and the per-Group kick-off windows.
#[derive(Debug)]
pub(crate) struct BulkState {
    config: BulkConfig,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    /// `(client id, Group id)` to the instant of the last accepted kick-off.
    windows: Mutex<HashMap<(String, String), Instant>>,
}

impl BulkState {
    pub(crate) fn new(config: BulkConfig) -> Self {
        BulkState {
            config,
            jobs: Mutex::new(HashMap::new()),
            windows: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn config(&self) -> &BulkConfig {
        &self.config
    }

    /// Stops every running job, so no background task outlives the server.
    pub(crate) fn cancel_all(&self) {
        let jobs = std::mem::take(&mut *self.jobs.lock().unwrap_or_else(PoisonError::into_inner));
        for job in jobs.values() {
            job.cancel();
        }
    }

    /// Drops finished jobs older than the retention, with their files and snapshots.
    fn prune(&self, jobs: &mut HashMap<String, Arc<Job>>) {
        jobs.retain(|_, job| !job.expired(self.config.retention));
    }

    /// The 429 for a client that already holds its share of jobs, or `Ok`.
    fn check_client_share(
        &self,
        jobs: &HashMap<String, Arc<Job>>,
        client_id: &str,
    ) -> Result<(), FhirError> {
        let held = jobs.values().filter(|j| j.client_id() == client_id).count();
        if held < self.config.max_jobs_per_client {
            return Ok(());
        }
        let mut error = FhirError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            format!(
                "Request not allowed: client {client_id} already holds {held} export jobs (running, or finished and not yet deleted), the most this server allows per client: DELETE the status URL of a finished job to free a slot"
            ),
        );
        error.retry_after = Some(ceil_seconds(self.config.poll_interval).max(1));
        Err(error)
    }

    /// Refuses a kick-off early when the client already holds its share of jobs.
    fn precheck(&self, client_id: &str) -> Result<(), FhirError> {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        self.prune(&mut jobs);
        self.check_client_share(&jobs, client_id)
    }

    /// Admits a new job: within the client's share and the memory budget, checked again
    /// under the lock the job is inserted with, so concurrent kick-offs cannot overshoot.
    fn insert(&self, job: Arc<Job>) -> Result<(), FhirError> {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        self.prune(&mut jobs);
        self.check_client_share(&jobs, job.client_id())?;
        let held: usize = jobs.values().map(|j| j.memory()).sum();
        if held.saturating_add(job.memory()) > self.config.memory_budget {
            let mut error = FhirError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                format!(
                    "Request not allowed: this export would hold about {} MiB, and the export jobs held now ({} MiB) leave less than that of this server's {} MiB budget: try again when other jobs are deleted or expire",
                    job.memory() >> 20,
                    held >> 20,
                    self.config.memory_budget >> 20
                ),
            );
            error.retry_after = Some(ceil_seconds(self.config.poll_interval).max(1));
            return Err(error);
        }
        jobs.insert(job.id().to_owned(), job);
        Ok(())
    }

    /// The job `id` if it exists, has not expired and belongs to `client_id`. Any other case
    /// is the same 404, so a client learns nothing about other clients' jobs.
    fn find(&self, id: &str, client_id: &str) -> Result<Arc<Job>, FhirError> {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        if jobs
            .get(id)
            .is_some_and(|job| job.expired(self.config.retention))
        {
            jobs.remove(id);
        }
        jobs.get(id)
            .filter(|job| job.client_id() == client_id)
            .cloned()
            .ok_or_else(|| unknown_job(id))
    }

    /// Removes a job (DELETE). A Group job's kick-off window is freed with it, as on Epic,
    /// where deleting an export lets the client export the Group again.
    fn remove(&self, id: &str, client_id: &str) -> Result<Arc<Job>, FhirError> {
        let job = self.find(id, client_id)?;
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
        if let Some(group) = job.group() {
            self.release_window(client_id, group);
        }
        Ok(job)
    }

    /// Frees the kick-off window of `(client, group)`.
    fn release_window(&self, client_id: &str, group_id: &str) {
        self.windows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(client_id.to_owned(), group_id.to_owned()));
    }

    /// Records a Group kick-off, or says how long the client must wait for the next one.
    fn claim_window(&self, client_id: &str, group_id: &str) -> Result<(), FhirError> {
        let Some(window) = self.config.group_export_window else {
            return Ok(());
        };
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        windows.retain(|_, started| now.duration_since(*started) < window);
        let key = (client_id.to_owned(), group_id.to_owned());
        if let Some(started) = windows.get(&key) {
            let wait = window.saturating_sub(now.duration_since(*started));
            let mut error = FhirError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                format!(
                    "Request not allowed: The Client requested this Group too recently. Client {client_id} already exported Group/{group_id} within the last {}: this server allows one export per Group per client in that window (deleting that export frees it); try again in {}",
                    human(window),
                    human(wait)
                ),
            );
            error.retry_after = Some(ceil_seconds(wait).max(1));
            return Err(error);
        }
        windows.insert(key, now);
        Ok(())
    }
}

fn unknown_job(id: &str) -> FhirError {
    FhirError::not_found(format!(
        "export job {id} is not known: it was deleted, has expired, or was never started by this client"
    ))
}

/// Whole seconds, rounded up, for `Retry-After`.
fn ceil_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// A duration for messages: `24 h`, `90 s`, `250 ms`.
fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 3600 && secs % 3600 == 0 {
        format!("{} h", secs / 3600)
    } else if secs >= 1 {
        format!("{} s", ceil_seconds(duration))
    } else {
        format!("{} ms", duration.as_millis())
    }
}

/// The `$export` routes, merged into the FHIR API router.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/$export",
            get(kickoff::system).fallback(method_not_allowed),
        )
        .route(
            "/{type}/$export",
            get(kickoff::patient).fallback(method_not_allowed),
        )
        .route(
            "/{type}/{id}/$export",
            get(kickoff::group).fallback(method_not_allowed),
        )
        .route(
            "/$export-status/{job}",
            get(job::status)
                .delete(job::delete)
                .fallback(method_not_allowed),
        )
        .route(
            "/$export-file/{job}/{file}",
            get(download::file).fallback(method_not_allowed),
        )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> FhirError {
    FhirError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "not-supported",
        format!(
            "{method} is not supported on {}: bulk export kick-off and downloads use GET, cancellation DELETE",
            uri.path()
        ),
    )
}

/// The grant of the request's bearer token (401 when missing, unknown or expired). Bulk
/// endpoints need the token before they know which resource types are involved, so the
/// per-type scope checks come later.
/// Bulk Data is for Backend Services: a token issued to an app a person launched (whose
/// reach is one patient's record, or one user's) is refused.
fn bearer_grant(state: &AppState, headers: &HeaderMap) -> Result<Arc<Grant>, FhirError> {
    let grant = crate::server::authenticate(state, headers)?;
    if grant.user.is_some() {
        return Err(FhirError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "bulk export needs a Backend Services token (system/ scopes): this token was issued to an app a person launched",
        )
        .with_epic_code(crate::outcome::EPIC_NOT_AUTHORIZED, "User not authorized for request."));
    }
    Ok(grant)
}

/// What a Group resource says about itself: id, name and active member count.
pub(crate) fn group_summary(group: &StoredResource) -> GroupSummary {
    let parsed: Value = serde_json::from_slice(group.json()).unwrap_or(Value::Null);
    GroupSummary {
        id: group.id().to_owned(),
        name: parsed
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        members: kickoff::active_members(&parsed).count(),
    }
}
