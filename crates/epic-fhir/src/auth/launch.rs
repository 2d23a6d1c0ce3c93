//! SMART App Launch for apps a person signs in to (patient portals): the authorization URL
//! with PKCE S256, the callback, the code exchange, id_token verification and the launch
//! context, for both standalone launches and EHR launches.
//!
//! ```no_run
//! # async fn run(callback_query: &str) -> epic_fhir::Result<()> {
//! use epic_fhir::auth::{SmartApp, UserSessionAuth};
//!
//! let app = SmartApp::builder("my-portal", "https://portal.example/callback")
//!     .scope("openid fhirUser launch/patient patient/*.rs offline_access")
//!     .build()?;
//! // 1. Send the browser to the server's login page; keep `pending` in the user's session.
//! let request = app
//!     .standalone("https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4")
//!     .await?;
//! println!("redirect to {}", request.url);
//! // 2. On the callback, check it and exchange the code.
//! let session = app.callback(&request.pending, callback_query).await?;
//! println!("patient {:?}", session.patient);
//! // 3. A token provider that refreshes, for FhirClient::builder(...).token_provider(...).
//! let auth = UserSessionAuth::new(&app, session);
//! # let _ = auth; Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use base64::Engine as _;
use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::assertion::{AssertionConfig, sign_assertion};
use super::clock::{Clock, SystemClock};
use super::discovery::SmartConfiguration;
use super::exchange::{CLIENT_ASSERTION_TYPE, IssuedToken, TokenEndpoint, parse_issued};
use super::key::SigningKey;
use super::session::UserSession;
use crate::error::{Error, ErrorKind, OAuthError, Result};
use crate::http::transport::default_auth_client;
use crate::http::{
    Body, BodyLimits, Classify, Decision, Engine, Refused, Repeat, Request, RetryReason,
    retry_after, retryable_status,
};
use crate::net;
use crate::retry::RetryPolicy;

/// How long an id_token's `exp` may have passed and its `iat` lie ahead (clock skew).
pub const ID_TOKEN_LEEWAY: Duration = Duration::from_secs(60);
/// How long a fetched JWK Set of id_token keys is used before it is fetched again.
const JWKS_CACHE: Duration = Duration::from_secs(3600);
/// The least time between two fetches of a JWK Set caused by an unknown `kid`.
const JWKS_REFETCH: Duration = Duration::from_secs(10);
/// Lifetime assumed when a token response has no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `bytes` random bytes from the system CSPRNG, base64url.
fn random(bytes: usize) -> Result<String> {
    let mut buffer = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buffer)
        .map_err(|_| Error::new(ErrorKind::Config, "the system random generator failed"))?;
    Ok(b64url(&buffer))
}

fn launch_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Launch, message)
}

/// A JWK Set's non-2xx answer: a launch error, retried when the status is transient.
struct JwksStatus;

impl Classify for JwksStatus {
    fn classify(&self, refused: &Refused<'_>) -> Decision {
        let status = refused.status.as_u16();
        let error = launch_error(format!(
            "the JWK Set at {} answered HTTP {status}",
            refused.request.url
        ))
        .with_request(refused.request.info())
        .with_status(status)
        .with_retry_after(retry_after(refused.headers));
        if retryable_status(refused.status) {
            Decision::Retry {
                reason: RetryReason::Status(status),
                error,
            }
        } else {
            Decision::Fail(error)
        }
    }
}

/// An OAuth client secret. `Debug` prints `[redacted]`.
#[derive(Clone)]
pub struct ClientSecret(Arc<str>);

impl ClientSecret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        ClientSecret(Arc::from(secret.into()))
    }

    /// The secret.
    ///
    /// # Security Warning
    /// Send it only to the token endpoint, in an `Authorization: Basic` header.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret([redacted])")
    }
}

/// How the app authenticates at the token endpoint.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientAuth {
    /// A public app (a browser or native app): only its `client_id`.
    Public,
    /// A confidential app with a secret, sent with HTTP Basic.
    Secret(ClientSecret),
    /// A confidential app with a key: a signed client assertion (`private_key_jwt`).
    PrivateKey(Arc<SigningKey>),
}

/// A SMART app: its registration, and the launches it starts. Cheap to clone.
#[derive(Clone)]
pub struct SmartApp {
    inner: Arc<AppInner>,
}

struct AppInner {
    client_id: String,
    redirect_uri: Url,
    scope: String,
    auth: ClientAuth,
    allowed_issuers: Vec<Url>,
    engine: Engine,
    clock: Arc<dyn Clock>,
    jwks: Mutex<HashMap<String, CachedJwks>>,
}

struct CachedJwks {
    keys: Arc<Vec<Value>>,
    fetched: Instant,
}

impl fmt::Debug for SmartApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmartApp")
            .field("client_id", &self.inner.client_id)
            .field("redirect_uri", &self.inner.redirect_uri.as_str())
            .field("scope", &self.inner.scope)
            .field("auth", &self.inner.auth)
            .finish_non_exhaustive()
    }
}

/// Builds a [`SmartApp`]. Every setter states its default.
#[must_use]
pub struct SmartAppBuilder {
    client_id: String,
    redirect_uri: Result<Url>,
    scope: String,
    auth: ClientAuth,
    allowed_issuers: Vec<Result<Url>>,
    http: Option<reqwest::Client>,
    retry: RetryPolicy,
    limits: BodyLimits,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for SmartAppBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmartAppBuilder")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl SmartApp {
    /// Starts building an app registered as `client_id` with `redirect_uri`.
    pub fn builder(client_id: impl Into<String>, redirect_uri: impl AsRef<str>) -> SmartAppBuilder {
        SmartAppBuilder {
            client_id: client_id.into(),
            redirect_uri: net::parse_secure_url(redirect_uri.as_ref(), "redirect URI"),
            scope: "openid fhirUser launch/patient patient/*.rs offline_access".to_owned(),
            auth: ClientAuth::Public,
            allowed_issuers: Vec::new(),
            http: None,
            retry: RetryPolicy::default(),
            limits: BodyLimits::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// The redirect URI.
    pub fn redirect_uri(&self) -> &Url {
        &self.inner.redirect_uri
    }

    /// The scopes asked for.
    pub fn scope(&self) -> &str {
        &self.inner.scope
    }

    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// A standalone launch: discovers `fhir_base`'s endpoints and builds the authorization
    /// URL, with a new `state`, PKCE verifier and `nonce` (from the system CSPRNG).
    ///
    /// # Errors
    /// [`ErrorKind::Discovery`] when the server has no authorization endpoint or does not
    /// support PKCE S256; transport errors.
    pub async fn standalone(&self, fhir_base: impl AsRef<str>) -> Result<AuthorizationRequest> {
        let base = net::parse_secure_url(fhir_base.as_ref(), "FHIR base URL")?;
        self.authorization_request(base, None).await
    }

    /// An EHR launch: the EHR opened the app's launch URL with `iss` and `launch`. `iss` must
    /// be one of the allowed issuers (an app that follows any `iss` can be sent to a server
    /// that phishes the user or collects the code); then its endpoints are discovered.
    ///
    /// # Errors
    /// [`ErrorKind::Launch`] for an `iss` outside the allow-list or an empty `launch`; as
    /// [`SmartApp::standalone`] otherwise.
    pub async fn ehr_launch(&self, iss: &str, launch: &str) -> Result<AuthorizationRequest> {
        if launch.is_empty() {
            return Err(launch_error("the EHR launch has no launch parameter"));
        }
        let base = net::parse_secure_url(iss, "iss")?;
        let allowed = self
            .inner
            .allowed_issuers
            .iter()
            .any(|allowed| same_base(allowed, &base));
        if !allowed {
            return Err(launch_error(format!(
                "iss {iss} is not one of the FHIR servers this app trusts: add it to the app's allowed issuers"
            )));
        }
        self.authorization_request(base, Some(launch.to_owned()))
            .await
    }

    async fn authorization_request(
        &self,
        base: Url,
        launch: Option<String>,
    ) -> Result<AuthorizationRequest> {
        let config = SmartConfiguration::discover_with(&self.inner.engine, &base).await?;
        let authorization_endpoint = config.authorization_endpoint.clone().ok_or_else(|| {
            Error::new(
                ErrorKind::Discovery,
                format!(
                    "{base} names no authorization endpoint: it does not support SMART App Launch"
                ),
            )
        })?;
        if !config.code_challenge_methods_supported.is_empty()
            && !config
                .code_challenge_methods_supported
                .iter()
                .any(|m| m == "S256")
        {
            return Err(Error::new(
                ErrorKind::Discovery,
                format!(
                    "{base} does not support PKCE S256 (it lists {})",
                    config.code_challenge_methods_supported.join(", ")
                ),
            ));
        }
        let mut scope = self.inner.scope.clone();
        if launch.is_some() && !scope.split_whitespace().any(|s| s == "launch") {
            scope = format!("launch {scope}");
        }
        let state = random(32)?;
        let verifier = random(32)?;
        let nonce = random(24)?;
        let challenge = b64url(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref(),
        );
        let mut url = authorization_endpoint.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &self.inner.client_id)
                .append_pair("redirect_uri", self.inner.redirect_uri.as_str())
                .append_pair("scope", &scope)
                .append_pair("state", &state)
                .append_pair("aud", base.as_str().trim_end_matches('/'))
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            if scope.split_whitespace().any(|s| s == "openid") {
                query.append_pair("nonce", &nonce);
            }
            if let Some(launch) = &launch {
                query.append_pair("launch", launch);
            }
        }
        Ok(AuthorizationRequest {
            url,
            pending: PendingAuthorization {
                state,
                code_verifier: verifier,
                nonce,
                fhir_base: base,
                token_endpoint: config.token_endpoint,
                issuer: config.issuer,
                jwks_uri: config.jwks_uri,
                redirect_uri: self.inner.redirect_uri.clone(),
                scope,
                ehr_launch: launch.is_some(),
            },
        })
    }

    /// Handles the callback: `query` is the query string the browser brought back (with or
    /// without a leading `?`). Checks `state`, turns an `error` into a typed error, exchanges
    /// the code, and verifies the id_token when `openid` was asked.
    ///
    /// # Errors
    /// [`ErrorKind::Launch`] when `state` does not match (a forged or replayed callback) or
    /// there is no code, or the id_token does not verify; [`ErrorKind::Auth`] with
    /// [`Error::oauth`] when the server sent an error (`access_denied` when the user said
    /// no) or refused the code.
    pub async fn callback(
        &self,
        pending: &PendingAuthorization,
        query: &str,
    ) -> Result<UserSession> {
        let params: HashMap<String, String> =
            url::form_urlencoded::parse(query.trim_start_matches('?').as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        let state = params.get("state").map(String::as_str).unwrap_or("");
        if aws_lc_rs::constant_time::verify_slices_are_equal(
            state.as_bytes(),
            pending.state.as_bytes(),
        )
        .is_err()
        {
            return Err(launch_error(
                "the callback's state does not match the authorization request: it was not started here (or was already handled)",
            ));
        }
        if let Some(error) = params.get("error") {
            let oauth = OAuthError {
                error: error.clone(),
                description: params.get("error_description").cloned(),
                uri: params.get("error_uri").cloned(),
                status: 302,
            };
            return Err(
                Error::new(ErrorKind::Auth, format!("authorization refused: {oauth}"))
                    .with_oauth(oauth),
            );
        }
        let code = params
            .get("code")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| launch_error("the callback carries neither a code nor an error"))?;
        self.exchange_code(pending, code).await
    }

    /// Exchanges an authorization code (from [`SmartApp::callback`], or received otherwise).
    ///
    /// # Errors
    /// As [`SmartApp::callback`].
    pub async fn exchange_code(
        &self,
        pending: &PendingAuthorization,
        code: &str,
    ) -> Result<UserSession> {
        let form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", pending.redirect_uri.to_string()),
            ("code_verifier", pending.code_verifier.clone()),
        ];
        // A code is single use: the request is not retried.
        let (issued, extra) = self.token_request(&pending.token_endpoint, form).await?;
        let openid = issued
            .scope
            .as_deref()
            .unwrap_or(&pending.scope)
            .split_whitespace()
            .any(|s| s == "openid");
        let claims = match (&extra.id_token, openid) {
            (Some(id_token), _) => Some(
                self.verify_id_token(pending, id_token, Some(&pending.nonce))
                    .await?,
            ),
            (None, true) => {
                return Err(launch_error(
                    "openid was granted but the token response has no id_token",
                ));
            }
            (None, false) => None,
        };
        Ok(UserSession::from_response(
            &self.inner.client_id,
            pending,
            issued,
            extra,
            claims,
        ))
    }

    /// Sends a token request with the app's client authentication.
    pub(crate) async fn token_request(
        &self,
        token_url: &Url,
        mut form: Vec<(&'static str, String)>,
    ) -> Result<(IssuedToken, TokenExtras)> {
        let inner = &self.inner;
        let mut request = Request::new(Method::POST, token_url.clone(), "application/json");
        let signed_at = Arc::new(Mutex::new(inner.clock.now()));
        let sign: Option<(Arc<SigningKey>, AssertionConfig)> = match &inner.auth {
            ClientAuth::Public => {
                form.push(("client_id", inner.client_id.clone()));
                None
            }
            ClientAuth::Secret(secret) => {
                // RFC 6749 §2.3.1: both parts are form-encoded before Basic encoding.
                let encode = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                let basic = base64::engine::general_purpose::STANDARD.encode(
                    format!(
                        "{}:{}",
                        encode(&inner.client_id),
                        encode(secret.expose_secret())
                    )
                    .as_bytes(),
                );
                let mut value = HeaderValue::from_str(&format!("Basic {basic}")).map_err(|_| {
                    Error::config("the client id or secret cannot be sent in a header")
                })?;
                value.set_sensitive(true);
                request = request.header(AUTHORIZATION, value);
                None
            }
            ClientAuth::PrivateKey(key) => Some((
                Arc::clone(key),
                AssertionConfig::new(inner.client_id.clone(), token_url.clone())?,
            )),
        };
        let make = {
            let app = Arc::clone(&self.inner);
            let signed_at = Arc::clone(&signed_at);
            move || -> Result<Bytes> {
                let now = app.clock.now();
                let mut body = url::form_urlencoded::Serializer::new(String::new());
                for (name, value) in &form {
                    body.append_pair(name, value);
                }
                if let Some((key, config)) = &sign {
                    // A new assertion for every attempt: the server may have consumed the jti.
                    let assertion = sign_assertion(key, config, now)?;
                    body.append_pair("client_assertion_type", CLIENT_ASSERTION_TYPE)
                        .append_pair("client_assertion", &assertion);
                }
                *signed_at.lock().unwrap_or_else(PoisonError::into_inner) = now;
                Ok(Bytes::from(body.finish()))
            }
        };
        request.body = Body::PerAttempt(Arc::new(make), "application/x-www-form-urlencoded");
        // A code is single-use and a refresh token rotates (a replay revokes its family): send
        // again after an error answer (nothing was issued) or when the request never left, never
        // after a lost answer, which may have consumed the code or rotated the token.
        request.repeat = Repeat::AfterErrorAnswer;
        let reply = inner
            .engine
            .fetch(&request, &TokenEndpoint, inner.engine.limits().token)
            .await?;
        let sent_at = *signed_at.lock().unwrap_or_else(PoisonError::into_inner);
        let body = reply.body;
        let issued = parse_issued(
            token_url,
            reply.status.as_u16(),
            &body,
            sent_at,
            DEFAULT_LIFETIME,
        )?;
        let extra: TokenExtras = serde_json::from_slice(&body).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                "the token response's launch context is malformed",
            )
            .with_request(request.info())
            .with_source(e)
        })?;
        Ok((issued, extra))
    }

    /// Verifies an id_token: signature with the server's published keys (RS256/384/512,
    /// ES256/384; never `none` or HMAC), `iss`, `aud`, `exp`, `iat` and `nonce`.
    pub(crate) async fn verify_id_token(
        &self,
        pending: &PendingAuthorization,
        id_token: &str,
        nonce: Option<&str>,
    ) -> Result<IdTokenClaims> {
        let parts: Vec<&str> = id_token.split('.').collect();
        if parts.len() != 3 {
            return Err(launch_error(
                "the id_token is not a signed JWT (three parts)",
            ));
        }
        let decode = |part: &str, what: &str| -> Result<Value> {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| launch_error(format!("the id_token {what} is not base64url")))?;
            serde_json::from_slice(&bytes)
                .map_err(|_| launch_error(format!("the id_token {what} is not JSON")))
        };
        let header = decode(parts[0], "header")?;
        let claims = decode(parts[1], "payload")?;
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[2])
            .map_err(|_| launch_error("the id_token signature is not base64url"))?;
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
        if !matches!(alg, "RS256" | "RS384" | "RS512" | "ES256" | "ES384") {
            return Err(launch_error(format!(
                "the id_token is signed with alg `{alg}`: only RS256, RS384, RS512, ES256 and ES384 are accepted"
            )));
        }
        let jwks_uri = pending.jwks_uri.as_ref().ok_or_else(|| {
            launch_error("the server publishes no jwks_uri, so its id_token cannot be verified")
        })?;
        let kid = header.get("kid").and_then(Value::as_str);
        let key = self.find_key(jwks_uri, kid).await?;
        let signed = &id_token[..parts[0].len() + 1 + parts[1].len()];
        if !verify_signature(&key, alg, signed.as_bytes(), &signature)? {
            return Err(launch_error(
                "the id_token signature does not verify with the server's published key",
            ));
        }
        let expected_issuer = pending
            .issuer
            .clone()
            .unwrap_or_else(|| pending.fhir_base.to_string());
        let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
        if iss.trim_end_matches('/') != expected_issuer.trim_end_matches('/') {
            return Err(launch_error(format!(
                "the id_token's iss `{iss}` is not the server's issuer `{expected_issuer}`"
            )));
        }
        let client_id = &self.inner.client_id;
        let aud_ok = match claims.get("aud") {
            Some(Value::String(aud)) => aud == client_id,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(client_id)),
            _ => false,
        };
        if !aud_ok {
            return Err(launch_error(format!(
                "the id_token's aud {} is not this app ({client_id})",
                claims.get("aud").map(Value::to_string).unwrap_or_default()
            )));
        }
        let now = self
            .inner
            .clock
            .now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let leeway = ID_TOKEN_LEEWAY.as_secs() as i64;
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or_else(|| launch_error("the id_token has no exp"))?;
        if exp + leeway <= now {
            return Err(launch_error(format!(
                "the id_token expired at {exp} (now {now})"
            )));
        }
        if let Some(iat) = claims.get("iat").and_then(Value::as_i64) {
            if iat > now + leeway {
                return Err(launch_error(format!(
                    "the id_token was issued in the future ({iat}, now {now}): check the clocks"
                )));
            }
        }
        if let Some(nonce) = nonce {
            if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
                return Err(launch_error(
                    "the id_token's nonce is not the one of the authorization request",
                ));
            }
        }
        Ok(IdTokenClaims {
            sub: claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            fhir_user: claims
                .get("fhirUser")
                .and_then(Value::as_str)
                .map(str::to_owned),
            iss: iss.to_owned(),
            exp,
            claims,
        })
    }

    /// The key `kid` of the JWK Set at `jwks_uri` (cached; fetched again for an unknown
    /// `kid`, at most every 10 s).
    async fn find_key(&self, jwks_uri: &Url, kid: Option<&str>) -> Result<Value> {
        let pick = |keys: &[Value]| -> Option<Value> {
            let signing = keys.iter().filter(|k| {
                k.get("use")
                    .and_then(Value::as_str)
                    .is_none_or(|u| u == "sig")
            });
            match kid {
                Some(kid) => signing
                    .clone()
                    .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
                    .cloned(),
                None => {
                    let all: Vec<&Value> = signing.collect();
                    (all.len() == 1).then(|| all[0].clone())
                }
            }
        };
        let cached = {
            let cache = self
                .inner
                .jwks
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            cache
                .get(jwks_uri.as_str())
                .map(|c| (Arc::clone(&c.keys), c.fetched.elapsed()))
        };
        if let Some((keys, age)) = &cached {
            if *age < JWKS_CACHE {
                if let Some(key) = pick(keys) {
                    return Ok(key);
                }
                if *age < JWKS_REFETCH {
                    return Err(launch_error(format!(
                        "no key of {jwks_uri} has kid {}",
                        kid.unwrap_or("(none)")
                    )));
                }
            }
        }
        net::check_secure_url(jwks_uri, "jwks_uri")?;
        let request = Request::get(jwks_uri.clone(), "application/json");
        let reply = self
            .inner
            .engine
            .fetch(&request, &JwksStatus, self.inner.engine.limits().discovery)
            .await?;
        let body = reply.body;
        let document: Value = serde_json::from_slice(&body).map_err(|e| {
            launch_error(format!("the JWK Set at {jwks_uri} is not JSON")).with_source(e)
        })?;
        let keys: Vec<Value> = document
            .get("keys")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| launch_error(format!("the JWK Set at {jwks_uri} has no keys")))?;
        let keys = Arc::new(keys);
        self.inner
            .jwks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                jwks_uri.to_string(),
                CachedJwks {
                    keys: Arc::clone(&keys),
                    fetched: Instant::now(),
                },
            );
        pick(&keys).ok_or_else(|| {
            launch_error(format!(
                "no key of {jwks_uri} has kid {}",
                kid.unwrap_or("(none, and the set does not hold exactly one key)")
            ))
        })
    }
}

/// Whether two FHIR base URLs are the same, a trailing slash aside.
fn same_base(a: &Url, b: &Url) -> bool {
    a.as_str().trim_end_matches('/') == b.as_str().trim_end_matches('/')
}

/// Verifies a JWS signature with a public JWK; the key's type decides the algorithms.
fn verify_signature(jwk: &Value, alg: &str, message: &[u8], sig: &[u8]) -> Result<bool> {
    let field = |name: &str| -> Result<Vec<u8>> {
        let text = jwk
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| launch_error(format!("the id_token key has no `{name}`")))?;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|_| launch_error(format!("the id_token key's `{name}` is not base64url")))
    };
    match (jwk.get("kty").and_then(Value::as_str), alg) {
        (Some("RSA"), "RS256" | "RS384" | "RS512") => {
            let params = match alg {
                "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                _ => &signature::RSA_PKCS1_2048_8192_SHA512,
            };
            let (n, e) = (field("n")?, field("e")?);
            Ok(signature::RsaPublicKeyComponents { n: &n, e: &e }
                .verify(params, message, sig)
                .is_ok())
        }
        (Some("EC"), "ES256" | "ES384") => {
            let (algorithm, curve): (&dyn VerificationAlgorithm, &str) = if alg == "ES256" {
                (&signature::ECDSA_P256_SHA256_FIXED, "P-256")
            } else {
                (&signature::ECDSA_P384_SHA384_FIXED, "P-384")
            };
            if jwk.get("crv").and_then(Value::as_str) != Some(curve) {
                return Err(launch_error(format!(
                    "the id_token is signed with {alg} but its key is not on {curve}"
                )));
            }
            let mut point = vec![0x04];
            point.extend(field("x")?);
            point.extend(field("y")?);
            Ok(UnparsedPublicKey::new(algorithm, &point)
                .verify(message, sig)
                .is_ok())
        }
        (kty, _) => Err(launch_error(format!(
            "the id_token's alg {alg} does not fit its key (kty {})",
            kty.unwrap_or("missing")
        ))),
    }
}

impl SmartAppBuilder {
    /// The scopes to ask for. Default
    /// `openid fhirUser launch/patient patient/*.rs offline_access`. For an EHR launch,
    /// `launch` is added when missing.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }

    /// Authenticates as a confidential app with a client secret (HTTP Basic). Default: a
    /// public app.
    pub fn client_secret(mut self, secret: ClientSecret) -> Self {
        self.auth = ClientAuth::Secret(secret);
        self
    }

    /// Authenticates as a confidential app with a key (`private_key_jwt`). Default: a public
    /// app.
    pub fn private_key(mut self, key: SigningKey) -> Self {
        self.auth = ClientAuth::PrivateKey(Arc::new(key));
        self
    }

    /// Trusts EHR launches from the FHIR server `iss`. Default: none (every EHR launch is
    /// refused until one is allowed).
    pub fn allowed_issuer(mut self, iss: impl AsRef<str>) -> Self {
        self.allowed_issuers
            .push(net::parse_secure_url(iss.as_ref(), "allowed issuer"));
        self
    }

    /// The HTTP client for discovery, token and key requests. Default: rustls, 10 s connect
    /// and 30 s request timeouts, no redirects.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// How discovery, token and key requests are retried. Default: [`RetryPolicy::default`];
    /// a code exchange or refresh is sent again only when it cannot have reached the server.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The largest discovery document, token response and JWK Set read (after decompression).
    /// Default: [`BodyLimits::default`].
    pub fn body_limits(mut self, limits: BodyLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The clock for token expiry and id_token checks. Default: the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the app.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for an empty client id or scope or a bad URL;
    /// [`ErrorKind::InsecureUrl`] for plain http to a non-loopback host.
    pub fn build(self) -> Result<SmartApp> {
        if self.client_id.is_empty() {
            return Err(Error::config("the client id is empty"));
        }
        if self.scope.trim().is_empty() {
            return Err(Error::config("the scope is empty"));
        }
        let redirect_uri = self.redirect_uri?;
        let allowed_issuers = self
            .allowed_issuers
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        let http = match self.http {
            Some(http) => http,
            None => default_auth_client()?,
        };
        Ok(SmartApp {
            inner: Arc::new(AppInner {
                client_id: self.client_id,
                redirect_uri,
                scope: self.scope,
                auth: self.auth,
                allowed_issuers,
                engine: Engine::new(http, self.retry, self.limits),
                clock: self.clock,
                jwks: Mutex::new(HashMap::new()),
            }),
        })
    }
}

/// Where to send the browser, and what to keep until the callback.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuthorizationRequest {
    /// The authorization URL.
    pub url: Url,
    /// What the callback needs: keep it in the user's server-side session (it holds the PKCE
    /// verifier), never in the page.
    pub pending: PendingAuthorization,
}

/// An authorization request waiting for its callback. Serialisable, for a web app's session
/// store; `Debug` hides the state, the PKCE verifier and the nonce.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingAuthorization {
    state: String,
    code_verifier: String,
    nonce: String,
    /// The FHIR server (`aud`).
    pub fhir_base: Url,
    /// Its token endpoint.
    pub token_endpoint: Url,
    /// Its id_token issuer, when it said.
    pub issuer: Option<String>,
    /// Its id_token keys, when it said.
    pub jwks_uri: Option<Url>,
    /// The redirect URI sent.
    pub redirect_uri: Url,
    /// The scopes asked for.
    pub scope: String,
    /// Whether this is an EHR launch.
    pub ehr_launch: bool,
}

impl PendingAuthorization {
    /// The `state` sent, to find this request again when the callback arrives.
    pub fn state(&self) -> &str {
        &self.state
    }
}

impl fmt::Debug for PendingAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingAuthorization")
            .field("state", &"[redacted]")
            .field("code_verifier", &"[redacted]")
            .field("fhir_base", &self.fhir_base.as_str())
            .field("scope", &self.scope)
            .field("ehr_launch", &self.ehr_launch)
            .finish_non_exhaustive()
    }
}

/// The verified claims of an id_token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct IdTokenClaims {
    /// The user's id at the server.
    pub sub: String,
    /// The user's FHIR resource (an absolute URL to a Patient, Practitioner...), when
    /// `fhirUser` was granted.
    pub fhir_user: Option<String>,
    /// The issuer.
    pub iss: String,
    /// When the id_token expires (Unix seconds).
    pub exp: i64,
    /// All claims.
    pub claims: Value,
}

/// The launch context and tokens of a token response, beyond the access token.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TokenExtras {
    pub(crate) refresh_token: Option<String>,
    pub(crate) id_token: Option<String>,
    pub(crate) patient: Option<String>,
    pub(crate) encounter: Option<String>,
    #[serde(rename = "fhirUser")]
    pub(crate) fhir_user: Option<String>,
    #[serde(default)]
    pub(crate) need_patient_banner: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug() {
        let app = SmartApp::builder("c", "http://127.0.0.1:1/cb")
            .client_secret(ClientSecret::new("sekrit"))
            .build()
            .expect("app");
        assert!(!format!("{app:?}").contains("sekrit"));
        let pending = PendingAuthorization {
            state: "st4te".into(),
            code_verifier: "v3rifier".into(),
            nonce: "n0nce".into(),
            fhir_base: Url::parse("http://127.0.0.1:1/fhir").expect("url"),
            token_endpoint: Url::parse("http://127.0.0.1:1/token").expect("url"),
            issuer: None,
            jwks_uri: None,
            redirect_uri: Url::parse("http://127.0.0.1:1/cb").expect("url"),
            scope: "openid".into(),
            ehr_launch: false,
        };
        let debug = format!("{pending:?}");
        assert!(
            !debug.contains("st4te") && !debug.contains("v3rifier"),
            "{debug}"
        );
        let json = serde_json::to_string(&pending).expect("serialises");
        let back: PendingAuthorization = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back.state(), "st4te");
    }

    #[test]
    fn configuration_errors_are_named() {
        let err = SmartApp::builder("c", "http://portal.example/cb")
            .build()
            .expect_err("http");
        assert_eq!(err.kind(), ErrorKind::InsecureUrl);
        let err = SmartApp::builder("", "https://portal.example/cb")
            .build()
            .expect_err("id");
        assert_eq!(err.kind(), ErrorKind::Config);
        let err = SmartApp::builder("c", "https://portal.example/cb")
            .allowed_issuer("not a url")
            .build()
            .expect_err("iss");
        assert!(err.to_string().contains("allowed issuer"), "{err}");
    }

    #[test]
    fn signatures_need_a_key_of_the_right_kind() {
        let rsa = serde_json::json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"});
        assert!(verify_signature(&rsa, "ES256", b"m", b"s").is_err());
        let ec = serde_json::json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"});
        assert!(verify_signature(&ec, "ES384", b"m", b"s").is_err());
        assert_eq!(verify_signature(&ec, "ES256", b"m", b"s").ok(), Some(false));
    }
}
