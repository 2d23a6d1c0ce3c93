//! Bulk Data export (`$export`, Bulk Data Access IG STU2), as Epic and other servers serve it.
//!
//! The whole flow is one call: [`BulkExport::run`] kicks the export off (or picks up the one
//! saved in the output folder), polls the status URL until the manifest is ready, downloads
//! every file in parallel, checks each one and renames it into place, and returns an
//! [`ExportSummary`]. The pieces are public too, for callers who drive the protocol themselves:
//! [`ExportRequest::kick_off`] gives an [`ExportJob`], whose [`ExportJob::wait`] gives the
//! [`Manifest`].
//!
//! What the client guarantees:
//!
//! - **The token stays home.** The status URL must be on the FHIR server's origin, or the
//!   kick-off is refused. File downloads carry the bearer token only when the manifest says
//!   `requiresAccessToken: true` and only to the FHIR server's origin: a file on another
//!   origin (a storage bucket) is fetched without it, and so is any redirect that leaves the
//!   origin.
//! - **Polling is polite.** `Retry-After` (seconds or an HTTP date) is honoured within
//!   [`PollOptions`] bounds, a 429 means "wait as told", transient failures are retried with
//!   the client's [`RetryPolicy`](crate::RetryPolicy), and an overall deadline bounds the wait.
//!   `X-Progress` is reported through [`ExportEvent::Polled`].
//! - **Files are streamed, checked and atomic.** Each file is written chunk by chunk to a hidden
//!   temporary name in the output folder (never held whole in memory), every line is checked
//!   to be JSON whose `resourceType` is the manifest entry's `type`, the line count must equal
//!   the entry's `count` when given, and only then is the file synced and renamed to its
//!   final name.
//! - **Nothing is lost or repeated.** A download that fails part-way resumes with
//!   `Range: bytes=N-` from the bytes already written (checked against `Content-Range`; a
//!   server that answers 200 instead is read from the start again), with backoff and bounded
//!   attempts. The export's state (status URL, manifest, finished files with their sizes and
//!   line counts) is kept in [`STATE_FILE`], replaced atomically, and [`JOURNAL_FILE`], to
//!   which each finished file adds a line, so running again with resume after a crash or a
//!   kill finishes the job without downloading finished files again, and a resumed file is
//!   byte-identical to an uninterrupted one.
//! - **Nothing grows without bound.** A file is checked as it streams: a line beyond the
//!   manifest's `count`, a line longer than [`DownloadOptions::max_line_bytes`] or a file
//!   larger than [`DownloadOptions::max_file_bytes`] stops the download at once. The manifest
//!   is read under [`BodyLimits::manifest`](crate::BodyLimits::manifest).
//!
//! ```no_run
//! # async fn run(client: epic_fhir::FhirClient) -> epic_fhir::Result<()> {
//! use epic_fhir::bulk::{BulkExport, DownloadOptions, ExportRequest};
//!
//! let request = ExportRequest::group("e3iabhmS8rsueyz7vaimuiaSmfGvi.QwjVXJANlPOgR83")
//!     .types(["Patient", "Observation", "Condition"]);
//! let summary = BulkExport::new(&client, request, "export/")
//!     .resume(true)
//!     .download_options(DownloadOptions::default().with_parallel(8))
//!     .on_event(|event| eprintln!("{event:?}"))
//!     .run()
//!     .await?;
//! for (resource_type, counts) in &summary.types {
//!     println!("{resource_type}: {} resources in {} files", counts.resources, counts.files);
//! }
//! # Ok(()) }
//! ```

mod download;
mod export;
mod job;
mod manifest;
pub(crate) mod ndjson;
mod request;
pub(crate) mod scan;
mod sink;
mod state;

use std::sync::Arc;
use std::time::Duration;

use url::Url;

pub use download::DownloadOptions;
pub use export::{BulkExport, ExportSummary, TypeSummary};
pub use job::{ExportJob, ExportStatus, PollOptions};
pub use manifest::{Manifest, ManifestEntry};
pub use request::{ExportLevel, ExportRequest};
pub use state::{JOURNAL_FILE, STATE_FILE};

/// Something that happened during an export, for progress displays and logs.
///
/// Events arrive on the task that caused them, downloads included, so a handler must be cheap
/// and must not block.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ExportEvent {
    /// The server accepted the kick-off; the job's status URL.
    KickedOff {
        /// The status URL from `Content-Location`.
        status_url: Url,
    },
    /// The export saved in the output folder is being continued.
    Resumed {
        /// The saved status URL.
        status_url: Url,
        /// Files already downloaded and checked in an earlier run.
        files_complete: usize,
    },
    /// The job is still running.
    Polled {
        /// The server's `X-Progress` header, if any (e.g. `42% (1200/2843 resources)`).
        progress: Option<String>,
        /// How long the client waits before polling again.
        next_poll: Duration,
    },
    /// The manifest is known: the files to download.
    ManifestReady {
        /// Output, error and deleted files together.
        files: usize,
        /// The sum of the entries' `count`s, when every entry gives one.
        resources: Option<u64>,
    },
    /// A file already downloaded in an earlier run was found intact and is kept.
    FileSkipped {
        /// The file's name in the output folder.
        name: String,
        /// Its resources (lines).
        resources: u64,
        /// Its size in bytes.
        bytes: u64,
    },
    /// A download attempt starts.
    FileStarted {
        /// The file's name in the output folder.
        name: String,
        /// The byte offset it continues from (0 for a fresh start).
        offset: u64,
    },
    /// More of a file has been written. Values are totals for the file so far, not increments;
    /// they go back to 0 when a download has to start over.
    FileProgress {
        /// The file's name in the output folder.
        name: String,
        /// Bytes of the file written so far.
        bytes: u64,
        /// Complete resources (lines) written so far.
        resources: u64,
    },
    /// A download attempt failed and will be tried again.
    FileRetrying {
        /// The file's name in the output folder.
        name: String,
        /// The number of the failed attempt (1 for the first).
        attempt: u32,
        /// How long the client waits before the next attempt.
        delay: Duration,
        /// Why the attempt failed.
        reason: String,
    },
    /// A file is downloaded, checked and in place under its final name.
    FileDone {
        /// The file's name in the output folder.
        name: String,
        /// The manifest entry's `type`.
        resource_type: String,
        /// Its resources (lines).
        resources: u64,
        /// Its size in bytes.
        bytes: u64,
    },
    /// The job was deleted on the server after the download (cleanup).
    CleanedUp,
}

/// A handler of [`ExportEvent`]s, shared by the tasks of one export.
type EventHandler = Arc<dyn Fn(&ExportEvent) + Send + Sync>;
