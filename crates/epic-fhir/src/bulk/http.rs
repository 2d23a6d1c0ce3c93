//! Sending bulk requests over the client's pooled connection, with its limits, token and retry
//! policy, but with the response body left unread so that files can be streamed.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, USER_AGENT};
use reqwest::{Method, StatusCode};
use tokio::sync::SemaphorePermit;
use url::Url;

use crate::auth::{AccessToken, transport_error};
use crate::client::ClientInner;
use crate::client::pipeline::{RequestSpec, status_error};
use crate::error::{Error, ErrorKind, RequestInfo, Result};
use crate::net;

/// The most of an error response's body read to find an OperationOutcome: enough for any
/// outcome, and a bound on what a misbehaving server can make the client buffer.
const ERROR_BODY_LIMIT: usize = 256 * 1024;

/// A response whose body has not been read, with what it took to get it.
pub(super) struct Sent<'a> {
    pub(super) response: reqwest::Response,
    /// The token sent, to invalidate when the answer is 401.
    pub(super) token: Option<AccessToken>,
    /// The client's concurrency permit, held until the body has been read: a streamed file
    /// is a request in flight for as long as it streams.
    pub(super) _permit: Option<SemaphorePermit<'a>>,
}

/// One request to send.
pub(super) struct Outgoing<'u> {
    pub(super) method: Method,
    pub(super) url: &'u Url,
    pub(super) headers: HeaderMap,
    /// Send the bearer token (only ever honoured on the FHIR server's origin).
    pub(super) with_token: bool,
    /// Whether repeating the request after it may have reached the server is harmless.
    pub(super) idempotent: bool,
    /// Replaces the client's timeout for the whole exchange, body included.
    pub(super) timeout: Option<Duration>,
    /// The longest wait for the answer's headers once the request is sent (waiting for the
    /// client's rate limit and concurrency cap is not counted).
    pub(super) headers_timeout: Option<Duration>,
}

impl<'u> Outgoing<'u> {
    /// A request to the export's own endpoints on the FHIR server (kick-off, status URL):
    /// with the token, `accept` as `Accept`, and the client's timeouts.
    pub(super) fn endpoint(
        method: Method,
        url: &'u Url,
        accept: &'static str,
        idempotent: bool,
    ) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(accept));
        Outgoing {
            method,
            url,
            headers,
            with_token: true,
            idempotent,
            timeout: None,
            headers_timeout: None,
        }
    }

    pub(super) fn info(&self) -> RequestInfo {
        RequestInfo::new(self.method.as_str(), self.url)
    }
}

/// Sends one attempt: rate limit and concurrency cap (for the FHIR server's origin), token,
/// the client's default headers, then the request's own.
///
/// Requests to another origin get neither the token nor the client's custom headers, only
/// the `User-Agent`: they go to a third party such as a storage bucket.
pub(super) async fn send<'a>(inner: &'a ClientInner, out: &Outgoing<'_>) -> Result<Sent<'a>> {
    let same_origin = net::same_origin(out.url, &inner.base);
    let mut permit = None;
    if same_origin {
        if let Some(bucket) = &inner.rate_limit {
            bucket.acquire().await;
        }
        if let Some(semaphore) = &inner.concurrency {
            permit = Some(semaphore.acquire().await.map_err(|_| {
                Error::config("the client's concurrency limiter was closed")
                    .with_request(out.info())
            })?);
        }
    }
    let token = match (&inner.auth, out.with_token && same_origin) {
        (Some(auth), true) => Some(auth.token().await?),
        _ => None,
    };
    let mut request = inner.http.request(out.method.clone(), out.url.clone());
    if same_origin {
        request = request.headers(inner.default_headers.clone());
    } else if let Some(agent) = inner.default_headers.get(USER_AGENT) {
        request = request.header(USER_AGENT, agent.clone());
    }
    request = request.headers(out.headers.clone());
    if let Some(token) = &token {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
            .map_err(|_| {
                Error::new(
                    ErrorKind::Auth,
                    "the access token contains characters not allowed in a header",
                )
                .with_request(out.info())
            })?;
        value.set_sensitive(true);
        request = request.header(AUTHORIZATION, value);
    }
    if let Some(timeout) = out.timeout {
        request = request.timeout(timeout);
    }
    inner.metrics.requests.fetch_add(1, Ordering::Relaxed);
    tracing::trace!(target: "epic_fhir::bulk", method = %out.method, path = out.url.path(), "sending");
    let sent = match out.headers_timeout {
        Some(limit) => match tokio::time::timeout(limit, request.send()).await {
            Ok(sent) => sent,
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("no answer within {} s", limit.as_secs_f64()),
                )
                .with_request(out.info())
                .retryable(out.idempotent));
            }
        },
        None => request.send().await,
    };
    match sent {
        Ok(response) => Ok(Sent {
            response,
            token,
            _permit: permit,
        }),
        Err(error) => {
            // A connection that was never made cannot have reached the server, so even a
            // request that must not be repeated may be sent again.
            let retryable = error.is_connect() || out.idempotent;
            Err(transport_error(error, "request failed")
                .with_request(out.info())
                .retryable(retryable))
        }
    }
}

/// Reads at most `limit` bytes of a body; a body cut off early gives what arrived.
pub(super) async fn read_limited(response: reqwest::Response, limit: usize) -> Bytes {
    let mut stream = response.bytes_stream();
    let mut body = BytesMut::new();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    body.freeze()
}

/// Reads and discards a short body so the connection can go back to the pool; a body that
/// fails is of no interest either.
pub(super) async fn drain(response: reqwest::Response) {
    let _ = read_limited(response, ERROR_BODY_LIMIT).await;
}

/// The error for a non-success answer, with the server's OperationOutcome when it sent one.
///
/// Retryable: 408, 429, 502, 503, 504, any answer whose OperationOutcome says `transient` or
/// `throttled`, and a 500 without an OperationOutcome. A 500 that explains itself with a
/// non-transient OperationOutcome is final: the Bulk Data IG uses it for a failed job.
pub(super) async fn status_failure(
    response: reqwest::Response,
    method: &Method,
    url: &Url,
) -> Error {
    let status = response.status();
    let headers = response.headers().clone();
    let body = read_limited(response, ERROR_BODY_LIMIT).await;
    let mut spec = RequestSpec::get(url.clone());
    spec.method = method.clone();
    spec.idempotent = true;
    let error = status_error(&spec, status, &headers, &body);
    let transient = error.operation_outcome().is_some_and(|outcome| {
        outcome.issue.iter().any(|issue| {
            matches!(
                issue.code,
                Some(crate::model::IssueType::Transient | crate::model::IssueType::Throttled)
            )
        })
    });
    if status == StatusCode::INTERNAL_SERVER_ERROR
        && error.operation_outcome().is_some()
        && !transient
    {
        error.retryable(false)
    } else {
        error
    }
}

/// Counts the attempts of one logical request and waits between them, following the client's
/// retry policy.
pub(super) struct Retrier<'a> {
    inner: &'a ClientInner,
    started: tokio::time::Instant,
    failures: u32,
    refreshed: bool,
    /// Whether a failed attempt may have reached the server.
    reached: bool,
}

impl<'a> Retrier<'a> {
    pub(super) fn new(inner: &'a ClientInner) -> Self {
        Retrier {
            inner,
            started: tokio::time::Instant::now(),
            failures: 0,
            refreshed: false,
            reached: false,
        }
    }

    /// Sends `out`, trying again while the request fails without an answer and the policy
    /// allows.
    pub(super) async fn send(&mut self, out: &Outgoing<'_>) -> Result<Sent<'a>> {
        loop {
            match send(self.inner, out).await {
                Ok(sent) => return Ok(sent),
                Err(error) => self.pause(error).await?,
            }
        }
    }

    /// Whether an earlier attempt failed after it may have reached the server: anything but
    /// a failure to get a token (a 401 does not count either, as it never comes here).
    pub(super) fn may_have_reached(&self) -> bool {
        self.reached
    }

    /// After a 401 to `token`: whether to try again with a fresh token. Once per request, so
    /// a second 401 is final.
    pub(super) fn refresh_token(&mut self, token: Option<&AccessToken>) -> bool {
        let (Some(token), Some(auth)) = (token, &self.inner.auth) else {
            return false;
        };
        if self.refreshed {
            return false;
        }
        self.refreshed = true;
        auth.invalidate(token);
        true
    }

    /// After a failed attempt: waits and returns `Ok` when another attempt may start, or
    /// gives the error back when it is final or the policy's attempts or time are used up.
    ///
    /// A `Retry-After` longer than the policy's `max_retry_after` is final too: trying
    /// earlier than the server asked would only be refused again (Epic answers a second
    /// export of a Group within a day this way).
    pub(super) async fn pause(&mut self, error: Error) -> Result<()> {
        self.failures += 1;
        self.reached |= error.kind() != ErrorKind::Auth;
        let policy = &self.inner.retry;
        if !error.is_retryable()
            || error
                .retry_after()
                .is_some_and(|asked| asked > policy.max_retry_after)
        {
            return Err(error);
        }
        let delay = backoff(self.inner, self.failures, &error);
        if !policy.allows(self.failures, self.started.elapsed(), delay) {
            return Err(error);
        }
        self.inner.metrics.retries.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            target: "epic_fhir::bulk",
            attempt = self.failures,
            status = ?error.status(),
            delay_ms = delay.as_millis() as u64,
            error = %error,
            "retrying"
        );
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

/// The client's retry policy's wait after `failures` failed attempts in a row, `error` being
/// the last (its `Retry-After`, if any, decides).
pub(super) fn backoff(inner: &ClientInner, failures: u32, error: &Error) -> Duration {
    inner.retry.delay(
        failures.saturating_sub(1),
        error.retry_after(),
        inner.jitter.next(),
    )
}
