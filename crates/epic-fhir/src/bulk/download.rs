//! Downloading the files of a manifest: in parallel, streamed to disk, checked, resumable.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT_ENCODING, CONTENT_RANGE, ETAG, HeaderMap, HeaderValue, IF_RANGE, LOCATION, RANGE,
};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio::task::JoinSet;
use url::Url;

use super::job::BULK;
use super::ndjson::LineValidator;
use super::request::NDJSON;
use super::sink::ChunkWriter;
use super::state::{Done, FileState, StateStore, io_error};
use super::{EventHandler, ExportEvent};
use crate::FhirClient;
use crate::error::{Error, ErrorKind, RequestInfo, Result};
use crate::http::transport::transport_error;
use crate::http::{Accept, Answer, BodyError, Budget, Decision, Destination, Request, RetryReason};
use crate::net;

/// Bytes read at once when checking a partial file left by an earlier run.
const SCAN_BUFFER: usize = 256 * 1024;
/// How often, in bytes of one file, [`ExportEvent::FileProgress`] is sent.
const PROGRESS_EVERY: u64 = 1024 * 1024;
/// The longest time received bytes wait in the write buffer.
const FLUSH_INTERVAL: Duration = Duration::from_millis(500);
/// Redirects followed for one file.
const MAX_REDIRECTS: usize = 5;
/// Downloads whose content is wrong (bad line, wrong count) are tried this often in all: a
/// second try tells a damaged transfer from a server that serves a bad file.
const CONTENT_ATTEMPTS: u32 = 2;
/// Checked files being synced and renamed at once, beside the downloads. Each holds a file
/// handle and, until synced, dirty pages in the kernel's cache; no memory of the client's.
const MAX_COMMITTING: usize = 16;
/// The timeout of a whole file exchange. Long on purpose: a stalled transfer is caught by
/// [`DownloadOptions::idle_timeout`] instead, so a large file on a slow link is not cut off.
const FILE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// How files are downloaded. Every field states its default.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DownloadOptions {
    /// Files downloaded at the same time. Default 4.
    pub parallel: usize,
    /// Failed attempts in a row, without a byte of progress, after which a file is given up.
    /// Attempts that add bytes restart the count, since the file gets closer to complete.
    /// Default 8.
    pub max_attempts: u32,
    /// The longest wait for the next bytes of a file (or for the answer's headers) before the
    /// attempt is abandoned and resumed. Default 60 s.
    pub idle_timeout: Duration,
    /// Caps the total download rate of the export, in bytes per second. Default: no cap.
    pub max_bytes_per_second: Option<u64>,
    /// The longest line (one resource) accepted, in bytes; an incomplete line is held in
    /// memory until its end arrives. Default 64 MiB.
    pub max_line_bytes: usize,
    /// The largest file accepted, in bytes (after decompression). A download that goes past
    /// it stops at once with [`ErrorKind::Limit`] and its partial file is removed, so a server
    /// sending without end cannot fill the disk. Default 16 GiB (Epic's files hold at most
    /// about 3,000 resources).
    pub max_file_bytes: u64,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            parallel: 4,
            max_attempts: 8,
            idle_timeout: Duration::from_secs(60),
            max_bytes_per_second: None,
            max_line_bytes: 64 * 1024 * 1024,
            max_file_bytes: 16 * 1024 * 1024 * 1024,
        }
    }
}

impl DownloadOptions {
    /// Sets the number of files downloaded at the same time (at least 1).
    #[must_use]
    pub fn with_parallel(mut self, parallel: usize) -> Self {
        self.parallel = parallel.max(1);
        self
    }

    /// Sets the failed attempts in a row after which a file is given up (at least 1).
    #[must_use]
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the longest wait for the next bytes.
    #[must_use]
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Caps the total download rate, in bytes per second (`None` or 0: no cap).
    #[must_use]
    pub fn with_max_bytes_per_second(mut self, rate: Option<u64>) -> Self {
        self.max_bytes_per_second = rate.filter(|&r| r > 0);
        self
    }

    /// Sets the longest line accepted, in bytes.
    #[must_use]
    pub fn with_max_line_bytes(mut self, bytes: usize) -> Self {
        self.max_line_bytes = bytes.max(1);
        self
    }

    /// Sets the largest file accepted, in bytes (at least 1).
    #[must_use]
    pub fn with_max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = bytes.max(1);
        self
    }
}

/// A shared cap on bytes per second: every download books its bytes on one schedule and
/// waits until the schedule catches up.
#[derive(Debug)]
struct ByteRate {
    per_second: f64,
    started: tokio::time::Instant,
    booked: AtomicU64,
}

impl ByteRate {
    async fn take(&self, bytes: u64) {
        let total = self.booked.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let due = self.started + Duration::from_secs_f64(total as f64 / self.per_second);
        tokio::time::sleep_until(due).await;
    }
}

/// A file downloaded to its temporary name and checked, to be made durable and visible.
pub(super) struct Checked {
    index: usize,
    file: FileState,
    done: Done,
    transferred: u64,
}

/// What a finished file download reports.
#[derive(Debug, Clone, Copy)]
pub(super) struct Downloaded {
    /// Bytes received from the network in this run (retries included).
    pub(super) transferred: u64,
}

/// Why one attempt did not end with every byte on disk and checked.
enum Failure {
    /// The engine's decision about the attempt; `progressed` when it added bytes first.
    Decision {
        decision: Decision,
        progressed: bool,
    },
    /// The server did not continue where asked: start the file over.
    Restart(Error),
    /// The content is wrong: start over, a limited number of times.
    Corrupt(Error),
    /// The file goes past a bound: remove what arrived and give up.
    Refused(Error),
    /// Nothing to retry (a local file error).
    Fatal(Error),
}

/// How far one file's download got.
struct Progress {
    /// Checks the bytes and counts them and the lines.
    validator: LineValidator,
    /// The strong `ETag` of the first answer, sent as `If-Range` when resuming.
    etag: Option<String>,
    /// Bytes received in this run, retries included.
    transferred: u64,
}

/// Downloads the files of one export.
pub(super) struct Downloader {
    client: FhirClient,
    dir: PathBuf,
    options: DownloadOptions,
    requires_token: bool,
    store: Arc<StateStore>,
    events: EventHandler,
    rate: Option<ByteRate>,
}

impl Downloader {
    pub(super) fn new(
        client: FhirClient,
        dir: PathBuf,
        options: DownloadOptions,
        requires_token: bool,
        store: Arc<StateStore>,
        events: EventHandler,
    ) -> Self {
        let rate = options.max_bytes_per_second.map(|rate| ByteRate {
            per_second: rate as f64,
            started: tokio::time::Instant::now(),
            booked: AtomicU64::new(0),
        });
        Downloader {
            client,
            dir,
            options,
            requires_token,
            store,
            events,
            rate,
        }
    }

    /// Downloads `files` (each with its index in the state), `parallel` at a time. A file
    /// leaves its download slot once every byte is checked: syncing it to disk, renaming it
    /// into place and noting it in the journal happen beside the next downloads (at most
    /// [`MAX_COMMITTING`] files at once), so the disk's latency does not idle the network.
    /// After the first failure no new file is started; those running finish (saving their
    /// progress) and the first error is returned.
    pub(super) async fn download_all(
        self: Arc<Self>,
        files: Vec<(usize, FileState)>,
    ) -> Result<Vec<Downloaded>> {
        let mut running = JoinSet::new();
        let mut committing = JoinSet::new();
        let mut queue = files.into_iter();
        let mut finished = Vec::new();
        let mut first_error: Option<Error> = None;
        loop {
            while first_error.is_none()
                && running.len() < self.options.parallel.max(1)
                && committing.len() < MAX_COMMITTING
            {
                let Some((index, file)) = queue.next() else {
                    break;
                };
                let downloader = Arc::clone(&self);
                running.spawn(async move { downloader.file(index, file).await });
            }
            if running.is_empty() && committing.is_empty() {
                break;
            }
            tokio::select! {
                Some(joined) = running.join_next(), if !running.is_empty() => {
                    match flatten(joined) {
                        Ok(checked) => {
                            let downloader = Arc::clone(&self);
                            committing.spawn(async move { downloader.commit(checked).await });
                        }
                        Err(error) => {
                            first_error.get_or_insert(error);
                        }
                    }
                }
                Some(joined) = committing.join_next(), if !committing.is_empty() => {
                    match flatten(joined) {
                        Ok(done) => finished.push(done),
                        Err(error) => {
                            first_error.get_or_insert(error);
                        }
                    }
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(finished),
        }
    }

    /// Makes a checked file durable and visible: syncs it, renames it to its final name and
    /// notes it in the journal, in that order, so a name only ever shows a complete file.
    async fn commit(&self, checked: Checked) -> Result<Downloaded> {
        let Checked {
            index,
            file,
            done,
            transferred,
        } = checked;
        let temp = self.dir.join(file.temp_name());
        let target = self.dir.join(&file.name);
        let handle = tokio::fs::File::open(&temp)
            .await
            .map_err(|e| io_error("open", &temp, e))?;
        // The data (and the length, which reading it needs) must be on disk before the name
        // says the file is complete.
        handle
            .sync_data()
            .await
            .map_err(|e| io_error("sync", &temp, e))?;
        drop(handle);
        tokio::fs::rename(&temp, &target)
            .await
            .map_err(|e| io_error("rename into place", &target, e))?;
        self.store.finished(index, done).await?;
        (self.events)(&ExportEvent::FileDone {
            name: file.name,
            resource_type: file.resource_type,
            resources: done.resources,
            bytes: done.bytes,
        });
        Ok(Downloaded { transferred })
    }

    /// Downloads one file to its temporary name and checks it.
    async fn file(&self, index: usize, file: FileState) -> Result<Checked> {
        let url = Url::parse(&file.url).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                format!("the manifest URL of {} is not a URL", file.name),
            )
            .with_source(e)
        })?;
        let temp = self.dir.join(file.temp_name());
        let mut progress = Progress {
            validator: LineValidator::new(&file.resource_type, self.options.max_line_bytes)
                .with_max_lines(file.count),
            etag: file.etag.clone(),
            transferred: 0,
        };
        self.adopt_renamed(&file, &temp).await?;
        self.scan_partial(&temp, &mut progress.validator).await?;
        let engine = self.client.engine();
        // Attempts are bounded by failures in a row without progress, not by time: a large
        // file on a slow link may take hours.
        let mut retries = engine.retries_within(Budget {
            max_attempts: self.options.max_attempts,
            max_elapsed: None,
        });
        let mut content_failures = 0u32;
        loop {
            (self.events)(&ExportEvent::FileStarted {
                name: file.name.clone(),
                offset: progress.validator.consumed(),
            });
            let request = self.request(
                &url,
                progress.validator.consumed(),
                progress.etag.as_deref(),
            );
            let attempt = self
                .attempt(
                    index,
                    &file,
                    &request,
                    &temp,
                    &mut progress,
                    retries.reached(),
                )
                .await;
            let failure = match attempt {
                // Every byte is here: the last line and the count decide.
                Ok(()) => match finish(&file, &mut progress.validator) {
                    Ok(done) => {
                        return Ok(Checked {
                            index,
                            file,
                            done,
                            transferred: progress.transferred,
                        });
                    }
                    Err(error) => Failure::Corrupt(error),
                },
                Err(failure) => failure,
            };
            let decision = match failure {
                Failure::Decision {
                    decision,
                    progressed,
                } => {
                    if progressed {
                        retries.progressed();
                    }
                    decision
                }
                Failure::Restart(error) => {
                    self.discard(&temp, &mut progress.validator).await?;
                    Decision::Retry {
                        reason: RetryReason::BadRange,
                        error,
                    }
                }
                Failure::Corrupt(error) => {
                    content_failures += 1;
                    self.discard(&temp, &mut progress.validator).await?;
                    if content_failures >= CONTENT_ATTEMPTS {
                        return Err(error);
                    }
                    Decision::Retry {
                        reason: RetryReason::BadContent,
                        error,
                    }
                }
                Failure::Refused(error) => {
                    self.discard(&temp, &mut progress.validator).await?;
                    return Err(error);
                }
                Failure::Fatal(error) => return Err(error),
            };
            let refresh = matches!(decision, Decision::RefreshToken { .. });
            let reason = match &decision {
                Decision::Retry { error, .. } => error.to_string(),
                _ => String::new(),
            };
            let delay = retries.plan(&request, decision)?;
            if refresh {
                continue;
            }
            (self.events)(&ExportEvent::FileRetrying {
                name: file.name.clone(),
                attempt: retries.failures().max(content_failures),
                delay,
                reason,
            });
            tokio::time::sleep(delay).await;
        }
    }

    /// The request for the file from `offset`: only what the manifest allows of the token
    /// goes, and only to the FHIR server's origin.
    fn request(&self, url: &Url, offset: u64, etag: Option<&str>) -> Request {
        let mut request = Request::get(url.clone(), NDJSON);
        if offset > 0 {
            // Offsets count identity bytes: a compressed range would be ambiguous.
            request
                .headers
                .insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
            if let Ok(range) = HeaderValue::from_str(&format!("bytes={offset}-")) {
                request.headers.insert(RANGE, range);
            }
            if let Some(value) = etag.and_then(|tag| HeaderValue::from_str(tag).ok()) {
                request.headers.insert(IF_RANGE, value);
            }
        }
        request.destination = Destination::Anywhere {
            token: self.requires_token,
        };
        request.accept = Accept::Download;
        request.timeout = Some(FILE_TIMEOUT);
        request.headers_timeout = Some(self.options.idle_timeout);
        request
    }

    /// A run stopped between renaming a checked file into place and journaling it leaves the
    /// file under its final name, not recorded as done. Such a file is taken back as the
    /// partial download: checked whole again, then completed by a range request from its end
    /// (which the server answers 416 when nothing is missing), instead of downloaded again.
    ///
    /// Only a file whose download this export started (its `ETag` was recorded) is taken
    /// back; the `ETag` also goes with the range request as `If-Range`, so a server whose file
    /// changed sends it whole.
    async fn adopt_renamed(&self, file: &FileState, temp: &Path) -> Result<()> {
        if file.etag.is_none() || tokio::fs::try_exists(temp).await.unwrap_or(true) {
            return Ok(());
        }
        let target = self.dir.join(&file.name);
        match tokio::fs::rename(&target, temp).await {
            Ok(()) => {
                tracing::debug!(target: "epic_fhir::bulk", file = %file.name, "a file renamed into place but not journaled is checked again instead of downloaded again");
                Ok(())
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(io_error("take back", &target, error)),
        }
    }

    async fn scan_partial(&self, temp: &Path, validator: &mut LineValidator) -> Result<()> {
        let mut file = match tokio::fs::File::open(temp).await {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(io_error("open", temp, error)),
        };
        let mut buffer = vec![0u8; SCAN_BUFFER];
        loop {
            let read = file
                .read(&mut buffer)
                .await
                .map_err(|e| io_error("read", temp, e))?;
            if read == 0 {
                return Ok(());
            }
            if let Err(problem) = validator.feed(&buffer[..read]) {
                tracing::warn!(target: "epic_fhir::bulk", file = %temp.display(), %problem, "partial download is damaged: starting it over");
                drop(file);
                return self.discard(temp, validator).await;
            }
        }
    }

    /// Removes the temporary file and forgets its content, to start over.
    async fn discard(&self, temp: &Path, validator: &mut LineValidator) -> Result<()> {
        validator.reset();
        match tokio::fs::remove_file(temp).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(io_error("remove", temp, error)),
        }
    }

    /// Sends `request`, following redirects itself: the token goes only to the FHIR server's
    /// origin, and only when the manifest requires it. Returns the answer and its URL.
    async fn open(
        &self,
        request: &Request,
        reached: bool,
    ) -> std::result::Result<(Answer<'_>, Url), Decision> {
        let engine = self.client.engine();
        let mut hop = request.clone();
        for _ in 0..=MAX_REDIRECTS {
            if let Err(error) = net::check_secure_url(&hop.url, "export file URL") {
                return Err(Decision::Fail(error));
            }
            let answer = engine.attempt(&hop, &BULK, reached).await?;
            if !answer.status.is_redirection() {
                return Ok((answer, hop.url));
            }
            let location = answer
                .headers
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let status = answer.status.as_u16();
            answer.drain(engine.limits().error).await;
            let Some(location) = location else {
                return Err(Decision::Fail(
                    Error::new(
                        ErrorKind::Decode,
                        format!("HTTP {status} without a Location header"),
                    )
                    .with_request(hop.info())
                    .with_status(status),
                ));
            };
            hop.url = hop.url.join(&location).map_err(|e| {
                Decision::Fail(
                    Error::new(
                        ErrorKind::Decode,
                        format!("the redirect Location `{location}` is not a URL"),
                    )
                    .with_request(hop.info())
                    .with_source(e),
                )
            })?;
        }
        Err(Decision::Fail(
            Error::new(
                ErrorKind::Decode,
                format!("more than {MAX_REDIRECTS} redirects"),
            )
            .with_request(request.info()),
        ))
    }

    /// One attempt: asks for the bytes after those already checked and appends them to the
    /// temporary file, checking them on the way. `Ok` when every byte of the file is on disk.
    async fn attempt(
        &self,
        index: usize,
        file: &FileState,
        request: &Request,
        temp: &Path,
        progress: &mut Progress,
        reached: bool,
    ) -> Result<(), Failure> {
        let offset = progress.validator.consumed();
        let (answer, final_url) =
            self.open(request, reached)
                .await
                .map_err(|decision| Failure::Decision {
                    decision,
                    progressed: false,
                })?;
        let info = || RequestInfo::new("GET", &final_url);
        let status = answer.status;
        let start = match status {
            StatusCode::OK => 0,
            StatusCode::PARTIAL_CONTENT => match content_range(&answer.headers) {
                Some(ContentRange::Bytes { start, .. }) if start == offset => offset,
                _ => {
                    answer.drain(0).await;
                    return Err(Failure::Restart(
                        Error::new(
                            ErrorKind::Decode,
                            format!(
                                "{}: the server answered the request for bytes {offset}- with a Content-Range that does not start there",
                                file.name
                            ),
                        )
                        .with_request(info()),
                    ));
                }
            },
            StatusCode::RANGE_NOT_SATISFIABLE if offset > 0 => {
                let range = content_range(&answer.headers);
                answer.drain(0).await;
                // `bytes */N` with N the bytes already here: the file was complete already.
                if range == Some(ContentRange::Unsatisfied { length: offset }) {
                    return Ok(());
                }
                return Err(Failure::Restart(
                    Error::new(
                        ErrorKind::Decode,
                        format!(
                            "{}: the server cannot serve bytes {offset}- and the file is not that long",
                            file.name
                        ),
                    )
                    .with_request(info()),
                ));
            }
            status => {
                answer.drain(0).await;
                return Err(Failure::Decision {
                    decision: Decision::Fail(
                        Error::new(
                            ErrorKind::Decode,
                            format!(
                                "{}: HTTP {} is not a file download (expected 200 or 206)",
                                file.name,
                                status.as_u16()
                            ),
                        )
                        .with_request(info())
                        .with_status(status.as_u16()),
                    ),
                    progressed: false,
                });
            }
        };
        if let Some(tag) = strong_etag(&answer.headers) {
            if progress.etag.as_deref() != Some(tag.as_str()) {
                progress.etag = Some(tag.clone());
                self.store.remember_etag(index, tag).await;
            }
        }
        if start == 0 && offset > 0 {
            progress.validator.reset();
        }
        // The answer (and with it the concurrency permit) lives until the body is read.
        let mut chunks = match answer.into_chunks() {
            Ok(chunks) => chunks,
            Err(encoding) => {
                return Err(Failure::Refused(
                    Error::new(
                        ErrorKind::Decode,
                        format!(
                            "{}: the server sent the file with Content-Encoding `{encoding}`, which this client did not ask for and cannot decode",
                            file.name
                        ),
                    )
                    .with_request(info()),
                ));
            }
        };
        let mut writer = match open_at(temp, start).await {
            Ok(file) => ChunkWriter::new(file.into_std().await, temp),
            Err(error) => return Err(Failure::Fatal(error)),
        };
        let mut progressed = false;
        let mut unreported = 0u64;
        let mut last_flush = tokio::time::Instant::now();
        let ended = loop {
            let chunk = match tokio::time::timeout(self.options.idle_timeout, chunks.next()).await {
                Err(_) => {
                    break Err(Decision::Retry {
                        reason: RetryReason::Timeout,
                        error: Error::new(
                            ErrorKind::Timeout,
                            format!(
                                "{}: no bytes for {} s",
                                file.name,
                                self.options.idle_timeout.as_secs_f64()
                            ),
                        )
                        .with_request(info()),
                    });
                }
                Ok(None) => break Ok(()),
                Ok(Some(Err(BodyError::CutOff(error)))) => {
                    break Err(Decision::Retry {
                        reason: RetryReason::CutOff,
                        error: transport_error(error, "the file download was cut off")
                            .with_request(info()),
                    });
                }
                Ok(Some(Err(BodyError::Damaged(error)))) => {
                    // Its content cannot be trusted: started over, a limited number of times.
                    let _ = writer.flush().await;
                    return Err(Failure::Corrupt(
                        Error::new(
                            ErrorKind::Decode,
                            format!("{}: the gzip stream is damaged or cut short", file.name),
                        )
                        .with_request(info())
                        .with_source(error),
                    ));
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            let total = progress.validator.consumed() + chunk.len() as u64;
            if total > self.options.max_file_bytes {
                return Err(Failure::Refused(
                    Error::new(
                        ErrorKind::Limit,
                        format!(
                            "{} is larger than {} bytes, the most this client downloads for one file (DownloadOptions::max_file_bytes)",
                            file.name, self.options.max_file_bytes
                        ),
                    )
                    .with_request(info()),
                ));
            }
            if let Err(problem) = progress.validator.feed(&chunk) {
                let error = Error::new(
                    ErrorKind::Decode,
                    format!(
                        "{} is not valid NDJSON of {}: {problem}",
                        file.name, file.resource_type
                    ),
                )
                .with_request(info());
                // Nothing of this chunk was written; the file is discarded anyway.
                let _ = writer.flush().await;
                return Err(Failure::Corrupt(error));
            }
            let len = chunk.len() as u64;
            if let Err(error) = writer.push(chunk).await {
                return Err(Failure::Fatal(error));
            }
            progress.transferred += len;
            progressed = true;
            unreported += len;
            // On a slow link the buffer fills slowly: write it out now and then, so that a
            // crash loses (and a resume downloads again) little.
            let stale = writer.buffered() > 0 && last_flush.elapsed() >= FLUSH_INTERVAL;
            if stale {
                if let Err(error) = writer.flush().await {
                    return Err(Failure::Fatal(error));
                }
                last_flush = tokio::time::Instant::now();
            }
            if unreported >= PROGRESS_EVERY || stale {
                unreported = 0;
                (self.events)(&ExportEvent::FileProgress {
                    name: file.name.clone(),
                    bytes: progress.validator.consumed(),
                    resources: progress.validator.lines(),
                });
            }
            if let Some(rate) = &self.rate {
                rate.take(len).await;
            }
        };
        // Whatever happened, every byte checked must be on disk before the next attempt asks
        // for the bytes after them.
        if let Err(error) = writer.flush().await {
            return Err(Failure::Fatal(error));
        }
        (self.events)(&ExportEvent::FileProgress {
            name: file.name.clone(),
            bytes: progress.validator.consumed(),
            resources: progress.validator.lines(),
        });
        ended.map_err(|decision| Failure::Decision {
            decision,
            progressed,
        })
    }
}

/// Opens the temporary file for writing at `start`, dropping anything after it.
async fn open_at(temp: &Path, start: u64) -> Result<tokio::fs::File> {
    // Never append mode: writes go to explicit offsets, so a write still in flight from an
    // abandoned attempt can only put the file's true bytes at their true place.
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(temp)
        .await
        .map_err(|e| io_error("create", temp, e))?;
    file.set_len(start)
        .await
        .map_err(|e| io_error("truncate", temp, e))?;
    file.seek(SeekFrom::Start(start))
        .await
        .map_err(|e| io_error("seek in", temp, e))?;
    Ok(file)
}

/// Checks the last line and the count of a file whose every byte has arrived.
///
/// # Errors
/// [`ErrorKind::Decode`] when the last line or the count is wrong.
fn finish(file: &FileState, validator: &mut LineValidator) -> Result<Done> {
    let resources = validator.finish().map_err(|problem| {
        Error::new(
            ErrorKind::Decode,
            format!(
                "{} is not valid NDJSON of {}: {problem}",
                file.name, file.resource_type
            ),
        )
    })?;
    if let Some(count) = file.count {
        if count != resources {
            return Err(Error::new(
                ErrorKind::Decode,
                format!(
                    "{} holds {resources} resources, but the manifest's count is {count}",
                    file.name
                ),
            ));
        }
    }
    Ok(Done {
        bytes: validator.consumed(),
        resources,
    })
}

/// The result of a spawned task, a panic resumed.
fn flatten<T>(joined: std::result::Result<Result<T>, tokio::task::JoinError>) -> Result<T> {
    match joined {
        Ok(result) => result,
        Err(join_error) => {
            if join_error.is_panic() {
                std::panic::resume_unwind(join_error.into_panic());
            }
            Err(Error::new(ErrorKind::Io, "a file download was cancelled"))
        }
    }
}

/// A `Content-Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContentRange {
    /// `bytes START-END/LENGTH` (LENGTH may be `*`).
    Bytes { start: u64 },
    /// `bytes */LENGTH`, with a 416.
    Unsatisfied { length: u64 },
}

fn content_range(headers: &HeaderMap) -> Option<ContentRange> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?.trim();
    let rest = value.strip_prefix("bytes ")?.trim();
    let (range, length) = rest.split_once('/')?;
    if range.trim() == "*" {
        return Some(ContentRange::Unsatisfied {
            length: length.trim().parse().ok()?,
        });
    }
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    (end >= start).then_some(ContentRange::Bytes { start })
}

/// The response's `ETag` when it is strong: `If-Range` accepts only strong validators.
fn strong_etag(headers: &HeaderMap) -> Option<String> {
    let tag = headers.get(ETAG)?.to_str().ok()?.trim();
    (tag.starts_with('"') && tag.ends_with('"') && tag.len() >= 2).then(|| tag.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: reqwest::header::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).expect("header"));
        headers
    }

    #[test]
    fn content_ranges() {
        assert_eq!(
            content_range(&headers(CONTENT_RANGE, "bytes 100-199/200")),
            Some(ContentRange::Bytes { start: 100 })
        );
        assert_eq!(
            content_range(&headers(CONTENT_RANGE, "bytes 100-199/*")),
            Some(ContentRange::Bytes { start: 100 })
        );
        assert_eq!(
            content_range(&headers(CONTENT_RANGE, "bytes */200")),
            Some(ContentRange::Unsatisfied { length: 200 })
        );
        for bad in ["bytes 5-1/9", "items 0-1/2", "bytes x-1/2", "bytes 0-1"] {
            assert_eq!(content_range(&headers(CONTENT_RANGE, bad)), None, "{bad}");
        }
        assert_eq!(content_range(&HeaderMap::new()), None);
    }

    #[test]
    fn only_strong_etags_are_kept() {
        assert_eq!(
            strong_etag(&headers(ETAG, "\"abc\"")).as_deref(),
            Some("\"abc\"")
        );
        assert_eq!(strong_etag(&headers(ETAG, "W/\"abc\"")), None);
        assert_eq!(strong_etag(&headers(ETAG, "abc")), None);
    }

    #[test]
    fn options_have_floors() {
        let options = DownloadOptions::default()
            .with_parallel(0)
            .with_max_attempts(0)
            .with_max_bytes_per_second(Some(0))
            .with_max_line_bytes(0);
        assert_eq!(options.parallel, 1);
        assert_eq!(options.max_attempts, 1);
        assert_eq!(options.max_bytes_per_second, None);
        assert_eq!(options.max_line_bytes, 1);
    }
}
