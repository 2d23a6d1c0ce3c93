//! A user's session after a SMART App Launch ([`UserSession`], serialisable) and the token
//! provider that keeps it fresh ([`UserSessionAuth`]): single-flight proactive refresh with
//! refresh-token rotation, and `invalid_grant` surfaced as "log in again".

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use url::Url;

use super::backend::TokenProvider;
use super::exchange::IssuedToken;
use super::launch::{IdTokenClaims, PendingAuthorization, SmartApp, TokenExtras};
use super::secret::AccessToken;
use crate::error::{Error, ErrorKind, Result};

/// Default time before expiry at which a user's access token is refreshed.
pub const DEFAULT_SESSION_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// Times as Unix seconds in the serialised form.
mod unix_seconds {
    use std::time::{Duration, SystemTime};

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let seconds = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        s.serialize_u64(seconds)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let seconds = u64::deserialize(d)?;
        Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
    }
}

/// What a patient portal knows after a launch: the tokens, when the access token expires,
/// the granted scopes and the launch context.
///
/// Serialise it into the web app's session store (or a file only its owner can read): it
/// holds the tokens in clear there. `Debug` prints `[redacted]` for the tokens.
#[derive(Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UserSession {
    /// The app's client id.
    pub client_id: String,
    /// The FHIR server the tokens are for.
    pub fhir_base: Url,
    /// Its token endpoint (for refreshes).
    pub token_endpoint: Url,
    access_token: String,
    /// When the access token expires.
    #[serde(with = "unix_seconds")]
    pub expires_at: SystemTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    /// The granted scopes.
    pub scope: String,
    /// The patient in context (`patient` of the token response).
    pub patient: Option<String>,
    /// The encounter in context.
    pub encounter: Option<String>,
    /// The user's FHIR resource (from the id_token's `fhirUser`, or the token response).
    pub fhir_user: Option<String>,
    /// Whether the app should show a patient banner (`need_patient_banner`).
    #[serde(default)]
    pub need_patient_banner: bool,
    /// The verified id_token claims, when `openid` was granted.
    pub id_token: Option<IdTokenClaims>,
}

impl fmt::Debug for UserSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserSession")
            .field("client_id", &self.client_id)
            .field("fhir_base", &self.fhir_base.as_str())
            .field("access_token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("scope", &self.scope)
            .field("patient", &self.patient)
            .field("encounter", &self.encounter)
            .field("fhir_user", &self.fhir_user)
            .finish_non_exhaustive()
    }
}

impl UserSession {
    pub(crate) fn from_response(
        client_id: &str,
        pending: &PendingAuthorization,
        issued: IssuedToken,
        extra: TokenExtras,
        claims: Option<IdTokenClaims>,
    ) -> Self {
        UserSession {
            client_id: client_id.to_owned(),
            fhir_base: pending.fhir_base.clone(),
            token_endpoint: pending.token_endpoint.clone(),
            access_token: issued.access_token.expose_secret().to_owned(),
            expires_at: issued.expires_at,
            refresh_token: extra.refresh_token,
            scope: issued.scope.unwrap_or_else(|| pending.scope.clone()),
            patient: extra.patient,
            encounter: extra.encounter,
            fhir_user: claims
                .as_ref()
                .and_then(|c| c.fhir_user.clone())
                .or(extra.fhir_user),
            need_patient_banner: extra.need_patient_banner.unwrap_or(false),
            id_token: claims,
        }
    }

    /// The access token.
    pub fn access_token(&self) -> AccessToken {
        AccessToken::new(self.access_token.clone())
    }

    /// Whether the session can be refreshed without the user.
    pub fn has_refresh_token(&self) -> bool {
        self.refresh_token.is_some()
    }

    /// The refresh token.
    ///
    /// # Security Warning
    /// It grants access for as long as it lives (months with `offline_access`): store it only
    /// where the user's session is stored, send it only to the token endpoint.
    pub fn refresh_token(&self) -> Option<&str> {
        self.refresh_token.as_deref()
    }

    /// The patient id in context, with `Patient/` stripped from a `fhirUser` if no `patient`
    /// was given (a patient user is their own context).
    pub fn patient_id(&self) -> Option<&str> {
        self.patient.as_deref().or_else(|| {
            let user = self.fhir_user.as_deref()?;
            let (kind, id) = user
                .rsplit_once('/')
                .map(|(rest, id)| (rest.rsplit('/').next().unwrap_or(rest), id))?;
            (kind == "Patient").then_some(id)
        })
    }

    fn applied(&self, issued: IssuedToken, extra: TokenExtras) -> UserSession {
        let mut next = self.clone();
        next.access_token = issued.access_token.expose_secret().to_owned();
        next.expires_at = issued.expires_at;
        // Rotation: a new refresh token replaces the old one; a server that sends none lets
        // the old one be used again.
        if let Some(refresh) = extra.refresh_token {
            next.refresh_token = Some(refresh);
        }
        if let Some(scope) = issued.scope {
            next.scope = scope;
        }
        if extra.patient.is_some() {
            next.patient = extra.patient;
        }
        if extra.encounter.is_some() {
            next.encounter = extra.encounter;
        }
        next
    }
}

type Listener = Arc<dyn Fn(&UserSession) + Send + Sync>;

/// The token provider of a user session: hands out the session's access token and refreshes
/// it `refresh_margin` before it expires with the refresh token, keeping the rotated refresh
/// token. Cheap to clone; clones share the session.
///
/// - At most one refresh is in flight; callers arriving meanwhile wait for it (or keep using
///   the still-valid token), and share its failure instead of each trying again.
/// - `invalid_grant` (the refresh token was revoked, replayed or expired) becomes
///   [`ErrorKind::LoginRequired`]: the user must log in again; no further refresh is tried.
/// - A refresh answered with 429 or 5xx is retried; one whose answer was lost is not (the
///   server may have rotated the token already).
#[derive(Clone)]
pub struct UserSessionAuth {
    inner: Arc<Inner>,
}

struct Inner {
    app: SmartApp,
    session: RwLock<UserSession>,
    refresh_margin: Duration,
    fetch_lock: tokio::sync::Mutex<()>,
    fetches_finished: AtomicU64,
    last_failure: RwLock<Option<Arc<Error>>>,
    refreshes: AtomicU64,
    listener: RwLock<Option<Listener>>,
}

impl fmt::Debug for UserSessionAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserSessionAuth")
            .field("session", &*self.inner.session())
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn session(&self) -> std::sync::RwLockReadGuard<'_, UserSession> {
        self.session.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl UserSessionAuth {
    /// A provider for `session`, refreshing with `app`'s client authentication.
    pub fn new(app: &SmartApp, session: UserSession) -> Self {
        UserSessionAuth {
            inner: Arc::new(Inner {
                app: app.clone(),
                session: RwLock::new(session),
                refresh_margin: DEFAULT_SESSION_REFRESH_MARGIN,
                fetch_lock: tokio::sync::Mutex::new(()),
                fetches_finished: AtomicU64::new(0),
                last_failure: RwLock::new(None),
                refreshes: AtomicU64::new(0),
                listener: RwLock::new(None),
            }),
        }
    }

    /// Sets how long before expiry the token is refreshed. Default 60 s; keep it below the
    /// server's token lifetime, or every call refreshes.
    #[must_use]
    pub fn with_refresh_margin(self, margin: Duration) -> Self {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.refresh_margin = margin;
                UserSessionAuth {
                    inner: Arc::new(inner),
                }
            }
            Err(inner) => UserSessionAuth { inner },
        }
    }

    /// Calls `listener` with the new session after every refresh, so the caller can store the
    /// rotated refresh token (the old one is dead).
    pub fn on_refresh(&self, listener: impl Fn(&UserSession) + Send + Sync + 'static) {
        *self
            .inner
            .listener
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(listener));
    }

    /// The session as it is now (after any refresh).
    pub fn session(&self) -> UserSession {
        self.inner.session().clone()
    }

    /// How many refreshes succeeded.
    pub fn refreshes(&self) -> u64 {
        self.inner.refreshes.load(Ordering::Relaxed)
    }

    fn needs_refresh(&self, session: &UserSession, now: SystemTime) -> bool {
        now + self.inner.refresh_margin >= session.expires_at
    }

    /// A token valid now, refreshing first when it is about to expire.
    ///
    /// # Errors
    /// [`ErrorKind::LoginRequired`] when the session cannot be refreshed and its token has
    /// expired; transport and server errors of the refresh when the old token has expired too.
    pub async fn access_token(&self) -> Result<AccessToken> {
        let inner = &self.inner;
        let now = inner.app.clock().now();
        let (token, fresh, valid) = {
            let session = inner.session();
            (
                session.access_token(),
                !self.needs_refresh(&session, now),
                now < session.expires_at,
            )
        };
        if fresh {
            return Ok(token);
        }
        let seen = inner.fetches_finished.load(Ordering::Acquire);
        let _guard = if valid {
            match inner.fetch_lock.try_lock() {
                Ok(guard) => guard,
                // Someone is refreshing: the current token is still good meanwhile.
                Err(_) => return Ok(token),
            }
        } else {
            inner.fetch_lock.lock().await
        };
        let now = inner.app.clock().now();
        {
            let session = inner.session();
            if !self.needs_refresh(&session, now) {
                return Ok(session.access_token());
            }
        }
        if inner.fetches_finished.load(Ordering::Acquire) != seen {
            let failure = inner
                .last_failure
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if let Some(failure) = failure {
                return Err(Error::shared(&failure));
            }
        }
        let result = self.refresh_locked().await;
        inner.fetches_finished.fetch_add(1, Ordering::AcqRel);
        match result {
            Ok(token) => {
                *inner
                    .last_failure
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = None;
                Ok(token)
            }
            Err(error) => {
                let error = Arc::new(error);
                *inner
                    .last_failure
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&error));
                let session = inner.session();
                if inner.app.clock().now() < session.expires_at && !error.needs_login() {
                    tracing::warn!(target: "epic_fhir::auth", error = %error, "session refresh failed; using the current token until it expires");
                    return Ok(session.access_token());
                }
                Err(Error::shared(&error))
            }
        }
    }

    /// Refreshes now, whatever the token's age.
    ///
    /// # Errors
    /// As [`UserSessionAuth::access_token`].
    pub async fn refresh(&self) -> Result<AccessToken> {
        let _guard = self.inner.fetch_lock.lock().await;
        self.refresh_locked().await
    }

    async fn refresh_locked(&self) -> Result<AccessToken> {
        let inner = &self.inner;
        let session = inner.session().clone();
        let Some(refresh_token) = session.refresh_token.clone() else {
            return Err(Error::new(
                ErrorKind::LoginRequired,
                "the session's access token has expired and it has no refresh token (ask for offline_access or online_access): log in again",
            ));
        };
        let form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh_token.clone()),
        ];
        // The app's engine retries an answered refusal that may pass (503, 429,
        // temporarily_unavailable), never a lost answer: that one may have rotated the token.
        let (issued, extra) = match inner.app.token_request(&session.token_endpoint, form).await {
            Ok(answer) => answer,
            Err(error) => {
                if error.oauth().is_some_and(|o| o.error == "invalid_grant") {
                    // The refresh token is dead: forget it, so no one tries it again.
                    inner
                        .session
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .refresh_token = None;
                    let description = error
                        .oauth()
                        .and_then(|o| o.description.clone())
                        .unwrap_or_default();
                    return Err(Error::new(
                        ErrorKind::LoginRequired,
                        format!(
                            "the session can no longer be refreshed ({description}): log in again"
                        ),
                    )
                    .with_source(error));
                }
                return Err(error);
            }
        };
        let next = session.applied(issued, extra);
        let token = next.access_token();
        *inner
            .session
            .write()
            .unwrap_or_else(PoisonError::into_inner) = next.clone();
        inner.refreshes.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(target: "epic_fhir::auth", client_id = %next.client_id, "user session refreshed");
        let listener = inner
            .listener
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(listener) = listener {
            listener(&next);
        }
        Ok(token)
    }

    /// Marks `rejected` expired if it is the session's token, so the next call refreshes.
    pub fn invalidate_token(&self, rejected: &AccessToken) {
        let mut session = self
            .inner
            .session
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if session.access_token == rejected.expose_secret() {
            session.expires_at = SystemTime::UNIX_EPOCH;
        }
    }
}

impl TokenProvider for UserSessionAuth {
    fn token(&self) -> BoxFuture<'_, Result<AccessToken>> {
        Box::pin(self.access_token())
    }

    fn invalidate(&self, rejected: &AccessToken) {
        self.invalidate_token(rejected);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> UserSession {
        UserSession {
            client_id: "portal".into(),
            fhir_base: Url::parse("http://127.0.0.1:1/fhir").expect("url"),
            token_endpoint: Url::parse("http://127.0.0.1:1/token").expect("url"),
            access_token: "acc3ss".into(),
            expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000),
            refresh_token: Some("r3fresh".into()),
            scope: "patient/*.rs".into(),
            patient: None,
            encounter: None,
            fhir_user: Some("http://127.0.0.1:1/fhir/Patient/p1".into()),
            need_patient_banner: false,
            id_token: None,
        }
    }

    #[test]
    fn sessions_serialise_and_redact() {
        let session = session();
        let debug = format!("{session:?}");
        assert!(
            !debug.contains("acc3ss") && !debug.contains("r3fresh"),
            "{debug}"
        );
        let json = serde_json::to_string(&session).expect("json");
        assert!(json.contains("\"expires_at\":2000000000"), "{json}");
        let back: UserSession = serde_json::from_str(&json).expect("back");
        assert_eq!(back.refresh_token(), Some("r3fresh"));
        assert_eq!(back.expires_at, session.expires_at);
        assert_eq!(
            back.patient_id(),
            Some("p1"),
            "a patient user is their own context"
        );
    }
}
