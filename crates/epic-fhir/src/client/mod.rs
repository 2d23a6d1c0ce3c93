//! The FHIR R4 client.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt, TryStreamExt};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, IF_MATCH, LOCATION};
use url::Url;

use crate::auth::{AccessToken, BackendServicesAuth, StaticToken, TokenProvider};
use crate::error::{Error, ErrorKind, RequestInfo, Result};
use crate::http::transport::USER_AGENT;
use crate::http::{
    Body, BodyLimits, Destination, Engine, FHIR_JSON, FhirStatus, Home, MakeClient, Repeat, Reply,
    Request,
};
use crate::model::{self, CapabilityStatement, FhirResource, Reference, Resource};
use crate::net;
use crate::paging::{Page, PageItem};
use crate::retry::RetryPolicy;
use crate::search::SearchParams;

/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default timeout of one request attempt, body included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) struct ClientInner {
    /// Every request goes through it: limits, token, retries, body limits.
    pub(crate) engine: Engine,
    pub(crate) base: Url,
    allow_foreign_next: bool,
    max_pages: Option<usize>,
}

/// Where a stream of pages goes next.
enum Step {
    Start(SearchParams),
    Next(Url),
    /// The last page named a `next` link that cannot be followed: the page itself was
    /// delivered, the error comes after it.
    Refused(Error),
    Done,
}

/// What one stream of pages remembers: its next step, and every page URL it fetched, so that a
/// `next` link back to one of them (a server paging in a loop) ends the stream instead of
/// running forever.
struct Walk {
    next: Step,
    fetched: HashSet<String>,
}

/// A FHIR R4 client: cheap to clone (clones share the connection pool, the token cache and the
/// limits).
///
/// Every request goes through the crate's one request engine: the rate limiter and concurrency
/// cap, a token from the [`TokenProvider`] (cached, refreshed before expiry), the pooled HTTP
/// client (rustls, keep-alive, gzip, HTTP/2 when the server offers it), then classification:
/// 2xx is read (under [`BodyLimits`]) and parsed; 401 invalidates the token and retries once
/// with a fresh one; 408/429/5xx, connection errors and OperationOutcomes with issue code
/// `transient`/`throttled` are retried with backoff (honouring `Retry-After`, see
/// [`RetryPolicy`]) for idempotent requests; other errors carry the server's OperationOutcome.
///
/// ```no_run
/// # async fn run() -> epic_fhir::Result<()> {
/// use epic_fhir::auth::{BackendServicesAuth, SigningKey};
/// use epic_fhir::model::{Observation, Patient};
/// use epic_fhir::search::SearchParams;
/// use epic_fhir::FhirClient;
/// use futures_util::TryStreamExt;
///
/// let base = "https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4";
/// let auth = BackendServicesAuth::builder("my-client-id", SigningKey::from_pem_file("private.pem")?)
///     .discover(base)
///     .await?
///     .build()?;
/// let client = FhirClient::builder(base).backend_services(auth).build()?;
///
/// let patient: Patient = client.read("erXuFYUfucBZaryVksYEcMg3").await?;
/// let params = SearchParams::new()
///     .reference("patient", "erXuFYUfucBZaryVksYEcMg3")
///     .token("category", None, "vital-signs")
///     .sort_desc("date");
/// let vitals: Vec<Observation> = client.resources::<Observation>(&params).try_collect().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FhirClient {
    inner: Arc<ClientInner>,
}

impl fmt::Debug for FhirClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FhirClient")
            .field("base", &self.inner.base.as_str())
            .field("auth", &self.inner.engine.auth())
            .field("retry", self.inner.engine.retry_policy())
            .finish_non_exhaustive()
    }
}

/// Builds a [`FhirClient`]. Fallible settings keep their error until [`Self::build`].
#[must_use]
pub struct FhirClientBuilder {
    base: Result<Url>,
    auth: Option<Arc<dyn TokenProvider>>,
    connect_timeout: Duration,
    request_timeout: Duration,
    retry: RetryPolicy,
    rate: Option<(f64, u32)>,
    max_concurrent: Option<usize>,
    user_agent: String,
    headers: HeaderMap,
    allow_foreign_next: bool,
    max_pages: Option<usize>,
    limits: BodyLimits,
    http: Option<reqwest::Client>,
    error: Option<Error>,
}

impl fmt::Debug for FhirClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FhirClientBuilder").finish_non_exhaustive()
    }
}

/// Checks a FHIR logical id or type name before it goes into a URL path, so that `../` or `?`
/// can never change which endpoint is called.
fn check_segment(value: &str, what: &str) -> Result<()> {
    let valid = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && value != "."
        && value != "..";
    if valid {
        Ok(())
    } else {
        Err(Error::config(format!(
            "{what} `{value}` is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .)"
        )))
    }
}

impl FhirClient {
    /// Starts building a client for the FHIR base URL (e.g.
    /// `https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4`). It must be `https`, or
    /// `http` on loopback.
    pub fn builder(base_url: impl AsRef<str>) -> FhirClientBuilder {
        let base = net::parse_secure_url(base_url.as_ref(), "FHIR base URL").map(|mut url| {
            let trimmed = url.path().trim_end_matches('/').to_owned();
            url.set_path(&trimmed);
            url.set_query(None);
            url.set_fragment(None);
            url
        });
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip"),
        );
        FhirClientBuilder {
            base,
            auth: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            retry: RetryPolicy::default(),
            rate: None,
            max_concurrent: None,
            user_agent: USER_AGENT.to_owned(),
            headers,
            allow_foreign_next: false,
            max_pages: None,
            limits: BodyLimits::default(),
            http: None,
            error: None,
        }
    }

    /// The FHIR base URL (without a trailing slash).
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// Requests sent so far, every retry included.
    pub fn requests_sent(&self) -> u64 {
        self.inner.engine.requests_sent()
    }

    /// Retries made so far.
    pub fn retries(&self) -> u64 {
        self.inner.engine.retries_made()
    }

    /// The request engine (pooled HTTP client, token provider, limits, retry policy), for the
    /// bulk export client.
    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// `[base]/segment/segment...`. The segments were checked by `check_segment` (or are
    /// constants), so they are appended to the parsed base rather than a URL being formatted
    /// and parsed again.
    fn url(&self, segments: &[&str]) -> Result<Url> {
        let mut url = self.inner.base.clone();
        url.path_segments_mut()
            .map_err(|()| Error::config(format!("cannot build a URL under `{}`", self.inner.base)))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// Sends `request` to a FHIR endpoint and reads the answer under the FHIR body limit.
    async fn fetch(&self, request: &Request) -> Result<Reply> {
        let engine = &self.inner.engine;
        engine
            .fetch(request, &FhirStatus::default(), engine.limits().fhir)
            .await
    }

    async fn get_json<T: crate::model::json::FromJson>(&self, url: Url) -> Result<T> {
        let request = Request::get(url, FHIR_JSON);
        let reply = self.fetch(&request).await?;
        decode(&request, &reply.body)
    }

    /// The server's CapabilityStatement (`GET [base]/metadata`).
    ///
    /// # Errors
    /// Transport, status and decoding errors.
    pub async fn capabilities(&self) -> Result<CapabilityStatement> {
        self.get_json(self.url(&["metadata"])?).await
    }

    /// Reads a resource by id (`GET [base]/[T::TYPE]/[id]`).
    ///
    /// # Errors
    /// [`ErrorKind::Status`] 404 with the server's OperationOutcome when it does not exist;
    /// [`ErrorKind::Config`] for an invalid id; transport and decoding errors.
    pub async fn read<T: FhirResource>(&self, id: &str) -> Result<T> {
        check_segment(id, "id")?;
        self.get_json(self.url(&[T::TYPE, id])?).await
    }

    /// Reads a resource of a type named at run time.
    ///
    /// # Errors
    /// As [`FhirClient::read`].
    pub async fn read_type(&self, resource_type: &str, id: &str) -> Result<Resource> {
        check_segment(resource_type, "resource type")?;
        check_segment(id, "id")?;
        self.get_json(self.url(&[resource_type, id])?).await
    }

    /// Reads what a reference points at (relative `Type/id`, or absolute on this server).
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for a reference without type and id; [`ErrorKind::InsecureUrl`]
    /// for an absolute reference to another server; as [`FhirClient::read`] otherwise.
    pub async fn read_reference(&self, reference: &Reference) -> Result<Resource> {
        if let Some(text) = reference.reference.as_deref() {
            if let Ok(absolute) = Url::parse(text) {
                if !net::same_origin(&absolute, &self.inner.base) {
                    return Err(Error::new(
                        ErrorKind::InsecureUrl,
                        format!("reference {text} points at another server"),
                    ));
                }
            }
        }
        let (Some(resource_type), Some(id)) = (reference.resource_type(), reference.id()) else {
            return Err(Error::config("the reference has no Type/id to read"));
        };
        self.read_type(resource_type, id).await
    }

    /// Reads one version of a resource (`GET [base]/[T::TYPE]/[id]/_history/[version]`).
    ///
    /// # Errors
    /// As [`FhirClient::read`].
    pub async fn vread<T: FhirResource>(&self, id: &str, version: &str) -> Result<T> {
        check_segment(id, "id")?;
        check_segment(version, "version")?;
        self.get_json(self.url(&[T::TYPE, id, "_history", version])?)
            .await
    }

    /// Searches `T::TYPE` and returns the first page.
    ///
    /// # Errors
    /// [`ErrorKind::Status`] 400 with Epic's OperationOutcome for a search Epic refuses (e.g.
    /// code 4111 for an Observation search without `category` or `code`); transport and
    /// decoding errors.
    pub async fn search<T: FhirResource>(&self, params: &SearchParams) -> Result<Page<T>> {
        self.search_page(T::TYPE, params).await
    }

    /// Searches a type named at run time.
    ///
    /// # Errors
    /// As [`FhirClient::search`].
    pub async fn search_type(
        &self,
        resource_type: &str,
        params: &SearchParams,
    ) -> Result<Page<Resource>> {
        self.search_page(resource_type, params).await
    }

    async fn search_page<T: PageItem>(
        &self,
        resource_type: &str,
        params: &SearchParams,
    ) -> Result<Page<T>> {
        let url = self.search_url(resource_type, params)?;
        self.fetch_page(url, resource_type).await
    }

    /// `[base]/[type]?[params]`.
    fn search_url(&self, resource_type: &str, params: &SearchParams) -> Result<Url> {
        check_segment(resource_type, "resource type")?;
        let mut url = self.url(&[resource_type])?;
        if !params.is_empty() {
            url.set_query(Some(&params.to_query()));
        }
        Ok(url)
    }

    async fn fetch_page<T: PageItem>(&self, url: Url, resource_type: &str) -> Result<Page<T>> {
        let mut request = Request::get(url, FHIR_JSON);
        if self.inner.allow_foreign_next {
            // The user chose to trust next links elsewhere with the token (`next_url` checked
            // the rest); pages of this server are on its origin anyway.
            request.destination = Destination::Trusted;
        }
        let reply = self.fetch(&request).await?;
        let bundle = decode(&request, &reply.body)?;
        Page::from_bundle(bundle, resource_type).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                "a search result entry does not fit the model",
            )
            .with_request(request.info())
            .with_json_path(e.path().to_owned())
            .with_source(e)
        })
    }

    /// Fetches the page after `page` by following its `next` link verbatim, or `None` on the
    /// last page.
    ///
    /// # Errors
    /// [`ErrorKind::InsecureUrl`] when the link points at another origin (unless allowed with
    /// [`FhirClientBuilder::allow_cross_origin_next_links`]); as [`FhirClient::search`].
    pub async fn next_page<T: PageItem>(&self, page: &Page<T>) -> Result<Option<Page<T>>> {
        match page.next_link() {
            None => Ok(None),
            Some(link) => {
                let url = self.next_url(link)?;
                self.fetch_page(url, page.resource_type()).await.map(Some)
            }
        }
    }

    fn next_url(&self, link: &str) -> Result<Url> {
        let url = match Url::parse(link) {
            Ok(url) => url,
            Err(url::ParseError::RelativeUrlWithoutBase) => {
                let base = Url::parse(&format!("{}/", self.inner.base))
                    .map_err(|e| Error::config("invalid base URL").with_source(e))?;
                base.join(link).map_err(|e| {
                    Error::new(
                        ErrorKind::Decode,
                        format!("next link `{link}` is not a URL"),
                    )
                    .with_source(e)
                })?
            }
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::Decode,
                    format!("next link `{link}` is not a URL"),
                )
                .with_source(e));
            }
        };
        if !net::same_origin(&url, &self.inner.base) && !self.inner.allow_foreign_next {
            return Err(Error::new(
                ErrorKind::InsecureUrl,
                format!(
                    "next link points at another origin ({}): refusing to send the token there",
                    url.origin().ascii_serialization()
                ),
            ));
        }
        Ok(url)
    }

    /// Every page of a search, first to last, as a stream. Pages are fetched as the stream is
    /// polled, so dropping it (or `take(n)`) stops the paging.
    pub fn pages<T: FhirResource>(
        &self,
        params: &SearchParams,
    ) -> impl Stream<Item = Result<Page<T>>> + Send + 'static {
        self.pages_of(T::TYPE.to_owned(), params.clone())
    }

    /// Every page of a search of a type named at run time.
    pub fn pages_of_type(
        &self,
        resource_type: &str,
        params: &SearchParams,
    ) -> impl Stream<Item = Result<Page<Resource>>> + Send + 'static {
        self.pages_of(resource_type.to_owned(), params.clone())
    }

    fn pages_of<T: PageItem>(
        &self,
        resource_type: String,
        params: SearchParams,
    ) -> impl Stream<Item = Result<Page<T>>> + Send + 'static {
        let client = self.clone();
        let walk = Walk {
            next: Step::Start(params),
            fetched: HashSet::new(),
        };
        stream::try_unfold(walk, move |mut walk| {
            let client = client.clone();
            let resource_type = resource_type.clone();
            async move {
                let page: Page<T> = match walk.next {
                    Step::Done => return Ok(None),
                    Step::Refused(error) => return Err(error),
                    Step::Start(params) => {
                        let url = client.search_url(&resource_type, &params)?;
                        walk.fetched.insert(url.to_string());
                        client.fetch_page(url, &resource_type).await?
                    }
                    Step::Next(url) => client.fetch_page(url, &resource_type).await?,
                };
                walk.next = match page.next_link().map(|link| client.next_url(link)) {
                    None => Step::Done,
                    Some(Err(error)) => Step::Refused(error),
                    Some(Ok(url)) => client.follow(&mut walk.fetched, url),
                };
                Ok(Some((page, walk)))
            }
        })
    }

    /// The step after a page whose `next` link is `next`: follow it, unless the stream already
    /// fetched that page (a server that loops) or the client's page limit is reached.
    fn follow(&self, fetched: &mut HashSet<String>, next: Url) -> Step {
        if let Some(max) = self.inner.max_pages {
            if fetched.len() >= max {
                return Step::Refused(
                    Error::new(
                        ErrorKind::Limit,
                        format!(
                            "the search has more than {max} pages, the most this client follows (max_pages): the pages so far were delivered"
                        ),
                    )
                    .with_request(RequestInfo::new("GET", &next)),
                );
            }
        }
        if !fetched.insert(next.to_string()) {
            return Step::Refused(
                Error::new(
                    ErrorKind::Decode,
                    format!(
                        "the server's next link leads back to page {} of this search, which was already fetched: the server is paging in a loop, so the search stops here",
                        fetched.len()
                    ),
                )
                .with_request(RequestInfo::new("GET", &next)),
            );
        }
        Step::Next(next)
    }

    /// Every match of a search across all pages, as a stream of resources. Use
    /// `StreamExt::take(n)` to stop after `n`: no page beyond is fetched.
    pub fn resources<T: FhirResource>(
        &self,
        params: &SearchParams,
    ) -> impl Stream<Item = Result<T>> + Send + 'static {
        self.pages::<T>(params)
            .map_ok(|page| stream::iter(page.into_matches().into_iter().map(Ok)))
            .try_flatten()
    }

    /// Collects the matches of every page, stopping after `limit` when given.
    ///
    /// # Errors
    /// The first error of any page.
    pub async fn search_all<T: FhirResource>(
        &self,
        params: &SearchParams,
        limit: Option<usize>,
    ) -> Result<Vec<T>> {
        let stream = self.resources::<T>(params);
        match limit {
            Some(limit) => stream.take(limit).try_collect().await,
            None => stream.try_collect().await,
        }
    }

    /// Creates a resource (`POST [base]/[T::TYPE]`) and returns it as stored (with its id and
    /// version). A create is never retried once it may have reached the server.
    ///
    /// # Errors
    /// [`ErrorKind::Status`] with the server's OperationOutcome when refused.
    pub async fn create<T: FhirResource>(&self, resource: &T) -> Result<T> {
        let body = crate::model::to_vec(resource);
        let mut request = Request::new(Method::POST, self.url(&[T::TYPE])?, FHIR_JSON);
        request.body = Body::Fixed(Bytes::from(body), FHIR_JSON);
        request.repeat = Repeat::OnlyIfNotSent;
        let reply = self.fetch(&request).await?;
        self.written(&request, reply).await
    }

    /// Updates a resource (`PUT [base]/[T::TYPE]/[id]`), with `If-Match` when `if_match` names
    /// the expected version (`"3"` or `W/"3"`), so a concurrent change is refused (412).
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when the resource has no id; [`ErrorKind::Status`] 412 on a
    /// version conflict, or with the server's OperationOutcome when refused.
    pub async fn update<T: FhirResource>(&self, resource: &T, if_match: Option<&str>) -> Result<T> {
        let id = resource
            .id()
            .ok_or_else(|| Error::config("cannot update a resource without an id"))?;
        check_segment(id, "id")?;
        let body = crate::model::to_vec(resource);
        let mut request = Request::new(Method::PUT, self.url(&[T::TYPE, id])?, FHIR_JSON);
        request.body = Body::Fixed(Bytes::from(body), FHIR_JSON);
        // A PUT of the same content is idempotent: repeating it leaves the same state. With
        // If-Match it is not: a repeat after a success would be refused as a conflict.
        if if_match.is_some() {
            request.repeat = Repeat::OnlyIfNotSent;
        }
        if let Some(version) = if_match {
            let etag = if version.starts_with("W/") {
                version.to_owned()
            } else {
                format!("W/\"{}\"", version.trim_matches('"'))
            };
            let value = HeaderValue::from_str(&etag).map_err(|e| {
                Error::config(format!("invalid If-Match `{version}`")).with_source(e)
            })?;
            request.headers.insert(IF_MATCH, value);
        }
        let reply = self.fetch(&request).await?;
        self.written(&request, reply).await
    }

    /// The stored resource after a write: the body, or a read of `Location` when the server
    /// answered without one.
    async fn written<T: FhirResource>(&self, request: &Request, reply: Reply) -> Result<T> {
        if !reply.body.is_empty() {
            return decode(request, &reply.body);
        }
        let location = reply
            .headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Decode,
                    "the server answered the write with neither a body nor a Location",
                )
            })?;
        let url = self.next_url(location)?;
        self.get_json(url).await
    }
}

impl FhirClientBuilder {
    /// Authenticates with OAuth 2.0 Backend Services. Default: no authentication.
    pub fn backend_services(mut self, auth: BackendServicesAuth) -> Self {
        self.auth = Some(Arc::new(auth));
        self
    }

    /// Authenticates with any [`TokenProvider`].
    pub fn token_provider(mut self, provider: Arc<dyn TokenProvider>) -> Self {
        self.auth = Some(provider);
        self
    }

    /// Sends a fixed bearer token. It cannot be refreshed: a 401 is retried once, as for any
    /// token, and then returned as the error.
    pub fn bearer_token(mut self, token: AccessToken) -> Self {
        self.auth = Some(Arc::new(StaticToken::new(token)));
        self
    }

    /// Connect timeout. Default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Timeout of one request attempt, body included. Default 60 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Retry policy for idempotent requests. Default: [`RetryPolicy::default`] (4 attempts,
    /// backoff from 200 ms to 15 s, `Retry-After` up to 60 s, 120 s in all).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Limits requests to `per_second` on average with bursts of `burst`. Default: no limit.
    pub fn rate_limit(mut self, per_second: f64, burst: u32) -> Self {
        if per_second.is_finite() && per_second > 0.0 {
            self.rate = Some((per_second, burst));
        } else {
            self.error = self.error.or_else(|| {
                Some(Error::config(format!(
                    "rate limit {per_second} per second is not a positive number"
                )))
            });
        }
        self
    }

    /// Caps the requests in flight at once. Default: no cap.
    pub fn max_concurrent_requests(mut self, max: usize) -> Self {
        if max == 0 {
            self.error = self
                .error
                .or_else(|| Some(Error::config("max_concurrent_requests must be at least 1")));
        } else {
            self.max_concurrent = Some(max);
        }
        self
    }

    /// The `User-Agent`. Default `epic-fhir-rs/<version>`.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Sends `Epic-Client-ID: <id>` with every request (Epic requires it for calls without
    /// OAuth and recommends it on `/metadata`). Default: not sent.
    pub fn epic_client_id(self, client_id: &str) -> Self {
        self.header("Epic-Client-ID", client_id)
    }

    /// Adds a header to every request.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                self.headers.insert(name, value);
            }
            _ => {
                self.error = self
                    .error
                    .or_else(|| Some(Error::config(format!("invalid header `{name}`"))));
            }
        }
        self
    }

    /// Follows `next` links that point at another origin (sending the token there). Default:
    /// refused, since a token must go only to the server it was issued for.
    pub fn allow_cross_origin_next_links(mut self, allow: bool) -> Self {
        self.allow_foreign_next = allow;
        self
    }

    /// Stops a stream of pages ([`FhirClient::pages`], [`FhirClient::resources`]...) after
    /// `max` pages with an [`ErrorKind::Limit`] error, delivered after the pages. Default: no
    /// limit (a `next` link back to a page already fetched ends a stream in any case).
    pub fn max_pages(mut self, max: usize) -> Self {
        if max == 0 {
            self.error = self
                .error
                .or_else(|| Some(Error::config("max_pages must be at least 1")));
        } else {
            self.max_pages = Some(max);
        }
        self
    }

    /// The most bytes read of each kind of answer (FHIR JSON, error bodies, export manifests).
    /// Default: [`BodyLimits::default`] (64 MiB, 1 MiB, 64 MiB).
    pub fn body_limits(mut self, limits: BodyLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Uses a preconfigured `reqwest::Client` (its timeouts and redirect policy then apply).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] or [`ErrorKind::InsecureUrl`] for invalid settings.
    pub fn build(self) -> Result<FhirClient> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let base = self.base?;
        // The crate's own clients: one that decodes gzip for JSON answers, and one for export
        // files, built at the first download, that leaves it to the download (which decodes
        // in larger pieces). A client given by the caller serves both as configured.
        let settings = ClientSettings {
            user_agent: self.user_agent.clone(),
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            origin: base.origin(),
        };
        let (http, downloads) = match self.http {
            Some(http) => (http, None),
            None => {
                let http = settings.build(true)?;
                let make: MakeClient = Box::new(move || settings.build(false));
                (http, Some(make))
            }
        };
        let mut headers = self.headers;
        if let Ok(value) = HeaderValue::from_str(&self.user_agent) {
            headers.insert(reqwest::header::USER_AGENT, value);
        }
        let engine = Engine::with_home(
            http,
            self.retry,
            self.limits,
            Home {
                base: base.clone(),
                auth: self.auth,
                headers,
                rate_limit: self.rate,
                max_concurrent: self.max_concurrent,
            },
        );
        let engine = match downloads {
            Some(downloads) => engine.with_download_client(downloads),
            None => engine,
        };
        Ok(FhirClient {
            inner: Arc::new(ClientInner {
                engine,
                base,
                allow_foreign_next: self.allow_foreign_next,
                max_pages: self.max_pages,
            }),
        })
    }
}

/// What the crate's own HTTP clients are built with.
struct ClientSettings {
    user_agent: String,
    connect_timeout: Duration,
    request_timeout: Duration,
    /// The FHIR server's origin: the only one redirects are followed to.
    origin: url::Origin,
}

impl ClientSettings {
    /// A pooled client (rustls, HTTP/2 by ALPN) that undoes gzip when `gzip`.
    fn build(&self, gzip: bool) -> Result<reqwest::Client> {
        let origin = self.origin.clone();
        reqwest::Client::builder()
            .user_agent(self.user_agent.clone())
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .gzip(gzip)
            // Redirects are followed only within the FHIR server's origin.
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    attempt.error("too many redirects")
                } else if attempt.url().origin() == origin {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }))
            .build()
            .map_err(|e| Error::config("cannot build the HTTP client").with_source(e))
    }
}

/// Parses a JSON body into `T`, naming the JSON path and keeping an excerpt on failure.
pub(crate) fn decode<T: model::json::FromJson>(request: &Request, body: &[u8]) -> Result<T> {
    model::from_slice::<T>(body).map_err(|e| {
        let mut error = Error::new(
            ErrorKind::Decode,
            format!(
                "the response is not the expected FHIR JSON ({})",
                e.message()
            ),
        )
        .with_request(request.info())
        .with_json_path(e.path().to_owned());
        if let Some(excerpt) = e.excerpt() {
            error = error.with_body_excerpt(excerpt.as_bytes());
        }
        error.with_source(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_change_the_path() {
        for bad in [
            "",
            "..",
            "a/b",
            "a?b",
            "a b",
            "x".repeat(65).as_str(),
            "%2e%2e",
        ] {
            assert!(check_segment(bad, "id").is_err(), "{bad:?}");
        }
        for good in [
            "erXuFYUfucBZaryVksYEcMg3",
            "eD.LxhDyX35TntF77l7etUA3",
            "e0w0LEDCYtfckT6N.CkJKCw3",
            "123",
        ] {
            assert!(check_segment(good, "id").is_ok(), "{good}");
        }
    }

    #[test]
    fn base_url_is_normalised_and_checked() {
        let client = FhirClient::builder("https://fhir.example.org/api/FHIR/R4/")
            .build()
            .expect("client");
        assert_eq!(
            client.base_url().as_str(),
            "https://fhir.example.org/api/FHIR/R4"
        );
        assert_eq!(
            client.url(&["Patient", "1"]).expect("url").as_str(),
            "https://fhir.example.org/api/FHIR/R4/Patient/1"
        );
        let err = FhirClient::builder("http://fhir.example.org/R4")
            .build()
            .expect_err("plain http");
        assert_eq!(err.kind(), ErrorKind::InsecureUrl);
        let err = FhirClient::builder("https://x.example/")
            .rate_limit(0.0, 1)
            .build()
            .expect_err("rate");
        assert_eq!(err.kind(), ErrorKind::Config);
    }

    #[test]
    fn next_links_to_other_origins_are_refused() {
        let client = FhirClient::builder("https://fhir.example.org/R4")
            .build()
            .expect("client");
        assert!(
            client
                .next_url("https://fhir.example.org/R4/Observation?sessionID=x")
                .is_ok()
        );
        assert_eq!(
            client
                .next_url("Observation?sessionID=x")
                .expect("relative")
                .as_str(),
            "https://fhir.example.org/R4/Observation?sessionID=x"
        );
        let err = client
            .next_url("https://evil.example/R4/Observation?sessionID=x")
            .expect_err("foreign");
        assert_eq!(err.kind(), ErrorKind::InsecureUrl);
        let lenient = FhirClient::builder("https://fhir.example.org/R4")
            .allow_cross_origin_next_links(true)
            .build()
            .expect("client");
        assert!(
            lenient
                .next_url("https://other.example/R4/Observation?x")
                .is_ok()
        );
    }
}
