//! A running export job: its status URL, polling until the manifest is ready, cancellation.

use std::time::Duration;

use reqwest::header::{CONTENT_LOCATION, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use url::Url;

use super::ExportEvent;
use super::manifest::Manifest;
use crate::FhirClient;
use crate::error::{Error, ErrorKind, RequestInfo, Result};
use crate::http::{Accept, FHIR_JSON, FhirStatus, Repeat, Request, retry_after};
use crate::net;

/// How the export's endpoints' answers are read: as any FHIR endpoint's, except that a 500
/// explained by an OperationOutcome that is not transient is final (the IG's failed job).
pub(super) const BULK: FhirStatus = FhirStatus {
    explained_500_is_final: true,
    throttle_is_final: false,
};
/// The status URL's classifier: as [`BULK`], and a 429 is handed to the poll loop, which waits
/// as told within its own bounds.
const STATUS: FhirStatus = FhirStatus {
    explained_500_is_final: true,
    throttle_is_final: true,
};

/// The longest `X-Progress` kept; the IG allows any text, a display needs a line.
const PROGRESS_CHARS: usize = 200;

/// How [`ExportJob::wait`] polls the status URL. Every field states its default.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PollOptions {
    /// The shortest wait between two polls, whatever `Retry-After` says. Default 1 s.
    pub min_interval: Duration,
    /// The longest wait between two polls, whatever `Retry-After` says. Default 5 min.
    pub max_interval: Duration,
    /// The first wait when the server sends no `Retry-After`; it doubles on every such poll up
    /// to `max_interval`. Default 2 s.
    pub initial_interval: Duration,
    /// The longest time to wait for the export to complete. Epic has taken hours to weeks.
    /// Default 24 h.
    pub deadline: Duration,
}

impl Default for PollOptions {
    fn default() -> Self {
        PollOptions {
            min_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(300),
            initial_interval: Duration::from_secs(2),
            deadline: Duration::from_secs(24 * 3600),
        }
    }
}

impl PollOptions {
    /// Sets the bounds `Retry-After` is clamped to.
    #[must_use]
    pub fn with_interval_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_interval = min;
        self.max_interval = max.max(min);
        self
    }

    /// Sets the first wait when the server gives no `Retry-After`.
    #[must_use]
    pub fn with_initial_interval(mut self, interval: Duration) -> Self {
        self.initial_interval = interval;
        self
    }

    /// Sets the longest time to wait for completion.
    #[must_use]
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    fn clamp(&self, wait: Duration) -> Duration {
        wait.clamp(self.min_interval, self.max_interval.max(self.min_interval))
    }
}

/// What one poll of the status URL found.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ExportStatus {
    /// `202 Accepted`: the job is still running.
    InProgress {
        /// The `X-Progress` header, if any.
        progress: Option<String>,
        /// The `Retry-After` header, if any.
        retry_after: Option<Duration>,
    },
    /// `200 OK`: the manifest.
    Complete(Box<Manifest>),
}

/// A kicked-off export, identified by its status URL (the `Content-Location` of the kick-off).
///
/// The status URL is always on the FHIR server's origin: the bearer token goes there.
#[derive(Debug, Clone)]
pub struct ExportJob {
    client: FhirClient,
    status_url: Url,
}

impl ExportJob {
    /// A job whose status URL is already known (saved from an earlier kick-off).
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when it is not a URL; [`ErrorKind::InsecureUrl`] when it is not on
    /// the FHIR server's origin.
    pub fn from_status_url(client: &FhirClient, status_url: &str) -> Result<ExportJob> {
        let url = Url::parse(status_url).map_err(|e| {
            Error::config(format!("export status URL `{status_url}` is not a URL")).with_source(e)
        })?;
        Self::checked(client, url)
    }

    fn checked(client: &FhirClient, url: Url) -> Result<ExportJob> {
        if !net::same_origin(&url, client.base_url()) {
            return Err(Error::new(
                ErrorKind::InsecureUrl,
                format!(
                    "the export status URL is on {}, not on the FHIR server's origin {}: refusing to send the token there",
                    url.origin().ascii_serialization(),
                    client.base_url().origin().ascii_serialization()
                ),
            ));
        }
        Ok(ExportJob {
            client: client.clone(),
            status_url: url,
        })
    }

    /// The status URL.
    pub fn status_url(&self) -> &Url {
        &self.status_url
    }

    /// Sends the kick-off to `url`; see [`super::ExportRequest::kick_off`].
    pub(super) async fn kick_off(client: &FhirClient, url: Url) -> Result<ExportJob> {
        let engine = client.engine();
        let mut request = Request::get(url.clone(), FHIR_JSON).header(
            HeaderName::from_static("prefer"),
            HeaderValue::from_static("respond-async"),
        );
        // A kick-off starts a job: repeating one whose answer was lost could start a second one
        // (and Epic refuses a second export of a Group for a day). An error answer started
        // nothing: only a 202 does.
        request.repeat = Repeat::AfterErrorAnswer;
        let answer = engine.send(&request, &BULK).await?;
        let status = answer.status;
        let location = answer
            .headers
            .get(CONTENT_LOCATION)
            .map(|v| v.to_str().map(str::to_owned));
        // The job exists once the headers are here; the body says nothing more, so a body cut
        // off does not matter.
        answer.drain(engine.limits().error).await;
        if status != StatusCode::ACCEPTED {
            return Err(Error::new(
                ErrorKind::Decode,
                format!(
                    "the server answered the kick-off with HTTP {} instead of 202 Accepted: it did not start an asynchronous export",
                    status.as_u16()
                ),
            )
            .with_request(request.info())
            .with_status(status.as_u16()));
        }
        let text = match location {
            Some(Ok(text)) => text,
            Some(Err(_)) => {
                return Err(Error::new(
                    ErrorKind::Decode,
                    "the kick-off answer's Content-Location is not valid text",
                )
                .with_request(request.info()));
            }
            None => {
                return Err(Error::new(
                    ErrorKind::Decode,
                    "the kick-off was accepted (202) without a Content-Location header: the status URL is unknown",
                )
                .with_request(request.info()));
            }
        };
        // The IG says absolute; a relative one is resolved rather than refused.
        let status_url = url.join(text.trim()).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                format!("the kick-off answer's Content-Location `{text}` is not a URL"),
            )
            .with_request(request.info())
            .with_source(e)
        })?;
        net::check_secure_url(&status_url, "export status URL")?;
        let job = Self::checked(client, status_url)?;
        tracing::debug!(target: "epic_fhir::bulk", status_url = %job.status_url, "export kicked off");
        Ok(job)
    }

    /// Polls the status URL once (retrying transient failures with the client's retry
    /// policy, except 429, which is returned so the caller can wait as told).
    ///
    /// # Errors
    /// [`ErrorKind::Status`] with the server's OperationOutcome when the job failed, was
    /// cancelled or expired (404), or when the server asks to poll more slowly (429, with
    /// [`Error::retry_after`]); [`ErrorKind::Decode`] when the manifest is not valid;
    /// [`ErrorKind::Limit`] when it is larger than the client's
    /// [`BodyLimits::manifest`](crate::BodyLimits::manifest).
    pub async fn status(&self) -> Result<ExportStatus> {
        let engine = self.client.engine();
        let request = Request::get(self.status_url.clone(), "application/json");
        // A 202's body is read too (it says nothing), under the same bound.
        let reply = engine
            .fetch(&request, &STATUS, engine.limits().manifest)
            .await?;
        match reply.status {
            StatusCode::ACCEPTED => {
                let progress = reply
                    .headers
                    .get("x-progress")
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.trim().chars().take(PROGRESS_CHARS).collect::<String>())
                    .filter(|v| !v.is_empty());
                Ok(ExportStatus::InProgress {
                    progress,
                    retry_after: retry_after(&reply.headers),
                })
            }
            StatusCode::OK => Manifest::from_json(&reply.body)
                .map(|manifest| ExportStatus::Complete(Box::new(manifest)))
                .map_err(|e| e.with_request(request.info())),
            status => Err(Error::new(
                ErrorKind::Decode,
                format!(
                    "the status URL answered HTTP {}: expected 202 (in progress) or 200 (complete)",
                    status.as_u16()
                ),
            )
            .with_request(request.info())
            .with_status(status.as_u16())),
        }
    }

    /// Polls until the export completes and returns its manifest, reporting each poll to
    /// `on_event` as [`ExportEvent::Polled`].
    ///
    /// Waits as long as `Retry-After` says (on 202 and on 429), clamped to the options'
    /// bounds; without `Retry-After`, from `initial_interval` doubling up to `max_interval`.
    ///
    /// # Errors
    /// [`ErrorKind::Timeout`] when the deadline passes first (the job keeps running: poll it
    /// again later or cancel it); as [`ExportJob::status`] otherwise.
    pub async fn wait(
        &self,
        options: &PollOptions,
        on_event: &(dyn Fn(&ExportEvent) + Send + Sync),
    ) -> Result<Manifest> {
        let started = tokio::time::Instant::now();
        let mut fallback = options.initial_interval;
        let mut next_fallback = || {
            let wait = fallback;
            fallback = fallback.saturating_mul(2).min(options.max_interval);
            wait
        };
        loop {
            let (progress, asked) = match self.status().await {
                Ok(ExportStatus::Complete(manifest)) => return Ok(*manifest),
                Ok(ExportStatus::InProgress {
                    progress,
                    retry_after,
                }) => (progress, retry_after),
                Err(error) if error.status() == Some(429) => (None, error.retry_after()),
                Err(error) => return Err(error),
            };
            let wait = options.clamp(asked.unwrap_or_else(&mut next_fallback));
            if started.elapsed() + wait > options.deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "the export did not complete within {} s; it is still running at {}: resume later or cancel it",
                        options.deadline.as_secs(),
                        self.status_url
                    ),
                )
                .with_request(RequestInfo::new("GET", &self.status_url)));
            }
            on_event(&ExportEvent::Polled {
                progress,
                next_poll: wait,
            });
            tokio::time::sleep(wait).await;
        }
    }

    /// Cancels the job, or deletes a finished one with its files (`DELETE` on the status
    /// URL).
    ///
    /// # Errors
    /// [`ErrorKind::Status`] 404 when the server does not know the job (already deleted or
    /// expired), unless an earlier attempt of this call may have deleted it.
    pub async fn cancel(&self) -> Result<()> {
        let engine = self.client.engine();
        let mut request = Request::new(Method::DELETE, self.status_url.clone(), FHIR_JSON);
        // A 404 after an attempt that may have deleted the job (a lost answer, a 504 from a
        // gateway) is that deletion's result.
        request.accept = Accept::SuccessOrGone;
        let answer = engine.send(&request, &BULK).await?;
        // The deletion is done whether or not the body arrives whole.
        answer.drain(engine.limits().error).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_clamped() {
        let options = PollOptions::default()
            .with_interval_bounds(Duration::from_secs(2), Duration::from_secs(30));
        assert_eq!(options.clamp(Duration::ZERO), Duration::from_secs(2));
        assert_eq!(
            options.clamp(Duration::from_secs(10)),
            Duration::from_secs(10)
        );
        assert_eq!(
            options.clamp(Duration::from_secs(3600)),
            Duration::from_secs(30)
        );
        let inverted = PollOptions::default()
            .with_interval_bounds(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(
            inverted.clamp(Duration::from_secs(60)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn status_urls_must_be_on_the_fhir_origin() {
        let client = FhirClient::builder("https://fhir.example.org/R4")
            .build()
            .expect("client");
        let job = ExportJob::from_status_url(&client, "https://fhir.example.org/R4/status/1")
            .expect("same origin");
        assert_eq!(job.status_url().path(), "/R4/status/1");
        for foreign in [
            "https://evil.example/R4/status/1",
            "http://fhir.example.org/R4/status/1",
            "https://fhir.example.org:8443/R4/status/1",
        ] {
            let err = ExportJob::from_status_url(&client, foreign).expect_err(foreign);
            assert_eq!(err.kind(), ErrorKind::InsecureUrl, "{foreign}");
        }
        let err = ExportJob::from_status_url(&client, "not a url").expect_err("garbage");
        assert_eq!(err.kind(), ErrorKind::Config);
    }
}
