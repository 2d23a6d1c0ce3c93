//! Access tokens the sandbox issued.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use base64::Engine as _;

use super::scopes::ScopeSet;

/// The bytes of randomness in an access token: 256 bits.
const TOKEN_BYTES: usize = 32;

/// What a token grants.
#[derive(Debug)]
pub(crate) struct Grant {
    pub(crate) client_id: String,
    pub(crate) scopes: ScopeSet,
    pub(crate) expires_at: SystemTime,
    /// For a token issued to an app a person launched (SMART App Launch): the user and the
    /// launch context. `None` for Backend Services.
    pub(crate) user: Option<Arc<UserContext>>,
}

/// Who a user-facing token acts for, and in which patient's context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserContext {
    /// The patient in context (`patient/` scopes reach this compartment).
    pub(crate) patient: Option<String>,
    /// The encounter in context.
    pub(crate) encounter: Option<String>,
    /// When the user is a patient (a MyChart user): their own record, the most `user/`
    /// scopes reach. `None` for a clinician, whose `user/` scopes reach every record.
    pub(crate) user_patient: Option<String>,
}

impl Grant {
    /// Who owns what this token creates (search sessions): the client, and for a user-facing
    /// token also the patient and user, so that one patient's paging links are useless with
    /// another patient's token of the same app.
    pub(crate) fn owner(&self) -> String {
        match &self.user {
            None => self.client_id.clone(),
            Some(user) => format!(
                "{}#{}#{}",
                self.client_id,
                user.patient.as_deref().unwrap_or(""),
                user.user_patient.as_deref().unwrap_or("")
            ),
        }
    }
}

/// Why a bearer token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenProblem {
    Missing,
    Unknown,
    Expired,
}

impl TokenProblem {
    pub(crate) fn description(self) -> &'static str {
        match self {
            TokenProblem::Missing => "no bearer token: send Authorization: Bearer <access token>",
            TokenProblem::Unknown => "the access token is not one this server issued",
            TokenProblem::Expired => "the access token has expired: request a new one",
        }
    }
}

/// Issued tokens, looked up on every FHIR request.
#[derive(Debug, Default)]
pub(crate) struct TokenStore {
    tokens: RwLock<HashMap<String, Arc<Grant>>>,
}

impl TokenStore {
    /// Issues an opaque token of 256 random bits for `client_id` with `scopes`.
    pub(crate) fn issue(
        &self,
        client_id: &str,
        scopes: ScopeSet,
        lifetime: Duration,
    ) -> Result<String, String> {
        self.issue_for_user(client_id, scopes, lifetime, None)
    }

    /// Issues a token, for a user and launch context when `user` is given.
    pub(crate) fn issue_for_user(
        &self,
        client_id: &str,
        scopes: ScopeSet,
        lifetime: Duration,
        user: Option<Arc<UserContext>>,
    ) -> Result<String, String> {
        let token = random_token()?;
        let now = SystemTime::now();
        let grant = Arc::new(Grant {
            client_id: client_id.to_owned(),
            scopes,
            expires_at: now + lifetime,
            user,
        });
        let mut tokens = self.tokens.write().unwrap_or_else(PoisonError::into_inner);
        // Expired tokens are dropped as the map grows, so memory follows the live tokens.
        if tokens.len() >= 1024 && tokens.len().is_power_of_two() {
            tokens.retain(|_, g| g.expires_at > now);
        }
        tokens.insert(token.clone(), grant);
        Ok(token)
    }

    /// The grant of a bearer token, or why it is not acceptable.
    pub(crate) fn check(&self, token: Option<&str>) -> Result<Arc<Grant>, TokenProblem> {
        let token = token.ok_or(TokenProblem::Missing)?;
        let grant = self
            .tokens
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()
            .ok_or(TokenProblem::Unknown)?;
        if grant.expires_at <= SystemTime::now() {
            return Err(TokenProblem::Expired);
        }
        Ok(grant)
    }

    /// Forgets one token: the next request with it gets 401.
    pub(crate) fn revoke(&self, token: &str) {
        self.tokens
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token);
    }

    /// Forgets every token: the next request with any of them gets 401.
    pub(crate) fn revoke_all(&self) {
        self.tokens
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The number of live entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.tokens
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// 256 random bits from the system's CSPRNG, base64url: access tokens, refresh tokens,
/// authorization codes, launch ids and authorization request ids.
pub(crate) fn random_token() -> Result<String, String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "the random generator failed".to_owned())?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_and_check() {
        let store = TokenStore::default();
        let token = store
            .issue("c", ScopeSet::read_all(), Duration::from_secs(60))
            .expect("token");
        assert_eq!(token.len(), 43, "256 bits in base64url");
        assert_eq!(store.check(Some(&token)).expect("valid").client_id, "c");
        assert_eq!(
            store.check(None).expect_err("missing"),
            TokenProblem::Missing
        );
        assert_eq!(
            store.check(Some("forged")).expect_err("unknown"),
            TokenProblem::Unknown
        );
        let short = store
            .issue("c", ScopeSet::read_all(), Duration::ZERO)
            .expect("token");
        assert_eq!(
            store.check(Some(&short)).expect_err("expired"),
            TokenProblem::Expired
        );
        assert_ne!(
            token,
            store
                .issue("c", ScopeSet::read_all(), Duration::from_secs(1))
                .expect("t")
        );
        assert_eq!(store.len(), 3);
    }
}
