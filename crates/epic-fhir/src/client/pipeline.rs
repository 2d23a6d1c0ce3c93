//! The request pipeline: rate limit, token, send, classify, retry.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use url::Url;

use super::ClientInner;
use crate::auth::{AccessToken, transport_error};
use crate::error::{Error, ErrorKind, RequestInfo, Result};
use crate::model::{self, OperationOutcome};
use crate::net;
use crate::retry::parse_retry_after;

/// The FHIR JSON media type.
pub(crate) const FHIR_JSON: &str = "application/fhir+json";

/// One logical request; the pipeline may send it several times.
#[derive(Debug, Clone)]
pub(crate) struct RequestSpec {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) body: Option<Bytes>,
    pub(crate) content_type: Option<&'static str>,
    pub(crate) headers: HeaderMap,
    /// Whether the request may be repeated after it may have reached the server.
    pub(crate) idempotent: bool,
}

impl RequestSpec {
    pub(crate) fn get(url: Url) -> Self {
        RequestSpec {
            method: Method::GET,
            url,
            body: None,
            content_type: None,
            headers: HeaderMap::new(),
            idempotent: true,
        }
    }
}

/// A successful response.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// What went wrong with one attempt, and whether it may be repeated.
enum Attempt {
    Done(Reply),
    /// A 401 to a token: refresh the token once and try again.
    Unauthorized(Error, AccessToken),
    Failed(Error),
}

/// Statuses worth retrying for idempotent requests.
fn retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

impl ClientInner {
    /// Sends `spec`, retrying as the policy allows, and returns the 2xx response.
    pub(crate) async fn execute(&self, spec: &RequestSpec) -> Result<Reply> {
        // Tokens and patient data go only to the configured origin.
        if !net::same_origin(&spec.url, &self.base) {
            return Err(Error::new(
                ErrorKind::InsecureUrl,
                format!(
                    "refusing to send a request to {} : it is not the FHIR server's origin {}",
                    spec.url.origin().ascii_serialization(),
                    self.base.origin().ascii_serialization()
                ),
            )
            .with_request(RequestInfo::new(spec.method.as_str(), &spec.url)));
        }
        let started = tokio::time::Instant::now();
        let mut attempt: u32 = 0;
        let mut refreshed_token = false;
        loop {
            attempt += 1;
            let outcome = self.attempt(spec, attempt).await;
            let error = match outcome {
                Attempt::Done(reply) => return Ok(reply),
                Attempt::Unauthorized(error, token) => {
                    if refreshed_token {
                        return Err(error);
                    }
                    // One fresh token per request; a second 401 is final.
                    refreshed_token = true;
                    if let Some(auth) = &self.auth {
                        auth.invalidate(&token);
                    }
                    attempt -= 1;
                    continue;
                }
                Attempt::Failed(error) => error,
            };
            if !error.is_retryable() {
                return Err(error);
            }
            let delay = self
                .retry
                .delay(attempt - 1, error.retry_after(), self.jitter.next());
            if !self.retry.allows(attempt, started.elapsed(), delay) {
                return Err(error);
            }
            self.metrics.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                target: "epic_fhir::client",
                method = %spec.method,
                path = spec.url.path(),
                attempt,
                status = ?error.status(),
                delay_ms = delay.as_millis() as u64,
                error = %error,
                "retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(&self, spec: &RequestSpec, attempt: u32) -> Attempt {
        let info = || RequestInfo::new(spec.method.as_str(), &spec.url);
        if let Some(bucket) = &self.rate_limit {
            bucket.acquire().await;
        }
        let _permit = match &self.concurrency {
            Some(semaphore) => match semaphore.acquire().await {
                Ok(permit) => Some(permit),
                Err(_) => {
                    return Attempt::Failed(
                        Error::config("the client's concurrency limiter was closed")
                            .with_request(info()),
                    );
                }
            },
            None => None,
        };
        let token = match &self.auth {
            Some(auth) => match auth.token().await {
                Ok(token) => Some(token),
                Err(error) => return Attempt::Failed(error),
            },
            None => None,
        };
        let mut request = self
            .http
            .request(spec.method.clone(), spec.url.clone())
            .header(ACCEPT, FHIR_JSON)
            .headers(self.default_headers.clone())
            .headers(spec.headers.clone());
        if let Some(token) = &token {
            match HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    request = request.header(AUTHORIZATION, value);
                }
                Err(_) => {
                    return Attempt::Failed(
                        Error::new(
                            ErrorKind::Auth,
                            "the access token contains characters not allowed in a header",
                        )
                        .with_request(info()),
                    );
                }
            }
        }
        if let Some(body) = &spec.body {
            request = request.body(body.clone());
        }
        if let Some(content_type) = spec.content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let sent = tokio::time::Instant::now();
        self.metrics.requests.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(target: "epic_fhir::client", method = %spec.method, url = %spec.url, attempt, "sending");
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                // A connection that was never established cannot have reached the server, so
                // even a create may be retried; anything later only for idempotent requests.
                let retryable = error.is_connect() || spec.idempotent;
                let error = transport_error(error, "request failed")
                    .with_request(info())
                    .retryable(retryable);
                tracing::debug!(target: "epic_fhir::client", method = %spec.method, path = spec.url.path(), attempt, error = %error, "request failed");
                return Attempt::Failed(error);
            }
        };
        let status = response.status();
        // Reading the body consumes the response: take its headers instead of copying them.
        let headers = std::mem::take(response.headers_mut());
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(error) => {
                let error = transport_error(error, "response body was cut off")
                    .with_request(info())
                    .with_status(status.as_u16())
                    .retryable(spec.idempotent);
                tracing::debug!(target: "epic_fhir::client", method = %spec.method, path = spec.url.path(), attempt, status = status.as_u16(), "response cut off");
                return Attempt::Failed(error);
            }
        };
        tracing::debug!(
            target: "epic_fhir::client",
            method = %spec.method,
            path = spec.url.path(),
            status = status.as_u16(),
            latency_ms = sent.elapsed().as_millis() as u64,
            attempt,
            bytes = body.len(),
            "response"
        );
        if status.is_success() {
            return Attempt::Done(Reply { headers, body });
        }
        let error = status_error(spec, status, &headers, &body);
        match token {
            Some(token) if status == StatusCode::UNAUTHORIZED => {
                Attempt::Unauthorized(error, token)
            }
            _ => Attempt::Failed(error),
        }
    }
}

/// Builds the error for a non-2xx response, parsing an OperationOutcome body when there is one.
pub(crate) fn status_error(
    spec: &RequestSpec,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Error {
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let outcome: Option<OperationOutcome> = model::from_slice(body).ok();
    let transient_outcome = outcome.as_ref().is_some_and(|o| {
        o.issue.iter().any(|issue| {
            matches!(
                issue.code,
                Some(model::IssueType::Transient | model::IssueType::Throttled)
            )
        })
    });
    let retryable = spec.idempotent && (retryable_status(status) || transient_outcome);
    let mut message = format!("HTTP {}", status.as_u16());
    if let Some(reason) = status.canonical_reason() {
        message.push(' ');
        message.push_str(reason);
    }
    if let Some(outcome) = &outcome {
        message.push_str(": ");
        message.push_str(&outcome.summary());
    } else if let Some(challenge) = headers
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
    {
        message.push_str(": ");
        message.push_str(challenge);
    }
    let mut error = Error::new(ErrorKind::Status, message)
        .with_request(RequestInfo::new(spec.method.as_str(), &spec.url))
        .with_status(status.as_u16())
        .with_retry_after(retry_after)
        .retryable(retryable);
    match outcome {
        Some(outcome) => error = error.with_outcome(outcome),
        None if !body.is_empty() => error = error.with_body_excerpt(body),
        None => {}
    }
    error
}

/// Parses a JSON body into `T`, naming the JSON path and keeping an excerpt on failure.
pub(crate) fn decode<T: model::json::FromJson>(
    spec_method: &Method,
    url: &Url,
    body: &[u8],
) -> Result<T> {
    model::from_slice::<T>(body).map_err(|e| {
        let mut error = Error::new(
            ErrorKind::Decode,
            format!(
                "the response is not the expected FHIR JSON ({})",
                e.message()
            ),
        )
        .with_request(RequestInfo::new(spec_method.as_str(), url))
        .with_json_path(e.path().to_owned());
        if let Some(excerpt) = e.excerpt() {
            error = error.with_body_excerpt(excerpt.as_bytes());
        }
        error.with_source(e)
    })
}
