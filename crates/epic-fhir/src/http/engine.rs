//! The engine: one attempt, the retry loop around it, and the answers it hands back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{
    ACCEPT_ENCODING, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT,
};
use reqwest::{Method, StatusCode};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;
use url::Url;

use super::body::{BodyChunks, BodyLimits, ReadFailure, read_limited, read_prefix};
use super::classify::{Classify, Decision, Refused, RetryReason};
use super::limit::TokenBucket;
use super::transport::transport_error;
use crate::auth::TokenProvider;
use crate::error::{Error, ErrorKind, RequestInfo, Result};
use crate::net;
use crate::retry::{Jitter, RetryPolicy};

/// Where a request may go, and whether the bearer token goes with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    /// The engine's home origin (the FHIR server) only: a URL elsewhere is refused before
    /// anything is sent. The token goes along.
    Home,
    /// Any origin, which the user has chosen to trust with the token (a `next` link to another
    /// origin, when allowed): the token goes along.
    Trusted,
    /// Any origin. The token (when `token`), the client's custom headers, its rate limit and
    /// its concurrency cap apply only on the home origin: elsewhere is a third party, such as
    /// a storage bucket serving export files, and gets only the `User-Agent`.
    Anywhere {
        /// Send the token to the home origin.
        token: bool,
    },
}

/// Which statuses are answers for the caller; the others go to the classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accept {
    /// 2xx.
    Success,
    /// 2xx, and 404 once an earlier attempt may have reached the server: a `DELETE` whose
    /// first answer was lost (a reset, a gateway's 504) has done its work.
    SuccessOrGone,
    /// 2xx, redirects and 416: file downloads follow redirects themselves (the token must not
    /// follow) and resume with ranges.
    Download,
}

impl Accept {
    fn accepts(self, status: StatusCode, reached: bool) -> bool {
        match self {
            Accept::Success => status.is_success(),
            Accept::SuccessOrGone => {
                status.is_success() || status == StatusCode::NOT_FOUND && reached
            }
            Accept::Download => {
                status.is_success()
                    || status.is_redirection()
                    || status == StatusCode::RANGE_NOT_SATISFIABLE
            }
        }
    }
}

/// When a request may be sent again after an attempt that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repeat {
    /// Idempotent: whenever the failure may pass (reads, searches, a PUT without `If-Match`,
    /// token requests, status polls, DELETE).
    Always,
    /// After an error answer, which by the protocol means nothing was done (a Bulk Data
    /// kick-off: only a 202 starts a job), or when the request never left; never after a lost
    /// answer, which may have been a 202.
    AfterErrorAnswer,
    /// Only when the request cannot have reached the server (a create, a conditional update).
    OnlyIfNotSent,
}

/// A request body that is signed anew for every attempt (a client assertion, whose `jti` the
/// server may have consumed).
pub(crate) type MakeBody = dyn Fn() -> Result<Bytes> + Send + Sync;

/// A request body.
#[derive(Clone)]
pub(crate) enum Body {
    Empty,
    Fixed(Bytes, &'static str),
    PerAttempt(Arc<MakeBody>, &'static str),
}

/// One logical request; the engine may send it several times.
#[derive(Clone)]
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Body,
    /// When the request may be sent again.
    pub(crate) repeat: Repeat,
    pub(crate) destination: Destination,
    pub(crate) accept: Accept,
    /// Replaces the HTTP client's timeout for the whole exchange, body included.
    pub(crate) timeout: Option<Duration>,
    /// The longest wait for the answer's headers once the request is sent (waiting for the
    /// rate limit and the concurrency cap is not counted).
    pub(crate) headers_timeout: Option<Duration>,
}

impl Request {
    /// A `GET` of `url` on the home origin that accepts 2xx, with `Accept: accept`.
    pub(crate) fn get(url: Url, accept: &'static str) -> Self {
        Request::new(Method::GET, url, accept)
    }

    /// A `method` request of `url` on the home origin that accepts 2xx, with `Accept: accept`;
    /// idempotent unless said otherwise.
    pub(crate) fn new(method: Method, url: Url, accept: &'static str) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::ACCEPT, HeaderValue::from_static(accept));
        Request {
            repeat: if method == Method::POST {
                Repeat::OnlyIfNotSent
            } else {
                Repeat::Always
            },
            method,
            url,
            headers,
            body: Body::Empty,
            destination: Destination::Home,
            accept: Accept::Success,
            timeout: None,
            headers_timeout: None,
        }
    }

    /// Adds a header.
    pub(crate) fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// The method and path (query redacted), for errors.
    pub(crate) fn info(&self) -> RequestInfo {
        RequestInfo::new(self.method.as_str(), &self.url)
    }
}

/// How many attempts a [`Retries`] allows, and for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    pub(crate) max_attempts: u32,
    /// `None`: no bound on the total time (file downloads, which may take hours, and bound
    /// their attempts without progress instead).
    pub(crate) max_elapsed: Option<Duration>,
}

/// The home of an engine: the FHIR server, its token and its limits.
pub(crate) struct Home {
    pub(crate) base: Url,
    pub(crate) auth: Option<Arc<dyn TokenProvider>>,
    pub(crate) headers: HeaderMap,
    pub(crate) rate_limit: Option<(f64, u32)>,
    pub(crate) max_concurrent: Option<usize>,
}

/// Builds an HTTP client.
pub(crate) type MakeClient = Box<dyn Fn() -> Result<reqwest::Client> + Send + Sync>;

/// An HTTP client built the first time it is needed.
struct LazyClient {
    make: MakeClient,
    built: std::sync::OnceLock<reqwest::Client>,
}

impl LazyClient {
    fn get(&self) -> Result<&reqwest::Client> {
        if let Some(client) = self.built.get() {
            return Ok(client);
        }
        // Two first downloads at once may both build one; the first stored is kept.
        let client = (self.make)()?;
        Ok(self.built.get_or_init(|| client))
    }
}

/// Sends requests: rate limit and concurrency permit, the token (home origin only), sending,
/// classifying the answer, retrying as the one rule says (see [`Retries`]), and reading bodies
/// under [`BodyLimits`].
pub(crate) struct Engine {
    http: reqwest::Client,
    /// The client for file downloads ([`Accept::Download`]) when it differs from `http`: the
    /// crate's own default leaves `Content-Encoding: gzip` to [`BodyChunks`], which decodes it
    /// in larger pieces than reqwest does. Built on the first download.
    downloads: Option<LazyClient>,
    retry: RetryPolicy,
    limits: BodyLimits,
    jitter: Jitter,
    home: Option<Url>,
    auth: Option<Arc<dyn TokenProvider>>,
    headers: HeaderMap,
    rate_limit: Option<TokenBucket>,
    concurrency: Option<Semaphore>,
    requests: AtomicU64,
    retries: AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("home", &self.home.as_ref().map(Url::as_str))
            .field("retry", &self.retry)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine without a home: no token, no limits, every origin alike (token requests,
    /// discovery).
    pub(crate) fn new(http: reqwest::Client, retry: RetryPolicy, limits: BodyLimits) -> Self {
        Engine {
            http,
            downloads: None,
            retry,
            limits,
            jitter: Jitter::new(),
            home: None,
            auth: None,
            headers: HeaderMap::new(),
            rate_limit: None,
            concurrency: None,
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    /// An engine for a FHIR server.
    pub(crate) fn with_home(
        http: reqwest::Client,
        retry: RetryPolicy,
        limits: BodyLimits,
        home: Home,
    ) -> Self {
        Engine {
            home: Some(home.base),
            auth: home.auth,
            headers: home.headers,
            rate_limit: home
                .rate_limit
                .map(|(rate, burst)| TokenBucket::new(rate, burst)),
            concurrency: home.max_concurrent.map(Semaphore::new),
            ..Engine::new(http, retry, limits)
        }
    }

    /// Sends file downloads through the client `make` builds when first needed (one that does
    /// not decode `Content-Encoding`).
    pub(crate) fn with_download_client(mut self, make: MakeClient) -> Self {
        self.downloads = Some(LazyClient {
            make,
            built: std::sync::OnceLock::new(),
        });
        self
    }

    pub(crate) fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    pub(crate) fn limits(&self) -> &BodyLimits {
        &self.limits
    }

    pub(crate) fn auth(&self) -> Option<&Arc<dyn TokenProvider>> {
        self.auth.as_ref()
    }

    /// Requests sent, every retry included.
    pub(crate) fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Retries made.
    pub(crate) fn retries_made(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    fn is_home(&self, url: &Url) -> bool {
        self.home
            .as_ref()
            .is_none_or(|home| net::same_origin(url, home))
    }

    /// A retry loop under the engine's retry policy.
    pub(crate) fn retries(&self) -> Retries<'_> {
        self.retries_within(Budget {
            max_attempts: self.retry.max_attempts,
            max_elapsed: Some(self.retry.max_elapsed),
        })
    }

    /// A retry loop with its own bounds (the delays still follow the retry policy).
    pub(crate) fn retries_within(&self, budget: Budget) -> Retries<'_> {
        Retries {
            engine: self,
            budget,
            started: Instant::now(),
            failures: 0,
            refreshed: false,
            reached: false,
        }
    }

    /// Sends `request` until an accepted answer arrives or the retry rule says stop. The body is
    /// left unread (read it with [`Answer::read`] or stream it).
    pub(crate) async fn send(
        &self,
        request: &Request,
        classify: &dyn Classify,
    ) -> Result<Answer<'_>> {
        let mut retries = self.retries();
        loop {
            match self.attempt(request, classify, retries.reached()).await {
                Ok(answer) => return Ok(answer),
                Err(decision) => retries.after(request, decision).await?,
            }
        }
    }

    /// Sends `request` and reads the accepted answer's body under `limit`; a body cut off is
    /// an attempt that failed (retried when the request is idempotent).
    pub(crate) async fn fetch(
        &self,
        request: &Request,
        classify: &dyn Classify,
        limit: usize,
    ) -> Result<Reply> {
        let mut retries = self.retries();
        loop {
            let decision = match self.attempt(request, classify, retries.reached()).await {
                Ok(answer) => match answer.read(limit).await {
                    Ok(reply) => return Ok(reply),
                    Err(decision) => decision,
                },
                Err(decision) => decision,
            };
            retries.after(request, decision).await?;
        }
    }

    /// One attempt: limits, token, send; an answer the request accepts, or the decision about
    /// one it does not (its body read under the error limit to explain it).
    pub(crate) async fn attempt(
        &self,
        request: &Request,
        classify: &dyn Classify,
        reached: bool,
    ) -> std::result::Result<Answer<'_>, Decision> {
        let home = self.is_home(&request.url);
        if request.destination == Destination::Home && !home {
            return Err(Decision::Fail(
                Error::new(
                    ErrorKind::InsecureUrl,
                    format!(
                        "refusing to send a request to {}: it is not the FHIR server's origin {}",
                        request.url.origin().ascii_serialization(),
                        self.home
                            .as_ref()
                            .map(|h| h.origin().ascii_serialization())
                            .unwrap_or_default()
                    ),
                )
                .with_request(request.info()),
            ));
        }
        let own = home || request.destination == Destination::Trusted;
        let mut permit = None;
        if own {
            if let Some(bucket) = &self.rate_limit {
                bucket.acquire().await;
            }
            if let Some(semaphore) = &self.concurrency {
                match semaphore.acquire().await {
                    Ok(acquired) => permit = Some(acquired),
                    Err(_) => {
                        return Err(Decision::Fail(
                            Error::config("the client's concurrency limiter was closed")
                                .with_request(request.info()),
                        ));
                    }
                }
            }
        }
        let wants_token = match request.destination {
            Destination::Home | Destination::Trusted => true,
            Destination::Anywhere { token } => token && home,
        };
        let token = match (&self.auth, wants_token) {
            (Some(auth), true) => match auth.token().await {
                Ok(token) => Some(token),
                Err(error) if error.is_retryable() => {
                    return Err(Decision::Retry {
                        reason: RetryReason::Token,
                        error,
                    });
                }
                Err(error) => return Err(Decision::Fail(error)),
            },
            _ => None,
        };
        let http = match (&self.downloads, request.accept) {
            (Some(downloads), Accept::Download) => match downloads.get() {
                Ok(client) => client,
                Err(error) => return Err(Decision::Fail(error.with_request(request.info()))),
            },
            _ => &self.http,
        };
        let mut builder = http.request(request.method.clone(), request.url.clone());
        if own {
            builder = builder.headers(self.headers.clone());
        } else {
            // A third party gets no custom header but these two, neither of them a secret.
            for name in [USER_AGENT, ACCEPT_ENCODING] {
                if let Some(value) = self.headers.get(&name) {
                    builder = builder.header(name, value.clone());
                }
            }
        }
        builder = builder.headers(request.headers.clone());
        if let Some(token) = &token {
            match HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    builder = builder.header(AUTHORIZATION, value);
                }
                Err(_) => {
                    return Err(Decision::Fail(
                        Error::new(
                            ErrorKind::Auth,
                            "the access token contains characters not allowed in a header",
                        )
                        .with_request(request.info()),
                    ));
                }
            }
        }
        match &request.body {
            Body::Empty => {}
            Body::Fixed(bytes, content_type) => {
                builder = builder
                    .header(CONTENT_TYPE, *content_type)
                    .body(bytes.clone());
            }
            Body::PerAttempt(make, content_type) => match make() {
                Ok(bytes) => builder = builder.header(CONTENT_TYPE, *content_type).body(bytes),
                Err(error) => return Err(Decision::Fail(error)),
            },
        }
        if let Some(timeout) = request.timeout {
            builder = builder.timeout(timeout);
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(target: "epic_fhir::http", method = %request.method, url = %request.url, "sending");
        let sent_at = Instant::now();
        let sent = match request.headers_timeout {
            Some(limit) => match tokio::time::timeout(limit, builder.send()).await {
                Ok(sent) => sent,
                Err(_) => {
                    return Err(Decision::Retry {
                        reason: RetryReason::Timeout,
                        error: Error::new(
                            ErrorKind::Timeout,
                            format!("no answer within {} s", limit.as_secs_f64()),
                        )
                        .with_request(request.info()),
                    });
                }
            },
            None => builder.send().await,
        };
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => {
                let reason = if error.is_connect() {
                    RetryReason::Connect
                } else if error.is_timeout() {
                    RetryReason::Timeout
                } else {
                    RetryReason::Transport
                };
                let error = transport_error(error, "request failed").with_request(request.info());
                tracing::debug!(target: "epic_fhir::http", method = %request.method, path = request.url.path(), %reason, error = %error, "request failed");
                return Err(Decision::Retry { reason, error });
            }
        };
        let status = response.status();
        tracing::debug!(
            target: "epic_fhir::http",
            method = %request.method,
            path = request.url.path(),
            status = status.as_u16(),
            latency_ms = sent_at.elapsed().as_millis() as u64,
            "answer"
        );
        let headers = std::mem::take(response.headers_mut());
        if request.accept.accepts(status, reached) {
            return Ok(Answer {
                status,
                headers,
                response,
                request: request.info(),
                _permit: permit,
            });
        }
        let body = read_prefix(response, self.limits.error).await;
        drop(permit);
        let decision = classify.classify(&Refused {
            request,
            status,
            headers: &headers,
            body: &body,
        });
        match (token, status) {
            (Some(token), StatusCode::UNAUTHORIZED) => {
                let error = match decision {
                    Decision::Retry { error, .. }
                    | Decision::RefreshToken { error, .. }
                    | Decision::Fail(error) => error,
                };
                Err(Decision::RefreshToken { error, token })
            }
            _ => Err(decision),
        }
    }
}

/// An accepted answer whose body has not been read. It holds the concurrency permit until it
/// is dropped: a streamed body is a request in flight for as long as it streams.
pub(crate) struct Answer<'e> {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) response: reqwest::Response,
    request: RequestInfo,
    _permit: Option<SemaphorePermit<'e>>,
}

/// An accepted answer with its body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl<'e> Answer<'e> {
    /// Reads the body under `limit`: a body cut off is a failed attempt to retry, a body too
    /// large a final [`ErrorKind::Limit`].
    pub(crate) async fn read(self, limit: usize) -> std::result::Result<Reply, Decision> {
        let Answer {
            status,
            headers,
            response,
            request,
            ..
        } = self;
        match read_limited(response, limit).await {
            Ok(body) => Ok(Reply {
                status,
                headers,
                body,
            }),
            Err(ReadFailure::CutOff(error)) => Err(Decision::Retry {
                reason: RetryReason::CutOff,
                error: transport_error(error, "the answer was cut off")
                    .with_request(request)
                    .with_status(status.as_u16()),
            }),
            Err(ReadFailure::TooLarge { limit }) => Err(Decision::Fail(
                too_large(limit)
                    .with_request(request)
                    .with_status(status.as_u16()),
            )),
        }
    }

    /// The body chunk by chunk, decoded, holding the concurrency permit while it is read;
    /// `Err` names a `Content-Encoding` this client cannot undo.
    pub(crate) fn into_chunks(self) -> std::result::Result<BodyChunks<'e>, String> {
        BodyChunks::new(self.response, &self.headers, self._permit)
    }

    /// Reads and drops a short body so the connection can go back to the pool; a body that
    /// fails or runs long is of no interest either.
    pub(crate) async fn drain(self, limit: usize) {
        let _ = read_prefix(self.response, limit).await;
    }
}

/// The error for a body larger than `limit` bytes.
pub(crate) fn too_large(limit: usize) -> Error {
    Error::new(
        ErrorKind::Limit,
        format!("the answer is larger than {limit} bytes, the most this client reads"),
    )
}

/// The retry loop of one logical request: it counts attempts, applies the one retry rule and
/// waits.
///
/// The rule, for every request the crate sends:
/// 1. Only a [`Decision::Retry`] is retried. A request that is not idempotent (a create) is
///    retried only when the failed attempt cannot have reached the server: the connection was
///    never made, or no token could be had; any answer, even a 503, means it did. A Bulk Data
///    kick-off is retried after an error answer too (see [`Repeat::AfterErrorAnswer`]).
/// 2. A `Retry-After` longer than the policy's `max_retry_after` ends the retries: trying
///    earlier than the server asked would only be refused again. The error keeps the delay
///    ([`Error::retry_after`]) for the caller.
/// 3. Otherwise the delay is the server's `Retry-After`, or the policy's exponential backoff
///    with equal jitter.
/// 4. A retry starts only while the attempts made are fewer than the budget's and, when the
///    budget bounds time, the time since the first attempt plus the delay stays within it.
/// 5. A 401 to a request that carried a token ([`Decision::RefreshToken`]) forgets that token
///    and sends the request again at once with a fresh one, once per request (once per stretch
///    of progress for file downloads); it does not count as an attempt.
pub(crate) struct Retries<'e> {
    engine: &'e Engine,
    budget: Budget,
    started: Instant,
    failures: u32,
    refreshed: bool,
    reached: bool,
}

impl Retries<'_> {
    /// Whether an attempt so far may have reached the server.
    pub(crate) fn reached(&self) -> bool {
        self.reached
    }

    /// Failed attempts counted so far.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// The attempt made progress (a download added bytes): the count of failures starts over,
    /// and a later 401 deserves a token refresh of its own.
    pub(crate) fn progressed(&mut self) {
        self.failures = 0;
        self.refreshed = false;
    }

    /// Applies the rule to `decision`: `Ok(delay)` when another attempt may start after
    /// `delay`, or the final error. Counts the retry; does not wait.
    pub(crate) fn plan(&mut self, request: &Request, decision: Decision) -> Result<Duration> {
        match decision {
            Decision::Fail(error) => Err(error),
            Decision::RefreshToken { error, token } => {
                let Some(auth) = self.engine.auth.as_ref() else {
                    return Err(error);
                };
                if self.refreshed {
                    return Err(error);
                }
                self.refreshed = true;
                auth.invalidate(&token);
                tracing::debug!(target: "epic_fhir::http", method = %request.method, path = request.url.path(), "token refused; refreshing it");
                Ok(Duration::ZERO)
            }
            Decision::Retry { reason, error } => {
                let reached = reason.may_have_reached_server();
                self.reached |= reached;
                let allowed = match request.repeat {
                    Repeat::Always => true,
                    Repeat::AfterErrorAnswer => !reached || reason.is_error_answer(),
                    Repeat::OnlyIfNotSent => !reached,
                };
                if !allowed {
                    return Err(error.retryable(false));
                }
                let error = error.retryable(true);
                self.failures += 1;
                let policy = &self.engine.retry;
                if error
                    .retry_after()
                    .is_some_and(|asked| asked > policy.max_retry_after)
                {
                    return Err(error);
                }
                let delay = policy.delay(
                    self.failures - 1,
                    error.retry_after(),
                    self.engine.jitter.next(),
                );
                let in_time = self
                    .budget
                    .max_elapsed
                    .is_none_or(|budget| self.started.elapsed() + delay <= budget);
                if self.failures >= self.budget.max_attempts || !in_time {
                    return Err(error);
                }
                self.engine.retries.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    target: "epic_fhir::http",
                    method = %request.method,
                    path = request.url.path(),
                    attempt = self.failures,
                    %reason,
                    delay_ms = delay.as_millis() as u64,
                    error = %error,
                    "retrying"
                );
                Ok(delay)
            }
        }
    }

    /// [`Retries::plan`], then the wait.
    pub(crate) async fn after(&mut self, request: &Request, decision: Decision) -> Result<()> {
        let delay = self.plan(request, decision)?;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AccessToken, StaticToken};

    fn engine(policy: RetryPolicy) -> Engine {
        Engine::with_home(
            reqwest::Client::new(),
            policy,
            BodyLimits::default(),
            Home {
                base: Url::parse("https://fhir.example.org/R4").expect("url"),
                auth: Some(Arc::new(StaticToken::new(AccessToken::new("t")))),
                headers: HeaderMap::new(),
                rate_limit: None,
                max_concurrent: None,
            },
        )
    }

    fn request(method: Method) -> Request {
        Request::new(
            method,
            Url::parse("https://fhir.example.org/R4/Patient").expect("url"),
            "application/fhir+json",
        )
    }

    fn retry(reason: RetryReason, retry_after: Option<Duration>) -> Decision {
        Decision::Retry {
            reason,
            error: Error::new(ErrorKind::Status, "x").with_retry_after(retry_after),
        }
    }

    #[test]
    fn retries_are_bounded_by_attempts_and_time() {
        let engine = engine(
            RetryPolicy::default()
                .with_max_attempts(3)
                .with_max_elapsed(Duration::from_secs(10)),
        );
        let get = request(Method::GET);
        let mut retries = engine.retries();
        assert!(
            retries
                .plan(&get, retry(RetryReason::Transport, None))
                .is_ok()
        );
        assert!(
            retries
                .plan(&get, retry(RetryReason::Transport, None))
                .is_ok()
        );
        let error = retries
            .plan(&get, retry(RetryReason::Transport, None))
            .expect_err("three attempts made");
        assert!(error.is_retryable(), "the error still says it may pass");
        let mut retries = engine.retries();
        assert!(
            retries
                .plan(
                    &get,
                    retry(RetryReason::Status(503), Some(Duration::from_secs(11)))
                )
                .is_err(),
            "the wait would pass the time budget"
        );
        assert_eq!(engine.retries_made(), 2);
    }

    #[test]
    fn a_long_retry_after_ends_the_retries_and_is_kept() {
        let engine = engine(RetryPolicy::default());
        let get = request(Method::GET);
        let mut retries = engine.retries();
        let delay = retries
            .plan(
                &get,
                retry(RetryReason::Status(429), Some(Duration::from_secs(60))),
            )
            .expect("within max_retry_after");
        assert_eq!(delay, Duration::from_secs(60));
        let error = retries
            .plan(
                &get,
                retry(RetryReason::Status(429), Some(Duration::from_secs(61))),
            )
            .expect_err("longer than max_retry_after");
        assert_eq!(error.retry_after(), Some(Duration::from_secs(61)));
    }

    #[test]
    fn requests_that_are_not_idempotent_are_repeated_only_when_they_never_left() {
        let engine = engine(RetryPolicy::default());
        let post = request(Method::POST);
        assert_eq!(post.repeat, Repeat::OnlyIfNotSent);
        for reason in [RetryReason::Connect, RetryReason::Token] {
            assert!(
                engine.retries().plan(&post, retry(reason, None)).is_ok(),
                "{reason}"
            );
        }
        for reason in [
            RetryReason::Transport,
            RetryReason::Timeout,
            RetryReason::CutOff,
            RetryReason::Status(429),
            RetryReason::Status(503),
            RetryReason::Status(504),
        ] {
            let error = engine
                .retries()
                .plan(&post, retry(reason, None))
                .expect_err("may have reached the server");
            assert!(!error.is_retryable(), "{reason}");
        }
        let mut kick_off = request(Method::GET);
        kick_off.repeat = Repeat::AfterErrorAnswer;
        for reason in [
            RetryReason::Connect,
            RetryReason::Status(503),
            RetryReason::Status(500),
            RetryReason::TransientOutcome,
        ] {
            assert!(
                engine
                    .retries()
                    .plan(&kick_off, retry(reason, None))
                    .is_ok(),
                "{reason}"
            );
        }
        for reason in [
            RetryReason::Transport,
            RetryReason::Timeout,
            RetryReason::CutOff,
        ] {
            assert!(
                engine
                    .retries()
                    .plan(&kick_off, retry(reason, None))
                    .is_err(),
                "{reason}: the answer may have been a 202"
            );
        }
    }

    #[test]
    fn a_refused_token_is_refreshed_once_per_stretch_of_progress() {
        let engine = engine(RetryPolicy::default());
        let get = request(Method::GET);
        let refresh = || Decision::RefreshToken {
            error: Error::new(ErrorKind::Status, "401").with_status(401),
            token: AccessToken::new("t"),
        };
        let mut retries = engine.retries();
        assert_eq!(
            retries.plan(&get, refresh()).expect("first"),
            Duration::ZERO
        );
        assert_eq!(
            retries.plan(&get, refresh()).expect_err("second").status(),
            Some(401)
        );
        retries.progressed();
        assert!(retries.plan(&get, refresh()).is_ok(), "after progress");
        assert_eq!(retries.failures(), 0, "a refresh is not a failed attempt");
    }

    #[test]
    fn accepted_statuses() {
        assert!(Accept::Success.accepts(StatusCode::ACCEPTED, false));
        assert!(!Accept::Success.accepts(StatusCode::NOT_FOUND, true));
        assert!(!Accept::SuccessOrGone.accepts(StatusCode::NOT_FOUND, false));
        assert!(Accept::SuccessOrGone.accepts(StatusCode::NOT_FOUND, true));
        assert!(Accept::Download.accepts(StatusCode::FOUND, false));
        assert!(Accept::Download.accepts(StatusCode::RANGE_NOT_SATISFIABLE, false));
        assert!(!Accept::Download.accepts(StatusCode::SERVICE_UNAVAILABLE, false));
    }
}
