//! The Backend Services token provider: signs assertions, exchanges them for access tokens,
//! and caches the token with single-flight refresh.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use reqwest::Method;
use url::Url;

use super::assertion::{AssertionConfig, sign_assertion};
use super::clock::{Clock, SystemClock};
use super::discovery::SmartConfiguration;
use super::exchange::{CLIENT_ASSERTION_TYPE, IssuedToken, TokenEndpoint, parse_issued};
use super::key::SigningKey;
use super::secret::AccessToken;
use crate::error::{Error, ErrorKind, RequestInfo, Result};
use crate::http::transport::default_auth_client;
use crate::http::{Body, BodyLimits, Engine, Repeat, Request};
use crate::net;
use crate::retry::RetryPolicy;

/// Default time before expiry at which a token is refreshed.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Default bound on one token fetch, retries included.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Lifetime assumed when a token response has no `expires_in`.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// Something that hands out access tokens for FHIR requests.
///
/// The FHIR client calls [`TokenProvider::token`] before each request and
/// [`TokenProvider::invalidate`] when the server answers 401 to a token, then asks again.
pub trait TokenProvider: fmt::Debug + Send + Sync + 'static {
    /// A token that is valid now.
    fn token(&self) -> BoxFuture<'_, Result<AccessToken>>;

    /// Forgets `rejected` if it is still the cached token, so the next call fetches a new one.
    /// A token that has already been replaced is left alone, so that many requests failing
    /// with the same old token cause one refresh, not many.
    fn invalidate(&self, rejected: &AccessToken);
}

/// A fixed bearer token, for servers where the token is obtained some other way.
#[derive(Debug, Clone)]
pub struct StaticToken(AccessToken);

impl StaticToken {
    /// Wraps a token.
    pub fn new(token: AccessToken) -> Self {
        StaticToken(token)
    }
}

impl TokenProvider for StaticToken {
    fn token(&self) -> BoxFuture<'_, Result<AccessToken>> {
        let token = self.0.clone();
        Box::pin(async move { Ok(token) })
    }

    fn invalidate(&self, _rejected: &AccessToken) {}
}

/// A cached token with the time it was requested, for computing its refresh point.
#[derive(Debug)]
struct Cached {
    issued: IssuedToken,
    refresh_at: SystemTime,
}

impl Cached {
    fn new(issued: IssuedToken, sent_at: SystemTime, margin: Duration) -> Self {
        let lifetime = issued
            .expires_at
            .duration_since(sent_at)
            .unwrap_or(Duration::ZERO);
        // A configured margin longer than the token's life would refresh on every call, so the
        // margin never exceeds a quarter of the lifetime (a 2 s token refreshes after 1.5 s).
        let margin = margin.min(lifetime / 4);
        let refresh_at = issued.expires_at.checked_sub(margin).unwrap_or(sent_at);
        Cached { issued, refresh_at }
    }

    fn is_fresh(&self, now: SystemTime) -> bool {
        now < self.refresh_at
    }

    fn is_valid(&self, now: SystemTime) -> bool {
        now < self.issued.expires_at
    }
}

/// OAuth 2.0 Backend Services authentication (SMART App Launch 2.x): a signed JWT assertion is
/// exchanged for an access token, which is cached and refreshed before it expires.
///
/// Cheap to clone; clones share the cache. Guarantees:
/// - every token request carries a freshly signed assertion with a new `jti`;
/// - at most one token request is in flight, however many callers wait (single flight);
/// - a token is refreshed `refresh_margin` before expiry; callers arriving while the refresh
///   runs keep using the still-valid token instead of waiting;
/// - transient token-endpoint failures are retried with backoff, `invalid_client` is not;
/// - a fetch is bounded by `fetch_timeout`.
///
/// ```no_run
/// # async fn run() -> epic_fhir::Result<()> {
/// use epic_fhir::auth::{BackendServicesAuth, SigningKey, TokenProvider};
///
/// let key = SigningKey::from_pem_file("private.pem")?.with_kid("my-key-1");
/// let auth = BackendServicesAuth::builder("my-client-id", key)
///     .discover("https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4")
///     .await?
///     .scope("system/Patient.read system/Observation.read")
///     .build()?;
/// let token = auth.token().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct BackendServicesAuth {
    inner: Arc<Inner>,
}

struct Inner {
    /// Sends token requests: retries, body limit; no token of its own, no redirects.
    engine: Engine,
    key: Arc<SigningKey>,
    assertion: AssertionConfig,
    scope: Option<String>,
    clock: Arc<dyn Clock>,
    refresh_margin: Duration,
    fetch_timeout: Duration,
    default_lifetime: Duration,
    current: RwLock<Option<Arc<Cached>>>,
    fetch_lock: tokio::sync::Mutex<()>,
    /// Bumped each time a fetch ends, so callers that waited for a fetch can tell it happened.
    fetches_finished: AtomicU64,
    last_failure: RwLock<Option<Arc<Error>>>,
}

impl fmt::Debug for BackendServicesAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendServicesAuth")
            .field("client_id", &self.inner.assertion.client_id())
            .field("token_url", &self.inner.assertion.token_url().as_str())
            .field("key", &self.inner.key)
            .field("scope", &self.inner.scope)
            .finish_non_exhaustive()
    }
}

/// Builds a [`BackendServicesAuth`]. Every setter states its default.
#[must_use]
pub struct BackendServicesAuthBuilder {
    client_id: String,
    key: SigningKey,
    token_url: Option<Result<Url>>,
    scope: Option<String>,
    assertion_lifetime: Option<Duration>,
    jku: Option<Result<Url>>,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
    refresh_margin: Duration,
    fetch_timeout: Duration,
    default_lifetime: Duration,
    limits: BodyLimits,
    http: Option<reqwest::Client>,
    error: Option<Error>,
}

impl fmt::Debug for BackendServicesAuthBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendServicesAuthBuilder")
            .field("client_id", &self.client_id)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl BackendServicesAuth {
    /// Starts building authentication for `client_id` signing with `key`.
    pub fn builder(client_id: impl Into<String>, key: SigningKey) -> BackendServicesAuthBuilder {
        BackendServicesAuthBuilder {
            client_id: client_id.into(),
            key,
            token_url: None,
            scope: None,
            assertion_lifetime: None,
            jku: None,
            retry: RetryPolicy::default()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(250)),
            clock: Arc::new(SystemClock),
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            default_lifetime: DEFAULT_TOKEN_LIFETIME,
            limits: BodyLimits::default(),
            http: None,
            error: None,
        }
    }

    /// A token valid now: the cached one, or a new one from the token endpoint.
    ///
    /// # Errors
    /// [`ErrorKind::Auth`] when the token endpoint refuses, [`ErrorKind::Timeout`] when the
    /// fetch exceeds its timeout, [`ErrorKind::Transport`] when it cannot be reached.
    pub async fn access_token(&self) -> Result<AccessToken> {
        // Only the token is cloned (a reference count), not the rest of the issued token: this
        // runs before every FHIR request.
        Ok(self.current_token().await?.issued.access_token.clone())
    }

    /// The current token with its type, scope and expiry, fetching one if needed.
    ///
    /// # Errors
    /// As [`BackendServicesAuth::access_token`].
    pub async fn issued_token(&self) -> Result<IssuedToken> {
        Ok(self.current_token().await?.issued.clone())
    }

    /// The cached token if it is fresh, else the result of (or the wait for) one fetch.
    async fn current_token(&self) -> Result<Arc<Cached>> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let snapshot = inner.current();
        if let Some(cached) = &snapshot {
            if cached.is_fresh(now) {
                return Ok(Arc::clone(cached));
            }
        }
        let still_valid = snapshot.filter(|c| c.is_valid(now));
        let seen_fetches = inner.fetches_finished.load(Ordering::Acquire);
        let _guard = match &still_valid {
            // Someone is already refreshing: keep using the token that is still valid.
            Some(valid) => match inner.fetch_lock.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Ok(Arc::clone(valid)),
            },
            None => inner.fetch_lock.lock().await,
        };
        // Another caller may have fetched while this one waited for the lock.
        let now = inner.clock.now();
        if let Some(cached) = inner.current() {
            if cached.is_fresh(now) {
                return Ok(cached);
            }
        }
        if inner.fetches_finished.load(Ordering::Acquire) != seen_fetches {
            // The fetch this caller waited for failed; share its error instead of starting
            // another round of requests for every waiter.
            let failure = inner
                .last_failure
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if let Some(failure) = failure {
                return Err(Error::shared(&failure));
            }
        }
        let result = match tokio::time::timeout(inner.fetch_timeout, self.fetch()).await {
            Ok(result) => result,
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "token request took longer than {} s",
                    inner.fetch_timeout.as_secs_f64()
                ),
            )
            .with_request(RequestInfo::new("POST", inner.assertion.token_url()))),
        };
        let outcome = match result {
            Ok((issued, sent_at)) => {
                let cached = Arc::new(Cached::new(issued, sent_at, inner.refresh_margin));
                *inner
                    .current
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&cached));
                *inner
                    .last_failure
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = None;
                Ok(cached)
            }
            Err(error) => {
                let error = Arc::new(error);
                *inner
                    .last_failure
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&error));
                match still_valid.filter(|c| c.is_valid(inner.clock.now())) {
                    Some(valid) => {
                        tracing::warn!(
                            target: "epic_fhir::auth",
                            error = %error,
                            "token refresh failed; using the current token until it expires"
                        );
                        Ok(valid)
                    }
                    None => Err(Error::shared(&error)),
                }
            }
        };
        inner.fetches_finished.fetch_add(1, Ordering::AcqRel);
        outcome
    }

    /// Forgets `rejected` if it is the cached token (see [`TokenProvider::invalidate`]).
    pub fn invalidate_token(&self, rejected: &AccessToken) {
        let mut current = self
            .inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if current
            .as_ref()
            .is_some_and(|c| &c.issued.access_token == rejected)
        {
            tracing::debug!(target: "epic_fhir::auth", "access token rejected by the server; it will be refreshed");
            *current = None;
        }
    }

    /// Forgets the cached token, whatever it is.
    pub fn clear(&self) {
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The number of requests sent to the token endpoint so far (retries included).
    pub fn token_requests(&self) -> u64 {
        self.inner.engine.requests_sent()
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        self.inner.assertion.client_id()
    }

    /// The token endpoint URL.
    pub fn token_url(&self) -> &Url {
        self.inner.assertion.token_url()
    }

    /// The signing key.
    pub fn key(&self) -> &SigningKey {
        &self.inner.key
    }

    /// Signs a new client assertion, as sent with each token request. Useful for debugging a
    /// registration with a JWT inspector.
    ///
    /// # Errors
    /// [`ErrorKind::Key`] if signing fails.
    pub fn sign_assertion(&self) -> Result<String> {
        sign_assertion(
            &self.inner.key,
            &self.inner.assertion,
            self.inner.clock.now(),
        )
    }

    /// One token fetch, retried by the engine. Returns the token and the time its (last)
    /// request was sent.
    async fn fetch(&self) -> Result<(IssuedToken, SystemTime)> {
        let inner = &self.inner;
        let url = inner.assertion.token_url().clone();
        let signed_at = Arc::new(std::sync::Mutex::new(inner.clock.now()));
        let sign = {
            let inner = Arc::clone(&self.inner);
            let signed_at = Arc::clone(&signed_at);
            move || -> Result<Bytes> {
                let now = inner.clock.now();
                // A new assertion for every attempt: the previous one's jti may have been
                // consumed.
                let assertion = sign_assertion(&inner.key, &inner.assertion, now)?;
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "client_credentials")
                    .append_pair("client_assertion_type", CLIENT_ASSERTION_TYPE)
                    .append_pair("client_assertion", &assertion);
                if let Some(scope) = &inner.scope {
                    form.append_pair("scope", scope);
                }
                *signed_at.lock().unwrap_or_else(PoisonError::into_inner) = now;
                Ok(Bytes::from(form.finish()))
            }
        };
        let mut request = Request::new(Method::POST, url.clone(), "application/json");
        request.body = Body::PerAttempt(Arc::new(sign), "application/x-www-form-urlencoded");
        // Each attempt carries a new assertion, and a second token is harmless: a token
        // request may be repeated.
        request.repeat = Repeat::Always;
        let reply = inner
            .engine
            .fetch(&request, &TokenEndpoint, inner.engine.limits().token)
            .await?;
        let sent_at = *signed_at.lock().unwrap_or_else(PoisonError::into_inner);
        let issued = parse_issued(
            &url,
            reply.status.as_u16(),
            &reply.body,
            sent_at,
            inner.default_lifetime,
        )?;
        tracing::debug!(
            target: "epic_fhir::auth",
            token_url = %url,
            expires_in = ?issued.expires_in,
            "access token issued"
        );
        Ok((issued, sent_at))
    }
}

impl Inner {
    fn current(&self) -> Option<Arc<Cached>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl TokenProvider for BackendServicesAuth {
    fn token(&self) -> BoxFuture<'_, Result<AccessToken>> {
        Box::pin(self.access_token())
    }

    fn invalidate(&self, rejected: &AccessToken) {
        self.invalidate_token(rejected);
    }
}

impl BackendServicesAuthBuilder {
    /// The token endpoint URL (the assertion's `aud`). Required unless [`Self::discover`] or
    /// [`Self::smart_configuration`] supplies it. Must be `https`, or `http` on loopback.
    pub fn token_url(mut self, url: impl AsRef<str>) -> Self {
        self.token_url = Some(net::parse_secure_url(url.as_ref(), "token URL"));
        self
    }

    /// Takes the token URL from a SMART configuration, after checking that it supports
    /// `private_key_jwt` and this key's algorithm when it lists what it supports.
    pub fn smart_configuration(mut self, config: &SmartConfiguration) -> Self {
        match config.check_backend_services(self.key.algorithm()) {
            Ok(()) => {
                self.token_url = Some(
                    net::check_secure_url(&config.token_endpoint, "token URL")
                        .map(|()| config.token_endpoint.clone()),
                );
            }
            Err(error) => self.error = self.error.or(Some(error)),
        }
        self
    }

    /// Discovers the token URL from `{fhir_base}/.well-known/smart-configuration` (falling back
    /// to the CapabilityStatement) and checks it as [`Self::smart_configuration`] does.
    ///
    /// # Errors
    /// [`ErrorKind::Discovery`] when no token endpoint can be found, plus transport errors.
    pub async fn discover(self, fhir_base: impl AsRef<str>) -> Result<Self> {
        let base = net::parse_secure_url(fhir_base.as_ref(), "FHIR base URL")?;
        let http = match &self.http {
            Some(http) => http.clone(),
            None => default_auth_client()?,
        };
        let engine = Engine::new(http, self.retry.clone(), self.limits);
        let config = SmartConfiguration::discover_with(&engine, &base).await?;
        Ok(self.smart_configuration(&config))
    }

    /// The `scope` sent with each token request, e.g. `system/Patient.read`. Default: none (Epic
    /// grants what the app was registered for; SMART servers may require it).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        let scope = scope.into();
        self.scope = (!scope.trim().is_empty()).then_some(scope);
        self
    }

    /// How long each assertion is valid. Default and maximum: 300 seconds.
    pub fn assertion_lifetime(mut self, lifetime: Duration) -> Self {
        self.assertion_lifetime = Some(lifetime);
        self
    }

    /// A `jku` header (the registered JWK Set URL) for every assertion. Default: none.
    pub fn jku(mut self, url: impl AsRef<str>) -> Self {
        self.jku = Some(net::parse_secure_url(url.as_ref(), "JWK Set URL"));
        self
    }

    /// How long before expiry a token is refreshed. Default 60 s, and never more than a quarter
    /// of the token's lifetime.
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// The bound on one token fetch, retries included. Default 30 s.
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// The lifetime assumed when a token response has no `expires_in`. Default 300 s.
    pub fn default_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.default_lifetime = lifetime;
        self
    }

    /// How transient token-endpoint failures are retried. Default: 3 attempts, backoff from
    /// 250 ms.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The clock for assertion timestamps and token expiry. Default: the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The most bytes read of token answers, error bodies and discovery documents. Default:
    /// [`BodyLimits::default`] (1 MiB, 1 MiB, 16 MiB).
    pub fn body_limits(mut self, limits: BodyLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The HTTP client for token requests. Default: a client with rustls, a 10 s connect
    /// timeout, a 30 s request timeout and no redirects (an assertion must never be sent to
    /// another URL than its `aud`).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Builds the provider.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for a missing or invalid token URL, an empty client id or an
    /// assertion lifetime over 300 s; [`ErrorKind::InsecureUrl`] for `http://` to a non-loopback
    /// host; [`ErrorKind::Discovery`] when the discovered server lacks what is needed.
    pub fn build(self) -> Result<BackendServicesAuth> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let token_url = self.token_url.ok_or_else(|| {
            Error::config("no token URL: set one, or discover it from the FHIR base URL")
        })??;
        let mut assertion = AssertionConfig::new(self.client_id, token_url)?;
        if let Some(lifetime) = self.assertion_lifetime {
            assertion = assertion.with_lifetime(lifetime)?;
        }
        if let Some(jku) = self.jku {
            assertion = assertion.with_jku(jku?);
        }
        let http = match self.http {
            Some(http) => http,
            None => default_auth_client()?,
        };
        Ok(BackendServicesAuth {
            inner: Arc::new(Inner {
                engine: Engine::new(http, self.retry, self.limits),
                key: Arc::new(self.key),
                assertion,
                scope: self.scope,
                clock: self.clock,
                refresh_margin: self.refresh_margin,
                fetch_timeout: self.fetch_timeout,
                default_lifetime: self.default_lifetime,
                current: RwLock::new(None),
                fetch_lock: tokio::sync::Mutex::new(()),
                fetches_finished: AtomicU64::new(0),
                last_failure: RwLock::new(None),
            }),
        })
    }
}
