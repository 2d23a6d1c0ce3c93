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
        let mut bytes = [0u8; TOKEN_BYTES];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "the random generator failed".to_owned())?;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = SystemTime::now();
        let grant = Arc::new(Grant {
            client_id: client_id.to_owned(),
            scopes,
            expires_at: now + lifetime,
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
